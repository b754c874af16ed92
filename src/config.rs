//! knockgate's configuration: the validated [`Config`] the daemon runs on.
//!
//! The TOML file is read into raw serde structs (`deny_unknown_fields`), then validated into
//! these types; after validation nothing in a `Config` can be out of range (ports are 1..=65535,
//! sequences have 1 to 32 steps, durations are positive, command templates split cleanly).
//! Every error names the file, the line and the key, and says what would be valid.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::knock::{FlagRule, KnockSpec};

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

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this came from, or `<built-in>`.
    pub origin: String,
    pub daemon: Daemon,
    pub doors: Vec<Door>,
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
}

/// A door: a knock sequence and what happens when a source completes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Door {
    pub name: String,
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

impl Door {
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
