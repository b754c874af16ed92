//! Time-based knock sequences: a door's sequence derived from a shared secret and the current
//! time window with HMAC-SHA256, in the spirit of TOTP (RFC 6238), so a recorded knock is
//! useless once its window has passed and is refused even inside it (each sequence opens once).
//!
//! Derivation (version 1; the README has test vectors for other clients):
//!
//! ```text
//! counter = floor(unix_seconds / window_seconds), as 8 bytes big-endian
//! block_0 = HMAC-SHA256(secret, "knockgate-seq-v1" || door_name || 0x00 || counter)
//! block_i = HMAC-SHA256(secret, block_(i-1))          (only if more values are needed)
//! values  = the blocks read as big-endian u16s, in order
//! port    = first + value mod (last - first + 1), skipping a port already in the sequence
//! ```
//!
//! Version 2 (`hmac = { version = 2 }`) is the same with the context `"knockgate-seq-v2"`,
//! and it also skips every port a browser refuses to connect to
//! ([`crate::knock::BROWSER_UNSAFE`]), so that a knock page can knock any sequence. Version
//! 1 stays as it is, for the clients that compute it (it can produce 10080 in 10000-60000).
//!
//! Every step is a TCP knock. Ports are all different, so a retransmission, a restart on the
//! first port or the duplicate rule of the engine never confuse two steps.

use std::fmt;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::knock::KnockSpec;

type HmacSha256 = Hmac<Sha256>;

/// Domain separation for version 1 of the derivation.
pub const CONTEXT: &[u8] = b"knockgate-seq-v1";
/// Domain separation for version 2.
pub const CONTEXT_V2: &[u8] = b"knockgate-seq-v2";
/// The least secret length accepted, in bytes (128 bits).
pub const MIN_SECRET: usize = 16;

/// A shared secret, read from a file only its owner can read.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// A secret file that cannot be used. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Group or others may read the file: anyone on the machine could knock.
    #[error("{}: readable by group or others (mode {mode:o}): run `chmod 600 {}`", path.display(), path.display())]
    Permissions { path: PathBuf, mode: u32 },
    /// Fewer than 128 bits.
    #[error("{}: the secret has {bits} bits, at least 128 are needed: create one with `openssl rand -hex 32 > {}`", path.display(), path.display())]
    TooShort { path: PathBuf, bits: usize },
}

impl Secret {
    /// The secret's bytes (for the knock page, which computes the sequence itself).
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The secret from its bytes (tests, the client).
    pub fn from_bytes(bytes: &[u8]) -> Secret {
        Secret(bytes.to_vec())
    }

    /// Reads a secret file: hex text (as `openssl rand -hex 32` writes) or raw bytes. The file
    /// must not be readable by group or others, and must hold at least 128 bits.
    pub fn load(path: &Path) -> Result<Secret, SecretError> {
        use std::os::unix::fs::PermissionsExt;
        let io = |source| SecretError::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SecretError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let raw = std::fs::read(path).map_err(io)?;
        let text = String::from_utf8_lossy(&raw);
        let trimmed = text.trim();
        let bytes = if trimmed.len() >= 2 * MIN_SECRET
            && trimmed.len() % 2 == 0
            && trimmed.bytes().all(|b| b.is_ascii_hexdigit())
        {
            (0..trimmed.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&trimmed[i..i + 2], 16).expect("hex checked"))
                .collect()
        } else {
            raw
        };
        if bytes.len() < MIN_SECRET {
            return Err(SecretError::TooShort {
                path: path.to_path_buf(),
                bits: bytes.len() * 8,
            });
        }
        Ok(Secret(bytes))
    }
}

/// How a door's sequence is derived: the config's (`hmac = { steps, ports, window }`).
pub use crate::config::HmacParams as Params;

impl Params {
    /// The window counter at `unix_seconds`.
    pub fn counter(&self, unix_seconds: u64) -> u64 {
        unix_seconds / self.window.max(1)
    }
}

fn hmac(secret: &Secret, parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(&secret.0).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// The sequence of `door` for window `counter`.
pub fn sequence(secret: &Secret, door: &str, counter: u64, p: &Params) -> Vec<KnockSpec> {
    let span = u32::from(p.last.saturating_sub(p.first)) + 1;
    let v2 = p.version >= 2;
    let context = if v2 { CONTEXT_V2 } else { CONTEXT };
    let mut block = hmac(
        secret,
        &[context, door.as_bytes(), &[0], &counter.to_be_bytes()],
    );
    let mut ports: Vec<u16> = Vec::with_capacity(p.steps);
    let mut at = 0;
    while ports.len() < p.steps {
        if at == block.len() {
            block = hmac(secret, &[&block]);
            at = 0;
        }
        let value = u32::from(u16::from_be_bytes([block[at], block[at + 1]]));
        at += 2;
        let port = p.first + (value % span) as u16;
        if !ports.contains(&port) && (!v2 || crate::knock::browser_safe(port)) {
            ports.push(port);
        }
    }
    ports.into_iter().map(KnockSpec::tcp).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn secret() -> Secret {
        Secret::from_bytes(b"0123456789abcdef0123456789abcdef")
    }

    fn ports(seq: &[KnockSpec]) -> Vec<u16> {
        seq.iter().map(|k| k.port).collect()
    }

    /// The README's test vectors: other clients check themselves against these.
    #[test]
    fn test_vectors() {
        let p = Params::default();
        assert_eq!(p.counter(1_795_000_000), 59_833_333);
        assert_eq!(
            ports(&sequence(&secret(), "ssh", 59_833_333, &p)),
            VECTOR_SSH
        );
        assert_eq!(
            ports(&sequence(&secret(), "ssh", 59_833_334, &p)),
            VECTOR_SSH_NEXT
        );
        assert_eq!(
            ports(&sequence(&secret(), "garage", 59_833_333, &p)),
            VECTOR_GARAGE
        );
    }

    // Computed independently from the module doc's derivation with Python's hmac module:
    // secret b"0123456789abcdef0123456789abcdef", window 30 s, 4 steps in 10000-60000.
    const VECTOR_SSH: [u16; 4] = [10466, 55378, 35678, 17443];
    const VECTOR_SSH_NEXT: [u16; 4] = [39644, 28425, 17133, 20235];
    const VECTOR_GARAGE: [u16; 4] = [23886, 20698, 33853, 33556];
    // Version 2, computed the same way (the context "knockgate-seq-v2", browser-refused
    // ports skipped): the README's vectors.
    const VECTOR_V2_SSH: [u16; 4] = [39549, 20263, 23370, 21750];
    const VECTOR_V2_SSH_NEXT: [u16; 4] = [50831, 44458, 24668, 11182];
    const VECTOR_V2_GARAGE: [u16; 4] = [13876, 32820, 19374, 40100];

    #[test]
    fn version_2_vectors_and_never_a_port_a_browser_refuses() {
        let v2 = Params {
            version: 2,
            ..Params::default()
        };
        assert_eq!(
            ports(&sequence(&secret(), "ssh", 59_833_333, &v2)),
            VECTOR_V2_SSH
        );
        assert_eq!(
            ports(&sequence(&secret(), "ssh", 59_833_334, &v2)),
            VECTOR_V2_SSH_NEXT
        );
        assert_eq!(
            ports(&sequence(&secret(), "garage", 59_833_333, &v2)),
            VECTOR_V2_GARAGE
        );
        // A range around 10080: version 1 draws it (window 0 here), version 2 never.
        let narrow = |version| Params {
            steps: 4,
            first: 10_075,
            last: 10_090,
            window: 30,
            version,
        };
        assert_eq!(
            ports(&sequence(&secret(), "d", 0, &narrow(1))),
            [10087, 10084, 10080, 10081]
        );
        assert_eq!(
            ports(&sequence(&secret(), "d", 0, &narrow(2))),
            [10076, 10084, 10075, 10079]
        );
        for counter in 0..2000 {
            let seq = ports(&sequence(&secret(), "d", counter, &narrow(2)));
            assert!(
                seq.iter().all(|p| crate::knock::browser_safe(*p)),
                "{seq:?}"
            );
        }
    }

    #[test]
    fn ports_are_distinct_tcp_and_in_range() {
        let p = Params {
            steps: 8,
            first: 40_000,
            last: 40_009,
            window: 30,
            version: 1,
        };
        for counter in 0..200 {
            let seq = sequence(&secret(), "d", counter, &p);
            assert_eq!(seq.len(), 8);
            let mut ps = ports(&seq);
            assert!(ps.iter().all(|x| (40_000..=40_009).contains(x)));
            ps.sort();
            ps.dedup();
            assert_eq!(ps.len(), 8, "distinct ports");
            assert!(seq.iter().all(|k| k.proto == crate::knock::Proto::Tcp));
        }
    }

    #[test]
    fn different_secret_window_or_door_gives_another_sequence() {
        let p = Params::default();
        let base = sequence(&secret(), "ssh", 7, &p);
        assert_ne!(base, sequence(&Secret::from_bytes(&[9; 32]), "ssh", 7, &p));
        assert_ne!(base, sequence(&secret(), "ssh", 8, &p));
        assert_ne!(base, sequence(&secret(), "ssh2", 7, &p));
        assert_eq!(base, sequence(&secret(), "ssh", 7, &p));
    }

    #[test]
    fn secret_files_hex_raw_permissions_length() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: &[u8], mode: u32| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path
        };
        let hex = write(
            "hex",
            b"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
            0o600,
        );
        assert_eq!(
            Secret::load(&hex).unwrap(),
            Secret::from_bytes(&(0u8..32).collect::<Vec<_>>())
        );
        let raw = write("raw", &[7u8; 20], 0o400);
        assert_eq!(Secret::load(&raw).unwrap(), Secret::from_bytes(&[7u8; 20]));
        let open = write("open", &[7u8; 20], 0o644);
        let e = Secret::load(&open).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        let short = write("short", b"0011223344", 0o600);
        let e = Secret::load(&short).unwrap_err();
        assert!(e.to_string().contains("at least 128"), "{e}");
        assert!(Secret::load(&dir.path().join("missing")).is_err());
        assert_eq!(
            format!("{:?}", secret()),
            "Secret(32 bytes)",
            "never printed"
        );
    }
}
