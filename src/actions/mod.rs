//! What an opened door does, and the state that outlives the event: firewall openings
//! ([`gate`] over the [`firewall`] backends, kept in [`sessions`] and closed by their timers or
//! the daily [`flush`]), commands ([`command`]), relays and the status LED ([`outputs`]: the
//! pure [`relays`] machines on the [`gpio`] backends) and wake-on-LAN ([`wol`]).

pub mod command;
pub mod firewall;
pub mod flush;
pub mod gate;
pub mod gpio;
pub mod outputs;
pub mod plan;
pub mod relays;
pub mod sessions;
pub mod wol;
