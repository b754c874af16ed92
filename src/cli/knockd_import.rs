//! Converts a knockd.conf into knockgate's TOML config.
//!
//! The reader follows knockd 0.8's `parseconfig()` line by line: lines are trimmed, empty lines
//! and lines starting with `#` are skipped (a `#` later in a line is part of the value, as in
//! knockd), `[options]` (exactly that) holds the globals and every other `[name]` starts a door,
//! `key = value` is split at the first `=`, keys are case-insensitive, `UseSyslog` has no `=`,
//! a later `Sequence` replaces an earlier one and `TCPFlags` lines add up flag by flag.
//!
//! Where knockd silently accepts garbage (`atoi`: `Seq_Timeout = xyz` is 0, port `abc` is 0,
//! `-1` is 65535, `7000/udp` is TCP port 7000) the import fails with the line. knockd runs
//! commands with `sh -c`; knockgate splits them into words without a shell, so a command that
//! uses shell syntax is wrapped in `sh -c '...'` and the output says so.
//!
//! Invariant: the returned text is accepted by [`config::parse`] (checked before returning) and
//! carries every setting of the knockd file.

use std::net::IpAddr;

use crate::config::{self, CommandTemplate};
use crate::knock::{FlagRule, KnockSpec, Proto, TcpFlags};

/// An error in a knockd.conf: the file, the 1-based line and what is wrong and what would be
/// valid. Fix the knockd.conf line (knockd itself would have misread or refused it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ImportError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Converts the knockd.conf `text` (named `origin` in errors and in the output's header) into
/// knockgate TOML.
pub fn import(text: &str, origin: &str) -> Result<String, ImportError> {
    let knockd = read(text, origin)?;
    let out = write(&knockd, origin);
    // The output must be a valid knockgate config; map any error back to the knockd line.
    if let Err(e) = config::parse(&out.text, origin) {
        let line = e
            .line
            .and_then(|l| out.source.get(l - 1).copied())
            .unwrap_or(knockd.last_line);
        return Err(ImportError {
            file: origin.to_string(),
            line,
            message: format!("cannot be converted: {}", e.message),
        });
    }
    Ok(out.text)
}

/// A value and the line it came from.
#[derive(Debug, Clone)]
struct At<T> {
    line: usize,
    value: T,
}

#[derive(Debug, Default)]
struct Knockd {
    use_syslog: Option<usize>,
    log_file: Option<At<String>>,
    pid_file: Option<At<String>>,
    interface: Option<At<String>>,
    doors: Vec<KnockdDoor>,
    /// The number of lines in the file, for errors about the whole file.
    last_line: usize,
}

#[derive(Debug, Default)]
struct KnockdDoor {
    name: String,
    line: usize,
    sequence: Option<At<Vec<KnockSpec>>>,
    one_time_sequences: Option<At<String>>,
    seq_timeout: Option<At<u64>>,
    /// Per flag (in [`TcpFlags::NAMES`] order): Some(true) = must be set, Some(false) = must
    /// be clear; knockd's DONT_CARE / SET / NOT_SET.
    flags: [Option<bool>; 6],
    flags_line: Option<usize>,
    target: Option<At<IpAddr>>,
    start_command: Option<At<String>>,
    start_command_6: Option<At<String>>,
    stop_command: Option<At<String>>,
    stop_command_6: Option<At<String>>,
    cmd_timeout: Option<At<u64>>,
    /// Keys given more than once (knockd keeps the last), for a note in the output.
    repeated: Vec<(String, usize)>,
}

const DOOR_KEYS: &str = "Sequence, One_Time_Sequences, Seq_Timeout (or Timeout), TCPFlags, Target, \
Start_Command (or Command), Start_Command_6 (or Command_6), Stop_Command, Stop_Command_6, Cmd_Timeout";
const GLOBAL_KEYS: &str = "UseSyslog, LogFile, PidFile or Interface";

/// C's isspace() in the "C" locale, which knockd's trim() uses.
const C_SPACE: [char; 6] = [' ', '\t', '\n', '\r', '\x0b', '\x0c'];

fn trim(s: &str) -> &str {
    s.trim_matches(C_SPACE)
}

fn read(text: &str, origin: &str) -> Result<Knockd, ImportError> {
    let err = |line: usize, message: String| ImportError {
        file: origin.to_string(),
        line,
        message,
    };
    let mut k = Knockd::default();
    // None before the first section; Some(None) in [options]; Some(Some(i)) in door i.
    let mut section: Option<Option<usize>> = None;

    for (i, raw_line) in text.lines().enumerate() {
        let n = i + 1;
        k.last_line = n;
        let line = trim(raw_line);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.len() >= 2 && line.starts_with('[') && line.ends_with(']') {
            if let Some(Some(d)) = section {
                check_door(&k.doors[d], origin)?;
            }
            let name = &line[1..line.len() - 1];
            if name.is_empty() {
                return Err(err(n, "bad section name: `[]` names nothing".to_string()));
            }
            if name == "options" {
                section = Some(None);
                continue;
            }
            config::check_door_name(name)
                .map_err(|m| err(n, format!("section `[{name}]`: {m}")))?;
            if let Some(other) = k.doors.iter().find(|d| d.name == name) {
                return Err(err(
                    n,
                    format!(
                        "door `{name}` is already defined on line {}: knockgate needs unique door names, rename one",
                        other.line
                    ),
                ));
            }
            k.doors.push(KnockdDoor {
                name: name.to_string(),
                line: n,
                ..KnockdDoor::default()
            });
            section = Some(Some(k.doors.len() - 1));
            continue;
        }

        if line.starts_with('[') {
            return Err(err(
                n,
                format!("malformed section header `{line}`: a section header must be alone on its line, like `[openSSH]` (knockd has no comments after a header or a value)"),
            ));
        }
        // A directive.
        let Some(section) = section else {
            return Err(err(
                n,
                "all directives must belong to a section: put `[options]` or a `[door name]` line before it"
                    .to_string(),
            ));
        };
        let Some((key, value)) = line.split_once('=') else {
            if trim(line).eq_ignore_ascii_case("usesyslog") {
                k.use_syslog = Some(n);
                continue;
            }
            return Err(err(
                n,
                format!("syntax error in `{line}`: expected `Key = value` (only UseSyslog stands alone)"),
            ));
        };
        let key = trim(key).to_ascii_uppercase();
        let value = trim(value);
        match section {
            None => match key.as_str() {
                "LOGFILE" => {
                    k.log_file = Some(At {
                        line: n,
                        value: value.to_string(),
                    })
                }
                "PIDFILE" => {
                    k.pid_file = Some(At {
                        line: n,
                        value: value.to_string(),
                    })
                }
                // knockd keeps the first Interface (it only sets an empty one).
                "INTERFACE" => {
                    if k.interface.is_none() {
                        config::check_interface_name(value)
                            .map_err(|m| err(n, format!("Interface: {m}")))?;
                        k.interface = Some(At {
                            line: n,
                            value: value.to_string(),
                        });
                    }
                }
                "USESYSLOG" => {
                    return Err(err(
                        n,
                        "UseSyslog takes no value: write `UseSyslog` alone on its line".to_string(),
                    ))
                }
                _ => {
                    let hint = if is_door_key(&key) {
                        format!(
                            " (`{}` belongs in a door section, not in [options])",
                            trim(line.split('=').next().unwrap_or(""))
                        )
                    } else {
                        String::new()
                    };
                    return Err(err(
                        n,
                        format!(
                            "unknown global option `{}`: expected {GLOBAL_KEYS}{hint}",
                            trim(line.split('=').next().unwrap_or(""))
                        ),
                    ));
                }
            },
            Some(d) => {
                let door = &mut k.doors[d];
                let shown = trim(line.split('=').next().unwrap_or("")).to_string();
                door_directive(door, &key, &shown, value, n).map_err(|m| err(n, m))?;
            }
        }
    }
    if let Some(Some(d)) = section {
        check_door(&k.doors[d], origin)?;
    }
    if k.doors.is_empty() {
        return Err(err(
            k.last_line.max(1),
            "no door sections: add a section such as `[openSSH]` with a Sequence (knockd would watch nothing)"
                .to_string(),
        ));
    }
    Ok(k)
}

fn is_door_key(upper: &str) -> bool {
    matches!(
        upper,
        "SEQUENCE"
            | "ONE_TIME_SEQUENCES"
            | "SEQ_TIMEOUT"
            | "TIMEOUT"
            | "TCPFLAGS"
            | "TARGET"
            | "START_COMMAND"
            | "COMMAND"
            | "START_COMMAND_6"
            | "COMMAND_6"
            | "STOP_COMMAND"
            | "STOP_COMMAND_6"
            | "CMD_TIMEOUT"
    )
}

/// One `Key = value` line in a door section.
fn door_directive(
    door: &mut KnockdDoor,
    key: &str,
    shown: &str,
    value: &str,
    n: usize,
) -> Result<(), String> {
    let at = |v: String| Some(At { line: n, value: v });
    let repeated = |was_set: bool, canonical: &str, list: &mut Vec<(String, usize)>| {
        if was_set {
            list.push((canonical.to_string(), n));
        }
    };
    match key {
        "SEQUENCE" => {
            repeated(door.sequence.is_some(), "Sequence", &mut door.repeated);
            door.sequence = Some(At {
                line: n,
                value: parse_sequence(value)?,
            });
        }
        "ONE_TIME_SEQUENCES" => {
            if value.is_empty() {
                return Err(
                    "One_Time_Sequences: empty path: expected the file of sequences".to_string(),
                );
            }
            repeated(
                door.one_time_sequences.is_some(),
                "One_Time_Sequences",
                &mut door.repeated,
            );
            door.one_time_sequences = at(value.to_string());
        }
        "SEQ_TIMEOUT" | "TIMEOUT" => {
            repeated(
                door.seq_timeout.is_some(),
                "Seq_Timeout",
                &mut door.repeated,
            );
            door.seq_timeout = Some(At {
                line: n,
                value: parse_seconds(shown, value)?,
            });
        }
        "CMD_TIMEOUT" => {
            repeated(
                door.cmd_timeout.is_some(),
                "Cmd_Timeout",
                &mut door.repeated,
            );
            door.cmd_timeout = Some(At {
                line: n,
                value: parse_seconds(shown, value)?,
            });
        }
        "TCPFLAGS" => {
            for word in value.split(',') {
                let w = trim(word);
                let (negated, name) = match w.strip_prefix('!') {
                    Some(rest) => (true, rest),
                    None => (false, w),
                };
                let Some(i) = TcpFlags::NAMES
                    .iter()
                    .position(|(f, _)| f.eq_ignore_ascii_case(name))
                else {
                    return Err(format!(
                        "TCPFlags: unrecognized flag `{w}`: expected a comma-separated list of fin, syn, rst, psh, ack, urg, each optionally prefixed with `!`"
                    ));
                };
                door.flags[i] = Some(!negated);
            }
            door.flags_line = Some(n);
        }
        "TARGET" => {
            let ip = value.parse::<IpAddr>().map_err(|_| {
                format!("Target `{value}` is not an IP address: expected an address such as 192.168.1.20 (knockgate does not resolve host names)")
            })?;
            repeated(door.target.is_some(), "Target", &mut door.repeated);
            door.target = Some(At { line: n, value: ip });
        }
        "START_COMMAND" | "COMMAND" => {
            repeated(
                door.start_command.is_some(),
                "Start_Command",
                &mut door.repeated,
            );
            door.start_command = at(value.to_string());
        }
        "START_COMMAND_6" | "COMMAND_6" => {
            repeated(
                door.start_command_6.is_some(),
                "Start_Command_6",
                &mut door.repeated,
            );
            door.start_command_6 = at(value.to_string());
        }
        "STOP_COMMAND" => {
            repeated(
                door.stop_command.is_some(),
                "Stop_Command",
                &mut door.repeated,
            );
            door.stop_command = at(value.to_string());
        }
        "STOP_COMMAND_6" => {
            repeated(
                door.stop_command_6.is_some(),
                "Stop_Command_6",
                &mut door.repeated,
            );
            door.stop_command_6 = at(value.to_string());
        }
        "LOGFILE" | "PIDFILE" | "INTERFACE" => {
            let case_note = if door.name.eq_ignore_ascii_case("options") {
                format!("; knockd treats only `[options]` in lowercase as the global section, so `[{}]` is a door", door.name)
            } else {
                String::new()
            };
            return Err(format!(
                "`{shown}` is a global option: it belongs in the [options] section{case_note}"
            ));
        }
        _ => {
            return Err(format!(
                "unknown door key `{shown}`: expected one of {DOOR_KEYS}"
            ))
        }
    }
    Ok(())
}

/// knockd's `atoi()`, to say in errors what knockd would have made of a value.
fn atoi(s: &str) -> i64 {
    let s = s.trim_start_matches(C_SPACE);
    let (sign, digits) = match s.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, s.strip_prefix('+').unwrap_or(s)),
    };
    let mut v: i64 = 0;
    for b in digits.bytes().take_while(u8::is_ascii_digit) {
        v = v.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    sign * v
}

/// A whole number of seconds, 1 or more (knockd's atoi would take anything).
fn parse_seconds(shown: &str, value: &str) -> Result<u64, String> {
    const MAX: u64 = i32::MAX as u64;
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        match value.parse::<u64>() {
            Ok(0) => {
                return Err(format!(
                    "{shown} = 0: a timeout of zero is not allowed: expected a whole number of seconds from 1 to {MAX}"
                ))
            }
            Ok(s) if s <= MAX => return Ok(s),
            _ => {}
        }
    }
    Err(format!(
        "{shown}: `{value}` is not a whole number of seconds (knockd would read it as {}): expected a whole number from 1 to {MAX}",
        atoi(value)
    ))
}

/// `port[:tcp|udp],...`, 1 to 32 steps.
fn parse_sequence(value: &str) -> Result<Vec<KnockSpec>, String> {
    let mut steps = Vec::new();
    for (i, item) in value.split(',').enumerate() {
        let mut parts = item.split(':');
        let port_text = trim(parts.next().unwrap_or(""));
        let proto_text = parts.next().map(trim);
        if let Some(extra) = parts.next() {
            return Err(format!(
                "Sequence step {}: `{}` has an extra `:{extra}`: expected port or port:tcp or port:udp",
                i + 1,
                trim(item)
            ));
        }
        let port = match port_text.parse::<u16>() {
            Ok(p) if p != 0 && port_text.bytes().all(|b| b.is_ascii_digit()) => p,
            _ => {
                let knockd = atoi(port_text);
                let reading = if knockd > 65535 {
                    "knockd refuses it".to_string()
                } else {
                    // Truncated to an unsigned short, as knockd does.
                    format!("knockd would read it as port {}", knockd.rem_euclid(65536))
                };
                let hint = if port_text.contains('/') {
                    " (knockd separates the protocol with `:`, as in 7000:udp)"
                } else if port_text.is_empty() {
                    " (a doubled or trailing comma?)"
                } else {
                    ""
                };
                return Err(format!(
                    "Sequence step {}: invalid port `{port_text}` ({reading}){hint}: expected a whole number from 1 to 65535",
                    i + 1
                ));
            }
        };
        let proto = match proto_text {
            None => Proto::Tcp,
            Some(p) => Proto::parse(p, p).map_err(|e| format!("Sequence step {}: {e}", i + 1))?,
        };
        steps.push(KnockSpec { port, proto });
    }
    if steps.len() > config::MAX_SEQUENCE_LEN {
        return Err(format!(
            "Sequence has {} steps: expected 1 to {}",
            steps.len(),
            config::MAX_SEQUENCE_LEN
        ));
    }
    Ok(steps)
}

/// What knockd checks once a door's section ends, and what knockgate adds.
fn check_door(door: &KnockdDoor, origin: &str) -> Result<(), ImportError> {
    let err = |line: usize, message: String| ImportError {
        file: origin.to_string(),
        line,
        message,
    };
    match (&door.sequence, &door.one_time_sequences) {
        (None, None) => {
            return Err(err(
                door.line,
                format!("door `{}` has no Sequence: add `Sequence = 7000,8000,9000` (or One_Time_Sequences = /path/to/file)", door.name),
            ))
        }
        (Some(s), Some(o)) => {
            return Err(err(
                s.line.max(o.line),
                format!("door `{}` has both Sequence and One_Time_Sequences: knockd mixes them unpredictably, keep one", door.name),
            ))
        }
        _ => {}
    }
    let non_empty = |c: &Option<At<String>>| c.as_ref().is_some_and(|c| !c.value.is_empty());
    let start4 = non_empty(&door.start_command);
    let start6 = match &door.start_command_6 {
        Some(c) => !c.value.is_empty(),
        None => start4,
    };
    if let Some(stop) = door.stop_command.as_ref().filter(|c| !c.value.is_empty()) {
        if !start4 && !start6 {
            return Err(err(
                stop.line,
                "Stop_Command without a Start_Command: knockd never runs it (it runs Cmd_Timeout seconds after the start command); add a Start_Command or remove this line".to_string(),
            ));
        }
    }
    if let Some(stop) = door.stop_command_6.as_ref().filter(|c| !c.value.is_empty()) {
        if !start6 {
            return Err(err(
                stop.line,
                "Stop_Command_6 without a start command for IPv6 (Start_Command_6, or Start_Command when Start_Command_6 is not set): knockd never runs it".to_string(),
            ));
        }
    }
    for c in [
        &door.start_command,
        &door.start_command_6,
        &door.stop_command,
        &door.stop_command_6,
    ]
    .into_iter()
    .flatten()
    {
        if !c.value.is_empty() && !needs_shell(&c.value) {
            CommandTemplate::parse(&c.value).map_err(|m| {
                err(
                    c.line,
                    format!("{m} (knockd's `sh -c` would fail on it too)"),
                )
            })?;
        }
    }
    Ok(())
}

/// Whether a command uses shell syntax, so that splitting it into words without a shell would
/// change its meaning. Conservative: a false positive only costs an `sh -c` (which is what
/// knockd always did).
pub(crate) fn needs_shell(cmd: &str) -> bool {
    const SPECIAL: &[char] = &[
        ';', '|', '&', '>', '<', '$', '`', '(', ')', '*', '?', '[', '\n',
    ];
    if cmd.contains(SPECIAL) || cmd.contains("2>") {
        return true;
    }
    let mut words = cmd.split_whitespace();
    // `NAME=value cmd` sets a variable in a shell.
    if let Some(first) = words.clone().next() {
        if let Some((name, _)) = first.split_once('=') {
            let mut chars = name.chars();
            if chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return true;
            }
        }
    }
    // `~` (home directory) and `#` (comment) only mean something at the start of a word.
    words.any(|w| w.starts_with('~') || w.starts_with('#'))
}

/// `sh -c '<cmd>'`, with the single quotes inside `cmd` escaped as `'\''`.
pub(crate) fn wrap_in_sh(cmd: &str) -> String {
    format!("sh -c '{}'", cmd.replace('\'', r"'\''"))
}

/// A TOML string for `s`, quoted by the toml crate (a literal string `'...'` where that avoids
/// escapes, else a basic string with escapes).
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The output text and, for each of its lines, the knockd line it came from.
struct Output {
    text: String,
    source: Vec<usize>,
}

impl Output {
    fn line(&mut self, source: usize, text: impl AsRef<str>) {
        for l in text.as_ref().split('\n') {
            self.text.push_str(l);
            self.text.push('\n');
            self.source.push(source);
        }
    }
}

fn write(k: &Knockd, origin: &str) -> Output {
    let mut o = Output {
        text: String::new(),
        source: Vec::new(),
    };
    let one_line = |s: &str| s.replace(['\n', '\r'], " ");
    o.line(
        1,
        format!(
            "# knockgate configuration converted from {} (knockd.conf).",
            one_line(origin)
        ),
    );
    o.line(
        1,
        "# Every key is documented in knockgate's examples/knockgate.toml; check the comments below.",
    );
    o.line(1, "");
    o.line(1, "[daemon]");
    match &k.interface {
        Some(i) => o.line(i.line, format!("interfaces = [{}]", toml_str(&i.value))),
        None => {
            o.line(1, "# knockd listened on eth0 (or the interface given with -i). knockgate listens on every");
            o.line(
                1,
                "# interface that is up; to keep knockd's behaviour write: interfaces = [\"eth0\"]",
            );
            o.line(1, "interfaces = \"auto\"");
        }
    }
    if let Some(n) = k.use_syslog {
        o.line(n, "syslog = true");
    }
    if let Some(f) = &k.log_file {
        if f.value.is_empty() {
            o.line(
                f.line,
                "# knockd: LogFile was empty (no log file); knockgate logs to stderr.",
            );
        } else {
            o.line(f.line, format!("log_file = {}", toml_str(&f.value)));
        }
    }
    if let Some(f) = &k.pid_file {
        if f.value.is_empty() {
            o.line(
                f.line,
                "# knockd: PidFile was empty; no pid file is written.",
            );
        } else {
            o.line(f.line, format!("pid_file = {}", toml_str(&f.value)));
        }
    }
    for d in &k.doors {
        write_door(&mut o, d);
    }
    o
}

fn write_door(o: &mut Output, d: &KnockdDoor) {
    o.line(d.line, "");
    o.line(d.line, "[[door]]");
    o.line(d.line, format!("name = {}", toml_str(&d.name)));
    for (key, line) in &d.repeated {
        o.line(
            *line,
            format!("# knockd: {key} is given more than once; the last one (line {line}) counts."),
        );
    }
    if let Some(s) = &d.sequence {
        let steps: Vec<String> = s.value.iter().map(|k| toml_str(&k.to_string())).collect();
        o.line(s.line, format!("sequence = [{}]", steps.join(", ")));
    }
    if let Some(f) = &d.one_time_sequences {
        o.line(
            f.line,
            format!("one_time_sequences = {}", toml_str(&f.value)),
        );
    }
    if let Some(t) = &d.seq_timeout {
        o.line(t.line, format!("seq_timeout = \"{}s\"", t.value));
    }
    match d.flags_line {
        Some(line) => {
            let mut rule = FlagRule::ANY;
            for ((_, bit), state) in TcpFlags::NAMES.iter().zip(d.flags) {
                match state {
                    Some(true) => rule.set |= bit,
                    Some(false) => rule.unset |= bit,
                    None => {}
                }
            }
            o.line(line, format!("tcp_flags = \"{rule}\""));
        }
        None => {
            o.line(
                d.line,
                "# knockd had no TCPFlags here, so TCP knocks with any flags counted; \"syn,!ack\"",
            );
            o.line(d.line, "# (connection attempts only) is recommended: stray SSH or web traffic to a knock port");
            o.line(d.line, "# then cannot reset the sequence.");
            o.line(d.line, "tcp_flags = \"any\"");
        }
    }
    if let Some(t) = &d.target {
        o.line(t.line, format!("target = \"{}\"", t.value));
    }
    write_command(o, "start_command", &d.start_command, false);
    write_command(o, "start_command_6", &d.start_command_6, true);
    write_command(o, "stop_command", &d.stop_command, false);
    write_command(o, "stop_command_6", &d.stop_command_6, true);
    if let Some(t) = &d.cmd_timeout {
        o.line(t.line, format!("cmd_timeout = \"{}s\"", t.value));
    }
}

fn write_command(o: &mut Output, key: &str, cmd: &Option<At<String>>, may_be_empty: bool) {
    let Some(c) = cmd else { return };
    if c.value.is_empty() {
        if may_be_empty {
            o.line(
                c.line,
                format!("{key} = \"\"   # empty: nothing runs for IPv6 knockers"),
            );
        } else {
            o.line(
                c.line,
                format!("# knockd: {key} was empty, so nothing ran; left out."),
            );
        }
        return;
    }
    if c.value.contains("%DOOR%") {
        o.line(
            c.line,
            "# note: knockgate replaces %DOOR% with the door name; knockd passed it on as is.",
        );
    }
    if needs_shell(&c.value) {
        o.line(c.line, "# knockd ran this through `sh -c` and it uses shell syntax, so it runs through `sh -c` here too.");
        o.line(
            c.line,
            format!("{key} = {}", toml_str(&wrap_in_sh(&c.value))),
        );
    } else {
        o.line(c.line, format!("{key} = {}", toml_str(&c.value)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{
        Command6, Config, Door, Interfaces, DEFAULT_CMD_TIMEOUT, DEFAULT_SEQ_TIMEOUT,
    };
    use std::path::Path;
    use std::time::Duration;

    /// Imports, then parses the output as knockgate config (the round trip every import must
    /// survive).
    fn convert(knockd: &str) -> (String, Config) {
        let toml =
            import(knockd, "knockd.conf").unwrap_or_else(|e| panic!("{e}\n--- input:\n{knockd}"));
        let config =
            config::parse(&toml, "out.toml").unwrap_or_else(|e| panic!("{e}\n--- output:\n{toml}"));
        (toml, config)
    }

    fn door<'a>(c: &'a Config, name: &str) -> &'a Door {
        c.doors
            .iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("no door {name}"))
    }

    fn argv(c: &Option<CommandTemplate>) -> Vec<String> {
        c.as_ref().expect("a command").argv.clone()
    }

    fn words(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_string).collect()
    }

    // `man knockd`, example #1.
    const MAN_EXAMPLE_1: &str = "\
[options]
     logfile = /var/log/knockd.log

[openSSH]
     sequence    = 7000,8000,9000
     seq_timeout = 10
     tcpflags    = syn
     command     = /sbin/iptables -A INPUT -s %IP% --dport 22 -j ACCEPT

[closeSSH]
     sequence    = 9000,8000,7000
     seq_timeout = 10
     tcpflags    = syn
     command     = /sbin/iptables -D INPUT -s %IP% --dport 22 -j ACCEPT
";

    // `man knockd`, example #2.
    const MAN_EXAMPLE_2: &str = "\
[options]
     logfile = /var/log/knockd.log

[opencloseSSH]
     sequence      = 2222:udp,3333:tcp,4444:udp
     seq_timeout   = 15
     tcpflags      = syn,ack
     start_command = /usr/sbin/iptables -A INPUT -s %IP% -p tcp --syn -j ACCEPT
     cmd_timeout   = 5
     stop_command  = /usr/sbin/iptables -D INPUT -s %IP% -p tcp --syn -j ACCEPT
";

    // `man knockd`, example #3.
    const MAN_EXAMPLE_3: &str = "\
[options]
     logfile = /var/log/knockd.log

[opencloseSMTP]
     one_time_sequences = /etc/knockd/smtp_sequences
     seq_timeout        = 15
     tcpflags           = fin,!ack
     start_command      = /usr/sbin/iptables -A INPUT -s %IP% -p tcp --dport 25 -j ACCEPT
     cmd_timeout        = 5
     stop_command       = /usr/sbin/iptables -D INPUT -s %IP% -p tcp --dport 25 -j ACCEPT
";

    // `man knockd`, example #4.
    const MAN_EXAMPLE_4: &str = "\
[options]
     logfile = /var/log/knockd.log

[opencloseSMTP]
     one_time_sequences = /etc/knockd/smtp_sequences
     seq_timeout        = 15
     tcpflags           = fin,!ack
     start_command      = /usr/sbin/iptables -A INPUT -s %IP% -p tcp --dport 25 -j ACCEPT
     start_command_6    = /usr/sbin/ip6tables -A INPUT -s %IP% -p tcp --dport 25 -j ACCEPT
     cmd_timeout        = 5
     stop_command       = /usr/sbin/iptables -D INPUT -s %IP% -p tcp --dport 25 -j ACCEPT
     stop_command_6     = /usr/sbin/ip6tables -D INPUT -s %IP% -p tcp --dport 25 -j ACCEPT
";

    // Debian's /etc/knockd.conf (knockd 0.8), tabs and all.
    const DEBIAN_DEFAULT: &str = "[options]
\tUseSyslog

[openSSH]
\tsequence    = 7000,8000,9000
\tseq_timeout = 5
\tcommand     = /sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
\ttcpflags    = syn

[closeSSH]
\tsequence    = 9000,8000,7000
\tseq_timeout = 5
\tcommand     = /sbin/iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
\ttcpflags    = syn

[openHTTPS]
\tsequence    = 12345,54321,24680,13579
\tseq_timeout = 5
\tcommand     = /usr/local/sbin/knock_add -i -c INPUT -p tcp -d 443 -f %IP%
\ttcpflags    = syn
";

    #[test]
    fn man_page_example_1_open_close_ssh() {
        let (_, c) = convert(MAN_EXAMPLE_1);
        assert_eq!(
            c.daemon.log_file.as_deref(),
            Some(Path::new("/var/log/knockd.log"))
        );
        assert!(!c.daemon.syslog);
        assert_eq!(c.daemon.interfaces, Interfaces::Auto);
        assert_eq!(c.doors.len(), 2);
        let open = door(&c, "openSSH");
        assert_eq!(
            open.sequence,
            vec![
                KnockSpec::tcp(7000),
                KnockSpec::tcp(8000),
                KnockSpec::tcp(9000)
            ]
        );
        assert_eq!(open.seq_timeout, Duration::from_secs(10));
        assert_eq!(
            open.tcp_flags,
            FlagRule {
                set: TcpFlags::SYN,
                unset: 0
            }
        );
        assert_eq!(
            argv(&open.start_command),
            words("/sbin/iptables -A INPUT -s %IP% --dport 22 -j ACCEPT")
        );
        assert_eq!(open.start_command_6, Command6::Inherit);
        assert_eq!(open.stop_command, None);
        assert_eq!(open.cmd_timeout, DEFAULT_CMD_TIMEOUT);
        let close = door(&c, "closeSSH");
        assert_eq!(
            close.sequence,
            vec![
                KnockSpec::tcp(9000),
                KnockSpec::tcp(8000),
                KnockSpec::tcp(7000)
            ]
        );
        assert_eq!(argv(&close.start_command)[1], "-D");
    }

    #[test]
    fn man_page_example_2_start_stop_with_cmd_timeout() {
        let (_, c) = convert(MAN_EXAMPLE_2);
        let d = door(&c, "opencloseSSH");
        assert_eq!(
            d.sequence,
            vec![
                KnockSpec::udp(2222),
                KnockSpec::tcp(3333),
                KnockSpec::udp(4444)
            ]
        );
        assert_eq!(d.seq_timeout, Duration::from_secs(15));
        assert_eq!(
            d.tcp_flags,
            FlagRule {
                set: TcpFlags::SYN | TcpFlags::ACK,
                unset: 0
            }
        );
        assert_eq!(
            argv(&d.start_command),
            words("/usr/sbin/iptables -A INPUT -s %IP% -p tcp --syn -j ACCEPT")
        );
        assert_eq!(
            argv(&d.stop_command),
            words("/usr/sbin/iptables -D INPUT -s %IP% -p tcp --syn -j ACCEPT")
        );
        assert_eq!(d.cmd_timeout, Duration::from_secs(5));
    }

    #[test]
    fn man_page_example_3_one_time_sequences() {
        let (_, c) = convert(MAN_EXAMPLE_3);
        let d = door(&c, "opencloseSMTP");
        assert_eq!(
            d.one_time_sequences.as_deref(),
            Some(Path::new("/etc/knockd/smtp_sequences"))
        );
        assert!(d.sequence.is_empty());
        assert_eq!(
            d.tcp_flags,
            FlagRule {
                set: TcpFlags::FIN,
                unset: TcpFlags::ACK
            }
        );
        assert_eq!(d.seq_timeout, Duration::from_secs(15));
        assert_eq!(d.cmd_timeout, Duration::from_secs(5));
        assert!(argv(&d.start_command).contains(&"25".to_string()));
        assert_eq!(argv(&d.stop_command)[1], "-D");
    }

    #[test]
    fn man_page_example_4_ipv6_commands() {
        let (_, c) = convert(MAN_EXAMPLE_4);
        let d = door(&c, "opencloseSMTP");
        let v6 = |c: &Command6| match c {
            Command6::Set(t) => t.argv.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            v6(&d.start_command_6),
            words("/usr/sbin/ip6tables -A INPUT -s %IP% -p tcp --dport 25 -j ACCEPT")
        );
        assert_eq!(
            v6(&d.stop_command_6),
            words("/usr/sbin/ip6tables -D INPUT -s %IP% -p tcp --dport 25 -j ACCEPT")
        );
        assert_eq!(d.start_for(false).unwrap().argv[0], "/usr/sbin/iptables");
    }

    #[test]
    fn debian_default_config() {
        let (toml, c) = convert(DEBIAN_DEFAULT);
        assert!(c.daemon.syslog);
        assert_eq!(c.daemon.log_file, None);
        let names: Vec<&str> = c.doors.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["openSSH", "closeSSH", "openHTTPS"]);
        for d in &c.doors {
            assert_eq!(d.seq_timeout, Duration::from_secs(5));
            assert_eq!(
                d.tcp_flags,
                FlagRule {
                    set: TcpFlags::SYN,
                    unset: 0
                }
            );
        }
        let https = door(&c, "openHTTPS");
        assert_eq!(
            https.sequence,
            [12345, 54321, 24680, 13579].map(KnockSpec::tcp).to_vec()
        );
        assert_eq!(
            argv(&https.start_command),
            words("/usr/local/sbin/knock_add -i -c INPUT -p tcp -d 443 -f %IP%")
        );
        // No shell syntax anywhere: nothing is wrapped.
        assert!(!toml.contains("sh -c"), "{toml}");
    }

    #[test]
    fn door_without_tcpflags_matches_any_flags_and_says_so() {
        let (toml, c) = convert("[d]\nsequence = 1,2\n");
        assert_eq!(c.doors[0].tcp_flags, FlagRule::ANY);
        assert!(toml.contains("tcp_flags = \"any\""), "{toml}");
        assert!(
            toml.contains("\"syn,!ack\"") && toml.contains("recommended"),
            "{toml}"
        );
        assert_eq!(c.doors[0].seq_timeout, DEFAULT_SEQ_TIMEOUT);
    }

    #[test]
    fn every_key_case_insensitive_with_aliases_and_globals() {
        let (toml, c) = convert(
            "# a comment\n\
             [options]\n\
             USESYSLOG\n\
             LogFile=/var/log/k.log\n\
             pidfile = /run/knockd.pid\n\
             Interface = wlan0\n\
             interface = eth9\n\
             [wake]\n\
             SEQUENCE = 9:UDP , 7:udp,9:Udp\n\
             Timeout = 12\n\
             TCPFLAGS = SYN\n\
             tcpflags = !ack,urg\n\
             Target = 192.168.1.20\n\
             Command = etherwake -i eth0 00:11:22:33:44:55\n\
             Command_6 =\n\
             Stop_Command = logger -t knockd \"woke %IP%\"\n\
             Stop_Command_6 =\n\
             Cmd_Timeout = 60\n",
        );
        let dm = &c.daemon;
        assert!(dm.syslog);
        assert_eq!(dm.log_file.as_deref(), Some(Path::new("/var/log/k.log")));
        assert_eq!(dm.pid_file.as_deref(), Some(Path::new("/run/knockd.pid")));
        // knockd keeps the first Interface.
        assert_eq!(dm.interfaces, Interfaces::Named(vec!["wlan0".into()]));
        let d = &c.doors[0];
        assert_eq!(d.sequence, [9, 7, 9].map(KnockSpec::udp).to_vec());
        assert_eq!(d.seq_timeout, Duration::from_secs(12));
        // TCPFlags lines add up.
        assert_eq!(
            d.tcp_flags,
            FlagRule {
                set: TcpFlags::SYN | TcpFlags::URG,
                unset: TcpFlags::ACK
            }
        );
        assert_eq!(d.target, Some("192.168.1.20".parse().unwrap()));
        assert_eq!(argv(&d.start_command)[0], "etherwake");
        assert_eq!(d.start_command_6, Command6::Disabled);
        assert_eq!(
            argv(&d.stop_command),
            ["logger", "-t", "knockd", "woke %IP%"]
        );
        assert_eq!(d.stop_command_6, Command6::Disabled);
        assert_eq!(d.cmd_timeout, Duration::from_secs(60));
        assert!(toml.contains("start_command_6 = \"\""), "{toml}");
    }

    #[test]
    fn shell_syntax_is_wrapped_in_sh_c() {
        let (toml, c) = convert(
            "[a]\nsequence = 1\n\
             start_command = echo 'it''s %IP%' | logger -t knock && touch /tmp/x 2>/dev/null\n\
             stop_command = cd ~/x\n",
        );
        let d = &c.doors[0];
        assert_eq!(
            argv(&d.start_command),
            [
                "sh",
                "-c",
                "echo 'it''s %IP%' | logger -t knock && touch /tmp/x 2>/dev/null"
            ]
        );
        assert_eq!(argv(&d.stop_command), ["sh", "-c", "cd ~/x"]);
        assert!(toml.contains("runs through `sh -c` here too"), "{toml}");
        // %IP% is still substituted inside the script.
        let vars = crate::config::Vars {
            ip: "192.0.2.9".parse().unwrap(),
            door: "a",
        };
        assert!(d.start_command.as_ref().unwrap().render(&vars)[2].contains("'it''s 192.0.2.9'"));
    }

    #[test]
    fn shell_detection() {
        for cmd in [
            "a; b",
            "a | b",
            "a && b",
            "a > f",
            "a < f",
            "echo $HOME",
            "echo `id`",
            "(a)",
            "ls *.log",
            "ls ?",
            "ls [ab]",
            "a 2>/dev/null",
            "cd ~",
            "cd ~/x",
            "a # comment",
            "FOO=1 cmd",
            "a\nb",
        ] {
            assert!(needs_shell(cmd), "{cmd:?}");
        }
        for cmd in [
            "/sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT",
            "logger -t knockd \"hello world\"",
            "iptables -m comment --comment a=b",
            "echo a~b c#d",
            "/usr/local/sbin/knock_add -i -c INPUT -p tcp -d 443 -f %IP%",
        ] {
            assert!(!needs_shell(cmd), "{cmd:?}");
        }
        assert_eq!(wrap_in_sh("echo 'a' b"), r"sh -c 'echo '\''a'\'' b'");
        assert_eq!(
            shell_words::split(&wrap_in_sh("echo 'a' \"b\" | c")).unwrap(),
            ["sh", "-c", "echo 'a' \"b\" | c"]
        );
    }

    #[test]
    fn later_sequence_replaces_earlier_and_is_noted() {
        let (toml, c) = convert("[a]\nsequence = 1,2\nsequence = 3:udp\n");
        assert_eq!(c.doors[0].sequence, vec![KnockSpec::udp(3)]);
        assert!(toml.contains("the last one (line 3) counts"), "{toml}");
    }

    #[test]
    fn empty_commands_follow_knockd() {
        // An empty Start_Command runs nothing in knockd: left out.
        let (toml, c) = convert("[a]\nsequence = 1\nstart_command =\nstart_command_6 = ip6 %IP%\n");
        let d = &c.doors[0];
        assert_eq!(d.start_command, None);
        assert!(d.start_for(false).is_none());
        assert_eq!(d.start_for(true).unwrap().argv[0], "ip6");
        assert!(toml.contains("start_command was empty"), "{toml}");
    }

    #[test]
    fn odd_but_valid_names_and_values_survive_toml_quoting() {
        let (_, c) = convert("[open \"the\" door\\]\nsequence = 1\ncommand = logger \"a\\\\b\"\n");
        assert_eq!(c.doors[0].name, "open \"the\" door\\");
        assert_eq!(argv(&c.doors[0].start_command), ["logger", "a\\b"]);
        // A `#` after a value is part of it, as in knockd; here it starts a shell comment.
        let (_, c) = convert("[a]\nsequence = 1\ncommand = logger hi # note\n");
        assert_eq!(
            argv(&c.doors[0].start_command),
            ["sh", "-c", "logger hi # note"]
        );
        // [Options] is not [options]: it is a door.
        let (_, c) = convert("[Options]\nsequence = 5\n");
        assert_eq!(c.doors[0].name, "Options");
    }

    #[test]
    fn toml_strings() {
        assert_eq!(toml_str("plain"), "\"plain\"");
        assert_eq!(toml_str("say \"hi\""), "'say \"hi\"'");
        for s in [
            "plain",
            "say \"hi\"",
            "it's \"x\" \\ ",
            "a\tb\u{1}",
            "'",
            "\\",
        ] {
            let doc = format!("v = {}", toml_str(s));
            let t: toml::Table = toml::from_str(&doc).unwrap();
            assert_eq!(t["v"].as_str(), Some(s), "{doc}");
        }
    }

    /// (knockd.conf, line, fragment of the message)
    const INVALID: &[(&str, usize, &str)] = &[
        ("sequence = 1\n", 1, "all directives must belong to a section"),
        ("# c\nUseSyslog\n[a]\nsequence = 1\n", 2, "all directives must belong to a section"),
        ("[a]\nsequence = 1\n[b]\nseq_timeout = 5\n", 3, "door `b` has no Sequence"),
        ("[options]\nlogfile = /x\n", 2, "no door sections"),
        ("[]\n", 1, "bad section name"),
        ("[a]\nsequence = 1\n[a]\nsequence = 2\n", 3, "already defined on line 1"),
        ("[a]\nsequence = 1\nfrobnicate = 2\n", 3, "unknown door key `frobnicate`"),
        ("[options]\nfrobnicate = 2\n", 2, "unknown global option `frobnicate`"),
        ("[options]\nsequence = 1\n", 2, "belongs in a door section"),
        ("[a]\nsequence = 1\nlogfile = /x\n", 3, "belongs in the [options] section"),
        ("[Options]\nlogfile = /x\n", 2, "only `[options]` in lowercase"),
        ("[options]\nUseSyslog = yes\n", 2, "UseSyslog takes no value"),
        ("[a]\nsequence 1\n", 2, "syntax error"),
        ("[a] # door\nsequence = 1\n", 1, "a section header must be alone on its line"),
        ("[a]\nsequence = 1\n[b\n", 3, "malformed section header `[b`"),
        ("[a]\n\n\nseq_timeout = xyz\nsequence = 1\n", 4, "`xyz` is not a whole number of seconds (knockd would read it as 0)"),
        ("[a]\nsequence = 1\nseq_timeout = 5s\n", 3, "knockd would read it as 5"),
        ("[a]\nsequence = 1\ntimeout = 0\n", 3, "a timeout of zero is not allowed"),
        ("[a]\nsequence = 1\ncommand = x\nstop_command = y\ncmd_timeout = -3\n", 5, "knockd would read it as -3"),
        ("[a]\nsequence = 7000,abc,9000\n", 2, "step 2: invalid port `abc` (knockd would read it as port 0)"),
        ("[a]\nsequence = -1\n", 2, "invalid port `-1` (knockd would read it as port 65535)"),
        ("[a]\nsequence = 70000\n", 2, "knockd refuses it"),
        ("[a]\nsequence = 0\n", 2, "invalid port `0`"),
        ("[a]\nsequence = 7000/udp\n", 2, "separates the protocol with `:`"),
        ("[a]\nsequence = 7000,\n", 2, "a doubled or trailing comma"),
        ("[a]\nsequence = 7000:icmp\n", 2, "unknown protocol `icmp`"),
        ("[a]\nsequence = 7000:tcp:x\n", 2, "extra `:x`"),
        ("[a]\nsequence = 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33\n", 2, "33 steps"),
        ("[a]\nsequence = 1\ntcpflags = syn,ecn\n", 3, "unrecognized flag `ecn`"),
        ("[a]\nsequence = 1\ntcpflags =\n", 3, "unrecognized flag ``"),
        ("[a]\nsequence = 1\ntarget = nas.lan\n", 3, "not an IP address"),
        ("[a]\nsequence = 1\nstop_command = y\n", 3, "Stop_Command without a Start_Command"),
        ("[a]\nsequence = 1\ncommand = x\ncommand_6 =\nstop_command_6 = y\n", 5, "Stop_Command_6 without a start command for IPv6"),
        ("[a]\nsequence = 1\none_time_sequences = /x\n", 3, "both Sequence and One_Time_Sequences"),
        ("[a]\nsequence = 1\ncommand = echo \"unbalanced\n", 3, "check the quotes"),
        ("[a]\nsequence = 1\n[options]\ninterface = eth0/1\n", 4, "invalid interface name"),
        ("", 1, "no door sections"),
    ];

    #[test]
    fn invalid_knockd_configs_name_the_line() {
        assert!(INVALID.len() >= 10);
        for (text, line, fragment) in INVALID {
            let e = match import(text, "/etc/knockd.conf") {
                Ok(out) => panic!("accepted:\n{text}\n--- output:\n{out}"),
                Err(e) => e,
            };
            assert_eq!(e.file, "/etc/knockd.conf");
            assert_eq!(e.line, *line, "\n{text}\n=> {e}");
            assert!(
                e.message.contains(fragment),
                "\n{text}\n=> {e}\nwanted: {fragment}"
            );
        }
    }

    /// Every prefix of knockd configs either converts to a valid config or fails with a line
    /// inside the text.
    #[test]
    fn truncated_knockd_configs_fail_cleanly() {
        for text in [DEBIAN_DEFAULT, MAN_EXAMPLE_2, MAN_EXAMPLE_4] {
            let lines = text.lines().count();
            for (cut, _) in text.char_indices() {
                match import(&text[..cut], "k.conf") {
                    Ok(out) => {
                        config::parse(&out, "out.toml").unwrap();
                    }
                    Err(e) => assert!((1..=lines).contains(&e.line), "{cut}: {e}"),
                }
            }
        }
    }

    #[test]
    fn long_door_name_is_refused_not_truncated() {
        let name = "d".repeat(128);
        let e = import(&format!("[{name}]\nsequence = 1\n"), "k.conf").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("expected 1 to 127 characters"), "{e}");
        let (_, c) = convert(&format!("[{}]\nsequence = 1\n", "d".repeat(127)));
        assert_eq!(c.doors[0].name.len(), 127);
    }

    #[test]
    fn error_display() {
        let e = import("[a]\nsequence = abc\n", "/etc/knockd.conf").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/knockd.conf:2: Sequence step 1: invalid port `abc` (knockd would read it as port 0): expected a whole number from 1 to 65535"
        );
    }
}
