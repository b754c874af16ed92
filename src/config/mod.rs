//! knockgate's configuration: the validated [`Config`] the daemon runs on.
//!
//! The TOML file is read into raw serde structs (`deny_unknown_fields`), then validated into
//! these types; after validation nothing in a `Config` can be out of range (ports are 1..=65535,
//! sequences have 1 to 32 steps, durations are positive, command templates split cleanly).
//! Every error names the file, the line and the key, and says what would be valid.
//!
//! [`parse`] validates a text, [`load`] a file, [`builtin`] is the harmless default used when
//! [`DEFAULT_CONFIG_PATH`] is missing. `examples/knockgate.toml` documents every key.
//!
//! Here: the validated types and the entry points. [`raw`] is the file as the toml crate reads
//! it (and each table's keys), [`validate`] turns it into these types one table at a time
//! ([`door`] for `[[door]]`), [`values`] parses durations, MACs, times and names, and
//! [`explain`] turns positions and the toml crate's errors into `file:line: key: message`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::knock::{FlagRule, KnockSpec};
use crate::knock::{PortRange, Ports};

mod door;
mod explain;
mod raw;
mod validate;
mod values;

use raw::{PortItem, TextOrList};
use validate::Cx;
pub(crate) use values::{check_door_name, check_interface_name};
pub use values::{parse_duration, parse_local_time, parse_mac};

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
    /// `[mqtt]`: Home Assistant over MQTT, when the table is there.
    pub mqtt: Option<MqttConfig>,
    pub doors: Vec<Door>,
}

/// The default port of `mqtt://` and of `mqtts://`.
pub const MQTT_PORT: u16 = 1883;
pub const MQTTS_PORT: u16 = 8883;
/// The CA bundle an `mqtts://` broker is checked against without `ca_file` (Debian's
/// ca-certificates).
pub const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// `[mqtt]`: the broker and the topics (Home Assistant's MQTT discovery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttConfig {
    /// Over TLS (`mqtts://`).
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Default: `knockgate-<hostname>`.
    pub client_id: Option<String>,
    pub username: Option<String>,
    /// The password, alone in a file (mode 600).
    pub password_file: Option<std::path::PathBuf>,
    /// The CA certificates (PEM) the broker's certificate is checked against (`mqtts://`).
    pub ca_file: Option<std::path::PathBuf>,
    pub keep_alive: Duration,
    /// Default: `knockgate/<hostname>`.
    pub base_topic: Option<String>,
    /// Home Assistant's discovery prefix (default `homeassistant`).
    pub discovery_prefix: String,
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
    /// Home Assistant may switch it over MQTT (`mqtt_command`; opt-in, default none).
    pub mqtt_command: Option<RelayCommand>,
}

/// What Home Assistant may do with a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayCommand {
    /// A switch: on and off (within `max_on` and the group, as a door's action).
    Switch,
    /// A button: a pulse of this length.
    Pulse(Duration),
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
    /// Home Assistant may send it too (a button over MQTT; opt-in, default false).
    pub mqtt_command: bool,
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
    /// nftables: knockgate's sets and rules in the owner's chain (`nft_chain`).
    Nftables,
    /// No firewall changes at all (as `--dry-run` does).
    None,
}

/// An nftables address family that has an input hook and holds knockgate's sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NftFamily {
    /// IPv4 and IPv6 (`table inet ...`).
    Inet,
    /// IPv4 only.
    Ip,
    /// IPv6 only.
    Ip6,
}

impl NftFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            NftFamily::Inet => "inet",
            NftFamily::Ip => "ip",
            NftFamily::Ip6 => "ip6",
        }
    }
}

/// `[firewall] nft_chain`: the owner's base chain where the drop is (`inet filter input`,
/// the chain of Debian's stock `/etc/nftables.conf`), into which the nftables backend puts
/// its rules; its sets go into the same table (a rule can only name a set of its own table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftChain {
    pub family: NftFamily,
    pub table: String,
    pub chain: String,
}

impl Default for NftChain {
    fn default() -> Self {
        NftChain {
            family: NftFamily::Inet,
            table: "filter".into(),
            chain: "input".into(),
        }
    }
}

impl std::fmt::Display for NftChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.family.as_str(), self.table, self.chain)
    }
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
    /// The nftables backend's chain (default `inet filter input`).
    pub nft_chain: NftChain,
}

impl FirewallConfig {
    /// The nf_tables table whose change notifications concern the doors: `filter` (where
    /// iptables-nft keeps the chain) or the nftables backend's table.
    pub fn watched_table(&self) -> &str {
        match self.backend {
            Backend::Nftables => &self.nft_chain.table,
            _ => "filter",
        }
    }
}

impl Default for FirewallConfig {
    fn default() -> Self {
        FirewallConfig {
            backend: Backend::Iptables,
            chain: DEFAULT_CHAIN.to_string(),
            jump_position: 1,
            daily_flush: Some(DEFAULT_DAILY_FLUSH),
            nft_chain: NftChain::default(),
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
    /// Opened by one fwknop SPA datagram (instead of a sequence).
    pub spa: Option<SpaConfig>,
}

/// fwknop's default SPA port (UDP): a door's `spa.port` unless it says otherwise.
pub const SPA_DEFAULT_PORT: u16 = 62201;
/// fwknopd's default age limit, either way (`MAX_SPA_PACKET_AGE`), in seconds: `spa.max_age`.
pub const SPA_DEFAULT_MAX_AGE: u64 = 120;

/// A door's `spa = { ... }`: fwknop's Single Packet Authorization ([`crate::doors::spa`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaConfig {
    /// The Rijndael key and the HMAC key, base64, one per file (mode 600).
    pub key_file: PathBuf,
    pub hmac_key_file: PathBuf,
    /// The UDP port the datagram is sent to (fwknop's 62201).
    pub port: u16,
    /// Age or clock skew allowed either way.
    pub max_age: Duration,
    /// What a request may ask for; the firewall opens what it asks for.
    pub allow: Vec<PortRange>,
    /// The address in the message must be the datagram's source (0.0.0.0 means the source).
    pub require_source_match: bool,
}

/// How an HMAC door's sequence is derived ([`crate::doors::hmacseq`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HmacParams {
    /// Steps in the sequence (2 to 8).
    pub steps: usize,
    /// Ports are drawn from this range (inclusive).
    pub first: u16,
    pub last: u16,
    /// Window length in seconds (30 by default, as TOTP).
    pub window: u64,
    /// The derivation's version: 1 (the default, what existing clients compute) or 2 (never
    /// a port a browser refuses: what a knock page needs).
    pub version: u8,
}

impl Default for HmacParams {
    fn default() -> Self {
        HmacParams {
            steps: 4,
            first: 10_000,
            last: 60_000,
            window: 30,
            version: 1,
        }
    }
}

/// A door's `hmac = { secret_file, steps, ports, window }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HmacConfig {
    pub secret_file: PathBuf,
    pub params: HmacParams,
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

/// What a door does when it opens, as the status page and the first-boot note name it (one
/// list for both; [`crate::actions::plan`] is what does it, and a test holds them together).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoorAction {
    Firewall,
    Close,
    /// A start or stop command, for IPv4 or IPv6 knockers.
    Command,
    Gpio,
    WakeOnLan,
}

impl DoorAction {
    /// The name in the JSON API and on the page.
    pub fn as_str(self) -> &'static str {
        match self {
            DoorAction::Firewall => "firewall",
            DoorAction::Close => "close",
            DoorAction::Command => "command",
            DoorAction::Gpio => "gpio",
            DoorAction::WakeOnLan => "wake_on_lan",
        }
    }
}

impl Door {
    /// What the door does when it opens, in the page's order.
    pub fn actions(&self) -> Vec<DoorAction> {
        let commands = [false, true]
            .into_iter()
            .any(|v6| self.start_for(v6).is_some() || self.stop_for(v6).is_some());
        [
            (self.firewall.is_some(), DoorAction::Firewall),
            (self.close.is_some(), DoorAction::Close),
            (commands, DoorAction::Command),
            (self.gpio.is_some(), DoorAction::Gpio),
            (self.wake_on_lan.is_some(), DoorAction::WakeOnLan),
        ]
        .into_iter()
        .filter_map(|(on, action)| on.then_some(action))
        .collect()
    }

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
    let raw = cx.read()?;
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
    let raw = cx.read()?;
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
fn is_unfilled(v: &Spanned<TextOrList<PortItem>>) -> bool {
    matches!(v.get_ref(), TextOrList::List(items) if items.is_empty())
}

/// The error for `sequence = []` everywhere but in `knockgate firstboot`.
const UNFILLED_HELP: &str = "empty sequence: `sequence = []` is generated at first boot by `knockgate firstboot --boot-dir DIR` (DIR: the boot partition, where the sequence is written down for you); run it, or write a sequence of your own";

#[cfg(test)]
mod tests {
    use super::explain::suggest;
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
        ("[daemon]\n[daemon]\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("daemon"), "duplicate key `daemon`"),
        ("daemon = 5\n[[door]]\nname = \"a\"\nsequence = [1]", Some(1), Some("daemon"), "expected a table, written [daemon]"),
        // top level
        ("[door]\nname = \"a\"\nsequence = [1]", Some(1), Some("door"), "each written [[door]]"),
        ("door = [5]", Some(1), Some("door[0]"), "expected a table, written [[door]]"),
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
        ("[[door]]\nname = \"a\"\nsequence = [1]\n[[door]]\nname = \"b\"\nsequence = [1]\nsequence = [2]", Some(7), Some("door[b].sequence"), "duplicate key `sequence`"),
        ("[[door]]\nsequnce = [1]\nname = \"a\"", Some(2), Some("door[a].sequnce"), "did you mean `sequence`?"),
        ("door = [{ name = \"a\", sequence = [1] },\n  { name = \"b\", squence = [1] }]", Some(2), Some("door[b].squence"), "did you mean `sequence`?"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\nSequence = [2]", Some(4), Some("door[a].Sequence"), "did you mean `sequence`?"),
        // [firewall] and firewall doors.
        ("[firewall]\nbackend = \"nft\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("firewall.backend"), "expected \"iptables\", \"nftables\" or \"none\""),
        ("[firewall]\nbackend = \"nftables\"\nnft_chain = \"inet filter\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(3), Some("firewall.nft_chain"), "expected FAMILY TABLE CHAIN"),
        ("[[relay]]\nname = \"g\"\npin = 17\nmqtt_command = \"press\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(4), Some("relay[g].mqtt_command"), "expected \"switch\", \"pulse\""),
        ("[[relay]]\nname = \"g\"\npin = 17\nmax_on = \"1s\"\nmqtt_command = \"pulse 5s\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(5), Some("relay[g].mqtt_command"), "longer than max_on"),
        ("[[door]]\nname = \"a\"\nhmac = { secret_file = \"/s\", version = 3 }", Some(3), Some("door[a].hmac.version"), "expected 1"),
        ("[mqtt]\nbroker = \"http://ha.local\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("mqtt.broker"), "expected mqtt://HOST[:PORT]"),
        ("[mqtt]\nbroker = \"mqtt://ha.local:99999\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("mqtt.broker"), "not a port"),
        ("[mqtt]\nbroker = \"mqtt://\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("mqtt.broker"), "names no host"),
        ("[mqtt]\nusername = \"gate\"\n[[door]]\nname = \"a\"\nsequence = [1]", None, Some("mqtt.broker"), "needs the broker"),
        ("[mqtt]\nbroker = \"mqtt://h\"\nbase_topic = \"home/+/gate\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(3), Some("mqtt.base_topic"), "no wildcards"),
        ("[mqtt]\nbroker = \"mqtt://h\"\nkeep_alive = \"1s\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(3), Some("mqtt.keep_alive"), "expected 5s"),
        ("[mqtt]\nbroker = \"mqtt://h\"\npasword_file = \"/x\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(3), Some("mqtt.pasword_file"), "did you mean `password_file`"),
        ("[firewall]\nnft_chain = \"bridge filter input\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("firewall.nft_chain"), "expected inet, ip or ip6"),
        ("[firewall]\nnft_chain = \"inet fil;ter input\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("firewall.nft_chain"), "not a usable table name"),
        ("[firewall]\nnft_chain = \"inet filter 9input\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(2), Some("firewall.nft_chain"), "not a usable chain name"),
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
        ("[[relay]]\nname = \"z1\"\npin = 17\nmaxon = \"1m\"\n[[door]]\nname = \"a\"\nsequence = [1]", Some(4), Some("relay[z1].maxon"), "did you mean `max_on`"),
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
        ("[[door]]\nname = \"a\"\nspa = { hmac_key_file = \"/h\", allow = [\"22\"] }", Some(3), Some("door[a].spa.key_file"), "knockgate spa keygen"),
        ("[[door]]\nname = \"a\"\nspa = { key_file = \"/k\", hmac_key_file = \"/h\" }", Some(3), Some("door[a].spa.allow"), "no firewall action"),
        ("[[door]]\nname = \"a\"\nsequence = [1]\nspa = { key_file = \"/k\", hmac_key_file = \"/h\", allow = [\"22\"] }", Some(4), Some("door[a].spa"), "not a sequence"),
        ("[[door]]\nname = \"a\"\nspa = { key_file = \"/k\", hmac_key_file = \"/h\", allow = [\"icmp/1\"] }", Some(3), Some("door[a].spa.allow"), "unknown protocol"),
        ("[[door]]\nname = \"a\"\nspa = { key_file = \"/k\", hmac_key_file = \"/h\", allow = [\"22\"], max_age = \"2h\" }", Some(3), Some("door[a].spa.max_age"), "5s to 1h"),
        ("[[door]]\nname = \"a\"\nspa = { key_file = \"/k\", hmac_key_file = \"/h\", allow = [\"22\"], port = 70000 }", Some(3), Some("door[a].spa.port"), "1 to 65535"),
        ("[[door]]\nname = \"a\"\nspa = { key_file = \"/k\", hmac_key_file = \"/h\", allow = [\"22\"], maxage = \"1m\" }", Some(3), Some("door[a].spa.maxage"), "did you mean `max_age`"),
        ("[[door]]\nname = \"k\"\nsequence = [\"62201/udp\", 2]\n[[door]]\nname = \"a\"\nspa = { key_file = \"/k\", hmac_key_file = \"/h\", allow = [\"22\"] }", Some(6), Some("door[a].spa.port"), "also a knock of door `k`"),
    ];

    #[test]
    fn spa_doors() {
        let c = ok(r#"
[[door]]
name = "spa"
spa = { key_file = "/k", hmac_key_file = "/h" }
firewall = { ports = ["22/tcp", "8000-8010/udp"], duration = "1m" }

[[door]]
name = "wake"
spa = { key_file = "/k2", hmac_key_file = "/h2", port = 62000, max_age = "30s", allow = ["tcp/3389", "5900"], require_source_match = false }
start_command = "true"
"#);
        let a = c.doors[0].spa.as_ref().unwrap();
        assert!(c.doors[0].sequence.is_empty());
        assert_eq!(
            (a.port, a.max_age.as_secs(), a.require_source_match),
            (62201, 120, true)
        );
        // allow: the firewall's ports by default.
        let shown: Vec<String> = a.allow.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["22/tcp", "8000-8010/udp"]);
        let b = c.doors[1].spa.as_ref().unwrap();
        assert_eq!(
            (b.port, b.max_age.as_secs(), b.require_source_match),
            (62000, 30, false)
        );
        let shown: Vec<String> = b.allow.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["3389/tcp", "5900/tcp"]);
    }

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
                nft_chain: NftChain::default(),
            }
        );
        let m =
            ok("[mqtt]\nbroker = \"mqtts://[fd00::1]\"\n[[door]]\nname = \"a\"\nsequence = [1]\n")
                .mqtt
                .unwrap();
        assert_eq!(
            (m.tls, m.host.as_str(), m.port, m.keep_alive.as_secs()),
            (true, "fd00::1", 8883, 60)
        );
        assert_eq!(m.discovery_prefix, "homeassistant");
        let m = ok("[mqtt]\nbroker = \"mqtt://ha.lan:1884\"\nbase_topic = \"/home/gate/\"\n[[door]]\nname = \"a\"\nsequence = [1]\n").mqtt.unwrap();
        assert_eq!((m.tls, m.host.as_str(), m.port), (false, "ha.lan", 1884));
        assert_eq!(m.base_topic.as_deref(), Some("home/gate"));
        let n = ok("[firewall]\nbackend = \"nftables\"\nnft_chain = \"ip6  fw  in_put\"\n[[door]]\nname = \"a\"\nsequence = [1]\n");
        assert_eq!(n.firewall.backend, Backend::Nftables);
        assert_eq!(n.firewall.nft_chain.to_string(), "ip6 fw in_put");
        assert_eq!(n.firewall.watched_table(), "fw");
        assert_eq!(
            ok("[[door]]\nname = \"a\"\nsequence = [1]\n")
                .firewall
                .nft_chain
                .to_string(),
            "inet filter input"
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
                mqtt_command: None,
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
                mqtt_command: false,
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
        let mut wrong = Vec::new();
        for (text, line, key, fragment) in INVALID {
            let e = match parse(text, "t.toml") {
                Ok(_) => panic!("accepted:\n{text}"),
                Err(e) => e,
            };
            assert_eq!(e.file, "t.toml");
            if (e.line, e.key.as_deref()) != (*line, *key) || !e.message.contains(fragment) {
                wrong.push(format!(
                    "\n{text}\n=> {e}\nwanted: line {line:?}, key {key:?}, `{fragment}`"
                ));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
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
        const DOOR: &[&str] = &["name", "sequence", "tcp_flags", "start_command"];
        const DAEMON: &[&str] = &["interfaces", "log_file", "pid_file"];
        assert_eq!(suggest("tcpflags", DOOR), Some("tcp_flags"));
        assert_eq!(suggest("Start_Command", DOOR), Some("start_command"));
        assert_eq!(suggest("interface", DAEMON), Some("interfaces"));
        assert_eq!(suggest("pidfile", DAEMON), Some("pid_file"));
        assert_eq!(suggest("frobnicate", DOOR), None);
    }

    /// The keys a table takes come from serde's own error (the raw structs are the only list
    /// of keys): every key of a door is offered, in order.
    #[test]
    fn unknown_keys_list_what_the_table_takes() {
        let e = parse(
            "[[door]]\nname = \"a\"\nsequence = [1]\nbogus = 1\n",
            "t.toml",
        )
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("door[a].bogus"));
        assert!(
            e.message.starts_with(
                "unknown key `bogus`: expected one of `name`, `sequence`, `one_time_sequences`,"
            ),
            "{e}"
        );
        assert!(e.message.ends_with(", `hmac`, `spa`"), "{e}");
        let e = parse(
            "[gpio]\nchips = 1\n[[door]]\nname = \"a\"\nsequence = [1]\n",
            "t.toml",
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "unknown key `chips`: did you mean `chip`? (expected one of `backend`, `chip`)"
        );
        assert_eq!(
            explain::unknown_field("unknown field `x`, there are no fields"),
            Some(("x", vec![]))
        );
    }
}
