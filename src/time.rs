//! Time: the monotonic [`Instant`] the engine sees (microseconds since an arbitrary origin),
//! and the [`Clock`] backend, the one place that reads the system's clocks.
//!
//! The engine never reads a clock. The daemon maps `std::time::Instant` to this type (time since
//! start), `replay` maps packet timestamps to it; tests write plain numbers. A Pi has no RTC and
//! NTP steps the wall clock after boot, so timers use [`Instant`]; wall-clock time
//! ([`Clock::wall`]) only dates what is shown or stored (rule expiries, the journal, the
//! page) and drives the daily flush.

use std::ops::{Add, Sub};
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    pub const ZERO: Instant = Instant(0);

    pub fn from_micros(us: u64) -> Self {
        Instant(us)
    }
    pub fn from_millis(ms: u64) -> Self {
        Instant(ms.saturating_mul(1000))
    }
    pub fn from_secs(s: u64) -> Self {
        Instant(s.saturating_mul(1_000_000))
    }
    pub fn as_micros(self) -> u64 {
        self.0
    }
    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(
            self.0
                .saturating_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        )
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, d: Duration) -> Instant {
        Instant(
            self.0
                .saturating_sub(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        )
    }
}

/// Maps the process's monotonic clock to [`Instant`]s.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    origin: std::time::Instant,
}

impl MonotonicClock {
    pub fn new() -> Self {
        MonotonicClock {
            origin: std::time::Instant::now(),
        }
    }
    pub fn now(&self) -> Instant {
        self.at(std::time::Instant::now())
    }
    pub fn at(&self, t: std::time::Instant) -> Instant {
        Instant(
            u64::try_from(t.saturating_duration_since(self.origin).as_micros()).unwrap_or(u64::MAX),
        )
    }
    pub fn to_std(&self, t: Instant) -> std::time::Instant {
        self.origin + Duration::from_micros(t.0)
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

/// Where the daemon reads the time.
pub trait Clock: Send {
    /// Monotonic time, for timers.
    fn now(&self) -> Instant;
    /// Wall-clock time, for dates.
    fn wall(&self) -> SystemTime;
}

/// The system's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock {
    mono: MonotonicClock,
}

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        self.mono.now()
    }
    fn wall(&self) -> SystemTime {
        wall_now()
    }
}

/// The wall clock, for what runs outside the daemon's loop (the status server's staleness
/// check, the `otp` command).
pub fn wall_now() -> SystemTime {
    SystemTime::now()
}

/// Seconds since the Unix epoch of a wall-clock time (0 before 1970).
pub fn unix_secs(wall: SystemTime) -> u64 {
    wall.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Instant::from_secs(2);
        assert_eq!(t + Duration::from_millis(500), Instant::from_millis(2500));
        assert_eq!(t - Duration::from_secs(5), Instant::ZERO);
        assert_eq!(
            Instant::from_secs(3).saturating_since(t),
            Duration::from_secs(1)
        );
        assert_eq!(t.saturating_since(Instant::from_secs(3)), Duration::ZERO);
    }
}
