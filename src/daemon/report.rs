//! What the status page shows: the daemon's history (recent activity, knocks per hour, last
//! openings, capture health, boot notices) and the [`Snapshot`] built from it and the live
//! state, published on the [`Board`] the HTTP server reads.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use tracing::{error, info, warn};

use super::Daemon;
use crate::actions::sessions::Pending;
use crate::status::{self, Snapshot};
use crate::time::Instant;

/// What the status page shows beyond the live state and the gatekeeper's history: capture
/// health, boot notices, the state directory's writes.
#[derive(Default)]
pub(super) struct Report {
    pub(super) started: Option<std::time::Instant>,
    /// Per interface: up, and the last error.
    pub(super) captures: BTreeMap<String, (bool, Option<String>)>,
    /// Boot-time setup problems ([`crate::sys::notices::NOTICES_DIR`]), read at start and reload.
    pub(super) notices: Vec<String>,
    /// Per file of the state directory (the journal, the SPA replay cache), the last failed
    /// write, until a write of that file succeeds: what is only in memory would not survive a
    /// restart.
    pub(super) state_errors: BTreeMap<&'static str, String>,
}

impl Report {
    /// Records how a write of `file` (a name in the state directory) went.
    pub(super) fn state_written(&mut self, file: &'static str, error: Option<String>) {
        match error {
            None => self.state_errors.remove(file),
            Some(e) => self.state_errors.insert(file, e),
        };
    }
}

impl Daemon {
    /// Starts the status page. A page that cannot start (port taken) is logged, not fatal:
    /// the doors matter more than the page.
    pub(super) fn start_status_page(&mut self) {
        let cfg = status::ServerConfig {
            listen: self.gk.config().status.listen,
            allowed_hosts: self.gk.config().status.allowed_hosts.clone(),
        };
        match status::StatusServer::start(&cfg, self.page.board.clone()) {
            Ok(server) => {
                info!(listen = %server.local_addr(), "status page on http://{}/", server.local_addr());
                self.page.server = Some(server);
            }
            Err(e) => error!("status page not started: {e}"),
        }
    }

    /// Starts the MQTT client, if `[mqtt]` is configured. One that cannot start (an unreadable
    /// password or CA file) is logged, not fatal: the doors do not depend on it.
    pub(super) fn start_mqtt(&mut self, mailbox: super::Mailbox) {
        let Some(cfg) = self.gk.config().mqtt.clone() else {
            return;
        };
        let topics = crate::mqtt::Topics::new(self.gk.config(), &hostname());
        let on_command = Box::new(move |c| mailbox.try_send(super::Msg::Relay(c)));
        match crate::mqtt::client::Mqtt::start(&cfg, topics, on_command) {
            Ok(m) => {
                info!(broker = %cfg.host, "MQTT: connecting to {}:{}", cfg.host, cfg.port);
                self.page.mqtt = Some(m);
                self.tell_doors();
            }
            Err(e) => error!("MQTT not started: {e}"),
        }
    }

    /// After a reload: the doors, relays and targets Home Assistant sees (their entities
    /// added, renamed or removed). The broker settings themselves change at the next restart.
    pub(super) fn reconfigure_mqtt(&mut self) {
        if let Some(m) = &self.page.mqtt {
            m.reconfigure(crate::mqtt::Topics::new(self.gk.config(), &hostname()));
        }
        self.tell_doors();
        self.tell_relays(self.backends.clock.now());
    }

    /// The open sessions of every door, to MQTT (which publishes what changed).
    pub(super) fn tell_doors(&mut self) {
        if let Some(m) = &self.page.mqtt {
            let mut open = std::collections::BTreeMap::new();
            for s in self.sessions.iter() {
                *open.entry(s.door.clone()).or_insert(0) += 1;
            }
            m.doors(&open);
        }
    }

    /// The relays Home Assistant sees, their levels as the GPIO has them, to MQTT (which
    /// publishes what changed).
    pub(super) fn tell_relays(&mut self, now: Instant) {
        let (Some(m), Some(o)) = (&self.page.mqtt, &self.outputs) else {
            return;
        };
        if self
            .gk
            .config()
            .gpio
            .relays
            .iter()
            .any(|r| r.mqtt_command.is_some())
        {
            let (relays, _, _) = o.view(now, self.backends.clock.wall());
            m.relays(&relays);
        }
    }

    /// A command from Home Assistant: through the relay's own rules (max_on, group, safe
    /// state: [`crate::actions::outputs::Outputs::relay`]), at most one per relay every
    /// [`crate::mqtt::client::COMMAND_EVERY`], and only for a relay that opted in.
    pub(super) fn on_command(&mut self, now: Instant, command: crate::mqtt::Command) {
        use crate::config::{RelayCommand, RelayMode};
        let (relay, on) = match command {
            crate::mqtt::Command::Relay { relay, on } => (relay, on),
            crate::mqtt::Command::Wake { door } => {
                // The door's own target and rate limit, as when it is knocked open.
                let Some(w) = self
                    .gk
                    .config()
                    .doors
                    .iter()
                    .find(|d| d.name == door)
                    .and_then(|d| d.wake_on_lan.clone())
                    .filter(|w| w.mqtt_command)
                else {
                    return;
                };
                if self
                    .page
                    .mqtt
                    .as_ref()
                    .is_some_and(|m| m.allow_command(&door, now))
                {
                    info!(door = %door, "{door}: wake-on-LAN (Home Assistant, MQTT)");
                    self.wake(now, &door, &w);
                }
                return;
            }
        };
        let command = (relay, on);
        let Some(kind) = self
            .gk
            .config()
            .gpio
            .relays
            .iter()
            .find(|r| r.name == command.0)
            .and_then(|r| r.mqtt_command)
        else {
            return;
        };
        let (Some(m), Some(o)) = (&self.page.mqtt, &mut self.outputs) else {
            return;
        };
        if !m.allow_command(&command.0, now) {
            return;
        }
        let mode = match (kind, command.1) {
            (RelayCommand::Switch, Some(true)) => RelayMode::On,
            (RelayCommand::Switch, Some(false)) => RelayMode::Off,
            (RelayCommand::Pulse(d), None) => RelayMode::Pulse(d),
            _ => return,
        };
        info!(relay = %command.0, "{}: {mode:?} (Home Assistant, MQTT)", command.0);
        o.relay(now, &command.0, mode);
        self.tell_relays(now);
    }

    /// A door event, to MQTT.
    pub(super) fn tell(&self, kind: crate::mqtt::EventKind, door: &str, src: std::net::IpAddr) {
        if let Some(m) = &self.page.mqtt {
            m.event(kind, door, &src.to_string());
        }
    }

    /// This boot's setup problems, for the status page.
    pub(super) fn read_notices(&mut self) {
        self.report.notices = match &self.opts.notices_dir {
            Some(dir) => crate::sys::notices::read(dir),
            None => Vec::new(),
        };
        for n in &self.report.notices {
            warn!("setup at boot: {n}");
        }
    }

    /// Builds what the status page shows and publishes it.
    pub(super) fn publish(&mut self, now: Instant) {
        let counters = {
            let mut intake = self.intake();
            let intake = &mut *intake;
            for c in intake.captures.values_mut() {
                c.count_drops(&intake.counters);
            }
            let c = &intake.counters;
            (
                c.packets.load(Ordering::Relaxed),
                c.malformed.load(Ordering::Relaxed),
                c.queue_full.load(Ordering::Relaxed),
            )
        };
        let (packets, malformed, dropped_queue) = counters;
        let wall = crate::time::unix_secs(self.backends.clock.wall());
        let stats = self.gk.tracker().stats();
        let captures: Vec<status::CaptureStatus> = self
            .links
            .addresses
            .iter()
            .map(|(iface, addrs)| {
                let (up, error) = self
                    .report
                    .captures
                    .get(iface)
                    .cloned()
                    .unwrap_or((false, None));
                status::CaptureStatus {
                    interface: iface.clone(),
                    up,
                    error,
                    addresses: addrs.clone(),
                }
            })
            .collect();
        let firewall = self.gate.as_ref().map(|g| status::FirewallStatus {
            backend: g.backend().to_string(),
            chain: self.gk.config().firewall.chain.clone(),
            healthy: g.healthy(),
            next_flush_unix: g.next_flush().map(|t| t.as_second().max(0) as u64),
        });
        let doors = self
            .gk
            .config()
            .doors
            .iter()
            .map(|d| {
                let actions = d.actions().iter().map(|a| a.as_str().to_string()).collect();
                let open = self
                    .sessions
                    .iter()
                    .filter(|s| s.door == d.name)
                    .map(|s| status::OpenSession {
                        src: s.src,
                        kind: match s.pending {
                            Pending::Close { .. } => status::SessionKind::Firewall,
                            Pending::Stop { .. } => status::SessionKind::Command,
                        },
                        opened_unix: s.opened_unix_ms / 1000,
                        expires_unix: s.expires_unix_ms / 1000,
                    })
                    .collect();
                let steps = self
                    .gk
                    .tracker()
                    .doors()
                    .iter()
                    .find(|t| t.name == d.name)
                    .map_or(0, |t| t.sequence.len());
                status::DoorStatus {
                    name: d.name.clone(),
                    actions,
                    steps,
                    open,
                    last_opened_unix: self.gk.history().last_opened(&d.name),
                }
            })
            .collect();
        let (relays, led, gpio) = match &self.outputs {
            Some(o) => {
                let (r, l, g) = o.view(now, self.backends.clock.wall());
                (r, l, Some(g))
            }
            None => (Vec::new(), None, None),
        };
        let state = self.journal.as_ref().and_then(|j| j.parent()).map(|dir| {
            let errors: Vec<&str> = self
                .report
                .state_errors
                .values()
                .map(String::as_str)
                .collect();
            let error = (!errors.is_empty()).then(|| errors.join("; "));
            status::StateStatus {
                dir: dir.display().to_string(),
                writable: error.is_none(),
                error,
            }
        });
        let mut snapshot = Snapshot {
            version: env!("CARGO_PKG_VERSION").to_string(),
            now_unix: wall,
            uptime_secs: self.report.started.map_or(0, |s| s.elapsed().as_secs()),
            // Set below, from the snapshot's parts (status::faults).
            healthy: false,
            captures,
            firewall,
            doors,
            recent: self.gk.history().recent().cloned().collect(),
            knocks_per_hour: self.gk.history().per_hour(wall),
            counters: status::Counters {
                packets,
                knocks: stats.knocks,
                stages: stats.stages,
                opens: stats.opens,
                timeouts: stats.timeouts,
                resets: stats.resets,
                evictions: stats.evictions,
                parse_errors: malformed,
                dropped_queue,
                tracked_sources: self.gk.tracker().tracked_sources() as u64,
            },
            relays,
            led,
            gpio,
            notices: self.report.notices.clone(),
            mqtt: self.page.mqtt.as_ref().map(|m| m.view()),
            state,
        };
        let faults = status::faults(&snapshot);
        snapshot.healthy = faults.is_empty();
        if let Some(m) = &self.page.mqtt {
            m.health(&faults);
        }
        self.page.board.publish(snapshot);
    }
}

/// The host's name, for the MQTT client id, topics and device (as the kernel has it).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "knockgate".into())
}
