//! `knockgate replay`: a capture file through the real parser and engine, packet timestamps as
//! time, printing the events and the actions the daemon would take.
//!
//! Doors without a target count knocks to the addresses given with `--local`, or to any address
//! when none is given (a capture file does not say which addresses were the host's own).

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::time::SystemTime;

use crate::actions::firewall::Grant;
use crate::actions::sessions::{OpenOutcome, Pending, Sessions};
use crate::config::{Config, Vars};
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
        advance(
            config,
            &doors,
            &mut tracker,
            &mut sessions,
            Some(now),
            &mut summary,
            out,
        )?;
        events.clear();
        let dst_is_local = local.is_empty() || local.contains(&knock.dst);
        tracker.on_knock(now, &knock, dst_is_local, &mut events);
        report(
            config,
            &doors,
            &tracker,
            &mut sessions,
            now,
            &events,
            &mut summary,
            out,
        )?;
        // What an opening used is retired (in memory: replay never writes a one-time list).
        let mut retired = false;
        for e in &events {
            if let Event::Opened { door, .. } = e {
                retired |= dynamic.used_in_memory(config, doors[*door], unix);
            }
        }
        if retired {
            let set = dynamic.doors(config, unix);
            tracker.set_doors(set.specs, config.daemon.max_sources);
            doors = set.origin;
        }
    }
    // What the daemon would still do after the capture ends.
    advance(
        config,
        &doors,
        &mut tracker,
        &mut sessions,
        None,
        &mut summary,
        out,
    )?;
    writeln!(
        out,
        "# {} packets, {} knocks, {} malformed, {} opened",
        summary.packets, summary.knocks, summary.malformed, summary.opens
    )?;
    Ok(summary)
}

/// Fires every timer due up to `until` (all of them with None), each at its own time.
#[allow(clippy::too_many_arguments)]
fn advance(
    config: &Config,
    doors: &[Origin],
    tracker: &mut Tracker,
    sessions: &mut Sessions,
    until: Option<Instant>,
    summary: &mut Summary,
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
        report(config, doors, tracker, sessions, at, &events, summary, out)?;
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

/// Prints the events, and for each opened door the actions the daemon would take.
#[allow(clippy::too_many_arguments)]
fn report(
    config: &Config,
    doors: &[Origin],
    tracker: &Tracker,
    sessions: &mut Sessions,
    now: Instant,
    events: &[Event],
    summary: &mut Summary,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let at = stamp(now);
    for event in events {
        writeln!(out, "{at} {}", event.describe(tracker.doors()))?;
        let Event::Opened { src, door } = *event else {
            continue;
        };
        summary.opens += 1;
        let d = &config.doors[doors[door].door];
        let name = d.name.as_str();
        let vars = Vars {
            ip: src,
            door: name,
        };
        let ipv6 = src.is_ipv6();
        let mut fresh = true;
        if let Some(stop) = d.stop_for(ipv6) {
            let pending = Pending::Stop {
                argv: stop.render(&vars),
            };
            let outcome = sessions.open(
                now,
                SystemTime::UNIX_EPOCH,
                name,
                src,
                d.cmd_timeout,
                pending,
            );
            if outcome != OpenOutcome::New {
                writeln!(out, "{at} {src}: {name}: already open: extended")?;
                fresh = false;
            }
        }
        if let (true, Some(start)) = (fresh, d.start_for(ipv6)) {
            let shown = crate::actions::command::display(&start.render(&vars));
            writeln!(out, "{at} {name}: would run command: {shown}")?;
        }
        if let Some(action) = &d.firewall {
            let ports = &action.ports;
            match action.duration {
                Some(duration) => {
                    let grant = Grant {
                        door: name.to_string(),
                        src,
                        ports: ports.clone(),
                        until: duration.as_secs(),
                    };
                    let pending = Pending::Close { grant };
                    let outcome =
                        sessions.open(now, SystemTime::UNIX_EPOCH, name, src, duration, pending);
                    let verb = if outcome == OpenOutcome::New {
                        "open"
                    } else {
                        "extend"
                    };
                    let secs = duration.as_secs();
                    writeln!(out, "{at} {src}: {name}: would {verb} {ports} for {secs}s")?;
                }
                None => writeln!(
                    out,
                    "{at} {src}: {name}: would open {ports} until closed or the daily flush"
                )?,
            }
        }
        if let Some(target) = &d.close {
            let what = match sessions.remove_close(target, src) {
                Some(_) => "would close",
                None => "nothing to close:",
            };
            writeln!(out, "{at} {src}: {name}: {what} {target}")?;
        }
    }
    Ok(())
}
