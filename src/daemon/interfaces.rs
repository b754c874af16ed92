//! The interfaces the daemon listens on: re-read when rtnetlink announces a change (a DHCP
//! renewal, a new address, a hot-plugged wlan0), with a capture opened, closed or re-filtered
//! to match.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::PoisonError;
use std::time::Duration;

use tracing::{debug, info};

use super::Daemon;
use crate::config::Interfaces;
use crate::gatekeeper::Local;
use crate::net::capture::{Capture, FilterSpec};

/// How long a capture waits at most before trying to reopen a missing interface: long
/// when link announcements nudge it ([`Capture::nudge`]), short when nothing would.
const RETRY_WATCHED: Duration = Duration::from_secs(30);
const RETRY_UNWATCHED: Duration = Duration::from_secs(1);

impl Daemon {
    /// Re-reads interfaces and addresses; starts, stops and re-filters captures to match.
    pub(super) fn refresh_interfaces(&mut self) {
        let system = self.backends.interfaces.interfaces();
        let wanted: BTreeSet<String> = if !self.opts.interfaces.is_empty() {
            self.opts.interfaces.iter().cloned().collect()
        } else {
            match &self.gk.config().daemon.interfaces {
                Interfaces::Named(names) => names.iter().cloned().collect(),
                Interfaces::Auto => system
                    .values()
                    .filter(|i| i.up && !i.loopback && !i.addresses.is_empty())
                    .map(|i| i.name.clone())
                    .collect(),
            }
        };
        let intake = self.intake.clone();
        intake
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .captures
            .retain(|name, _| {
                let keep = wanted.contains(name);
                if !keep {
                    info!(interface = %name, "no longer listening on {name}");
                }
                keep
            });
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
            if self.links.addresses.get(name) != Some(list) {
                let shown: Vec<String> = list.iter().map(IpAddr::to_string).collect();
                info!(interface = %name, "{name}: knocks count when sent to [{}]", shown.join(", "));
            }
        }
        let all: HashSet<IpAddr> = addresses.values().flatten().copied().collect();
        let mut local: Vec<IpAddr> = all.iter().copied().collect();
        local.sort();
        self.gk.set_local(Local::Only(all));
        self.links.addresses = addresses;
        let config = self.gk.config();
        let mut targets: Vec<IpAddr> = config.doors.iter().filter_map(|d| d.target).collect();
        targets.sort();
        targets.dedup();
        let spa_ports = self.gk.spa_ports();
        let mut udp_ports: Vec<u16> = self.gk.udp_ports().into_iter().collect();
        udp_ports.extend(&spa_ports);
        udp_ports.sort();
        udp_ports.dedup();
        let filter = FilterSpec {
            local,
            targets,
            udp_ports,
            spa_ports,
        };
        let now = self.backends.clock.now();
        let mut changes = Vec::new();
        let mut intake = intake.lock().unwrap_or_else(PoisonError::into_inner);
        let intake = &mut *intake;
        for name in &wanted {
            match intake.captures.get_mut(name) {
                Some(c) => {
                    let (changed, change) = c.set_filter(&filter, now);
                    if changed {
                        debug!(interface = %name, ?filter, "addresses or doors changed");
                    }
                    changes.extend(change.map(|c| (name.clone(), c)));
                }
                None => {
                    let retry_max = if self.links.watched {
                        RETRY_WATCHED
                    } else {
                        RETRY_UNWATCHED
                    };
                    let mut c = Capture::new(name, filter.clone(), retry_max, now);
                    changes.extend(c.open_if_due(now).map(|c| (name.clone(), c)));
                    intake.captures.insert(name.clone(), c);
                }
            }
        }
        for c in intake.captures.values_mut() {
            c.count_drops(&intake.counters);
        }
        let malformed = intake.counters.malformed.load(Ordering::Relaxed);
        let full = intake.counters.queue_full.load(Ordering::Relaxed);
        for (name, change) in changes {
            self.on_change(&name, change);
        }
        debug!(
            malformed,
            queue_full = full,
            tracked = self.gk.tracker().tracked_sources(),
            "counters"
        );
    }
}
