//! What the gateway is doing, for the status page, its JSON API and Prometheus metrics.
//!
//! The daemon loop builds a [`Snapshot`] (plain data, no locks inside) and publishes it on a
//! [`Board`]; the HTTP server only ever clones the current `Arc<Snapshot>`, so a flood of
//! requests can never block or slow the capture and the engine.
//!
//! Security: a snapshot never holds a knock sequence, a secret or a command line. Field names
//! are the JSON API (`/api/status`): keep them stable.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde::Serialize;

pub mod html;
pub mod json;
pub mod metrics;
pub mod server;

pub use html::{render_chart_svg, render_html};
pub use json::render_json;
pub use metrics::render_metrics;
pub use server::{ServerConfig, StatusError, StatusServer};

/// Everything the status page shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Snapshot {
    /// knockgate's version.
    pub version: String,
    /// Wall-clock time of this snapshot, Unix seconds.
    pub now_unix: u64,
    /// Seconds since the daemon started.
    pub uptime_secs: u64,
    /// True when every capture is up and the firewall (if used) works.
    pub healthy: bool,
    pub captures: Vec<CaptureStatus>,
    pub firewall: Option<FirewallStatus>,
    pub doors: Vec<DoorStatus>,
    /// Most recent first, at most [`RECENT`].
    pub recent: Vec<Activity>,
    /// Knocks (accepted steps) per hour over the last 24 hours, oldest first; the last entry is
    /// the current hour.
    pub knocks_per_hour: Vec<u32>,
    pub counters: Counters,
    pub relays: Vec<RelayStatus>,
    pub led: Option<LedStatus>,
    /// The GPIO, when relays or the LED are configured.
    pub gpio: Option<GpioStatus>,
    /// The state directory, when the daemon keeps state (`state_dir`).
    pub state: Option<StateStatus>,
    /// Problems found while setting the system up at boot (a malformed `wifi.txt`), one line
    /// each; never a secret.
    pub notices: Vec<String>,
    /// Home Assistant's MQTT connection, when `[mqtt]` is configured (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<MqttView>,
}

/// The MQTT client as the page shows it. Not part of the health verdict: a broker outage
/// must not page anyone about the doors.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MqttView {
    /// `mqtt://host:port` or `mqtts://host:port`.
    pub broker: String,
    pub connected: bool,
    pub last_error: Option<String>,
    /// Messages the full queue dropped.
    pub dropped: u64,
    /// Commands ignored (malformed, over a relay's limit).
    pub ignored: u64,
}

/// How many recent activities a snapshot keeps.
pub const RECENT: usize = 50;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CaptureStatus {
    pub interface: String,
    pub up: bool,
    /// Why it is down, if it is.
    pub error: Option<String>,
    pub addresses: Vec<IpAddr>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FirewallStatus {
    /// `iptables` or `none`.
    pub backend: String,
    pub chain: String,
    /// Whether the last firewall command succeeded.
    pub healthy: bool,
    /// Next daily flush, Unix seconds, if enabled.
    pub next_flush_unix: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DoorStatus {
    pub name: String,
    /// What the door does: any of `firewall`, `close`, `command`, `gpio`, `wake_on_lan`.
    pub actions: Vec<String>,
    /// Number of steps of its sequence (never the ports).
    pub steps: usize,
    /// Open sessions (firewall openings and pending stop commands).
    pub open: Vec<OpenSession>,
    pub last_opened_unix: Option<u64>,
}

/// What an open session will do at its end (`firewall` or `command` in the JSON API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionKind {
    /// A firewall opening, closed by the kernel's rule expiry and the daemon.
    Firewall,
    /// A stop command, run when the session ends.
    Command,
}

impl SessionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::Firewall => "firewall",
            SessionKind::Command => "command",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenSession {
    pub src: IpAddr,
    /// `firewall` or `command`.
    pub kind: SessionKind,
    pub opened_unix: u64,
    pub expires_unix: u64,
}

/// What happened to one knocking source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Activity {
    pub when_unix: u64,
    pub src: IpAddr,
    /// True for a source on the LAN (private, link-local or unique-local address).
    pub lan: bool,
    pub door: String,
    pub event: ActivityKind,
    pub stage: usize,
    pub of: usize,
}

/// What an [`Activity`] was; `stage`, `open`, `timeout` or `reset` in the JSON API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActivityKind {
    /// An accepted knock step.
    Stage,
    /// The door opened.
    Open,
    /// The sequence timed out.
    Timeout,
    /// A wrong knock reset the attempt.
    Reset,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Packets the captures delivered.
    pub packets: u64,
    /// Packets that reached the engine.
    pub knocks: u64,
    pub stages: u64,
    pub opens: u64,
    pub timeouts: u64,
    pub resets: u64,
    pub evictions: u64,
    /// Packets that could not be parsed.
    pub parse_errors: u64,
    /// Packets dropped because the daemon loop was behind.
    pub dropped_queue: u64,
    /// Sources with an attempt in progress now.
    pub tracked_sources: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RelayStatus {
    pub name: String,
    pub pin: u8,
    /// The pin is claimed and driven (false while the GPIO is unavailable).
    pub available: bool,
    pub on: bool,
    /// When a pulse or the watchdog switches it off, Unix seconds.
    pub off_at_unix: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LedStatus {
    pub pin: u8,
    pub pattern: LedPattern,
    /// The pin is claimed and driven.
    pub available: bool,
}

/// The status LED's patterns (`heartbeat`, `stage`, `open`, `error` in the JSON API).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LedPattern {
    /// Idle and healthy: a 100 ms flash every 2 s.
    #[default]
    Heartbeat,
    /// A knock step was accepted: one 150 ms blink.
    Stage,
    /// A door opened: solid for 3 s.
    Open,
    /// Something is wrong: 4 blinks a second.
    Error,
}

impl LedPattern {
    pub fn as_str(self) -> &'static str {
        match self {
            LedPattern::Heartbeat => "heartbeat",
            LedPattern::Stage => "stage",
            LedPattern::Open => "open",
            LedPattern::Error => "error",
        }
    }
}

/// As the JSON API names it.
impl PartialEq<&str> for LedPattern {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GpioStatus {
    /// `cdev`, `rppal` or `simulated` once open; the configured `auto`/`cdev`/`rppal` while it
    /// cannot be opened.
    pub backend: String,
    /// Every relay and LED pin is claimed.
    pub available: bool,
    /// Why not, when not available.
    pub error: Option<String>,
}

/// Whether what must survive a restart (the open doors' journal, the SPA replay cache) can
/// be written to `state_dir`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StateStatus {
    pub dir: String,
    /// The last write succeeded (or none was needed yet).
    pub writable: bool,
    /// The last failed write's file and error, until a write succeeds.
    pub error: Option<String>,
}

/// Whether an address is on the LAN side (private, link-local, unique-local, loopback).
pub fn is_lan(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_link_local() || v4.is_loopback(),
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

/// Where the daemon publishes snapshots and the server reads them.
///
/// Snapshots are made on demand: a request asks the daemon loop for one ([`Board::fresh`])
/// and waits for it, so the page is exact to the request ("N s ago", time left, counters) and
/// an idle daemon builds none. A loop that does not answer within the wait leaves the last
/// snapshot, whose age `/healthz` reports.
#[derive(Clone, Default)]
pub struct Board(Arc<Shared>);

#[derive(Default)]
struct Shared {
    /// The current snapshot and how many were published.
    current: Mutex<(Arc<Snapshot>, u64)>,
    published: Condvar,
    /// How to ask the loop for a snapshot (set by the daemon); false if it cannot be asked.
    ask: Mutex<Option<Ask>>,
    /// A request is on its way to the loop: others wait for the same answer.
    asked: AtomicBool,
}

type Ask = Box<dyn Fn() -> bool + Send>;

impl std::fmt::Debug for Board {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Board").finish_non_exhaustive()
    }
}

impl Board {
    pub fn new() -> Self {
        Self::default()
    }

    /// How [`Board::fresh`] asks the daemon loop for a snapshot (the loop answers with
    /// [`Board::publish`]).
    pub fn on_request(&self, ask: impl Fn() -> bool + Send + 'static) {
        *self.0.ask.lock().expect("board lock") = Some(Box::new(ask));
    }

    /// Replaces the current snapshot (the daemon loop).
    pub fn publish(&self, snapshot: Snapshot) {
        let mut current = self.0.current.lock().expect("board lock");
        *current = (Arc::new(snapshot), current.1 + 1);
        self.0.asked.store(false, Ordering::Release);
        self.0.published.notify_all();
    }

    /// The current snapshot (a pointer copy under a short lock).
    pub fn current(&self) -> Arc<Snapshot> {
        self.0.current.lock().expect("board lock").0.clone()
    }

    /// A snapshot made after this call, if the daemon loop gives one within `wait`; else the
    /// last one.
    pub fn fresh(&self, wait: Duration) -> Arc<Snapshot> {
        let generation = self.0.current.lock().expect("board lock").1;
        if !self.0.asked.swap(true, Ordering::AcqRel) {
            let sent = self
                .0
                .ask
                .lock()
                .expect("board lock")
                .as_ref()
                .is_some_and(|ask| ask());
            if !sent {
                self.0.asked.store(false, Ordering::Release);
                return self.current();
            }
        }
        let current = self.0.current.lock().expect("board lock");
        let (current, _) = self
            .0
            .published
            .wait_timeout_while(current, wait, |c| c.1 == generation)
            .expect("board lock");
        current.0.clone()
    }
}

/// What is wrong, read from the snapshot's parts: the one health verdict. The snapshot's
/// `healthy` is this being empty (the daemon sets it so), and the page, `/healthz` and the
/// metrics read it, the page and `/healthz` adding what only they know (the LED's pattern, a
/// snapshot not made yet or stale: [`html::problems`], [`server::health_problems`]).
pub fn faults(s: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for c in s.captures.iter().filter(|c| !c.up) {
        match &c.error {
            Some(e) => out.push(format!("capture on {} is down: {e}", c.interface)),
            None => out.push(format!("capture on {} is down", c.interface)),
        }
    }
    if let Some(f) = s.firewall.as_ref().filter(|f| !f.healthy) {
        out.push(format!(
            "the firewall ({} chain {}) failed its last command",
            f.backend, f.chain
        ));
    }
    if let Some(g) = s.gpio.as_ref().filter(|g| !g.available) {
        out.push(format!(
            "relays and LED unavailable ({} GPIO): {}; the doors keep working",
            g.backend,
            g.error.as_deref().unwrap_or("unknown error")
        ));
    }
    if let Some(st) = s.state.as_ref().filter(|st| !st.writable) {
        out.push(format!(
            "state_dir {} cannot be written ({}): the open doors would not survive a restart",
            st.dir,
            st.error.as_deref().unwrap_or("unknown error")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lan_addresses() {
        for lan in [
            "192.168.1.5",
            "10.0.0.1",
            "172.16.3.4",
            "169.254.1.1",
            "fd00::1",
            "fe80::1",
            "::1",
            "127.0.0.1",
        ] {
            assert!(is_lan(lan.parse().unwrap()), "{lan}");
        }
        for wan in ["8.8.8.8", "2001:db8::1", "100.64.0.1", "172.32.0.1"] {
            assert!(!is_lan(wan.parse().unwrap()), "{wan}");
        }
    }

    #[test]
    fn board_publishes_and_serves_the_latest() {
        let b = Board::new();
        let held = b.current();
        b.publish(Snapshot {
            version: "x".into(),
            ..Snapshot::default()
        });
        assert_eq!(held.version, "");
        assert_eq!(b.current().version, "x");
    }
}
