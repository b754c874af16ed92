//! What the engine runs: every door's current sequence(s), and which door and window each
//! comes from.
//!
//! - A door with a fixed `sequence` is one engine door.
//! - A door with `one_time_sequences` is one engine door with the active line of its list
//!   (empty, so disabled, when the list is used up); see [`crate::doors::otp`].
//! - A door with `hmac` is three engine doors: the sequences of the previous, current and next
//!   time windows (±1 window of clock skew, as TOTP allows). A window whose sequence opened
//!   the door once is disabled until it rolls out, so a replay is refused inside the window too,
//!   from any source.
//!
//! The engine's door indices are positions in [`DoorSet::specs`]; [`DoorSet::origin`] maps
//! them back to the config's doors.

pub mod hmacseq;
pub mod otp;
pub mod spa;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use tracing::{error, info, warn};

use crate::config::Config;
use crate::engine::DoorSpec;
use crate::sys::busy::Steps;
use hmacseq::{Params, Secret, SecretError};
use otp::OtpError;

/// Where an engine door comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// Index in the config's doors.
    pub door: usize,
    /// For an HMAC door, the window counter of this sequence.
    pub window: Option<u64>,
}

/// A config door as the engine sees it (the edge between the two: the engine knows nothing
/// of the config).
impl From<&crate::config::Door> for DoorSpec {
    fn from(d: &crate::config::Door) -> Self {
        DoorSpec {
            name: d.name.clone(),
            sequence: d.sequence.clone(),
            timeout: d.seq_timeout,
            flags: d.tcp_flags,
            target: d.target,
        }
    }
}

/// The engine's doors and their origins, index for index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoorSet {
    pub specs: Vec<DoorSpec>,
    pub origin: Vec<Origin>,
}

/// A door's sequence source that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    OneTime(#[from] OtpError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// An SPA door's key file cannot be read, or holds no valid key.
    #[error("door {door}: spa: {message}")]
    SpaKey { door: String, message: String },
}

#[derive(Debug, Clone)]
struct HmacDoor {
    secret: Secret,
    params: Params,
    /// Windows whose sequence already opened the door.
    used: BTreeSet<u64>,
}

/// The doors whose sequences change: one-time lists and HMAC doors.
#[derive(Debug, Clone)]
pub struct Dynamic {
    otp: otp::Lists,
    hmac: BTreeMap<String, HmacDoor>,
    /// SPA doors' keys, by door name.
    spa: BTreeMap<String, spa::Keys>,
}

impl Dynamic {
    /// Reads every one-time list and secret the config names.
    pub fn load(config: &Config) -> Result<Dynamic, SourceError> {
        let mut hmac = BTreeMap::new();
        for d in &config.doors {
            if let Some(h) = &d.hmac {
                hmac.insert(
                    d.name.clone(),
                    HmacDoor {
                        secret: Secret::load(&h.secret_file)?,
                        params: h.params.clone(),
                        used: BTreeSet::new(),
                    },
                );
            }
        }
        let mut spa_keys = BTreeMap::new();
        for d in &config.doors {
            if let Some(c) = &d.spa {
                let keys = spa::Keys::load(&c.key_file, &c.hmac_key_file).map_err(|message| {
                    SourceError::SpaKey {
                        door: d.name.clone(),
                        message,
                    }
                })?;
                spa_keys.insert(d.name.clone(), keys);
            }
        }
        Ok(Dynamic {
            otp: otp::Lists::load(config)?,
            hmac,
            spa: spa_keys,
        })
    }

    /// The keys of SPA door `door`.
    pub fn spa_keys(&self, door: &str) -> Option<&spa::Keys> {
        self.spa.get(door)
    }

    /// The engine's doors at wall-clock time `unix_secs`.
    pub fn doors(&self, config: &Config, unix_secs: u64) -> DoorSet {
        let mut set = DoorSet {
            specs: Vec::new(),
            origin: Vec::new(),
        };
        for (i, d) in config.doors.iter().enumerate() {
            let Some(h) = self.hmac.get(&d.name) else {
                set.specs.push(self.otp.spec(d));
                set.origin.push(Origin {
                    door: i,
                    window: None,
                });
                continue;
            };
            let now = h.params.counter(unix_secs);
            for w in [now.saturating_sub(1), now, now + 1] {
                let mut spec = DoorSpec::from(d);
                spec.sequence = if h.used.contains(&w) {
                    Vec::new()
                } else {
                    hmacseq::sequence(&h.secret, &d.name, w, &h.params)
                };
                set.specs.push(spec);
                set.origin.push(Origin {
                    door: i,
                    window: Some(w),
                });
            }
        }
        set
    }

    /// When (Unix seconds) the HMAC windows next change, if there are HMAC doors.
    pub fn next_change(&self, unix_secs: u64) -> Option<u64> {
        self.hmac
            .values()
            .map(|h| (h.params.counter(unix_secs) + 1) * h.params.window)
            .min()
    }

    /// A door opened from `origin`: retires what it used (a one-time line, an HMAC window),
    /// in memory, and returns what must be written down so that a restart keeps it retired
    /// ([`Used::commit`]; `replay` never writes).
    pub fn used(&mut self, config: &Config, origin: Origin, unix_secs: u64) -> Used {
        let Some(door) = config.doors.get(origin.door) else {
            return Used::Nothing;
        };
        let name = &door.name;
        if let (Some(h), Some(w)) = (self.hmac.get_mut(name), origin.window) {
            h.used.insert(w);
            // Forget windows that can no longer be accepted.
            let oldest = h.params.counter(unix_secs).saturating_sub(1);
            h.used.retain(|u| *u >= oldest);
            return Used::Window {
                door: name.clone(),
                window: w,
            };
        }
        let Some(list) = self.otp.get_mut(name) else {
            return Used::Nothing;
        };
        if !list.retire() {
            return Used::Nothing;
        }
        Used::OneTime {
            door: name.clone(),
            path: list.path().to_path_buf(),
            text: list.text(),
            left: list.remaining(),
        }
    }
}

/// What an opening retired ([`Dynamic::used`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Used {
    /// Nothing: the door has no one-time list or HMAC secret (or its list is used up).
    Nothing,
    /// An HMAC door's window: its sequence cannot open again (kept in memory: the window
    /// passes before a restart could matter more than a minute).
    Window { door: String, window: u64 },
    /// A one-time line, commented out in `text`: the list's new content, for `path`.
    OneTime {
        door: String,
        path: PathBuf,
        text: String,
        left: usize,
    },
}

impl Used {
    /// Writes down what was retired (a one-time list, atomically) and logs it. A failed write
    /// is logged; the sequence stays retired in memory until restart. The write is a slow step
    /// run through `steps`.
    pub fn commit(&self, steps: &Steps) {
        match self {
            Used::Nothing => {}
            Used::Window { door, window } => {
                info!(door = %door, window, "{door}: time-based sequence of window {window} used: it cannot open again");
            }
            Used::OneTime {
                door,
                path,
                text,
                left,
            } => {
                if let Err(e) = otp::write(path, text, steps) {
                    error!(door = %door, "{door}: {e}; the used sequence stays retired until restart only");
                }
                if *left == 0 {
                    warn!(door = %door, "{door}: no one-time sequences left in {}: door disabled", path.display());
                } else {
                    info!(door = %door, left, "{door}: one-time sequence used, {left} left");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knock::KnockSpec;
    use std::os::unix::fs::PermissionsExt;

    fn config(dir: &std::path::Path) -> Config {
        let secret = dir.join("s");
        std::fs::write(&secret, "000102030405060708090a0b0c0d0e0f").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        crate::config::parse(
            &format!(
                "[[door]]\nname = \"fixed\"\nsequence = [1, 2]\n\n[[door]]\nname = \"totp\"\nhmac = {{ secret_file = \"{}\" }}\n",
                secret.display()
            ),
            "t.toml",
        )
        .unwrap()
    }

    #[test]
    fn hmac_door_is_three_windows_and_a_used_window_is_disabled() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        let mut d = Dynamic::load(&c).unwrap();
        let t = 1_795_000_010; // window 59_833_333
        let set = d.doors(&c, t);
        assert_eq!(set.specs.len(), 4);
        assert_eq!(
            set.origin[1..]
                .iter()
                .map(|o| o.window.unwrap())
                .collect::<Vec<_>>(),
            vec![59_833_332, 59_833_333, 59_833_334]
        );
        assert!(set.origin[1..].iter().all(|o| o.door == 1));
        assert!(set.specs[1..]
            .iter()
            .all(|s| s.name == "totp" && s.sequence.len() == 4));
        assert_eq!(d.next_change(t), Some(1_795_000_020));
        // Window 59_833_333 opens once: then it is disabled; the others are not.
        assert_ne!(d.used(&c, set.origin[2], t), Used::Nothing);
        let set = d.doors(&c, t);
        assert!(set.specs[2].sequence.is_empty());
        assert!(!set.specs[1].sequence.is_empty() && !set.specs[3].sequence.is_empty());
        // Two windows later it has rolled out of reach.
        let later = d.doors(&c, t + 60);
        assert_eq!(later.origin[1].window, Some(59_833_334));
        assert!(later.specs[1..].iter().all(|s| !s.sequence.is_empty()));
    }

    #[test]
    fn unreadable_secret_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        std::fs::set_permissions(dir.path().join("s"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let e = Dynamic::load(&c).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
    }

    /// The whole HMAC story through the engine, with explicit wall-clock times.
    #[test]
    fn hmac_knocks_through_the_engine() {
        use crate::engine::{Event, Tracker};
        use crate::knock::{Knock, Proto, TcpFlags};
        use crate::time::Instant;
        use std::net::IpAddr;

        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        let mut dynamic = Dynamic::load(&c).unwrap();
        let secret = Secret::load(&dir.path().join("s")).unwrap();
        let params = Params::default();
        let t0 = 1_795_000_010u64; // window w = 59_833_333
        let w = params.counter(t0);
        let (a, b): (IpAddr, IpAddr) = (
            "192.0.2.10".parse().unwrap(),
            "198.51.100.7".parse().unwrap(),
        );

        let mut set = dynamic.doors(&c, t0);
        let mut tracker = Tracker::new(set.specs.clone(), 100);
        // Sends `ports` from `src` at wall time `unix`; returns the origin that opened, if any.
        let knock = |set: &mut DoorSet,
                     tracker: &mut Tracker,
                     dynamic: &mut Dynamic,
                     src: IpAddr,
                     ports: &[KnockSpec],
                     unix: u64| {
            if dynamic.next_change(unix).is_some() {
                *set = dynamic.doors(&c, unix);
                tracker.set_doors(set.specs.clone(), 100);
            }
            let mut opened = None;
            for (i, k) in ports.iter().enumerate() {
                let mut out = Vec::new();
                let knock = Knock {
                    src,
                    dst: src,
                    proto: Proto::Tcp,
                    dst_port: k.port,
                    tcp_flags: TcpFlags(TcpFlags::SYN),
                };
                let now =
                    Instant::from_secs(unix) + std::time::Duration::from_millis(i as u64 * 10);
                tracker.on_knock(now, &knock, true, &mut out);
                for e in out {
                    if let Event::Opened { door, .. } = e {
                        let origin = set.origin[door];
                        opened = Some(origin);
                        if dynamic.used(&c, origin, unix) != Used::Nothing {
                            *set = dynamic.doors(&c, unix);
                            tracker.set_doors(set.specs.clone(), 100);
                        }
                    }
                }
            }
            opened
        };
        let now_seq = hmacseq::sequence(&secret, "totp", w, &params);
        // The right secret opens, in window w.
        assert_eq!(
            knock(&mut set, &mut tracker, &mut dynamic, a, &now_seq, t0),
            Some(Origin {
                door: 1,
                window: Some(w)
            })
        );
        // Replayed in the same window, from the same source or another: refused.
        assert_eq!(
            knock(&mut set, &mut tracker, &mut dynamic, a, &now_seq, t0 + 5),
            None
        );
        assert_eq!(
            knock(&mut set, &mut tracker, &mut dynamic, b, &now_seq, t0 + 6),
            None
        );
        // A client whose clock is one window behind is accepted (once)...
        let prev = hmacseq::sequence(&secret, "totp", w - 1, &params);
        assert_eq!(
            knock(&mut set, &mut tracker, &mut dynamic, b, &prev, t0 + 7),
            Some(Origin {
                door: 1,
                window: Some(w - 1)
            })
        );
        // ...two windows behind is not.
        let old = hmacseq::sequence(&secret, "totp", w - 2, &params);
        assert_eq!(
            knock(&mut set, &mut tracker, &mut dynamic, a, &old, t0 + 8),
            None
        );
        // The next window's sequence works once the clock gets there; a wrong secret never.
        let wrong = hmacseq::sequence(&Secret::from_bytes(&[0x55; 32]), "totp", w + 1, &params);
        assert_eq!(
            knock(&mut set, &mut tracker, &mut dynamic, a, &wrong, t0 + 30),
            None
        );
        let next = hmacseq::sequence(&secret, "totp", w + 1, &params);
        assert_eq!(
            knock(&mut set, &mut tracker, &mut dynamic, a, &next, t0 + 31),
            Some(Origin {
                door: 1,
                window: Some(w + 1)
            })
        );
    }
}
