//! Starting the daemon: the journal of open doors restored, the pid file, the GPIO, the drop
//! to the unprivileged user, the signal thread, the firewall chain reconciled, then the loop.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use tracing::{debug, error, info, warn};

use super::events;
use super::intake::Intake;
use super::report::Report;
use super::{Backends, Daemon, DaemonError, Links, Mailbox, Msg, Options, Page};
use crate::actions::flush::DailyFlush;
use crate::actions::gate::Gate;
use crate::actions::outputs::Outputs;
use crate::actions::sessions::{self, Pending, Sessions};
use crate::actions::wol;
use crate::config::Config;
use crate::doors::Dynamic;
use crate::gatekeeper::{Gatekeeper, Local};
use crate::net::watch::{LinkWatch, RulesetWatch};
use crate::status::Board;
use crate::sys::busy::Steps;

/// Runs the daemon until SIGTERM or SIGINT, on the system's backends (or `--dry-run`'s).
pub fn run(opts: Options, config: Config) -> Result<(), DaemonError> {
    let backends = if opts.dry_run {
        Backends::dry_run()
    } else {
        Backends::system()
    };
    run_with(opts, config, backends)
}

/// Runs the daemon on these backends until SIGTERM or SIGINT.
pub fn run_with(opts: Options, config: Config, mut backends: Backends) -> Result<(), DaemonError> {
    let dynamic = Dynamic::load(&config)?;
    let now = backends.clock.now();
    // The captures and what was read from them; the backends' slow steps empty the rings into
    // it while they run.
    let intake = Arc::new(Mutex::new(Intake::new(now)));
    backends.steps = Steps::draining(intake.clone());
    let (mailbox, rx) = Mailbox::new().map_err(DaemonError::Thread)?;

    let journal = if !backends.persist {
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
                let s = Sessions::restore(j, now, backends.clock.wall());
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
        sessions::save(path, &sessions.to_journal(), &backends.steps).map_err(|e| match e {
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
    let outputs = Outputs::start(&config.gpio, backends.gpio, now);
    // The kernel's announcements, subscribed to while still root.
    let watches = events::Watches {
        links: LinkWatch::open()
            .map_err(|e| {
                warn!("cannot follow interface changes through netlink ({e}): re-reading them every {}s", super::SLOW_EVERY.as_secs());
            })
            .ok(),
        ruleset: RulesetWatch::open(config.firewall.watched_table())
            .map_err(|e| debug!("no nf_tables notifications ({e}): the chain is checked periodically"))
            .ok(),
    };
    let links_watched = watches.links.is_some();
    let ruleset_watched = watches.ruleset.is_some();
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
    events::start(mailbox.clone(), watches)?;

    let has_openings = sessions
        .iter()
        .any(|s| matches!(s.pending, Pending::Close { .. }));
    let mut gate = (config.uses_firewall() || has_openings).then(|| make_gate(&config, &backends));
    if let Some(g) = &mut gate {
        // Checks follow the kernel's announcements where it makes them (iptables-nft).
        let watched = ruleset_watched
            && g.notifying_table().as_deref() == Some(config.firewall.watched_table());
        g.set_watched(watched);
        debug!(
            watched,
            "firewall chain checks follow nf_tables notifications: {watched}"
        );
    }
    // Packets accepted before the restart stay refused.
    let spa_replay = match &journal {
        Some(j) => {
            let path = j.with_file_name(crate::doors::spa::REPLAY_FILE);
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let (cache, bad) = crate::doors::spa::ReplayCache::parse(&text);
                    if bad > 0 {
                        warn!("{}: {bad} unreadable line(s) skipped", path.display());
                    }
                    cache
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
                Err(e) => {
                    warn!(
                        "cannot read {}: {e}; starting with no SPA replay cache",
                        path.display()
                    );
                    Default::default()
                }
            }
        }
        None => Default::default(),
    };
    let gk = Gatekeeper::new(
        config,
        dynamic,
        spa_replay,
        Local::Only(HashSet::new()),
        backends.clock.now(),
        backends.clock.wall(),
    );
    let mut daemon = Daemon {
        opts,
        gk,
        backends,
        sessions,
        gate,
        journal,
        intake,
        links: Links {
            addresses: BTreeMap::new(),
            watched: links_watched,
            next_read: now,
        },
        outputs,
        wake_limit: wol::RateLimit::default(),
        page: Page {
            board: Board::new(),
            server: None,
            mqtt: None,
        },
        report: Report {
            started: Some(std::time::Instant::now()),
            ..Report::default()
        },
    };
    daemon.read_notices();
    {
        let mailbox = mailbox.clone();
        daemon
            .page
            .board
            .on_request(move || mailbox.try_send(Msg::Publish));
    }
    if daemon.gk.config().status.enabled {
        daemon.start_status_page();
    }
    daemon.start_mqtt(mailbox.clone());
    let config = daemon.gk.config();
    info!(
        config = %config.origin,
        doors = config.doors.len(),
        dry_run = daemon.backends.dry_run,
        "starting up: {} door(s) from {}",
        config.doors.len(),
        config.origin
    );
    if let Some(gate) = &mut daemon.gate {
        let (removed, restored) = gate.reconcile(&daemon.sessions);
        let f = &daemon.gk.config().firewall;
        let what = match f.backend {
            crate::config::Backend::Nftables => {
                format!("sets knockgate_allow4/6 in {}", f.nft_chain)
            }
            _ => format!("chain {}", f.chain),
        };
        info!(
            backend = gate.backend(),
            "firewall: {what} ready ({removed} stale rule(s) removed, {restored} opening(s) restored)",
        );
    }
    // Doors whose time ran out while the daemon was down close before it listens.
    daemon.on_timers(daemon.backends.clock.now());
    // The interfaces as they are now; from here on, as netlink announces changes.
    daemon.refresh_interfaces();
    daemon.main_loop(rx, &mailbox.bell);
    daemon.shutdown();
    Ok(())
}

/// The firewall doors' gate, on the backend the config asks for (the no-op one for a dry run).
pub(super) fn make_gate(config: &Config, backends: &Backends) -> Gate {
    let f = &config.firewall;
    Gate::new(
        (backends.firewall)(f, &backends.steps),
        f.daily_flush.map(DailyFlush::local),
    )
}
