//! From the wire to knocks: the captures ([`capture`], libpcap rings read by the daemon
//! loop), the kernel-side filter they install ([`bpf`]) and the parser of captured frames
//! ([`wire`]); and what the kernel announces about interfaces, addresses and the ruleset
//! ([`watch`], netlink).

pub mod bpf;
pub mod capture;
pub mod watch;
pub mod wire;
