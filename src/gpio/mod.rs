//! GPIO outputs (relays, the status LED) behind our own small trait.
//!
//! Two backends: [`Simulated`] (records every level with a timestamp and logs it: tests,
//! `--dry-run`, any Linux machine) and, on ARM builds, the Raspberry Pi's GPIO through rppal
//! (`rpi.rs`, the only file that knows rppal: rppal is retired upstream, so it stays
//! replaceable). Which one runs is `[gpio] backend` in the config.

#[cfg(any(target_arch = "arm", target_arch = "aarch64"))]
mod rpi;

use std::sync::{Arc, Mutex};

use crate::config::GpioBackend;

/// One output pin.
pub trait OutputPin: Send {
    fn set(&mut self, high: bool) -> Result<(), GpioError>;
}

/// A source of output pins.
pub trait Gpio: Send {
    fn name(&self) -> &'static str;
    /// Claims `pin` (BCM number) as an output at `high`.
    fn output(&mut self, pin: u8, high: bool) -> Result<Box<dyn OutputPin>, GpioError>;
}

/// Why a pin cannot be driven. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum GpioError {
    /// /dev/gpiomem (or the GPIO chip) cannot be opened.
    #[error("cannot open the GPIO ({detail}): on a Raspberry Pi, check that /dev/gpiomem exists and that knockgate runs as root or in the gpio group; on another machine set [gpio] backend = \"simulated\"")]
    NoDevice { detail: String },
    /// The pin is claimed by another program or driver.
    #[error("GPIO {pin} is in use by another program or driver (a dtoverlay, another daemon): free it or choose another pin")]
    Busy { pin: u8 },
    /// The pin does not exist on this board.
    #[error("GPIO {pin} is not available on this board: use a BCM GPIO number from 0 to 27")]
    NoPin { pin: u8 },
    /// This build has no Raspberry Pi GPIO support.
    #[error("this knockgate was built without Raspberry Pi GPIO support (not an ARM build): set [gpio] backend = \"simulated\"")]
    Unsupported,
    #[error("GPIO {pin}: {detail}")]
    Other { pin: u8, detail: String },
}

/// Opens the configured backend.
pub fn open(backend: GpioBackend) -> Result<Box<dyn Gpio>, GpioError> {
    match backend {
        GpioBackend::Simulated => Ok(Box::new(Simulated::default())),
        #[cfg(any(target_arch = "arm", target_arch = "aarch64"))]
        GpioBackend::Rppal => Ok(Box::new(rpi::Rpi::new()?)),
        #[cfg(not(any(target_arch = "arm", target_arch = "aarch64")))]
        GpioBackend::Rppal => Err(GpioError::Unsupported),
    }
}

/// One level change recorded by [`Simulated`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    pub at: std::time::Instant,
    pub pin: u8,
    pub high: bool,
}

/// No hardware: records levels (shared, so a test can read them) and logs each change.
#[derive(Debug, Clone, Default)]
pub struct Simulated {
    pub levels: Arc<Mutex<Vec<Level>>>,
}

struct SimPin {
    pin: u8,
    levels: Arc<Mutex<Vec<Level>>>,
}

impl OutputPin for SimPin {
    fn set(&mut self, high: bool) -> Result<(), GpioError> {
        let level = Level {
            at: std::time::Instant::now(),
            pin: self.pin,
            high,
        };
        self.levels.lock().expect("levels lock").push(level);
        tracing::debug!(
            pin = self.pin,
            high,
            "simulated GPIO {} {}",
            self.pin,
            if high { "high" } else { "low" }
        );
        Ok(())
    }
}

impl Gpio for Simulated {
    fn name(&self) -> &'static str {
        "simulated"
    }
    fn output(&mut self, pin: u8, high: bool) -> Result<Box<dyn OutputPin>, GpioError> {
        let mut p = SimPin {
            pin,
            levels: self.levels.clone(),
        };
        p.set(high)?;
        Ok(Box::new(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_records_levels_in_order() {
        let mut g = Simulated::default();
        let levels = g.levels.clone();
        let mut p = g.output(17, true).unwrap();
        p.set(false).unwrap();
        let l: Vec<(u8, bool)> = levels
            .lock()
            .unwrap()
            .iter()
            .map(|l| (l.pin, l.high))
            .collect();
        assert_eq!(l, vec![(17, true), (17, false)]);
    }

    #[test]
    fn rppal_off_a_pi_says_what_to_do() {
        if cfg!(any(target_arch = "arm", target_arch = "aarch64")) {
            return;
        }
        let err = open(GpioBackend::Rppal).err().expect("no rppal off ARM");
        assert!(err.to_string().contains("backend = \"simulated\""), "{err}");
    }
}
