//! Errors: positions to line numbers, and errors from reading the file (syntax, an unknown
//! key, a value of the wrong shape) turned into `file:line: key: message`, the key from the
//! path serde was at (`serde_path_to_error`), with a "did you mean" hint for unknown keys.

use serde_path_to_error::Segment;
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
        self.err_at(at.span(), key, message)
    }

    /// [`Cx::err`] at a byte range of the text.
    pub(super) fn err_at(
        &self,
        at: std::ops::Range<usize>,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.origin.to_string(),
            line: Some(self.line(at.start)),
            key: Some(key.to_string()),
            message: message.into(),
        }
    }

    /// Reads the file into the raw tables.
    pub(super) fn read(&self) -> Result<RawConfig, ConfigError> {
        serde_path_to_error::deserialize(toml::Deserializer::new(self.text))
            .map_err(|e| self.read_error(e))
    }

    /// Turns an error from reading the file (a syntax error from the toml crate, or a
    /// deserialization error with the path to it) into a ConfigError with the line and the key.
    pub(super) fn read_error(&self, e: serde_path_to_error::Error<toml::de::Error>) -> ConfigError {
        // The path as the user wrote it: `Spanned` adds private keys, array elements are
        // part of their key, and a door or relay is named after its `name`.
        let mut names: Vec<String> = Vec::new();
        let mut key = String::new();
        for segment in e.path().iter() {
            match segment {
                Segment::Map { key: k } if k.starts_with("$__") => {}
                Segment::Map { key: k } => {
                    if !key.is_empty() {
                        key.push('.');
                    }
                    key.push_str(k);
                    names.push(k.clone());
                }
                Segment::Seq { index } if key == "door" || key == "relay" => {
                    key = self.table_key(&key, *index);
                }
                _ => {}
            }
        }
        let inner = e.into_inner();
        let offset = inner.span().map(|s| s.start);
        let line = offset.map(|o| self.line(o));
        let raw_message = inner.message().trim().replace('\n', ": ");
        let error = |key: Option<String>, message: String| ConfigError {
            file: self.origin.to_string(),
            line,
            key,
            message,
        };
        let Some(last) = names.last() else {
            // A syntax error: the key is the one the error points at, if it points at one.
            return error(offset.and_then(|o| self.key_at(o)), raw_message);
        };
        if let Some((field, known)) = unknown_field(&raw_message) {
            let expected = match known.as_slice() {
                [] => "this table takes no keys".to_string(),
                [one] => format!("expected `{one}`"),
                [rest @ .., final_one] => format!(
                    "expected one of {}, `{final_one}`",
                    rest.iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            let message = match suggest(field, &known) {
                Some(s) => format!("unknown key `{field}`: did you mean `{s}`? ({expected})"),
                None => format!("unknown key `{field}`: {expected}"),
            };
            return error(Some(key), message);
        }
        // The error points at a key, not at a value: the toml crate meeting a `[table]` or
        // a dotted key where a value belongs.
        let at_key = inner
            .span()
            .and_then(|s| self.text.get(s))
            .is_some_and(|t| t == last);
        if at_key {
            return error(
                Some(key),
                format!("`{last}` must be a value (`{last} = ...` inside the table), not a table or a dotted key"),
            );
        }
        error(Some(key), raw_message)
    }

    /// `door[name]` / `relay[name]` for the `index`th table of that kind (the index when the
    /// name is missing or unusable).
    fn table_key(&self, table: &str, index: usize) -> String {
        let skeleton = toml::from_str::<Skeleton>(self.text).ok();
        let name = skeleton.as_ref().and_then(|s| {
            let t = if table == "door" {
                s.door.get(index).map(|d| d.get_ref())
            } else {
                s.relay.get(index)
            };
            t?.get("name")?.as_str()
        });
        match name {
            Some(n) if check_door_name(n).is_ok() => format!("{table}[{n}]"),
            _ => format!("{table}[{index}]"),
        }
    }

    /// The key a syntax error points at (a duplicated key or table), with its table: the error
    /// is at the start of a line, on `key =` or on a `[table]` header.
    fn key_at(&self, offset: usize) -> Option<String> {
        let before = self.text.get(..offset)?;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let lead = &before[line_start..];
        let rest = self.text.get(offset..)?;
        let is_key = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if lead.trim().is_empty() && !rest.starts_with('[') {
            let name: String = rest.chars().take_while(|c| is_key(*c)).collect();
            let after = rest[name.len()..].trim_start();
            if name.is_empty() || !after.starts_with('=') {
                return None;
            }
            // The table this line is in: the last header above it.
            let header = before[..line_start]
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| l.starts_with('['))
                .and_then(|l| l.trim_start_matches('[').split(']').next())
                .map(|h| h.trim().to_string());
            return Some(match header.as_deref() {
                None => name,
                Some("door") => format!("{}.{name}", self.door_at(offset)),
                Some(h) => format!("{h}.{name}"),
            });
        }
        // A header (`[daemon]` given twice): the error points at or inside its brackets.
        let header = lead.trim_start();
        if header.trim_start_matches('[').trim().is_empty()
            && (header.starts_with('[') || rest.starts_with('['))
        {
            let name: String = rest
                .trim_start_matches(['[', ' '])
                .chars()
                .take_while(|c| is_key(*c) || *c == '.')
                .collect();
            return (!name.is_empty()).then_some(name);
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

/// serde's error for a key `deny_unknown_fields` refuses (`unknown field `x`, expected one
/// of `a`, `b``, written by serde's `de::Error::unknown_field`): the key, and the keys the
/// table takes.
pub(super) fn unknown_field(message: &str) -> Option<(&str, Vec<&str>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, expected) = rest.split_once('`')?;
    let known = expected.split('`').skip(1).step_by(2).collect();
    Some((field, known))
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
pub(super) fn suggest<'k>(unknown: &str, known: &[&'k str]) -> Option<&'k str> {
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
