//! Raw tables to validated ones: one function per table (the doors in [`super::door`]), and the
//! value checks they share. Every error names the file, the line and the key.

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::explain::door_key;
use super::raw::*;
use super::values::*;
use super::*;

/// Validation context: the text (for line numbers) and its origin (for messages).
pub(super) struct Cx<'a> {
    pub(super) text: &'a str,
    pub(super) origin: &'a str,
    /// `sequence = []` is accepted (left for `knockgate firstboot`), see [`parse_unfilled`].
    pub(super) unfilled_ok: bool,
}

impl Cx<'_> {
    pub(super) fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
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
            if let (Some(spa), Some(v)) = (&door.spa, &raw_door.spa) {
                let knocked = doors.iter().find(|o| {
                    o.sequence
                        .iter()
                        .any(|k| k.proto == crate::knock::Proto::Udp && k.port == spa.port)
                });
                if let Some(o) = knocked {
                    return Err(self.err(
                        v,
                        &format!("{d}.spa.port"),
                        format!(
                            "UDP port {} is also a knock of door `{}`: an SPA port takes only SPA packets, choose another (fwknop's default is 62201)",
                            spa.port, o.name
                        ),
                    ));
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
        let mqtt = match &raw.mqtt {
            Some(m) => Some(self.mqtt(m.get_ref())?),
            None => None,
        };
        Ok(Config {
            origin: self.origin.to_string(),
            daemon,
            firewall,
            status,
            gpio,
            mqtt,
            doors,
        })
    }

    /// An integer in `range`; otherwise `EXPECTED, found N`.
    pub(super) fn integer(
        &self,
        v: &Spanned<Int>,
        key: &str,
        range: std::ops::RangeInclusive<i64>,
        expected: &str,
    ) -> Result<i64, ConfigError> {
        let n = v.get_ref().0;
        if range.contains(&n) {
            Ok(n)
        } else {
            Err(self.err(v, key, format!("{expected}, found {n}")))
        }
    }

    /// A BCM GPIO pin number.
    pub(super) fn pin(&self, v: &Spanned<Int>, key: &str) -> Result<u8, ConfigError> {
        let n = self.integer(
            v,
            key,
            0..=27,
            "expected a BCM GPIO number from 0 to 27 (the GPIO number, not the header pin)",
        )?;
        Ok(u8::try_from(n).expect("in range"))
    }

    pub(super) fn mqtt(&self, raw: &RawMqtt) -> Result<super::MqttConfig, ConfigError> {
        let Some(v) = &raw.broker else {
            return Err(ConfigError {
                file: self.origin.to_string(),
                line: None,
                key: Some("mqtt.broker".into()),
                message: "[mqtt] needs the broker: broker = \"mqtt://homeassistant.local:1883\""
                    .into(),
            });
        };
        let s = v.get_ref().as_str().trim();
        let (tls, rest) = if let Some(r) = s.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("mqtt://") {
            (false, r)
        } else {
            return Err(self.err(
                v,
                "mqtt.broker",
                format!(
                    "`{s}` is not a broker: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"
                ),
            ));
        };
        let rest = rest.trim_end_matches('/');
        let default = if tls {
            super::MQTTS_PORT
        } else {
            super::MQTT_PORT
        };
        // `[v6]:port`, `[v6]`, `host:port`, `host` (a bare IPv6 address has several colons).
        let (host, port) = match rest.strip_prefix('[').and_then(|r| r.split_once(']')) {
            Some((h, "")) => (h, None),
            Some((h, p)) => (h, Some(p.strip_prefix(':').unwrap_or(p))),
            None => match rest.split_once(':') {
                Some((h, p)) if !p.contains(':') => (h, Some(p)),
                _ => (rest, None),
            },
        };
        let port = match port {
            None => default,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => {
                    return Err(self.err(
                        v,
                        "mqtt.broker",
                        format!("`{p}` is not a port (1 to 65535)"),
                    ))
                }
            },
        };
        if host.is_empty() || host.contains(['/', '@', ' ', '?', '#']) {
            return Err(self.err(
                v,
                "mqtt.broker",
                format!("`{s}` names no host: expected e.g. mqtt://192.168.1.10:1883"),
            ));
        }
        let topic = |v: &Spanned<Text>, key: &str| -> Result<String, ConfigError> {
            let t = v.get_ref().as_str().trim_matches('/');
            if t.is_empty() || t.contains(['+', '#', '\0']) || t.contains("//") {
                return Err(self.err(
                    v,
                    key,
                    format!("`{t}` is not a topic: no wildcards (+, #), no empty levels"),
                ));
            }
            Ok(t.to_string())
        };
        let word = |v: &Spanned<Text>, key: &str| -> Result<String, ConfigError> {
            let t = v.get_ref().as_str();
            if t.is_empty() || t.len() > 64 || t.contains(char::is_whitespace) {
                return Err(self.err(
                    v,
                    key,
                    format!("`{t}` is not usable: 1 to 64 characters, no spaces"),
                ));
            }
            Ok(t.to_string())
        };
        let keep_alive = match &raw.keep_alive {
            Some(k) => {
                let d = self.timeout(k, "mqtt.keep_alive")?;
                if !(Duration::from_secs(5)..=Duration::from_secs(65535)).contains(&d) {
                    return Err(self.err(
                        k,
                        "mqtt.keep_alive",
                        "expected 5s to 18h (MQTT's limit is 65535 seconds)",
                    ));
                }
                d
            }
            None => Duration::from_secs(60),
        };
        Ok(super::MqttConfig {
            tls,
            host: host.to_string(),
            port,
            client_id: raw
                .client_id
                .as_ref()
                .map(|v| word(v, "mqtt.client_id"))
                .transpose()?,
            username: raw
                .username
                .as_ref()
                .map(|v| word(v, "mqtt.username"))
                .transpose()?,
            password_file: raw
                .password_file
                .as_ref()
                .map(|v| self.path(v, "mqtt.password_file"))
                .transpose()?,
            ca_file: raw
                .ca_file
                .as_ref()
                .map(|v| self.path(v, "mqtt.ca_file"))
                .transpose()?,
            keep_alive,
            base_topic: raw
                .base_topic
                .as_ref()
                .map(|v| topic(v, "mqtt.base_topic"))
                .transpose()?,
            discovery_prefix: match &raw.discovery_prefix {
                Some(v) => topic(v, "mqtt.discovery_prefix")?,
                None => "homeassistant".into(),
            },
        })
    }

    pub(super) fn status(&self, raw: &RawStatus) -> Result<StatusConfig, ConfigError> {
        let mut st = StatusConfig::default();
        if let Some(v) = &raw.enabled {
            st.enabled = v.get_ref().0;
        }
        if let Some(v) = &raw.listen {
            let s = v.get_ref().as_str();
            st.listen = s.trim().parse().map_err(|_| {
                self.err(
                    v,
                    "status.listen",
                    format!("`{s}` is not an address and port: expected e.g. \"192.168.1.1:8080\" or \"[fd00::1]:8080\""),
                )
            })?;
        }
        if let Some(v) = &raw.allowed_hosts {
            let TextOrList::List(items) = v.get_ref() else {
                return Err(self.err(
                    v,
                    "status.allowed_hosts",
                    "expected a list of host names such as [\"gateway.lan\"], found a string",
                ));
            };
            for item in items {
                let h = item.get_ref().as_str();
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

    pub(super) fn gpio(&self, top: &RawConfig) -> Result<GpioConfig, ConfigError> {
        let mut g = GpioConfig::default();
        let raw_gpio = top.gpio.as_ref().map(|gp| gp.get_ref());
        if let Some(v) = raw_gpio.and_then(|gp| gp.backend.as_ref()) {
            let s = v.get_ref().as_str();
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
            let s = v.get_ref().as_str();
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
            let name = name_v.get_ref().as_str().to_string();
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
            let active_low = rr.active_low.as_ref().is_some_and(|v| v.get_ref().0);
            let max_on = rr
                .max_on
                .as_ref()
                .map(|v| self.timeout(v, &key("max_on")))
                .transpose()?
                .unwrap_or(DEFAULT_MAX_ON);
            let group = rr.group.as_ref().map(|v| v.get_ref().0.clone());
            let safe_on = match &rr.safe_state {
                None => false,
                Some(v) => match v.get_ref().as_str() {
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
            let mqtt_command = match &rr.mqtt_command {
                None => None,
                Some(v) => {
                    let s = v.get_ref().as_str().trim();
                    let mut words = s.split_whitespace();
                    let command = match (words.next(), words.next(), words.next()) {
                        (Some("switch"), None, None) => Some(RelayCommand::Switch),
                        (Some("pulse"), None, None) => {
                            Some(RelayCommand::Pulse(Duration::from_secs(1)))
                        }
                        (Some("pulse"), Some(d), None) => parse_duration(d)
                            .ok()
                            .filter(|d| !d.is_zero())
                            .map(RelayCommand::Pulse),
                        _ => None,
                    };
                    let Some(command) = command else {
                        return Err(self.err(v, &key("mqtt_command"), format!("`{s}`: expected \"switch\", \"pulse\" or \"pulse DURATION\" (e.g. \"pulse 500ms\")")));
                    };
                    if let RelayCommand::Pulse(p) = command {
                        if p > max_on {
                            return Err(self.err(
                                v,
                                &key("mqtt_command"),
                                format!(
                                    "a {}s pulse is longer than max_on ({}s)",
                                    p.as_secs(),
                                    max_on.as_secs()
                                ),
                            ));
                        }
                    }
                    Some(command)
                }
            };
            g.relays.push(RelayConfig {
                name,
                pin,
                active_low,
                max_on,
                group,
                safe_on,
                mqtt_command,
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
            let active_low = lr.active_low.as_ref().is_some_and(|v| v.get_ref().0);
            g.led = Some(LedConfig { pin, active_low });
        }
        Ok(g)
    }

    pub(super) fn firewall(&self, raw: &RawFirewall) -> Result<FirewallConfig, ConfigError> {
        let mut f = FirewallConfig::default();
        if let Some(v) = &raw.backend {
            let s = v.get_ref().as_str();
            f.backend = match s {
                "iptables" => Backend::Iptables,
                "nftables" => Backend::Nftables,
                "none" => Backend::None,
                other => {
                    return Err(self.err(
                        v,
                        "firewall.backend",
                        format!("unknown backend `{other}`: expected \"iptables\", \"nftables\" or \"none\""),
                    ))
                }
            };
        }
        if let Some(v) = &raw.chain {
            let s = v.get_ref().as_str();
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
        if let Some(v) = &raw.nft_chain {
            f.nft_chain = parse_nft_chain(v.get_ref().as_str())
                .map_err(|m| self.err(v, "firewall.nft_chain", m))?;
        }
        if let Some(v) = &raw.daily_flush {
            let s = v.get_ref().as_str();
            f.daily_flush = if s.eq_ignore_ascii_case("off") {
                None
            } else {
                Some(parse_local_time(s).map_err(|m| self.err(v, "firewall.daily_flush", m))?)
            };
        }
        Ok(f)
    }

    pub(super) fn daemon(&self, raw: &RawDaemon) -> Result<Daemon, ConfigError> {
        let interfaces = match &raw.interfaces {
            None => Interfaces::Auto,
            Some(v) => self.interfaces(v)?,
        };
        let log_file = raw
            .log_file
            .as_ref()
            .map(|v| self.path(v, "daemon.log_file"))
            .transpose()?;
        let syslog = raw.syslog.as_ref().is_some_and(|v| v.get_ref().0);
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
                let n = v.get_ref().0;
                if !(1..=MAX).contains(&n) {
                    return Err(self.err(
                        v,
                        "daemon.max_sources",
                        format!("{n} is out of range: expected a whole number from 1 to {MAX}"),
                    ));
                }
                usize::try_from(n).expect("in range")
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
                let name = v.get_ref().as_str();
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

    pub(super) fn interfaces(
        &self,
        v: &Spanned<TextOrList<Text>>,
    ) -> Result<Interfaces, ConfigError> {
        const KEY: &str = "daemon.interfaces";
        const EXPECTED: &str =
            "expected \"auto\" or a list of interface names such as [\"eth0\", \"wlan0\"]";
        match v.get_ref() {
            TextOrList::Text(s) if s.eq_ignore_ascii_case("auto") => Ok(Interfaces::Auto),
            TextOrList::Text(s) => Err(self.err(
                v,
                KEY,
                format!("`{s}` is not \"auto\": {EXPECTED} (write [\"{s}\"] for one interface)"),
            )),
            TextOrList::List(items) if items.is_empty() => {
                Err(self.err(v, KEY, format!("empty list: {EXPECTED}")))
            }
            TextOrList::List(items) => {
                let mut names: Vec<String> = Vec::with_capacity(items.len());
                for item in items {
                    let name = &item.get_ref().0;
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
        }
    }

    pub(super) fn path(&self, v: &Spanned<PathText>, key: &str) -> Result<PathBuf, ConfigError> {
        let s = v.get_ref().0.as_str();
        if s.is_empty() {
            return Err(self.err(v, key, "empty path: give a path or remove the key"));
        }
        if s.contains('\0') {
            return Err(self.err(v, key, "a path cannot contain a NUL character"));
        }
        Ok(PathBuf::from(s))
    }

    /// A positive timeout: an integer (seconds) or a duration string.
    pub(super) fn timeout(&self, v: &Spanned<Seconds>, key: &str) -> Result<Duration, ConfigError> {
        let expected = format!("expected a whole number of seconds (1 or more) or {DURATION_HELP}");
        let d = match v.get_ref() {
            Seconds::Whole(n) if *n > 0 => Duration::from_secs(n.unsigned_abs()),
            Seconds::Whole(n) => {
                return Err(self.err(v, key, format!("{n} is not a positive timeout: {expected}")))
            }
            Seconds::Text(s) => parse_duration(s).map_err(|m| self.err(v, key, m))?,
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
    /// A key that has an alias (knockd's name): the value given and the name it was given
    /// under; both given is an error.
    pub(super) fn one_of<'v, T>(
        &self,
        main: &'v Option<Spanned<T>>,
        alias: &'v Option<Spanned<T>>,
        door: &str,
        names: (&'static str, &'static str),
    ) -> Result<Option<(&'v Spanned<T>, &'static str)>, ConfigError> {
        match (main, alias) {
            (Some(_), Some(a)) => Err(self.err(
                a,
                &format!("{door}.{}", names.1),
                format!(
                    "`{}` is an alias of `{}`, which is also given: keep one",
                    names.1, names.0
                ),
            )),
            (Some(m), None) => Ok(Some((m, names.0))),
            (None, a) => Ok(a.as_ref().map(|a| (a, names.1))),
        }
    }

    pub(super) fn command(
        &self,
        v: &Spanned<Text>,
        key: &str,
    ) -> Result<CommandTemplate, ConfigError> {
        let s = v.get_ref().as_str();
        if s.trim().is_empty() {
            return Err(self.err(
                v,
                key,
                "empty command: give a program and its arguments, or remove the key (only the _6 variants may be empty, to disable IPv6)",
            ));
        }
        CommandTemplate::parse(s).map_err(|m| self.err(v, key, m))
    }

    pub(super) fn command6(&self, v: &Spanned<Text>, key: &str) -> Result<Command6, ConfigError> {
        let s = v.get_ref().as_str();
        if s.trim().is_empty() {
            return Ok(Command6::Disabled);
        }
        CommandTemplate::parse(s)
            .map(Command6::Set)
            .map_err(|m| self.err(v, key, m))
    }
}

/// `inet filter input`: an address family with an input hook (`inet`, `ip`, `ip6`), a table
/// and a chain, each name as nft takes it unquoted.
fn parse_nft_chain(text: &str) -> Result<super::NftChain, String> {
    use super::NftFamily;
    let words: Vec<&str> = text.split_whitespace().collect();
    let [family, table, chain] = words[..] else {
        return Err(format!(
            "`{text}` is not a chain: expected FAMILY TABLE CHAIN, as in \"inet filter input\""
        ));
    };
    let family = match family {
        "inet" => NftFamily::Inet,
        "ip" => NftFamily::Ip,
        "ip6" => NftFamily::Ip6,
        other => {
            return Err(format!(
                "`{other}` is not a family knockgate can use: expected inet, ip or ip6"
            ))
        }
    };
    let name_ok = |n: &str| {
        n.len() <= 64
            && n.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    };
    for (what, name) in [("table", table), ("chain", chain)] {
        if !name_ok(name) {
            return Err(format!("`{name}` is not a usable {what} name: expected up to 64 letters, digits, `_`, `-` or `.`, starting with a letter or `_`"));
        }
    }
    Ok(super::NftChain {
        family,
        table: table.to_string(),
        chain: chain.to_string(),
    })
}
