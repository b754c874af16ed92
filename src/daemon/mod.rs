//! The daemon: one loop that owns all state.
//!
//! Capture threads and the signal thread feed one bounded channel; the loop applies knocks,
//! timers (sequence timeouts, door closings, the address refresh) and signals in order. The
//! engine decides, the loop acts: it runs commands, keeps open doors in [`Sessions`] and writes
//! the journal after every change, so a restart or a SIGKILL never loses a pending close.
//! SIGHUP reloads the config here, in the loop (never in a signal handler); an invalid new
//! config is logged and the old one kept. SIGTERM/SIGINT close every open door and exit.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use tracing::{debug, error, info, warn};

use crate::actions::command;
use crate::actions::firewall::{iptables::Iptables, Firewall, Noop};
use crate::actions::flush::DailyFlush;
use crate::actions::gate::Gate;
use crate::actions::outputs::Outputs;
use crate::actions::plan::{self, Action};
use crate::actions::sessions::{self, Pending, Sessions};
use crate::actions::wol;
use crate::config::{self, Backend, Config, Interfaces};
use crate::doors::{Dynamic, Origin, SourceError};
use crate::engine::limits::{LogLimit, Penalties, Verdict};
use crate::engine::{Event, Tracker};
use crate::knock::Proto;
use crate::net::capture::{self, Capture, CaptureEvent, Counters, FilterSpec};
use crate::status::{self, Activity, ActivityKind, Board, Snapshot};
use crate::time::{Instant, MonotonicClock};

/// How often interfaces and their addresses are re-read (DHCP renewals, hot-plugged wlan0).
const REFRESH_EVERY: Duration = Duration::from_secs(2);
/// How often the status page's snapshot is refreshed (it counts time left from it).
const PUBLISH_EVERY: Duration = Duration::from_secs(1);
/// Bound of the channel from the capture threads.
const QUEUE: usize = 8192;

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
    Capture(CaptureEvent),
    Signal(i32),
}

impl From<CaptureEvent> for Msg {
    fn from(e: CaptureEvent) -> Self {
        Msg::Capture(e)
    }
}

struct Daemon {
    opts: Options,
    config: Config,
    /// One-time lists and HMAC secrets: the doors whose sequences change.
    dynamic: Dynamic,
    /// For each engine door, the config door (and HMAC window) it stands for.
    origin: Vec<Origin>,
    /// When the HMAC windows change next.
    next_window: Option<Instant>,
    clock: MonotonicClock,
    tracker: Tracker,
    sessions: Sessions,
    /// Firewall doors; None when no door uses the firewall (nothing is touched then).
    gate: Option<Gate>,
    journal: Option<PathBuf>,
    captures: BTreeMap<String, Capture>,
    /// Addresses of the captured interfaces, all together and by interface.
    local: HashSet<IpAddr>,
    addresses: BTreeMap<String, Vec<IpAddr>>,
    counters: Arc<Counters>,
    tx: SyncSender<Msg>,
    events: Vec<Event>,
    next_refresh: Instant,
    /// Relays and the status LED, when configured.
    outputs: Option<Outputs>,
    wake_limit: wol::RateLimit,
    /// Where the status page reads what the daemon is doing.
    board: Board,
    report: Report,
    next_publish: Instant,
    server: Option<status::StatusServer>,
    /// Sources ignored after too many failed attempts.
    penalties: Penalties,
    /// Per-knock log lines (stages, timeouts, bans) are rate-limited: a scan cannot fill the
    /// SD card.
    log_limit: LogLimit,
}

/// Per-knock log lines: a burst of this many, then this many per second.
const LOG_BURST: u32 = 50;
const LOG_PER_SECOND: u32 = 5;

/// What the status page shows beyond the live state: history and capture health.
#[derive(Default)]
struct Report {
    started: Option<std::time::Instant>,
    recent: std::collections::VecDeque<Activity>,
    /// (hour since the Unix epoch, accepted knock steps in it), oldest first, at most 24.
    hourly: std::collections::VecDeque<(u64, u32)>,
    last_opened: BTreeMap<String, u64>,
    /// Per interface: up, and the last error.
    captures: BTreeMap<String, (bool, Option<String>)>,
    /// Boot-time setup problems ([`crate::cli::bootfiles::NOTICES_DIR`]), read at start and reload.
    notices: Vec<String>,
}

impl Report {
    fn record(&mut self, src: IpAddr, door: &str, event: ActivityKind, stage: usize, of: usize) {
        let now = sessions::unix_ms(SystemTime::now()) / 1000;
        if matches!(event, ActivityKind::Stage | ActivityKind::Open) {
            let hour = now / 3600;
            match self.hourly.back_mut() {
                Some((h, n)) if *h == hour => *n += 1,
                _ => self.hourly.push_back((hour, 1)),
            }
            while self.hourly.front().is_some_and(|(h, _)| *h + 24 <= hour) {
                self.hourly.pop_front();
            }
        }
        if event == ActivityKind::Open {
            self.last_opened.insert(door.to_string(), now);
        }
        self.recent.push_front(Activity {
            when_unix: now,
            src,
            lan: status::is_lan(src),
            door: door.to_string(),
            event,
            stage,
            of,
        });
        self.recent.truncate(status::RECENT);
    }

    /// Knocks per hour over the last 24 hours, oldest first.
    fn per_hour(&self, now_unix: u64) -> Vec<u32> {
        let hour = now_unix / 3600;
        (0..24u64)
            .rev()
            .map(|ago| {
                self.hourly
                    .iter()
                    .find(|(h, _)| *h + ago == hour)
                    .map_or(0, |(_, n)| *n)
            })
            .collect()
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(opts: Options, config: Config) -> Result<(), DaemonError> {
    let dynamic = Dynamic::load(&config)?;
    let clock = MonotonicClock::new();
    let now = clock.now();
    let (tx, rx) = mpsc::sync_channel::<Msg>(QUEUE);

    let journal = if opts.dry_run {
        None
    } else {
        let dir = &config.daemon.state_dir;
        let io = |source| DaemonError::StateDir {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        Some(dir.join(sessions::JOURNAL_FILE))
    };
    let sessions = match &journal {
        Some(path) => match sessions::load(path) {
            Ok(j) => {
                let s = Sessions::restore(j, now, SystemTime::now());
                if !s.is_empty() {
                    info!(
                        open = s.len(),
                        "restored {} open door(s) from {}",
                        s.len(),
                        path.display()
                    );
                }
                s
            }
            Err(e @ sessions::JournalError::Corrupt { .. }) => {
                error!("{e}; starting with no open doors");
                Sessions::new()
            }
            Err(sessions::JournalError::Io { path, source }) => {
                return Err(DaemonError::StateDir { path, source })
            }
        },
        None => Sessions::new(),
    };
    if let Some(path) = &journal {
        // Proves the directory is writable before anything depends on it.
        sessions::save(path, &sessions.to_journal()).map_err(|e| match e {
            sessions::JournalError::Io { path, source } => DaemonError::StateDir { path, source },
            other => DaemonError::StateDir {
                path: path.clone(),
                source: std::io::Error::other(other.to_string()),
            },
        })?;
    }
    if let Some(pid) = &config.daemon.pid_file {
        std::fs::write(pid, format!("{}\n", std::process::id())).map_err(|source| {
            DaemonError::PidFile {
                path: pid.clone(),
                source,
            }
        })?;
    }

    // A GPIO that cannot be opened now is retried later, and never stops the doors.
    let outputs = Outputs::start(&config.gpio, opts.dry_run, now);
    // Everything above needed root; from here on the daemon runs as [daemon] user, if set,
    // with only the capabilities it needs. No thread exists yet: all inherit this.
    if let Some(name) = &config.daemon.user {
        let target = crate::sys::privs::lookup(name)?;
        if journal.is_some() {
            crate::sys::privs::hand_over(&config.daemon.state_dir, &target).map_err(|source| {
                DaemonError::StateDir {
                    path: config.daemon.state_dir.clone(),
                    source,
                }
            })?;
        }
        let low_port = config.status.enabled && config.status.listen.port() < 1024;
        crate::sys::privs::drop_to(&target, &crate::sys::privs::needed(low_port))?;
        info!(user = %name, "running as {name}, with only the capabilities it needs");
    }
    let signals_tx = tx.clone();
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGTERM, SIGINT])
        .map_err(DaemonError::Thread)?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if signals_tx.send(Msg::Signal(sig)).is_err() {
                    return;
                }
            }
        })
        .map_err(DaemonError::Thread)?;

    let doorset = dynamic.doors(&config, unix_now());
    let tracker = Tracker::new(doorset.specs, config.daemon.max_sources);
    let has_openings = sessions
        .iter()
        .any(|s| matches!(s.pending, Pending::Close { .. }));
    let gate = (config.uses_firewall() || has_openings).then(|| make_gate(&config, opts.dry_run));
    let (config_penalties, config_max_sources) =
        (config.daemon.penalties, config.daemon.max_sources);
    let mut daemon = Daemon {
        opts,
        config,
        dynamic,
        origin: doorset.origin,
        next_window: None,
        clock,
        tracker,
        sessions,
        gate,
        journal,
        captures: BTreeMap::new(),
        local: HashSet::new(),
        addresses: BTreeMap::new(),
        counters: Arc::new(Counters::default()),
        tx,
        events: Vec::new(),
        next_refresh: now,
        outputs,
        wake_limit: wol::RateLimit::default(),
        board: Board::new(),
        report: Report {
            started: Some(std::time::Instant::now()),
            ..Report::default()
        },
        next_publish: now,
        server: None,
        penalties: Penalties::new(config_penalties, config_max_sources),
        log_limit: LogLimit::new(LOG_BURST, LOG_PER_SECOND),
    };
    daemon.read_notices();
    if daemon.config.status.enabled {
        daemon.start_status_page();
    }
    daemon.rebuild_doors(now);
    info!(
        config = %daemon.config.origin,
        doors = daemon.config.doors.len(),
        dry_run = daemon.opts.dry_run,
        "starting up: {} door(s) from {}",
        daemon.config.doors.len(),
        daemon.config.origin
    );
    if let Some(gate) = &mut daemon.gate {
        let (removed, restored) = gate.reconcile(&daemon.sessions);
        info!(
            backend = gate.backend(),
            chain = %daemon.config.firewall.chain,
            "firewall: chain {} ready ({removed} stale rule(s) removed, {restored} opening(s) restored)",
            daemon.config.firewall.chain
        );
    }
    daemon.main_loop(rx);
    daemon.shutdown();
    Ok(())
}

fn unix_now() -> u64 {
    sessions::unix_ms(SystemTime::now()) / 1000
}

/// The firewall backend the config asks for (a no-op one with `--dry-run`).
fn make_gate(config: &Config, dry_run: bool) -> Gate {
    let f = &config.firewall;
    let fw: Box<dyn Firewall> = if dry_run || f.backend == Backend::None {
        Box::new(Noop)
    } else {
        Box::new(Iptables::new(&f.chain, f.jump_position))
    };
    Gate::new(fw, f.daily_flush.map(DailyFlush::local))
}

impl Daemon {
    fn main_loop(&mut self, rx: Receiver<Msg>) {
        loop {
            let now = self.clock.now();
            self.on_timers(now);
            let wake = [
                self.tracker.poll_at(),
                self.sessions.poll_at(),
                self.outputs.as_ref().and_then(Outputs::poll_at),
                Some(self.next_refresh),
                self.server.as_ref().map(|_| self.next_publish),
                self.next_window,
            ]
            .into_iter()
            .flatten()
            .min()
            .expect("the refresh is always scheduled");
            let wait = wake.saturating_since(now);
            match rx.recv_timeout(wait) {
                Ok(Msg::Capture(event)) => self.on_capture(event),
                Ok(Msg::Signal(SIGHUP)) => self.reload(),
                Ok(Msg::Signal(sig)) => {
                    info!(signal = sig, "received signal {sig}");
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn on_timers(&mut self, now: Instant) {
        let mut events = std::mem::take(&mut self.events);
        events.clear();
        self.tracker.poll(now, &mut events);
        self.handle(now, &events);
        self.events = events;
        let due = self.sessions.take_due(now);
        if !due.is_empty() {
            for s in due {
                match s.pending {
                    Pending::Stop { argv } => {
                        info!(src = %s.src, door = %s.door, "{}: {}: command timeout", s.src, s.door);
                        command::spawn(&s.door, argv, self.opts.dry_run);
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
                || self.gate.as_ref().is_some_and(|g| !g.healthy());
            o.set_error(now, problem);
            o.poll(now);
        }
        if self.next_window.is_some_and(|t| now >= t) {
            self.rebuild_doors(now);
        }
        if self.server.is_some() && now >= self.next_publish {
            self.publish(now);
            self.next_publish = now + PUBLISH_EVERY;
        }
        if now >= self.next_refresh {
            let held_back = self.log_limit.take_suppressed();
            if held_back > 0 {
                info!(
                    held_back,
                    "{held_back} knock log line(s) held back by the rate limit"
                );
            }
            self.refresh_interfaces();
            if let Some(gate) = &mut self.gate {
                if gate.tick(&mut self.sessions, now, SystemTime::now()) {
                    self.save_journal();
                }
            }
            self.next_refresh = now + REFRESH_EVERY;
        }
    }

    fn on_capture(&mut self, event: CaptureEvent) {
        match event {
            CaptureEvent::Knock { knock, .. } => {
                let now = self.clock.now();
                if self.penalties.is_banned(knock.src, now) {
                    return;
                }
                let dst_is_local = self.local.contains(&knock.dst);
                let mut events = std::mem::take(&mut self.events);
                events.clear();
                self.tracker
                    .on_knock(now, &knock, dst_is_local, &mut events);
                self.handle(now, &events);
                self.events = events;
            }
            CaptureEvent::Up { iface, link } => {
                info!(interface = %iface, ?link, "listening on {iface}");
                self.report.captures.insert(iface.to_string(), (true, None));
                // A new or returning interface may have brought addresses: don't wait.
                self.refresh_interfaces();
            }
            CaptureEvent::Down { iface, error } => {
                warn!(interface = %iface, "{error}; retrying");
                self.report
                    .captures
                    .insert(iface.to_string(), (false, Some(error)));
            }
        }
    }

    fn handle(&mut self, now: Instant, events: &[Event]) {
        for event in events {
            let line = event.describe(self.tracker.doors());
            let name = |door: usize| self.tracker.doors()[door].name.clone();
            match *event {
                Event::Opened { src, door } => {
                    let name = name(door);
                    let of = self.tracker.doors()[door].sequence.len();
                    info!(%src, door = %name, "{line}");
                    self.report.record(src, &name, ActivityKind::Open, of, of);
                    if let Some(o) = &mut self.outputs {
                        o.opened(now);
                    }
                    let origin = self.origin[door];
                    if self.open(now, src, origin) {
                        self.rebuild_doors(now);
                    }
                    self.publish(now);
                }
                Event::Stage {
                    src,
                    door,
                    stage,
                    of,
                } => {
                    if self.log_limit.allow(now) {
                        info!(%src, stage, "{line}");
                    }
                    self.report
                        .record(src, &name(door), ActivityKind::Stage, stage, of);
                    if let Some(o) = &mut self.outputs {
                        o.stage(now);
                    }
                }
                Event::Timeout { src, door, stage } => {
                    if self.log_limit.allow(now) {
                        info!(%src, stage, "{line}");
                    }
                    let of = self.tracker.doors()[door].sequence.len();
                    self.report
                        .record(src, &name(door), ActivityKind::Timeout, stage, of);
                    self.penalize(src, now);
                }
                Event::Reset {
                    src, stage, reason, ..
                } => {
                    debug!(%src, stage, "{line}");
                    if matches!(reason, crate::engine::ResetReason::WrongKnock(_)) {
                        self.penalize(src, now);
                    }
                }
            }
        }
    }

    /// Starts the status page. A page that cannot start (port taken) is logged, not fatal:
    /// the doors matter more than the page.
    fn start_status_page(&mut self) {
        let cfg = status::ServerConfig {
            listen: self.config.status.listen,
            allowed_hosts: self.config.status.allowed_hosts.clone(),
        };
        match status::StatusServer::start(&cfg, self.board.clone()) {
            Ok(server) => {
                info!(listen = %server.local_addr(), "status page on http://{}/", server.local_addr());
                self.server = Some(server);
            }
            Err(e) => error!("status page not started: {e}"),
        }
    }

    /// A failed attempt of `src`: too many, and it is ignored for a while.
    fn penalize(&mut self, src: IpAddr, now: Instant) {
        if let Verdict::Banned(until) = self.penalties.failed(src, now) {
            if self.log_limit.allow(now) {
                let secs = until.saturating_since(now).as_secs();
                warn!(%src, "{src}: ignored for {secs}s after too many failed attempts");
            }
        }
    }

    /// Builds what the status page shows and publishes it.
    fn publish(&mut self, now: Instant) {
        let wall = sessions::unix_ms(SystemTime::now()) / 1000;
        let stats = self.tracker.stats();
        let captures: Vec<status::CaptureStatus> = self
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
            chain: self.config.firewall.chain.clone(),
            healthy: g.healthy(),
            next_flush_unix: g.next_flush().map(|t| t.as_second().max(0) as u64),
        });
        let doors = self
            .config
            .doors
            .iter()
            .map(|d| {
                let mut actions = Vec::new();
                for (on, what) in [
                    (d.firewall.is_some(), "firewall"),
                    (d.close.is_some(), "close"),
                    (
                        d.start_command.is_some()
                            || !matches!(d.start_command_6, config::Command6::Inherit),
                        "command",
                    ),
                    (d.gpio.is_some(), "gpio"),
                    (d.wake_on_lan.is_some(), "wake_on_lan"),
                ] {
                    if on {
                        actions.push(what.to_string());
                    }
                }
                let open = self
                    .sessions
                    .iter()
                    .filter(|s| s.door == d.name)
                    .map(|s| status::OpenSession {
                        src: s.src,
                        kind: match s.pending {
                            Pending::Close { .. } => "firewall".to_string(),
                            Pending::Stop { .. } => "command".to_string(),
                        },
                        opened_unix: s.opened_unix_ms / 1000,
                        expires_unix: s.expires_unix_ms / 1000,
                    })
                    .collect();
                let steps = self
                    .tracker
                    .doors()
                    .iter()
                    .find(|t| t.name == d.name)
                    .map_or(0, |t| t.sequence.len());
                status::DoorStatus {
                    name: d.name.clone(),
                    actions,
                    steps,
                    open,
                    last_opened_unix: self.report.last_opened.get(&d.name).copied(),
                }
            })
            .collect();
        let (relays, led, gpio) = match &self.outputs {
            Some(o) => {
                let (r, l, g) = o.view(now);
                (r, l, Some(g))
            }
            None => (Vec::new(), None, None),
        };
        let healthy = captures.iter().all(|c| c.up)
            && firewall.as_ref().is_none_or(|f| f.healthy)
            && gpio.as_ref().is_none_or(|g| g.available);
        let snapshot = Snapshot {
            version: env!("CARGO_PKG_VERSION").to_string(),
            now_unix: wall,
            uptime_secs: self.report.started.map_or(0, |s| s.elapsed().as_secs()),
            healthy,
            captures,
            firewall,
            doors,
            recent: self.report.recent.iter().cloned().collect(),
            knocks_per_hour: self.report.per_hour(wall),
            counters: status::Counters {
                packets: self.counters.packets.load(Ordering::Relaxed),
                knocks: stats.knocks,
                stages: stats.stages,
                opens: stats.opens,
                timeouts: stats.timeouts,
                resets: stats.resets,
                evictions: stats.evictions,
                parse_errors: self.counters.malformed.load(Ordering::Relaxed),
                dropped_queue: self.counters.queue_full.load(Ordering::Relaxed),
                tracked_sources: self.tracker.tracked_sources() as u64,
            },
            relays,
            led,
            gpio,
            notices: self.report.notices.clone(),
        };
        self.board.publish(snapshot);
    }

    /// Executes the plan of `src` opening the config door of engine door `origin`
    /// ([`plan::plan`]); true if a sequence was retired (the engine's doors must be rebuilt).
    fn open(&mut self, now: Instant, src: IpAddr, origin: Origin) -> bool {
        let Some(d) = self.config.doors.get(origin.door) else {
            return false;
        };
        let wall = SystemTime::now();
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
        for action in plan::plan(d, origin, src, &self.sessions, &at) {
            debug!(%src, door = name, "{src}: {name}: plan: {action}");
            match action {
                // First, and durably (a one-time line is commented out): a power cut right
                // after the door opens can never re-enable it.
                Action::Retire { origin } => {
                    retired |= self.dynamic.used(&self.config, origin, unix_now());
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
                Action::Run { argv } => command::spawn(name, argv, self.opts.dry_run),
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
    fn wake(&mut self, now: Instant, name: &str, w: &config::WakeAction) {
        let mac = wol::mac_text(w.mac);
        if !self.wake_limit.allow(now, w.mac, w.rate_limit) {
            info!(
                door = name,
                "{name}: wake-on-LAN to {mac} not sent: rate-limited"
            );
        } else if self.opts.dry_run {
            info!(
                door = name,
                "{name}: (dry run) would send wake-on-LAN to {mac}"
            );
        } else {
            match wol::send(w) {
                Ok(n) => info!(
                    door = name,
                    "{name}: wake-on-LAN sent to {mac} ({n} bytes to {}:{})", w.broadcast, w.port
                ),
                Err(e) => error!(door = name, "{name}: cannot send wake-on-LAN to {mac}: {e}"),
            }
        }
    }

    /// Gives the engine the doors' current sequences (one-time lists, HMAC windows), keeping
    /// attempts in progress on sequences that stay, and schedules the next window change.
    fn rebuild_doors(&mut self, now: Instant) {
        let unix = unix_now();
        let set = self.dynamic.doors(&self.config, unix);
        let udp = |specs: &[crate::engine::DoorSpec]| -> BTreeSet<u16> {
            specs
                .iter()
                .flat_map(|d| d.sequence.iter())
                .filter(|k| k.proto == Proto::Udp)
                .map(|k| k.port)
                .collect()
        };
        let filter_changes = udp(&set.specs) != udp(self.tracker.doors());
        self.tracker
            .set_doors(set.specs, self.config.daemon.max_sources);
        self.origin = set.origin;
        if filter_changes {
            // The capture filter passes UDP only to sequence ports: follow the new ones.
            self.refresh_interfaces();
        }
        self.next_window = self
            .dynamic
            .next_change(unix)
            .map(|at| now + Duration::from_secs(at.saturating_sub(unix)));
    }

    fn save_journal(&self) {
        if let Some(path) = &self.journal {
            if let Err(e) = sessions::save(path, &self.sessions.to_journal()) {
                error!("cannot save open doors: {e}; they stay scheduled in memory");
            }
        }
    }

    /// This boot's setup problems, for the status page.
    fn read_notices(&mut self) {
        self.report.notices = match &self.opts.notices_dir {
            Some(dir) => crate::cli::bootfiles::read_notices(dir),
            None => Vec::new(),
        };
        for n in &self.report.notices {
            warn!("setup at boot: {n}");
        }
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
            o.retry_now(self.clock.now());
        }
        let loaded = load_config(self.opts.config_path.as_deref())
            .map_err(|e| e.to_string())
            .and_then(|c| Dynamic::load(&c).map(|o| (c, o)).map_err(|e| e.to_string()));
        match loaded {
            Ok((new, dynamic)) => {
                self.dynamic = dynamic;
                if new.daemon.log_file != self.config.daemon.log_file
                    || new.daemon.state_dir != self.config.daemon.state_dir
                {
                    warn!("log_file and state_dir changes take effect at the next restart");
                }
                if self.gate.is_none() && new.uses_firewall() {
                    let mut gate = make_gate(&new, self.opts.dry_run);
                    gate.reconcile(&self.sessions);
                    self.gate = Some(gate);
                } else if self.gate.is_some() && new.firewall != self.config.firewall {
                    warn!("[firewall] changes take effect at the next restart");
                }
                if new.gpio != self.config.gpio {
                    warn!("[gpio], [[relay]] and [led] changes take effect at the next restart");
                }
                if let Some(gate) = &mut self.gate {
                    gate.reconcile(&self.sessions);
                }
                self.penalties.set_config(new.daemon.penalties);
                self.config = new;
                self.rebuild_doors(self.clock.now());
                self.refresh_interfaces();
                info!(doors = self.config.doors.len(), "config reloaded");
            }
            Err(e) => error!("config reload failed, keeping the current config: {e}"),
        }
    }

    /// Re-reads interfaces and addresses; starts, stops and re-filters captures to match.
    fn refresh_interfaces(&mut self) {
        let system = capture::interfaces();
        let wanted: BTreeSet<String> = if !self.opts.interfaces.is_empty() {
            self.opts.interfaces.iter().cloned().collect()
        } else {
            match &self.config.daemon.interfaces {
                Interfaces::Named(names) => names.iter().cloned().collect(),
                Interfaces::Auto => system
                    .values()
                    .filter(|i| i.up && !i.loopback && !i.addresses.is_empty())
                    .map(|i| i.name.clone())
                    .collect(),
            }
        };
        let gone: Vec<String> = self
            .captures
            .keys()
            .filter(|n| !wanted.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            if let Some(c) = self.captures.remove(&name) {
                info!(interface = %name, "no longer listening on {name}");
                c.stop();
            }
        }
        let addresses: BTreeMap<String, Vec<IpAddr>> = wanted
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    system
                        .get(n)
                        .map(|i| i.addresses.clone())
                        .unwrap_or_default(),
                )
            })
            .collect();
        for (name, list) in &addresses {
            if self.addresses.get(name) != Some(list) {
                let shown: Vec<String> = list.iter().map(IpAddr::to_string).collect();
                info!(interface = %name, "{name}: knocks count when sent to [{}]", shown.join(", "));
            }
        }
        self.local = addresses.values().flatten().copied().collect();
        self.addresses = addresses;
        let mut local: Vec<IpAddr> = self.local.iter().copied().collect();
        local.sort();
        let mut targets: Vec<IpAddr> = self.config.doors.iter().filter_map(|d| d.target).collect();
        targets.sort();
        targets.dedup();
        let mut udp_ports: Vec<u16> = self
            .tracker
            .doors()
            .iter()
            .flat_map(|d| d.sequence.iter())
            .filter(|k| k.proto == Proto::Udp)
            .map(|k| k.port)
            .collect();
        udp_ports.sort();
        udp_ports.dedup();
        let filter = FilterSpec {
            local,
            targets,
            udp_ports,
        };
        for name in &wanted {
            match self.captures.get(name) {
                Some(c) => {
                    if c.set_filter(&filter) {
                        debug!(interface = %name, ?filter, "addresses or doors changed");
                    }
                }
                None => match Capture::start(
                    name,
                    filter.clone(),
                    self.tx.clone(),
                    self.counters.clone(),
                ) {
                    Ok(c) => {
                        self.captures.insert(name.clone(), c);
                    }
                    Err(e) => error!(interface = %name, "cannot start capture thread: {e}"),
                },
            }
        }
        let malformed = self.counters.malformed.load(Ordering::Relaxed);
        let full = self.counters.queue_full.load(Ordering::Relaxed);
        debug!(
            malformed,
            queue_full = full,
            tracked = self.tracker.tracked_sources(),
            "counters"
        );
    }

    fn shutdown(&mut self) {
        for (_, c) in std::mem::take(&mut self.captures) {
            c.stop();
        }
        if let Some(o) = &mut self.outputs {
            o.shutdown();
        }
        if let Some(server) = self.server.take() {
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
            if self.opts.dry_run {
                command::spawn(&s.door, argv, true);
                continue;
            }
            info!(door = %s.door, "{}: running command: {}", s.door, command::display(&argv));
            match command::run_blocking(&argv, Duration::from_secs(10)) {
                Ok(command::Outcome::Exited(st)) if st.success() => {}
                Ok(other) => warn!(door = %s.door, "{}: stop command ended with {other:?}", s.door),
                Err(e) => error!(door = %s.door, "{}: cannot run stop command: {e}", s.door),
            }
        }
        self.save_journal();
        if let Some(pid) = &self.config.daemon.pid_file {
            let _ = std::fs::remove_file(pid);
        }
        info!("shutting down");
    }
}
