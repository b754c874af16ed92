//! Home Assistant over MQTT: what knockgate publishes, as pure functions ([`Topics`],
//! [`discovery`], [`event`]), and the client that publishes it ([`client::Mqtt`]).
//!
//! Topics, under `base_topic` (default `knockgate/<hostname>`):
//! - `<base>/availability`: `online` (retained, after each connect) or `offline` (the last
//!   will, and on a clean stop);
//! - `<base>/event`: `{"event_type": "open"|"close"|"timeout"|"refused", "door": ..,
//!   "source": ..}` (never a sequence, key or command);
//! - `<base>/door/<slug>/open` `ON`/`OFF` and `<base>/door/<slug>/sessions` `N` (retained);
//! - `<base>/health`: `ok` or the first fault of the same verdict as `/healthz` (retained).
//!
//! Discovery is Home Assistant's device-based form (2024.11 and later): one retained document
//! on `<discovery_prefix>/device/<device id>/config` with `dev`, `o`, the shared availability
//! and `cmps`, a component per entity, each with a `unique_id` that stays the same across
//! restarts (made from the device id and the door's slug).

pub mod client;

use serde_json::{json, Value};

use crate::config::{Config, RelayCommand};

/// The kinds of the `knock` event entity.
pub const EVENT_TYPES: [&str; 4] = ["open", "close", "timeout", "refused"];

/// A door event for Home Assistant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Open,
    Close,
    Timeout,
    Refused,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Open => "open",
            EventKind::Close => "close",
            EventKind::Timeout => "timeout",
            EventKind::Refused => "refused",
        }
    }
}

/// `text` as a topic level and id part: lowercase letters, digits and `_`.
pub fn slug(text: &str) -> String {
    let s: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "_".into()
    } else {
        s
    }
}

/// The topics of one gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub base: String,
    pub prefix: String,
    /// The device's id in Home Assistant (`knockgate_<hostname>`).
    pub device: String,
    pub hostname: String,
    /// Each door's slug, in config order (unique: a clash gets `_2`, `_3`, ...).
    pub doors: Vec<(String, String)>,
    /// The relays that accept commands (`mqtt_command`): name, slug, command.
    pub relays: Vec<(String, String, RelayCommand)>,
    /// The doors whose wake-on-LAN target accepts commands: door name, slug.
    pub wakes: Vec<(String, String)>,
}

/// A command from Home Assistant, for a relay or a wake-on-LAN target that accepts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Relay {
        relay: String,
        /// On or off (a switch), or None: the relay's pulse (a button).
        on: Option<bool>,
    },
    /// Send the magic packet of this door's `wake_on_lan`.
    Wake { door: String },
}

/// Unique slugs for `names`, in order (a clash gets `_2`, `_3`, ...).
fn unique_slugs<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in names {
        let base = slug(name);
        let mut s = base.clone();
        let mut n = 2;
        while out.contains(&s) {
            s = format!("{base}_{n}");
            n += 1;
        }
        out.push(s);
    }
    out
}

impl Topics {
    pub fn new(config: &Config, hostname: &str) -> Topics {
        let m = config.mqtt.as_ref();
        let host = slug(hostname);
        let doors = config
            .doors
            .iter()
            .map(|d| d.name.clone())
            .zip(unique_slugs(config.doors.iter().map(|d| d.name.as_str())))
            .collect();
        let commanded: Vec<_> = config
            .gpio
            .relays
            .iter()
            .filter_map(|r| r.mqtt_command.map(|c| (r.name.clone(), c)))
            .collect();
        let relays = commanded
            .iter()
            .zip(unique_slugs(commanded.iter().map(|(n, _)| n.as_str())))
            .map(|((name, c), s)| (name.clone(), s, *c))
            .collect();
        let waking: Vec<&str> = config
            .doors
            .iter()
            .filter(|d| d.wake_on_lan.as_ref().is_some_and(|w| w.mqtt_command))
            .map(|d| d.name.as_str())
            .collect();
        let wakes = waking
            .iter()
            .map(|n| n.to_string())
            .zip(unique_slugs(waking.iter().copied()))
            .collect();
        Topics {
            base: m
                .and_then(|m| m.base_topic.clone())
                .unwrap_or_else(|| format!("knockgate/{host}")),
            prefix: m.map_or("homeassistant".into(), |m| m.discovery_prefix.clone()),
            device: format!("knockgate_{host}"),
            hostname: hostname.to_string(),
            doors,
            relays,
            wakes,
        }
    }

    pub fn availability(&self) -> String {
        format!("{}/availability", self.base)
    }
    pub fn event(&self) -> String {
        format!("{}/event", self.base)
    }
    pub fn health(&self) -> String {
        format!("{}/health", self.base)
    }
    pub fn discovery(&self) -> String {
        format!("{}/device/{}/config", self.prefix, self.device)
    }
    /// Home Assistant's birth and last-will topic.
    pub fn ha_status(&self) -> String {
        format!("{}/status", self.prefix)
    }
    pub fn slug_of(&self, door: &str) -> Option<&str> {
        self.doors
            .iter()
            .find(|(d, _)| d == door)
            .map(|(_, s)| s.as_str())
    }
    pub fn door_open(&self, slug: &str) -> String {
        format!("{}/door/{slug}/open", self.base)
    }
    pub fn door_sessions(&self, slug: &str) -> String {
        format!("{}/door/{slug}/sessions", self.base)
    }
    pub fn relay_set(&self, slug: &str) -> String {
        format!("{}/relay/{slug}/set", self.base)
    }
    pub fn relay_state(&self, slug: &str) -> String {
        format!("{}/relay/{slug}/state", self.base)
    }
    pub fn wake_set(&self, slug: &str) -> String {
        format!("{}/wake/{slug}/set", self.base)
    }
    /// Every command topic (subscribed to after each connect).
    pub fn command_topics(&self) -> Vec<String> {
        let relays = self.relays.iter().map(|(_, s, _)| self.relay_set(s));
        relays
            .chain(self.wakes.iter().map(|(_, s)| self.wake_set(s)))
            .collect()
    }

    /// The command a message on `topic` carries, if `topic` is a relay's command topic and
    /// the payload fits that relay (`ON`/`OFF` for a switch, `PRESS` for a button).
    pub fn command(&self, topic: &str, payload: &[u8]) -> Option<Command> {
        if let Some((door, _)) = self.wakes.iter().find(|(_, s)| self.wake_set(s) == topic) {
            return (payload == b"PRESS").then(|| Command::Wake { door: door.clone() });
        }
        let (name, _, kind) = self
            .relays
            .iter()
            .find(|(_, s, _)| self.relay_set(s) == topic)?;
        let on = match (kind, payload) {
            (RelayCommand::Switch, b"ON") => Some(true),
            (RelayCommand::Switch, b"OFF") => Some(false),
            (RelayCommand::Pulse(_), b"PRESS") => None,
            _ => return None,
        };
        Some(Command::Relay {
            relay: name.clone(),
            on,
        })
    }
}

/// The retained discovery document.
pub fn discovery(topics: &Topics) -> Value {
    let version = env!("CARGO_PKG_VERSION");
    let id = &topics.device;
    let mut cmps = serde_json::Map::new();
    cmps.insert(
        "knock".into(),
        json!({
            "p": "event",
            "unique_id": format!("{id}_knock"),
            "name": "Knock",
            "state_topic": topics.event(),
            "event_types": EVENT_TYPES,
            "icon": "mdi:door-open",
        }),
    );
    cmps.insert(
        "health".into(),
        json!({
            "p": "sensor",
            "unique_id": format!("{id}_health"),
            "name": "Health",
            "state_topic": topics.health(),
            "entity_category": "diagnostic",
            "icon": "mdi:heart-pulse",
        }),
    );
    for (door, s) in &topics.doors {
        cmps.insert(
            format!("door_{s}_open"),
            json!({
                "p": "binary_sensor",
                "unique_id": format!("{id}_door_{s}_open"),
                "name": format!("{door} open"),
                "state_topic": topics.door_open(s),
                "payload_on": "ON",
                "payload_off": "OFF",
                "device_class": "opening",
            }),
        );
        cmps.insert(
            format!("door_{s}_sessions"),
            json!({
                "p": "sensor",
                "unique_id": format!("{id}_door_{s}_sessions"),
                "name": format!("{door} sessions"),
                "state_topic": topics.door_sessions(s),
                "state_class": "measurement",
                "icon": "mdi:account-key",
            }),
        );
    }
    for (relay, s, kind) in &topics.relays {
        match kind {
            RelayCommand::Switch => {
                cmps.insert(
                    format!("relay_{s}"),
                    json!({
                        "p": "switch",
                        "unique_id": format!("{id}_relay_{s}"),
                        "name": relay,
                        "command_topic": topics.relay_set(s),
                        "state_topic": topics.relay_state(s),
                        "payload_on": "ON",
                        "payload_off": "OFF",
                    }),
                );
            }
            RelayCommand::Pulse(_) => {
                cmps.insert(
                    format!("relay_{s}_pulse"),
                    json!({
                        "p": "button",
                        "unique_id": format!("{id}_relay_{s}_pulse"),
                        "name": format!("{relay} pulse"),
                        "command_topic": topics.relay_set(s),
                        "payload_press": "PRESS",
                    }),
                );
                cmps.insert(
                    format!("relay_{s}"),
                    json!({
                        "p": "binary_sensor",
                        "unique_id": format!("{id}_relay_{s}"),
                        "name": relay,
                        "state_topic": topics.relay_state(s),
                        "payload_on": "ON",
                        "payload_off": "OFF",
                        "device_class": "power",
                    }),
                );
            }
        }
    }
    for (door, s) in &topics.wakes {
        cmps.insert(
            format!("wake_{s}"),
            json!({
                "p": "button",
                "unique_id": format!("{id}_wake_{s}"),
                "name": format!("{door} wake-on-LAN"),
                "command_topic": topics.wake_set(s),
                "payload_press": "PRESS",
                "icon": "mdi:power",
            }),
        );
    }
    json!({
        "dev": {
            "ids": [id],
            "name": format!("knockgate {}", topics.hostname),
            "mf": "knockgate",
            "mdl": "port-knocking gateway",
            "sw": version,
        },
        "o": {
            "name": "knockgate",
            "sw": version,
            "url": "https://github.com/knockgate/knockgate",
        },
        "avty_t": topics.availability(),
        "qos": 1,
        "cmps": cmps,
    })
}

/// An event's payload: its type, the door and the source address.
pub fn event(kind: EventKind, door: &str, source: &str) -> String {
    json!({"event_type": kind.as_str(), "door": door, "source": source}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        crate::config::parse(
            "[mqtt]\nbroker = \"mqtt://127.0.0.1\"\n[[door]]\nname = \"open SSH\"\nsequence = [1, 2]\n[[door]]\nname = \"open-ssh\"\nsequence = [3, 4]\n[[door]]\nname = \"Garage\"\nsequence = [5, 6]\n",
            "t.toml",
        )
        .unwrap()
    }

    #[test]
    fn topics_and_slugs_are_stable_and_unique() {
        let t = Topics::new(&config(), "Pi-Gate");
        assert_eq!(t.base, "knockgate/pi_gate");
        assert_eq!(t.device, "knockgate_pi_gate");
        assert_eq!(
            t.discovery(),
            "homeassistant/device/knockgate_pi_gate/config"
        );
        let slugs: Vec<&str> = t.doors.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(slugs, ["open_ssh", "open_ssh_2", "garage"]);
        assert_eq!(t.door_open("garage"), "knockgate/pi_gate/door/garage/open");
        assert_eq!(Topics::new(&config(), "Pi-Gate"), t);
    }

    #[test]
    fn the_discovery_document_has_a_component_per_entity() {
        let t = Topics::new(&config(), "gw");
        let d = discovery(&t);
        assert_eq!(d["dev"]["ids"][0], "knockgate_gw");
        assert_eq!(d["o"]["name"], "knockgate");
        assert_eq!(d["avty_t"], "knockgate/gw/availability");
        let cmps = d["cmps"].as_object().unwrap();
        assert_eq!(cmps.len(), 2 + 2 * 3);
        assert_eq!(cmps["knock"]["p"], "event");
        assert_eq!(cmps["knock"]["event_types"], json!(EVENT_TYPES));
        assert_eq!(cmps["door_garage_open"]["p"], "binary_sensor");
        assert_eq!(
            cmps["door_garage_open"]["state_topic"],
            "knockgate/gw/door/garage/open"
        );
        let ids: std::collections::BTreeSet<&str> = cmps
            .values()
            .map(|c| c["unique_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), cmps.len(), "unique ids are unique");
    }

    #[test]
    fn relays_that_opted_in_get_a_switch_or_a_button_and_only_their_payloads_count() {
        let c = crate::config::parse(
            "[mqtt]\nbroker = \"mqtt://h\"\n[gpio]\nbackend = \"simulated\"\n[[relay]]\nname = \"Garage\"\npin = 17\nmqtt_command = \"pulse 500ms\"\n[[relay]]\nname = \"zone 1\"\npin = 18\nmqtt_command = \"switch\"\n[[relay]]\nname = \"pump\"\npin = 19\n[[door]]\nname = \"a\"\nsequence = [1, 2]\n",
            "t.toml",
        )
        .unwrap();
        let t = Topics::new(&c, "gw");
        let d = discovery(&t);
        let cmps = d["cmps"].as_object().unwrap();
        assert_eq!(cmps["relay_garage_pulse"]["p"], "button");
        assert_eq!(cmps["relay_garage"]["p"], "binary_sensor");
        assert_eq!(cmps["relay_zone_1"]["p"], "switch");
        assert_eq!(
            cmps["relay_zone_1"]["command_topic"],
            "knockgate/gw/relay/zone_1/set"
        );
        assert!(
            !cmps.keys().any(|k| k.contains("pump")),
            "pump did not opt in"
        );
        let cmd = |topic: &str, p: &[u8]| t.command(topic, p);
        assert_eq!(
            cmd("knockgate/gw/relay/garage/set", b"PRESS"),
            Some(Command::Relay {
                relay: "Garage".into(),
                on: None
            })
        );
        assert_eq!(
            cmd("knockgate/gw/relay/zone_1/set", b"OFF"),
            Some(Command::Relay {
                relay: "zone 1".into(),
                on: Some(false)
            })
        );
        assert_eq!(cmd("knockgate/gw/relay/garage/set", b"ON"), None);
        assert_eq!(cmd("knockgate/gw/relay/zone_1/set", b"PRESS"), None);
        assert_eq!(cmd("knockgate/gw/relay/pump/set", b"ON"), None);
        assert_eq!(cmd("knockgate/gw/relay/zone_1/set", b"on\xff"), None);
    }

    #[test]
    fn an_event_names_the_door_and_source_only() {
        let e: Value = serde_json::from_str(&event(EventKind::Open, "Garage", "10.0.0.2")).unwrap();
        assert_eq!(
            e,
            json!({"event_type": "open", "door": "Garage", "source": "10.0.0.2"})
        );
    }
}
