//! knockgate: a port-knocking daemon for a Raspberry Pi home gateway.
//!
//! Data flows one way (README, "How it works"):
//! [`net`] (capture, BPF filter, wire parser) -> [`gatekeeper`] (what is decided: the pure
//! state machine of [`engine`] over the doors of [`doors`], bans, SPA checks, history) ->
//! [`actions`] (firewall openings, commands, relays, wake-on-LAN) -> [`status`] (the page).
//! [`daemon`] owns the loop that joins them and executes the gatekeeper's effects; `replay`
//! feeds the same gatekeeper from a file; [`config`] is the validated config; [`cli`] holds
//! the other commands; [`sys`] the operating-system helpers.
#![forbid(unsafe_code)]

pub mod actions;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod doors;
pub mod engine;
pub mod gatekeeper;
pub mod knock;
pub mod mqtt;
pub mod net;
pub mod status;
pub mod sys;
pub mod time;
