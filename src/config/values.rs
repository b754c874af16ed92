//! The config's value syntaxes, as pure functions: durations, MAC addresses, times of day,
//! door and interface names.

use std::time::Duration;

use super::LocalTime;

/// What a duration looks like, for error messages.
pub(super) const DURATION_HELP: &str =
    "a duration such as \"500ms\", \"30s\", \"10m\", \"1h\", \"1d\" or \"1h30m\"";

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

/// Checks a door name: 1 to 127 characters, no control characters.
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
