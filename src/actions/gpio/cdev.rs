//! The GPIO character device backend (`/dev/gpiochip*`), through gpiocdev.
//!
//! BCM GPIO numbers are line offsets on the SoC's GPIO chip, found by its label (the bcm2835,
//! bcm2711 and RP1 pin controllers); on a board whose chip has another label, a line named
//! `GPIO<n>` (the Raspberry Pi device trees' names) is looked up on every chip, and
//! `[gpio] chip` names the chip outright. Each pin is one line request with the consumer
//! `knockgate` (as `gpioinfo` shows it); the kernel keeps it for us until the request is
//! dropped, and then returns the line to the driver (on the Pi: an input), which is why the
//! daemon drives every relay to its safe level before it exits.

use std::path::{Path, PathBuf};

use gpiocdev::line::Value;

use super::{Gpio, GpioError, OutputPin};

/// Labels of the chips that carry the Raspberry Pi's header GPIOs, whose line offsets are the
/// BCM numbers: Pi 1–3 (bcm2835), Pi 4 (bcm2711), Pi 5 (RP1, and the bcm2712's own bank).
pub const SOC_LABELS: &[&str] = &[
    "pinctrl-bcm2835",
    "pinctrl-bcm2711",
    "pinctrl-rp1",
    "rp1-gpio",
    "pinctrl-bcm2712",
];

/// The consumer name our line requests carry.
const CONSUMER: &str = "knockgate";

/// One GPIO chip as the kernel describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChipInfo {
    pub path: PathBuf,
    pub label: String,
    pub lines: u32,
}

/// Whether the kernel offers any GPIO character device.
pub fn any_chip() -> bool {
    gpiocdev::chip::chips().is_ok_and(|c| !c.is_empty())
}

/// The chip for BCM numbers among `chips`: the first whose label is a Raspberry Pi SoC's.
pub fn soc_chip(chips: &[ChipInfo]) -> Option<&ChipInfo> {
    chips
        .iter()
        .find(|c| SOC_LABELS.contains(&c.label.as_str()))
}

/// The chip for BCM numbers among the chips that could be opened, or the error of one that
/// could not when the SoC's is not among them (permission denied on /dev/gpiochip0 while the
/// firmware's expander opens: say so rather than fall back to looking lines up by name).
pub fn pick(chips: &[ChipInfo], failed: Option<GpioError>) -> Result<Option<ChipInfo>, GpioError> {
    match (soc_chip(chips), failed) {
        (Some(c), _) => Ok(Some(c.clone())),
        (None, Some(e)) => Err(e),
        (None, None) => Ok(None),
    }
}

/// The errno inside a gpiocdev error, if it came from the kernel.
fn errno(e: &gpiocdev::Error) -> Option<i32> {
    match e {
        gpiocdev::Error::Os(n) => Some(n.0),
        gpiocdev::Error::Uapi(_, gpiocdev_uapi::Error::Os(n)) => Some(n.0),
        _ => None,
    }
}

fn device_error(path: &Path, e: &gpiocdev::Error) -> GpioError {
    let detail = match errno(e) {
        Some(libc::EACCES) | Some(libc::EPERM) => format!(
            "{}: permission denied (knockgate's user needs the gpio group)",
            path.display()
        ),
        Some(libc::ENOENT) => format!("{}: no such GPIO chip", path.display()),
        _ => format!("{}: {e}", path.display()),
    };
    GpioError::NoDevice { detail }
}

fn open_chip(path: &Path) -> Result<ChipInfo, GpioError> {
    let chip = gpiocdev::Chip::from_path(path).map_err(|e| device_error(path, &e))?;
    let info = chip.info().map_err(|e| device_error(path, &e))?;
    Ok(ChipInfo {
        path: chip.path().to_path_buf(),
        label: info.label,
        lines: info.num_lines,
    })
}

/// `[gpio] chip`: a path, or a name under /dev (`gpiochip0`).
fn chip_path(name: &str) -> PathBuf {
    if name.contains('/') {
        PathBuf::from(name)
    } else {
        Path::new("/dev").join(name)
    }
}

/// The GPIO chips of this kernel (or the one configured), opened once to read their labels.
pub struct Cdev {
    chips: Vec<ChipInfo>,
    /// The chip whose offsets are BCM numbers, if one was configured or recognised.
    main: Option<ChipInfo>,
}

impl Cdev {
    /// Opens `chip` if given, else every chip of the kernel. Fails when the SoC's chip is not
    /// among those that could be opened and one could not (it may be the one).
    pub fn open(chip: Option<&str>) -> Result<Cdev, GpioError> {
        if let Some(name) = chip {
            let info = open_chip(&chip_path(name))?;
            return Ok(Cdev {
                chips: vec![info.clone()],
                main: Some(info),
            });
        }
        let paths = gpiocdev::chip::chips().map_err(|e| GpioError::NoDevice {
            detail: format!("/dev: {e}"),
        })?;
        if paths.is_empty() {
            return Err(GpioError::NoDevice {
                detail: "no /dev/gpiochip* in this kernel".into(),
            });
        }
        let mut chips = Vec::new();
        let mut first_error = None;
        for p in &paths {
            match open_chip(p) {
                Ok(c) => chips.push(c),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let main = pick(&chips, first_error)?;
        Ok(Cdev { chips, main })
    }

    /// Where BCM GPIO `pin` is: (chip, offset).
    fn locate(&self, pin: u8) -> Result<(PathBuf, u32), GpioError> {
        if let Some(main) = &self.main {
            if u32::from(pin) >= main.lines {
                return Err(GpioError::NoPin {
                    pin,
                    detail: format!("{} has {} lines", main.path.display(), main.lines),
                });
            }
            return Ok((main.path.clone(), u32::from(pin)));
        }
        let name = format!("GPIO{pin}");
        for c in &self.chips {
            let Ok(chip) = gpiocdev::Chip::from_path(&c.path) else {
                continue;
            };
            if let Some(line) = chip.find_line_info(&name) {
                return Ok((c.path.clone(), line.offset));
            }
        }
        let seen: Vec<String> = self
            .chips
            .iter()
            .map(|c| format!("{} \"{}\"", c.path.display(), c.label))
            .collect();
        Err(GpioError::NoPin {
            pin,
            detail: format!(
                "no Raspberry Pi GPIO chip and no line named {name} among {}; set [gpio] chip",
                seen.join(", ")
            ),
        })
    }
}

struct Line {
    pin: u8,
    req: gpiocdev::Request,
}

impl OutputPin for Line {
    fn set(&mut self, high: bool) -> Result<(), GpioError> {
        let value = if high { Value::Active } else { Value::Inactive };
        self.req
            .set_lone_value(value)
            .map_err(|e| GpioError::Other {
                pin: self.pin,
                detail: e.to_string(),
            })
    }
}

impl Gpio for Cdev {
    fn name(&self) -> &'static str {
        "cdev"
    }

    fn output(&mut self, pin: u8, high: bool) -> Result<Box<dyn OutputPin>, GpioError> {
        let (chip, offset) = self.locate(pin)?;
        let value = if high { Value::Active } else { Value::Inactive };
        let req = gpiocdev::Request::builder()
            .on_chip(&chip)
            .with_consumer(CONSUMER)
            .with_line(offset)
            .as_output(value)
            .request()
            .map_err(|e| match errno(&e) {
                Some(libc::EBUSY) => GpioError::Busy { pin },
                Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::ENOENT) => {
                    device_error(&chip, &e)
                }
                Some(libc::EINVAL) => GpioError::NoPin {
                    pin,
                    detail: format!("{} line {offset}: {e}", chip.display()),
                },
                _ => GpioError::Other {
                    pin,
                    detail: format!("{} line {offset}: {e}", chip.display()),
                },
            })?;
        Ok(Box::new(Line { pin, req }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chip(n: u32, label: &str, lines: u32) -> ChipInfo {
        ChipInfo {
            path: PathBuf::from(format!("/dev/gpiochip{n}")),
            label: label.into(),
            lines,
        }
    }

    #[test]
    fn the_socs_chip_is_found_by_label_whatever_its_number() {
        // A Pi 3 on Debian's kernel: the SoC's bank first, the firmware's expander after.
        let pi3 = [
            chip(0, "pinctrl-bcm2835", 54),
            chip(1, "raspberrypi-exp-gpio", 8),
        ];
        assert_eq!(soc_chip(&pi3).unwrap().path, Path::new("/dev/gpiochip0"));
        // A Pi 4: the expander was probed first.
        let pi4 = [
            chip(0, "raspberrypi-exp-gpio", 8),
            chip(1, "pinctrl-bcm2711", 58),
        ];
        assert_eq!(soc_chip(&pi4).unwrap().path, Path::new("/dev/gpiochip1"));
        // A Pi 5 on Raspberry Pi OS: RP1 carries the header.
        let pi5 = [
            chip(0, "gpio-brcmstb@107d508500", 32),
            chip(4, "pinctrl-rp1", 54),
        ];
        assert_eq!(soc_chip(&pi5).unwrap().path, Path::new("/dev/gpiochip4"));
        // Something else: no guess.
        assert!(soc_chip(&[chip(0, "pl061", 8)]).is_none());
    }

    #[test]
    fn an_soc_chip_that_cannot_be_opened_is_the_error_not_a_missing_pin() {
        let denied = GpioError::NoDevice {
            detail: "/dev/gpiochip0: permission denied".into(),
        };
        let expander = [chip(1, "raspberrypi-exp-gpio", 8)];
        assert_eq!(pick(&expander, Some(denied.clone())), Err(denied.clone()));
        let pi3 = [
            chip(0, "pinctrl-bcm2835", 54),
            chip(1, "raspberrypi-exp-gpio", 8),
        ];
        assert_eq!(pick(&pi3, Some(denied)).unwrap().unwrap().lines, 54);
        // Another board, every chip readable: lines are looked up by name.
        assert_eq!(pick(&[chip(0, "pl061", 8)], None), Ok(None));
    }

    #[test]
    fn a_missing_chip_is_a_device_error_naming_it() {
        let err = Cdev::open(Some("/nonexistent/gpiochip7")).err().unwrap();
        let text = err.to_string();
        assert!(matches!(err, GpioError::NoDevice { .. }), "{err:?}");
        assert!(text.contains("/nonexistent/gpiochip7"), "{text}");
    }

    #[test]
    fn chip_names_are_under_dev() {
        assert_eq!(chip_path("gpiochip0"), Path::new("/dev/gpiochip0"));
        assert_eq!(chip_path("/dev/gpiochip3"), Path::new("/dev/gpiochip3"));
    }
}
