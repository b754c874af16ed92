//! `knockgate replay`: a capture file through the real parser and engine, packet timestamps as
//! time, printing the events and the plan the daemon would execute for each opened door (the
//! daemon's own [`plan::plan`]).
//!
//! Doors without a target count knocks to the addresses given with `--local`, or to any address
//! when none is given (a capture file does not say which addresses were the host's own).

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::actions::flush::DailyFlush;
use crate::actions::plan::{self, Action, Now};
use crate::actions::sessions::{unix_ms, Pending, Sessions};
use crate::config::Config;
use crate::doors::{Dynamic, Origin, SourceError};
use crate::engine::{Event, Tracker};
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

/// Replays `capture` through `config`'s doors, writing one line per event to `out`.
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
    // Doors whose sequences change (one-time lists, HMAC windows) follow the packets' own
    // timestamps, so a capture replays as it happened.
    let mut dynamic = Dynamic::load(config)?;
    let mut built_at: Option<u64> = None;
    let set = dynamic.doors(config, 0);
    let mut doors = set.origin;
    let mut tracker = Tracker::new(set.specs, config.daemon.max_sources);
    let mut sessions = Sessions::new();
    let flush = config.firewall.daily_flush.map(DailyFlush::local);
    let mut summary = Summary::default();
    let mut events = Vec::new();
    let mut origin: Option<i128> = None;
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
        summary.packets += 1;
        let ts =
            i128::from(packet.header.ts.tv_sec) * 1_000_000 + i128::from(packet.header.ts.tv_usec);
        let first = *origin.get_or_insert(ts);
        // Time never runs backwards in the engine, even if the file's timestamps do.
        now = now.max(Instant::from_micros(u64::try_from(ts - first).unwrap_or(0)));
        let knock = match wire::parse(link, packet.data) {
            Ok(k) => k,
            Err(_) => {
                summary.malformed += 1;
                continue;
            }
        };
        summary.knocks += 1;
        let unix = u64::try_from(packet.header.ts.tv_sec).unwrap_or(0);
        let stale = match built_at {
            None => true,
            Some(at) => dynamic.next_change(at).is_some_and(|next| unix >= next),
        };
        if stale {
            let set = dynamic.doors(config, unix);
            tracker.set_doors(set.specs, config.daemon.max_sources);
            doors = set.origin;
            built_at = Some(unix);
        }
        advance(&mut tracker, &mut sessions, Some(now), out)?;
        events.clear();
        let dst_is_local = local.is_empty() || local.contains(&knock.dst);
        tracker.on_knock(now, &knock, dst_is_local, &mut events);
        // The packet's own time is the wall clock the plan sees.
        let wall = SystemTime::UNIX_EPOCH + Duration::from_micros(u64::try_from(ts).unwrap_or(0));
        let until_flush = flush.as_ref().map_or(Duration::from_secs(24 * 3600), |f| {
            let t = jiff::Timestamp::try_from(wall).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
            let next = f.next_after(t);
            Duration::from_secs(u64::try_from(next.as_second() - t.as_second()).unwrap_or(0))
        });
        let at = Now {
            mono: now,
            wall,
            until_flush,
        };
        // What an opening used is retired in memory: replay never writes a one-time list.
        let retired = report(
            config,
            &doors,
            &mut dynamic,
            &tracker,
            &mut sessions,
            at,
            &events,
            &mut summary,
            out,
        )?;
        if retired {
            let set = dynamic.doors(config, unix);
            tracker.set_doors(set.specs, config.daemon.max_sources);
            doors = set.origin;
        }
    }
    // What the daemon would still do after the capture ends.
    advance(&mut tracker, &mut sessions, None, out)?;
    writeln!(
        out,
        "# {} packets, {} knocks, {} malformed, {} opened",
        summary.packets, summary.knocks, summary.malformed, summary.opens
    )?;
    Ok(summary)
}

/// Fires every timer due up to `until` (all of them with None), each at its own time.
fn advance(
    tracker: &mut Tracker,
    sessions: &mut Sessions,
    until: Option<Instant>,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let mut events = Vec::new();
    loop {
        let next = [tracker.poll_at(), sessions.poll_at()]
            .into_iter()
            .flatten()
            .min();
        let Some(at) = next.filter(|t| until.is_none_or(|u| *t <= u)) else {
            return Ok(());
        };
        events.clear();
        tracker.poll(at, &mut events);
        // Timers only time attempts out: no door opens here.
        for event in &events {
            writeln!(out, "{} {}", stamp(at), event.describe(tracker.doors()))?;
        }
        close_due(sessions, at, out)?;
    }
}

fn stamp(t: Instant) -> String {
    let us = t.as_micros();
    format!("[{:>6}.{:03}s]", us / 1_000_000, (us % 1_000_000) / 1000)
}

fn close_due(sessions: &mut Sessions, now: Instant, out: &mut impl Write) -> std::io::Result<()> {
    for s in sessions.take_due(now) {
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

/// Prints the events, and for each opened door the plan the daemon would execute
/// ([`plan::plan`], the daemon's own), applied to the replay's sessions. Returns whether a
/// sequence was retired (the engine's doors must be rebuilt).
#[allow(clippy::too_many_arguments)]
fn report(
    config: &Config,
    doors: &[Origin],
    dynamic: &mut Dynamic,
    tracker: &Tracker,
    sessions: &mut Sessions,
    now: Now,
    events: &[Event],
    summary: &mut Summary,
    out: &mut impl Write,
) -> std::io::Result<bool> {
    let at = stamp(now.mono);
    let mut retired = false;
    for event in events {
        writeln!(out, "{at} {}", event.describe(tracker.doors()))?;
        let Event::Opened { src, door } = *event else {
            continue;
        };
        summary.opens += 1;
        let origin = doors[door];
        let d = &config.doors[origin.door];
        let name = d.name.as_str();
        for action in plan::plan(d, origin, src, None, sessions, &now) {
            match &action {
                Action::Run { .. } => writeln!(out, "{at} {name}: would {action}")?,
                _ => writeln!(out, "{at} {src}: {name}: would {action}")?,
            }
            match action {
                Action::Retire { origin } => {
                    let unix = unix_ms(now.wall) / 1000;
                    retired |= dynamic.used_in_memory(config, origin, unix);
                }
                Action::ScheduleStop { argv, after, .. } => {
                    let pending = Pending::Stop { argv };
                    sessions.open(now.mono, now.wall, name, src, after, pending);
                }
                Action::Open { grant, after, .. } => {
                    let pending = Pending::Close { grant };
                    sessions.open(now.mono, now.wall, name, src, after, pending);
                }
                Action::Close { target, .. } => {
                    sessions.remove_close(&target, src);
                }
                Action::Run { .. } | Action::Relay { .. } | Action::Wake(_) => {}
            }
        }
    }
    Ok(retired)
}
