//! Operating-system helpers: dropping privileges ([`privs`]), syslog datagrams ([`syslog`])
//! and durable file writes ([`fsutil`]).

pub mod fsutil;
pub mod privs;
pub mod syslog;
