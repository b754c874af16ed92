//! The packet parser on any bytes, for every link type: the first byte picks the link type
//! (its index in `LinkType::ALL`, modulo), the rest is the captured packet.
//!
//! Invariants checked beyond "no panic": a parse is deterministic; a knock's addresses are of
//! one family; a UDP knock has no TCP flags, and a TCP knock only FIN..URG.
#![no_main]

use knockgate::knock::Proto;
use knockgate::net::wire::{self, LinkType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, packet)) = data.split_first() else {
        return;
    };
    let link = LinkType::ALL[usize::from(pick) % LinkType::ALL.len()];
    let parsed = wire::parse(link, packet);
    assert_eq!(parsed, wire::parse(link, packet), "not deterministic");
    if let Ok(knock) = parsed {
        assert_eq!(knock.src.is_ipv4(), knock.dst.is_ipv4(), "{knock:?}");
        match knock.proto {
            Proto::Udp => assert_eq!(knock.tcp_flags.0, 0, "{knock:?}"),
            Proto::Tcp => assert_eq!(knock.tcp_flags.0 & !0x3f, 0, "{knock:?}"),
        }
    }
});
