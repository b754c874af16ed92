//! Executing a door's plan ([`crate::actions::plan`]) through the daemon's backends.

use std::net::IpAddr;
use std::time::Duration;

use tracing::{debug, info};

use super::Daemon;
use crate::actions::firewall::Ports;
use crate::actions::plan::{self, Action};
use crate::actions::sessions::Pending;
use crate::actions::wol;
use crate::config;
use crate::doors::Origin;
use crate::time::Instant;

impl Daemon {
    /// Executes the plan of `src` opening the config door of engine door `origin`
    /// ([`plan::plan`]; `requested`: an SPA request's ports); true if a sequence was retired
    /// (the engine's doors must be rebuilt).
    pub(super) fn open(
        &mut self,
        now: Instant,
        src: IpAddr,
        origin: Origin,
        requested: Option<&Ports>,
    ) -> bool {
        let Some(d) = self.config.doors.get(origin.door) else {
            return false;
        };
        let wall = self.backends.clock.wall();
        let at = plan::Now {
            mono: now,
            wall,
            until_flush: self
                .gate
                .as_ref()
                .map_or(Duration::from_secs(24 * 3600), |g| g.until_flush(wall)),
        };
        let name = d.name.clone();
        let name = name.as_str();
        let (mut changed, mut retired) = (false, false);
        for action in plan::plan(d, origin, src, requested, &self.sessions, &at) {
            debug!(%src, door = name, "{src}: {name}: plan: {action}");
            match action {
                // First, and durably (a one-time line is commented out): a power cut right
                // after the door opens can never re-enable it.
                Action::Retire { origin } => {
                    retired |=
                        self.dynamic
                            .used(&self.config, origin, crate::time::unix_secs(wall));
                }
                Action::ScheduleStop {
                    argv,
                    after,
                    extend,
                } => {
                    let pending = Pending::Stop { argv };
                    self.sessions.open(now, wall, name, src, after, pending);
                    if extend {
                        info!(%src, door = name, "{src}: {name}: already open: extended by {}s", after.as_secs());
                    }
                    changed = true;
                }
                Action::Run { argv } => self.backends.commands.spawn(name, argv),
                Action::Open { grant, after, .. } => {
                    if let Some(gate) = &mut self.gate {
                        changed |= gate.open(&mut self.sessions, now, wall, grant, after);
                    }
                }
                Action::Close { target, .. } => {
                    if let Some(gate) = &mut self.gate {
                        changed |= gate.close_door(&mut self.sessions, &target, src, name);
                    }
                }
                Action::Relay { relay, mode } => {
                    if let Some(o) = &mut self.outputs {
                        o.relay(now, &relay, mode);
                    }
                }
                Action::Wake(w) => self.wake(now, name, &w),
            }
        }
        if changed {
            self.save_journal();
        }
        retired
    }

    /// Sends a door's wake-on-LAN packet, within its rate limit.
    pub(super) fn wake(&mut self, now: Instant, name: &str, w: &config::WakeAction) {
        if self.wake_limit.allow(now, w.mac, w.rate_limit) {
            self.backends.wake.wake(name, w);
        } else {
            let mac = wol::mac_text(w.mac);
            info!(
                door = name,
                "{name}: wake-on-LAN to {mac} not sent: rate-limited"
            );
        }
    }
}
