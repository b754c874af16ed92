//! GPIO outputs (relays, the status LED) behind our own small trait.
//!
//! Three backends:
//! - [`cdev`]: the kernel's GPIO character device (`/dev/gpiochip*`) through gpiocdev. It works
//!   on every kernel the firmware runs (Debian's, mainline, Raspberry Pi OS, the Pi 5's RP1),
//!   needs no root and no `/dev/mem`: read and write access to the chip device is enough (the
//!   image gives it to the `gpio` group).
//! - rppal (`rpi.rs`, ARM builds only, the only file that knows rppal: it is retired upstream):
//!   the SoC's registers through `/dev/gpiomem`, which only Raspberry Pi OS kernels have. Not in
//!   the armhf build for Debian 13 (64-bit `time_t`), where rppal does not compile (Cargo.toml).
//! - [`Simulated`]: records every level with a timestamp and logs it (tests, `--dry-run`).
//!
//! `[gpio] backend = "auto"` (the default) takes the character device when the kernel has one,
//! else `/dev/gpiomem` through rppal. Nothing here is fatal to the daemon: the caller
//! ([`crate::actions::outputs`]) keeps guarding doors when the GPIO is missing and retries.

pub mod cdev;
#[cfg(all(
    any(target_arch = "arm", target_arch = "aarch64"),
    not(libc_unstable_gnu_time_bits = "64")
))]
mod rpi;

use std::path::Path;
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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpioError {
    /// No GPIO device, or one knockgate may not open.
    #[error("cannot open the GPIO ({detail}): check that the kernel has /dev/gpiochip* (or /dev/gpiomem) and that knockgate's user may open it (the gpio group); off a Raspberry Pi set [gpio] backend = \"simulated\"")]
    NoDevice { detail: String },
    /// The pin is claimed by another program or driver.
    #[error("GPIO {pin} is in use by another program or driver (a dtoverlay, another daemon): free it or choose another pin")]
    Busy { pin: u8 },
    /// The pin does not exist on this board.
    #[error(
        "GPIO {pin} is not available on this board ({detail}): use a BCM GPIO number from 0 to 27"
    )]
    NoPin { pin: u8, detail: String },
    /// This build has no rppal (not an ARM build, or the armhf one for Debian 13).
    #[error("this knockgate was built without rppal (not an ARM build, or the armhf build for Debian 13): set [gpio] backend = \"cdev\" or \"auto\"")]
    Unsupported,
    #[error("GPIO {pin}: {detail}")]
    Other { pin: u8, detail: String },
}

/// Opens the configured backend. `chip` is `[gpio] chip` (cdev only).
pub fn open(backend: GpioBackend, chip: Option<&str>) -> Result<Box<dyn Gpio>, GpioError> {
    match backend {
        GpioBackend::Simulated => Ok(Box::new(Simulated::default())),
        GpioBackend::Cdev => Ok(Box::new(cdev::Cdev::open(chip)?)),
        GpioBackend::Rppal => rppal(),
        GpioBackend::Auto => {
            if chip.is_some() || cdev::any_chip() {
                Ok(Box::new(cdev::Cdev::open(chip)?))
            } else if Path::new("/dev/gpiomem").exists() {
                rppal()
            } else {
                Err(GpioError::NoDevice {
                    detail: "this kernel offers neither /dev/gpiochip* nor /dev/gpiomem".into(),
                })
            }
        }
    }
}

#[cfg(all(
    any(target_arch = "arm", target_arch = "aarch64"),
    not(libc_unstable_gnu_time_bits = "64")
))]
fn rppal() -> Result<Box<dyn Gpio>, GpioError> {
    Ok(Box::new(rpi::Rpi::new()?))
}

#[cfg(not(all(
    any(target_arch = "arm", target_arch = "aarch64"),
    not(libc_unstable_gnu_time_bits = "64")
)))]
fn rppal() -> Result<Box<dyn Gpio>, GpioError> {
    Err(GpioError::Unsupported)
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
    fn rppal_off_arm_says_what_to_do() {
        if cfg!(all(
            any(target_arch = "arm", target_arch = "aarch64"),
            not(libc_unstable_gnu_time_bits = "64")
        )) {
            return;
        }
        let err = open(GpioBackend::Rppal, None)
            .err()
            .expect("no rppal off ARM");
        assert!(err.to_string().contains("backend = \"cdev\""), "{err}");
    }

    #[test]
    fn auto_without_any_gpio_device_names_both_and_the_group() {
        if cdev::any_chip() || Path::new("/dev/gpiomem").exists() {
            return; // a machine with a GPIO: nothing to show here
        }
        let err = open(GpioBackend::Auto, None).err().expect("no GPIO here");
        let text = err.to_string();
        assert!(text.contains("/dev/gpiochip*"), "{text}");
        assert!(text.contains("gpio group"), "{text}");
    }
}
