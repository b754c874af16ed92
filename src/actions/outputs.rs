//! The daemon's GPIO outputs: relays driven by doors and the status LED driven by the
//! daemon's state. Decisions come from the pure [`crate::actions::relays`] machines; this module owns
//! the pins and applies the levels.
//!
//! A GPIO that cannot be opened, or a pin another program holds, never stops the daemon: the
//! doors keep working (a relay action is logged as not done), the problem is logged once and
//! shown on the status page and `/healthz`, the LED (if it works) blinks the error pattern, and
//! the missing pins are claimed again every [`RETRY_FIRST`], backing off to [`RETRY_MAX`]. A
//! pin claimed late starts at the relay's current state (its safe state: nothing switched a
//! relay it could not drive).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use tracing::{debug, error, info, warn};

use crate::actions::gpio::{self, Gpio, GpioError, OutputPin};
use crate::actions::relays::{led_level, led_pattern, Change, LedState, Relays};
use crate::config::{GpioBackend, GpioConfig, LedConfig, RelayMode};
use crate::status::{GpioStatus, LedStatus, RelayStatus};
use crate::time::Instant;

/// First retry after a GPIO failure; the wait doubles up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_secs(5);
pub const RETRY_MAX: Duration = Duration::from_secs(60);

/// Opens the GPIO backend (the real one, or a test's).
pub type Opener = Box<dyn FnMut() -> Result<Box<dyn Gpio>, GpioError> + Send>;

struct Led {
    cfg: LedConfig,
    state: LedState,
    on: bool,
    next: Instant,
}

pub struct Outputs {
    backend: GpioBackend,
    opener: Opener,
    gpio: Option<Box<dyn Gpio>>,
    /// Claimed pins.
    pins: BTreeMap<u8, Box<dyn OutputPin>>,
    /// Why the backend or a pin is not available; empty when everything works.
    problems: BTreeMap<Option<u8>, GpioError>,
    /// The last problem logged, so that a retry failing the same way stays quiet.
    logged: Option<String>,
    retry_at: Option<Instant>,
    retry_wait: Duration,
    relays: Relays,
    led: Option<Led>,
    /// A problem elsewhere (a capture down, the firewall failing), for the LED.
    external_error: bool,
}

impl Outputs {
    /// Claims the configured pins, every relay in its safe state and the LED off; None when
    /// nothing is configured. `backend` replaces the config's (`--dry-run` simulates). Never
    /// fails: see the module doc.
    pub fn start(cfg: &GpioConfig, backend: Option<GpioBackend>, now: Instant) -> Option<Outputs> {
        let backend = backend.unwrap_or(cfg.backend);
        let chip = cfg.chip.clone();
        let opener: Opener = Box::new(move || gpio::open(backend, chip.as_deref()));
        Outputs::with_opener(cfg, backend, opener, now)
    }

    /// [`Outputs::start`] with the backend opened by `opener` (tests: a failing backend).
    pub fn with_opener(
        cfg: &GpioConfig,
        backend: GpioBackend,
        opener: Opener,
        now: Instant,
    ) -> Option<Outputs> {
        if cfg.relays.is_empty() && cfg.led.is_none() {
            return None;
        }
        let mut o = Outputs {
            backend,
            opener,
            gpio: None,
            pins: BTreeMap::new(),
            problems: BTreeMap::new(),
            logged: None,
            retry_at: None,
            retry_wait: RETRY_FIRST,
            relays: Relays::new(&cfg.relays),
            led: cfg.led.map(|l| Led {
                cfg: l,
                state: LedState::default(),
                on: false,
                next: Instant::ZERO,
            }),
            external_error: false,
        };
        o.connect(now);
        o.update_led_error(now);
        Some(o)
    }

    /// Every pin the config names, with the level it must have now.
    fn wanted(&self) -> Vec<(u8, bool, String)> {
        let mut out: Vec<(u8, bool, String)> = self
            .relays
            .view()
            .into_iter()
            .map(|r| (r.pin, r.on != r.active_low, r.name))
            .collect();
        if let Some(l) = &self.led {
            out.push((l.cfg.pin, l.on != l.cfg.active_low, "status LED".into()));
        }
        out
    }

    /// Opens the backend if needed and claims every missing pin; schedules a retry if
    /// anything is still missing.
    fn connect(&mut self, now: Instant) {
        let was_degraded = !self.problems.is_empty();
        self.problems.clear();
        if self.gpio.is_none() {
            match (self.opener)() {
                Ok(g) => self.gpio = Some(g),
                Err(e) => {
                    self.problems.insert(None, e);
                }
            }
        }
        let wanted = self.wanted();
        if let Some(g) = &mut self.gpio {
            let name = g.name();
            for (pin, high, what) in wanted {
                if self.pins.contains_key(&pin) {
                    continue;
                }
                match g.output(pin, high) {
                    Ok(p) => {
                        self.pins.insert(pin, p);
                        // A relay is claimed at its safe state (nothing switched it while
                        // its pin was missing); the LED at its pattern's level.
                        let state = match self.relays.is_on(&what) {
                            Some(on) => format!(
                                "{} (safe state, {name} backend)",
                                if on { "on" } else { "off" }
                            ),
                            None => format!("claimed ({name} backend)"),
                        };
                        info!(pin, backend = name, "{what} (GPIO {pin}): {state}");
                    }
                    Err(e) => {
                        self.problems.insert(Some(pin), e);
                    }
                }
            }
        }
        // A device error on a pin (the chip gone, its permissions changed) means the backend
        // itself must be opened again at the next retry; pins already claimed stay claimed.
        if self
            .problems
            .values()
            .any(|e| matches!(e, GpioError::NoDevice { .. }))
        {
            self.gpio = None;
        }
        if self.problems.is_empty() {
            self.retry_at = None;
            self.retry_wait = RETRY_FIRST;
            if was_degraded {
                info!("GPIO available again: every relay and the LED can be driven");
            }
            self.logged = None;
            return;
        }
        let text = self.problem_text();
        if self.logged.as_deref() != Some(text.as_str()) {
            error!(
                "GPIO unavailable: {text}; the doors keep working, relay actions are skipped, retrying every {}-{} s",
                RETRY_FIRST.as_secs(),
                RETRY_MAX.as_secs()
            );
            self.logged = Some(text);
        } else {
            debug!("GPIO still unavailable: {text}");
        }
        self.retry_at = Some(now + self.retry_wait);
        self.retry_wait = (self.retry_wait * 2).min(RETRY_MAX);
    }

    fn problem_text(&self) -> String {
        let mut seen: Vec<String> = Vec::new();
        for e in self.problems.values() {
            let t = e.to_string();
            if !seen.contains(&t) {
                seen.push(t);
            }
        }
        seen.join("; ")
    }

    fn apply(&mut self, changes: Vec<Change>) {
        for c in changes {
            let Some(p) = self.pins.get_mut(&c.pin) else {
                warn!(relay = %c.relay, pin = c.pin, "{} (GPIO {}): not switched {} ({}): the GPIO is unavailable", c.relay, c.pin, if c.on { "on" } else { "off" }, c.why);
                continue;
            };
            match p.set(c.high) {
                Ok(()) => {
                    info!(relay = %c.relay, pin = c.pin, on = c.on, "{} (GPIO {}): {} ({})", c.relay, c.pin, if c.on { "on" } else { "off" }, c.why)
                }
                Err(e) => {
                    error!(relay = %c.relay, "{}: {e}", c.relay);
                    // Let go of it and claim it again later (a device unplugged and back).
                    self.pins.remove(&c.pin);
                    self.problems.insert(Some(c.pin), e);
                    self.retry_at.get_or_insert(Instant::ZERO);
                }
            }
        }
    }

    /// A door's action on a relay. A relay whose pin is not claimed is left alone (logged).
    pub fn relay(&mut self, now: Instant, name: &str, mode: RelayMode) {
        if let Some(pin) = self.relays.pin(name) {
            if !self.pins.contains_key(&pin) {
                warn!(relay = %name, pin, "{name} (GPIO {pin}): unavailable, not switched: {}", self.problem_text());
                return;
            }
        }
        let changes = self.relays.apply(now, name, mode);
        self.apply(changes);
    }

    /// A knock step was accepted.
    pub fn stage(&mut self, now: Instant) {
        if let Some(led) = &mut self.led {
            led.state.last_stage = Some(now);
            led.next = now;
        }
    }

    /// A door opened.
    pub fn opened(&mut self, now: Instant) {
        if let Some(led) = &mut self.led {
            led.state.last_open = Some(now);
            led.next = now;
        }
    }

    /// Whether something else is wrong (the LED's fast pattern).
    pub fn set_error(&mut self, now: Instant, error: bool) {
        self.external_error = error;
        self.update_led_error(now);
    }

    fn update_led_error(&mut self, now: Instant) {
        let error = self.external_error || !self.problems.is_empty();
        if let Some(led) = &mut self.led {
            if led.state.error != error {
                led.state.error = error;
                led.next = now;
            }
        }
    }

    /// Relay timers (pulse ends, watchdog), the LED, and the retry of a missing GPIO.
    pub fn poll(&mut self, now: Instant) {
        if self.retry_at.is_some_and(|t| now >= t) {
            self.connect(now);
            self.update_led_error(now);
        }
        let due = self.relays.poll(now);
        self.apply(due);
        if let Some(led) = &mut self.led {
            if now >= led.next {
                let (on, next) = led_level(&led.state, now);
                if on != led.on {
                    if let Some(p) = self.pins.get_mut(&led.cfg.pin) {
                        if let Err(e) = p.set(on != led.cfg.active_low) {
                            error!("status LED: {e}");
                        }
                    }
                    led.on = on;
                }
                led.next = next;
            }
        }
    }

    pub fn poll_at(&self) -> Option<Instant> {
        [
            self.relays.poll_at(),
            self.led.as_ref().map(|l| l.next),
            self.retry_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Claims what is missing now instead of at the next retry (SIGHUP: the owner fixed it).
    pub fn retry_now(&mut self, now: Instant) {
        if !self.problems.is_empty() {
            self.retry_wait = RETRY_FIRST;
            self.connect(now);
            self.update_led_error(now);
        }
    }

    /// Whether every pin is claimed.
    pub fn available(&self) -> bool {
        self.problems.is_empty()
    }

    /// Every relay to its safe state, the LED off (SIGTERM).
    pub fn shutdown(&mut self) {
        let safe = self.relays.safe_state();
        self.apply(safe);
        if let Some(led) = &self.led {
            if let Some(p) = self.pins.get_mut(&led.cfg.pin) {
                let _ = p.set(led.cfg.active_low);
            }
        }
    }

    /// For the status page.
    pub fn view(
        &self,
        now: Instant,
        wall_now: SystemTime,
    ) -> (Vec<RelayStatus>, Option<LedStatus>, GpioStatus) {
        let wall = |t: Instant| crate::time::unix_secs(wall_now + t.saturating_since(now));
        let relays = self
            .relays
            .view()
            .into_iter()
            .map(|r| RelayStatus {
                available: self.pins.contains_key(&r.pin),
                name: r.name,
                pin: r.pin,
                on: r.on,
                off_at_unix: r.off_at.map(wall),
            })
            .collect();
        let led = self.led.as_ref().map(|l| LedStatus {
            pin: l.cfg.pin,
            pattern: led_pattern(&l.state, now),
            available: self.pins.contains_key(&l.cfg.pin),
        });
        let gpio = GpioStatus {
            backend: match &self.gpio {
                Some(g) => g.name().to_string(),
                None => backend_name(self.backend).to_string(),
            },
            available: self.problems.is_empty(),
            error: (!self.problems.is_empty()).then(|| self.problem_text()),
        };
        (relays, led, gpio)
    }
}

fn backend_name(b: GpioBackend) -> &'static str {
    match b {
        GpioBackend::Auto => "auto",
        GpioBackend::Cdev => "cdev",
        GpioBackend::Rppal => "rppal",
        GpioBackend::Simulated => "simulated",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::actions::gpio::Simulated;
    use crate::config::RelayConfig;

    /// A backend that cannot be opened while `down` is set, and whose pins in `busy` are
    /// held by someone else; otherwise the simulated one, whose levels the test reads.
    #[derive(Clone, Default)]
    struct Flaky {
        down: Arc<Mutex<bool>>,
        busy: Arc<Mutex<Vec<u8>>>,
        denied: Arc<Mutex<Vec<u8>>>,
        opens: Arc<Mutex<u32>>,
        sim: Simulated,
    }

    struct FlakyGpio(Flaky);

    impl Gpio for FlakyGpio {
        fn name(&self) -> &'static str {
            "flaky"
        }
        fn output(&mut self, pin: u8, high: bool) -> Result<Box<dyn OutputPin>, GpioError> {
            if self.0.busy.lock().unwrap().contains(&pin) {
                return Err(GpioError::Busy { pin });
            }
            if self.0.denied.lock().unwrap().contains(&pin) {
                return Err(GpioError::NoDevice {
                    detail: "/dev/gpiochip0: permission denied".into(),
                });
            }
            self.0.sim.output(pin, high)
        }
    }

    impl Flaky {
        fn opener(&self) -> Opener {
            let f = self.clone();
            Box::new(move || {
                *f.opens.lock().unwrap() += 1;
                if *f.down.lock().unwrap() {
                    return Err(GpioError::NoDevice {
                        detail: "/dev/gpiochip0: permission denied".into(),
                    });
                }
                Ok(Box::new(FlakyGpio(f.clone())) as Box<dyn Gpio>)
            })
        }
        /// (pin, high) in the order they were set.
        fn levels(&self) -> Vec<(u8, bool)> {
            let l = self.sim.levels.lock().unwrap();
            l.iter().map(|l| (l.pin, l.high)).collect()
        }
    }

    fn config() -> GpioConfig {
        GpioConfig {
            backend: GpioBackend::Auto,
            chip: None,
            relays: vec![
                RelayConfig {
                    name: "garage".into(),
                    pin: 27,
                    active_low: true,
                    max_on: Duration::from_secs(60),
                    group: None,
                    safe_on: false,
                    mqtt_command: None,
                },
                RelayConfig {
                    name: "zone1".into(),
                    pin: 17,
                    active_low: false,
                    max_on: Duration::from_secs(60),
                    group: None,
                    safe_on: false,
                    mqtt_command: None,
                },
            ],
            led: Some(LedConfig {
                pin: 25,
                active_low: false,
            }),
        }
    }

    fn t(ms: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(ms)
    }

    #[test]
    fn a_gpio_that_cannot_open_is_reported_retried_with_backoff_and_recovered() {
        let f = Flaky::default();
        *f.down.lock().unwrap() = true;
        let mut o = Outputs::with_opener(&config(), GpioBackend::Auto, f.opener(), t(0)).unwrap();
        assert!(!o.available());
        let (relays, led, gpio) = o.view(t(0), SystemTime::UNIX_EPOCH);
        assert!(relays.iter().all(|r| !r.available) && !led.unwrap().available);
        assert_eq!(gpio.backend, "auto");
        assert!(gpio.error.unwrap().contains("permission denied"));

        // A door's pulse while unavailable: nothing driven, the relay stays off.
        o.relay(t(100), "garage", RelayMode::Pulse(Duration::from_secs(1)));
        assert!(f.levels().is_empty());
        assert!(o
            .view(t(100), SystemTime::UNIX_EPOCH)
            .0
            .iter()
            .all(|r| !r.on));

        // Retries at 5 s, then 10 s later (backoff), not in between.
        assert_eq!(o.poll_at(), Some(t(5_000)).min(o.poll_at()));
        for (ms, opens) in [(4_999, 1), (5_000, 2), (14_999, 2), (15_000, 3)] {
            o.poll(t(ms));
            assert_eq!(*f.opens.lock().unwrap(), opens, "at {ms} ms");
        }
        // Back: every pin claimed at its safe level (active-low garage high = off).
        *f.down.lock().unwrap() = false;
        o.poll(t(35_000));
        assert!(o.available());
        // (The LED at whatever its pattern shows now.)
        let claimed: Vec<(u8, bool)> = f.levels().into_iter().take(2).collect();
        assert_eq!(claimed, vec![(27, true), (17, false)]);
        assert_eq!(f.levels()[2].0, 25);
        let (relays, led, gpio) = o.view(t(35_000), SystemTime::UNIX_EPOCH);
        assert!(relays.iter().all(|r| r.available) && led.unwrap().available);
        assert_eq!(
            (gpio.backend.as_str(), gpio.available, gpio.error),
            ("flaky", true, None)
        );

        // And the pulse works now: garage on (low), then off (high) when it ends.
        o.relay(
            t(36_000),
            "garage",
            RelayMode::Pulse(Duration::from_secs(1)),
        );
        o.poll(t(37_000));
        let garage: Vec<bool> = f
            .levels()
            .into_iter()
            .filter(|(p, _)| *p == 27)
            .map(|(_, h)| h)
            .collect();
        assert_eq!(garage, vec![true, false, true]);
    }

    #[test]
    fn a_busy_pin_leaves_the_others_working_and_is_claimed_when_freed() {
        let f = Flaky::default();
        f.busy.lock().unwrap().push(17);
        let mut o = Outputs::with_opener(&config(), GpioBackend::Auto, f.opener(), t(0)).unwrap();
        assert!(!o.available());
        let (relays, _, gpio) = o.view(t(0), SystemTime::UNIX_EPOCH);
        let avail: Vec<(String, bool)> =
            relays.into_iter().map(|r| (r.name, r.available)).collect();
        assert_eq!(
            avail,
            vec![("garage".to_string(), true), ("zone1".to_string(), false)]
        );
        assert!(gpio.error.unwrap().contains("GPIO 17 is in use"));

        // garage still works; zone1 is skipped.
        o.relay(t(10), "garage", RelayMode::On);
        o.relay(t(10), "zone1", RelayMode::On);
        assert!(f.levels().contains(&(27, false)));
        assert!(!f.levels().iter().any(|(p, _)| *p == 17));
        // The LED blinks the error pattern meanwhile.
        assert_eq!(
            o.view(t(10), SystemTime::UNIX_EPOCH).1.unwrap().pattern,
            "error"
        );

        // Freed: claimed at the next retry, the backend is not reopened.
        f.busy.lock().unwrap().clear();
        o.poll(t(5_000));
        assert!(o.available());
        assert_eq!(*f.opens.lock().unwrap(), 1);
        assert!(f.levels().contains(&(17, false)));
        assert_ne!(
            o.view(t(5_000), SystemTime::UNIX_EPOCH).1.unwrap().pattern,
            "error"
        );
    }

    #[test]
    fn a_device_error_on_a_pin_reopens_the_backend_at_the_retry() {
        let f = Flaky::default();
        f.denied.lock().unwrap().push(17);
        let mut o = Outputs::with_opener(&config(), GpioBackend::Auto, f.opener(), t(0)).unwrap();
        assert!(!o.available());
        f.denied.lock().unwrap().clear();
        o.poll(t(5_000));
        assert!(o.available());
        assert_eq!(*f.opens.lock().unwrap(), 2, "opened again, not reused");
        // The pins claimed the first time were kept, not claimed twice.
        assert_eq!(f.levels().iter().filter(|(p, _)| *p == 27).count(), 1);
    }

    #[test]
    fn shutdown_puts_every_claimed_pin_at_its_safe_level() {
        let f = Flaky::default();
        let mut o = Outputs::with_opener(&config(), GpioBackend::Auto, f.opener(), t(0)).unwrap();
        o.relay(t(1), "garage", RelayMode::On);
        o.relay(t(1), "zone1", RelayMode::On);
        o.shutdown();
        let last = |pin: u8| f.levels().into_iter().rfind(|(p, _)| *p == pin).unwrap().1;
        assert!(last(27), "active-low garage off = high");
        assert!(!last(17));
        assert!(!last(25));
    }
}
