//! The daemon: one loop that feeds the [`Gatekeeper`] and executes what it decides.
//!
//! The loop reads the capture rings itself and takes the event thread's messages (signals,
//! netlink) from its [`Mailbox`]; it hands packets and moments (sequence timeouts, HMAC
//! windows) to the gatekeeper, which decides with no I/O and no clock, and executes the
//! [`Effect`]s it returns; its own timers are door closings, relay pulses and the firewall's
//! checks. It sleeps in one `poll(2)` on the rings and the mailbox until something arrives or
//! the next deadline: nothing runs on a fixed tick. While it waits for a slow step (iptables,
//! an fsync), its [`Intake`] keeps emptying the rings ([`crate::sys::busy`]); every packet is
//! handled in arrival order from there. It runs commands, keeps open doors in [`Sessions`]
//! and writes the journal after every change, so a restart or a SIGKILL never loses a pending
//! close. SIGHUP reloads the config here, in the loop (never in a signal handler); an invalid
//! new config is logged and the old one kept. SIGTERM/SIGINT close every open door and exit.
//!
//! Here: the loop and its handlers. [`startup`] starts it, [`events`] is the thread that
//! waits for signals and the kernel's announcements, [`execute`] runs the effects and a door's
//! plan through the backends, [`interfaces`] follows the interfaces and their addresses, and
//! [`report`] builds the status page's snapshot when a page asks.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::EventFd;

use signal_hook::consts::SIGHUP;
use tracing::{debug, error, info, warn};

use crate::actions::gate::Gate;
use crate::actions::outputs::Outputs;
use crate::actions::sessions::{self, Pending, Sessions};
use crate::actions::wol;
use crate::config::{self, Config};
use crate::doors::{Dynamic, SourceError};
use crate::gatekeeper::{Effect, Gatekeeper};
use crate::net::capture::{Capture, Change, Packet};
use crate::net::watch::News;
use crate::status::{self, Board};
use crate::time::Instant;

mod backends;
mod events;
mod execute;
mod intake;
mod interfaces;
mod report;
mod startup;

pub use backends::Backends;
use intake::Intake;
use report::Report;
use startup::make_gate;
pub use startup::{run, run_with};

/// How often the interfaces are re-read when netlink cannot announce their changes.
const SLOW_EVERY: Duration = Duration::from_secs(10);
/// Bound of the mailbox, in messages (signals, netlink news, status page requests: a burst of
/// netlink notifications is one message, and a full mailbox makes the event thread wait).
const QUEUE: usize = 64;
/// At most this many packets read from one ring before the loop looks at its mailbox, its
/// timers and the other rings again.
const BATCH: usize = 512;

/// How the daemon was started.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--config`; None means the default path, or the built-in config if it is missing.
    pub config_path: Option<PathBuf>,
    /// `--interface`, overriding the config's interfaces.
    pub interfaces: Vec<String>,
    pub dry_run: bool,
    /// Where this boot's setup problems are (`knockgate bootfiles`), shown on the status page.
    pub notices_dir: Option<PathBuf>,
}

/// Errors that stop the daemon from starting.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The state directory cannot be created or written: the daemon could not keep its promise
    /// to close doors after a restart. Fix its permissions or free disk space.
    #[error("state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the pid file {path}: {source}")]
    PidFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Doors(#[from] SourceError),
    #[error(transparent)]
    Privileges(#[from] crate::sys::privs::PrivError),
    #[error("cannot start a thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Reads the config as `run` and `check` do: an explicit path must exist; the default path
/// falls back to the built-in config when the file is missing.
pub fn load_config(explicit: Option<&Path>) -> Result<Config, config::ConfigError> {
    match explicit {
        Some(path) => config::load(path),
        None => {
            let path = Path::new(config::DEFAULT_CONFIG_PATH);
            if path.exists() {
                config::load(path)
            } else {
                Ok(config::builtin())
            }
        }
    }
}

enum Msg {
    Signal(i32),
    /// Links or addresses changed (rtnetlink).
    Links(News),
    /// The chain's nf_tables table changed (or notifications were lost).
    Ruleset,
    /// The status page wants a snapshot.
    Publish,
    /// Home Assistant asks a relay to switch, or a wake-on-LAN packet (MQTT).
    Relay(crate::mqtt::Command),
}

/// The loop's mailbox, as its senders see it: a bounded channel, and an eventfd rung after
/// each message so the loop waits for mail and for the capture rings in one `poll(2)`.
#[derive(Clone)]
struct Mailbox {
    tx: SyncSender<Msg>,
    bell: Arc<EventFd>,
}

impl Mailbox {
    fn new() -> std::io::Result<(Mailbox, Receiver<Msg>)> {
        use nix::sys::eventfd::EfdFlags;
        let bell = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        Ok((
            Mailbox {
                tx,
                bell: Arc::new(bell),
            },
            rx,
        ))
    }

    /// Sends, waiting while the mailbox is full. False once the loop is gone.
    fn send(&self, msg: Msg) -> bool {
        let sent = self.tx.send(msg).is_ok();
        if sent {
            let _ = self.bell.write(1);
        }
        sent
    }

    /// Sends unless the mailbox is full.
    fn try_send(&self, msg: Msg) -> bool {
        let sent = self.tx.try_send(msg).is_ok();
        if sent {
            let _ = self.bell.write(1);
        }
        sent
    }
}

struct Daemon {
    opts: Options,
    /// What is decided about packets and moments: the config, the doors, bans, history.
    gk: Gatekeeper,
    /// The clock, commands, wake-on-LAN, interfaces, firewall and GPIO (real, or --dry-run's).
    backends: Backends,
    sessions: Sessions,
    /// Firewall doors; None when no door uses the firewall (nothing is touched then).
    gate: Option<Gate>,
    journal: Option<PathBuf>,
    /// The captures, their counters, and what was read from them but not handled yet
    /// (shared with the drain that empties the rings while the loop waits for a slow step).
    intake: Arc<Mutex<Intake>>,
    /// The interfaces and their addresses as last read.
    links: Links,
    /// Relays and the status LED, when configured.
    outputs: Option<Outputs>,
    wake_limit: wol::RateLimit,
    page: Page,
    report: Report,
}

/// The interfaces and their addresses as last read ([`interfaces`]).
struct Links {
    /// Addresses of the captured interfaces, by interface.
    addresses: BTreeMap<String, Vec<IpAddr>>,
    /// Interface changes are announced by netlink (else re-read every [`SLOW_EVERY`]).
    watched: bool,
    /// The next re-read, when netlink cannot announce changes.
    next_read: Instant,
}

/// What the owner's own systems see: the status page (where it reads what the daemon is
/// doing, and its server) and Home Assistant's MQTT client.
struct Page {
    board: Board,
    server: Option<status::StatusServer>,
    mqtt: Option<crate::mqtt::client::Mqtt>,
}

impl Daemon {
    /// The captures and their backlog. The loop's slow steps lock it too, to drain the rings
    /// while they run; they run on the loop's thread and never while the loop holds it.
    fn intake(&self) -> MutexGuard<'_, Intake> {
        self.intake.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn main_loop(&mut self, rx: Receiver<Msg>, bell: &EventFd) {
        // The packets of one batch, reused: no allocation per packet or per block.
        let mut packets: Vec<Packet> = Vec::with_capacity(BATCH);
        // Captures left with packets (a full batch was read): read again without waiting,
        // whatever poll(2) says of a block libpcap has begun.
        let mut again: Vec<Arc<str>> = Vec::new();
        loop {
            let now = self.backends.clock.now();
            self.intake().now = now;
            self.on_timers(now);
            if self.open_due_captures(now) {
                // A new or returning interface may have brought addresses.
                self.refresh_interfaces();
            }
            // What was taken in while the timers ran iptables.
            self.on_backlog(&mut packets);
            let retry = self
                .intake()
                .captures
                .values()
                .filter_map(Capture::retry_at)
                .min();
            let wake = [
                self.gk.poll_at(),
                self.sessions.poll_at(),
                self.outputs.as_ref().and_then(Outputs::poll_at),
                self.gate.as_ref().and_then(Gate::poll_at),
                self.slow_at(),
                retry,
            ]
            .into_iter()
            .flatten()
            .min();
            let timeout = if !again.is_empty() {
                Duration::ZERO
            } else {
                // Nothing scheduled: sleep until something arrives.
                wake.map_or(Duration::MAX, |w| w.saturating_since(now))
            };
            let mut ready = self.wait(bell, timeout);
            for name in again.drain(..) {
                if !ready.contains(&name) {
                    ready.push(name);
                }
            }
            // The mail first: a reload or a shutdown applies before what the rings hold.
            loop {
                match rx.try_recv() {
                    Ok(msg) => {
                        if !self.on_msg(msg) {
                            return;
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            self.on_backlog(&mut packets);
            for name in ready {
                let n = self.intake().read(&name, BATCH);
                if n >= BATCH {
                    again.push(name);
                }
                self.on_backlog(&mut packets);
            }
        }
    }

    /// Handles the packets read from the rings, in order, until none is left (handling them
    /// may run a slow step, during which more are taken in), and the captures' changes.
    fn on_backlog(&mut self, packets: &mut Vec<Packet>) {
        let mut changes = Vec::new();
        loop {
            packets.clear();
            if !self.intake().take(BATCH, packets, &mut changes) {
                return;
            }
            let now = self.backends.clock.now();
            self.on_packets(now, packets);
            for (name, change) in changes.drain(..) {
                self.on_change(&name, change);
            }
        }
    }

    /// Sleeps in `poll(2)` until mail, packets in a ring, or `timeout`. Returns the captures
    /// whose ring has something (or an error) to read, none if interrupted; empties the bell.
    fn wait(&self, bell: &EventFd, timeout: Duration) -> Vec<Arc<str>> {
        let intake = self.intake();
        let open: Vec<&Capture> = intake.captures.values().filter(|c| c.is_open()).collect();
        let mut fds = Vec::with_capacity(open.len() + 1);
        fds.push(PollFd::new(bell.as_fd(), PollFlags::POLLIN));
        fds.extend(
            open.iter()
                .filter_map(|c| c.fd())
                .map(|fd| PollFd::new(fd, PollFlags::POLLIN)),
        );
        // Rounded up to a millisecond, so a deadline is never woken for early; anything past
        // poll's range (about 24 days) is "no timeout".
        let ms = timeout.as_micros().div_ceil(1000);
        let timeout = i32::try_from(ms).map_or(PollTimeout::NONE, |ms| {
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::NONE)
        });
        if poll(&mut fds, timeout).is_err() {
            return Vec::new(); // EINTR: the loop looks again
        }
        if fds[0].any().unwrap_or(false) {
            let _ = bell.read();
        }
        let ready = fds[1..]
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()));
        open.iter()
            .zip(ready)
            .filter(|(_, ready)| *ready)
            .map(|(c, _)| c.iface.clone())
            .collect()
    }

    /// Applies one message; false when the daemon must stop.
    fn on_msg(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Signal(SIGHUP) => self.reload(),
            Msg::Signal(sig) => {
                info!(signal = sig, "received signal {sig}");
                return false;
            }
            Msg::Links(news) => {
                if news == News::Lost {
                    debug!("interface notifications were lost: re-reading everything");
                }
                let now = self.backends.clock.now();
                for c in self.intake().captures.values_mut() {
                    c.nudge(now);
                }
                self.refresh_interfaces();
            }
            Msg::Ruleset => {
                let now = self.backends.clock.now();
                if let Some(gate) = &mut self.gate {
                    gate.changed_outside(now);
                }
            }
            Msg::Publish => {
                let now = self.backends.clock.now();
                self.publish(now);
            }
            Msg::Relay(command) => {
                let now = self.backends.clock.now();
                self.on_command(now, command);
            }
        }
        true
    }

    /// Opens the captures whose retry time has come. Returns whether one opened.
    fn open_due_captures(&mut self, now: Instant) -> bool {
        let mut changes = Vec::new();
        for (name, c) in &mut self.intake().captures {
            if let Some(change) = c.open_if_due(now) {
                changes.push((name.clone(), change));
            }
        }
        let opened = changes.iter().any(|(_, c)| matches!(c, Change::Up(_)));
        for (name, change) in changes {
            self.on_change(&name, change);
        }
        opened
    }

    /// When the interfaces must be re-read, if netlink does not announce their changes.
    fn slow_at(&self) -> Option<Instant> {
        (!self.links.watched).then_some(self.links.next_read)
    }

    fn on_timers(&mut self, now: Instant) {
        let mut fx = Vec::new();
        self.gk.poll(now, self.backends.clock.wall(), &mut fx);
        self.apply(now, &mut fx);
        let due = self.sessions.take_due(now);
        if !due.is_empty() {
            for s in due {
                self.tell(crate::mqtt::EventKind::Timeout, &s.door, s.src);
                match s.pending {
                    Pending::Stop { argv } => {
                        info!(src = %s.src, door = %s.door, "{}: {}: command timeout", s.src, s.door);
                        self.backends.commands.spawn(&s.door, argv);
                    }
                    Pending::Close { grant } => {
                        if let Some(gate) = &mut self.gate {
                            gate.close(&grant, "time is up");
                        }
                    }
                }
            }
            self.save_journal();
        }
        if let Some(o) = &mut self.outputs {
            let problem = self.report.captures.values().any(|(up, _)| !up)
                || self.gate.as_ref().is_some_and(|g| !g.healthy())
                || !self.report.state_errors.is_empty();
            o.set_error(now, problem);
            o.poll(now);
        }
        self.tell_relays(now);
        if let Some(gate) = &mut self.gate {
            gate.retry_if_unhealthy(now);
            if gate.poll_at().is_some_and(|t| now >= t)
                && gate.tick(&mut self.sessions, now, self.backends.clock.wall())
            {
                self.save_journal();
            }
        }
        if self.slow_at().is_some_and(|t| now >= t) {
            self.refresh_interfaces();
        }
        if now >= self.links.next_read {
            self.links.next_read = now + SLOW_EVERY;
        }
    }

    /// Knocks and SPA datagrams, in arrival order, each decided and its effects executed
    /// before the next.
    fn on_packets(&mut self, now: Instant, packets: &[Packet]) {
        // Effects of the batch's packets, one packet's at a time (allocated only if any).
        let mut fx = Vec::new();
        let wall = self.backends.clock.wall();
        for packet in packets {
            self.gk.on_packet(now, wall, packet, &mut fx);
            if !fx.is_empty() {
                self.apply(now, &mut fx);
            }
        }
    }

    fn on_change(&mut self, iface: &str, change: Change) {
        match change {
            Change::Up(link) => {
                info!(interface = %iface, ?link, "listening on {iface}");
                self.report.captures.insert(iface.to_string(), (true, None));
            }
            Change::Down(error) => {
                warn!(interface = %iface, "{error}; retrying");
                self.report
                    .captures
                    .insert(iface.to_string(), (false, Some(error.to_string())));
            }
        }
    }

    fn save_journal(&mut self) {
        self.tell_doors();
        if let Some(path) = &self.journal {
            let result = sessions::save(path, &self.sessions.to_journal(), &self.backends.steps);
            if let Err(e) = &result {
                error!("cannot save open doors: {e}; they stay scheduled in memory");
            }
            self.report
                .state_written(sessions::JOURNAL_FILE, result.err().map(|e| e.to_string()));
        }
    }

    /// Writes the SPA replay cache to the state directory (atomically), if the daemon keeps
    /// state.
    fn save_spa_replay(&mut self) {
        let Some(dir) = self.journal.as_ref().and_then(|j| j.parent()) else {
            return;
        };
        let path = dir.join(crate::doors::spa::REPLAY_FILE);
        let text = self.gk.spa_replay().to_text();
        let result = crate::sys::fsutil::write_atomic(&path, text.as_bytes(), &self.backends.steps);
        if let Err(e) = &result {
            error!(
                "cannot save the SPA replay cache {}: {e}; it is kept in memory",
                path.display()
            );
        }
        self.report.state_written(
            crate::doors::spa::REPLAY_FILE,
            result.err().map(|e| format!("{}: {e}", path.display())),
        );
    }

    fn reload(&mut self) {
        let path = self
            .opts
            .config_path
            .clone()
            .unwrap_or_else(|| PathBuf::from(config::DEFAULT_CONFIG_PATH));
        info!("re-reading config file: {}", path.display());
        self.read_notices();
        if let Some(o) = &mut self.outputs {
            o.retry_now(self.backends.clock.now());
        }
        let loaded = load_config(self.opts.config_path.as_deref())
            .map_err(|e| e.to_string())
            .and_then(|c| Dynamic::load(&c).map(|o| (c, o)).map_err(|e| e.to_string()));
        match loaded {
            Ok((new, dynamic)) => {
                let old = self.gk.config();
                if new.daemon.log_file != old.daemon.log_file
                    || new.daemon.state_dir != old.daemon.state_dir
                {
                    warn!("log_file and state_dir changes take effect at the next restart");
                }
                if self.gate.is_none() && new.uses_firewall() {
                    let mut gate = make_gate(&new, &self.backends);
                    gate.reconcile(&self.sessions);
                    self.gate = Some(gate);
                } else if self.gate.is_some() && new.firewall != old.firewall {
                    warn!("[firewall] changes take effect at the next restart");
                }
                if new.gpio != old.gpio {
                    warn!("[gpio], [[relay]] and [led] changes take effect at the next restart");
                }
                if let Some(gate) = &mut self.gate {
                    gate.reconcile(&self.sessions);
                }
                let doors = new.doors.len();
                let (now, wall) = (self.backends.clock.now(), self.backends.clock.wall());
                let mut fx = Vec::new();
                self.gk.reload(new, dynamic, now, wall, &mut fx);
                self.reconfigure_mqtt();
                // The interfaces are re-read below in any case.
                fx.retain(|e| *e != Effect::Refilter);
                self.apply(now, &mut fx);
                self.refresh_interfaces();
                info!(doors, "config reloaded");
            }
            Err(e) => error!("config reload failed, keeping the current config: {e}"),
        }
    }

    fn shutdown(&mut self) {
        self.intake().captures.clear();
        if let Some(o) = &mut self.outputs {
            o.shutdown();
        }
        if let Some(server) = self.page.server.take() {
            server.stop();
        }
        let open = self.sessions.take_all();
        for s in open {
            info!(src = %s.src, door = %s.door, "{}: {}: closing at shutdown", s.src, s.door);
            let argv = match s.pending {
                Pending::Close { grant } => {
                    if let Some(gate) = &mut self.gate {
                        gate.close(&grant, "shutdown");
                    }
                    continue;
                }
                Pending::Stop { argv } => argv,
            };
            self.backends
                .commands
                .run(&s.door, &argv, Duration::from_secs(10));
        }
        self.save_journal();
        if let Some(pid) = &self.gk.config().daemon.pid_file {
            let _ = std::fs::remove_file(pid);
        }
        info!("shutting down");
    }
}
