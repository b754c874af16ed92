//! The config file as the toml crate reads it: one serde struct per table
//! (`deny_unknown_fields`), every leaf typed by its TOML shape ([`Flag`], [`Int`], [`Text`],
//! [`PathText`], [`Seconds`], [`TextOrList`]) and kept with its position, so that validation
//! ([`super::validate`]) can name the line of any mistake. serde checks the shapes; a wrong one
//! fails with "expected X, found Y" at the value's line, and the key comes from the path to the
//! error ([`super::explain`]). Adding a key is a field here and its check in `validate`.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
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
    #[serde(default, deserialize_with = "relay_tables")]
    pub(super) relay: Vec<Spanned<RawRelay>>,
    pub(super) led: Option<Spanned<RawLed>>,
    pub(super) mqtt: Option<Spanned<RawMqtt>>,
    #[serde(default, deserialize_with = "door_tables")]
    pub(super) door: Vec<Spanned<RawDoor>>,
}

/// `[firewall]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table, written [firewall]")]
pub(super) struct RawFirewall {
    pub(super) backend: Option<Spanned<Text>>,
    pub(super) chain: Option<Spanned<Text>>,
    pub(super) jump_position: Option<Spanned<Int>>,
    pub(super) daily_flush: Option<Spanned<Text>>,
    pub(super) nft_chain: Option<Spanned<Text>>,
}

/// `[mqtt]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table, written [mqtt]")]
pub(super) struct RawMqtt {
    pub(super) broker: Option<Spanned<Text>>,
    pub(super) client_id: Option<Spanned<Text>>,
    pub(super) username: Option<Spanned<Text>>,
    pub(super) password_file: Option<Spanned<PathText>>,
    pub(super) ca_file: Option<Spanned<PathText>>,
    pub(super) keep_alive: Option<Spanned<Seconds>>,
    pub(super) base_topic: Option<Spanned<Text>>,
    pub(super) discovery_prefix: Option<Spanned<Text>>,
}

/// `[status]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table, written [status]")]
pub(super) struct RawStatus {
    pub(super) enabled: Option<Spanned<Flag>>,
    pub(super) listen: Option<Spanned<Text>>,
    pub(super) allowed_hosts: Option<Spanned<TextOrList<Text>>>,
}

/// `[gpio]` (the relays are `[[relay]]` tables and the LED `[led]`, at the top level).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table, written [gpio]")]
pub(super) struct RawGpio {
    pub(super) backend: Option<Spanned<Text>>,
    pub(super) chip: Option<Spanned<Text>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table, written [[relay]]")]
pub(super) struct RawRelay {
    pub(super) name: Option<Spanned<Text>>,
    pub(super) pin: Option<Spanned<Int>>,
    pub(super) active_low: Option<Spanned<Flag>>,
    pub(super) max_on: Option<Spanned<Seconds>>,
    pub(super) group: Option<Spanned<Text>>,
    pub(super) safe_state: Option<Spanned<Text>>,
    pub(super) mqtt_command: Option<Spanned<Text>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table, written [led]")]
pub(super) struct RawLed {
    pub(super) pin: Option<Spanned<Int>>,
    pub(super) active_low: Option<Spanned<Flag>>,
}

/// A door's `gpio = { relay, mode, duration }`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table such as { relay = \"zone1\", mode = \"pulse\", duration = \"10m\" }"
)]
pub(super) struct RawDoorGpio {
    pub(super) relay: Option<Spanned<Text>>,
    pub(super) mode: Option<Spanned<Text>>,
    pub(super) duration: Option<Spanned<Seconds>>,
}

/// A door's `hmac = { secret_file, steps, ports, window }`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table such as { secret_file = \"/etc/knockgate/ssh.secret\" }"
)]
pub(super) struct RawHmac {
    pub(super) secret_file: Option<Spanned<PathText>>,
    pub(super) steps: Option<Spanned<Int>>,
    pub(super) ports: Option<Spanned<Text>>,
    pub(super) window: Option<Spanned<Seconds>>,
    pub(super) version: Option<Spanned<Int>>,
}

/// A door's `wake_on_lan = { mac, interface, port, broadcast, password, rate_limit }`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table such as { mac = \"00:11:22:33:44:55\" }"
)]
pub(super) struct RawWake {
    pub(super) mac: Option<Spanned<Text>>,
    pub(super) interface: Option<Spanned<Text>>,
    pub(super) port: Option<Spanned<Int>>,
    pub(super) broadcast: Option<Spanned<Text>>,
    pub(super) password: Option<Spanned<Text>>,
    pub(super) rate_limit: Option<Spanned<Seconds>>,
    pub(super) mqtt_command: Option<Spanned<Flag>>,
}

/// A door's `firewall = { ports = [...], duration = "..." }`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table such as { ports = [\"22/tcp\"], duration = \"1h\" }"
)]
pub(super) struct RawDoorFirewall {
    pub(super) ports: Option<Spanned<TextOrList<PortItem>>>,
    pub(super) duration: Option<Spanned<Seconds>>,
}

/// `[daemon]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table, written [daemon]")]
pub(super) struct RawDaemon {
    pub(super) interfaces: Option<Spanned<TextOrList<Text>>>,
    pub(super) log_file: Option<Spanned<PathText>>,
    pub(super) syslog: Option<Spanned<Flag>>,
    pub(super) pid_file: Option<Spanned<PathText>>,
    pub(super) state_dir: Option<Spanned<PathText>>,
    pub(super) max_sources: Option<Spanned<Int>>,
    pub(super) max_failures: Option<Spanned<Int>>,
    pub(super) failure_window: Option<Spanned<Seconds>>,
    pub(super) ban: Option<Spanned<Seconds>>,
    pub(super) user: Option<Spanned<Text>>,
}

/// One `[[door]]`. Aliases are separate fields so that giving both is a clear error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table, written [[door]]")]
pub(super) struct RawDoor {
    pub(super) name: Option<Spanned<Text>>,
    pub(super) sequence: Option<Spanned<TextOrList<PortItem>>>,
    pub(super) one_time_sequences: Option<Spanned<PathText>>,
    pub(super) seq_timeout: Option<Spanned<Seconds>>,
    pub(super) timeout: Option<Spanned<Seconds>>,
    pub(super) tcp_flags: Option<Spanned<Text>>,
    pub(super) target: Option<Spanned<Text>>,
    pub(super) start_command: Option<Spanned<Text>>,
    pub(super) command: Option<Spanned<Text>>,
    pub(super) start_command_6: Option<Spanned<Text>>,
    pub(super) command_6: Option<Spanned<Text>>,
    pub(super) stop_command: Option<Spanned<Text>>,
    pub(super) stop_command_6: Option<Spanned<Text>>,
    pub(super) cmd_timeout: Option<Spanned<Seconds>>,
    pub(super) firewall: Option<Spanned<RawDoorFirewall>>,
    pub(super) close: Option<Spanned<Text>>,
    pub(super) gpio: Option<Spanned<RawDoorGpio>>,
    pub(super) wake_on_lan: Option<Spanned<RawWake>>,
    pub(super) hmac: Option<Spanned<RawHmac>>,
    pub(super) spa: Option<Spanned<RawSpa>>,
}

/// A door's `spa = { key_file, hmac_key_file, port, max_age, allow, require_source_match }`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table such as { key_file = \"...\", hmac_key_file = \"...\" }"
)]
pub(super) struct RawSpa {
    pub(super) key_file: Option<Spanned<PathText>>,
    pub(super) hmac_key_file: Option<Spanned<PathText>>,
    pub(super) port: Option<Spanned<Int>>,
    pub(super) max_age: Option<Spanned<Seconds>>,
    pub(super) allow: Option<Spanned<TextOrList<Text>>>,
    pub(super) require_source_match: Option<Spanned<Flag>>,
}

/// A TOML shape a leaf accepts. The visitor ([`ShapeVisitor`]) hands each TOML value to the
/// method of its type; `None` (the default) means "not this shape", reported as
/// `expected EXPECTED, found <what was given>`.
pub(super) trait Shape: Sized {
    /// What the shape is, after "expected".
    const EXPECTED: &'static str;
    fn boolean(_: bool) -> Option<Self> {
        None
    }
    fn integer(_: i64) -> Option<Self> {
        None
    }
    fn string(_: &str) -> Option<Self> {
        None
    }
    /// An array, read element by element (an element's error keeps the element's line).
    fn array<'de, A: SeqAccess<'de>>(_: A) -> Result<Option<Self>, A::Error> {
        Ok(None)
    }
}

/// `true` or `false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Flag(pub(super) bool);

impl Shape for Flag {
    const EXPECTED: &'static str = "true or false";
    fn boolean(b: bool) -> Option<Self> {
        Some(Flag(b))
    }
}

/// A whole number (ranges are checked in validation, which names the valid range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Int(pub(super) i64);

impl Shape for Int {
    const EXPECTED: &'static str = "a whole number";
    fn integer(n: i64) -> Option<Self> {
        Some(Int(n))
    }
}

/// A string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Text(pub(super) String);

impl Text {
    pub(super) fn as_str(&self) -> &str {
        &self.0
    }
}

impl Shape for Text {
    const EXPECTED: &'static str = "a string";
    fn string(s: &str) -> Option<Self> {
        Some(Text(s.to_string()))
    }
}

/// A path: a string, named as such in errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PathText(pub(super) String);

impl Shape for PathText {
    const EXPECTED: &'static str = "a path (a string such as \"/var/lib/knockgate\")";
    fn string(s: &str) -> Option<Self> {
        Some(PathText(s.to_string()))
    }
}

/// A timeout: whole seconds, or a duration string (`"30s"`, `"1h30m"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seconds {
    Whole(i64),
    Text(String),
}

impl Shape for Seconds {
    const EXPECTED: &'static str =
        "a whole number of seconds (1 or more) or a duration such as \"500ms\", \"30s\", \"10m\", \"1h\", \"1d\" or \"1h30m\"";
    fn integer(n: i64) -> Option<Self> {
        Some(Seconds::Whole(n))
    }
    fn string(s: &str) -> Option<Self> {
        Some(Seconds::Text(s.to_string()))
    }
}

/// One element of a port list: a number (`22`) or a string (`"22/tcp"`, `"5060-5069/udp"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PortItem {
    Number(i64),
    Text(String),
}

impl Shape for PortItem {
    const EXPECTED: &'static str = "a port such as \"7000/tcp\", \"8000\" or 9000";
    fn integer(n: i64) -> Option<Self> {
        Some(PortItem::Number(n))
    }
    fn string(s: &str) -> Option<Self> {
        Some(PortItem::Text(s.to_string()))
    }
}

/// A string or a list of `T` (a sequence, ports, interfaces, host names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TextOrList<T> {
    Text(String),
    List(Vec<Spanned<T>>),
}

impl<T: Shape> Shape for TextOrList<T> {
    const EXPECTED: &'static str = "a string or a list";
    fn string(s: &str) -> Option<Self> {
        Some(TextOrList::Text(s.to_string()))
    }
    fn array<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Option<Self>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Leaf<T>>>()? {
            let span = item.span();
            items.push(Spanned::new(span, item.into_inner().0));
        }
        Ok(Some(TextOrList::List(items)))
    }
}

/// Deserializes a [`Shape`] (serde's `Deserialize` for each shape goes through this).
pub(super) struct Leaf<T>(pub(super) T);

impl<'de, T: Shape> Deserialize<'de> for Leaf<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ShapeVisitor(PhantomData)).map(Leaf)
    }
}

macro_rules! deserialize_via_leaf {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Leaf::<$t>::deserialize(d).map(|l| l.0)
            }
        }
    )*};
}
deserialize_via_leaf!(Flag, Int, Text, PathText, Seconds, PortItem);

impl<'de, T: Shape> Deserialize<'de> for TextOrList<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Leaf::<Self>::deserialize(d).map(|l| l.0)
    }
}

/// `expected X, found Y`.
fn wrong<E: de::Error, T: Shape>(found: &str) -> E {
    E::custom(format!("expected {}, found {found}", T::EXPECTED))
}

pub(super) struct ShapeVisitor<T>(PhantomData<T>);

impl<'de, T: Shape> Visitor<'de> for ShapeVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTED)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
        T::boolean(v).ok_or_else(|| wrong::<E, T>("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        T::integer(v).ok_or_else(|| wrong::<E, T>("an integer"))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<T, E> {
        Err(wrong::<E, T>("a decimal number"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        T::string(v).ok_or_else(|| wrong::<E, T>("a string"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<T, A::Error> {
        T::array(seq)?.ok_or_else(|| wrong::<A::Error, T>("an array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        // toml hands a date-time over as a map with one private key.
        let datetime = map
            .next_key::<String>()?
            .is_some_and(|k| k.starts_with("$__toml_private"));
        Err(wrong::<A::Error, T>(if datetime {
            "a date"
        } else {
            "a table (a value is written `key = value`, not as a [table] or a dotted key)"
        }))
    }
}

/// `[[door]]` tables: an array of tables, and a clear error for `[door]`.
fn door_tables<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Spanned<RawDoor>>, D::Error> {
    d.deserialize_any(TablesVisitor(PhantomData, "door"))
}

/// `[[relay]]` tables.
fn relay_tables<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Spanned<RawRelay>>, D::Error> {
    d.deserialize_any(TablesVisitor(PhantomData, "relay"))
}

struct TablesVisitor<T>(PhantomData<T>, &'static str);

impl<T> TablesVisitor<T> {
    fn wrong<E: de::Error>(&self, found: &str) -> E {
        E::custom(format!(
            "expected an array of tables, each written [[{}]] (two brackets), found {found}",
            self.1
        ))
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for TablesVisitor<T> {
    type Value = Vec<Spanned<T>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an array of tables, each written [[{}]]", self.1)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut tables = Vec::new();
        while let Some(t) = seq.next_element()? {
            tables.push(t);
        }
        Ok(tables)
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.wrong("a single table"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(self.wrong("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(self.wrong("an integer"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(self.wrong("an integer"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(self.wrong("a decimal number"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(self.wrong("a string"))
    }
}

/// Just enough of the file to name the door or relay an error falls in.
#[derive(Debug, Deserialize)]
pub(super) struct Skeleton {
    #[serde(default)]
    pub(super) door: Vec<Spanned<toml::Table>>,
    #[serde(default)]
    pub(super) relay: Vec<toml::Table>,
}
