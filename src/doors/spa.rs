//! fwknop's Single Packet Authorization (SPA), as `fwknop` 2.6.10 (Debian 12's fwknop-client)
//! sends it with `--use-hmac`: one UDP datagram, encrypted and authenticated, that names the
//! address to open. Pure functions, time passed in; see fwknop's lib/fko_*.c.
//!
//! The wire format, outside in:
//! - the datagram is base64 text (no `=` padding): the ciphertext's base64 with its constant
//!   first ten characters `U2FsdGVkX1` (`Salted__` in base64) removed, then 43 characters of
//!   HMAC-SHA256, no separator. The HMAC covers the ciphertext's base64 *with* `U2FsdGVkX1`;
//! - the ciphertext is OpenSSL's salted format: `Salted__`, an 8-byte salt, AES-256-CBC with
//!   PKCS#7 padding; key and IV from EVP_BytesToKey with MD5, one iteration, over the
//!   Rijndael key and the salt (`D1 = MD5(key‖salt)`, `D2 = MD5(D1‖key‖salt)`, `D3 = MD5(D2‖
//!   key‖salt)`: key `D1‖D2`, IV `D3`);
//! - the plaintext is `random:b64(user):timestamp:version:type:b64(message)[:b64(nat)]
//!   [:b64(server_auth)][:client_timeout]:digest`, base64 without padding, the digest being the
//!   base64 of SHA-256 over everything before its `:`.
//!
//! [`verify`] checks a datagram in this order, each failure a [`Refusal`] that says why:
//! length and alphabet, the HMAC (constant time), decryption, the digest, the fields, the
//! age. What is left to the door: the replay cache ([`Request::packet_digest`]), the
//! addresses and the `allow` list.

use std::fmt;
use std::net::IpAddr;

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::alphabet::STANDARD;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use md5::{Digest as _, Md5};
use sha2::Sha256;

use crate::knock::Proto;

/// fwknop's default SPA port (UDP), and fwknopd's default age limit: the config's.
pub use crate::config::{SPA_DEFAULT_MAX_AGE as DEFAULT_MAX_AGE, SPA_DEFAULT_PORT as DEFAULT_PORT};
/// Shorter datagrams are not SPA: the smallest real one is ~180 characters (fwknop's server
/// takes 100 as its bound, `MIN_SPA_DATA_SIZE`).
pub const MIN_PACKET: usize = 100;
/// fwknop's `MAX_SPA_PACKET_LEN`.
pub const MAX_PACKET: usize = 1500;
/// The longest Rijndael key fwknop takes, and the HMAC key's.
pub const MAX_KEY: usize = 32;
pub const MAX_HMAC_KEY: usize = 128;

/// base64 of `Salted__`'s first 7.5 bytes: what clients strip from the datagram.
const SALTED_B64: &str = "U2FsdGVkX1";
const SALTED: &[u8] = b"Salted__";
/// base64 of a SHA-256 HMAC, without padding.
const HMAC_B64_LEN: usize = 43;

/// Standard base64, written without padding and read with or without it (as fwknop does).
const B64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

type HmacSha256 = Hmac<Sha256>;

/// A door's two keys, as `fwknop --key-gen` prints them (base64).
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    rijndael: Vec<u8>,
    hmac: Vec<u8>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the keys themselves.
        write!(
            f,
            "Keys {{ rijndael: {} bytes, hmac: {} bytes }}",
            self.rijndael.len(),
            self.hmac.len()
        )
    }
}

impl Keys {
    /// Raw keys: 1 to 32 bytes of Rijndael key (fwknop's `--key-gen` makes 32), 1 to 128 of
    /// HMAC key (it makes 64).
    pub fn new(rijndael: Vec<u8>, hmac: Vec<u8>) -> Result<Keys, String> {
        if rijndael.is_empty() || rijndael.len() > MAX_KEY {
            return Err(format!(
                "the encryption key has {} bytes: expected 1 to {MAX_KEY} (fwknop --key-gen makes 32)",
                rijndael.len()
            ));
        }
        if hmac.is_empty() || hmac.len() > MAX_HMAC_KEY {
            return Err(format!(
                "the HMAC key has {} bytes: expected 1 to {MAX_HMAC_KEY} (fwknop --key-gen makes 64)",
                hmac.len()
            ));
        }
        Ok(Keys { rijndael, hmac })
    }

    /// Keys in base64, as `KEY_BASE64` and `HMAC_KEY_BASE64` of `fwknop --key-gen`.
    pub fn from_base64(rijndael: &str, hmac: &str) -> Result<Keys, String> {
        let decode = |what: &str, text: &str| {
            B64.decode(text.trim())
                .map_err(|e| format!("the {what} is not base64: {e}"))
        };
        Keys::new(
            decode("encryption key", rijndael)?,
            decode("HMAC key", hmac)?,
        )
    }

    /// The keys in base64, for `.fwknoprc` (`KEY_BASE64`, `HMAC_KEY_BASE64`), with padding
    /// as fwknop prints them.
    pub fn to_base64(&self) -> (String, String) {
        let padded = base64::engine::general_purpose::STANDARD;
        (padded.encode(&self.rijndael), padded.encode(&self.hmac))
    }
}

/// A key file: the key in base64 on one line (what `knockgate spa keygen` writes, or
/// `KEY_BASE64` / `HMAC_KEY_BASE64` of `fwknop --key-gen` pasted in), readable by its owner
/// only, like an HMAC door's secret file.
pub fn read_key_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{shown} is readable by others (mode {mode:o}): chmod 600 it"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    // `fwknop --key-gen`'s line, pasted whole, works too.
    let text = text.trim();
    let text = text.rsplit_once(": ").map_or(text, |(_, key)| key).trim();
    B64.decode(text).map_err(|_| {
        format!("{shown}: expected a key in base64 (as `knockgate spa keygen` writes)")
    })
}

impl Keys {
    /// The keys of a door's `key_file` and `hmac_key_file`.
    pub fn load(
        key_file: &std::path::Path,
        hmac_key_file: &std::path::Path,
    ) -> Result<Keys, String> {
        Keys::new(read_key_file(key_file)?, read_key_file(hmac_key_file)?)
    }
}

/// Why a datagram was refused. The text is for the log: it never holds a key or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0} bytes: SPA packets have {MIN_PACKET} to {MAX_PACKET}")]
    Length(usize),
    #[error("not SPA data (characters outside base64)")]
    Alphabet,
    #[error("starts with U2FsdGVkX1 or hQ, which clients strip: not a client's packet (a replay of captured data?)")]
    Prefix,
    #[error("HMAC mismatch: a wrong HMAC key, or the packet was altered")]
    Hmac,
    #[error("cannot decrypt: a wrong encryption key, or the packet was altered")]
    Decrypt,
    #[error("digest mismatch: the packet was altered")]
    Digest,
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    #[error("message type {0} not supported (only access requests: fwknop -A, optionally with --fw-timeout)")]
    MessageType(u8),
    /// Seconds the packet's time is ahead of ours (negative: behind), and the limit.
    #[error("{}", age_text(*.0, *.1))]
    Age(i64, u64),
}

fn age_text(ahead: i64, max_age: u64) -> String {
    let when = if ahead < 0 {
        format!("built {} s ago", ahead.unsigned_abs())
    } else {
        format!("dated {ahead} s in the future")
    };
    format!("{when}: more than the {max_age} s allowed (a replay, or a client's clock is off)")
}

/// A protocol and port in an access request (`tcp/22`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Access {
    pub udp: bool,
    pub port: u16,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = if self.udp { "udp" } else { "tcp" };
        write!(f, "{proto}/{}", self.port)
    }
}

/// A verified access request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The address the client asks to open (`-a`, `-R`, or `0.0.0.0` for `-s`: the source).
    pub addr: IpAddr,
    /// What it asks for, in its order.
    pub access: Vec<Access>,
    /// The client's user name (informational; fwknopd can require one).
    pub user: String,
    /// When the client built it (Unix time).
    pub timestamp: u64,
    /// `--fw-timeout`, if given (message type 3).
    pub client_timeout: Option<u32>,
    /// SHA-256 of the datagram's data (without a trailing newline): the replay cache's key.
    pub packet_digest: [u8; 32],
}

/// Checks an SPA datagram (its UDP payload) with `keys` at Unix time `now`, allowing
/// `max_age` seconds of age or clock skew either way.
pub fn verify(packet: &[u8], keys: &Keys, now: u64, max_age: u64) -> Result<Request, Refusal> {
    if !(MIN_PACKET..=MAX_PACKET).contains(&packet.len()) {
        return Err(Refusal::Length(packet.len()));
    }
    // fwknop's clients send base64 text; some append a newline.
    let text = packet.strip_suffix(b"\n").unwrap_or(packet);
    if !text
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
    {
        return Err(Refusal::Alphabet);
    }
    let text = std::str::from_utf8(text).map_err(|_| Refusal::Alphabet)?;
    if text.starts_with(SALTED_B64) || text.starts_with("hQ") {
        return Err(Refusal::Prefix);
    }
    // The HMAC, constant time, before anything is decrypted.
    let (body, tag) = text.split_at(text.len() - HMAC_B64_LEN);
    let tag = B64.decode(tag).map_err(|_| Refusal::Hmac)?;
    let mut mac = HmacSha256::new_from_slice(&keys.hmac).expect("HMAC takes any key length");
    mac.update(SALTED_B64.as_bytes());
    mac.update(body.as_bytes());
    mac.verify_slice(&tag).map_err(|_| Refusal::Hmac)?;

    let plaintext = decrypt(body, &keys.rijndael).ok_or(Refusal::Decrypt)?;
    let plaintext = std::str::from_utf8(&plaintext).map_err(|_| Refusal::Malformed("not text"))?;
    let (encoded, digest) = plaintext
        .rsplit_once(':')
        .ok_or(Refusal::Malformed("no digest"))?;
    if B64.encode(Sha256::digest(encoded.as_bytes())) != digest {
        return Err(Refusal::Digest);
    }
    let mut request = parse(encoded)?;
    // In i128: any u64 timestamp, no overflow.
    let ahead = i128::from(request.timestamp) - i128::from(now);
    if ahead.unsigned_abs() > u128::from(max_age) {
        let ahead = i64::try_from(ahead).unwrap_or(if ahead < 0 { i64::MIN } else { i64::MAX });
        return Err(Refusal::Age(ahead, max_age));
    }
    // Of the data without the newline some clients add: adding one must not make a replay new.
    request.packet_digest = Sha256::digest(text.as_bytes()).into();
    Ok(request)
}

/// The message fields (the plaintext before `:digest`).
fn parse(encoded: &str) -> Result<Request, Refusal> {
    let fields: Vec<&str> = encoded.split(':').collect();
    if fields.len() < 6 || fields.len() > 9 {
        return Err(Refusal::Malformed("wrong number of fields"));
    }
    let random = fields[0];
    if random.len() != 16 || !random.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Refusal::Malformed("the random value is not 16 digits"));
    }
    let user = b64_text(fields[1]).ok_or(Refusal::Malformed("the user name"))?;
    let timestamp: u64 = fields[2]
        .parse()
        .map_err(|_| Refusal::Malformed("the timestamp"))?;
    let version = fields[3];
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(Refusal::Malformed("the protocol version"));
    }
    let msg_type: u8 = fields[4]
        .parse()
        .map_err(|_| Refusal::Malformed("the message type"))?;
    // 1: access; 3: access with a client timeout. The NAT and command types are not for us.
    let client_timeout = match msg_type {
        1 => None,
        3 if fields.len() < 7 => return Err(Refusal::Malformed("no client timeout")),
        3 => {
            let t = fields[fields.len() - 1]
                .parse()
                .map_err(|_| Refusal::Malformed("the client timeout"))?;
            Some(t)
        }
        other => return Err(Refusal::MessageType(other)),
    };
    // What may sit between the message and the digest: a server_auth field, then the timeout.
    let extra = fields.len() - 6 - usize::from(client_timeout.is_some());
    if extra > 1 {
        return Err(Refusal::Malformed("wrong number of fields"));
    }
    let message = b64_text(fields[5]).ok_or(Refusal::Malformed("the access message"))?;
    let (addr, access) = access_message(&message)?;
    Ok(Request {
        addr,
        access,
        user,
        timestamp,
        client_timeout,
        packet_digest: [0; 32],
    })
}

/// `IP,proto/port[,proto/port...]`.
fn access_message(message: &str) -> Result<(IpAddr, Vec<Access>), Refusal> {
    let mut parts = message.split(',');
    let addr: IpAddr = parts
        .next()
        .and_then(|a| a.trim().parse().ok())
        .ok_or(Refusal::Malformed("no address in the access message"))?;
    let mut access = Vec::new();
    for part in parts {
        let (proto, port) = part
            .trim()
            .split_once('/')
            .ok_or(Refusal::Malformed("an access entry is not proto/port"))?;
        let udp = Proto::parse(proto, part)
            .map_err(|_| Refusal::Malformed("a protocol other than tcp or udp"))?
            == Proto::Udp;
        let port = crate::knock::parse_port(port, part)
            .map_err(|_| Refusal::Malformed("a port outside 1-65535"))?;
        access.push(Access { udp, port });
    }
    if access.is_empty() || access.len() > 64 {
        return Err(Refusal::Malformed("no ports asked for"));
    }
    Ok((addr, access))
}

fn b64_text(field: &str) -> Option<String> {
    String::from_utf8(B64.decode(field).ok()?).ok()
}

/// Packets already accepted (their [`Request::packet_digest`]), each kept until it is too old
/// to pass the age check anyway, so that the same datagram sent again (by an eavesdropper,
/// from anywhere) is refused. Bounded; saved in the state directory ([`REPLAY_FILE`]) so that
/// a restart does not forget.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayCache {
    /// Digest → the Unix time after which it can be forgotten.
    seen: std::collections::HashMap<[u8; 32], u64>,
}

/// The replay cache's file in the state directory.
pub const REPLAY_FILE: &str = "spa-replay";
/// At most this many packets are remembered: at one accepted packet a second for the longest
/// `max_age` (1 h), the oldest go first.
pub const REPLAY_CAP: usize = 4096;

impl ReplayCache {
    pub fn contains(&self, digest: &[u8; 32]) -> bool {
        self.seen.contains_key(digest)
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Remembers `digest` until `until`; forgets what expired by `now` and, when full, the
    /// entry that expires first.
    pub fn insert(&mut self, digest: [u8; 32], until: u64, now: u64) {
        self.expire(now);
        if self.seen.len() >= REPLAY_CAP {
            if let Some(oldest) = self.seen.iter().min_by_key(|(_, u)| **u).map(|(d, _)| *d) {
                self.seen.remove(&oldest);
            }
        }
        self.seen.insert(digest, until);
    }

    /// Forgets the entries whose time has passed; true if any was.
    pub fn expire(&mut self, now: u64) -> bool {
        let before = self.seen.len();
        self.seen.retain(|_, until| *until > now);
        self.seen.len() != before
    }

    /// The file's text: one `HEX-DIGEST UNTIL` line per entry, sorted.
    pub fn to_text(&self) -> String {
        let mut lines: Vec<String> = self
            .seen
            .iter()
            .map(|(d, u)| {
                let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
                format!("{hex} {u}\n")
            })
            .collect();
        lines.sort();
        lines.concat()
    }

    /// Reads [`ReplayCache::to_text`]; a line that does not parse is skipped (and counted):
    /// a damaged file must not stop the daemon, and its good lines still protect.
    pub fn parse(text: &str) -> (ReplayCache, usize) {
        let mut cache = ReplayCache::default();
        let mut bad = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let entry = line.split_once(' ').and_then(|(hex, until)| {
                let until: u64 = until.trim().parse().ok()?;
                if hex.len() != 64 || !hex.is_ascii() {
                    return None;
                }
                let mut d = [0u8; 32];
                for (i, b) in d.iter_mut().enumerate() {
                    *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
                }
                Some((d, until))
            });
            match entry {
                Some((d, until)) if cache.seen.len() < REPLAY_CAP => {
                    cache.seen.insert(d, until);
                }
                _ => bad += 1,
            }
        }
        (cache, bad)
    }
}

/// OpenSSL's EVP_BytesToKey with MD5, one iteration: 32 bytes of key, 16 of IV.
fn key_iv(passphrase: &[u8], salt: &[u8]) -> ([u8; 32], [u8; 16]) {
    let round = |prev: &[u8]| -> [u8; 16] {
        let mut h = Md5::new();
        h.update(prev);
        h.update(passphrase);
        h.update(salt);
        h.finalize().into()
    };
    let d1 = round(&[]);
    let d2 = round(&d1);
    let d3 = round(&d2);
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(&d1);
    key[16..].copy_from_slice(&d2);
    (key, d3)
}

/// The plaintext of the datagram's ciphertext part (without its HMAC), or None.
fn decrypt(body: &str, passphrase: &[u8]) -> Option<Vec<u8>> {
    let mut full = String::with_capacity(SALTED_B64.len() + body.len());
    full.push_str(SALTED_B64);
    full.push_str(body);
    let raw = B64.decode(full).ok()?;
    let rest = raw.strip_prefix(SALTED)?;
    if rest.len() < 8 + 16 || (rest.len() - 8) % 16 != 0 {
        return None;
    }
    let (salt, ciphertext) = rest.split_at(8);
    let (key, iv) = key_iv(passphrase, salt);
    let mut buf = ciphertext.to_vec();
    let n = cbc::Decryptor::<aes::Aes256>::new(&key.into(), &iv.into())
        .decrypt_padded_mut::<Pkcs7>(&mut buf)
        .ok()?
        .len();
    buf.truncate(n);
    Some(buf)
}

/// OpenSSL's salted AES-256-CBC: `Salted__`, the salt, the ciphertext.
fn encrypt(plaintext: &[u8], passphrase: &[u8], salt: [u8; 8]) -> Vec<u8> {
    let (key, iv) = key_iv(passphrase, &salt);
    let mut buf = plaintext.to_vec();
    buf.resize(plaintext.len() + 16, 0);
    let n = cbc::Encryptor::<aes::Aes256>::new(&key.into(), &iv.into())
        .encrypt_padded_mut::<Pkcs7>(&mut buf, plaintext.len())
        .expect("room for a block of padding")
        .len();
    buf.truncate(n);
    let mut raw = SALTED.to_vec();
    raw.extend_from_slice(&salt);
    raw.extend_from_slice(&buf);
    raw
}

/// What a client puts in an access request (for `knockgate spa send` and the tests): fwknop's
/// format, with the random digits and the salt given.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    pub random: u64,
    pub user: &'a str,
    pub timestamp: u64,
    pub addr: IpAddr,
    pub access: &'a [Access],
    pub client_timeout: Option<u32>,
}

/// Builds the datagram fwknop's client would send for `msg` (as its `--use-hmac`).
pub fn encode(msg: &Message<'_>, keys: &Keys, salt: [u8; 8]) -> String {
    let access: Vec<String> = msg.access.iter().map(Access::to_string).collect();
    let message = format!("{},{}", msg.addr, access.join(","));
    let msg_type = if msg.client_timeout.is_some() { 3 } else { 1 };
    let mut encoded = format!(
        "{:016}:{}:{}:3.0.0:{msg_type}:{}",
        msg.random % 10_000_000_000_000_000,
        B64.encode(msg.user),
        msg.timestamp,
        B64.encode(message)
    );
    if let Some(t) = msg.client_timeout {
        encoded.push_str(&format!(":{t}"));
    }
    seal(&encoded, keys, salt)
}

/// The datagram for any message fields `encoded` (the plaintext before `:digest`): digest,
/// encryption, HMAC, as fwknop's client does them. For [`encode`], the tests and the fuzzer.
pub fn seal(encoded: &str, keys: &Keys, salt: [u8; 8]) -> String {
    let digest = B64.encode(Sha256::digest(encoded.as_bytes()));
    let plaintext = format!("{encoded}:{digest}");
    let full = B64.encode(encrypt(plaintext.as_bytes(), &keys.rijndael, salt));
    let mut mac = HmacSha256::new_from_slice(&keys.hmac).expect("HMAC takes any key length");
    mac.update(full.as_bytes());
    let tag = B64.encode(mac.finalize().into_bytes());
    let body = full
        .strip_prefix(SALTED_B64)
        .expect("`Salted__` always encodes to this prefix");
    format!("{body}{tag}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `fwknop --key-gen` output, and a packet made by Debian 12's fwknop-client 2.6.10 with
    /// `fwknop -A tcp/22 -a 10.77.0.2 -D 10.77.0.1 --key-base64-rijndael K --key-base64-hmac H
    /// --use-hmac --test --save-packet FILE` (its -v output: user root, timestamp 1796029673,
    /// message `10.77.0.2,tcp/22`).
    const K: &str = "eKHmC2Ow2JTqzXLy7sjYBRFfCmrQwbTAx2uiznipAug=";
    const H: &str =
        "VNrfU/1Pichlo/Kg61u8pMHCMoLk4PyQfVACF6UxTYG/bpN3D5/ciou6JoJngnTQ+AHRIbBpyeKMyXTpsWAujg==";
    const FWKNOP_PACKET: &str = "9kn+DG4aG49TdVoxCTEN+hT1NAIKDP7JhNUNnPGgHVgQXVoYbGUKQ10NXgpxTmBbOoo9MPL/bH8cUjfD62VTKoW49fCeKCYJ3gmcq+5xbwyuJ2u3V9M8WkhiRRTpSgga3Tu0qt7anazRJzccORYJ8d1LCeYFBr1EUfCdLGczfEWWE2hSNGRWMJF36IJxQetl4+UH8INs5SSw";
    const SENT: u64 = 1_796_029_673;

    fn keys() -> Keys {
        Keys::from_base64(K, H).unwrap()
    }

    #[test]
    fn a_real_fwknop_packet_verifies() {
        let r = verify(FWKNOP_PACKET.as_bytes(), &keys(), SENT + 5, 120).unwrap();
        assert_eq!(r.addr, "10.77.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(
            r.access,
            vec![Access {
                udp: false,
                port: 22
            }]
        );
        assert_eq!((r.user.as_str(), r.timestamp), ("root", SENT));
        assert_eq!(r.client_timeout, None);
        assert_eq!(
            r.packet_digest,
            <[u8; 32]>::from(Sha256::digest(FWKNOP_PACKET.as_bytes()))
        );
        // With a newline: the same packet, the same replay key.
        let nl = format!("{FWKNOP_PACKET}\n");
        let r2 = verify(nl.as_bytes(), &keys(), SENT + 5, 120).unwrap();
        assert_eq!(r2.packet_digest, r.packet_digest);
    }

    #[test]
    fn each_refusal_in_order() {
        let k = keys();
        let p = FWKNOP_PACKET.as_bytes();
        let now = SENT;
        assert_eq!(verify(&p[..99], &k, now, 120), Err(Refusal::Length(99)));
        assert_eq!(
            verify(&[b'A'; 1501], &k, now, 120),
            Err(Refusal::Length(1501))
        );
        let mut bad = p.to_vec();
        bad[10] = b'*';
        assert_eq!(verify(&bad, &k, now, 120), Err(Refusal::Alphabet));
        let prefixed = format!("{SALTED_B64}{FWKNOP_PACKET}");
        assert_eq!(
            verify(prefixed.as_bytes(), &k, now, 120),
            Err(Refusal::Prefix)
        );
        // A flipped character anywhere: the HMAC catches it before decryption.
        for i in [0, 50, p.len() - 44, p.len() - 1] {
            let mut flipped = p.to_vec();
            flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
            assert_eq!(verify(&flipped, &k, now, 120), Err(Refusal::Hmac), "at {i}");
        }
        assert_eq!(verify(&p[..p.len() - 4], &k, now, 120), Err(Refusal::Hmac));
        let (k64, h64) = k.to_base64();
        let wrong_hmac = Keys::from_base64(&k64, &B64.encode([7u8; 64])).unwrap();
        assert_eq!(verify(p, &wrong_hmac, now, 120), Err(Refusal::Hmac));
        // The right HMAC key with a wrong encryption key: decryption fails (bad padding), or
        // gives noise whose digest cannot match.
        let wrong_key = Keys::from_base64(&B64.encode([7u8; 32]), &h64).unwrap();
        let e = verify(p, &wrong_key, now, 120).unwrap_err();
        assert!(
            matches!(
                e,
                Refusal::Decrypt | Refusal::Malformed(_) | Refusal::Digest
            ),
            "{e:?}"
        );
        assert_eq!(verify(p, &k, SENT + 121, 120), Err(Refusal::Age(-121, 120)));
        assert_eq!(verify(p, &k, SENT - 121, 120), Err(Refusal::Age(121, 120)));
        // Timestamps far from now in either direction: refused, no overflow.
        let user = B64.encode("root");
        let far = |ts: u64| {
            let m = B64.encode("10.0.0.1,tcp/22");
            seal(
                &format!("1234567890123456:{user}:{ts}:3.0.0:1:{m}"),
                &k,
                *b"saltsalt",
            )
        };
        assert_eq!(
            verify(far(u64::MAX).as_bytes(), &k, 5, 120),
            Err(Refusal::Age(i64::MAX, 120))
        );
        assert_eq!(
            verify(far(0).as_bytes(), &k, u64::MAX, 120),
            Err(Refusal::Age(i64::MIN, 120))
        );
        assert!(verify(p, &k, SENT + 120, 120).is_ok());
        assert!(verify(p, &k, SENT - 120, 120).is_ok());
    }

    #[test]
    fn encode_makes_what_verify_and_fwknop_read() {
        let k = keys();
        let access = [
            Access {
                udp: false,
                port: 22,
            },
            Access {
                udp: true,
                port: 53,
            },
        ];
        for (addr, timeout) in [("192.0.2.7", None), ("2001:db8::7", Some(60))] {
            let msg = Message {
                random: 1234567890123456,
                user: "alice",
                timestamp: SENT,
                addr: addr.parse().unwrap(),
                access: &access,
                client_timeout: timeout,
            };
            let packet = encode(&msg, &k, *b"saltsalt");
            assert!(!packet.starts_with(SALTED_B64));
            let r = verify(packet.as_bytes(), &k, SENT, 120).unwrap();
            assert_eq!(r.addr, msg.addr);
            assert_eq!(r.access, access);
            assert_eq!(r.user, "alice");
            assert_eq!(r.client_timeout, timeout);
        }
    }

    #[test]
    fn refused_messages() {
        let k = keys();
        let enc = |encoded: &str| seal(encoded, &k, *b"saltsalt");
        let msg = |m: &str| B64.encode(m);
        let user = B64.encode("root");
        for (fields, want) in [
            (
                format!(
                    "1234567890123456:{user}:{SENT}:3.0.0:2:{}:{}",
                    msg("10.0.0.1,tcp/22"),
                    msg("192.168.1.2,22")
                ),
                Refusal::MessageType(2),
            ),
            (
                format!(
                    "1234567890123456:{user}:{SENT}:3.0.0:0:{}",
                    msg("10.0.0.1,touch /tmp/x")
                ),
                Refusal::MessageType(0),
            ),
            // Found by the fuzzer: type 3 without its timeout field.
            (
                format!(
                    "1256805244118570:{user}:17:3.0.0:3:{}",
                    msg("10.0.0.1,tcp/22")
                ),
                Refusal::Malformed("no client timeout"),
            ),
            (
                format!("12345:{user}:{SENT}:3.0.0:1:{}", msg("10.0.0.1,tcp/22")),
                Refusal::Malformed("the random value is not 16 digits"),
            ),
            (
                format!(
                    "1234567890123456:{user}:{SENT}:3.0.0:1:{}",
                    msg("10.0.0.1,icmp/0")
                ),
                Refusal::Malformed("a protocol other than tcp or udp"),
            ),
            (
                format!(
                    "1234567890123456:{user}:{SENT}:3.0.0:1:{}",
                    msg("10.0.0.1,tcp/0")
                ),
                Refusal::Malformed("a port outside 1-65535"),
            ),
            (
                format!(
                    "1234567890123456:{user}:{SENT}:3.0.0:1:{}",
                    msg("nowhere,tcp/22")
                ),
                Refusal::Malformed("no address in the access message"),
            ),
            (
                format!("1234567890123456:{user}:{SENT}:3.0.0:1:{}", msg("10.0.0.1")),
                Refusal::Malformed("no ports asked for"),
            ),
        ] {
            let packet = enc(&fields);
            assert_eq!(
                verify(packet.as_bytes(), &k, SENT, 120),
                Err(want),
                "{fields}"
            );
        }
    }

    #[test]
    fn replay_cache_remembers_expires_is_bounded_and_reads_back() {
        let mut c = ReplayCache::default();
        c.insert([1; 32], 100, 10);
        c.insert([2; 32], 50, 10);
        assert!(c.contains(&[1; 32]) && c.contains(&[2; 32]));
        let (back, bad) = ReplayCache::parse(&c.to_text());
        assert_eq!((back, bad), (c.clone(), 0));
        assert!(c.expire(50));
        assert!(!c.contains(&[2; 32]) && c.contains(&[1; 32]));
        for i in 0..REPLAY_CAP as u32 + 10 {
            let mut d = [0u8; 32];
            d[..4].copy_from_slice(&i.to_be_bytes());
            d[31] = 9;
            c.insert(d, 1000 + u64::from(i), 60);
        }
        assert_eq!(c.len(), REPLAY_CAP);
        // The ones that expire first went first ([1; 32], until 100, among them).
        assert!(!c.contains(&[1; 32]));
        let (_, bad) = ReplayCache::parse("zz 5\nabc\n\n");
        assert_eq!(bad, 2);
    }

    #[test]
    fn keys_bounds_and_debug_hides_them() {
        assert!(Keys::new(vec![], vec![1]).is_err());
        assert!(Keys::new(vec![1; 33], vec![1]).is_err());
        assert!(Keys::new(vec![1], vec![1; 129]).is_err());
        assert!(Keys::from_base64("!!", H).is_err());
        let debug = format!("{:?}", keys());
        assert_eq!(debug, "Keys { rijndael: 32 bytes, hmac: 64 bytes }");
        assert_eq!(keys().to_base64(), (K.to_string(), H.to_string()));
    }
}
