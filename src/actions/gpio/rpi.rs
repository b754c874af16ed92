//! The rppal backend (/dev/gpiomem, Raspberry Pi OS kernels only), in this one file: rppal is
//! retired upstream, and the character device backend (`cdev.rs`) is the default.
//!
//! Pins are kept as outputs at their last level when the daemon exits (`reset_on_drop` off):
//! the daemon sets every relay to its safe state before exiting, and a pin left floating could
//! switch an active-low relay board on.

use super::{Gpio, GpioError, OutputPin};

pub struct Rpi {
    gpio: rppal::gpio::Gpio,
}

fn map(pin: u8, e: rppal::gpio::Error) -> GpioError {
    use rppal::gpio::Error as E;
    match e {
        E::PinUsed(p) => GpioError::Busy { pin: p },
        E::PinNotAvailable(p) => GpioError::NoPin {
            pin: p,
            detail: "not on this SoC".into(),
        },
        E::PermissionDenied(detail) => GpioError::NoDevice { detail },
        E::UnknownModel => GpioError::NoDevice {
            detail: "unknown Raspberry Pi model".into(),
        },
        E::Io(io) => GpioError::NoDevice {
            detail: io.to_string(),
        },
        other => GpioError::Other {
            pin,
            detail: other.to_string(),
        },
    }
}

impl Rpi {
    pub fn new() -> Result<Rpi, GpioError> {
        Ok(Rpi {
            gpio: rppal::gpio::Gpio::new().map_err(|e| map(0, e))?,
        })
    }
}

struct Pin(rppal::gpio::OutputPin);

impl OutputPin for Pin {
    fn set(&mut self, high: bool) -> Result<(), GpioError> {
        if high {
            self.0.set_high();
        } else {
            self.0.set_low();
        }
        Ok(())
    }
}

impl Gpio for Rpi {
    fn name(&self) -> &'static str {
        "rppal"
    }

    fn output(&mut self, pin: u8, high: bool) -> Result<Box<dyn OutputPin>, GpioError> {
        let p = self.gpio.get(pin).map_err(|e| map(pin, e))?;
        let mut out = if high {
            p.into_output_high()
        } else {
            p.into_output_low()
        };
        out.set_reset_on_drop(false);
        Ok(Box::new(Pin(out)))
    }
}
