//! Validating a `[[door]]` table: its sequence, timing, commands and actions.

use std::net::IpAddr;

use toml::Spanned;

use super::explain::door_key;
use super::raw::*;
use super::validate::Cx;
use super::values::*;
use super::*;

impl Cx<'_> {
    pub(super) fn door(
        &self,
        index: usize,
        spanned: &Spanned<RawDoor>,
    ) -> Result<Door, ConfigError> {
        let raw = spanned.get_ref();
        // The name first: every other key is named after it.
        let Some(name_v) = &raw.name else {
            return Err(self.err(
                spanned,
                &format!("door[{index}].name"),
                "this door has no name: add name = \"...\" (1 to 127 characters, unique)",
            ));
        };
        let name = name_v.get_ref().as_str().to_string();
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
        if let Some(v) = &raw.spa {
            if raw.sequence.is_some() || one_time_sequences.is_some() || hmac.is_some() {
                return Err(self.err(
                    v,
                    &key("spa"),
                    "an spa door opens on one fwknop SPA packet, not a sequence: remove `sequence`, `one_time_sequences` or `hmac`, or make a second door",
                ));
            }
        }
        if raw.sequence.is_none()
            && one_time_sequences.is_none()
            && hmac.is_none()
            && raw.spa.is_none()
        {
            return Err(self.err(
                spanned,
                &key("sequence"),
                "this door has no sequence: add sequence = [\"7000/tcp\", \"8000/tcp\", \"9000/tcp\"] (or one_time_sequences = \"/path/to/file\", or hmac = { secret_file = \"/path\" }, or spa = { key_file = \"/path\", hmac_key_file = \"/path\" })",
            ));
        }

        let seq_timeout = match self.one_of(
            &raw.seq_timeout,
            &raw.timeout,
            &d,
            ("seq_timeout", "timeout"),
        )? {
            Some((v, k)) => self.timeout(v, &key(k))?,
            None => DEFAULT_SEQ_TIMEOUT,
        };
        let tcp_flags = match &raw.tcp_flags {
            Some(v) => {
                let s = v.get_ref().as_str();
                FlagRule::parse(s).map_err(|m| self.err(v, &key("tcp_flags"), m))?
            }
            None => FlagRule::SYN_NOT_ACK,
        };
        let target = match &raw.target {
            Some(v) => {
                let s = v.get_ref().as_str();
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
            Some((v, k)) => Some(self.command(v, &key(k))?),
            None => None,
        };
        let start_command_6 = match self.one_of(
            &raw.start_command_6,
            &raw.command_6,
            &d,
            ("start_command_6", "command_6"),
        )? {
            Some((v, k)) => self.command6(v, &key(k))?,
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
        let close = raw.close.as_ref().map(|v| v.get_ref().0.clone());
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
        let spa = raw
            .spa
            .as_ref()
            .map(|v| self.spa(v, &key("spa"), firewall.as_ref()))
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
            spa,
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

    pub(super) fn door_gpio(
        &self,
        v: &Spanned<RawDoorGpio>,
        key: &str,
    ) -> Result<GpioAction, ConfigError> {
        let raw = v.get_ref();
        let Some(relay_v) = &raw.relay else {
            return Err(self.err(
                v,
                &format!("{key}.relay"),
                "name the relay: relay = \"zone1\"",
            ));
        };
        let relay = relay_v.get_ref().as_str().to_string();
        let mode_name = match &raw.mode {
            Some(m) => m.get_ref().as_str(),
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

    /// `spa = { ... }`. `allow` defaults to the door's firewall ports (every port if the
    /// firewall opens all); a door without a firewall action must list it.
    pub(super) fn spa(
        &self,
        v: &Spanned<RawSpa>,
        key: &str,
        firewall: Option<&FirewallAction>,
    ) -> Result<SpaConfig, ConfigError> {
        use crate::knock::Proto;
        use crate::knock::{PortRange, Ports};
        let raw = v.get_ref();
        let k = |f: &str| format!("{key}.{f}");
        let file = |field: &Option<Spanned<PathText>>, name: &str| {
            match field {
            Some(f) => self.path(f, &k(name)),
            None => Err(self.err(
                v,
                &k(name),
                format!("name the key file: {name} = \"/etc/knockgate/spa.{}\" (`knockgate spa keygen` writes both, mode 600)", if name == "key_file" { "key" } else { "hmac" }),
            )),
        }
        };
        let key_file = file(&raw.key_file, "key_file")?;
        let hmac_key_file = file(&raw.hmac_key_file, "hmac_key_file")?;
        let port = match &raw.port {
            Some(p) => u16::try_from(self.integer(
                p,
                &k("port"),
                1..=65535,
                "expected a UDP port from 1 to 65535",
            )?)
            .expect("in range"),
            None => super::SPA_DEFAULT_PORT,
        };
        let max_age = match &raw.max_age {
            Some(m) => {
                let d = self.timeout(m, &k("max_age"))?;
                if !(5..=3600).contains(&d.as_secs()) {
                    return Err(self.err(
                        m,
                        &k("max_age"),
                        "expected 5s to 1h (fwknop's default is 120s): how old a packet may be, either way",
                    ));
                }
                d
            }
            None => Duration::from_secs(super::SPA_DEFAULT_MAX_AGE),
        };
        let allow = match &raw.allow {
            Some(a) => {
                let TextOrList::List(items) = a.get_ref() else {
                    return Err(self.err(
                        a,
                        &k("allow"),
                        "expected a list such as [\"22/tcp\"], found a string",
                    ));
                };
                let mut allow = Vec::with_capacity(items.len());
                for item in items {
                    let text = item.get_ref().as_str();
                    // fwknop writes tcp/22: take both orders.
                    let text = match text.split_once('/') {
                        Some((proto, port)) if Proto::parse(proto, text).is_ok() => {
                            format!("{port}/{proto}")
                        }
                        _ => text.to_string(),
                    };
                    allow.push(
                        PortRange::parse(&text).map_err(|m| self.err(item, &k("allow"), m))?,
                    );
                }
                if allow.is_empty() {
                    return Err(self.err(a, &k("allow"), "an empty list allows nothing: list the ports a request may ask for, e.g. [\"22/tcp\"]"));
                }
                allow
            }
            None => match firewall.map(|f| &f.ports) {
                Some(Ports::Some(ranges)) => ranges.clone(),
                Some(Ports::All) => [Proto::Tcp, Proto::Udp]
                    .map(|proto| PortRange { proto, first: 1, last: 65535 })
                    .to_vec(),
                None => {
                    return Err(self.err(
                        v,
                        &k("allow"),
                        "this door has no firewall action: list what a request may ask for, e.g. allow = [\"22/tcp\"]",
                    ))
                }
            },
        };
        let require_source_match = match &raw.require_source_match {
            Some(b) => b.get_ref().0,
            None => true,
        };
        Ok(SpaConfig {
            key_file,
            hmac_key_file,
            port,
            max_age,
            allow,
            require_source_match,
        })
    }

    pub(super) fn hmac(&self, v: &Spanned<RawHmac>, key: &str) -> Result<HmacConfig, ConfigError> {
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
        let mut params = super::HmacParams::default();
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
            let s = pv.get_ref().as_str();
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
        if let Some(vv) = &raw.version {
            let n = self.integer(
                vv,
                &k("version"),
                1..=2,
                "expected 1 (the first derivation) or 2 (no port a browser refuses)",
            )?;
            params.version = u8::try_from(n).expect("in range");
        }
        Ok(HmacConfig {
            secret_file,
            params,
        })
    }

    pub(super) fn wake(&self, v: &Spanned<RawWake>, key: &str) -> Result<WakeAction, ConfigError> {
        let raw = v.get_ref();
        let k = |f: &str| format!("{key}.{f}");
        let six = |val: &Spanned<Text>, field: &str| -> Result<[u8; 6], ConfigError> {
            let s = val.get_ref().as_str();
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
                let name = i.get_ref().as_str();
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
                let s = b.get_ref().as_str();
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
            mqtt_command: raw.mqtt_command.as_ref().is_some_and(|v| v.get_ref().0),
        })
    }

    pub(super) fn door_firewall(
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
            TextOrList::Text(s) if s.trim().eq_ignore_ascii_case("all") => Ports::All,
            TextOrList::Text(s) => Ports::Some(vec![
                PortRange::parse(s).map_err(|m| self.err(pv, &pkey, m))?
            ]),
            TextOrList::List(items) if !items.is_empty() => {
                let mut ranges = Vec::with_capacity(items.len());
                for item in items {
                    let r = match item.get_ref() {
                        PortItem::Text(s) => PortRange::parse(s),
                        PortItem::Number(n) => PortRange::parse(&n.to_string()),
                    };
                    ranges.push(r.map_err(|m| self.err(item, &pkey, m))?);
                }
                ranges.sort();
                ranges.dedup();
                Ports::Some(ranges)
            }
            TextOrList::List(_) => {
                return Err(self.err(pv, &pkey, format!("empty list: {EXPECTED}")))
            }
        };
        let duration = raw
            .duration
            .as_ref()
            .map(|d| self.timeout(d, &format!("{key}.duration")))
            .transpose()?;
        Ok(FirewallAction { ports, duration })
    }

    pub(super) fn sequence(
        &self,
        v: &Spanned<TextOrList<PortItem>>,
        key: &str,
    ) -> Result<Vec<KnockSpec>, ConfigError> {
        const EXPECTED: &str = "expected a list such as [\"7000/tcp\", \"8000\", \"9000/udp\"] or a string such as \"7000:tcp,8000,9000:udp\"";
        // (text or port, where) for each step.
        let steps: Vec<(Result<KnockSpec, String>, std::ops::Range<usize>)> = match v.get_ref() {
            TextOrList::Text(s) => {
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
                        (r, v.span())
                    })
                    .collect()
            }
            TextOrList::List(items) => {
                if items.is_empty() {
                    return Err(self.err(v, key, format!("empty sequence: {EXPECTED}")));
                }
                items
                    .iter()
                    .map(|item| {
                        let r = match item.get_ref() {
                            PortItem::Text(s) => KnockSpec::parse(s),
                            PortItem::Number(n) => match u16::try_from(*n) {
                                Ok(p) if p != 0 => Ok(KnockSpec::tcp(p)),
                                _ => Err(crate::knock::bad_port(&n.to_string(), &n.to_string())),
                            },
                        };
                        (r, item.span())
                    })
                    .collect()
            }
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
            out.push(r.map_err(|m| self.err_at(at, key, format!("step {}: {m}", i + 1)))?);
        }
        Ok(out)
    }
}
