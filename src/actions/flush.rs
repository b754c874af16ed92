//! When to flush the chain every day (the classic `/etc/cron.daily` `iptables -F KNOCKD`).
//!
//! The flush happens at a local time of day (default 04:00), so it reads the wall clock, the
//! only part of knockgate that does. A Raspberry Pi has no RTC: it boots with a wrong clock
//! (1970, or the time of the last shutdown) and NTP steps it later, by hours or years. A naive
//! schedule computed before the step would fire at once after it, closing doors that were just
//! opened. So the schedule compares how far the wall clock moved with how far the monotonic
//! clock moved since the last tick: when they disagree by more than [`STEP`], the clock was
//! stepped, and the next flush is computed again from the new time instead of firing.

use std::time::Duration;

use jiff::civil::Time;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use crate::config::LocalTime;
use crate::time::Instant;

/// A disagreement between the wall and the monotonic clocks larger than this is a clock step.
pub const STEP: Duration = Duration::from_secs(30);

/// What a tick decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// Nothing to do.
    Idle,
    /// Flush now; the next flush is a day later.
    Flush,
    /// The wall clock was stepped by this many seconds (negative: backwards); the next flush
    /// was computed again from the new time.
    Stepped(i64),
}

/// The daily flush schedule.
#[derive(Debug, Clone)]
pub struct DailyFlush {
    at: LocalTime,
    tz: TimeZone,
    next: Option<Timestamp>,
    last: Option<(Timestamp, Instant)>,
}

impl DailyFlush {
    pub fn new(at: LocalTime, tz: TimeZone) -> Self {
        DailyFlush {
            at,
            tz,
            next: None,
            last: None,
        }
    }

    /// With the system's time zone (`TZ`, then /etc/localtime; UTC if neither is usable).
    pub fn local(at: LocalTime) -> Self {
        Self::new(at, TimeZone::try_system().unwrap_or(TimeZone::UTC))
    }

    /// The next flush, once the first tick has happened.
    pub fn next(&self) -> Option<Timestamp> {
        self.next
    }

    /// Called regularly (every few seconds) with both clocks.
    pub fn tick(&mut self, wall: Timestamp, mono: Instant) -> Tick {
        let previous = self.last.replace((wall, mono));
        if let Some((last_wall, last_mono)) = previous {
            let wall_us = wall.as_microsecond() - last_wall.as_microsecond();
            let mono_us =
                i64::try_from(mono.saturating_since(last_mono).as_micros()).unwrap_or(i64::MAX);
            let step = wall_us.saturating_sub(mono_us);
            if step.unsigned_abs() > STEP.as_micros() as u64 {
                self.next = Some(self.next_after(wall));
                return Tick::Stepped(step / 1_000_000);
            }
        }
        match self.next {
            None => {
                self.next = Some(self.next_after(wall));
                Tick::Idle
            }
            Some(next) if wall >= next => {
                self.next = Some(self.next_after(wall));
                Tick::Flush
            }
            Some(_) => Tick::Idle,
        }
    }

    /// The first time strictly after `wall` at which the local clock reads `at`.
    pub fn next_after(&self, wall: Timestamp) -> Timestamp {
        let now = wall.to_zoned(self.tz.clone());
        let time = Time::constant(
            self.at.hour as i8,
            self.at.minute as i8,
            self.at.second as i8,
            0,
        );
        let mut date = now.date();
        for _ in 0..3 {
            // A time that does not exist on a DST change is moved forward (jiff's
            // "compatible" rule), as cron does.
            if let Ok(candidate) = date.to_datetime(time).to_zoned(self.tz.clone()) {
                if candidate.timestamp() > wall {
                    return candidate.timestamp();
                }
            }
            date = match date.checked_add(1.day()) {
                Ok(d) => d,
                Err(_) => break,
            };
        }
        wall.checked_add(24.hours()).unwrap_or(wall)
    }
}

/// Time from `wall` to `flush`'s next daily flush (what an opening without a duration lasts),
/// at least a second; a day when there is no flush (config validation requires a duration
/// then: this is only the safe side).
pub fn until(flush: Option<&DailyFlush>, wall: std::time::SystemTime) -> Duration {
    let Some(flush) = flush else {
        return Duration::from_secs(24 * 3600);
    };
    let now = Timestamp::try_from(wall).unwrap_or(Timestamp::UNIX_EPOCH);
    let next = flush.next_after(now);
    Duration::from_secs(
        u64::try_from(next.as_second() - now.as_second())
            .unwrap_or(0)
            .max(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::tz::Offset;

    const FOUR: LocalTime = LocalTime {
        hour: 4,
        minute: 0,
        second: 0,
    };

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    /// Ticks every `every` seconds from (wall, mono) for `count` ticks; returns the flush times.
    fn run(
        f: &mut DailyFlush,
        wall: Timestamp,
        mono_s: u64,
        every: i64,
        count: i64,
    ) -> Vec<Timestamp> {
        let mut flushes = Vec::new();
        for i in 0..count {
            let w = wall.checked_add((i * every).seconds()).unwrap();
            let m = Instant::from_secs(mono_s + (i * every) as u64);
            if f.tick(w, m) == Tick::Flush {
                flushes.push(w);
            }
        }
        flushes
    }

    #[test]
    fn flushes_once_a_day_at_local_time() {
        // UTC+2: 04:00 local is 02:00 UTC.
        let tz = TimeZone::fixed(Offset::constant(2));
        let mut f = DailyFlush::new(FOUR, tz);
        let start = ts("2026-11-21T01:00:00Z");
        assert_eq!(f.tick(start, Instant::ZERO), Tick::Idle);
        assert_eq!(f.next(), Some(ts("2026-11-21T02:00:00Z")));
        // Two days of ticks every 10 s: exactly two flushes, at 02:00 UTC each day.
        let flushes = run(&mut f, start, 0, 10, 2 * 86_400 / 10);
        assert_eq!(
            flushes,
            vec![ts("2026-11-21T02:00:00Z"), ts("2026-11-22T02:00:00Z")]
        );
        assert_eq!(f.next(), Some(ts("2026-11-23T02:00:00Z")));
    }

    #[test]
    fn first_tick_after_the_time_waits_for_tomorrow() {
        let mut f = DailyFlush::new(FOUR, TimeZone::UTC);
        assert_eq!(
            f.tick(ts("2026-11-21T04:00:00Z"), Instant::ZERO),
            Tick::Idle
        );
        assert_eq!(f.next(), Some(ts("2026-11-22T04:00:00Z")));
    }

    #[test]
    fn ntp_step_after_boot_does_not_flush() {
        // A Pi boots believing it is 1970; 40 s later NTP steps the clock to 2026, 05:00 UTC.
        let mut f = DailyFlush::new(FOUR, TimeZone::UTC);
        let boot = ts("1970-01-01T00:00:10Z");
        assert_eq!(f.tick(boot, Instant::from_secs(10)), Tick::Idle);
        assert_eq!(f.next(), Some(ts("1970-01-01T04:00:00Z")));
        assert_eq!(
            f.tick(ts("1970-01-01T00:00:12Z"), Instant::from_secs(12)),
            Tick::Idle
        );
        let synced = ts("2026-11-21T05:00:00Z");
        match f.tick(synced, Instant::from_secs(14)) {
            Tick::Stepped(by) => assert!(by > 1_700_000_000, "{by}"),
            other => panic!("{other:?}"),
        }
        // The flush waits for the next real 04:00, and then happens.
        assert_eq!(f.next(), Some(ts("2026-11-22T04:00:00Z")));
        let flushes = run(
            &mut f,
            synced.checked_add(2.seconds()).unwrap(),
            16,
            10,
            86_400 / 10,
        );
        assert_eq!(flushes, vec![ts("2026-11-22T04:00:02Z")]);
    }

    #[test]
    fn clock_stepped_back_does_not_flush_twice() {
        let mut f = DailyFlush::new(FOUR, TimeZone::UTC);
        let t = ts("2026-11-21T03:59:55Z");
        f.tick(t, Instant::from_secs(100));
        assert_eq!(
            f.tick(ts("2026-11-21T04:00:05Z"), Instant::from_secs(110)),
            Tick::Flush
        );
        // Someone sets the clock back an hour: it must not flush again at 04:00 today.
        assert!(matches!(
            f.tick(ts("2026-11-21T03:00:15Z"), Instant::from_secs(120)),
            Tick::Stepped(-3600)
        ));
        assert_eq!(f.next(), Some(ts("2026-11-21T04:00:00Z")));
        // ... well, the local clock does read 04:00 again: that is today's flush per the
        // new clock, and it happens once.
        let flushes = run(&mut f, ts("2026-11-21T03:00:25Z"), 130, 10, 7200 / 10);
        assert_eq!(flushes.len(), 1);
    }

    #[test]
    fn small_drift_is_not_a_step() {
        let mut f = DailyFlush::new(FOUR, TimeZone::UTC);
        f.tick(ts("2026-11-21T03:00:00Z"), Instant::ZERO);
        // NTP slews by a few seconds: still the same schedule.
        assert_eq!(
            f.tick(ts("2026-11-21T03:00:12Z"), Instant::from_secs(2)),
            Tick::Idle
        );
        assert_eq!(f.next(), Some(ts("2026-11-21T04:00:00Z")));
    }
}
