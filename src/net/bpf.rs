//! The capture filter: which packets the kernel hands to knockgate at all.
//!
//! [`filter`] is a pure function of the configured doors (the UDP ports they use, the addresses
//! they knock on) and the gateway's current addresses; it returns a libpcap filter expression.
//! The daemon recompiles it when addresses change. It lets through, to a destination in
//! `local` ∪ `targets`:
//!
//! - every TCP packet without ACK, to any port: knocks, and also the probes to ports outside
//!   any sequence that knockgate must see to defeat in-order port scans;
//! - UDP to the ports of `udp_ports` only;
//! - IPv6 packets whose first next header is an extension header (hop-by-hop, routing,
//!   fragment, destination options): BPF cannot follow the chain, [`crate::net::wire::parse`] does;
//! - all of the above through one VLAN tag, on Ethernet.
//!
//! Invariants: the output is deterministic (addresses and ports sorted and deduplicated), so
//! tests compare it by equality, and it always compiles: an empty destination set gives
//! [`MATCH_NOTHING`], never an empty string (which would match everything).
//!
//! libpcap's `tcp[...]` only indexes IPv4, so IPv6 TCP is matched at fixed offsets: next header
//! `ip6[6] == 6`, flags byte `ip6[53]` (40-byte header + 13). Only TCP directly after the fixed
//! header is checked for ACK; behind extension headers, the parser and engine decide.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::net::wire::LinkType;

/// What the filter is made of.
#[derive(Debug, Clone, Copy)]
pub struct FilterInput<'a> {
    /// The gateway's own addresses (IPv6 link-local included; the scope is not part of it).
    pub local: &'a [IpAddr],
    /// Addresses the doors guard besides the gateway's own (hosts behind it).
    pub targets: &'a [IpAddr],
    /// Every UDP port used in any door's sequence.
    pub udp_ports: &'a [u16],
}

/// A filter that compiles and matches no packet: only a packet of length 0 passes, and no
/// capture delivers one. (`ip and not ip` would not do: libpcap refuses to compile a filter
/// that rejects all packets.)
pub const MATCH_NOTHING: &str = "less 0";

/// The IPv6 next-header values of the extension headers BPF cannot look through: hop-by-hop,
/// routing, fragment, destination options.
const IPV6_EXTENSION_HEADERS: [u8; 4] = [0, 43, 44, 60];

/// The filter for an Ethernet capture (`eth0`, `wlan0`): [`filter_for_link`] with
/// [`LinkType::Ethernet`].
pub fn filter(input: &FilterInput) -> String {
    filter_for_link(input, LinkType::Ethernet)
}

/// The filter for a capture of link type `link`. The VLAN branch is added only on Ethernet:
/// libpcap refuses `vlan` on every other link type ("no VLAN support for Linux cooked v1"), so
/// `-i any`, `ppp0` and tunnels need this. On a raw IPv4 (IPv6) link, IPv6 (IPv4) destinations
/// are left out, since libpcap refuses a filter that can match nothing.
pub fn filter_for_link(input: &FilterInput, link: LinkType) -> String {
    let dsts: BTreeSet<IpAddr> = input.local.iter().chain(input.targets).copied().collect();
    let ports: BTreeSet<u16> = input.udp_ports.iter().copied().collect();
    let udp = ports.iter().map(|p| format!("udp dst port {p}"));

    let v4: Vec<String> = dsts
        .iter()
        .filter(|a| a.is_ipv4())
        .map(|a| format!("ip dst host {a}"))
        .collect();
    let v6: Vec<String> = dsts
        .iter()
        .filter(|a| a.is_ipv6())
        .map(|a| format!("ip6 dst host {a}"))
        .collect();

    let mut branches = Vec::new();
    if !v4.is_empty() && link != LinkType::Ipv6 {
        let wanted: Vec<String> = ["(tcp and tcp[tcpflags] & tcp-ack == 0)".to_string()]
            .into_iter()
            .chain(udp.clone())
            .collect();
        branches.push(branch(&v4, &wanted));
    }
    if !v6.is_empty() && link != LinkType::Ipv4 {
        let wanted: Vec<String> = ["(ip6[6] == 6 and ip6[53] & 0x10 == 0)".to_string()]
            .into_iter()
            .chain(udp)
            .chain(
                IPV6_EXTENSION_HEADERS
                    .iter()
                    .map(|n| format!("ip6[6] == {n}")),
            )
            .collect();
        branches.push(branch(&v6, &wanted));
    }
    if branches.is_empty() {
        return MATCH_NOTHING.to_string();
    }
    let f = branches.join(" or ");
    if link == LinkType::Ethernet {
        // `vlan` shifts the offsets of everything after it, so the untagged form comes first.
        format!("{f} or (vlan and ({f}))")
    } else {
        f
    }
}

/// `((host or host) and (wanted or wanted))`.
fn branch(hosts: &[String], wanted: &[String]) -> String {
    format!("(({}) and ({}))", hosts.join(" or "), wanted.join(" or "))
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use pcap::{BpfProgram, Capture, Linktype};

    use super::*;
    use crate::knock::TcpFlags;
    use crate::net::wire::fixtures::{self, eth_frame, GATEWAY4, GATEWAY6};

    const SYN: u8 = TcpFlags::SYN;
    const ACK: u8 = TcpFlags::ACK;

    fn v4(a: [u8; 4]) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(a))
    }

    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
    }

    fn dlt(link: LinkType) -> Linktype {
        Linktype(match link {
            LinkType::Ethernet => 1,
            LinkType::LinuxSll => 113,
            LinkType::LinuxSll2 => 276,
            LinkType::RawIp => 12,
            LinkType::Ipv4 => 228,
            LinkType::Ipv6 => 229,
            LinkType::Null => 0,
            LinkType::Loop => 108,
        })
    }

    fn compile(f: &str, link: LinkType) -> BpfProgram {
        let cap = Capture::dead(dlt(link)).unwrap();
        cap.compile(f, true)
            .unwrap_or_else(|e| panic!("{link:?}: {e}: {f}"))
    }

    #[test]
    fn one_ipv4_address_no_udp() {
        let f = filter(&FilterInput {
            local: &[v4([192, 0, 2, 1])],
            targets: &[],
            udp_ports: &[],
        });
        let t = "((ip dst host 192.0.2.1) and ((tcp and tcp[tcpflags] & tcp-ack == 0)))";
        assert_eq!(f, format!("{t} or (vlan and ({t}))"));
    }

    #[test]
    fn sorted_and_deduplicated() {
        let f = filter_for_link(
            &FilterInput {
                local: &[v6("fe80::1"), v4([192, 0, 2, 1]), v4([10, 0, 0, 1])],
                targets: &[v4([192, 0, 2, 1]), v4([192, 168, 1, 20])],
                udp_ports: &[8000, 53, 8000],
            },
            LinkType::LinuxSll,
        );
        let expected = [
            "((ip dst host 10.0.0.1 or ip dst host 192.0.2.1 or ip dst host 192.168.1.20)",
            " and ((tcp and tcp[tcpflags] & tcp-ack == 0) or udp dst port 53 or udp dst port 8000))",
            " or ((ip6 dst host fe80::1)",
            " and ((ip6[6] == 6 and ip6[53] & 0x10 == 0) or udp dst port 53 or udp dst port 8000",
            " or ip6[6] == 0 or ip6[6] == 43 or ip6[6] == 44 or ip6[6] == 60))",
        ]
        .concat();
        assert_eq!(f, expected);
        // Order of the input does not matter.
        let g = filter_for_link(
            &FilterInput {
                local: &[v4([192, 168, 1, 20]), v4([10, 0, 0, 1])],
                targets: &[v6("fe80::1"), v4([192, 0, 2, 1])],
                udp_ports: &[53, 8000],
            },
            LinkType::LinuxSll,
        );
        assert_eq!(f, g);
    }

    #[test]
    fn no_destination_matches_nothing_and_compiles() {
        let input = FilterInput {
            local: &[],
            targets: &[],
            udp_ports: &[7000],
        };
        assert_eq!(filter(&input), MATCH_NOTHING);
        let prog = compile(MATCH_NOTHING, LinkType::Ethernet);
        let syn = eth_frame(IpAddr::V4(GATEWAY4), 7000, Some(SYN), None);
        assert!(!prog.filter(&syn));
        assert!(!prog.filter(&fixtures::ETH_ARP));
        assert!(!prog.filter(&[0]));
        // Only IPv6 destinations on a raw IPv4 link: nothing either.
        let v6_only = FilterInput {
            local: &[v6("2001:db8::1")],
            targets: &[],
            udp_ports: &[],
        };
        assert_eq!(filter_for_link(&v6_only, LinkType::Ipv4), MATCH_NOTHING);
    }

    /// Every link type, with and without each address family and UDP ports: libpcap compiles it.
    #[test]
    fn compiles_for_every_link_type() {
        let addrs = [
            v4([192, 0, 2, 1]),
            v6("2001:db8::1"),
            v6("fe80::1ff:fe23:4567:890a"),
            v6("::ffff:192.0.2.7"),
        ];
        let inputs = [
            FilterInput {
                local: &addrs,
                targets: &[],
                udp_ports: &[53, 7000, 65535],
            },
            FilterInput {
                local: &addrs[..1],
                targets: &[],
                udp_ports: &[],
            },
            FilterInput {
                local: &addrs[1..2],
                targets: &addrs[2..],
                udp_ports: &[1],
            },
            FilterInput {
                local: &[],
                targets: &[],
                udp_ports: &[],
            },
        ];
        let links = LinkType::ALL;
        for input in &inputs {
            for link in links {
                let prog = compile(&filter_for_link(input, link), link);
                assert!(!prog.get_instructions().is_empty());
            }
        }
        // And what libpcap refuses, which is why filter_for_link exists.
        let cap = Capture::dead(dlt(LinkType::LinuxSll)).unwrap();
        assert!(cap.compile(&filter(&inputs[0]), true).is_err());
    }

    /// The compiled program, run by libpcap over real frames.
    #[test]
    fn passes_what_the_daemon_needs_and_nothing_else() {
        let local6 = IpAddr::V6(GATEWAY6);
        let local4 = IpAddr::V4(GATEWAY4);
        let input = FilterInput {
            local: &[local4, local6],
            targets: &[v4([192, 168, 1, 20])],
            udp_ports: &[8000, 8001],
        };
        let prog = compile(&filter(&input), LinkType::Ethernet);
        let other4 = v4([192, 0, 2, 99]);
        let other6 = v6("2001:db8::99");
        let cases = [
            (
                "SYN to a local address",
                eth_frame(local4, 7000, Some(SYN), None),
                true,
            ),
            (
                "SYN to a target",
                eth_frame(v4([192, 168, 1, 20]), 22, Some(SYN), None),
                true,
            ),
            (
                "FIN (no ACK) to any port",
                eth_frame(local4, 1, Some(TcpFlags::FIN), None),
                true,
            ),
            (
                "SYN+ACK",
                eth_frame(local4, 7000, Some(SYN | ACK), None),
                false,
            ),
            ("ACK", eth_frame(local4, 7000, Some(ACK), None), false),
            (
                "SYN to another address",
                eth_frame(other4, 7000, Some(SYN), None),
                false,
            ),
            (
                "UDP to a listed port",
                eth_frame(local4, 8000, None, None),
                true,
            ),
            (
                "UDP to the other listed port",
                eth_frame(local4, 8001, None, None),
                true,
            ),
            (
                "UDP to another port",
                eth_frame(local4, 53, None, None),
                false,
            ),
            (
                "IPv6 SYN to a local address",
                eth_frame(local6, 7000, Some(SYN), None),
                true,
            ),
            (
                "IPv6 SYN+ACK",
                eth_frame(local6, 7000, Some(SYN | ACK), None),
                false,
            ),
            (
                "IPv6 SYN to another address",
                eth_frame(other6, 7000, Some(SYN), None),
                false,
            ),
            (
                "IPv6 UDP to a listed port",
                eth_frame(local6, 8001, None, None),
                true,
            ),
            (
                "IPv6 UDP to another port",
                eth_frame(local6, 9, None, None),
                false,
            ),
            (
                "VLAN-tagged SYN",
                eth_frame(local4, 7000, Some(SYN), Some(10)),
                true,
            ),
            (
                "VLAN-tagged SYN+ACK",
                eth_frame(local4, 7000, Some(SYN | ACK), Some(10)),
                false,
            ),
            (
                "VLAN-tagged IPv6 SYN",
                eth_frame(local6, 7000, Some(SYN), Some(10)),
                true,
            ),
            (
                "VLAN-tagged UDP",
                eth_frame(local4, 8000, None, Some(10)),
                true,
            ),
        ];
        for (what, frame, pass) in cases {
            assert_eq!(prog.filter(&frame), pass, "{what}");
        }
        // The wire fixtures (all to 192.0.2.1 or 2001:db8::1).
        let fixtures = [
            ("ETH_IPV4_TCP_SYN", &fixtures::ETH_IPV4_TCP_SYN[..], true),
            ("ETH_IPV4_UDP", &fixtures::ETH_IPV4_UDP[..], true),
            ("ETH_VLAN_IPV4_TCP", &fixtures::ETH_VLAN_IPV4_TCP[..], true),
            ("ETH_IPV6_TCP", &fixtures::ETH_IPV6_TCP[..], true),
            // Extension headers pass whatever follows; the parser decides.
            (
                "ETH_IPV6_HBH_DSTOPTS_TCP",
                &fixtures::ETH_IPV6_HBH_DSTOPTS_TCP[..],
                true,
            ),
            (
                "ETH_IPV6_FRAG_FIRST",
                &fixtures::ETH_IPV6_FRAG_FIRST[..],
                true,
            ),
            (
                "ETH_IPV6_FRAG_LATER",
                &fixtures::ETH_IPV6_FRAG_LATER[..],
                true,
            ),
            ("ETH_ARP", &fixtures::ETH_ARP[..], false),
            ("ETH_IPV4_ICMP", &fixtures::ETH_IPV4_ICMP[..], false),
        ];
        for (what, frame, pass) in fixtures {
            assert_eq!(prog.filter(frame), pass, "{what}");
        }
    }

    #[test]
    fn cooked_and_raw_captures_filter_too() {
        let input = FilterInput {
            local: &[IpAddr::V4(GATEWAY4), IpAddr::V6(GATEWAY6)],
            targets: &[],
            udp_ports: &[8000],
        };
        let sll = compile(
            &filter_for_link(&input, LinkType::LinuxSll),
            LinkType::LinuxSll,
        );
        assert!(sll.filter(&fixtures::SLL_IPV4_TCP));
        let sll2 = compile(
            &filter_for_link(&input, LinkType::LinuxSll2),
            LinkType::LinuxSll2,
        );
        assert!(sll2.filter(&fixtures::SLL2_IPV6_UDP));
        let raw = compile(&filter_for_link(&input, LinkType::RawIp), LinkType::RawIp);
        assert!(!raw.filter(&fixtures::RAW_IPV4_TCP), "SYN+ACK");
        assert!(!raw.filter(&fixtures::RAW_IPV6_TCP), "FIN+PSH+ACK+URG");
        let mut syn = fixtures::RAW_IPV4_TCP;
        syn[20 + 13] = SYN;
        assert!(raw.filter(&syn));
        let null = compile(&filter_for_link(&input, LinkType::Null), LinkType::Null);
        assert!(null.filter(&fixtures::NULL_IPV4_UDP));
    }
}
