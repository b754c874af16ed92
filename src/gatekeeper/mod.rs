//! The gatekeeper: everything the daemon decides about a packet or a moment, with no I/O and
//! no clock, like [`crate::engine`] under it. It holds the knock tracker, the doors whose
//! sequences change (one-time lists, HMAC windows) and which config door each engine door
//! stands for, the bans after failed attempts, the rate limit of per-knock log lines, the SPA
//! replay cache and the activity history the status page shows.
//!
//! It is fed packets ([`Gatekeeper::on_packet`]) and moments ([`Gatekeeper::poll`], when
//! [`Gatekeeper::poll_at`] says), each with the time passed in, and answers with [`Effect`]s
//! in the order they must happen: log lines, LED cues, a door to open for a source (whose
//! [`crate::actions::plan`] the caller executes), state to write, capture filters to follow.
//! The daemon executes them through its backends; `knockgate replay` feeds the same gatekeeper
//! from a capture file and prints them; the policy tests drive it in-process with explicit
//! times (`tests.rs`). The shape is boringtun's `Tunn` returning what to send, or smoltcp's
//! `Interface`: the caller owns the sockets and the clock.

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::doors::spa::ReplayCache;
use crate::doors::{Dynamic, Origin, Used};
use crate::engine::limits::{LogLimit, Penalties, Verdict};
use crate::engine::{Event, ResetReason, Tracker};
use crate::knock::{Knock, Ports, Proto};
use crate::net::capture::Packet;
use crate::status::ActivityKind;
use crate::time::{unix_secs, Instant};

mod history;
mod spa;
#[cfg(test)]
mod tests;

pub use history::History;
pub use spa::SpaRefusal;

/// Per-knock log lines: a burst of this many, then this many per second.
pub const LOG_BURST: u32 = 50;
pub const LOG_PER_SECOND: u32 = 5;
/// How often the gatekeeper's chores run while one is needed (and only then): the summary of
/// rate-limited log lines, the expiry of the SPA replay cache.
pub const CHORES_EVERY: Duration = Duration::from_secs(10);

/// Which destination addresses are the host's own: knocks to doors without a target count
/// only when sent to one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    /// Every address (`replay` without `--local`: a capture file does not say).
    Any,
    Only(HashSet<IpAddr>),
}

impl Local {
    pub fn contains(&self, addr: &IpAddr) -> bool {
        match self {
            Local::Any => true,
            Local::Only(set) => set.contains(addr),
        }
    }
}

/// What the status LED is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cue {
    /// An attempt moved a step on.
    Stage,
    /// A door opened.
    Opened,
}

/// One thing to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// A knock event, with the name of its door (as it was when the event happened). `log`:
    /// whether its line may be written (stages and timeouts are rate-limited, a scan cannot
    /// fill the SD card; openings and resets are not, resets being debug lines).
    Knock {
        event: Event,
        door: String,
        log: bool,
    },
    /// `src` is ignored for `secs` seconds after too many failed attempts (only when the rate
    /// limit lets the line be written; the ban holds either way).
    Banned {
        src: IpAddr,
        secs: u64,
    },
    /// An SPA request verified and passed the checks: `door` opens for `addr`.
    SpaAccepted {
        src: IpAddr,
        addr: IpAddr,
        door: String,
        user: String,
        /// What it asks for, as fwknop writes it (`tcp/22,udp/53`).
        access: String,
    },
    /// An SPA datagram refused (only when the rate limit lets the line be written).
    SpaRefused {
        src: IpAddr,
        door: String,
        why: SpaRefusal,
    },
    Cue(Cue),
    /// Config door `origin.door` opens for `src`: execute its plan. `requested`: the ports an
    /// SPA request asked for.
    Open {
        origin: Origin,
        src: IpAddr,
        requested: Option<Ports>,
    },
    /// An opening used a one-time line or an HMAC window ([`Gatekeeper::retire`]): the
    /// daemon writes it down ([`Used::commit`]) before anything else of the plan.
    Retired(Used),
    /// The sequences' UDP ports changed: the capture filters must follow.
    Refilter,
    /// The SPA replay cache changed: write it to the state directory.
    SaveReplay,
    /// This many per-knock log lines were held back by the rate limit since the last summary.
    HeldBack(u64),
}

impl Effect {
    /// The line the daemon logs for this effect (knockd's wording where knockd has one), and
    /// `replay` prints.
    pub fn line(&self) -> Option<String> {
        Some(match self {
            Effect::Knock { event, door, .. } => event.describe_named(door),
            Effect::Banned { src, secs } => {
                format!("{src}: ignored for {secs}s after too many failed attempts")
            }
            Effect::SpaAccepted {
                src,
                addr,
                door,
                user,
                access,
            } => format!("{src}: {door}: SPA request for {access} to {addr} (user {user})"),
            Effect::SpaRefused { src, door, why } => {
                format!("{src}: {door}: SPA packet refused: {why}")
            }
            Effect::HeldBack(n) => format!("{n} knock log line(s) held back by the rate limit"),
            Effect::Cue(_)
            | Effect::Open { .. }
            | Effect::Retired(_)
            | Effect::Refilter
            | Effect::SaveReplay => return None,
        })
    }
}

/// See the module documentation.
pub struct Gatekeeper {
    config: Config,
    dynamic: Dynamic,
    tracker: Tracker,
    /// For each engine door, the config door (and HMAC window) it stands for.
    origin: Vec<Origin>,
    /// When the HMAC windows change next.
    next_window: Option<Instant>,
    /// Sources ignored after too many failed attempts.
    penalties: Penalties,
    log_limit: LogLimit,
    /// SPA packets already accepted.
    spa_replay: ReplayCache,
    local: Local,
    history: History,
    /// The chores' next run, when one is needed ([`CHORES_EVERY`]).
    next_chores: Instant,
    /// The engine's events, reused.
    events: Vec<Event>,
}

impl Gatekeeper {
    /// A gatekeeper for `config`'s doors as they are at `now` (`wall`), with the SPA packets
    /// accepted before (`spa_replay`, from the state directory).
    pub fn new(
        config: Config,
        dynamic: Dynamic,
        spa_replay: ReplayCache,
        local: Local,
        now: Instant,
        wall: SystemTime,
    ) -> Gatekeeper {
        let unix = unix_secs(wall);
        let set = dynamic.doors(&config, unix);
        let penalties = Penalties::new(config.daemon.penalties, config.daemon.max_sources);
        let mut gk = Gatekeeper {
            tracker: Tracker::new(set.specs, config.daemon.max_sources),
            origin: set.origin,
            next_window: None,
            config,
            dynamic,
            penalties,
            log_limit: LogLimit::new(LOG_BURST, LOG_PER_SECOND),
            spa_replay,
            local,
            history: History::default(),
            next_chores: now,
            events: Vec::new(),
        };
        gk.schedule_window(now, wall);
        gk
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    pub fn spa_replay(&self) -> &ReplayCache {
        &self.spa_replay
    }

    /// The host's own addresses changed.
    pub fn set_local(&mut self, local: Local) {
        self.local = local;
    }

    /// The UDP ports the sequences knock on, sorted, once each.
    pub fn udp_ports(&self) -> BTreeSet<u16> {
        udp_ports(&self.tracker)
    }

    /// The SPA doors' ports, sorted, once each: a UDP datagram to one is an SPA packet
    /// ([`Packet::Datagram`]), not a knock.
    pub fn spa_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = (self.config.doors.iter())
            .filter_map(|d| d.spa.as_ref().map(|s| s.port))
            .collect();
        ports.sort();
        ports.dedup();
        ports
    }

    /// A new config (a reload): the doors follow it, keeping attempts in progress on
    /// sequences that stay.
    pub fn reload(
        &mut self,
        config: Config,
        dynamic: Dynamic,
        now: Instant,
        wall: SystemTime,
        out: &mut Vec<Effect>,
    ) {
        self.penalties.set_config(config.daemon.penalties);
        self.config = config;
        self.dynamic = dynamic;
        self.rebuild(now, wall, out);
    }

    /// When [`Gatekeeper::poll`] must next be called, if ever.
    pub fn poll_at(&mut self) -> Option<Instant> {
        [self.tracker.poll_at(), self.next_window, self.chores_at()]
            .into_iter()
            .flatten()
            .min()
    }

    /// When an attempt in progress times out next, if one is in progress (`replay` runs the
    /// timers on after the capture ends until there is none).
    pub fn attempts_at(&mut self) -> Option<Instant> {
        self.tracker.poll_at()
    }

    /// What is due at `now`: attempts timing out, the HMAC windows rolling, the chores.
    pub fn poll(&mut self, now: Instant, wall: SystemTime, out: &mut Vec<Effect>) {
        let unix = unix_secs(wall);
        let mut events = std::mem::take(&mut self.events);
        events.clear();
        self.tracker.poll(now, &mut events);
        self.handle(now, unix, &events, out);
        self.events = events;
        if self.next_window.is_some_and(|t| now >= t) {
            self.rebuild(now, wall, out);
        }
        if self.chores_at().is_some_and(|t| now >= t) {
            let held_back = self.log_limit.take_suppressed();
            if held_back > 0 {
                out.push(Effect::HeldBack(held_back));
            }
            if self.spa_replay.expire(unix) {
                out.push(Effect::SaveReplay);
            }
        }
        if now >= self.next_chores {
            self.next_chores = now + CHORES_EVERY;
        }
    }

    /// One packet seen at `now` (`wall`): a knock, or an SPA datagram.
    pub fn on_packet(
        &mut self,
        now: Instant,
        wall: SystemTime,
        packet: &Packet,
        out: &mut Vec<Effect>,
    ) {
        match packet {
            Packet::Knock(knock) => self.on_knock(now, wall, knock, out),
            Packet::Datagram(knock, data) => self.on_datagram(now, wall, knock, data, out),
        }
    }

    /// A knock: a connection attempt or a datagram to a port of no SPA door.
    pub fn on_knock(
        &mut self,
        now: Instant,
        wall: SystemTime,
        knock: &Knock,
        out: &mut Vec<Effect>,
    ) {
        if self.penalties.is_banned(knock.src, now) {
            return;
        }
        let dst_is_local = self.local.contains(&knock.dst);
        let mut events = std::mem::take(&mut self.events);
        events.clear();
        self.tracker.on_knock(now, knock, dst_is_local, &mut events);
        if !events.is_empty() {
            self.handle(now, unix_secs(wall), &events, out);
        }
        self.events = events;
    }

    /// An opening of engine door `origin` used what it opened with (the plan's
    /// [`crate::actions::plan::Action::Retire`]): it is retired, the doors rebuilt, and
    /// [`Effect::Retired`] says what to write down.
    pub fn retire(
        &mut self,
        now: Instant,
        wall: SystemTime,
        origin: Origin,
        out: &mut Vec<Effect>,
    ) {
        let unix = unix_secs(wall);
        let used = self.dynamic.used(&self.config, origin, unix);
        if used == Used::Nothing {
            return;
        }
        out.push(Effect::Retired(used));
        self.rebuild(now, wall, out);
    }

    fn chores_at(&self) -> Option<Instant> {
        let needed = self.log_limit.suppressed() > 0 || !self.spa_replay.is_empty();
        needed.then_some(self.next_chores)
    }

    fn handle(&mut self, now: Instant, unix: u64, events: &[Event], out: &mut Vec<Effect>) {
        for event in events {
            let door = |gk: &Self, i: usize| gk.tracker.doors()[i].name.clone();
            match *event {
                Event::Opened { src, door: i } => {
                    let name = door(self, i);
                    let of = self.tracker.doors()[i].sequence.len();
                    self.history
                        .record(unix, src, &name, ActivityKind::Open, of, of);
                    out.push(Effect::Knock {
                        event: *event,
                        door: name,
                        log: true,
                    });
                    out.push(Effect::Cue(Cue::Opened));
                    out.push(Effect::Open {
                        origin: self.origin[i],
                        src,
                        requested: None,
                    });
                }
                Event::Stage {
                    src,
                    door: i,
                    stage,
                    of,
                } => {
                    let name = door(self, i);
                    self.history
                        .record(unix, src, &name, ActivityKind::Stage, stage, of);
                    let log = self.log_limit.allow(now);
                    out.push(Effect::Knock {
                        event: *event,
                        door: name,
                        log,
                    });
                    out.push(Effect::Cue(Cue::Stage));
                }
                Event::Timeout {
                    src,
                    door: i,
                    stage,
                } => {
                    let name = door(self, i);
                    let of = self.tracker.doors()[i].sequence.len();
                    self.history
                        .record(unix, src, &name, ActivityKind::Timeout, stage, of);
                    let log = self.log_limit.allow(now);
                    out.push(Effect::Knock {
                        event: *event,
                        door: name,
                        log,
                    });
                    self.penalize(src, now, out);
                }
                Event::Reset {
                    src,
                    door: i,
                    reason,
                    ..
                } => {
                    out.push(Effect::Knock {
                        event: *event,
                        door: door(self, i),
                        log: true,
                    });
                    if matches!(reason, ResetReason::WrongKnock(_)) {
                        self.penalize(src, now, out);
                    }
                }
            }
        }
    }

    /// A failed attempt of `src`: too many, and it is ignored for a while.
    fn penalize(&mut self, src: IpAddr, now: Instant, out: &mut Vec<Effect>) {
        if let Verdict::Banned(until) = self.penalties.failed(src, now) {
            if self.log_limit.allow(now) {
                let secs = until.saturating_since(now).as_secs();
                out.push(Effect::Banned { src, secs });
            }
        }
    }

    /// Gives the engine the doors' current sequences (one-time lists, HMAC windows), keeping
    /// attempts in progress on sequences that stay, and schedules the next window change.
    fn rebuild(&mut self, now: Instant, wall: SystemTime, out: &mut Vec<Effect>) {
        let set = self.dynamic.doors(&self.config, unix_secs(wall));
        let before = udp_ports(&self.tracker);
        self.tracker
            .set_doors(set.specs, self.config.daemon.max_sources);
        self.origin = set.origin;
        if udp_ports(&self.tracker) != before {
            // The capture filter passes UDP only to sequence ports: follow the new ones.
            out.push(Effect::Refilter);
        }
        self.schedule_window(now, wall);
    }

    /// The next window change, to the microsecond of the wall clock (not up to a second late).
    fn schedule_window(&mut self, now: Instant, wall: SystemTime) {
        let since_epoch = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        self.next_window = (self.dynamic.next_change(unix_secs(wall)))
            .map(|at| now + Duration::from_secs(at).saturating_sub(since_epoch));
    }
}

fn udp_ports(tracker: &Tracker) -> BTreeSet<u16> {
    (tracker.doors().iter())
        .flat_map(|d| d.sequence.iter())
        .filter(|k| k.proto == Proto::Udp)
        .map(|k| k.port)
        .collect()
}
