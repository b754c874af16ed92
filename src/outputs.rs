//! The daemon's GPIO outputs: relays driven by doors and the status LED driven by the
//! daemon's state. Decisions come from the pure [`crate::relays`] machines; this module owns
//! the pins and applies the levels.

use std::collections::BTreeMap;
use std::time::SystemTime;

use tracing::{error, info};

use crate::config::{GpioBackend, GpioConfig, LedConfig, RelayMode};
use crate::gpio::{self, Gpio, GpioError, OutputPin};
use crate::relays::{led_level, led_pattern, Change, LedState, Relays};
use crate::status::{LedStatus, RelayStatus};
use crate::time::Instant;

struct Led {
    cfg: LedConfig,
    state: LedState,
    on: bool,
    next: Instant,
}

pub struct Outputs {
    _gpio: Box<dyn Gpio>,
    pins: BTreeMap<u8, Box<dyn OutputPin>>,
    relays: Relays,
    led: Option<Led>,
}

impl Outputs {
    /// Claims the configured pins, every relay in its safe state and the LED off; None when
    /// nothing is configured. `--dry-run` always simulates.
    pub fn start(cfg: &GpioConfig, dry_run: bool) -> Result<Option<Outputs>, GpioError> {
        if cfg.relays.is_empty() && cfg.led.is_none() {
            return Ok(None);
        }
        let backend = if dry_run {
            GpioBackend::Simulated
        } else {
            cfg.backend
        };
        let mut g = gpio::open(backend)?;
        let mut relays = Relays::new(&cfg.relays);
        let mut pins = BTreeMap::new();
        for c in relays.safe_state() {
            pins.insert(c.pin, g.output(c.pin, c.high)?);
            info!(relay = %c.relay, pin = c.pin, "{} (GPIO {}): {} ({}, {} backend)", c.relay, c.pin, if c.on { "on" } else { "off" }, c.why, g.name());
        }
        let led = match cfg.led {
            Some(l) => {
                pins.insert(l.pin, g.output(l.pin, l.active_low)?);
                Some(Led {
                    cfg: l,
                    state: LedState::default(),
                    on: false,
                    next: Instant::ZERO,
                })
            }
            None => None,
        };
        Ok(Some(Outputs {
            _gpio: g,
            pins,
            relays,
            led,
        }))
    }

    fn apply(&mut self, changes: Vec<Change>) {
        for c in changes {
            let result = match self.pins.get_mut(&c.pin) {
                Some(p) => p.set(c.high),
                None => continue,
            };
            match result {
                Ok(()) => {
                    info!(relay = %c.relay, pin = c.pin, on = c.on, "{} (GPIO {}): {} ({})", c.relay, c.pin, if c.on { "on" } else { "off" }, c.why)
                }
                Err(e) => error!(relay = %c.relay, "{}: {e}", c.relay),
            }
        }
    }

    /// A door's action on a relay.
    pub fn relay(&mut self, now: Instant, name: &str, mode: RelayMode) {
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

    /// Whether something is wrong (the LED's fast pattern).
    pub fn set_error(&mut self, now: Instant, error: bool) {
        if let Some(led) = &mut self.led {
            if led.state.error != error {
                led.state.error = error;
                led.next = now;
            }
        }
    }

    /// Relay timers (pulse ends, watchdog) and the LED.
    pub fn poll(&mut self, now: Instant) {
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
        [self.relays.poll_at(), self.led.as_ref().map(|l| l.next)]
            .into_iter()
            .flatten()
            .min()
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
    pub fn view(&self, now: Instant) -> (Vec<RelayStatus>, Option<LedStatus>) {
        let wall = |t: Instant| {
            let left = t.saturating_since(now);
            crate::sessions::unix_ms(SystemTime::now() + left) / 1000
        };
        let relays = self
            .relays
            .view()
            .into_iter()
            .map(|r| RelayStatus {
                name: r.name,
                pin: r.pin,
                on: r.on,
                off_at_unix: r.off_at.map(wall),
            })
            .collect();
        let led = self.led.as_ref().map(|l| LedStatus {
            pin: l.cfg.pin,
            pattern: led_pattern(&l.state, now).as_str().to_string(),
        });
        (relays, led)
    }
}
