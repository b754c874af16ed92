//! Relays and the status LED as pure state machines: time is passed in, pin changes come out.
//!
//! Relays: `pulse` (on for a duration, then off), `on`, `off`, `toggle`; a per-relay maximum
//! on-time that nothing exceeds (a watchdog: `on` and long pulses are cut at `max_on`);
//! exclusive groups (switching one relay of a group on switches the others off first). The
//! daemon applies [`Change`]s to GPIO pins; it sets every relay to its safe state at start and
//! at shutdown, and never persists relay state, so a pulse in progress when the daemon dies is
//! not resumed as "on" at restart.
//!
//! LED: [`led_level`] is a pure function of the daemon's state and the time.

use std::time::Duration;

use crate::config::{RelayConfig, RelayMode};
use crate::time::Instant;

/// A level to put on a pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub relay: String,
    pub pin: u8,
    /// The relay is now on.
    pub on: bool,
    /// The pin level that means it (active-low boards invert).
    pub high: bool,
    /// Why, for the log.
    pub why: &'static str,
}

#[derive(Debug, Clone)]
struct Relay {
    cfg: RelayConfig,
    on: bool,
    /// When it goes off by itself (end of a pulse, or the watchdog).
    off_at: Option<Instant>,
}

impl Relay {
    fn change(&mut self, on: bool, off_at: Option<Instant>, why: &'static str) -> Change {
        self.on = on;
        self.off_at = off_at;
        Change {
            relay: self.cfg.name.clone(),
            pin: self.cfg.pin,
            on,
            high: on != self.cfg.active_low,
            why,
        }
    }

    /// The watchdog applies to every "on" that is not the relay's own safe state.
    fn watchdog(&self, now: Instant) -> Option<Instant> {
        (!self.cfg.safe_on).then(|| now + self.cfg.max_on)
    }
}

/// All relays.
#[derive(Debug, Clone)]
pub struct Relays {
    relays: Vec<Relay>,
}

/// One relay's state, for the status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayView {
    pub name: String,
    pub pin: u8,
    pub active_low: bool,
    pub on: bool,
    pub off_at: Option<Instant>,
}

impl Relays {
    pub fn new(configs: &[RelayConfig]) -> Relays {
        Relays {
            relays: configs
                .iter()
                .map(|c| Relay {
                    cfg: c.clone(),
                    on: c.safe_on,
                    off_at: None,
                })
                .collect(),
        }
    }

    /// Every relay to its safe state (at start and at shutdown).
    pub fn safe_state(&mut self) -> Vec<Change> {
        self.relays
            .iter_mut()
            .map(|r| {
                let on = r.cfg.safe_on;
                r.change(on, None, "safe state")
            })
            .collect()
    }

    /// Applies a door's action to relay `name` (unknown names change nothing: the config
    /// check rejects them).
    pub fn apply(&mut self, now: Instant, name: &str, mode: RelayMode) -> Vec<Change> {
        let Some(i) = self.relays.iter().position(|r| r.cfg.name == name) else {
            return Vec::new();
        };
        let turn_on = match mode {
            RelayMode::Pulse(_) | RelayMode::On => true,
            RelayMode::Off => false,
            RelayMode::Toggle => !self.relays[i].on,
        };
        let mut changes = Vec::new();
        if turn_on {
            // Exclusive group: the others go off first, so two are never on together.
            if let Some(group) = self.relays[i].cfg.group.clone() {
                for (j, other) in self.relays.iter_mut().enumerate() {
                    if j != i && other.on && other.cfg.group.as_deref() == Some(&group) {
                        changes.push(other.change(false, None, "exclusive group"));
                    }
                }
            }
            let relay = &mut self.relays[i];
            let watchdog = relay.watchdog(now);
            let (off_at, why) = match mode {
                RelayMode::Pulse(d) => {
                    let end = now + d;
                    (Some(watchdog.map_or(end, |w| end.min(w))), "pulse")
                }
                _ => (watchdog, "on"),
            };
            changes.push(relay.change(true, off_at, why));
        } else {
            changes.push(self.relays[i].change(false, None, "off"));
        }
        changes
    }

    /// The pin of relay `name`.
    pub fn pin(&self, name: &str) -> Option<u8> {
        self.relays
            .iter()
            .find(|r| r.cfg.name == name)
            .map(|r| r.cfg.pin)
    }

    /// Whether relay `name` is on (None: no such relay).
    pub fn is_on(&self, name: &str) -> Option<bool> {
        self.relays
            .iter()
            .find(|r| r.cfg.name == name)
            .map(|r| r.on)
    }

    /// When [`Relays::poll`] must next run.
    pub fn poll_at(&self) -> Option<Instant> {
        self.relays.iter().filter_map(|r| r.off_at).min()
    }

    /// Switches off whatever is due at `now` (pulse ends, watchdog).
    pub fn poll(&mut self, now: Instant) -> Vec<Change> {
        self.relays
            .iter_mut()
            .filter(|r| r.off_at.is_some_and(|t| t <= now))
            .map(|r| r.change(false, None, "time is up"))
            .collect()
    }

    pub fn view(&self) -> Vec<RelayView> {
        self.relays
            .iter()
            .map(|r| RelayView {
                name: r.cfg.name.clone(),
                pin: r.cfg.pin,
                active_low: r.cfg.active_low,
                on: r.on,
                off_at: r.off_at,
            })
            .collect()
    }
}

/// What the daemon is doing, as the LED shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedState {
    /// Something is wrong (a capture down, the firewall failing).
    pub error: bool,
    /// Last accepted knock step.
    pub last_stage: Option<Instant>,
    /// Last door opened.
    pub last_open: Option<Instant>,
}

/// The LED's patterns (named in the status snapshot, where the type lives).
pub use crate::status::LedPattern as Pattern;

const HEARTBEAT: Duration = Duration::from_secs(2);
const HEARTBEAT_ON: Duration = Duration::from_millis(100);
const STAGE_BLINK: Duration = Duration::from_millis(150);
const OPEN_SOLID: Duration = Duration::from_secs(3);
const ERROR_HALF: Duration = Duration::from_millis(125);

/// The pattern showing at `now`: a door opening, then a stage, then an error, then the
/// heartbeat (the short-lived feedback shows even while something is wrong).
pub fn led_pattern(state: &LedState, now: Instant) -> Pattern {
    let recent = |t: Option<Instant>, d: Duration| t.is_some_and(|t| t <= now && now < t + d);
    if recent(state.last_open, OPEN_SOLID) {
        Pattern::Open
    } else if recent(state.last_stage, STAGE_BLINK) {
        Pattern::Stage
    } else if state.error {
        Pattern::Error
    } else {
        Pattern::Heartbeat
    }
}

/// The LED's level at `now` and when it may next change.
pub fn led_level(state: &LedState, now: Instant) -> (bool, Instant) {
    let us = now.as_micros();
    let in_period = |period: Duration| us % period.as_micros() as u64;
    match led_pattern(state, now) {
        Pattern::Open => (true, state.last_open.expect("open pattern") + OPEN_SOLID),
        Pattern::Stage => (true, state.last_stage.expect("stage pattern") + STAGE_BLINK),
        Pattern::Error => {
            let phase = in_period(ERROR_HALF * 2);
            let half = ERROR_HALF.as_micros() as u64;
            let on = phase < half;
            let next = if on { half - phase } else { 2 * half - phase };
            (on, now + Duration::from_micros(next))
        }
        Pattern::Heartbeat => {
            let phase = in_period(HEARTBEAT);
            let on_us = HEARTBEAT_ON.as_micros() as u64;
            let on = phase < on_us;
            let next = if on {
                on_us - phase
            } else {
                HEARTBEAT.as_micros() as u64 - phase
            };
            (on, now + Duration::from_micros(next))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(name: &str, pin: u8, group: Option<&str>) -> RelayConfig {
        RelayConfig {
            name: name.into(),
            pin,
            active_low: false,
            max_on: Duration::from_secs(900),
            group: group.map(str::to_string),
            safe_on: false,
            mqtt_command: None,
        }
    }

    fn s(secs: u64) -> Instant {
        Instant::from_secs(secs)
    }

    fn states(r: &Relays) -> Vec<(String, bool)> {
        r.view().into_iter().map(|v| (v.name, v.on)).collect()
    }

    #[test]
    fn pulse_goes_high_then_low_at_the_right_times() {
        let mut r = Relays::new(&[relay("zone1", 17, None)]);
        let c = r.apply(s(100), "zone1", RelayMode::Pulse(Duration::from_secs(600)));
        assert_eq!(
            c,
            vec![Change {
                relay: "zone1".into(),
                pin: 17,
                on: true,
                high: true,
                why: "pulse"
            }]
        );
        assert_eq!(r.poll_at(), Some(s(700)));
        assert!(r.poll(s(699)).is_empty());
        let c = r.poll(s(700));
        assert_eq!(c.len(), 1);
        assert!(!c[0].on && !c[0].high);
        assert_eq!(r.poll_at(), None);
    }

    #[test]
    fn garage_door_pulse_of_half_a_second_on_an_active_low_board() {
        let mut cfg = relay("garage", 27, None);
        cfg.active_low = true;
        let mut r = Relays::new(&[cfg]);
        let safe = r.safe_state();
        assert_eq!(
            (safe[0].on, safe[0].high),
            (false, true),
            "off is high on an active-low board"
        );
        let c = r.apply(
            Instant::from_millis(1000),
            "garage",
            RelayMode::Pulse(Duration::from_millis(500)),
        );
        assert_eq!((c[0].on, c[0].high), (true, false));
        assert_eq!(r.poll_at(), Some(Instant::from_millis(1500)));
        assert!(r.poll(Instant::from_millis(1500))[0].high);
    }

    #[test]
    fn max_on_cuts_on_and_long_pulses() {
        let mut r = Relays::new(&[relay("pump", 5, None)]);
        r.apply(s(0), "pump", RelayMode::On);
        assert_eq!(r.poll_at(), Some(s(900)), "`on` is cut by the watchdog");
        r.apply(s(10), "pump", RelayMode::Pulse(Duration::from_secs(3600)));
        assert_eq!(r.poll_at(), Some(s(910)), "a pulse never exceeds max_on");
        let off = r.poll(s(910));
        assert_eq!(off[0].why, "time is up");
    }

    #[test]
    fn exclusive_group_one_zone_at_a_time() {
        let mut r = Relays::new(&[
            relay("zone1", 17, Some("sprinklers")),
            relay("zone2", 18, Some("sprinklers")),
            relay("light", 19, None),
        ]);
        r.apply(s(0), "zone1", RelayMode::Pulse(Duration::from_secs(600)));
        r.apply(s(0), "light", RelayMode::On);
        let c = r.apply(s(60), "zone2", RelayMode::Pulse(Duration::from_secs(600)));
        // zone1 goes off before zone2 goes on; the light is in no group.
        assert_eq!(
            c.iter()
                .map(|c| (c.relay.as_str(), c.on))
                .collect::<Vec<_>>(),
            vec![("zone1", false), ("zone2", true)]
        );
        assert_eq!(
            states(&r),
            vec![
                ("zone1".into(), false),
                ("zone2".into(), true),
                ("light".into(), true)
            ]
        );
        // zone1's old pulse end does not fire later.
        assert!(r.poll(s(600)).is_empty());
    }

    #[test]
    fn toggle_and_off_and_safe_state_at_shutdown() {
        let mut r = Relays::new(&[relay("lamp", 4, None)]);
        assert!(r.apply(s(0), "lamp", RelayMode::Toggle)[0].on);
        assert!(!r.apply(s(1), "lamp", RelayMode::Toggle)[0].on);
        r.apply(s(2), "lamp", RelayMode::On);
        assert!(!r.apply(s(3), "lamp", RelayMode::Off)[0].on);
        r.apply(s(4), "lamp", RelayMode::On);
        let safe = r.safe_state();
        assert_eq!(
            safe,
            vec![Change {
                relay: "lamp".into(),
                pin: 4,
                on: false,
                high: false,
                why: "safe state"
            }]
        );
        assert_eq!(r.poll_at(), None);
        assert!(r.apply(s(5), "nope", RelayMode::On).is_empty());
    }

    #[test]
    fn led_patterns_for_each_state() {
        let t = |ms: u64| Instant::from_millis(ms);
        let idle = LedState::default();
        // Heartbeat: on for the first 100 ms of every 2 s.
        assert_eq!(led_level(&idle, t(10_000)), (true, t(10_100)));
        assert_eq!(led_level(&idle, t(10_100)), (false, t(12_000)));
        assert_eq!(led_pattern(&idle, t(10_500)), Pattern::Heartbeat);
        // A stage: one short blink.
        let stage = LedState {
            last_stage: Some(t(10_500)),
            ..idle
        };
        assert_eq!(led_level(&stage, t(10_500)), (true, t(10_650)));
        assert_eq!(led_pattern(&stage, t(10_650)), Pattern::Heartbeat);
        // A door opened: solid for 3 s, even while something is wrong.
        let open = LedState {
            last_open: Some(t(20_000)),
            error: true,
            ..idle
        };
        assert_eq!(led_level(&open, t(21_000)), (true, t(23_000)));
        // Error: 4 Hz.
        let err = LedState {
            error: true,
            ..idle
        };
        assert_eq!(led_pattern(&err, t(30_000)), Pattern::Error);
        assert_eq!(led_level(&err, t(30_000)), (true, t(30_125)));
        assert_eq!(led_level(&err, t(30_125)), (false, t(30_250)));
        assert_eq!(led_level(&err, t(30_200)), (false, t(30_250)));
    }
}
