//! One-time sequences: knockd's `One_Time_Sequences` file, done safely.
//!
//! The file has one sequence per line (`7000,8000:udp,9000` or `7000 8000/udp 9000`); blank
//! lines and lines starting with `#` are skipped. The first other line is the active sequence.
//! Once it opens the door it is commented out (a `#` is put in front of it) and the next line
//! becomes active. Unlike knockd:
//! - every line is validated when the file is loaded (an error names the file and line), so a
//!   bad line can never be "used" in place of a good one;
//! - the file is rewritten atomically and fsynced (temporary file, rename, directory fsync), so
//!   a power cut leaves the old or the new file, and a used line is never active again;
//! - a used line is retired in memory even if the disk write fails (logged), so it cannot be
//!   replayed while the daemon runs;
//! - when the list is used up the door is disabled (its sequence is empty), with a log line,
//!   instead of crashing; IPv4 and IPv6 knocks are treated alike.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::config::{Config, Door};
use crate::engine::DoorSpec;
use crate::knock::KnockSpec;
use crate::sys::busy::Steps;

#[derive(Debug, thiserror::Error)]
pub enum OtpError {
    /// The file cannot be read or written: check the path and its permissions.
    #[error("one-time sequences {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A line is not a sequence of 1 to 32 `port[:tcp|udp]` knocks.
    #[error("{}:{line}: {message}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// One door's list of one-time sequences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneTime {
    path: PathBuf,
    lines: Vec<String>,
    /// Indices of the unused sequence lines, in order, with their parsed sequences.
    unused: Vec<(usize, Vec<KnockSpec>)>,
}

impl OneTime {
    pub fn load(path: &Path) -> Result<OneTime, OtpError> {
        let text = fs::read_to_string(path).map_err(|source| OtpError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<OneTime, OtpError> {
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let mut unused = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let bad = |message: String| OtpError::Line {
                path: path.to_path_buf(),
                line: i + 1,
                message,
            };
            let steps = trimmed
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|w| !w.is_empty())
                .map(KnockSpec::parse)
                .collect::<Result<Vec<_>, _>>()
                .map_err(bad)?;
            if steps.len() > crate::config::MAX_SEQUENCE_LEN {
                return Err(bad(format!(
                    "{} knocks: a sequence has at most {}",
                    steps.len(),
                    crate::config::MAX_SEQUENCE_LEN
                )));
            }
            unused.push((i, steps));
        }
        Ok(OneTime {
            path: path.to_path_buf(),
            lines,
            unused,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The active sequence, or an empty one when the list is used up.
    pub fn active(&self) -> &[KnockSpec] {
        self.unused
            .first()
            .map(|(_, s)| s.as_slice())
            .unwrap_or(&[])
    }

    pub fn remaining(&self) -> usize {
        self.unused.len()
    }

    /// Retires the active sequence in memory only (`replay` does this: it never writes).
    pub fn retire(&mut self) -> bool {
        if self.unused.is_empty() {
            return false;
        }
        let (line, _) = self.unused.remove(0);
        self.lines[line] = format!("#{}", self.lines[line]);
        true
    }

    /// The file's text as [`OneTime::consume`] writes it: used lines commented out.
    pub fn text(&self) -> String {
        let mut text = self.lines.join("\n");
        text.push('\n');
        text
    }

    /// Retires the active sequence: in memory first, then durably on disk. The error, if any,
    /// is about the disk only; the sequence is retired either way.
    pub fn consume(&mut self) -> Result<(), OtpError> {
        if !self.retire() {
            return Ok(());
        }
        write(&self.path, &self.text(), &Steps::here())
    }
}

/// Writes a one-time list's `text` (as [`OneTime::text`] makes it) to `path`, atomically.
pub fn write(path: &Path, text: &str, steps: &Steps) -> Result<(), OtpError> {
    crate::sys::fsutil::write_atomic(path, text.as_bytes(), steps).map_err(|source| OtpError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The one-time lists of every door that has one, by door name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lists(BTreeMap<String, OneTime>);

impl Lists {
    /// Loads the list of every door with `one_time_sequences`.
    pub fn load(config: &Config) -> Result<Lists, OtpError> {
        let mut lists = BTreeMap::new();
        for door in &config.doors {
            if let Some(path) = &door.one_time_sequences {
                lists.insert(door.name.clone(), OneTime::load(path)?);
            }
        }
        Ok(Lists(lists))
    }

    pub fn get_mut(&mut self, door: &str) -> Option<&mut OneTime> {
        self.0.get_mut(door)
    }

    /// What the engine runs for `door`: its fixed sequence, or its active one-time sequence
    /// (empty, so disabled, when used up).
    pub fn spec(&self, door: &Door) -> DoorSpec {
        let mut spec = DoorSpec::from(door);
        if let Some(list) = self.0.get(&door.name) {
            spec.sequence = list.active().to_vec();
        }
        spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_skips_comments_and_validates_every_line() {
        let p = Path::new("otp");
        let l =
            OneTime::parse("# used\n\n#7000,8000\n 1000,2000:udp \n3000 4000/tcp\n", p).unwrap();
        assert_eq!(l.active(), &[KnockSpec::tcp(1000), KnockSpec::udp(2000)]);
        assert_eq!(l.remaining(), 2);
        let e = OneTime::parse("1000,2000\n1000,abc\n", p).unwrap_err();
        assert!(
            e.to_string().starts_with("otp:2: invalid port `abc`"),
            "{e}"
        );
        assert!(OneTime::parse("0,1\n", p).is_err());
    }

    #[test]
    fn consume_comments_out_durably_and_runs_out_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ssh.otp");
        fs::write(&path, "# header\n1000,2000\n3000,4000\n").unwrap();
        let mut l = OneTime::load(&path).unwrap();
        l.consume().unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "# header\n#1000,2000\n3000,4000\n"
        );
        assert_eq!(l.active(), &[KnockSpec::tcp(3000), KnockSpec::tcp(4000)]);
        // A restart reads the same state back.
        assert_eq!(OneTime::load(&path).unwrap(), l);
        l.consume().unwrap();
        assert!(l.active().is_empty());
        assert_eq!(l.remaining(), 0);
        l.consume().unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "# header\n#1000,2000\n#3000,4000\n"
        );
    }

    #[test]
    fn a_failed_write_still_retires_the_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ssh.otp");
        fs::write(&path, "1000\n2000\n").unwrap();
        let mut l = OneTime::load(&path).unwrap();
        // The directory disappears under the daemon (SD card pulled, say).
        fs::remove_dir_all(dir.path()).unwrap();
        assert!(l.consume().is_err());
        assert_eq!(l.active(), &[KnockSpec::tcp(2000)]);
    }
}
