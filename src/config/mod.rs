//! knockgate's configuration: the validated [`Config`] the daemon runs on.
//!
//! The TOML file is read into raw serde structs (`deny_unknown_fields`), then validated into
//! these types; after validation nothing in a `Config` can be out of range (ports are 1..=65535,
//! sequences have 1 to 32 steps, durations are positive, command templates split cleanly).
//! Every error names the file, the line and the key, and says what would be valid.
//!
//! [`parse`] validates a text, [`load`] a file, [`builtin`] is the harmless default used when
//! [`DEFAULT_CONFIG_PATH`] is missing. `examples/knockgate.toml` documents every key.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::actions::firewall::{PortRange, Ports};
use crate::knock::{FlagRule, KnockSpec};

/// Where the daemon reads its config when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/knockgate/knockgate.toml";
/// Where pending stop commands and open doors are journalled.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/knockgate";
/// Default cap on tracked sources (per-source attempt state).
pub const DEFAULT_MAX_SOURCES: usize = 100_000;
/// knockd's default sequence timeout.
pub const DEFAULT_SEQ_TIMEOUT: Duration = Duration::from_secs(25);
/// knockd's default command timeout (time between start and stop command).
pub const DEFAULT_CMD_TIMEOUT: Duration = Duration::from_secs(10);
/// Most steps a sequence may have (knockd's limit).
pub const MAX_SEQUENCE_LEN: usize = 32;
/// knockgate's chain in the filter table.
pub const DEFAULT_CHAIN: &str = "KNOCKD";
/// Local time of the daily flush of the chain (as the classic cron.daily recipe).
pub const DEFAULT_DAILY_FLUSH: LocalTime = LocalTime {
    hour: 4,
    minute: 0,
    second: 0,
};

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this came from, or `<built-in>`.
    pub origin: String,
    pub daemon: Daemon,
    pub firewall: FirewallConfig,
    pub status: StatusConfig,
    pub gpio: GpioConfig,
    pub doors: Vec<Door>,
}

/// Where the status page listens by default: loopback only. Set `[status] listen` to a LAN
/// address to see it from a phone.
pub const DEFAULT_STATUS_LISTEN: &str = "127.0.0.1:8080";

/// `[status]`: the local status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// Host header values accepted besides the listen address and `localhost`.
    pub allowed_hosts: Vec<String>,
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig {
            enabled: true,
            listen: DEFAULT_STATUS_LISTEN.parse().expect("a literal address"),
            allowed_hosts: Vec::new(),
        }
    }
}

/// Which GPIO implementation drives the pins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GpioBackend {
    /// The character device if the kernel has one, else /dev/gpiomem through rppal.
    #[default]
    Auto,
    /// The kernel's GPIO character device (/dev/gpiochip*): any kernel, no root needed.
    Cdev,
    /// The Raspberry Pi's GPIO through /dev/gpiomem (rppal); ARM builds and Raspberry Pi OS
    /// kernels only.
    Rppal,
    /// No hardware: levels are logged (tests, `--dry-run`, any Linux machine).
    Simulated,
}

/// A relay on a GPIO pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    pub name: String,
    /// BCM pin number (0 to 27).
    pub pin: u8,
    /// The board switches the relay on with a low level (most cheap relay boards).
    pub active_low: bool,
    /// Longest time the relay may stay on, whatever asks for it (a watchdog).
    pub max_on: Duration,
    /// Relays of one group are never on together (one sprinkler zone at a time).
    pub group: Option<String>,
    /// State at start and at shutdown (normally off).
    pub safe_on: bool,
}

/// The status LED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedConfig {
    pub pin: u8,
    pub active_low: bool,
}

/// `[gpio]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpioConfig {
    pub backend: GpioBackend,
    /// `chip`: the GPIO chip whose line offsets are the pin numbers (cdev); None finds the
    /// Raspberry Pi's.
    pub chip: Option<String>,
    pub relays: Vec<RelayConfig>,
    pub led: Option<LedConfig>,
}

/// Default watchdog: no relay stays on longer than this unless configured.
pub const DEFAULT_MAX_ON: Duration = Duration::from_secs(3600);

/// What a door does to a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayMode {
    /// On for this long, then off.
    Pulse(Duration),
    On,
    Off,
    Toggle,
}

/// A door's `gpio = { relay = "...", mode = "pulse", duration = "10m" }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpioAction {
    pub relay: String,
    pub mode: RelayMode,
}

/// A door's `wake_on_lan = { mac = "...", ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WakeAction {
    pub mac: [u8; 6],
    /// Send on this interface (SO_BINDTODEVICE); default: the routing table decides.
    pub interface: Option<String>,
    pub port: u16,
    /// Broadcast address to send to (default 255.255.255.255).
    pub broadcast: IpAddr,
    /// SecureOn password (6 bytes), appended to the magic packet.
    pub password: Option<[u8; 6]>,
    /// At most one packet per target per this long.
    pub rate_limit: Duration,
}

/// Default wake-on-LAN rate limit per target.
pub const DEFAULT_WAKE_RATE_LIMIT: Duration = Duration::from_secs(30);

impl Config {
    /// Whether any door opens or closes firewall doors (only then is the chain managed).
    pub fn uses_firewall(&self) -> bool {
        self.doors
            .iter()
            .any(|d| d.firewall.is_some() || d.close.is_some())
    }
}

/// Which firewall backend manages the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// iptables and ip6tables (nft or legacy, whichever `iptables` is).
    Iptables,
    /// No firewall changes at all (as `--dry-run` does).
    None,
}

/// A local wall-clock time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

/// `[firewall]`: the chain knockgate owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallConfig {
    pub backend: Backend,
    /// The chain in the filter table (default `KNOCKD`).
    pub chain: String,
    /// Position of the one `INPUT -j CHAIN` jump (1 = first).
    pub jump_position: u32,
    /// Local time at which the chain is flushed every day, or None (`"off"`).
    pub daily_flush: Option<LocalTime>,
}

impl Default for FirewallConfig {
    fn default() -> Self {
        FirewallConfig {
            backend: Backend::Iptables,
            chain: DEFAULT_CHAIN.to_string(),
            jump_position: 1,
            daily_flush: Some(DEFAULT_DAILY_FLUSH),
        }
    }
}

/// A door's firewall action: open these ports to the knocker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallAction {
    pub ports: Ports,
    /// How long; None = until a closing door or the daily flush.
    pub duration: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interfaces {
    /// Every interface that is up, not loopback, and has an address (re-evaluated at runtime).
    Auto,
    Named(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Daemon {
    pub interfaces: Interfaces,
    /// Log to this file instead of stderr.
    pub log_file: Option<PathBuf>,
    /// Also log to syslog (knockd's `UseSyslog`).
    pub syslog: bool,
    pub pid_file: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub max_sources: usize,
    /// Sources that fail too often are ignored for a while.
    pub penalties: crate::engine::limits::PenaltyConfig,
    /// Run as this unprivileged user after the setup that needs root.
    pub user: Option<String>,
}

/// A door: a knock sequence and what happens when a source completes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Door {
    pub name: String,
    /// 1 to 32 steps; empty when `one_time_sequences` is set (the active sequence is then read
    /// from that file).
    pub sequence: Vec<KnockSpec>,
    /// Time allowed for the whole sequence, counted from the first knock.
    pub seq_timeout: Duration,
    pub tcp_flags: FlagRule,
    /// Knocks count when sent to this address instead of one of the interface's own.
    pub target: Option<IpAddr>,
    /// knockd's `One_Time_Sequences` file.
    pub one_time_sequences: Option<PathBuf>,
    pub start_command: Option<CommandTemplate>,
    pub start_command_6: Command6,
    pub stop_command: Option<CommandTemplate>,
    pub stop_command_6: Command6,
    /// Time between the start and the stop command (only used with a stop command).
    pub cmd_timeout: Duration,
    /// Open ports in the firewall for the knocker.
    pub firewall: Option<FirewallAction>,
    /// Close the knocker's opening of this other door (a closing sequence).
    pub close: Option<String>,
    /// Switch a relay.
    pub gpio: Option<GpioAction>,
    /// Send a wake-on-LAN magic packet.
    pub wake_on_lan: Option<WakeAction>,
    /// The sequence is derived from a secret and the time (instead of `sequence`).
    pub hmac: Option<HmacConfig>,
}

/// A door's `hmac = { secret_file, steps, ports, window }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HmacConfig {
    pub secret_file: PathBuf,
    pub params: crate::doors::hmacseq::Params,
}

/// The IPv6 variant of a command, as knockd has it: unset falls back to the IPv4 command,
/// an explicit empty string disables the command for IPv6 sources.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Command6 {
    #[default]
    Inherit,
    Disabled,
    Set(CommandTemplate),
}

impl Door {
    /// The start command for a source of this family, if any.
    pub fn start_for(&self, ipv6: bool) -> Option<&CommandTemplate> {
        Self::pick(&self.start_command, &self.start_command_6, ipv6)
    }
    /// The stop command for a source of this family, if any.
    pub fn stop_for(&self, ipv6: bool) -> Option<&CommandTemplate> {
        Self::pick(&self.stop_command, &self.stop_command_6, ipv6)
    }
    fn pick<'a>(
        v4: &'a Option<CommandTemplate>,
        v6: &'a Command6,
        ipv6: bool,
    ) -> Option<&'a CommandTemplate> {
        if !ipv6 {
            return v4.as_ref();
        }
        match v6 {
            Command6::Inherit => v4.as_ref(),
            Command6::Disabled => None,
            Command6::Set(c) => Some(c),
        }
    }
}

/// A command line from the config, split into words like a POSIX shell would (quotes and
/// backslashes), but never run through a shell. `%IP%` and `%DOOR%` are substituted per word
/// from parsed values only. A user who needs a shell writes `sh -c '...'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTemplate {
    pub text: String,
    pub argv: Vec<String>,
}

/// Values substituted into a [`CommandTemplate`].
#[derive(Debug, Clone, Copy)]
pub struct Vars<'a> {
    pub ip: IpAddr,
    pub door: &'a str,
}

impl CommandTemplate {
    pub fn parse(text: &str) -> Result<CommandTemplate, String> {
        let argv = shell_words::split(text)
            .map_err(|e| format!("cannot split `{text}` into words ({e}): check the quotes"))?;
        if argv.is_empty() {
            return Err("empty command: give a program and its arguments".to_string());
        }
        Ok(CommandTemplate {
            text: text.to_string(),
            argv,
        })
    }

    /// The argv to run, with `%IP%` and `%DOOR%` replaced in every word.
    pub fn render(&self, vars: &Vars<'_>) -> Vec<String> {
        let ip = vars.ip.to_string();
        self.argv
            .iter()
            .map(|w| w.replace("%IP%", &ip).replace("%DOOR%", vars.door))
            .collect()
    }
}

impl fmt::Display for CommandTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A config error: the file, the line (when it can be known) and the key, and what would be
/// valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    /// Dotted path of the key, e.g. `door[0].sequence` (`door[openSSH].sequence` once the door's
    /// name is known), or None for a syntax error.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

// ---------------------------------------------------------------------------------------------
// Reading a config file: TOML -> raw serde structs -> validated `Config`.
// ---------------------------------------------------------------------------------------------

/// The built-in configuration, used when [`DEFAULT_CONFIG_PATH`] is missing. It changes nothing
/// on the system: its one door only logs.
const BUILTIN_TOML: &str = include_str!("builtin.toml");

/// The origin recorded in the [`Config`] returned by [`builtin`].
pub const BUILTIN_ORIGIN: &str = "<built-in>";

/// What a duration looks like, for error messages.
const DURATION_HELP: &str =
    "a duration such as \"500ms\", \"30s\", \"10m\", \"1h\", \"1d\" or \"1h30m\"";

/// The built-in default configuration: every interface, one door `openSSH` (7000, 8000, 9000
/// over TCP within 5 s, `syn,!ack`) whose command only logs through `logger`.
pub fn builtin() -> Config {
    parse(BUILTIN_TOML, BUILTIN_ORIGIN).expect("the built-in config is valid (tested)")
}

/// Reads and validates the config file at `path`. A read error names the file and the OS error.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &origin),
        Err(e) => Err(ConfigError {
            file: origin,
            line: None,
            key: None,
            message: format!("cannot read the config file: {e}"),
        }),
    }
}

/// Parses and validates a knockgate TOML config. `origin` names the text in errors (a path, or
/// `<built-in>`).
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let cx = Cx {
        text,
        origin,
        unfilled_ok: false,
    };
    let raw: RawConfig = toml::from_str(text).map_err(|e| cx.toml_error(&e))?;
    cx.config(raw)
}

/// A door whose sequence is written `sequence = []`: left empty in the firmware image, to be
/// generated on the device at first boot by `knockgate firstboot`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfilled {
    /// Index in [`Config::doors`].
    pub door: usize,
    /// Byte range of the value (`[]`, brackets included) in the text.
    pub value: std::ops::Range<usize>,
}

/// [`parse`] for `knockgate firstboot`: the same validation, except that a door may have
/// `sequence = []`. Such doors come back with an empty `sequence` and are listed, in order, in
/// the second element. The `Config` returned is for reading only, never to run: a door with an
/// empty sequence would never open.
pub fn parse_unfilled(text: &str, origin: &str) -> Result<(Config, Vec<Unfilled>), ConfigError> {
    let cx = Cx {
        text,
        origin,
        unfilled_ok: true,
    };
    let raw: RawConfig = toml::from_str(text).map_err(|e| cx.toml_error(&e))?;
    let unfilled = raw
        .door
        .iter()
        .enumerate()
        .filter_map(|(door, d)| {
            let v = d.get_ref().sequence.as_ref().filter(|v| is_unfilled(v))?;
            Some(Unfilled {
                door,
                value: v.span(),
            })
        })
        .collect();
    Ok((cx.config(raw)?, unfilled))
}

/// Whether a `sequence` value is the explicit empty list that `knockgate firstboot` fills in.
fn is_unfilled(v: &Spanned<RawValue>) -> bool {
    matches!(v.get_ref(), RawValue::Array(items) if items.is_empty())
}

/// The error for `sequence = []` everywhere but in `knockgate firstboot`.
const UNFILLED_HELP: &str = "empty sequence: `sequence = []` is generated at first boot by `knockgate firstboot --boot-dir DIR` (DIR: the boot partition, where the sequence is written down for you); run it, or write a sequence of your own";

/// Parses a duration: one or more `<whole number><unit>` parts, units `d`, `h`, `m`, `s`, `ms`
/// from largest to smallest, each at most once (`500ms`, `30s`, `10m`, `1h`, `1d`, `1h30m`,
/// `1m 30s`). A bare number has no unit and is refused here (in the TOML file an integer is
/// seconds). Zero parses; callers that need a positive duration check it.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const UNITS: [(&str, u64); 5] = [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let t = text.trim();
    if t.is_empty() {
        return Err(format!("empty duration: expected {DURATION_HELP}"));
    }
    let mut total_ms: u64 = 0;
    let mut last_rank: Option<usize> = None;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "invalid duration `{t}`: expected a whole number at `{rest}`; expected {DURATION_HELP}"
            ));
        }
        let number = &rest[..digits];
        rest = &rest[digits..];
        if rest.starts_with(['.', ',']) {
            return Err(format!(
                "invalid duration `{t}`: fractions are not supported, use a smaller unit (\"1500ms\", not \"1.5s\"); expected {DURATION_HELP}"
            ));
        }
        let letters = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..letters];
        rest = rest[letters..].trim_start();
        if unit.is_empty() {
            let hint = if rest.is_empty() && total_ms == 0 {
                format!(" (write \"{number}s\" for seconds)")
            } else {
                String::new()
            };
            return Err(format!(
                "invalid duration `{t}`: `{number}` has no unit{hint}; expected {DURATION_HELP}"
            ));
        }
        let Some(rank) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(format!(
                "invalid duration `{t}`: unknown unit `{unit}`; expected ms, s, m, h or d, as in {DURATION_HELP}"
            ));
        };
        if last_rank.is_some_and(|r| r >= rank) {
            return Err(format!(
                "invalid duration `{t}`: units must go from largest to smallest, each once (d, h, m, s, ms)"
            ));
        }
        last_rank = Some(rank);
        let value = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(UNITS[rank].1))
            .and_then(|ms| total_ms.checked_add(ms));
        total_ms = value.ok_or_else(|| format!("duration `{t}` is too long"))?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Checks a door name: 1 to 127 characters, no control characters.
/// Parses a MAC address (or a SecureOn password): six hex bytes separated by `:` or `-`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = text.trim().split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (b, p) in mac.iter_mut().zip(parts) {
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    Some(mac)
}

/// Parses a local time of day: `HH:MM` or `HH:MM:SS` (24-hour clock).
pub fn parse_local_time(text: &str) -> Result<LocalTime, String> {
    let bad = || {
        format!("`{text}` is not a time of day: expected \"HH:MM\" (24-hour, e.g. \"04:00\") or \"off\"")
    };
    let parts: Vec<&str> = text.trim().split(':').collect();
    if !(2..=3).contains(&parts.len()) {
        return Err(bad());
    }
    let num = |p: &str, max: u8| -> Result<u8, String> {
        if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        p.parse::<u8>().ok().filter(|n| *n <= max).ok_or_else(bad)
    };
    Ok(LocalTime {
        hour: num(parts[0], 23)?,
        minute: num(parts[1], 59)?,
        second: parts.get(2).map_or(Ok(0), |p| num(p, 59))?,
    })
}

pub(crate) fn check_door_name(name: &str) -> Result<(), String> {
    let chars = name.chars().count();
    if chars == 0 {
        return Err("empty door name: expected 1 to 127 characters".to_string());
    }
    if chars > 127 {
        return Err(format!(
            "door name is {chars} characters long: expected 1 to 127 characters"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(
            "door name contains a control character (tab, newline...): expected printable characters"
                .to_string(),
        );
    }
    Ok(())
}

/// Checks a network interface name as Linux accepts it: 1 to 15 bytes, no `/`, no blanks.
pub(crate) fn check_interface_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 {
        return Err(format!(
            "invalid interface name `{name}`: expected 1 to 15 characters, such as eth0 or wlan0"
        ));
    }
    if name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c.is_whitespace() || c.is_control() || c == ':')
    {
        return Err(format!(
            "invalid interface name `{name}`: expected a name such as eth0 or wlan0 (no `/`, `:` or blanks)"
        ));
    }
    Ok(())
}

/// The top level of the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    daemon: Option<Spanned<RawDaemon>>,
    firewall: Option<Spanned<RawFirewall>>,
    status: Option<Spanned<RawStatus>>,
    gpio: Option<Spanned<RawGpio>>,
    #[serde(default)]
    relay: Vec<Spanned<RawRelay>>,
    led: Option<Spanned<RawLed>>,
    #[serde(default)]
    door: Vec<Spanned<RawDoor>>,
}

/// `[firewall]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFirewall {
    backend: Option<Spanned<RawValue>>,
    chain: Option<Spanned<RawValue>>,
    jump_position: Option<Spanned<RawValue>>,
    daily_flush: Option<Spanned<RawValue>>,
}

/// `[status]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatus {
    enabled: Option<Spanned<RawValue>>,
    listen: Option<Spanned<RawValue>>,
    allowed_hosts: Option<Spanned<RawValue>>,
}

/// `[gpio]` (the relays are `[[relay]]` tables and the LED `[led]`, at the top level).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGpio {
    backend: Option<Spanned<RawValue>>,
    chip: Option<Spanned<RawValue>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelay {
    name: Option<Spanned<RawValue>>,
    pin: Option<Spanned<RawValue>>,
    active_low: Option<Spanned<RawValue>>,
    max_on: Option<Spanned<RawValue>>,
    group: Option<Spanned<RawValue>>,
    safe_state: Option<Spanned<RawValue>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLed {
    pin: Option<Spanned<RawValue>>,
    active_low: Option<Spanned<RawValue>>,
}

/// A door's `gpio = { relay, mode, duration }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDoorGpio {
    relay: Option<Spanned<RawValue>>,
    mode: Option<Spanned<RawValue>>,
    duration: Option<Spanned<RawValue>>,
}

/// A door's `hmac = { secret_file, steps, ports, window }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHmac {
    secret_file: Option<Spanned<RawValue>>,
    steps: Option<Spanned<RawValue>>,
    ports: Option<Spanned<RawValue>>,
    window: Option<Spanned<RawValue>>,
}

/// A door's `wake_on_lan = { mac, interface, port, broadcast, password, rate_limit }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWake {
    mac: Option<Spanned<RawValue>>,
    interface: Option<Spanned<RawValue>>,
    port: Option<Spanned<RawValue>>,
    broadcast: Option<Spanned<RawValue>>,
    password: Option<Spanned<RawValue>>,
    rate_limit: Option<Spanned<RawValue>>,
}

/// A door's `firewall = { ports = [...], duration = "..." }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDoorFirewall {
    ports: Option<Spanned<RawValue>>,
    duration: Option<Spanned<RawValue>>,
}

/// `[daemon]`. Every value is kept loose (any TOML type, with its position) and checked in
/// [`Cx::daemon`], so that every error can name its line and key and say what is valid.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    interfaces: Option<Spanned<RawValue>>,
    log_file: Option<Spanned<RawValue>>,
    syslog: Option<Spanned<RawValue>>,
    pid_file: Option<Spanned<RawValue>>,
    state_dir: Option<Spanned<RawValue>>,
    max_sources: Option<Spanned<RawValue>>,
    max_failures: Option<Spanned<RawValue>>,
    failure_window: Option<Spanned<RawValue>>,
    ban: Option<Spanned<RawValue>>,
    user: Option<Spanned<RawValue>>,
}

/// One `[[door]]`. Aliases are separate fields so that giving both is a clear error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDoor {
    name: Option<Spanned<RawValue>>,
    sequence: Option<Spanned<RawValue>>,
    one_time_sequences: Option<Spanned<RawValue>>,
    seq_timeout: Option<Spanned<RawValue>>,
    timeout: Option<Spanned<RawValue>>,
    tcp_flags: Option<Spanned<RawValue>>,
    target: Option<Spanned<RawValue>>,
    start_command: Option<Spanned<RawValue>>,
    command: Option<Spanned<RawValue>>,
    start_command_6: Option<Spanned<RawValue>>,
    command_6: Option<Spanned<RawValue>>,
    stop_command: Option<Spanned<RawValue>>,
    stop_command_6: Option<Spanned<RawValue>>,
    cmd_timeout: Option<Spanned<RawValue>>,
    firewall: Option<Spanned<RawDoorFirewall>>,
    close: Option<Spanned<RawValue>>,
    gpio: Option<Spanned<RawDoorGpio>>,
    wake_on_lan: Option<Spanned<RawWake>>,
    hmac: Option<Spanned<RawHmac>>,
}

/// Any TOML value, with positions kept for the elements of arrays.
#[derive(Debug, Clone, PartialEq)]
enum RawValue {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Datetime,
    Array(Vec<Spanned<RawValue>>),
    Table,
}

impl RawValue {
    /// What this is, for "found ..." in error messages.
    fn kind(&self) -> &'static str {
        match self {
            RawValue::String(_) => "a string",
            RawValue::Integer(_) => "an integer",
            RawValue::Float(_) => "a decimal number",
            RawValue::Boolean(_) => "a boolean",
            RawValue::Datetime => "a date",
            RawValue::Array(_) => "an array",
            RawValue::Table => "a table",
        }
    }
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawValueVisitor)
    }
}

struct RawValueVisitor;

impl<'de> serde::de::Visitor<'de> for RawValueVisitor {
    type Value = RawValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any TOML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<RawValue, E> {
        Ok(RawValue::Boolean(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<RawValue, E> {
        Ok(RawValue::Integer(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<RawValue, E> {
        Ok(RawValue::Integer(i64::try_from(v).unwrap_or(i64::MAX)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<RawValue, E> {
        Ok(RawValue::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<RawValue, E> {
        Ok(RawValue::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<RawValue, E> {
        Ok(RawValue::String(v))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<RawValue>>()? {
            items.push(item);
        }
        Ok(RawValue::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RawValue, A::Error> {
        // toml hands a date-time over as a map with one private key.
        let mut datetime = false;
        while let Some(key) = map.next_key::<String>()? {
            datetime |= key.starts_with("$__toml_private");
            map.next_value::<serde::de::IgnoredAny>()?;
        }
        Ok(if datetime {
            RawValue::Datetime
        } else {
            RawValue::Table
        })
    }
}

/// Just enough of the file to name the door an error from the toml crate falls in.
#[derive(Debug, Deserialize)]
struct Skeleton {
    #[serde(default)]
    door: Vec<Spanned<toml::Table>>,
}

/// Keys of each table, for "did you mean" hints.
const TOP_KEYS: &[&str] = &[
    "daemon", "firewall", "status", "gpio", "relay", "led", "door",
];
const STATUS_KEYS: &[&str] = &["enabled", "listen", "allowed_hosts"];
const GPIO_KEYS: &[&str] = &["backend", "chip"];
const RELAY_KEYS: &[&str] = &["name", "pin", "active_low", "max_on", "group", "safe_state"];
const LED_KEYS: &[&str] = &["pin", "active_low"];
const DOOR_GPIO_KEYS: &[&str] = &["relay", "mode", "duration"];
const HMAC_KEYS: &[&str] = &["secret_file", "steps", "ports", "window"];
const WAKE_KEYS: &[&str] = &[
    "mac",
    "interface",
    "port",
    "broadcast",
    "password",
    "rate_limit",
];
const FIREWALL_KEYS: &[&str] = &["backend", "chain", "jump_position", "daily_flush"];
const DOOR_FIREWALL_KEYS: &[&str] = &["ports", "duration"];
const DAEMON_KEYS: &[&str] = &[
    "interfaces",
    "log_file",
    "syslog",
    "pid_file",
    "state_dir",
    "max_sources",
    "max_failures",
    "failure_window",
    "ban",
    "user",
];
const DOOR_KEYS: &[&str] = &[
    "name",
    "sequence",
    "one_time_sequences",
    "seq_timeout",
    "timeout",
    "tcp_flags",
    "target",
    "start_command",
    "command",
    "start_command_6",
    "command_6",
    "stop_command",
    "stop_command_6",
    "cmd_timeout",
    "firewall",
    "close",
    "gpio",
    "wake_on_lan",
    "hmac",
];

/// Validation context: the text (for line numbers) and its origin (for messages).
struct Cx<'a> {
    text: &'a str,
    origin: &'a str,
    /// `sequence = []` is accepted (left for `knockgate firstboot`), see [`parse_unfilled`].
    unfilled_ok: bool,
}

impl Cx<'_> {
    /// The 1-based line of a byte offset.
    fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        1 + self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
    }

    fn err<T>(&self, at: &Spanned<T>, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.origin.to_string(),
            line: Some(self.line(at.span().start)),
            key: Some(key.to_string()),
            message: message.into(),
        }
    }

    /// Turns an error from the toml crate (syntax, unknown key, wrong table shape) into a
    /// ConfigError with the line and, where it can be known, the key.
    fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let offset = e.span().map(|s| s.start);
        let line = offset.map(|o| self.line(o));
        let raw_message = e.message().trim().replace('\n', ": ");
        let (key, message) = self
            .explain_toml_error(&raw_message, offset)
            .unwrap_or((None, raw_message));
        ConfigError {
            file: self.origin.to_string(),
            line,
            key,
            message,
        }
    }

    /// The key and a better message for the toml crate's errors that concern a key; None for
    /// plain syntax errors (their message is kept as is).
    fn explain_toml_error(
        &self,
        message: &str,
        offset: Option<usize>,
    ) -> Option<(Option<String>, String)> {
        let joined = |table: Option<String>, field: &str| match table {
            Some(t) => format!("{t}.{field}"),
            None => field.to_string(),
        };
        let unknown =
            |field: &str, known: &[&'static str], expected: &str| match suggest(field, known) {
                Some(s) => format!("unknown key `{field}`: did you mean `{s}`? ({expected})"),
                None => format!("unknown key `{field}`: {expected}"),
            };

        // unknown field `x`, expected one of `a`, `b`
        if let Some(rest) = after(message, "unknown field `") {
            let (field, expected) = rest.split_once('`')?;
            let expected = expected.trim_start_matches(',').trim();
            let (table, known): (Option<String>, &[&'static str]) = if expected.contains("`door`") {
                (None, TOP_KEYS)
            } else if expected.contains("`max_sources`") {
                (Some("daemon".to_string()), DAEMON_KEYS)
            } else if expected.contains("`jump_position`") {
                (Some("firewall".to_string()), FIREWALL_KEYS)
            } else if expected.contains("`allowed_hosts`") {
                (Some("status".to_string()), STATUS_KEYS)
            } else if expected.contains("`max_on`") {
                (Some("relay".to_string()), RELAY_KEYS)
            } else if expected == "expected `backend` or `chip`" {
                (Some("gpio".to_string()), GPIO_KEYS)
            } else if expected == "expected `pin` or `active_low`" {
                (Some("led".to_string()), LED_KEYS)
            } else if expected.contains("`mode`") {
                (
                    Some(format!("{}.gpio", self.door_at(offset?))),
                    DOOR_GPIO_KEYS,
                )
            } else if expected.contains("`secret_file`") {
                (Some(format!("{}.hmac", self.door_at(offset?))), HMAC_KEYS)
            } else if expected.contains("`mac`") {
                (
                    Some(format!("{}.wake_on_lan", self.door_at(offset?))),
                    WAKE_KEYS,
                )
            } else if expected.contains("`ports`") {
                (
                    Some(format!("{}.firewall", self.door_at(offset?))),
                    DOOR_FIREWALL_KEYS,
                )
            } else {
                (Some(self.door_at(offset?)), DOOR_KEYS)
            };
            return Some((Some(joined(table, field)), unknown(field, known, expected)));
        }
        // duplicate key `x` in table `door` / in document root
        if let Some(rest) = after(message, "duplicate key `") {
            let (field, rest) = rest.split_once('`')?;
            let table = if rest.contains("in table `daemon`") {
                Some("daemon".to_string())
            } else if rest.contains("in table `door`") {
                Some(self.door_at(offset?))
            } else {
                None
            };
            return Some((
                Some(joined(table, field)),
                format!("`{field}` is given twice: each key or table may appear once"),
            ));
        }
        // A table header or dotted key below [daemon] or [[door]] (`[daemon.x]`,
        // `daemon.max_sources = 1`): invalid type: string "x", expected a borrowed string
        if message.ends_with("expected a borrowed string") {
            let field = after(message, "invalid type: string \"")?
                .split_once('"')?
                .0;
            let offset = offset?;
            let before = self.text.get(..offset)?;
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            let head = before[line_start..].trim_start_matches([' ', '\t', '[']);
            let (table, known) = if head.starts_with("daemon") {
                (Some("daemon".to_string()), DAEMON_KEYS)
            } else {
                (Some(self.door_at(offset)), DOOR_KEYS)
            };
            let message = if known.contains(&field) {
                format!("`{field}` must be a value (`{field} = ...` inside the table), not a table or a dotted key")
            } else {
                let expected = format!(
                    "expected one of {}",
                    known
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                unknown(field, known, &expected)
            };
            return Some((Some(joined(table, field)), message));
        }
        if message.contains("expected struct RawDaemon") {
            let m = message.replace("struct RawDaemon", "a table");
            return Some((Some("daemon".to_string()), format!("{m}, written [daemon]")));
        }
        if message.contains("expected struct RawDoor") {
            let m = message.replace("struct RawDoor", "a table");
            let key = offset.map_or("door".to_string(), |o| self.door_at(o));
            return Some((Some(key), format!("{m}, written [[door]]")));
        }
        if message.contains("expected a sequence") {
            return Some((
                Some("door".to_string()),
                format!(
                    "{message}: doors are an array of tables, each written [[door]] (two brackets)"
                ),
            ));
        }
        None
    }

    /// `door[name]` (or `door[N]`) for the door whose table starts last at or before `offset`.
    fn door_at(&self, offset: usize) -> String {
        let Ok(skeleton) = toml::from_str::<Skeleton>(self.text) else {
            return self.scan_door_at(offset);
        };
        let found = skeleton
            .door
            .iter()
            .enumerate()
            .filter(|(_, d)| d.span().start <= offset)
            .max_by_key(|(_, d)| d.span().start);
        match found {
            Some((i, d)) => {
                let name = d.get_ref().get("name").and_then(toml::Value::as_str);
                door_key(i, name)
            }
            None => "door".to_string(),
        }
    }

    /// [`Cx::door_at`] for a text the toml crate cannot read: count the `[[door]]` headers
    /// before `offset` and look for a simple `name = "..."` line in the last one.
    fn scan_door_at(&self, offset: usize) -> String {
        let mut index: Option<usize> = None;
        let mut name: Option<String> = None;
        let mut pos = 0;
        for line in self.text.split_inclusive('\n') {
            let t = line.trim();
            if t.starts_with("[[") && t.trim_start_matches('[').trim_start().starts_with("door") {
                if pos > offset {
                    break;
                }
                index = Some(index.map_or(0, |i| i + 1));
                name = None;
            } else if let Some(rest) = t.strip_prefix("name") {
                if let Some(value) = rest.trim_start().strip_prefix('=') {
                    let v = value.trim();
                    let quoted =
                        |q: char| v.strip_prefix(q).and_then(|v| v.split_once(q)).map(|p| p.0);
                    if let Some(n) = quoted('"').or_else(|| quoted('\'')) {
                        if !n.contains('\\') {
                            name = Some(n.to_string());
                        }
                    }
                }
            }
            pos += line.len();
        }
        match index {
            Some(i) => door_key(i, name.as_deref()),
            None => "door".to_string(),
        }
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let daemon = match &raw.daemon {
            Some(d) => self.daemon(d.get_ref())?,
            None => Daemon {
                interfaces: Interfaces::Auto,
                log_file: None,
                syslog: false,
                pid_file: None,
                state_dir: PathBuf::from(DEFAULT_STATE_DIR),
                max_sources: DEFAULT_MAX_SOURCES,
                penalties: crate::engine::limits::PenaltyConfig::default(),
                user: None,
            },
        };
        if raw.door.is_empty() {
            return Err(ConfigError {
                file: self.origin.to_string(),
                line: None,
                key: Some("door".to_string()),
                message: "no doors: add at least one [[door]] table with a name and a sequence"
                    .to_string(),
            });
        }
        let mut doors: Vec<Door> = Vec::with_capacity(raw.door.len());
        let mut name_lines: Vec<usize> = Vec::with_capacity(raw.door.len());
        for (i, d) in raw.door.iter().enumerate() {
            let door = self.door(i, d)?;
            let name_at = d.get_ref().name.as_ref().expect("checked in door()");
            if let Some(j) = doors.iter().position(|o| o.name == door.name) {
                return Err(self.err(
                    name_at,
                    &format!("door[{}].name", door.name),
                    format!(
                        "door name `{}` is already used by the door on line {}: names must be unique",
                        door.name, name_lines[j]
                    ),
                ));
            }
            name_lines.push(self.line(name_at.span().start));
            doors.push(door);
        }
        let firewall = match &raw.firewall {
            Some(f) => self.firewall(f.get_ref())?,
            None => FirewallConfig::default(),
        };
        let status = match &raw.status {
            Some(st) => self.status(st.get_ref())?,
            None => StatusConfig::default(),
        };
        let gpio = self.gpio(&raw)?;
        for (i, door) in doors.iter().enumerate() {
            let raw_door = raw.door[i].get_ref();
            let d = door_key(i, Some(&door.name));
            if let (Some(target), Some(v)) = (&door.close, &raw_door.close) {
                let closes = doors.iter().find(|o| &o.name == target);
                let problem = match closes {
                    None => Some(format!("no door is named `{target}`: give the name of a door with a firewall action")),
                    Some(o) if o.name == door.name => Some("a door cannot close itself".to_string()),
                    Some(o) if o.firewall.is_none() => Some(format!("door `{target}` has no firewall action to close")),
                    Some(_) => None,
                };
                if let Some(message) = problem {
                    return Err(self.err(v, &format!("{d}.close"), message));
                }
            }
            if let (Some(action), Some(v)) = (&door.gpio, &raw_door.gpio) {
                let Some(relay) = gpio.relays.iter().find(|r| r.name == action.relay) else {
                    let known: Vec<&str> = gpio.relays.iter().map(|r| r.name.as_str()).collect();
                    return Err(self.err(
                        v,
                        &format!("{d}.gpio.relay"),
                        format!(
                            "no relay is named `{}`: declare it with [[relay]] (known: {})",
                            action.relay,
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    ));
                };
                if let RelayMode::Pulse(p) = action.mode {
                    if p > relay.max_on {
                        return Err(self.err(
                            v,
                            &format!("{d}.gpio.duration"),
                            format!(
                                "a {}s pulse is longer than relay `{}`'s max_on ({}s): shorten it or raise max_on",
                                p.as_secs(),
                                relay.name,
                                relay.max_on.as_secs()
                            ),
                        ));
                    }
                }
            }
            if let (Some(action), Some(f)) = (&door.firewall, &raw_door.firewall) {
                if action.duration.is_none() && firewall.daily_flush.is_none() {
                    return Err(self.err(
                        f,
                        &format!("{d}.firewall.duration"),
                        "this opening would never end: give a duration (e.g. duration = \"1h\"), or keep the daily flush on",
                    ));
                }
            }
        }
        Ok(Config {
            origin: self.origin.to_string(),
            daemon,
            firewall,
            status,
            gpio,
            doors,
        })
    }

    fn boolean(&self, v: &Spanned<RawValue>, key: &str) -> Result<bool, ConfigError> {
        match v.get_ref() {
            RawValue::Boolean(b) => Ok(*b),
            other => Err(self.err(
                v,
                key,
                format!("expected true or false, found {}", other.kind()),
            )),
        }
    }

    /// An integer in `range`; otherwise `EXPECTED, found X` (X the number, or what was given).
    fn integer(
        &self,
        v: &Spanned<RawValue>,
        key: &str,
        range: std::ops::RangeInclusive<i64>,
        expected: &str,
    ) -> Result<i64, ConfigError> {
        match v.get_ref() {
            RawValue::Integer(n) if range.contains(n) => Ok(*n),
            RawValue::Integer(n) => Err(self.err(v, key, format!("{expected}, found {n}"))),
            other => Err(self.err(v, key, format!("{expected}, found {}", other.kind()))),
        }
    }

    /// A BCM GPIO pin number.
    fn pin(&self, v: &Spanned<RawValue>, key: &str) -> Result<u8, ConfigError> {
        let n = self.integer(
            v,
            key,
            0..=27,
            "expected a BCM GPIO number from 0 to 27 (the GPIO number, not the header pin)",
        )?;
        Ok(u8::try_from(n).expect("in range"))
    }

    fn status(&self, raw: &RawStatus) -> Result<StatusConfig, ConfigError> {
        let mut st = StatusConfig::default();
        if let Some(v) = &raw.enabled {
            st.enabled = self.boolean(v, "status.enabled")?;
        }
        if let Some(v) = &raw.listen {
            let s = self.string(
                v,
                "status.listen",
                "an address and port such as \"192.168.1.1:8080\"",
            )?;
            st.listen = s.trim().parse().map_err(|_| {
                self.err(
                    v,
                    "status.listen",
                    format!("`{s}` is not an address and port: expected e.g. \"192.168.1.1:8080\" or \"[fd00::1]:8080\""),
                )
            })?;
        }
        if let Some(v) = &raw.allowed_hosts {
            let RawValue::Array(items) = v.get_ref() else {
                return Err(self.err(
                    v,
                    "status.allowed_hosts",
                    format!(
                        "expected a list of host names such as [\"gateway.lan\"], found {}",
                        v.get_ref().kind()
                    ),
                ));
            };
            for item in items {
                let h = self.string(
                    item,
                    "status.allowed_hosts",
                    "a host name such as \"gateway.lan\"",
                )?;
                if h.is_empty() || h.contains(['/', ' ', '@']) {
                    return Err(self.err(
                        item,
                        "status.allowed_hosts",
                        format!("`{h}` is not a host name"),
                    ));
                }
                st.allowed_hosts.push(h.to_ascii_lowercase());
            }
        }
        Ok(st)
    }

    fn gpio(&self, top: &RawConfig) -> Result<GpioConfig, ConfigError> {
        let mut g = GpioConfig::default();
        let raw_gpio = top.gpio.as_ref().map(|gp| gp.get_ref());
        if let Some(v) = raw_gpio.and_then(|gp| gp.backend.as_ref()) {
            let s = self.string(
                v,
                "gpio.backend",
                "\"auto\", \"cdev\", \"rppal\" or \"simulated\"",
            )?;
            g.backend = match s {
                "auto" => GpioBackend::Auto,
                "cdev" => GpioBackend::Cdev,
                "rppal" => GpioBackend::Rppal,
                "simulated" => GpioBackend::Simulated,
                other => {
                    return Err(self.err(
                        v,
                        "gpio.backend",
                        format!("unknown backend `{other}`: expected \"auto\" (the default: the GPIO character device, else /dev/gpiomem), \"cdev\", \"rppal\" or \"simulated\" (no hardware)"),
                    ))
                }
            };
        }
        if let Some(v) = raw_gpio.and_then(|gp| gp.chip.as_ref()) {
            let s = self.string(
                v,
                "gpio.chip",
                "a GPIO chip (\"gpiochip0\" or \"/dev/gpiochip0\")",
            )?;
            let name = s.rsplit('/').next().unwrap_or(s);
            if !name.starts_with("gpiochip") || s.chars().any(char::is_whitespace) {
                return Err(self.err(
                    v,
                    "gpio.chip",
                    format!("`{s}` is not a GPIO chip: expected \"gpiochip0\" or a path such as \"/dev/gpiochip0\" (`gpiodetect` lists them)"),
                ));
            }
            if matches!(g.backend, GpioBackend::Rppal | GpioBackend::Simulated) {
                return Err(self.err(
                    v,
                    "gpio.chip",
                    "chip applies to the character device backend: remove it, or set backend = \"cdev\" or \"auto\"",
                ));
            }
            g.chip = Some(s.to_string());
        }
        let mut pins: Vec<(u8, String)> = Vec::new();
        for (i, r) in top.relay.iter().enumerate() {
            let rr = r.get_ref();
            let key = |k: &str| format!("relay[{i}].{k}");
            let Some(name_v) = &rr.name else {
                return Err(self.err(
                    r,
                    &key("name"),
                    "this relay has no name: add name = \"...\"",
                ));
            };
            let name = self
                .string(name_v, &key("name"), "a relay name")?
                .to_string();
            check_door_name(&name)
                .map_err(|m| self.err(name_v, &key("name"), m.replace("door", "relay")))?;
            if g.relays.iter().any(|o| o.name == name) {
                return Err(self.err(
                    name_v,
                    &key("name"),
                    format!("relay name `{name}` is used twice"),
                ));
            }
            let key = |k: &str| format!("relay[{name}].{k}");
            let Some(pin_v) = &rr.pin else {
                return Err(self.err(
                    r,
                    &key("pin"),
                    "this relay has no pin: add pin = 17 (a BCM GPIO number)",
                ));
            };
            let pin = self.pin(pin_v, &key("pin"))?;
            if let Some((_, other)) = pins.iter().find(|(p, _)| *p == pin) {
                return Err(self.err(
                    pin_v,
                    &key("pin"),
                    format!("GPIO {pin} is already used by {other}"),
                ));
            }
            pins.push((pin, format!("relay `{name}`")));
            let active_low = rr
                .active_low
                .as_ref()
                .map(|v| self.boolean(v, &key("active_low")))
                .transpose()?
                .unwrap_or(false);
            let max_on = rr
                .max_on
                .as_ref()
                .map(|v| self.timeout(v, &key("max_on")))
                .transpose()?
                .unwrap_or(DEFAULT_MAX_ON);
            let group = rr
                .group
                .as_ref()
                .map(|v| {
                    self.string(v, &key("group"), "a group name")
                        .map(str::to_string)
                })
                .transpose()?;
            let safe_on = match &rr.safe_state {
                None => false,
                Some(v) => match self.string(v, &key("safe_state"), "\"off\" or \"on\"")? {
                    "off" => false,
                    "on" => true,
                    other => {
                        return Err(self.err(
                            v,
                            &key("safe_state"),
                            format!("`{other}`: expected \"off\" or \"on\""),
                        ))
                    }
                },
            };
            g.relays.push(RelayConfig {
                name,
                pin,
                active_low,
                max_on,
                group,
                safe_on,
            });
        }
        if let Some(l) = &top.led {
            let lr = l.get_ref();
            let Some(pin_v) = &lr.pin else {
                return Err(self.err(
                    l,
                    "led.pin",
                    "the LED needs a pin: add pin = 25 (a BCM GPIO number)",
                ));
            };
            let pin = self.pin(pin_v, "led.pin")?;
            if let Some((_, other)) = pins.iter().find(|(p, _)| *p == pin) {
                return Err(self.err(
                    pin_v,
                    "led.pin",
                    format!("GPIO {pin} is already used by {other}"),
                ));
            }
            let active_low = lr
                .active_low
                .as_ref()
                .map(|v| self.boolean(v, "led.active_low"))
                .transpose()?
                .unwrap_or(false);
            g.led = Some(LedConfig { pin, active_low });
        }
        Ok(g)
    }

    fn door_gpio(&self, v: &Spanned<RawDoorGpio>, key: &str) -> Result<GpioAction, ConfigError> {
        let raw = v.get_ref();
        let Some(relay_v) = &raw.relay else {
            return Err(self.err(
                v,
                &format!("{key}.relay"),
                "name the relay: relay = \"zone1\"",
            ));
        };
        let relay = self
            .string(relay_v, &format!("{key}.relay"), "a relay name")?
            .to_string();
        let mode_name = match &raw.mode {
            Some(m) => self.string(
                m,
                &format!("{key}.mode"),
                "\"pulse\", \"on\", \"off\" or \"toggle\"",
            )?,
            None => "pulse",
        };
        let duration = raw
            .duration
            .as_ref()
            .map(|d| self.timeout(d, &format!("{key}.duration")))
            .transpose()?;
        let at = raw.mode.as_ref().map_or(v.span(), |m| m.span());
        let bad = |message: String| ConfigError {
            file: self.origin.to_string(),
            line: Some(self.line(at.start)),
            key: Some(format!("{key}.mode")),
            message,
        };
        let mode = match (mode_name, duration) {
            ("pulse", Some(d)) => RelayMode::Pulse(d),
            ("pulse", None) => return Err(bad("a pulse needs a duration: duration = \"500ms\" (garage door) or \"10m\" (sprinkler)".into())),
            ("on", None) => RelayMode::On,
            ("off", None) => RelayMode::Off,
            ("toggle", None) => RelayMode::Toggle,
            ("on" | "off" | "toggle", Some(_)) => return Err(bad(format!("mode \"{mode_name}\" takes no duration (use mode = \"pulse\")"))),
            (other, _) => return Err(bad(format!("unknown mode `{other}`: expected \"pulse\", \"on\", \"off\" or \"toggle\""))),
        };
        Ok(GpioAction { relay, mode })
    }

    fn hmac(&self, v: &Spanned<RawHmac>, key: &str) -> Result<HmacConfig, ConfigError> {
        let raw = v.get_ref();
        let k = |f: &str| format!("{key}.{f}");
        let Some(file_v) = &raw.secret_file else {
            return Err(self.err(
                v,
                &k("secret_file"),
                "name the secret: secret_file = \"/etc/knockgate/ssh.secret\" (create it with `openssl rand -hex 32`, mode 600)",
            ));
        };
        let secret_file = self.path(file_v, &k("secret_file"))?;
        let mut params = crate::doors::hmacseq::Params::default();
        if let Some(sv) = &raw.steps {
            let n = self.integer(
                sv,
                &k("steps"),
                2..=8,
                "expected a number of knocks from 2 to 8",
            )?;
            params.steps = usize::try_from(n).expect("in range");
        }
        if let Some(pv) = &raw.ports {
            let s = self.string(pv, &k("ports"), "a port range such as \"10000-60000\"")?;
            let range = s.split_once('-').and_then(|(a, b)| {
                Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?))
            });
            match range {
                Some((a, b)) if a >= 1 && b > a && usize::from(b - a) >= 8 * params.steps => {
                    params.first = a;
                    params.last = b;
                }
                _ => {
                    return Err(self.err(
                        pv,
                        &k("ports"),
                        format!("`{s}`: expected a range \"FIRST-LAST\" of ports (1 to 65535) wide enough for the sequence, e.g. \"10000-60000\""),
                    ))
                }
            }
        }
        if let Some(wv) = &raw.window {
            let w = self.timeout(wv, &k("window"))?;
            if w.as_secs() < 5 || w.subsec_nanos() != 0 {
                return Err(self.err(
                    wv,
                    &k("window"),
                    "a window is a whole number of seconds, at least 5 (30 s is TOTP's usual)",
                ));
            }
            params.window = w.as_secs();
        }
        Ok(HmacConfig {
            secret_file,
            params,
        })
    }

    fn wake(&self, v: &Spanned<RawWake>, key: &str) -> Result<WakeAction, ConfigError> {
        let raw = v.get_ref();
        let k = |f: &str| format!("{key}.{f}");
        let six = |val: &Spanned<RawValue>, field: &str| -> Result<[u8; 6], ConfigError> {
            let s = self.string(
                val,
                &k(field),
                "six hex bytes such as \"00:11:22:33:44:55\"",
            )?;
            parse_mac(s).ok_or_else(|| {
                self.err(val, &k(field), format!("`{s}` is not six hex bytes: expected e.g. \"00:11:22:33:44:55\" (or with `-`)"))
            })
        };
        let Some(mac_v) = &raw.mac else {
            return Err(self.err(
                v,
                &k("mac"),
                "give the MAC address of the machine to wake: mac = \"00:11:22:33:44:55\"",
            ));
        };
        let mac = six(mac_v, "mac")?;
        let interface = match &raw.interface {
            Some(i) => {
                let name = self.string(i, &k("interface"), "an interface name such as \"eth0\"")?;
                check_interface_name(name).map_err(|m| self.err(i, &k("interface"), m))?;
                Some(name.to_string())
            }
            None => None,
        };
        let port = match &raw.port {
            None => 9,
            Some(p) => {
                let n = self.integer(
                    p,
                    &k("port"),
                    1..=65535,
                    "expected a port from 1 to 65535 (usually 9 or 7)",
                )?;
                u16::try_from(n).expect("in range")
            }
        };
        let broadcast = match &raw.broadcast {
            None => IpAddr::from([255, 255, 255, 255]),
            Some(b) => {
                let s = self.string(
                    b,
                    &k("broadcast"),
                    "an IPv4 broadcast address such as \"192.168.1.255\"",
                )?;
                match s.trim().parse::<IpAddr>() {
                    Ok(ip @ IpAddr::V4(_)) => ip,
                    _ => {
                        return Err(self.err(
                            b,
                            &k("broadcast"),
                            format!(
                                "`{s}` is not an IPv4 address: wake-on-LAN is an IPv4 broadcast"
                            ),
                        ))
                    }
                }
            }
        };
        let password = raw
            .password
            .as_ref()
            .map(|p| six(p, "password"))
            .transpose()?;
        let rate_limit = raw
            .rate_limit
            .as_ref()
            .map(|r| self.timeout(r, &k("rate_limit")))
            .transpose()?
            .unwrap_or(DEFAULT_WAKE_RATE_LIMIT);
        Ok(WakeAction {
            mac,
            interface,
            port,
            broadcast,
            password,
            rate_limit,
        })
    }

    fn firewall(&self, raw: &RawFirewall) -> Result<FirewallConfig, ConfigError> {
        let mut f = FirewallConfig::default();
        if let Some(v) = &raw.backend {
            let s = self.string(v, "firewall.backend", "\"iptables\" or \"none\"")?;
            f.backend = match s {
                "iptables" => Backend::Iptables,
                "none" => Backend::None,
                other => {
                    return Err(self.err(
                        v,
                        "firewall.backend",
                        format!("unknown backend `{other}`: expected \"iptables\" or \"none\""),
                    ))
                }
            };
        }
        if let Some(v) = &raw.chain {
            let s = self.string(v, "firewall.chain", "a chain name such as \"KNOCKD\"")?;
            let valid = !s.is_empty()
                && s.len() <= 28
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                && !["INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"].contains(&s);
            if !valid {
                return Err(self.err(
                    v,
                    "firewall.chain",
                    format!("`{s}` is not a usable chain name: expected 1 to 28 letters, digits, `_` or `-`, not a built-in chain"),
                ));
            }
            f.chain = s.to_string();
        }
        if let Some(v) = &raw.jump_position {
            let n = self.integer(
                v,
                "firewall.jump_position",
                1..=1000,
                "expected a whole number from 1 (first rule of INPUT) to 1000",
            )?;
            f.jump_position = u32::try_from(n).expect("in range");
        }
        if let Some(v) = &raw.daily_flush {
            let s = self.string(
                v,
                "firewall.daily_flush",
                "a local time \"HH:MM\" or \"off\"",
            )?;
            f.daily_flush = if s.eq_ignore_ascii_case("off") {
                None
            } else {
                Some(parse_local_time(s).map_err(|m| self.err(v, "firewall.daily_flush", m))?)
            };
        }
        Ok(f)
    }

    fn door_firewall(
        &self,
        v: &Spanned<RawDoorFirewall>,
        key: &str,
    ) -> Result<FirewallAction, ConfigError> {
        let raw = v.get_ref();
        const EXPECTED: &str = "expected \"all\" or a list such as [\"22/tcp\", \"5060-5069/udp\"]";
        let Some(pv) = &raw.ports else {
            return Err(self.err(
                v,
                &format!("{key}.ports"),
                format!("a firewall action needs ports: {EXPECTED}"),
            ));
        };
        let pkey = format!("{key}.ports");
        let ports = match pv.get_ref() {
            RawValue::String(s) if s.trim().eq_ignore_ascii_case("all") => Ports::All,
            RawValue::String(s) => Ports::Some(vec![
                PortRange::parse(s).map_err(|m| self.err(pv, &pkey, m))?
            ]),
            RawValue::Array(items) if !items.is_empty() => {
                let mut ranges = Vec::with_capacity(items.len());
                for item in items {
                    let r = match item.get_ref() {
                        RawValue::String(s) => PortRange::parse(s),
                        RawValue::Integer(n) => PortRange::parse(&n.to_string()),
                        other => Err(format!("{EXPECTED}, found {}", other.kind())),
                    };
                    ranges.push(r.map_err(|m| self.err(item, &pkey, m))?);
                }
                ranges.sort();
                ranges.dedup();
                Ports::Some(ranges)
            }
            other => {
                return Err(self.err(pv, &pkey, format!("{EXPECTED}, found {}", other.kind())))
            }
        };
        let duration = raw
            .duration
            .as_ref()
            .map(|d| self.timeout(d, &format!("{key}.duration")))
            .transpose()?;
        Ok(FirewallAction { ports, duration })
    }

    fn daemon(&self, raw: &RawDaemon) -> Result<Daemon, ConfigError> {
        let interfaces = match &raw.interfaces {
            None => Interfaces::Auto,
            Some(v) => self.interfaces(v)?,
        };
        let log_file = raw
            .log_file
            .as_ref()
            .map(|v| self.path(v, "daemon.log_file"))
            .transpose()?;
        let syslog = match &raw.syslog {
            None => false,
            Some(v) => match v.get_ref() {
                RawValue::Boolean(b) => *b,
                other => {
                    return Err(self.err(
                        v,
                        "daemon.syslog",
                        format!("expected true or false, found {}", other.kind()),
                    ))
                }
            },
        };
        let pid_file = raw
            .pid_file
            .as_ref()
            .map(|v| self.path(v, "daemon.pid_file"))
            .transpose()?;
        let state_dir = match &raw.state_dir {
            None => PathBuf::from(DEFAULT_STATE_DIR),
            Some(v) => self.path(v, "daemon.state_dir")?,
        };
        let max_sources = match &raw.max_sources {
            None => DEFAULT_MAX_SOURCES,
            Some(v) => {
                const MAX: i64 = 10_000_000;
                let expected = format!("expected a whole number from 1 to {MAX}");
                match v.get_ref() {
                    RawValue::Integer(n) if (1..=MAX).contains(n) => {
                        usize::try_from(*n).expect("in range")
                    }
                    RawValue::Integer(n) => {
                        return Err(self.err(
                            v,
                            "daemon.max_sources",
                            format!("{n} is out of range: {expected}"),
                        ))
                    }
                    other => {
                        return Err(self.err(
                            v,
                            "daemon.max_sources",
                            format!("{expected}, found {}", other.kind()),
                        ))
                    }
                }
            }
        };
        let mut penalties = crate::engine::limits::PenaltyConfig::default();
        if let Some(v) = &raw.max_failures {
            let n = self.integer(
                v,
                "daemon.max_failures",
                0..=1_000_000,
                "expected a number of failed attempts (0 turns the limit off)",
            )?;
            penalties.max_failures = u32::try_from(n).expect("in range");
        }
        if let Some(v) = &raw.failure_window {
            penalties.window = self.timeout(v, "daemon.failure_window")?;
        }
        if let Some(v) = &raw.ban {
            penalties.ban = self.timeout(v, "daemon.ban")?;
        }
        let user = match &raw.user {
            Some(v) => {
                let name = self.string(v, "daemon.user", "a user name such as \"knockgate\"")?;
                let valid = !name.is_empty()
                    && name.len() <= 32
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
                    && !name.starts_with('-');
                if !valid || name == "root" {
                    return Err(self.err(
                        v,
                        "daemon.user",
                        format!("`{name}` is not an unprivileged user name: expected e.g. \"knockgate\" (not root)"),
                    ));
                }
                Some(name.to_string())
            }
            None => None,
        };
        Ok(Daemon {
            interfaces,
            log_file,
            syslog,
            pid_file,
            state_dir,
            max_sources,
            penalties,
            user,
        })
    }

    fn interfaces(&self, v: &Spanned<RawValue>) -> Result<Interfaces, ConfigError> {
        const KEY: &str = "daemon.interfaces";
        const EXPECTED: &str =
            "expected \"auto\" or a list of interface names such as [\"eth0\", \"wlan0\"]";
        match v.get_ref() {
            RawValue::String(s) if s.eq_ignore_ascii_case("auto") => Ok(Interfaces::Auto),
            RawValue::String(s) => Err(self.err(
                v,
                KEY,
                format!("`{s}` is not \"auto\": {EXPECTED} (write [\"{s}\"] for one interface)"),
            )),
            RawValue::Array(items) if items.is_empty() => {
                Err(self.err(v, KEY, format!("empty list: {EXPECTED}")))
            }
            RawValue::Array(items) => {
                let mut names: Vec<String> = Vec::with_capacity(items.len());
                for item in items {
                    let RawValue::String(name) = item.get_ref() else {
                        return Err(self.err(
                            item,
                            KEY,
                            format!(
                                "expected an interface name (a string such as \"eth0\"), found {}",
                                item.get_ref().kind()
                            ),
                        ));
                    };
                    check_interface_name(name).map_err(|m| self.err(item, KEY, m))?;
                    if names.contains(name) {
                        return Err(self.err(
                            item,
                            KEY,
                            format!("interface `{name}` is listed twice"),
                        ));
                    }
                    names.push(name.clone());
                }
                Ok(Interfaces::Named(names))
            }
            other => Err(self.err(v, KEY, format!("{EXPECTED}, found {}", other.kind()))),
        }
    }

    /// A string value, or an error saying what was expected.
    fn string<'v>(
        &self,
        v: &'v Spanned<RawValue>,
        key: &str,
        what: &str,
    ) -> Result<&'v str, ConfigError> {
        match v.get_ref() {
            RawValue::String(s) => Ok(s),
            other => Err(self.err(v, key, format!("expected {what}, found {}", other.kind()))),
        }
    }

    fn path(&self, v: &Spanned<RawValue>, key: &str) -> Result<PathBuf, ConfigError> {
        let s = self.string(v, key, "a path (a string such as \"/var/lib/knockgate\")")?;
        if s.is_empty() {
            return Err(self.err(v, key, "empty path: give a path or remove the key"));
        }
        if s.contains('\0') {
            return Err(self.err(v, key, "a path cannot contain a NUL character"));
        }
        Ok(PathBuf::from(s))
    }

    /// A positive timeout: an integer (seconds) or a duration string.
    fn timeout(&self, v: &Spanned<RawValue>, key: &str) -> Result<Duration, ConfigError> {
        let expected = format!("expected a whole number of seconds (1 or more) or {DURATION_HELP}");
        let d = match v.get_ref() {
            RawValue::Integer(n) if *n > 0 => Duration::from_secs(n.unsigned_abs()),
            RawValue::Integer(n) => {
                return Err(self.err(v, key, format!("{n} is not a positive timeout: {expected}")))
            }
            RawValue::String(s) => parse_duration(s).map_err(|m| self.err(v, key, m))?,
            other => return Err(self.err(v, key, format!("{expected}, found {}", other.kind()))),
        };
        if d.is_zero() {
            return Err(self.err(
                v,
                key,
                format!("a timeout of zero is not allowed: {expected}"),
            ));
        }
        Ok(d)
    }

    /// Exactly one of a key and its alias, or neither.
    fn one_of<'v>(
        &self,
        main: &'v Option<Spanned<RawValue>>,
        alias: &'v Option<Spanned<RawValue>>,
        door: &str,
        names: (&str, &str),
    ) -> Result<Option<&'v Spanned<RawValue>>, ConfigError> {
        match (main, alias) {
            (Some(_), Some(a)) => Err(self.err(
                a,
                &format!("{door}.{}", names.1),
                format!(
                    "`{}` is an alias of `{}`, which is also given: keep one",
                    names.1, names.0
                ),
            )),
            (Some(m), None) => Ok(Some(m)),
            (None, a) => Ok(a.as_ref()),
        }
    }

    fn door(&self, index: usize, spanned: &Spanned<RawDoor>) -> Result<Door, ConfigError> {
        let raw = spanned.get_ref();
        // The name first: every other key is named after it.
        let Some(name_v) = &raw.name else {
            return Err(self.err(
                spanned,
                &format!("door[{index}].name"),
                "this door has no name: add name = \"...\" (1 to 127 characters, unique)",
            ));
        };
        let name = self
            .string(
                name_v,
                &format!("door[{index}].name"),
                "a door name (a string of 1 to 127 characters)",
            )?
            .to_string();
        check_door_name(&name).map_err(|m| self.err(name_v, &format!("door[{index}].name"), m))?;
        let d = door_key(index, Some(&name));
        let key = |k: &str| format!("{d}.{k}");

        let sequence = match &raw.sequence {
            Some(v) if is_unfilled(v) => {
                if !self.unfilled_ok {
                    return Err(self.err(v, &key("sequence"), UNFILLED_HELP));
                }
                Vec::new()
            }
            Some(v) => self.sequence(v, &key("sequence"))?,
            None => Vec::new(),
        };
        let one_time_sequences = match &raw.one_time_sequences {
            Some(v) => {
                if raw.sequence.is_some() {
                    return Err(self.err(
                        v,
                        &key("one_time_sequences"),
                        "give either `sequence` or `one_time_sequences`, not both: with one_time_sequences the sequence is read from the file",
                    ));
                }
                Some(self.path(v, &key("one_time_sequences"))?)
            }
            None => None,
        };
        let hmac = match &raw.hmac {
            Some(h) => {
                if raw.sequence.is_some() || raw.one_time_sequences.is_some() {
                    return Err(self.err(
                        h,
                        &key("hmac"),
                        "give one of `sequence`, `one_time_sequences` or `hmac`: with hmac the sequence is derived from the secret and the time",
                    ));
                }
                Some(self.hmac(h, &key("hmac"))?)
            }
            None => None,
        };
        if raw.sequence.is_none() && one_time_sequences.is_none() && hmac.is_none() {
            return Err(self.err(
                spanned,
                &key("sequence"),
                "this door has no sequence: add sequence = [\"7000/tcp\", \"8000/tcp\", \"9000/tcp\"] (or one_time_sequences = \"/path/to/file\", or hmac = { secret_file = \"/path\" })",
            ));
        }

        let seq_timeout = match self.one_of(
            &raw.seq_timeout,
            &raw.timeout,
            &d,
            ("seq_timeout", "timeout"),
        )? {
            Some(v) => {
                let k = if raw.seq_timeout.is_some() {
                    "seq_timeout"
                } else {
                    "timeout"
                };
                self.timeout(v, &key(k))?
            }
            None => DEFAULT_SEQ_TIMEOUT,
        };
        let tcp_flags = match &raw.tcp_flags {
            Some(v) => {
                let s = self.string(
                    v,
                    &key("tcp_flags"),
                    "TCP flags such as \"syn,!ack\" or \"any\"",
                )?;
                FlagRule::parse(s).map_err(|m| self.err(v, &key("tcp_flags"), m))?
            }
            None => FlagRule::SYN_NOT_ACK,
        };
        let target = match &raw.target {
            Some(v) => {
                let s = self.string(v, &key("target"), "an IP address such as \"192.168.1.20\"")?;
                Some(s.trim().parse::<IpAddr>().map_err(|_| {
                    self.err(
                        v,
                        &key("target"),
                        format!("`{s}` is not an IP address: expected an address such as \"192.168.1.20\" or \"fd00::20\" (host names are not resolved)"),
                    )
                })?)
            }
            None => None,
        };

        let start_command = match self.one_of(
            &raw.start_command,
            &raw.command,
            &d,
            ("start_command", "command"),
        )? {
            Some(v) => {
                let k = if raw.start_command.is_some() {
                    "start_command"
                } else {
                    "command"
                };
                Some(self.command(v, &key(k))?)
            }
            None => None,
        };
        let start_command_6 = match self.one_of(
            &raw.start_command_6,
            &raw.command_6,
            &d,
            ("start_command_6", "command_6"),
        )? {
            Some(v) => {
                let k = if raw.start_command_6.is_some() {
                    "start_command_6"
                } else {
                    "command_6"
                };
                self.command6(v, &key(k))?
            }
            None => Command6::Inherit,
        };
        let stop_command = match &raw.stop_command {
            Some(v) => Some(self.command(v, &key("stop_command"))?),
            None => None,
        };
        let stop_command_6 = match &raw.stop_command_6 {
            Some(v) => self.command6(v, &key("stop_command_6"))?,
            None => Command6::Inherit,
        };
        let cmd_timeout = match &raw.cmd_timeout {
            Some(v) => self.timeout(v, &key("cmd_timeout"))?,
            None => DEFAULT_CMD_TIMEOUT,
        };

        let firewall = raw
            .firewall
            .as_ref()
            .map(|f| self.door_firewall(f, &key("firewall")))
            .transpose()?;
        let close = match &raw.close {
            Some(v) => Some(
                self.string(v, &key("close"), "the name of the door to close")?
                    .to_string(),
            ),
            None => None,
        };
        let gpio = raw
            .gpio
            .as_ref()
            .map(|g| self.door_gpio(g, &key("gpio")))
            .transpose()?;
        let wake_on_lan = raw
            .wake_on_lan
            .as_ref()
            .map(|w| self.wake(w, &key("wake_on_lan")))
            .transpose()?;
        let door = Door {
            name,
            sequence,
            seq_timeout,
            tcp_flags,
            target,
            one_time_sequences,
            start_command,
            start_command_6,
            stop_command,
            stop_command_6,
            cmd_timeout,
            firewall,
            close,
            gpio,
            wake_on_lan,
            hmac,
        };
        // A stop command runs only after a start command (as in knockd).
        if let Some(v) = &raw.stop_command {
            if door.start_for(false).is_none() && door.start_for(true).is_none() {
                return Err(self.err(
                    v,
                    &key("stop_command"),
                    "a stop_command needs a start_command (or start_command_6): it runs cmd_timeout after the start command",
                ));
            }
        }
        if let (Some(v), Command6::Set(_)) = (&raw.stop_command_6, &door.stop_command_6) {
            if door.start_for(true).is_none() {
                return Err(self.err(
                    v,
                    &key("stop_command_6"),
                    "a stop_command_6 needs a start command for IPv6 (start_command_6, or start_command when start_command_6 is not set)",
                ));
            }
        }
        Ok(door)
    }

    fn sequence(&self, v: &Spanned<RawValue>, key: &str) -> Result<Vec<KnockSpec>, ConfigError> {
        const EXPECTED: &str = "expected a list such as [\"7000/tcp\", \"8000\", \"9000/udp\"] or a string such as \"7000:tcp,8000,9000:udp\"";
        // (text or port, where) for each step.
        let steps: Vec<(Result<KnockSpec, String>, &Spanned<RawValue>)> = match v.get_ref() {
            RawValue::String(s) => {
                if s.trim().is_empty() {
                    return Err(self.err(v, key, format!("empty sequence: {EXPECTED}")));
                }
                s.split(',')
                    .map(|step| {
                        let r = if step.trim().is_empty() {
                            Err("empty step (a doubled or trailing comma?)".to_string())
                        } else {
                            KnockSpec::parse(step)
                        };
                        (r, v)
                    })
                    .collect()
            }
            RawValue::Array(items) => {
                if items.is_empty() {
                    return Err(self.err(v, key, format!("empty sequence: {EXPECTED}")));
                }
                items
                    .iter()
                    .map(|item| {
                        let r = match item.get_ref() {
                            RawValue::String(s) => KnockSpec::parse(s),
                            RawValue::Integer(n) => match u16::try_from(*n) {
                                Ok(p) if p != 0 => Ok(KnockSpec::tcp(p)),
                                _ => Err(format!(
                                    "invalid port `{n}`: expected a whole number from 1 to 65535"
                                )),
                            },
                            other => Err(format!(
                                "expected a port such as \"7000/tcp\", \"8000\" or 9000, found {}",
                                other.kind()
                            )),
                        };
                        (r, item)
                    })
                    .collect()
            }
            other => return Err(self.err(v, key, format!("{EXPECTED}, found {}", other.kind()))),
        };
        if steps.len() > MAX_SEQUENCE_LEN {
            return Err(self.err(
                v,
                key,
                format!(
                    "{} steps: expected 1 to {MAX_SEQUENCE_LEN} steps",
                    steps.len()
                ),
            ));
        }
        let mut out = Vec::with_capacity(steps.len());
        for (i, (r, at)) in steps.into_iter().enumerate() {
            out.push(r.map_err(|m| self.err(at, key, format!("step {}: {m}", i + 1)))?);
        }
        Ok(out)
    }

    fn command(&self, v: &Spanned<RawValue>, key: &str) -> Result<CommandTemplate, ConfigError> {
        let s = self.string(v, key, "a command line (a string)")?;
        if s.trim().is_empty() {
            return Err(self.err(
                v,
                key,
                "empty command: give a program and its arguments, or remove the key (only the _6 variants may be empty, to disable IPv6)",
            ));
        }
        CommandTemplate::parse(s).map_err(|m| self.err(v, key, m))
    }

    fn command6(&self, v: &Spanned<RawValue>, key: &str) -> Result<Command6, ConfigError> {
        let s = self.string(
            v,
            key,
            "a command line (a string), or \"\" to run nothing for IPv6",
        )?;
        if s.trim().is_empty() {
            return Ok(Command6::Disabled);
        }
        CommandTemplate::parse(s)
            .map(Command6::Set)
            .map_err(|m| self.err(v, key, m))
    }
}

/// The text after the first occurrence of `pattern`.
fn after<'a>(text: &'a str, pattern: &str) -> Option<&'a str> {
    text.find(pattern).map(|i| &text[i + pattern.len()..])
}

/// `door[name]`, or `door[index]` when the name is missing or unusable.
fn door_key(index: usize, name: Option<&str>) -> String {
    match name {
        Some(n) if check_door_name(n).is_ok() => format!("door[{n}]"),
        _ => format!("door[{index}]"),
    }
}

/// The known key closest to an unknown one: same letters ignoring case and `_`, or within two
/// edits (so knockd's `TCPFlags` suggests `tcp_flags`, `logfile` suggests `log_file`).
fn suggest(unknown: &str, known: &[&'static str]) -> Option<&'static str> {
    fn norm(s: &str) -> String {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect()
    }
    let u = norm(unknown);
    if let Some(k) = known.iter().find(|k| norm(k) == u) {
        return Some(k);
    }
    known
        .iter()
        .map(|k| (strsim::levenshtein(&u, &norm(k)), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knock::{Proto, TcpFlags};

    fn ok(text: &str) -> Config {
        parse(text, "t.toml").unwrap_or_else(|e| panic!("{e}\n--- config:\n{text}"))
    }

    /// A door with only what is required, for tests that vary one key.
    fn door(extra: &str) -> String {
        format!("[[door]]\nname = \"a\"\nsequence = [7000]\n{extra}")
    }

    #[test]
    fn builtin_parses_and_is_harmless() {
        let c = builtin();
        assert_eq!(c.origin, "<built-in>");
        assert_eq!(c.daemon.interfaces, Interfaces::Auto);
        assert_eq!(c.doors.len(), 1);
        let d = &c.doors[0];
        assert_eq!(d.name, "openSSH");
        assert_eq!(
            d.sequence,
            vec![
                KnockSpec::tcp(7000),
                KnockSpec::tcp(8000),
                KnockSpec::tcp(9000)
            ]
        );
        assert_eq!(d.seq_timeout, Duration::from_secs(5));
        assert_eq!(d.tcp_flags, FlagRule::SYN_NOT_ACK);
        let start = d.start_command.as_ref().unwrap();
        assert_eq!(
            start.argv,
            ["logger", "-t", "knockgate", "%DOOR%: %IP% knocked"]
        );
        let vars = Vars {
            ip: "192.0.2.7".parse().unwrap(),
            door: &d.name,
        };
        assert_eq!(start.render(&vars)[3], "openSSH: 192.0.2.7 knocked");
        assert_eq!(d.start_for(true), Some(start));
        assert!(d.stop_command.is_none() && d.stop_for(false).is_none());
    }

    #[test]
    fn example_config_parses() {
        let c = parse(
            include_str!("../../examples/knockgate.toml"),
            "examples/knockgate.toml",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = c.doors.iter().map(|d| d.name.as_str()).collect();
        assert!(
            names.contains(&"openSSH") && names.contains(&"closeSSH"),
            "{names:?}"
        );
        let ssh = c.doors.iter().find(|d| d.name == "openSSH").unwrap();
        assert!(ssh
            .start_command
            .as_ref()
            .unwrap()
            .text
            .contains("-I KNOCKD"));
        assert!(ssh
            .stop_command
            .as_ref()
            .unwrap()
            .text
            .contains("-D KNOCKD"));
        assert!(matches!(ssh.start_command_6, Command6::Set(_)));
        assert!(c.doors.iter().any(|d| d.target.is_some()));
    }

    #[test]
    fn full_config_round_trips_every_value() {
        let c = ok(r#"
[daemon]
interfaces = ["eth0", "wlan0"]
log_file = "/var/log/knockgate.log"
syslog = true
pid_file = "/run/knockgate.pid"
state_dir = "/tmp/kg"
max_sources = 5000

[[door]]
name = "open SSH"
sequence = ["7000/tcp", "8000", "9000/udp", 7000]
seq_timeout = "1m30s"
tcp_flags = "fin,!ack"
target = "192.168.1.20"
start_command = "iptables -w -I KNOCKD -s %IP% -p tcp --dport 22 -j ACCEPT"
start_command_6 = "ip6tables -w -I KNOCKD -s %IP% -p tcp --dport 22 -j ACCEPT"
stop_command = "iptables -w -D KNOCKD -s %IP% -p tcp --dport 22 -j ACCEPT"
stop_command_6 = ""
cmd_timeout = 30

[[door]]
name = "otp"
one_time_sequences = "/etc/knockgate/otp"
"#);
        assert_eq!(c.origin, "t.toml");
        let dm = &c.daemon;
        assert_eq!(
            dm.interfaces,
            Interfaces::Named(vec!["eth0".into(), "wlan0".into()])
        );
        assert_eq!(
            dm.log_file.as_deref(),
            Some(Path::new("/var/log/knockgate.log"))
        );
        assert!(dm.syslog);
        assert_eq!(
            dm.pid_file.as_deref(),
            Some(Path::new("/run/knockgate.pid"))
        );
        assert_eq!(dm.state_dir, Path::new("/tmp/kg"));
        assert_eq!(dm.max_sources, 5000);
        let d = &c.doors[0];
        assert_eq!(d.name, "open SSH");
        assert_eq!(
            d.sequence,
            vec![
                KnockSpec::tcp(7000),
                KnockSpec::tcp(8000),
                KnockSpec::udp(9000),
                KnockSpec::tcp(7000)
            ]
        );
        assert_eq!(d.seq_timeout, Duration::from_secs(90));
        assert_eq!(
            d.tcp_flags,
            FlagRule {
                set: TcpFlags::FIN,
                unset: TcpFlags::ACK
            }
        );
        assert_eq!(d.target, Some("192.168.1.20".parse().unwrap()));
        assert_eq!(d.one_time_sequences, None);
        assert_eq!(
            d.start_command.as_ref().unwrap().argv[..4],
            ["iptables", "-w", "-I", "KNOCKD"]
        );
        match &d.start_command_6 {
            Command6::Set(c) => assert_eq!(c.argv[0], "ip6tables"),
            other => panic!("{other:?}"),
        }
        assert_eq!(d.stop_command.as_ref().unwrap().argv[2], "-D");
        assert_eq!(d.stop_command_6, Command6::Disabled);
        assert_eq!(d.cmd_timeout, Duration::from_secs(30));
        let otp = &c.doors[1];
        assert!(otp.sequence.is_empty());
        assert_eq!(
            otp.one_time_sequences.as_deref(),
            Some(Path::new("/etc/knockgate/otp"))
        );
    }

    #[test]
    fn defaults() {
        let c = ok(&door(""));
        assert_eq!(
            c.daemon,
            Daemon {
                interfaces: Interfaces::Auto,
                log_file: None,
                syslog: false,
                pid_file: None,
                state_dir: PathBuf::from(DEFAULT_STATE_DIR),
                max_sources: DEFAULT_MAX_SOURCES,
                penalties: crate::engine::limits::PenaltyConfig {
                    max_failures: 20,
                    window: Duration::from_secs(60),
                    ban: Duration::from_secs(600),
                },
                user: None,
            }
        );
        let d = &c.doors[0];
        assert_eq!(d.seq_timeout, DEFAULT_SEQ_TIMEOUT);
        assert_eq!(d.cmd_timeout, DEFAULT_CMD_TIMEOUT);
        assert_eq!(d.tcp_flags, FlagRule::SYN_NOT_ACK);
        assert_eq!(d.target, None);
        assert_eq!(d.one_time_sequences, None);
        assert_eq!(d.start_command, None);
        assert_eq!(d.start_command_6, Command6::Inherit);
        assert_eq!(d.stop_command, None);
        assert_eq!(d.stop_command_6, Command6::Inherit);
        // An empty [daemon] table is the same as none.
        assert_eq!(ok(&format!("[daemon]\n{}", door(""))).daemon, c.daemon);
        assert_eq!(
            ok(&format!("[daemon]\ninterfaces = \"auto\"\n{}", door("")))
                .daemon
                .interfaces,
            Interfaces::Auto
        );
        assert_eq!(
            ok(&door("tcp_flags = \"any\"")).doors[0].tcp_flags,
            FlagRule::ANY
        );
    }

    #[test]
    fn aliases() {
        let d = &ok(&door(
            "timeout = 7\ncommand = \"a b\"\ncommand_6 = \"c d\"\n",
        ))
        .doors[0];
        assert_eq!(d.seq_timeout, Duration::from_secs(7));
        assert_eq!(d.start_command.as_ref().unwrap().argv, ["a", "b"]);
        assert_eq!(
            d.start_command_6,
            Command6::Set(CommandTemplate::parse("c d").unwrap())
        );
    }

    #[test]
    fn knockd_style_sequence_string() {
        let d = &ok("[[door]]\nname = \"k\"\nsequence = \"7000:tcp, 8000,9000:UDP,8000/udp\"\n")
            .doors[0];
        assert_eq!(
            d.sequence,
            vec![
                KnockSpec::tcp(7000),
                KnockSpec::tcp(8000),
                KnockSpec::udp(9000),
                KnockSpec::udp(8000)
            ]
        );
        assert_eq!(d.sequence[2].proto, Proto::Udp);
        // 32 steps is the most.
        let steps: Vec<String> = (1..=32).map(|p| p.to_string()).collect();
        let c = ok(&format!(
            "[[door]]\nname = \"k\"\nsequence = \"{}\"\n",
            steps.join(",")
        ));
        assert_eq!(c.doors[0].sequence.len(), MAX_SEQUENCE_LEN);
    }

    #[test]
    fn command6_tri_state() {
        let base = "start_command = \"on4 %IP%\"\nstop_command = \"off4 %IP%\"\n";
        // Unset: IPv6 falls back to the IPv4 commands.
        let d = &ok(&door(base)).doors[0];
        assert_eq!(d.start_command_6, Command6::Inherit);
        assert_eq!(d.start_for(true).unwrap().argv[0], "on4");
        assert_eq!(d.stop_for(true).unwrap().argv[0], "off4");
        // Empty: nothing runs for IPv6; IPv4 is unchanged.
        let d = &ok(&door(&format!(
            "{base}start_command_6 = \"\"\nstop_command_6 = \"\"\n"
        )))
        .doors[0];
        assert_eq!(d.start_command_6, Command6::Disabled);
        assert_eq!(d.stop_command_6, Command6::Disabled);
        assert!(d.start_for(true).is_none() && d.stop_for(true).is_none());
        assert_eq!(d.start_for(false).unwrap().argv[0], "on4");
        // Set: its own commands.
        let d = &ok(&door(&format!(
            "{base}start_command_6 = \"on6 %IP%\"\nstop_command_6 = \"off6\"\n"
        )))
        .doors[0];
        assert_eq!(d.start_for(true).unwrap().argv[0], "on6");
        assert_eq!(d.stop_for(true).unwrap().argv[0], "off6");
        assert_eq!(d.stop_for(false).unwrap().argv[0], "off4");
        // IPv6 only: a stop command may go with start_command_6 alone.
        let d = &ok(&door("start_command_6 = \"on6\"\nstop_command = \"off\"\n")).doors[0];
        assert!(d.start_for(false).is_none());
        assert_eq!(d.stop_for(true).unwrap().argv[0], "off");
    }

    #[test]
    fn durations() {
        let good = [
            ("500ms", 500),
            ("30s", 30_000),
            ("10m", 600_000),
            ("1h", 3_600_000),
            ("1d", 86_400_000),
            ("1h30m", 5_400_000),
            ("1m 30s", 90_000),
            ("2s500ms", 2_500),
            (" 5s ", 5_000),
            ("0s", 0),
        ];
        for (text, ms) in good {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
        let bad = [
            ("", "empty duration"),
            ("5", "has no unit"),
            ("5x", "unknown unit `x`"),
            ("1.5s", "fractions are not supported"),
            ("-5s", "expected a whole number"),
            ("30m1h", "largest to smallest"),
            ("1s1s", "largest to smallest"),
            ("5S", "unknown unit `S`"),
            ("99999999999999999999d", "too long"),
            ("s", "expected a whole number"),
        ];
        for (text, fragment) in bad {
            let e = parse_duration(text).unwrap_err();
            assert!(e.contains(fragment), "{text:?}: {e}");
        }
        // In the TOML file: integer seconds, or a string.
        assert_eq!(
            ok(&door("seq_timeout = 3")).doors[0].seq_timeout,
            Duration::from_secs(3)
        );
        assert_eq!(
            ok(&door("seq_timeout = \"1500ms\"")).doors[0].seq_timeout,
            Duration::from_millis(1500)
        );
    }

    /// (config, line, key, fragment of the message)
    const INVALID: &[(&str, Option<usize>, Option<&str>, &str)] = &[
        // [daemon]
        ("[daemon]\nmax_sources = 0\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("daemon.max_sources"), "expected a whole number from 1 to 10000000"),
        ("[daemon]\nmax_sources = 10000001\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("daemon.max_sources"), "out of range"),
        ("[daemon]\n\nmax_sources = \"100\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(3), Some("daemon.max_sources"), "found a string"),
        ("[daemon]\nsyslog = \"yes\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("daemon.syslog"), "expected true or false"),
        ("[daemon]\ninterfaces = \"eth0\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("daemon.interfaces"), "write [\"eth0\"] for one interface"),
        ("[daemon]\ninterfaces = [\n  \"eth0\",\n  \"bad/name\",\n]\n[[door]]\nname = \"a\"\nsequence = [1]", Some(4), Some("daemon.interfaces"), "invalid interface name `bad/name`"),
        ("[daemon]\ninterfaces = []\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("daemon.interfaces"), "empty list"),
        ("[daemon]\ninterfaces = [\"eth0\", \"eth0\"]\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("daemon.interfaces"), "listed twice"),
        ("[daemon]\nlogfile = \"/x\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("daemon.logfile"), "unknown key `logfile`: did you mean `log_file`?"),
        ("[daemon]\nstate_dir = \"\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("daemon.state_dir"), "empty path"),
        ("[daemon]\npid_file = 1\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("daemon.pid_file"), "expected a path"),
        ("[daemon.max_sources]\n[[door]]\nname = \"a\"\nsequence = [1]", Some(1), Some("daemon.max_sources"), "must be a value"),
        ("[daemon]\n[daemon]\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("daemon"), "given twice"),
        ("daemon = 5\n[[door]]\nname = \"a\"\nsequence = [1]", Some(1), Some("daemon"), "expected a table, written [daemon]"),
        // top level
        ("[door]\nname = \"a\"\nsequence = [1]", Some(1), Some("door"), "each written [[door]]"),
        ("door = [5]", Some(1), Some("door"), "expected a table, written [[door]]"),
        ("[[doors]]\nname = \"a\"", Some(1), Some("doors"), "did you mean `door`?"),
        ("# only a comment\n", None, Some("door"), "no doors"),
        // syntax errors: no key
        ("[[door]]\nname = \"a\"\nsequence = [1,\n 2,\n x]", Some(5), None, "invalid array"),
        ("[[door]]\nname = \"a\nsequence = [1]", Some(2), None, "invalid basic string"),
        // door names
        ("[[door]]\nname = \"a\"\nsequence = [1]\n\n[[door]]\nsequence = [2]", Some(5), Some("door[1].name"), "has no name"),
        ("[[door]]\nname = \"\"\nsequence = [1]", Some(2), Some("door[0].name"), "expected 1 to 127 characters"),
        ("[[door]]\nname = \"a\\tb\"\nsequence = [1]", Some(2), Some("door[0].name"), "control character"),
        ("[[door]]\nsequence = [1]\nname = 5", Some(3), Some("door[0].name"), "found an integer"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\n[[door]]\nname = \"a\"\nsequence = [2]", Some(5), Some("door[a].name"), "already used by the door on line 2"),
        // sequences
        ("[[door]]\nname = \"a\"\n", Some(1), Some("door[a].sequence"), "has no sequence"),
        ("[[door]]\nname = \"a\"\nsequence = []", Some(3), Some("door[a].sequence"), "is generated at first boot by `knockgate firstboot --boot-dir DIR`"),
        ("[[door]]\nname = \"a\"\nsequence = \"\"", Some(3), Some("door[a].sequence"), "empty sequence: expected a list"),
        ("[[door]]\nname = \"a\"\nsequence = [\n  7000,\n  \"80000/tcp\",\n  9000,\n]", Some(5), Some("door[a].sequence"), "step 2: invalid port `80000` in `80000/tcp`: expected a whole number from 1 to 65535"),
        ("[[door]]\nname = \"a\"\nsequence = \"7000:tcp,,9000\"", Some(3), Some("door[a].sequence"), "step 2: empty step"),
        ("[[door]]\nname = \"a\"\nsequence = [\"7000/icmp\"]", Some(3), Some("door[a].sequence"), "expected tcp or udp"),
        ("[[door]]\nname = \"a\"\nsequence = [0]", Some(3), Some("door[a].sequence"), "invalid port `0`"),
        ("[[door]]\nname = \"a\"\nsequence = [-1]", Some(3), Some("door[a].sequence"), "invalid port `-1`"),
        ("[[door]]\nname = \"a\"\nsequence = \"abc\"", Some(3), Some("door[a].sequence"), "invalid port `abc`"),
        ("[[door]]\nname = \"a\"\nsequence = \"1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33\"", Some(3), Some("door[a].sequence"), "33 steps: expected 1 to 32 steps"),
        ("[[door]]\nname = \"a\"\nsequence = 7000", Some(3), Some("door[a].sequence"), "found an integer"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\none_time_sequences = \"/x\"", Some(4), Some("door[a].one_time_sequences"), "not both"),
        // timeouts
        ("[[door]]\nname = \"a\"\nsequence = [1]\nseq_timeout = 0", Some(4), Some("door[a].seq_timeout"), "0 is not a positive timeout"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\nseq_timeout = \"5\"", Some(4), Some("door[a].seq_timeout"), "write \"5s\" for seconds"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\ntimeout = \"5x\"", Some(4), Some("door[a].timeout"), "unknown unit `x`"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\nseq_timeout = 1.5", Some(4), Some("door[a].seq_timeout"), "found a decimal number"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\nseq_timeout = 5\ntimeout = 6", Some(5), Some("door[a].timeout"), "alias of `seq_timeout`"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\nstart_command = \"x\"\nstop_command = \"y\"\ncmd_timeout = \"0s\"", Some(6), Some("door[a].cmd_timeout"), "zero is not allowed"),
        // flags, target
        ("[[door]]\nname = \"a\"\nsequence = [1]\ntcp_flags = \"syn,ecn\"", Some(4), Some("door[a].tcp_flags"), "unknown TCP flag `ecn`"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\nTCPFlags = \"syn\"", Some(4), Some("door[a].TCPFlags"), "did you mean `tcp_flags`?"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\ntarget = \"router.lan\"", Some(4), Some("door[a].target"), "is not an IP address"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\ntarget = 1979-05-27", Some(4), Some("door[a].target"), "found a date"),
        // commands
        ("[[door]]\nname = \"a\"\nsequence = [1]\nstart_command = \"\"", Some(4), Some("door[a].start_command"), "empty command"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\nstop_command = \"  \"", Some(4), Some("door[a].stop_command"), "empty command"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\ncommand = \"echo 'x\"", Some(4), Some("door[a].command"), "check the quotes"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\nstart_command = [\"ls\"]", Some(4), Some("door[a].start_command"), "found an array"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\nstop_command = \"x\"", Some(4), Some("door[a].stop_command"), "needs a start_command"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\nstart_command_6 = \"\"\nstop_command = \"x\"", Some(5), Some("door[a].stop_command"), "needs a start_command"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\nstop_command_6 = \"x\"", Some(4), Some("door[a].stop_command_6"), "needs a start command for IPv6"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\ncommand = \"a\"\nstart_command = \"b\"", Some(4), Some("door[a].command"), "alias of `start_command`"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\ncommand_6 = \"a\"\nstart_command_6 = \"b\"", Some(4), Some("door[a].command_6"), "alias of `start_command_6`"),
        // unknown and duplicate keys inside doors, named after the door
        ("[[door]]\nname = \"a\"\nsequence = [1]\n\n[[door]]\nname = \"b\"\nsequence = [2]\nbogus = 1", Some(8), Some("door[b].bogus"), "unknown key `bogus`"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\n[door.nme]", Some(4), Some("door[a].nme"), "did you mean `name`?"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\n[[door]]\nname = \"b\"\nsequence = [1]\nsequence = [2]", Some(7), Some("door[b].sequence"), "given twice"),
        ("[[door]]\nsequnce = [1]\nname = \"a\"", Some(2), Some("door[a].sequnce"), "did you mean `sequence`?"),
        ("door = [{ name = \"a\", sequence = [1] },\n  { name = \"b\", squence = [1] }]", Some(2), Some("door[b].squence"), "did you mean `sequence`?"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\nSequence = [2]", Some(4), Some("door[a].Sequence"), "did you mean `sequence`?"),
        // [firewall] and firewall doors.
        ("[firewall]\nbackend = \"nft\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("firewall.backend"), "expected \"iptables\" or \"none\""),
        ("[firewall]\nchain = \"INPUT\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("firewall.chain"), "not a built-in chain"),
        ("[firewall]\nchain = \"my chain\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("firewall.chain"), "letters, digits"),
        ("[firewall]\njump_position = 0\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("firewall.jump_position"), "from 1"),
        ("[firewall]\ndaily_flush = \"25:00\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("firewall.daily_flush"), "HH:MM"),
        ("[firewall]\ndailyflush = \"04:00\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("firewall.dailyflush"), "did you mean `daily_flush`"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\nfirewall = { ports = [\"22/icmp\"] }", Some(4), Some("door[a].firewall.ports"), "expected tcp or udp"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\nfirewall = { ports = [\n  \"22\",\n  \"9-1/udp\",\n] }", Some(6), Some("door[a].firewall.ports"), "runs backwards"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\nfirewall = { duration = \"1h\" }", Some(4), Some("door[a].firewall.ports"), "needs ports"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\nfirewall = { ports = \"all\", duration = \"0s\" }", Some(4), Some("door[a].firewall.duration"), ""),
        ("[[door]]\nname = \"a\"\nsequence = [1]\nfirewall = { ports = \"all\", for = \"1h\" }", Some(4), Some("door[a].firewall.for"), "unknown key `for`"),
        ("[firewall]\ndaily_flush = \"off\"\n[[door]]\nname = \"a\"\nsequence = [1]\nfirewall = { ports = [22] }", Some(6), Some("door[a].firewall.duration"), "would never end"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\nclose = \"b\"", Some(4), Some("door[a].close"), "no door is named `b`"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\nclose = \"a\"", Some(4), Some("door[a].close"), "cannot close itself"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\n[[door]]\nname = \"b\"\nsequence = [2]\nclose = \"a\"", Some(7), Some("door[b].close"), "no firewall action"),
        // [status], [gpio], relays, LED, door gpio and wake_on_lan.
        ("[status]\nlisten = \"8080\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("status.listen"), "not an address and port"),
        ("[status]\nenabled = \"yes\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("status.enabled"), "expected true or false"),
        ("[status]\nallowed_hosts = \"gw.lan\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("status.allowed_hosts"), "a list of host names"),
        ("[status]\nport = 80\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("status.port"), "unknown key `port`"),
        ("[gpio]\nbackend = \"wiringpi\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("gpio.backend"), "\"simulated\""),
        ("[gpio]\nchip = \"/dev/mem\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("gpio.chip"), "is not a GPIO chip"),
        ("[gpio]\nbackend = \"rppal\"\nchip = \"gpiochip0\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(3), Some("gpio.chip"), "character device backend"),
        ("[gpio]\nchips = \"gpiochip0\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("gpio.chips"), "did you mean `chip`"),
        ("[led]\npin = 5\ncolour = 1\n[[door]]\nname = \"a\"\nsequence = [1]", Some(3), Some("led.colour"), "unknown key `colour`"),
        ("[[relay]]\nname = \"z1\"\npin = 40\n[[door]]\nname = \"a\"\nsequence = [1]", Some(3), Some("relay[z1].pin"), "0 to 27"),
        ("[[relay]]\nname = \"z1\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(1), Some("relay[z1].pin"), "has no pin"),
        ("[[relay]]\nname = \"z1\"\npin = 17\nmax_on = \"15m\"\n[[relay]]\nname = \"z2\"\npin = 17\n[[door]]\nname = \"a\"\nsequence = [1]", Some(7), Some("relay[z2].pin"), "already used by relay `z1`"),
        ("[[relay]]\nname = \"z1\"\npin = 17\nmax_on = \"15m\"\n[[relay]]\nname = \"z1\"\npin = 18\n[[door]]\nname = \"a\"\nsequence = [1]", Some(6), Some("relay[1].name"), "used twice"),
        ("[[relay]]\nname = \"z1\"\npin = 17\nmax_on = \"15m\"\n[led]\npin = 17\n[[door]]\nname = \"a\"\nsequence = [1]", Some(6), Some("led.pin"), "already used"),
        ("[[relay]]\nname = \"z1\"\npin = 17\nmaxon = \"1m\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(4), Some("relay.maxon"), "did you mean `max_on`"),
        ("[[relay]]\nname = \"z1\"\npin = 17\nsafe_state = \"open\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(4), Some("relay[z1].safe_state"), "expected \"off\" or \"on\""),
        ("[[relay]]\nname = \"z1\"\npin = 17\nmax_on = \"15m\"\n[[door]]\nname = \"a\"\nsequence = [1]\ngpio = { relay = \"z9\", mode = \"on\" }", Some(8), Some("door[a].gpio.relay"), "no relay is named `z9`"),
        ("[[relay]]\nname = \"z1\"\npin = 17\nmax_on = \"15m\"\n[[door]]\nname = \"a\"\nsequence = [1]\ngpio = { relay = \"z1\", mode = \"pulse\" }", Some(8), Some("door[a].gpio.mode"), "needs a duration"),
        ("[[relay]]\nname = \"z1\"\npin = 17\nmax_on = \"15m\"\n[[door]]\nname = \"a\"\nsequence = [1]\ngpio = { relay = \"z1\", mode = \"blink\" }", Some(8), Some("door[a].gpio.mode"), "unknown mode `blink`"),
        ("[[relay]]\nname = \"z1\"\npin = 17\nmax_on = \"15m\"\n[[door]]\nname = \"a\"\nsequence = [1]\ngpio = { relay = \"z1\", mode = \"on\", duration = \"1s\" }", Some(8), Some("door[a].gpio.mode"), "takes no duration"),
        ("[[relay]]\nname = \"z1\"\npin = 17\nmax_on = \"15m\"\n[[door]]\nname = \"a\"\nsequence = [1]\ngpio = { relay = \"z1\", mode = \"pulse\", duration = \"1h\" }", Some(8), Some("door[a].gpio.duration"), "longer than relay `z1`'s max_on"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\nwake_on_lan = { mac = \"00:11:22:33:44\" }", Some(4), Some("door[a].wake_on_lan.mac"), "not six hex bytes"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\nwake_on_lan = { interface = \"eth0\" }", Some(4), Some("door[a].wake_on_lan.mac"), "give the MAC address"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\nwake_on_lan = { mac = \"00:11:22:33:44:55\", broadcast = \"ff02::1\" }", Some(4), Some("door[a].wake_on_lan.broadcast"), "IPv4 broadcast"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\nwake_on_lan = { mac = \"00:11:22:33:44:55\", port = 0 }", Some(4), Some("door[a].wake_on_lan.port"), "from 1 to 65535"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\nwake_on_lan = { mac = \"00:11:22:33:44:55\", passwd = \"x\" }", Some(4), Some("door[a].wake_on_lan.passwd"), "did you mean `password`"),
        ("[daemon]\nmax_failures = -1\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("daemon.max_failures"), "0 turns the limit off"),
        ("[daemon]\nban = \"forever\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("daemon.ban"), ""),
        ("[[door]]\nname = \"a\"\nhmac = { steps = 4 }", Some(3), Some("door[a].hmac.secret_file"), "name the secret"),
        ("[[door]]\nname = \"a\"\nhmac = { secret_file = \"/s\", steps = 9 }", Some(3), Some("door[a].hmac.steps"), "from 2 to 8"),
        ("[[door]]\nname = \"a\"\nhmac = { secret_file = \"/s\", ports = \"100-110\" }", Some(3), Some("door[a].hmac.ports"), "wide enough"),
        ("[[door]]\nname = \"a\"\nhmac = { secret_file = \"/s\", window = \"2s\" }", Some(3), Some("door[a].hmac.window"), "at least 5"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\nhmac = { secret_file = \"/s\" }", Some(4), Some("door[a].hmac"), "give one of"),
        ("[[door]]\nname = \"a\"\nhmac = { secretfile = \"/s\" }", Some(3), Some("door[a].hmac.secretfile"), "did you mean `secret_file`"),
        ("[daemon]\nuser = \"root\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("daemon.user"), "not root"),
        ("[daemon]\nuser = \"a b\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("daemon.user"), "not an unprivileged user name"),
    ];

    #[test]
    fn firewall_table_and_door_actions() {
        let c = ok(r#"
[firewall]
chain = "GATE"
jump_position = 3
daily_flush = "03:30:15"

[[door]]
name = "ssh"
sequence = [1, 2]
firewall = { ports = ["22/tcp", "5060-5069/udp", "22"], duration = "1h" }

[[door]]
name = "all"
sequence = [3, 4]
[door.firewall]
ports = "all"

[[door]]
name = "closeSSH"
sequence = [2, 1]
close = "ssh"
"#);
        assert_eq!(
            c.firewall,
            FirewallConfig {
                backend: Backend::Iptables,
                chain: "GATE".into(),
                jump_position: 3,
                daily_flush: Some(LocalTime {
                    hour: 3,
                    minute: 30,
                    second: 15
                }),
            }
        );
        assert_eq!(
            c.doors[0].firewall,
            Some(FirewallAction {
                ports: Ports::Some(vec![
                    PortRange::parse("22/tcp").unwrap(),
                    PortRange::parse("5060-5069/udp").unwrap()
                ]),
                duration: Some(Duration::from_secs(3600)),
            })
        );
        assert_eq!(
            c.doors[1].firewall,
            Some(FirewallAction {
                ports: Ports::All,
                duration: None
            })
        );
        assert_eq!(c.doors[2].close.as_deref(), Some("ssh"));
        assert!(c.uses_firewall());
        assert!(!builtin().uses_firewall());
        assert_eq!(builtin().firewall, FirewallConfig::default());
        assert_eq!(
            parse_local_time("4:05").unwrap(),
            LocalTime {
                hour: 4,
                minute: 5,
                second: 0
            }
        );
        for bad in [
            "24:00",
            "4",
            "04:60",
            "04:00:60",
            "a:b",
            "04:00:00:00",
            "-1:00",
        ] {
            assert!(parse_local_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn status_gpio_relays_led_and_door_actions() {
        let c = ok(r#"
[status]
listen = "[fd00::1]:80"
allowed_hosts = ["Gateway.lan"]

[gpio]
backend = "simulated"

[[relay]]
name = "zone1"
pin = 17
active_low = true
max_on = "15m"
group = "sprinklers"

[[relay]]
name = "garage"
pin = 27
safe_state = "off"

[led]
pin = 25

[[door]]
name = "water"
sequence = [1, 2]
gpio = { relay = "zone1", mode = "pulse", duration = "10m" }

[[door]]
name = "garage"
sequence = [3, 4]
gpio = { relay = "garage", mode = "toggle" }
wake_on_lan = { mac = "00-11-22-aa-BB-cc", interface = "eth0", password = "01:02:03:04:05:06", rate_limit = "1m" }
"#);
        assert_eq!(
            c.status,
            StatusConfig {
                enabled: true,
                listen: "[fd00::1]:80".parse().unwrap(),
                allowed_hosts: vec!["gateway.lan".into()],
            }
        );
        assert_eq!(c.gpio.backend, GpioBackend::Simulated);
        assert_eq!(
            c.gpio.relays[0],
            RelayConfig {
                name: "zone1".into(),
                pin: 17,
                active_low: true,
                max_on: Duration::from_secs(900),
                group: Some("sprinklers".into()),
                safe_on: false,
            }
        );
        assert_eq!(c.gpio.relays[1].max_on, DEFAULT_MAX_ON);
        assert_eq!(c.gpio.chip, None);
        let cdev = ok("[gpio]\nbackend = \"cdev\"\nchip = \"gpiochip2\"\n[[door]]\nname = \"a\"\nsequence = [1]");
        assert_eq!(cdev.gpio.backend, GpioBackend::Cdev);
        assert_eq!(cdev.gpio.chip.as_deref(), Some("gpiochip2"));
        let auto = ok("[[door]]\nname = \"a\"\nsequence = [1]");
        assert_eq!(auto.gpio.backend, GpioBackend::Auto);
        assert_eq!(
            c.gpio.led,
            Some(LedConfig {
                pin: 25,
                active_low: false
            })
        );
        assert_eq!(
            c.doors[0].gpio,
            Some(GpioAction {
                relay: "zone1".into(),
                mode: RelayMode::Pulse(Duration::from_secs(600))
            })
        );
        assert_eq!(c.doors[1].gpio.as_ref().unwrap().mode, RelayMode::Toggle);
        assert_eq!(
            c.doors[1].wake_on_lan,
            Some(WakeAction {
                mac: [0x00, 0x11, 0x22, 0xaa, 0xbb, 0xcc],
                interface: Some("eth0".into()),
                port: 9,
                broadcast: "255.255.255.255".parse().unwrap(),
                password: Some([1, 2, 3, 4, 5, 6]),
                rate_limit: Duration::from_secs(60),
            })
        );
        // Defaults: status on loopback, GPIO simulated off a Pi.
        let d = builtin();
        assert_eq!(d.status.listen.to_string(), DEFAULT_STATUS_LISTEN);
        assert!(d.status.enabled && d.gpio.relays.is_empty() && d.gpio.led.is_none());
        assert_eq!(parse_mac("0:11:22:33:44:55"), None);
    }

    #[test]
    fn invalid_configs_name_line_key_and_remedy() {
        assert!(INVALID.len() >= 25);
        for (text, line, key, fragment) in INVALID {
            let e = match parse(text, "t.toml") {
                Ok(_) => panic!("accepted:\n{text}"),
                Err(e) => e,
            };
            assert_eq!(e.file, "t.toml");
            assert_eq!(
                (e.line, e.key.as_deref()),
                (*line, *key),
                "\n{text}\n=> {e}"
            );
            assert!(
                e.message.contains(fragment),
                "\n{text}\n=> {e}\nwanted: {fragment}"
            );
        }
    }

    #[test]
    fn unfilled_sequences_are_for_firstboot_only() {
        let text = "[[door]]\nname = \"a\"\nsequence = [7000]\n\n[[door]]\nname = \"ssh\"\nsequence = [  ]  # at first boot\nfirewall = { ports = [\"22/tcp\"], duration = \"30s\" }\n\n[[door]]\nname = \"b\"\nsequence = []\nclose = \"ssh\"\n";
        let e = parse(text, "k.toml").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(7), Some("door[ssh].sequence"))
        );
        assert!(e.message.contains("knockgate firstboot"), "{e}");
        let (cfg, unfilled) = parse_unfilled(text, "k.toml").unwrap();
        assert_eq!(cfg.doors.len(), 3);
        assert_eq!(unfilled.iter().map(|u| u.door).collect::<Vec<_>>(), [1, 2]);
        for u in &unfilled {
            assert!(cfg.doors[u.door].sequence.is_empty());
        }
        assert_eq!(&text[unfilled[0].value.clone()], "[  ]");
        assert_eq!(&text[unfilled[1].value.clone()], "[]");
        // Every other rule still holds, and an empty string is no placeholder.
        let bad = "[[door]]\nname = \"a\"\nsequence = []\nseq_timeout = \"xyz\"\n";
        let e = parse_unfilled(bad, "k.toml").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("door[a].seq_timeout"));
        let e = parse_unfilled("[[door]]\nname = \"a\"\nsequence = \"\"\n", "k.toml").unwrap_err();
        assert!(
            e.message.starts_with("empty sequence: expected a list"),
            "{e}"
        );
        let e = parse_unfilled(
            "[[door]]\nname = \"a\"\nsequence = []\none_time_sequences = \"/x\"\n",
            "k.toml",
        )
        .unwrap_err();
        assert!(e.message.contains("not both"), "{e}");
    }

    #[test]
    fn error_display() {
        let e = parse(
            "[daemon]\nmax_sources = 0\n",
            "/etc/knockgate/knockgate.toml",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/knockgate/knockgate.toml:2: key `daemon.max_sources`: 0 is out of range: expected a whole number from 1 to 10000000"
        );
    }

    #[test]
    fn load_reads_a_file_and_names_it_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("knockgate.toml");
        std::fs::write(&path, door("seq_timeout = \"2s\"")).unwrap();
        let c = load(&path).unwrap();
        assert_eq!(c.origin, path.display().to_string());
        assert_eq!(c.doors[0].seq_timeout, Duration::from_secs(2));

        let missing = dir.path().join("missing.toml");
        let e = load(&missing).unwrap_err();
        assert_eq!(e.file, missing.display().to_string());
        assert_eq!((e.line, e.key.as_deref()), (None, None));
        assert!(e.message.contains("No such file or directory"), "{e}");

        std::fs::write(&path, "[[door]]\nname = \"a\"\nsequence = [1]\nbogus = 1\n").unwrap();
        let e = load(&path).unwrap_err();
        assert_eq!(e.file, path.display().to_string());
        assert_eq!(e.line, Some(4));
    }

    /// Every prefix of the example config either parses or fails with a line inside the text:
    /// never a panic, never a line past the end.
    #[test]
    fn truncated_configs_fail_cleanly() {
        let text = include_str!("../../examples/knockgate.toml");
        let lines = text.lines().count();
        for (cut, _) in text.char_indices().step_by(3) {
            if let Err(e) = parse(&text[..cut], "t.toml") {
                assert!(
                    e.line.is_none_or(|l| (1..=lines).contains(&l)),
                    "{cut}: {e}"
                );
            }
        }
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("tcpflags", DOOR_KEYS), Some("tcp_flags"));
        assert_eq!(suggest("Start_Command", DOOR_KEYS), Some("start_command"));
        assert_eq!(suggest("interface", DAEMON_KEYS), Some("interfaces"));
        assert_eq!(suggest("pidfile", DAEMON_KEYS), Some("pid_file"));
        assert_eq!(suggest("frobnicate", DOOR_KEYS), None);
    }
}
