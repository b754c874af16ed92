//! Executing the gatekeeper's effects ([`crate::gatekeeper::Effect`]) and a door's plan
//! ([`crate::actions::plan`]) through the daemon's backends.

use std::net::IpAddr;
use std::time::Duration;

use tracing::{debug, info, warn};

use super::Daemon;
use crate::actions::firewall::Ports;
use crate::actions::plan::{self, Action};
use crate::actions::sessions::Pending;
use crate::actions::wol;
use crate::config;
use crate::doors::Origin;
use crate::engine::Event;
use crate::gatekeeper::{Cue, Effect};
use crate::time::Instant;

impl Daemon {
    /// Executes the gatekeeper's effects, in order (emptying `fx`).
    pub(super) fn apply(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        for effect in fx.drain(..) {
            match effect {
                Effect::Knock { event, door, log } => log_knock(&event, &door, log),
                Effect::Banned { src, .. } => {
                    let line = effect.line().unwrap_or_default();
                    warn!(%src, "{line}");
                }
                Effect::SpaAccepted {
                    src,
                    addr,
                    ref door,
                    ref user,
                    ..
                } => {
                    let line = effect.line().unwrap_or_default();
                    info!(%src, door = %door, user = %user, "{line}");
                    info!(src = %addr, door = %door, "{addr}: {door}: OPEN SESAME");
                }
                Effect::SpaRefused { src, ref door, .. } => {
                    let line = effect.line().unwrap_or_default();
                    warn!(%src, door = %door, "{line}");
                    self.tell(crate::mqtt::EventKind::Refused, door, src);
                }
                Effect::HeldBack(held_back) => {
                    info!(
                        held_back,
                        "{held_back} knock log line(s) held back by the rate limit"
                    );
                }
                Effect::Cue(cue) => {
                    if let Some(o) = &mut self.outputs {
                        match cue {
                            Cue::Stage => o.stage(now),
                            Cue::Opened => o.opened(now),
                        }
                    }
                }
                Effect::Open {
                    origin,
                    src,
                    requested,
                } => {
                    if let Some(d) = self.gk.config().doors.get(origin.door) {
                        self.tell(crate::mqtt::EventKind::Open, &d.name, src);
                    }
                    self.open(now, src, origin, requested.as_ref());
                    if requested.is_some() {
                        // An SPA client's owner may be looking at the page.
                        self.publish(now);
                    }
                }
                Effect::Retired(used) => used.commit(&self.backends.steps),
                Effect::Refilter => self.refresh_interfaces(),
                Effect::SaveReplay => self.save_spa_replay(),
            }
        }
    }

    /// Executes the plan of `src` opening config door `origin.door` ([`plan::plan`];
    /// `requested`: an SPA request's ports).
    pub(super) fn open(
        &mut self,
        now: Instant,
        src: IpAddr,
        origin: Origin,
        requested: Option<&Ports>,
    ) {
        let Some(d) = self.gk.config().doors.get(origin.door) else {
            return;
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
        let actions = plan::plan(d, origin, src, requested, &self.sessions, &at);
        let mut changed = false;
        // What retiring a sequence asks besides writing it down (new capture filters): after
        // the plan, so the door opens first.
        let mut after = Vec::new();
        for action in actions {
            debug!(%src, door = name, "{src}: {name}: plan: {action}");
            match action {
                // First, and durably (a one-time line is commented out): a power cut right
                // after the door opens can never re-enable it.
                Action::Retire { origin } => {
                    let mut fx = Vec::new();
                    self.gk.retire(now, wall, origin, &mut fx);
                    for e in fx {
                        match e {
                            Effect::Retired(used) => used.commit(&self.backends.steps),
                            other => after.push(other),
                        }
                    }
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
                        let closed = gate.close_door(&mut self.sessions, &target, src, name);
                        if closed {
                            self.tell(crate::mqtt::EventKind::Close, &target, src);
                        }
                        changed |= closed;
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
        self.apply(now, &mut after);
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

/// Logs a knock event as knockd does (`SRC: door: Stage N`), at debug level for resets, unless
/// the rate limit holds its line back.
fn log_knock(event: &Event, door: &str, log: bool) {
    if !log {
        return;
    }
    let line = || event.describe_named(door);
    match *event {
        Event::Opened { src, .. } => info!(%src, door = %door, "{}", line()),
        Event::Stage { src, stage, .. } | Event::Timeout { src, stage, .. } => {
            info!(%src, stage, "{}", line());
        }
        Event::Reset { src, stage, .. } => debug!(%src, stage, "{}", line()),
    }
}
