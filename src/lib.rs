//! knockgate: a port-knocking daemon for a Raspberry Pi home gateway.
//!
//! Data flows one way: capture (pcap) -> [`wire`] parser -> [`engine`] (pure state machine) ->
//! actions (commands) -> state. See README.md.
#![forbid(unsafe_code)]

pub mod bootfiles;
pub mod bpf;
pub mod capture;
pub mod client;
pub mod command;
pub mod config;
pub mod daemon;
pub mod doorset;
pub mod engine;
pub mod firewall;
pub mod firstboot;
pub mod flush;
pub mod fsutil;
pub mod gate;
pub mod gpio;
pub mod hmacseq;
pub mod knock;
pub mod knockd_import;
pub mod limits;
pub mod otp;
pub mod outputs;
pub mod privs;
pub mod relays;
pub mod replay;
pub mod sessions;
pub mod status;
pub mod syslog;
pub mod time;
pub mod wire;
pub mod wol;
