//! The config file as the toml crate reads it: one serde struct per table
//! (`deny_unknown_fields`), every leaf a [`RawValue`] with its position, so that validation
//! ([`super::validate`]) can name the line of any mistake; and each table's keys, for the "did
//! you mean" hints.

use std::fmt;

use serde::Deserialize;
use toml::Spanned;

/// The top level of the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) daemon: Option<Spanned<RawDaemon>>,
    pub(super) firewall: Option<Spanned<RawFirewall>>,
    pub(super) status: Option<Spanned<RawStatus>>,
    pub(super) gpio: Option<Spanned<RawGpio>>,
    #[serde(default)]
    pub(super) relay: Vec<Spanned<RawRelay>>,
    pub(super) led: Option<Spanned<RawLed>>,
    #[serde(default)]
    pub(super) door: Vec<Spanned<RawDoor>>,
}

/// `[firewall]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFirewall {
    pub(super) backend: Option<Spanned<RawValue>>,
    pub(super) chain: Option<Spanned<RawValue>>,
    pub(super) jump_position: Option<Spanned<RawValue>>,
    pub(super) daily_flush: Option<Spanned<RawValue>>,
}

/// `[status]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStatus {
    pub(super) enabled: Option<Spanned<RawValue>>,
    pub(super) listen: Option<Spanned<RawValue>>,
    pub(super) allowed_hosts: Option<Spanned<RawValue>>,
}

/// `[gpio]` (the relays are `[[relay]]` tables and the LED `[led]`, at the top level).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGpio {
    pub(super) backend: Option<Spanned<RawValue>>,
    pub(super) chip: Option<Spanned<RawValue>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRelay {
    pub(super) name: Option<Spanned<RawValue>>,
    pub(super) pin: Option<Spanned<RawValue>>,
    pub(super) active_low: Option<Spanned<RawValue>>,
    pub(super) max_on: Option<Spanned<RawValue>>,
    pub(super) group: Option<Spanned<RawValue>>,
    pub(super) safe_state: Option<Spanned<RawValue>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLed {
    pub(super) pin: Option<Spanned<RawValue>>,
    pub(super) active_low: Option<Spanned<RawValue>>,
}

/// A door's `gpio = { relay, mode, duration }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDoorGpio {
    pub(super) relay: Option<Spanned<RawValue>>,
    pub(super) mode: Option<Spanned<RawValue>>,
    pub(super) duration: Option<Spanned<RawValue>>,
}

/// A door's `hmac = { secret_file, steps, ports, window }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHmac {
    pub(super) secret_file: Option<Spanned<RawValue>>,
    pub(super) steps: Option<Spanned<RawValue>>,
    pub(super) ports: Option<Spanned<RawValue>>,
    pub(super) window: Option<Spanned<RawValue>>,
}

/// A door's `wake_on_lan = { mac, interface, port, broadcast, password, rate_limit }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWake {
    pub(super) mac: Option<Spanned<RawValue>>,
    pub(super) interface: Option<Spanned<RawValue>>,
    pub(super) port: Option<Spanned<RawValue>>,
    pub(super) broadcast: Option<Spanned<RawValue>>,
    pub(super) password: Option<Spanned<RawValue>>,
    pub(super) rate_limit: Option<Spanned<RawValue>>,
}

/// A door's `firewall = { ports = [...], duration = "..." }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDoorFirewall {
    pub(super) ports: Option<Spanned<RawValue>>,
    pub(super) duration: Option<Spanned<RawValue>>,
}

/// `[daemon]`. Every value is kept loose (any TOML type, with its position) and checked in
/// [`Cx::daemon`], so that every error can name its line and key and say what is valid.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    pub(super) interfaces: Option<Spanned<RawValue>>,
    pub(super) log_file: Option<Spanned<RawValue>>,
    pub(super) syslog: Option<Spanned<RawValue>>,
    pub(super) pid_file: Option<Spanned<RawValue>>,
    pub(super) state_dir: Option<Spanned<RawValue>>,
    pub(super) max_sources: Option<Spanned<RawValue>>,
    pub(super) max_failures: Option<Spanned<RawValue>>,
    pub(super) failure_window: Option<Spanned<RawValue>>,
    pub(super) ban: Option<Spanned<RawValue>>,
    pub(super) user: Option<Spanned<RawValue>>,
}

/// One `[[door]]`. Aliases are separate fields so that giving both is a clear error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDoor {
    pub(super) name: Option<Spanned<RawValue>>,
    pub(super) sequence: Option<Spanned<RawValue>>,
    pub(super) one_time_sequences: Option<Spanned<RawValue>>,
    pub(super) seq_timeout: Option<Spanned<RawValue>>,
    pub(super) timeout: Option<Spanned<RawValue>>,
    pub(super) tcp_flags: Option<Spanned<RawValue>>,
    pub(super) target: Option<Spanned<RawValue>>,
    pub(super) start_command: Option<Spanned<RawValue>>,
    pub(super) command: Option<Spanned<RawValue>>,
    pub(super) start_command_6: Option<Spanned<RawValue>>,
    pub(super) command_6: Option<Spanned<RawValue>>,
    pub(super) stop_command: Option<Spanned<RawValue>>,
    pub(super) stop_command_6: Option<Spanned<RawValue>>,
    pub(super) cmd_timeout: Option<Spanned<RawValue>>,
    pub(super) firewall: Option<Spanned<RawDoorFirewall>>,
    pub(super) close: Option<Spanned<RawValue>>,
    pub(super) gpio: Option<Spanned<RawDoorGpio>>,
    pub(super) wake_on_lan: Option<Spanned<RawWake>>,
    pub(super) hmac: Option<Spanned<RawHmac>>,
    pub(super) spa: Option<Spanned<RawSpa>>,
}

/// A door's `spa = { key_file, hmac_key_file, port, max_age, allow, require_source_match }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSpa {
    pub(super) key_file: Option<Spanned<RawValue>>,
    pub(super) hmac_key_file: Option<Spanned<RawValue>>,
    pub(super) port: Option<Spanned<RawValue>>,
    pub(super) max_age: Option<Spanned<RawValue>>,
    pub(super) allow: Option<Spanned<RawValue>>,
    pub(super) require_source_match: Option<Spanned<RawValue>>,
}

/// Any TOML value, with positions kept for the elements of arrays.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum RawValue {
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
    pub(super) fn kind(&self) -> &'static str {
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

pub(super) struct RawValueVisitor;

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
pub(super) struct Skeleton {
    #[serde(default)]
    pub(super) door: Vec<Spanned<toml::Table>>,
}

/// Keys of each table, for "did you mean" hints.
pub(super) const TOP_KEYS: &[&str] = &[
    "daemon", "firewall", "status", "gpio", "relay", "led", "door",
];
pub(super) const STATUS_KEYS: &[&str] = &["enabled", "listen", "allowed_hosts"];
pub(super) const GPIO_KEYS: &[&str] = &["backend", "chip"];
pub(super) const RELAY_KEYS: &[&str] =
    &["name", "pin", "active_low", "max_on", "group", "safe_state"];
pub(super) const LED_KEYS: &[&str] = &["pin", "active_low"];
pub(super) const DOOR_GPIO_KEYS: &[&str] = &["relay", "mode", "duration"];
pub(super) const HMAC_KEYS: &[&str] = &["secret_file", "steps", "ports", "window"];
pub(super) const SPA_KEYS: &[&str] = &[
    "key_file",
    "hmac_key_file",
    "port",
    "max_age",
    "allow",
    "require_source_match",
];
pub(super) const WAKE_KEYS: &[&str] = &[
    "mac",
    "interface",
    "port",
    "broadcast",
    "password",
    "rate_limit",
];
pub(super) const FIREWALL_KEYS: &[&str] = &["backend", "chain", "jump_position", "daily_flush"];
pub(super) const DOOR_FIREWALL_KEYS: &[&str] = &["ports", "duration"];
pub(super) const DAEMON_KEYS: &[&str] = &[
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
pub(super) const DOOR_KEYS: &[&str] = &[
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
    "spa",
];
