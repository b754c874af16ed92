//! Errors: positions to line numbers, and the toml crate's own errors (syntax, an unknown key,
//! a wrong table shape) turned into `file:line: key: message` with a "did you mean" hint.

use toml::Spanned;

use super::raw::*;
use super::validate::Cx;
use super::values::check_door_name;
use super::ConfigError;

impl Cx<'_> {
    /// The 1-based line of a byte offset.
    pub(super) fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        1 + self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
    }

    pub(super) fn err<T>(
        &self,
        at: &Spanned<T>,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.origin.to_string(),
            line: Some(self.line(at.span().start)),
            key: Some(key.to_string()),
            message: message.into(),
        }
    }

    /// Turns an error from the toml crate (syntax, unknown key, wrong table shape) into a
    /// ConfigError with the line and, where it can be known, the key.
    pub(super) fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
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
    pub(super) fn explain_toml_error(
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
            } else if expected.contains("`hmac_key_file`") {
                (Some(format!("{}.spa", self.door_at(offset?))), SPA_KEYS)
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
    pub(super) fn door_at(&self, offset: usize) -> String {
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
    pub(super) fn scan_door_at(&self, offset: usize) -> String {
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
}

/// The text after the first occurrence of `pattern`.
pub(super) fn after<'a>(text: &'a str, pattern: &str) -> Option<&'a str> {
    text.find(pattern).map(|i| &text[i + pattern.len()..])
}

/// `door[name]`, or `door[index]` when the name is missing or unusable.
pub(super) fn door_key(index: usize, name: Option<&str>) -> String {
    match name {
        Some(n) if check_door_name(n).is_ok() => format!("door[{n}]"),
        _ => format!("door[{index}]"),
    }
}

/// The known key closest to an unknown one: same letters ignoring case and `_`, or within two
/// edits (so knockd's `TCPFlags` suggests `tcp_flags`, `logfile` suggests `log_file`).
pub(super) fn suggest(unknown: &str, known: &[&'static str]) -> Option<&'static str> {
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
