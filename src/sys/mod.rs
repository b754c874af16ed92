//! Operating-system helpers: slow steps that keep the capture rings emptied ([`busy`]),
//! dropping privileges ([`privs`]), syslog datagrams ([`syslog`]), durable file writes
//! ([`fsutil`]) and this boot's setup notices ([`notices`]).

pub mod busy;
pub mod fsutil;
pub mod notices;
pub mod privs;
pub mod syslog;
