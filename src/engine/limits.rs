//! Rate limits that keep a scanner or a guesser from costing anything.
//!
//! - [`Penalties`]: a source whose attempts fail (a wrong knock, a timeout) more than
//!   `max_failures` times within `window` is ignored for `ban`. Bounded: at most `cap` sources
//!   are remembered, the oldest forgotten first.
//! - [`LogLimit`]: a token bucket for the per-knock log lines (stages, timeouts), so a scan
//!   cannot fill the SD card; what it holds back is counted and reported in one line.
//!
//! Both are pure: time is passed in.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use crate::time::Instant;

/// `[daemon]` limits on failing sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PenaltyConfig {
    /// Failures allowed within `window`; 0 turns penalties off.
    pub max_failures: u32,
    pub window: Duration,
    pub ban: Duration,
}

impl Default for PenaltyConfig {
    fn default() -> Self {
        PenaltyConfig {
            max_failures: 20,
            window: Duration::from_secs(60),
            ban: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Record {
    window_start: Instant,
    failures: u32,
    banned_until: Option<Instant>,
    /// For the insertion-order queue (a record re-created gets a new one).
    generation: u64,
}

/// Failed attempts per source, and the sources being ignored.
#[derive(Debug)]
pub struct Penalties {
    cfg: PenaltyConfig,
    cap: usize,
    records: HashMap<IpAddr, Record>,
    order: VecDeque<(IpAddr, u64)>,
    next_generation: u64,
    /// Knocks ignored because their source was banned.
    pub ignored: u64,
}

/// What [`Penalties::failed`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Counted,
    /// The source is now ignored until this time.
    Banned(Instant),
}

impl Penalties {
    pub fn new(cfg: PenaltyConfig, cap: usize) -> Penalties {
        Penalties {
            cfg,
            cap: cap.max(1),
            records: HashMap::new(),
            order: VecDeque::new(),
            next_generation: 0,
            ignored: 0,
        }
    }

    pub fn set_config(&mut self, cfg: PenaltyConfig) {
        self.cfg = cfg;
    }

    /// Whether knocks from `src` are ignored at `now` (counted when they are).
    pub fn is_banned(&mut self, src: IpAddr, now: Instant) -> bool {
        let banned = self
            .records
            .get(&src)
            .and_then(|r| r.banned_until)
            .is_some_and(|until| now < until);
        if banned {
            self.ignored += 1;
        }
        banned
    }

    /// Records a failed attempt of `src`.
    pub fn failed(&mut self, src: IpAddr, now: Instant) -> Verdict {
        if self.cfg.max_failures == 0 {
            return Verdict::Counted;
        }
        if !self.records.contains_key(&src) {
            while self.records.len() >= self.cap {
                match self.order.pop_front() {
                    Some((old, g)) => {
                        if self.records.get(&old).is_some_and(|r| r.generation == g) {
                            self.records.remove(&old);
                        }
                    }
                    None => break,
                }
            }
            self.next_generation += 1;
            self.order.push_back((src, self.next_generation));
            self.records.insert(
                src,
                Record {
                    window_start: now,
                    failures: 0,
                    banned_until: None,
                    generation: self.next_generation,
                },
            );
        }
        let cfg = self.cfg;
        let r = self.records.get_mut(&src).expect("inserted above");
        if now >= r.window_start + cfg.window {
            r.window_start = now;
            r.failures = 0;
        }
        r.failures += 1;
        if r.failures > cfg.max_failures {
            let until = now + cfg.ban;
            r.banned_until = Some(until);
            r.failures = 0;
            r.window_start = until;
            return Verdict::Banned(until);
        }
        Verdict::Counted
    }

    /// Sources remembered now (bounded by the cap).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// A token bucket for log lines: `burst` lines at once, then `per_second`.
#[derive(Debug)]
pub struct LogLimit {
    burst: f64,
    per_second: f64,
    tokens: f64,
    last: Option<Instant>,
    /// Lines held back since the last [`LogLimit::take_suppressed`].
    suppressed: u64,
}

impl LogLimit {
    pub fn new(burst: u32, per_second: u32) -> LogLimit {
        LogLimit {
            burst: f64::from(burst),
            per_second: f64::from(per_second),
            tokens: f64::from(burst),
            last: None,
            suppressed: 0,
        }
    }

    /// Whether a line may be logged at `now`.
    pub fn allow(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let dt = now.saturating_since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.per_second).min(self.burst);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }

    /// How many lines are held back, not yet reported.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }

    /// How many lines were held back since the last call (to report them in one line).
    pub fn take_suppressed(&mut self) -> u64 {
        std::mem::take(&mut self.suppressed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0xc000_0200 + n))
    }

    fn s(secs: u64) -> Instant {
        Instant::from_secs(secs)
    }

    #[test]
    fn too_many_failures_ban_the_source_for_a_while() {
        let cfg = PenaltyConfig {
            max_failures: 3,
            window: Duration::from_secs(60),
            ban: Duration::from_secs(600),
        };
        let mut p = Penalties::new(cfg, 100);
        for t in 0..3 {
            assert_eq!(p.failed(ip(1), s(t)), Verdict::Counted);
        }
        assert!(!p.is_banned(ip(1), s(3)));
        assert_eq!(p.failed(ip(1), s(4)), Verdict::Banned(s(604)));
        assert!(p.is_banned(ip(1), s(5)));
        assert!(!p.is_banned(ip(2), s(5)), "only that source");
        assert!(p.is_banned(ip(1), s(603)));
        assert!(!p.is_banned(ip(1), s(604)));
        assert_eq!(p.ignored, 2);
    }

    #[test]
    fn failures_spread_over_windows_do_not_ban() {
        let cfg = PenaltyConfig {
            max_failures: 3,
            window: Duration::from_secs(60),
            ban: Duration::from_secs(600),
        };
        let mut p = Penalties::new(cfg, 100);
        for t in (0..600).step_by(20) {
            assert_eq!(p.failed(ip(1), s(t)), Verdict::Counted, "at {t}");
        }
    }

    #[test]
    fn off_and_bounded() {
        let mut off = Penalties::new(
            PenaltyConfig {
                max_failures: 0,
                ..PenaltyConfig::default()
            },
            10,
        );
        for t in 0..1000 {
            assert_eq!(off.failed(ip(1), s(t)), Verdict::Counted);
        }
        let mut p = Penalties::new(PenaltyConfig::default(), 50);
        for n in 0..10_000 {
            p.failed(ip(n), s(u64::from(n)));
        }
        assert_eq!(p.len(), 50, "a flood of sources cannot grow it");
    }

    #[test]
    fn log_limit_bursts_then_trickles_and_counts_the_rest() {
        let mut l = LogLimit::new(10, 2);
        let allowed = (0..100)
            .filter(|i| l.allow(Instant::from_millis(*i)))
            .count();
        assert_eq!(allowed, 10);
        assert_eq!(l.take_suppressed(), 90);
        assert_eq!(l.take_suppressed(), 0);
        // One second later, two more.
        let t = Instant::from_millis(1099);
        assert!(l.allow(t) && l.allow(t) && !l.allow(t));
    }
}
