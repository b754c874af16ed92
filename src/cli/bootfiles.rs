//! `knockgate bootfiles`: settings the owner drops on the SD card's boot partition from a PC,
//! taken in at boot, before the network and the daemon start.
//!
//! - `wifi.txt` (`country`, `ssid`, `password`, optional `hidden`, in the config's TOML
//!   syntax): becomes wpa_supplicant's config for wlan0 (mode 600). The file written holds the
//!   WPA2 key derived from the passphrase (PBKDF2-HMAC-SHA1, as `wpa_passphrase` does) and
//!   the SSID in hex, never the passphrase. A `wpa_supplicant.conf` (the Raspberry Pi OS
//!   habit) is taken as it is, if it names its country.
//! - `knockgate.toml`: replaces the daemon's config, if it passes everything `knockgate check`
//!   checks (`sequence = []` allowed: the first-boot step fills it in after this).
//!
//! A file taken in is removed from the boot partition once its replacement is durable (it
//! holds a secret; a power cut in between just takes it in again at the next boot). A file
//! with an error is left where it is and nothing it would replace is touched; the error names
//! the file, the line and the key, goes to stderr (the boot log) and to a notice file in
//! [`NOTICES_DIR`] that the daemon shows on its status page. No message ever holds a
//! passphrase, a key or a knock sequence.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::cli::firstboot::{self, OsRng};
use crate::config::{self, ConfigError};
use crate::doors::Dynamic;

/// The Wi-Fi settings file on the boot partition.
pub const WIFI_FILE: &str = "wifi.txt";
/// A wpa_supplicant config on the boot partition, taken as it is.
pub const WPA_FILE: &str = "wpa_supplicant.conf";
/// A knockgate config on the boot partition.
pub const CONFIG_FILE: &str = "knockgate.toml";
/// Where wlan0's wpa_supplicant config goes (wpa_supplicant@wlan0.service reads it).
pub const DEFAULT_WPA_CONF: &str = "/etc/wpa_supplicant/wpa_supplicant-wlan0.conf";
use crate::sys::notices::set as set_notice;
pub use crate::sys::notices::{read as read_notices, NOTICES_DIR};

/// What `knockgate bootfiles` works on.
#[derive(Debug, Clone)]
pub struct Options {
    pub boot_dir: PathBuf,
    pub config: PathBuf,
    pub wpa_conf: PathBuf,
    pub notices_dir: PathBuf,
}

/// What it did: one line per file taken in, one per file refused.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub done: Vec<String>,
    pub problems: Vec<String>,
}

/// A problem with one file, located where possible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default(), key.as_ref().map(|k| format!(": {k}")).unwrap_or_default())]
pub struct FileError {
    pub file: String,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl From<ConfigError> for FileError {
    fn from(e: ConfigError) -> Self {
        FileError {
            file: e.file,
            line: e.line,
            key: e.key,
            message: e.message,
        }
    }
}

/// The Wi-Fi network to join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wifi {
    /// ISO 3166 alpha-2, upper case.
    pub country: String,
    pub ssid: Vec<u8>,
    /// The WPA2 pre-shared key.
    pub psk: [u8; 32],
    pub hidden: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWifi {
    country: Option<Spanned<toml::Value>>,
    ssid: Option<Spanned<toml::Value>>,
    password: Option<Spanned<toml::Value>>,
    hidden: Option<Spanned<toml::Value>>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Parses `wifi.txt`. Pure. Errors never quote the password.
pub fn parse_wifi(text: &str, file: &str) -> Result<Wifi, FileError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let err = |line: Option<usize>, key: Option<&str>, message: String| FileError {
        file: file.to_string(),
        line,
        key: key.map(str::to_string),
        message,
    };
    let raw: RawWifi = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        // toml's own message names the problem without quoting the value; its snippet of
        // the line (which could be the password's) is not used.
        let message = e.message().trim().replace('\n', " ");
        let hint = if message.contains("unknown field") {
            " (wifi.txt takes country, ssid, password and hidden)"
        } else {
            " (write each setting as key = \"value\", with the value in double quotes)"
        };
        err(line, None, format!("{message}{hint}"))
    })?;
    let string = |v: &Spanned<toml::Value>, key: &str| -> Result<String, FileError> {
        match v.get_ref() {
            toml::Value::String(s) => Ok(s.clone()),
            _ => Err(err(
                Some(line_of(text, v.span().start)),
                Some(key),
                "expected text in double quotes, such as \"...\"".into(),
            )),
        }
    };
    let missing = |key: &str, what: &str| err(None, Some(key), format!("missing: add {what}"));

    let country_v = raw.country.as_ref().ok_or_else(|| {
        missing(
            "country",
            "country = \"DE\" (your two-letter country code: it selects the channels and power allowed where the gateway is)",
        )
    })?;
    let country = string(country_v, "country")?.trim().to_ascii_uppercase();
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(err(
            Some(line_of(text, country_v.span().start)),
            Some("country"),
            "expected a two-letter country code (ISO 3166), such as \"DE\", \"US\" or \"GB\""
                .into(),
        ));
    }

    let ssid_v = raw
        .ssid
        .as_ref()
        .ok_or_else(|| missing("ssid", "ssid = \"...\" (the network's name)"))?;
    let ssid = string(ssid_v, "ssid")?;
    if ssid.is_empty() || ssid.len() > 32 {
        return Err(err(
            Some(line_of(text, ssid_v.span().start)),
            Some("ssid"),
            format!(
                "a network name is 1 to 32 bytes, this one is {}",
                ssid.len()
            ),
        ));
    }

    let pass_v = raw.password.as_ref().ok_or_else(|| {
        missing(
            "password",
            "password = \"...\" (the network's WPA2 passphrase; open networks are not supported)",
        )
    })?;
    let password = string(pass_v, "password")?;
    let pass_line = Some(line_of(text, pass_v.span().start));
    let psk = if password.len() == 64 && password.bytes().all(|b| b.is_ascii_hexdigit()) {
        // A raw 256-bit key, as wpa_supplicant takes it.
        let mut key = [0u8; 32];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&password[2 * i..2 * i + 2], 16).expect("hex digits");
        }
        key
    } else {
        let chars = password.chars().count();
        if !(8..=63).contains(&chars) {
            return Err(err(
                pass_line,
                Some("password"),
                format!("{chars} characters: a WPA2 passphrase has 8 to 63"),
            ));
        }
        if !password.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err(err(
                pass_line,
                Some("password"),
                "a WPA2 passphrase is plain ASCII (letters, digits, spaces, punctuation): this one has other characters".into(),
            ));
        }
        wpa_psk(password.as_bytes(), ssid.as_bytes())
    };

    let hidden = match &raw.hidden {
        None => false,
        Some(v) => match v.get_ref() {
            toml::Value::Boolean(b) => *b,
            _ => {
                return Err(err(
                    Some(line_of(text, v.span().start)),
                    Some("hidden"),
                    "expected true or false (without quotes)".into(),
                ))
            }
        },
    };
    Ok(Wifi {
        country,
        ssid: ssid.into_bytes(),
        psk,
        hidden,
    })
}

/// WPA2's key from a passphrase: PBKDF2-HMAC-SHA1, the SSID as salt, 4096 rounds, 256 bits.
pub fn wpa_psk(passphrase: &[u8], ssid: &[u8]) -> [u8; 32] {
    let mut key = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha1::Sha1>(passphrase, ssid, 4096, &mut key);
    key
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// wpa_supplicant's config for `wifi`. The SSID is written in hex and the key as 64 hex
/// digits: nothing in the file needs quoting, whatever the owner typed.
pub fn render_wpa(wifi: &Wifi) -> String {
    let mut s = String::new();
    s.push_str("# Written by `knockgate bootfiles` from wifi.txt on the boot partition (since\n");
    s.push_str(
        "# removed from there). To change the network, put a new wifi.txt there and reboot.\n",
    );
    s.push_str("ctrl_interface=DIR=/run/wpa_supplicant GROUP=netdev\n");
    s.push_str("update_config=0\n");
    s.push_str(&format!("country={}\n", wifi.country));
    s.push_str("network={\n");
    s.push_str(&format!("\tssid={}\n", hex(&wifi.ssid)));
    if wifi.hidden {
        s.push_str("\tscan_ssid=1\n");
    }
    s.push_str("\tkey_mgmt=WPA-PSK WPA-PSK-SHA256\n");
    s.push_str("\tieee80211w=1\n");
    s.push_str(&format!("\tpsk={}\n", hex(&wifi.psk)));
    s.push_str("}\n");
    s
}

/// Checks a `wpa_supplicant.conf` given as it is: it must name a country (without one the
/// radio stays on the world domain's few channels) and a network.
pub fn check_wpa_conf(text: &str, file: &str) -> Result<(), FileError> {
    let err = |key: &str, message: &str| FileError {
        file: file.to_string(),
        line: None,
        key: Some(key.to_string()),
        message: message.to_string(),
    };
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let country = lines
        .iter()
        .find_map(|l| l.strip_prefix("country="))
        .map(str::trim);
    match country {
        Some(c) if c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()) => {}
        Some(_) => {
            return Err(err(
                "country",
                "expected a two-letter country code, such as country=DE",
            ))
        }
        None => {
            return Err(err(
                "country",
                "missing: add a line country=DE (your two-letter country code)",
            ))
        }
    }
    if !lines.iter().any(|l| l.starts_with("network=")) {
        return Err(err("network", "missing: add a network={ ... } block"));
    }
    Ok(())
}

/// Validates a knockgate config as `check` and `firstboot` would (a `sequence = []` is
/// drawn for the check only: firstboot draws the real one).
pub fn check_config(text: &str, file: &str) -> Result<(), FileError> {
    let (_, unfilled) = config::parse_unfilled(text, file)?;
    let cfg = if unfilled.is_empty() {
        config::parse(text, file)?
    } else {
        let mut rng = OsRng::open().map_err(|e| FileError {
            file: file.to_string(),
            line: None,
            key: None,
            message: format!("cannot read random numbers to check it: {e}"),
        })?;
        match firstboot::fill(text, file, &mut rng) {
            Ok(Some(filled)) => filled.config,
            Ok(None) => config::parse(text, file)?,
            Err(firstboot::FirstbootError::Config(e)) => return Err(e.into()),
            Err(e) => {
                return Err(FileError {
                    file: file.to_string(),
                    line: None,
                    key: None,
                    message: e.to_string(),
                })
            }
        }
    };
    Dynamic::load(&cfg).map_err(|e| FileError {
        file: file.to_string(),
        line: None,
        key: None,
        message: e.to_string(),
    })?;
    Ok(())
}

/// Removes a file the owner put on the boot partition, durably.
fn remove_durably(path: &Path) -> io::Result<()> {
    fs::remove_file(path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::File::open(dir)?.sync_all()
}

/// Writes `bytes` to `path` atomically, mode 600 (owner kept if it exists).
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    if fs::metadata(path).is_ok() {
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    }
    crate::sys::fsutil::write_atomic_keep_owner(path, bytes)
}

/// `knockgate bootfiles`: takes in each file present; never stops at the first problem.
pub fn run(opts: &Options) -> Report {
    let mut report = Report::default();
    let shown = |name: &str| opts.boot_dir.join(name).display().to_string();

    // Wi-Fi: wifi.txt, else wpa_supplicant.conf.
    let wifi_path = opts.boot_dir.join(WIFI_FILE);
    let wpa_path = opts.boot_dir.join(WPA_FILE);
    let wifi: Option<Result<(String, PathBuf), FileError>> = if wifi_path.exists() {
        Some(
            read_text(&wifi_path)
                .and_then(|t| parse_wifi(&t, &shown(WIFI_FILE)))
                .map(|w| (render_wpa(&w), wifi_path.clone())),
        )
    } else if wpa_path.exists() {
        Some(
            read_text(&wpa_path)
                .and_then(|t| check_wpa_conf(&t, &shown(WPA_FILE)).map(|()| (t, wpa_path.clone()))),
        )
    } else {
        None
    };
    match wifi {
        None => set_notice(&opts.notices_dir, "wifi", None),
        Some(Ok((conf, from))) => {
            let result =
                write_private(&opts.wpa_conf, conf.as_bytes()).and_then(|()| remove_durably(&from));
            match result {
                Ok(()) => {
                    set_notice(&opts.notices_dir, "wifi", None);
                    report.done.push(format!(
                        "Wi-Fi: {} taken in as {} (and removed from the boot partition)",
                        from.display(),
                        opts.wpa_conf.display()
                    ));
                }
                Err(e) => {
                    let p = format!("Wi-Fi: cannot write {}: {e}", opts.wpa_conf.display());
                    set_notice(&opts.notices_dir, "wifi", Some(&p));
                    report.problems.push(p);
                }
            }
            if from == wifi_path && wpa_path.exists() {
                report.problems.push(format!(
                    "Wi-Fi: {} left alone: {} was used",
                    wpa_path.display(),
                    wifi_path.display()
                ));
            }
        }
        Some(Err(e)) => {
            let p = format!(
                "Wi-Fi not set up: {e}; wlan0 keeps its previous settings, eth0 is not affected"
            );
            set_notice(&opts.notices_dir, "wifi", Some(&p));
            report.problems.push(p);
        }
    }

    // The daemon's config.
    let cfg_path = opts.boot_dir.join(CONFIG_FILE);
    if cfg_path.exists() {
        let checked =
            read_text(&cfg_path).and_then(|t| check_config(&t, &shown(CONFIG_FILE)).map(|()| t));
        match checked {
            Ok(text) => {
                let target = fs::canonicalize(&opts.config).unwrap_or_else(|_| opts.config.clone());
                match crate::sys::fsutil::write_atomic_keep_owner(&target, text.as_bytes())
                    .and_then(|()| remove_durably(&cfg_path))
                {
                    Ok(()) => {
                        set_notice(&opts.notices_dir, "config", None);
                        report.done.push(format!(
                            "config: {} taken in as {} (and removed from the boot partition)",
                            cfg_path.display(),
                            opts.config.display()
                        ));
                    }
                    Err(e) => {
                        let p = format!("config: cannot write {}: {e}", opts.config.display());
                        set_notice(&opts.notices_dir, "config", Some(&p));
                        report.problems.push(p);
                    }
                }
            }
            Err(e) => {
                let p = format!("config not taken in: {e}; the current config is kept");
                set_notice(&opts.notices_dir, "config", Some(&p));
                report.problems.push(p);
            }
        }
    } else {
        set_notice(&opts.notices_dir, "config", None);
    }
    report
}

fn read_text(path: &Path) -> Result<String, FileError> {
    let file = path.display().to_string();
    let bytes = fs::read(path).map_err(|e| FileError {
        file: file.clone(),
        line: None,
        key: None,
        message: format!("cannot read it: {e}"),
    })?;
    String::from_utf8(bytes).map_err(|_| FileError {
        file,
        line: None,
        key: None,
        message: "not text (UTF-8): save it as plain text".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wpa2_key_matches_ieee_802_11i_test_vectors() {
        // IEEE 802.11i-2004, H.4.1: passphrase "password", SSID "IEEE".
        assert_eq!(
            hex(&wpa_psk(b"password", b"IEEE")),
            "f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e"
        );
        // H.4.2: "ThisIsAPassword", "ThisIsASSID".
        assert_eq!(
            hex(&wpa_psk(b"ThisIsAPassword", b"ThisIsASSID")),
            "0dc0d6eb90555ed6419756b9a15ec3e3209b63df707dd508d14581f8982721af"
        );
    }

    #[test]
    fn a_good_file_with_windows_line_ends_and_a_bom() {
        let text = "\u{feff}# my Wi-Fi\r\ncountry = \"de\"\r\nssid = \"Home \\\"5G\\\"\"\r\npassword = 'pass\"word#1'\r\nhidden = true\r\n";
        let w = parse_wifi(text, "wifi.txt").unwrap();
        assert_eq!(w.country, "DE");
        assert_eq!(w.ssid, b"Home \"5G\"");
        assert!(w.hidden);
        assert_eq!(w.psk, wpa_psk(b"pass\"word#1", b"Home \"5G\""));
        let conf = render_wpa(&w);
        assert!(conf.contains("country=DE\n"));
        assert!(conf.contains(&format!("\tssid={}\n", hex(b"Home \"5G\""))));
        assert!(conf.contains("\tscan_ssid=1\n"));
        assert!(!conf.contains("pass\"word"), "{conf}");
    }

    #[test]
    fn a_64_hex_digit_password_is_the_key_itself() {
        let key = "0dc0d6eb90555ed6419756b9a15ec3e3209b63df707dd508d14581f8982721af";
        let w = parse_wifi(
            &format!("country = \"GB\"\nssid = \"x\"\npassword = \"{key}\""),
            "wifi.txt",
        )
        .unwrap();
        assert_eq!(hex(&w.psk), key);
    }

    #[test]
    fn errors_name_file_line_and_key_and_never_the_password() {
        let secret = "hunter2hunter2";
        let cases: &[(String, &str)] = &[
            (
                format!("ssid = \"a\"\npassword = \"{secret}\""),
                "wifi.txt: country: missing: add country = \"DE\"",
            ),
            (
                format!("country = \"Germany\"\nssid = \"a\"\npassword = \"{secret}\""),
                "wifi.txt:1: country: expected a two-letter",
            ),
            (
                format!("country = \"DE\"\npassword = \"{secret}\""),
                "wifi.txt: ssid: missing",
            ),
            (
                format!(
                    "country = \"DE\"\nssid = \"{}\"\npassword = \"{secret}\"",
                    "x".repeat(33)
                ),
                "wifi.txt:2: ssid: a network name is 1 to 32 bytes, this one is 33",
            ),
            (
                "country = \"DE\"\nssid = \"a\"".to_string(),
                "wifi.txt: password: missing",
            ),
            (
                "country = \"DE\"\nssid = \"a\"\npassword = \"short\"".to_string(),
                "wifi.txt:3: password: 5 characters: a WPA2 passphrase has 8 to 63",
            ),
            (
                "country = \"DE\"\nssid = \"a\"\npassword = 12345678".to_string(),
                "wifi.txt:3: password: expected text in double quotes",
            ),
            (
                format!(
                    "country = \"DE\"\nssid = \"a\"\npassword = \"{secret}\"\nhidden = \"yes\""
                ),
                "wifi.txt:4: hidden: expected true or false",
            ),
            (
                format!("country = \"DE\"\nssid = \"a\"\npasword = \"{secret}\""),
                "wifi.txt:3: unknown field `pasword`",
            ),
            (
                format!("country = \"DE\"\nssid = \"a\"\npassword = {secret}"),
                "wifi.txt:3: ",
            ),
        ];
        for (text, want) in cases {
            let e = parse_wifi(text, "wifi.txt").unwrap_err().to_string();
            assert!(e.starts_with(want), "{text:?}:\n  got  {e}\n  want {want}");
            assert!(
                !e.contains(secret) && !e.contains("12345678"),
                "leaks the password: {e}"
            );
        }
    }

    #[test]
    fn a_wpa_supplicant_conf_needs_its_country_and_a_network() {
        let good = "ctrl_interface=DIR=/var/run/wpa_supplicant GROUP=netdev\ncountry=FR\nnetwork={\n ssid=\"x\"\n psk=\"12345678\"\n}\n";
        assert!(check_wpa_conf(good, "wpa_supplicant.conf").is_ok());
        let e = check_wpa_conf("network={\n}\n", "wpa_supplicant.conf").unwrap_err();
        assert_eq!(
            e.to_string(),
            "wpa_supplicant.conf: country: missing: add a line country=DE (your two-letter country code)"
        );
        assert!(check_wpa_conf("country=FR\n", "w").is_err());
    }

    fn opts(dir: &Path) -> Options {
        let boot = dir.join("boot");
        fs::create_dir_all(&boot).unwrap();
        Options {
            boot_dir: boot,
            config: dir.join("etc/knockgate.toml"),
            wpa_conf: dir.join("etc/wpa_supplicant/wpa_supplicant-wlan0.conf"),
            notices_dir: dir.join("run/notices"),
        }
    }

    #[test]
    fn wifi_txt_becomes_a_private_wpa_conf_and_leaves_the_boot_partition() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let o = opts(dir.path());
        fs::write(
            o.boot_dir.join(WIFI_FILE),
            "country = \"NL\"\nssid = \"Thuis\"\npassword = \"correct horse\"\n",
        )
        .unwrap();
        let r = run(&o);
        assert!(r.problems.is_empty(), "{r:?}");
        assert_eq!(r.done.len(), 1);
        let conf = fs::read_to_string(&o.wpa_conf).unwrap();
        assert!(conf.contains("country=NL\n"));
        assert!(conf.contains(&hex(&wpa_psk(b"correct horse", b"Thuis"))));
        assert_eq!(
            fs::metadata(&o.wpa_conf).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!o.boot_dir.join(WIFI_FILE).exists());
        assert!(read_notices(&o.notices_dir).is_empty());
        // Nothing on the boot partition: nothing changes.
        assert_eq!(run(&o), Report::default());
        assert_eq!(fs::read_to_string(&o.wpa_conf).unwrap(), conf);
    }

    #[test]
    fn a_malformed_wifi_txt_stays_keeps_the_old_conf_and_leaves_a_notice() {
        let dir = tempfile::tempdir().unwrap();
        let o = opts(dir.path());
        fs::create_dir_all(o.wpa_conf.parent().unwrap()).unwrap();
        fs::write(&o.wpa_conf, "old").unwrap();
        let bad = "country = \"NL\"\nssid = \"Thuis\"\npassword = \"tiny\"\n";
        fs::write(o.boot_dir.join(WIFI_FILE), bad).unwrap();
        let r = run(&o);
        assert_eq!(r.problems.len(), 1, "{r:?}");
        assert!(
            r.problems[0].contains("wifi.txt:3: password: 4 characters"),
            "{r:?}"
        );
        assert_eq!(fs::read_to_string(&o.wpa_conf).unwrap(), "old");
        assert_eq!(fs::read_to_string(o.boot_dir.join(WIFI_FILE)).unwrap(), bad);
        let notices = read_notices(&o.notices_dir);
        assert_eq!(notices, r.problems);
        assert!(!notices[0].contains("tiny"));
        // Fixed at the next boot: the notice goes.
        fs::write(
            o.boot_dir.join(WIFI_FILE),
            "country = \"NL\"\nssid = \"Thuis\"\npassword = \"long enough\"\n",
        )
        .unwrap();
        assert!(run(&o).problems.is_empty());
        assert!(read_notices(&o.notices_dir).is_empty());
    }

    #[test]
    fn a_config_on_the_boot_partition_replaces_the_daemons_if_valid() {
        let dir = tempfile::tempdir().unwrap();
        let o = opts(dir.path());
        fs::create_dir_all(o.config.parent().unwrap()).unwrap();
        fs::write(&o.config, "[[door]]\nname = \"old\"\nsequence = [1, 2]\n").unwrap();
        let bad = "[[door]]\nname = \"new\"\nsequence = []\nfirewall = { ports = [\"22/tcp\"], duration = \"forever\" }\n";
        fs::write(o.boot_dir.join(CONFIG_FILE), bad).unwrap();
        let r = run(&o);
        assert_eq!(r.problems.len(), 1);
        assert!(
            r.problems[0].contains("knockgate.toml:4: door[new].firewall.duration"),
            "{r:?}"
        );
        assert!(fs::read_to_string(&o.config).unwrap().contains("\"old\""));
        assert!(o.boot_dir.join(CONFIG_FILE).exists());

        let good = "[[door]]\nname = \"new\"\nsequence = []\nfirewall = { ports = [\"22/tcp\"], duration = \"30s\" }\n";
        fs::write(o.boot_dir.join(CONFIG_FILE), good).unwrap();
        let r = run(&o);
        assert!(r.problems.is_empty(), "{r:?}");
        assert_eq!(fs::read_to_string(&o.config).unwrap(), good);
        assert!(!o.boot_dir.join(CONFIG_FILE).exists());
        assert!(read_notices(&o.notices_dir).is_empty());
    }
}
