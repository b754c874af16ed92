//! Open doors that wait for their closing (a stop command to run, or a firewall opening to
//! close), and the journal that keeps them across a restart, a crash or a SIGKILL.
//!
//! A session is (door, source, kind of pending action) with a deadline; knocking the same door
//! again while it is open extends the deadline instead of stacking a second session (knockd
//! runs the start command again and sleeps a second child). Deadlines are monotonic [`Instant`]s while the daemon runs;
//! the journal stores wall-clock expiry, and on restore the remaining time is clamped to the
//! session's own duration, so a clock that jumped (a Pi without RTC before NTP) can make a door
//! close early but never late.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::actions::firewall::Grant;
use crate::sys::busy::Steps;
use crate::time::Instant;

/// What happens when a session ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Pending {
    /// Run the door's stop command (already substituted).
    Stop { argv: Vec<String> },
    /// Close this firewall opening.
    Close { grant: Grant },
}

impl Pending {
    fn kind(&self) -> u8 {
        match self {
            Pending::Stop { .. } => 0,
            Pending::Close { .. } => 1,
        }
    }
}

type Key = (String, IpAddr, u8);

/// File name of the journal inside the state directory.
pub const JOURNAL_FILE: &str = "sessions.json";
const JOURNAL_VERSION: u32 = 1;

/// One open door for one source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub door: String,
    pub src: IpAddr,
    /// Wall-clock time it was opened (last extended), in milliseconds since the Unix epoch.
    pub opened_unix_ms: u64,
    /// Wall-clock time it closes, in milliseconds since the Unix epoch.
    pub expires_unix_ms: u64,
    /// How long the door stays open after a knock.
    pub duration_ms: u64,
    /// What closes it.
    pub pending: Pending,
    /// Monotonic deadline; rebuilt from the wall clock on restore.
    #[serde(skip)]
    pub deadline: Instant,
}

/// Whether a knock opened a new session or extended an open one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenOutcome {
    New,
    /// The session was open: its deadline moved and its pending action was replaced; this is
    /// the previous one (a firewall grant with the old expiry, to be replaced by the new).
    Extended(Pending),
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sessions {
    map: BTreeMap<Key, Session>,
}

pub fn unix_ms(wall: SystemTime) -> u64 {
    wall.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Sessions {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Session> {
        self.map.values()
    }

    /// The session of (door, src) whose pending action is a stop command.
    pub fn get_stop(&self, door: &str, src: IpAddr) -> Option<&Session> {
        self.map.get(&(door.to_string(), src, 0))
    }

    /// The session of (door, src) whose pending action is closing a firewall opening.
    pub fn get_close(&self, door: &str, src: IpAddr) -> Option<&Session> {
        self.map.get(&(door.to_string(), src, 1))
    }

    /// Removes the firewall opening of (door, src), if any (a closing sequence).
    pub fn remove_close(&mut self, door: &str, src: IpAddr) -> Option<Session> {
        self.map.remove(&(door.to_string(), src, 1))
    }

    /// Removes and returns every session whose pending action matches (the daily flush takes
    /// the firewall openings).
    pub fn take_where(&mut self, mut pred: impl FnMut(&Session) -> bool) -> Vec<Session> {
        let keys: Vec<Key> = self
            .map
            .iter()
            .filter(|(_, s)| pred(s))
            .map(|(k, _)| k.clone())
            .collect();
        keys.into_iter()
            .filter_map(|k| self.map.remove(&k))
            .collect()
    }

    /// Opens (door, src) until `now + duration`, or extends it if already open: the deadline
    /// moves (never earlier) and `pending` replaces the previous action, which is returned.
    pub fn open(
        &mut self,
        now: Instant,
        wall: SystemTime,
        door: &str,
        src: IpAddr,
        duration: Duration,
        pending: Pending,
    ) -> OpenOutcome {
        let wall_ms = unix_ms(wall);
        let deadline = now + duration;
        let expires_unix_ms = wall_ms.saturating_add(millis(duration));
        let key = (door.to_string(), src, pending.kind());
        match self.map.get_mut(&key) {
            Some(s) => {
                s.deadline = s.deadline.max(deadline);
                s.opened_unix_ms = wall_ms;
                s.expires_unix_ms = s.expires_unix_ms.max(expires_unix_ms);
                s.duration_ms = millis(duration);
                OpenOutcome::Extended(std::mem::replace(&mut s.pending, pending))
            }
            None => {
                self.map.insert(
                    key,
                    Session {
                        door: door.to_string(),
                        src,
                        opened_unix_ms: wall_ms,
                        expires_unix_ms,
                        duration_ms: millis(duration),
                        pending,
                        deadline,
                    },
                );
                OpenOutcome::New
            }
        }
    }

    /// The earliest deadline, if any session is open.
    pub fn poll_at(&self) -> Option<Instant> {
        self.map.values().map(|s| s.deadline).min()
    }

    /// Removes and returns the sessions due at `now`, earliest first.
    pub fn take_due(&mut self, now: Instant) -> Vec<Session> {
        let due: Vec<_> = self
            .map
            .iter()
            .filter(|(_, s)| s.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out: Vec<Session> = due
            .into_iter()
            .filter_map(|k| self.map.remove(&k))
            .collect();
        out.sort_by_key(|s| s.deadline);
        out
    }

    /// Removes and returns every session (shutdown).
    pub fn take_all(&mut self) -> Vec<Session> {
        std::mem::take(&mut self.map).into_values().collect()
    }

    pub fn to_journal(&self) -> Journal {
        Journal {
            version: JOURNAL_VERSION,
            sessions: self.map.values().cloned().collect(),
        }
    }

    /// Rebuilds sessions from a journal at (`now`, `wall`): each closes after the time left on
    /// the wall clock, but never later than its own duration from now.
    pub fn restore(journal: Journal, now: Instant, wall: SystemTime) -> Sessions {
        let wall_ms = unix_ms(wall);
        let mut sessions = Sessions::new();
        for mut s in journal.sessions {
            let left = s.expires_unix_ms.saturating_sub(wall_ms).min(s.duration_ms);
            s.deadline = now + Duration::from_millis(left);
            sessions
                .map
                .insert((s.door.clone(), s.src, s.pending.kind()), s);
        }
        sessions
    }
}

/// What is written to disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Journal {
    pub version: u32,
    pub sessions: Vec<Session>,
}

/// A journal that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The state directory or file could not be read or written: check that the state
    /// directory exists, is writable by the daemon and the disk is not full.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file is not a journal this version understands (damaged by a power cut or edited
    /// by hand). It is moved aside to `<file>.corrupt`.
    #[error("{path}: not a valid journal ({source}); moved aside to {moved}")]
    Corrupt {
        path: PathBuf,
        moved: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Reads the journal; a missing file is an empty journal.
pub fn load(path: &Path) -> Result<Journal, JournalError> {
    let text = match fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Journal {
                version: JOURNAL_VERSION,
                sessions: Vec::new(),
            })
        }
        Err(source) => {
            return Err(JournalError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    parse_journal(&text).map_err(|source| {
        let moved = path.with_extension("json.corrupt");
        let _ = fs::rename(path, &moved);
        JournalError::Corrupt {
            path: path.to_path_buf(),
            moved: moved.display().to_string(),
            source,
        }
    })
}

/// Parses a journal's bytes: JSON of this version, no unknown field. [`load`] reads the file
/// with it; the fuzz target `journal` calls it directly.
pub fn parse_journal(bytes: &[u8]) -> Result<Journal, serde_json::Error> {
    serde_json::from_slice::<Journal>(bytes).and_then(|j| {
        if j.version == JOURNAL_VERSION {
            Ok(j)
        } else {
            Err(serde::de::Error::custom(format!(
                "journal version {} (this knockgate writes {JOURNAL_VERSION})",
                j.version
            )))
        }
    })
}

/// Writes the journal atomically and durably: a temporary file in the same directory, fsync,
/// rename over the old one, fsync of the directory. A power cut leaves the old or the new
/// journal, never a mix.
pub fn save(path: &Path, journal: &Journal, steps: &Steps) -> Result<(), JournalError> {
    let text = serde_json::to_vec_pretty(journal).expect("a journal serializes");
    crate::sys::fsutil::write_atomic(path, &text, steps).map_err(|source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knock::{PortRange, Ports};

    fn src(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    fn wall(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn stop(word: &str) -> Pending {
        Pending::Stop {
            argv: vec![word.to_string()],
        }
    }

    fn close(until: u64) -> Pending {
        Pending::Close {
            grant: Grant {
                door: "ssh".into(),
                src: src(2),
                ports: Ports::Some(vec![PortRange::parse("22/tcp").unwrap()]),
                until,
            },
        }
    }

    fn open(s: &mut Sessions, t: u64, door: &str, from: u8, secs: u64, p: Pending) -> OpenOutcome {
        s.open(
            Instant::from_secs(t),
            wall(t),
            door,
            src(from),
            Duration::from_secs(secs),
            p,
        )
    }

    #[test]
    fn open_then_due_on_time() {
        let mut s = Sessions::new();
        assert_eq!(
            open(&mut s, 1, "ssh", 2, 10, stop("stop")),
            OpenOutcome::New
        );
        assert_eq!(s.poll_at(), Some(Instant::from_secs(11)));
        assert!(s.take_due(Instant::from_millis(10_999)).is_empty());
        let due = s.take_due(Instant::from_secs(11));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].pending, stop("stop"));
        assert!(s.is_empty());
    }

    #[test]
    fn repeated_knock_extends_instead_of_stacking() {
        let mut s = Sessions::new();
        open(&mut s, 0, "ssh", 2, 10, stop("a"));
        let out = open(&mut s, 8, "ssh", 2, 10, stop("b"));
        assert_eq!(out, OpenOutcome::Extended(stop("a")));
        assert_eq!(s.len(), 1);
        assert_eq!(s.poll_at(), Some(Instant::from_secs(18)));
        // Another source or door is its own session.
        open(&mut s, 8, "ssh", 3, 1, stop("c"));
        open(&mut s, 8, "web", 2, 1, stop("d"));
        assert_eq!(s.len(), 3);
        assert_eq!(s.take_due(Instant::from_secs(9)).len(), 2);
    }

    #[test]
    fn firewall_opening_and_stop_command_are_separate_sessions() {
        let mut s = Sessions::new();
        open(&mut s, 0, "ssh", 2, 10, stop("a"));
        open(&mut s, 0, "ssh", 2, 3600, close(3600));
        assert_eq!(s.len(), 2);
        // Knocking again replaces the grant (new expiry) and hands back the old one.
        let out = open(&mut s, 100, "ssh", 2, 3600, close(3700));
        assert_eq!(out, OpenOutcome::Extended(close(3600)));
        assert_eq!(s.get_close("ssh", src(2)).unwrap().pending, close(3700));
        assert_eq!(s.get_stop("ssh", src(2)).unwrap().pending, stop("a"));
        // A closing sequence takes the opening away; the stop command stays.
        assert!(s.remove_close("ssh", src(2)).is_some());
        assert!(s.remove_close("ssh", src(2)).is_none());
        assert_eq!(s.len(), 1);
        // The daily flush takes firewall openings only.
        open(&mut s, 200, "web", 3, 60, close(260));
        let flushed = s.take_where(|x| matches!(x.pending, Pending::Close { .. }));
        assert_eq!(flushed.len(), 1);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn journal_round_trip_and_restore_clamps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        let mut s = Sessions::new();
        open(&mut s, 0, "ssh", 2, 60, stop("%x"));
        open(&mut s, 0, "web", 3, 10, close(10));
        save(&path, &s.to_journal(), &Steps::here()).unwrap();
        let j = load(&path).unwrap();
        assert_eq!(j.sessions.len(), 2);
        assert_eq!(j.sessions[1].pending, close(10));
        // Restarted 20 s later: ssh has 40 s left, web is overdue.
        let r = Sessions::restore(j.clone(), Instant::from_secs(5), wall(20));
        assert_eq!(
            r.get_stop("ssh", src(2)).unwrap().deadline,
            Instant::from_secs(45)
        );
        assert_eq!(
            r.get_close("web", src(3)).unwrap().deadline,
            Instant::from_secs(5)
        );
        // The wall clock went back a year (no RTC): never longer than the duration.
        let r = Sessions::restore(
            j,
            Instant::ZERO,
            UNIX_EPOCH + Duration::from_secs(1_600_000_000),
        );
        assert_eq!(
            r.get_stop("ssh", src(2)).unwrap().deadline,
            Instant::from_secs(60)
        );
    }

    #[test]
    fn missing_journal_is_empty_and_corrupt_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        assert!(load(&path).unwrap().sessions.is_empty());
        fs::write(&path, b"{\"version\":1,\"sess").unwrap();
        let err = load(&path).unwrap_err();
        assert!(matches!(err, JournalError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("moved aside"), "{err}");
        assert!(!path.exists());
        assert!(dir.path().join("sessions.json.corrupt").exists());
    }

    /// Writes journals as the daemon writes them, as seeds for the fuzz target `journal`
    /// (`fuzz/corpus/journal/`). Run by `scripts/fuzz-seeds.sh`; the seeds are committed.
    #[test]
    #[ignore = "writes fuzz/corpus/journal; run by scripts/fuzz-seeds.sh"]
    fn write_fuzz_seeds() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/journal");
        fs::create_dir_all(&dir).unwrap();
        let mut s = Sessions::new();
        save(
            &dir.join("seed-empty.json"),
            &s.to_journal(),
            &Steps::here(),
        )
        .unwrap();
        open(&mut s, 0, "openSSH", 2, 30, stop("logger"));
        let v6: IpAddr = "2001:db8::5".parse().unwrap();
        s.open(
            Instant::from_secs(1),
            wall(1),
            "ssh",
            v6,
            Duration::from_secs(1800),
            Pending::Close {
                grant: Grant {
                    door: "ssh".into(),
                    src: v6,
                    ports: Ports::Some(vec![
                        PortRange::parse("22/tcp").unwrap(),
                        PortRange::parse("5060-5069/udp").unwrap(),
                    ]),
                    until: 1_700_001_801,
                },
            },
        );
        s.open(
            Instant::from_secs(2),
            wall(2),
            "lan",
            src(7),
            Duration::from_secs(3600),
            Pending::Close {
                grant: Grant {
                    door: "lan".into(),
                    src: src(7),
                    ports: Ports::All,
                    until: 1_700_003_602,
                },
            },
        );
        save(
            &dir.join("seed-three-sessions.json"),
            &s.to_journal(),
            &Steps::here(),
        )
        .unwrap();
        for name in ["seed-empty.json", "seed-three-sessions.json"] {
            let j = parse_journal(&fs::read(dir.join(name)).unwrap()).unwrap();
            assert!(j.sessions.len() <= 3);
        }
    }

    #[test]
    fn save_into_missing_directory_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope").join(JOURNAL_FILE);
        let err = save(&path, &Sessions::new().to_journal(), &Steps::here()).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
