//! Firewall doors as the daemon runs them: openings journalled in [`Sessions`], kept equal to
//! the chain, closed on time, by a closing sequence, or by the daily flush.
//!
//! [`Gate`] owns the firewall backend and the daily flush schedule; the daemon loop calls it
//! and saves the journal when it says something changed. It never panics on a firewall
//! failure: the error is logged, counted in [`Gate::healthy`], and a check [`RETRY`] later
//! tries again. Reconciliation makes the chain equal to the journal:
//! - rules of knockgate's found in the chain but not in the journal are removed (an opening
//!   nobody can account for is closed early rather than left open);
//! - openings in the journal missing from the chain (an external `iptables -F KNOCKD`) are
//!   added back until their expiry;
//! - a missing chain or jump (or a duplicated jump) is repaired.
//!
//! When the chain is checked: at start, after a reload, [`SETTLE`] after the kernel announces
//! a change to the chain's nf_tables table ([`Gate::changed_outside`], iptables-nft), and
//! every [`CHECK_EVERY`] where no announcement comes (iptables-legacy). Nothing runs while
//! nothing happens: [`Gate::poll_at`] says when the loop must call [`Gate::tick`] next.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use tracing::{error, info, warn};

use crate::actions::firewall::{Firewall, Grant};
use crate::actions::flush::{DailyFlush, Tick};
use crate::actions::sessions::{OpenOutcome, Pending, Sessions};
use crate::time::Instant;

/// How often the chain is compared with the journal (and repaired) when the kernel does not
/// announce changes.
pub const CHECK_EVERY: Duration = Duration::from_secs(60);
/// After an announced change, the check waits this long: a burst of changes (an
/// `iptables-restore`) is one check.
pub const SETTLE: Duration = Duration::from_millis(150);
/// After a failed operation, the next check.
pub const RETRY: Duration = Duration::from_secs(5);
/// With a daily flush, how often the wall clock is looked at: a step of the clock (NTP after
/// boot on a Pi without RTC) is noticed within this.
pub const CLOCK_CHECK: Duration = Duration::from_secs(60);

pub struct Gate {
    fw: Box<dyn Firewall>,
    flush: Option<DailyFlush>,
    /// When the daily flush schedule must be looked at next.
    flush_at: Instant,
    /// When the chain is checked next; None until something happens (announced changes).
    next_check: Option<Instant>,
    /// The kernel announces changes to the chain: no periodic check.
    watched: bool,
    healthy: bool,
}

/// Logs a firewall failure and records health; the value on success.
fn note<T>(
    healthy: &mut bool,
    what: &str,
    result: Result<T, crate::actions::firewall::FirewallError>,
) -> Option<T> {
    *healthy = result.is_ok();
    result.map_err(|e| error!("firewall: {what}: {e}")).ok()
}

impl Gate {
    pub fn new(fw: Box<dyn Firewall>, flush: Option<DailyFlush>) -> Gate {
        Gate {
            fw,
            flush,
            flush_at: Instant::ZERO,
            next_check: Some(Instant::ZERO),
            watched: false,
            healthy: true,
        }
    }

    /// The nf_tables table to watch for changes, if the backend has one (see
    /// [`Firewall::notifying_table`]).
    pub fn notifying_table(&mut self) -> Option<String> {
        self.fw.notifying_table()
    }

    /// The kernel's announcements are being listened to: checks follow them, not a period.
    pub fn set_watched(&mut self, watched: bool) {
        self.watched = watched;
    }

    /// The kernel announced a change to the chain's table (ours or someone else's): check it
    /// soon.
    pub fn changed_outside(&mut self, now: Instant) {
        let at = now + SETTLE;
        if self.next_check.is_none_or(|t| t > at) {
            self.next_check = Some(at);
        }
    }

    /// A failed operation is retried by a check [`RETRY`] later, even where checks follow
    /// announcements only.
    pub fn retry_if_unhealthy(&mut self, now: Instant) {
        if !self.healthy && self.next_check.is_none() {
            self.next_check = Some(now + RETRY);
        }
    }

    /// When [`Gate::tick`] has work next.
    pub fn poll_at(&self) -> Option<Instant> {
        let flush = self.flush.as_ref().map(|_| self.flush_at);
        [self.next_check, flush].into_iter().flatten().min()
    }

    pub fn backend(&self) -> &'static str {
        self.fw.name()
    }

    /// The next daily flush, if enabled and scheduled.
    pub fn next_flush(&self) -> Option<jiff::Timestamp> {
        self.flush.as_ref().and_then(DailyFlush::next)
    }

    /// Whether the last firewall operation succeeded.
    pub fn healthy(&self) -> bool {
        self.healthy
    }

    /// Opens `grant` (made by [`crate::actions::plan`]) with a session of `duration`, or
    /// extends the knocker's opening of that door. Returns whether the sessions changed (the
    /// journal must be saved).
    pub fn open(
        &mut self,
        sessions: &mut Sessions,
        now: Instant,
        wall: SystemTime,
        grant: Grant,
        duration: Duration,
    ) -> bool {
        let (door, src) = (grant.door.clone(), grant.src);
        let door = door.as_str();
        let pending = Pending::Close {
            grant: grant.clone(),
        };
        match sessions.open(now, wall, door, src, duration, pending) {
            OpenOutcome::New => {
                if note(&mut self.healthy, "open", self.fw.open(&grant)).is_some() {
                    // (The no-op backend of --dry-run says "would open" itself.)
                    if self.fw.applies_rules() {
                        info!(%src, door, "{src}: {door}: opened {} for {}s", grant.ports, duration.as_secs());
                    }
                } else {
                    sessions.remove_close(door, src);
                }
            }
            OpenOutcome::Extended(previous) => {
                // The new rule first, then the old one goes: no gap for the knocker.
                if note(&mut self.healthy, "open", self.fw.open(&grant)).is_some() {
                    if let Pending::Close { grant: old } = previous {
                        if old != grant {
                            note(&mut self.healthy, "close", self.fw.close(&old));
                        }
                    }
                    info!(%src, door, "{src}: {door}: already open: extended by {}s", duration.as_secs());
                }
            }
        }
        true
    }

    /// A closing sequence: closes `door`'s opening for `src`, if it has one.
    pub fn close_door(
        &mut self,
        sessions: &mut Sessions,
        door: &str,
        src: IpAddr,
        by: &str,
    ) -> bool {
        match sessions.remove_close(door, src) {
            Some(s) => {
                if let Pending::Close { grant } = &s.pending {
                    self.close(grant, &format!("closed by {by}"));
                }
                true
            }
            None => {
                info!(%src, door, "{src}: {by}: {door} is not open for {src}: nothing to close");
                false
            }
        }
    }

    /// Closes one opening (its time is up, a closing sequence, shutdown).
    pub fn close(&mut self, grant: &Grant, why: &str) {
        if note(&mut self.healthy, "close", self.fw.close(grant)).is_some() {
            info!(src = %grant.src, door = %grant.door, "{}: {}: closed {} ({why})", grant.src, grant.door, grant.ports);
        }
    }

    /// Time from `wall` to the next daily flush (for openings without a duration).
    pub fn until_flush(&self, wall: SystemTime) -> Duration {
        crate::actions::flush::until(self.flush.as_ref(), wall)
    }

    /// Makes the chain equal to the journal (see the module doc). Returns what it changed, for
    /// the log.
    pub fn reconcile(&mut self, sessions: &Sessions) -> (usize, usize) {
        let Some(repairs) = note(&mut self.healthy, "ensure", self.fw.ensure()) else {
            return (0, 0);
        };
        if repairs.any() {
            warn!(
                ?repairs,
                "firewall: knockgate's chain (or sets) or their rules in the input chain were missing, duplicated or misplaced: repaired"
            );
        }
        let Some(found) = note(&mut self.healthy, "list", self.fw.list()) else {
            return (0, 0);
        };
        let grants: Vec<&Grant> = sessions
            .iter()
            .filter_map(|s| match &s.pending {
                Pending::Close { grant } => Some(grant),
                Pending::Stop { .. } => None,
            })
            .collect();
        let mut removed = 0;
        for f in &found {
            if !grants.iter().any(|g| self.fw.is_rule_of(f, g)) {
                warn!(src = %f.src, door = %f.door, "firewall: removing a rule of door {} for {} that no open door accounts for", f.door, f.src);
                if note(&mut self.healthy, "remove", self.fw.remove(f)).is_some() {
                    removed += 1;
                }
            }
        }
        let mut restored = 0;
        for g in grants {
            if !self.fw.is_open_for(&found, g) {
                warn!(src = %g.src, door = %g.door, "firewall: the opening of {} for {} was removed from outside: restoring it until its expiry", g.door, g.src);
                if note(&mut self.healthy, "open", self.fw.open(g)).is_some() {
                    restored += 1;
                }
            }
        }
        (removed, restored)
    }

    /// Due work ([`Gate::poll_at`]): a check of the chain, the daily flush. Returns whether
    /// the sessions changed.
    pub fn tick(&mut self, sessions: &mut Sessions, now: Instant, wall: SystemTime) -> bool {
        let mut changed = false;
        if let Some(flush) = self.flush.as_mut().filter(|_| now >= self.flush_at) {
            let stamp = jiff::Timestamp::try_from(wall).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
            match flush.tick(stamp, now) {
                Tick::Idle => {}
                Tick::Stepped(by) => {
                    info!(
                        "the wall clock was stepped by {by}s; next daily flush at {}",
                        flush.next().map(|t| t.to_string()).unwrap_or_default()
                    );
                }
                Tick::Flush => {
                    let closed =
                        sessions.take_where(|s| matches!(s.pending, Pending::Close { .. }));
                    note(&mut self.healthy, "flush", self.fw.flush());
                    info!(
                        closed = closed.len(),
                        "daily flush: chain flushed, {} door(s) closed",
                        closed.len()
                    );
                    changed = !closed.is_empty();
                    self.next_check = Some(now);
                }
            }
            // Next: the flush time by the wall clock, looked at again within CLOCK_CHECK.
            let until_flush = flush.next().map_or(CLOCK_CHECK, |next| {
                let us = next.as_microsecond() - stamp.as_microsecond();
                Duration::from_micros(u64::try_from(us).unwrap_or(0))
            });
            self.flush_at = now + until_flush.min(CLOCK_CHECK);
        }
        if self.next_check.is_some_and(|t| now >= t) {
            self.reconcile(sessions);
            self.next_check = if !self.healthy {
                Some(now + RETRY)
            } else if self.watched {
                None
            } else {
                Some(now + CHECK_EVERY)
            };
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::firewall::{Call, Found, PortRange, Ports, Recording};
    use crate::actions::sessions::unix_ms;
    use crate::config::{FirewallAction, LocalTime};
    use std::sync::{Arc, Mutex};
    use std::time::UNIX_EPOCH;

    /// A recording firewall the test can still look at after the gate owns it.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Recording>>);

    impl Firewall for Shared {
        fn name(&self) -> &'static str {
            "shared"
        }
        fn ensure(
            &mut self,
        ) -> Result<crate::actions::firewall::Repairs, crate::actions::firewall::FirewallError>
        {
            self.0.lock().unwrap().ensure()
        }
        fn open(&mut self, g: &Grant) -> Result<(), crate::actions::firewall::FirewallError> {
            self.0.lock().unwrap().open(g)
        }
        fn close(&mut self, g: &Grant) -> Result<(), crate::actions::firewall::FirewallError> {
            self.0.lock().unwrap().close(g)
        }
        fn list(&mut self) -> Result<Vec<Found>, crate::actions::firewall::FirewallError> {
            self.0.lock().unwrap().list()
        }
        fn remove(&mut self, f: &Found) -> Result<(), crate::actions::firewall::FirewallError> {
            self.0.lock().unwrap().remove(f)
        }
        fn flush(&mut self) -> Result<(), crate::actions::firewall::FirewallError> {
            self.0.lock().unwrap().flush()
        }
        fn remove_chain(&mut self) -> Result<(), crate::actions::firewall::FirewallError> {
            self.0.lock().unwrap().remove_chain()
        }
    }

    const T0: u64 = 1_795_000_000; // 2026-11-18T11:06:40Z

    fn wall(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(T0 + s)
    }

    fn ssh(duration: Option<u64>) -> FirewallAction {
        FirewallAction {
            ports: Ports::Some(vec![PortRange::parse("22/tcp").unwrap()]),
            duration: duration.map(Duration::from_secs),
        }
    }

    fn secs(wall: SystemTime) -> u64 {
        unix_ms(wall) / 1000
    }

    /// A firewall door's opening as the plan makes it: until `wall` + its duration (or the
    /// time to the flush).
    fn open(
        g: &mut Gate,
        s: &mut Sessions,
        now: Instant,
        wall: SystemTime,
        door: &str,
        src: IpAddr,
        action: &FirewallAction,
    ) -> bool {
        let after = action.duration.unwrap_or_else(|| g.until_flush(wall));
        let grant = Grant {
            door: door.into(),
            src,
            ports: action.ports.clone(),
            until: secs(wall) + after.as_secs().max(1),
        };
        g.open(s, now, wall, grant, after)
    }

    /// The ssh door opened for an hour at time zero.
    fn open_ssh(g: &mut Gate, s: &mut Sessions, src: IpAddr) -> bool {
        open(g, s, Instant::ZERO, wall(0), "ssh", src, &ssh(Some(3600)))
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    fn gate(flush: Option<LocalTime>) -> (Gate, Shared) {
        let fw = Shared::default();
        let flush = flush.map(|at| DailyFlush::new(at, jiff::tz::TimeZone::UTC));
        (Gate::new(Box::new(fw.clone()), flush), fw)
    }

    #[test]
    fn knock_ten_times_one_rule_then_closed_on_time() {
        let (mut g, fw) = gate(None);
        let mut s = Sessions::new();
        for i in 0..10 {
            open(
                &mut g,
                &mut s,
                Instant::from_secs(i),
                wall(i),
                "ssh",
                ip(2),
                &ssh(Some(30)),
            );
        }
        assert_eq!(
            fw.0.lock().unwrap().rules.len(),
            1,
            "one rule, however many knocks"
        );
        assert_eq!(fw.0.lock().unwrap().rules[0].until, T0 + 9 + 30);
        assert_eq!(s.len(), 1);
        assert_eq!(s.poll_at(), Some(Instant::from_secs(39)));
        for due in s.take_due(Instant::from_secs(39)) {
            let Pending::Close { grant } = &due.pending else {
                panic!()
            };
            g.close(grant, "time is up");
        }
        assert!(fw.0.lock().unwrap().rules.is_empty());
    }

    #[test]
    fn closing_sequence_closes_only_that_source() {
        let (mut g, fw) = gate(None);
        let mut s = Sessions::new();
        open_ssh(&mut g, &mut s, ip(2));
        open_ssh(&mut g, &mut s, ip(3));
        assert!(g.close_door(&mut s, "ssh", ip(2), "closeSSH"));
        assert!(!g.close_door(&mut s, "ssh", ip(2), "closeSSH"));
        let rules = fw.0.lock().unwrap().rules.clone();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].src, ip(3));
    }

    #[test]
    fn reconcile_restores_missing_and_removes_unaccounted_rules() {
        let (mut g, fw) = gate(None);
        let mut s = Sessions::new();
        open_ssh(&mut g, &mut s, ip(2));
        {
            let mut f = fw.0.lock().unwrap();
            // Someone flushed the chain, and a stale rule from a lost journal is there.
            f.rules.clear();
            f.rules.push(Grant {
                door: "ssh".into(),
                src: ip(9),
                ports: Ports::All,
                until: T0 + 99,
            });
        }
        assert_eq!(g.reconcile(&s), (1, 1));
        let rules = fw.0.lock().unwrap().rules.clone();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].src, ip(2));
        assert!(fw.0.lock().unwrap().calls.contains(&Call::Ensure));
        // Nothing to do the second time.
        assert_eq!(g.reconcile(&s), (0, 0));
    }

    #[test]
    fn daily_flush_closes_openings_and_default_duration_runs_to_it() {
        let at = LocalTime {
            hour: 4,
            minute: 0,
            second: 0,
        };
        let (mut g, fw) = gate(Some(at));
        let mut s = Sessions::new();
        // T0 is 2026-11-18T11:06:40Z: the next 04:00 UTC is 16h53m20s (60 800 s) away.
        assert!(!g.tick(&mut s, Instant::ZERO, wall(0)));
        open(
            &mut g,
            &mut s,
            Instant::ZERO,
            wall(0),
            "ssh",
            ip(2),
            &ssh(None),
        );
        let until = fw.0.lock().unwrap().rules[0].until;
        assert_eq!(until, T0 + 60_800);
        let mut flushed_at = None;
        for t in (5..70_000).step_by(5) {
            if g.tick(&mut s, Instant::from_secs(t), wall(t)) {
                flushed_at = Some(t);
                break;
            }
        }
        assert_eq!(
            flushed_at,
            Some(60_800),
            "flushed at 04:00:00 UTC (first tick at or after it)"
        );
        assert!(s.is_empty());
        assert!(fw.0.lock().unwrap().calls.contains(&Call::Flush));
    }

    #[test]
    fn firewall_failure_is_logged_not_fatal_and_leaves_no_phantom_session() {
        let (mut g, fw) = gate(None);
        let mut s = Sessions::new();
        fw.0.lock().unwrap().fail = true;
        open(
            &mut g,
            &mut s,
            Instant::ZERO,
            wall(0),
            "ssh",
            ip(2),
            &ssh(Some(30)),
        );
        assert!(!g.healthy());
        assert!(
            s.is_empty(),
            "a door that did not open is not shown as open"
        );
        fw.0.lock().unwrap().fail = false;
        open(
            &mut g,
            &mut s,
            Instant::ZERO,
            wall(0),
            "ssh",
            ip(2),
            &ssh(Some(30)),
        );
        assert!(g.healthy());
        assert_eq!(s.len(), 1);
    }
}
