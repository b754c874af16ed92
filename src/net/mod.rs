//! From the wire to knocks: the capture threads ([`capture`], libpcap), the kernel-side filter
//! they install ([`bpf`]) and the parser of captured frames ([`wire`]).

pub mod bpf;
pub mod capture;
pub mod wire;
