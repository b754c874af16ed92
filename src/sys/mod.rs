//! Operating-system helpers: slow steps that keep the capture rings emptied ([`busy`]),
//! dropping privileges ([`privs`]), syslog datagrams ([`syslog`])
//! and durable file writes ([`fsutil`]).

pub mod busy;
pub mod fsutil;
pub mod privs;
pub mod syslog;
