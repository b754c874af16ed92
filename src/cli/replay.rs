//! `knockgate replay`: a capture file through the real parser and the daemon's own
//! [`Gatekeeper`] (bans, SPA datagrams, window rolls and one-time lines included), packet
//! timestamps as time, printing its effects and the plan the daemon would execute for each
//! opened door (the daemon's own [`plan::plan`]). Nothing here decides: the loop only feeds the
//! gatekeeper and prints.
//!
//! Doors without a target count knocks to the addresses given with `--local`, or to any address
//! when none is given (a capture file does not say which addresses were the host's own).

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::actions::flush::{self, DailyFlush};
use crate::actions::plan::{self, Action, Now};
use crate::actions::sessions::{Pending, Sessions};
use crate::config::Config;
use crate::doors::spa::ReplayCache;
use crate::doors::{Dynamic, SourceError};
use crate::gatekeeper::{Effect, Gatekeeper, Local};
use crate::knock::{Packet, Proto};
use crate::net::wire::{self, LinkType};
use crate::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The capture file cannot be opened or read (not a pcap/pcapng file, or truncated).
    #[error("{path}: {message}")]
    Capture { path: String, message: String },
    /// The capture's link type is not one knockgate parses.
    #[error("{path}: unsupported link type {dlt}")]
    LinkType { path: String, dlt: i32 },
    #[error(transparent)]
    Doors(#[from] SourceError),
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
}

/// What a replay counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub packets: u64,
    pub knocks: u64,
    pub malformed: u64,
    pub opens: u64,
}

/// The replay's world: the gatekeeper, the open doors it would keep, the capture's clock.
struct Replay {
    /// Holds the config too: the doors' plans are read from it.
    gk: Gatekeeper,
    sessions: Sessions,
    flush: Option<DailyFlush>,
    /// The SPA doors' ports: a UDP datagram to one is an SPA packet.
    spa_ports: Vec<u16>,
    /// The first packet's time, microseconds since the Unix epoch: monotonic time 0.
    origin: i128,
    summary: Summary,
}

/// Replays `capture` through `config`'s doors, writing one line per effect to `out`.
pub fn replay(
    config: &Config,
    capture: &Path,
    local: &[IpAddr],
    out: &mut impl Write,
) -> Result<Summary, ReplayError> {
    let path = capture.display().to_string();
    let mut cap = pcap::Capture::from_file(capture).map_err(|e| ReplayError::Capture {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let dlt = cap.get_datalink().0;
    let link = LinkType::from_dlt(dlt).ok_or(ReplayError::LinkType {
        path: path.clone(),
        dlt,
    })?;
    let dynamic = Dynamic::load(config)?;
    let local = if local.is_empty() {
        Local::Any
    } else {
        Local::Only(local.iter().copied().collect())
    };
    let summary = Summary::default();
    let mut replay: Option<Replay> = None;
    let mut fx = Vec::new();
    let mut now = Instant::ZERO;
    loop {
        let packet = match cap.next_packet() {
            Ok(p) => p,
            Err(pcap::Error::NoMorePackets) => break,
            Err(e) => {
                return Err(ReplayError::Capture {
                    path,
                    message: e.to_string(),
                })
            }
        };
        let ts =
            i128::from(packet.header.ts.tv_sec) * 1_000_000 + i128::from(packet.header.ts.tv_usec);
        // The gatekeeper starts at the first packet, its doors as they were then (one-time
        // lists, HMAC windows follow the packets' own timestamps).
        let r = replay.get_or_insert_with(|| {
            let wall = wall_at(ts, 0);
            let gk = Gatekeeper::new(
                config.clone(),
                dynamic.clone(),
                ReplayCache::default(),
                local.clone(),
                Instant::ZERO,
                wall,
            );
            Replay {
                spa_ports: gk.spa_ports(),
                gk,
                sessions: Sessions::new(),
                flush: config.firewall.daily_flush.map(DailyFlush::local),
                origin: ts,
                summary,
            }
        });
        r.summary.packets += 1;
        // Time never runs backwards, even if the file's timestamps do.
        now = now.max(Instant::from_micros(
            u64::try_from(ts - r.origin).unwrap_or(0),
        ));
        // As the daemon's capture routes them: a UDP datagram to an SPA door's port is an SPA
        // packet, anything else parsed a knock.
        let parsed = match wire::parse_with_payload(link, packet.data) {
            Ok((knock, data))
                if knock.proto == Proto::Udp && r.spa_ports.contains(&knock.dst_port) =>
            {
                Packet::Datagram(knock, data.into())
            }
            Ok((knock, _)) => Packet::Knock(knock),
            Err(_) => {
                r.summary.malformed += 1;
                continue;
            }
        };
        r.summary.knocks += 1;
        r.advance(Some(now), out)?;
        let wall = r.wall(now);
        r.gk.on_packet(now, wall, &parsed, &mut fx);
        r.apply(now, &mut fx, out)?;
    }
    let summary = match replay {
        Some(mut r) => {
            // What the daemon would still do after the capture ends.
            r.advance(None, out)?;
            r.summary
        }
        None => summary,
    };
    writeln!(
        out,
        "# {} packets, {} knocks, {} malformed, {} opened",
        summary.packets, summary.knocks, summary.malformed, summary.opens
    )?;
    Ok(summary)
}

/// The wall-clock time `mono_us` microseconds after `origin_us` (since the Unix epoch).
fn wall_at(origin_us: i128, mono_us: u64) -> SystemTime {
    let us = u64::try_from(origin_us + i128::from(mono_us)).unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::from_micros(us)
}

fn stamp(t: Instant) -> String {
    let us = t.as_micros();
    format!("[{:>6}.{:03}s]", us / 1_000_000, (us % 1_000_000) / 1000)
}

impl Replay {
    /// The capture's wall-clock time at monotonic time `t`.
    fn wall(&self, t: Instant) -> SystemTime {
        wall_at(self.origin, t.as_micros())
    }

    /// Fires every timer due up to `until`, each at its own time; with None, every timer
    /// still pending (attempts timing out, doors closing) but not the windows that roll on
    /// forever.
    fn advance(&mut self, until: Option<Instant>, out: &mut impl Write) -> std::io::Result<()> {
        let mut fx = Vec::new();
        loop {
            let gk_at = match until {
                Some(_) => self.gk.poll_at(),
                None => self.gk.attempts_at(),
            };
            let next = [gk_at, self.sessions.poll_at()].into_iter().flatten().min();
            let Some(at) = next.filter(|t| until.is_none_or(|u| *t <= u)) else {
                return Ok(());
            };
            let wall = self.wall(at);
            self.gk.poll(at, wall, &mut fx);
            self.apply(at, &mut fx, out)?;
            self.close_due(at, out)?;
        }
    }

    fn close_due(&mut self, now: Instant, out: &mut impl Write) -> std::io::Result<()> {
        for s in self.sessions.take_due(now) {
            let at = stamp(s.deadline);
            match &s.pending {
                Pending::Stop { argv } => {
                    writeln!(out, "{at} {}: {}: command timeout", s.src, s.door)?;
                    let shown = crate::actions::command::display(argv);
                    writeln!(out, "{at} {}: would run command: {shown}", s.door)?;
                }
                Pending::Close { grant } => {
                    let ports = &grant.ports;
                    writeln!(
                        out,
                        "{at} {}: {}: would close {ports} (time is up)",
                        s.src, s.door
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Prints the effects (every knock event, rate limit or not), and for each opened door
    /// the plan the daemon would execute, applied to the replay's sessions.
    fn apply(
        &mut self,
        now: Instant,
        fx: &mut Vec<Effect>,
        out: &mut impl Write,
    ) -> std::io::Result<()> {
        let at = stamp(now);
        for effect in std::mem::take(fx) {
            match effect {
                Effect::Open {
                    origin,
                    src,
                    requested,
                } => self.open(now, origin, src, requested.as_ref(), out)?,
                Effect::SpaAccepted { addr, ref door, .. } => {
                    writeln!(out, "{at} {}", effect.line().unwrap_or_default())?;
                    writeln!(out, "{at} {addr}: {door}: OPEN SESAME")?;
                }
                // Replay writes nothing: what is retired or accepted stays in memory.
                Effect::HeldBack(_) | Effect::Retired(_) | Effect::SaveReplay => {}
                Effect::Cue(_) | Effect::Refilter => {}
                Effect::Knock { .. } | Effect::Banned { .. } | Effect::SpaRefused { .. } => {
                    writeln!(out, "{at} {}", effect.line().unwrap_or_default())?;
                }
            }
        }
        Ok(())
    }

    fn open(
        &mut self,
        mono: Instant,
        origin: crate::doors::Origin,
        src: IpAddr,
        requested: Option<&crate::knock::Ports>,
        out: &mut impl Write,
    ) -> std::io::Result<()> {
        let at = stamp(mono);
        let wall = self.wall(mono);
        let now = Now {
            mono,
            wall,
            until_flush: flush::until(self.flush.as_ref(), wall),
        };
        self.summary.opens += 1;
        let Some(d) = self.gk.config().doors.get(origin.door) else {
            return Ok(());
        };
        let actions = plan::plan(d, origin, src, requested, &self.sessions, &now);
        let name = d.name.clone();
        let name = name.as_str();
        for action in actions {
            match &action {
                Action::Run { .. } => writeln!(out, "{at} {name}: would {action}")?,
                _ => writeln!(out, "{at} {src}: {name}: would {action}")?,
            }
            match action {
                Action::Retire { origin } => {
                    let mut fx = Vec::new();
                    self.gk.retire(mono, wall, origin, &mut fx);
                }
                Action::ScheduleStop { argv, after, .. } => {
                    let pending = Pending::Stop { argv };
                    self.sessions.open(mono, wall, name, src, after, pending);
                }
                Action::Open { grant, after, .. } => {
                    let pending = Pending::Close { grant };
                    self.sessions.open(mono, wall, name, src, after, pending);
                }
                Action::Close { target, .. } => {
                    self.sessions.remove_close(&target, src);
                }
                Action::Run { .. } | Action::Relay { .. } | Action::Wake(_) => {}
            }
        }
        Ok(())
    }
}
