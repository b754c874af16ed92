//! `knockgate firstboot`: the SD-card image's first-boot step. The image ships doors written
//! `sequence = []`; on the device, at first boot, each gets a random sequence of its own.
//!
//! For every such door: [`STEPS`] distinct TCP ports drawn uniformly from [`PORTS`] with the
//! kernel's CSPRNG ([`OsRng`]), none used anywhere else in the config (other doors' sequences,
//! firewall ports, wake-on-LAN ports, the status page's port, and 22), and never strictly
//! ascending or descending, so that a port scan in order or in reverse cannot walk it.
//!
//! Order of writes, for a power cut: the note for the owner first (plain text with CRLF line
//! endings on the FAT boot partition, which they read by putting the card in a PC), fsynced
//! with its directory; then the config, rewritten atomically (temporary file, fsync, rename,
//! fsync of the directory, mode and owner kept). Only the `[]` of each door's `sequence` is
//! replaced: every other byte of the file stays as it was. A cut between the two writes leaves
//! the config unfilled, so the next boot draws again and rewrites both. Nothing is written
//! unless the filled config passes everything `knockgate check` checks.
//!
//! Invariant: no message of this module, on success or error, holds a generated port; the
//! sequence is in the config and the note only (journald keeps whatever is printed).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read, Write};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::actions::firewall::Ports;
use crate::config::{self, Config, ConfigError, Door, DoorAction, RelayMode};
use crate::doors::{Dynamic, SourceError};

/// Where generated ports come from: wide, above the well-known and most registered service
/// ports, below the usual ephemeral range's top.
pub const PORTS: RangeInclusive<u16> = 10000..=65000;
/// Knocks in a generated sequence.
pub const STEPS: usize = 3;
/// The note's file name in the boot directory.
pub const DEFAULT_NOTE: &str = "knockgate-sequence.txt";
/// Always kept out of a generated sequence, whatever the config says: SSH.
const ALWAYS_RESERVED: [u16; 1] = [22];
/// Random numbers read before giving up on a source that cannot be random (a stuck or
/// malicious one): a real draw needs a few.
const MAX_DRAWS: usize = 10_000;

/// A source of uniformly distributed 32-bit numbers.
pub trait Rng {
    fn next_u32(&mut self) -> io::Result<u32>;
}

/// The kernel's CSPRNG, read from `/dev/random`. Since Linux 5.6 `/dev/random` blocks only
/// until the kernel's generator is seeded, then never again: the semantics of getrandom(2)
/// without flags, which is what a first boot needs (a fresh device may have no entropy yet,
/// and `/dev/urandom` on older kernels would answer from an unseeded pool). Reading the file
/// keeps the crate free of `unsafe` and of a new dependency (the getrandom crate needs a newer
/// Rust than our minimum).
pub struct OsRng(fs::File);

impl OsRng {
    pub const PATH: &'static str = "/dev/random";

    pub fn open() -> io::Result<OsRng> {
        fs::File::open(Self::PATH).map(OsRng)
    }
}

impl Rng for OsRng {
    fn next_u32(&mut self) -> io::Result<u32> {
        let mut b = [0u8; 4];
        self.0.read_exact(&mut b)?;
        Ok(u32::from_ne_bytes(b))
    }
}

/// Why `knockgate firstboot` did not finish.
#[derive(Debug, thiserror::Error)]
pub enum FirstbootError {
    /// The config is invalid for a reason of its own (not the empty sequences): fix what the
    /// message names, as `knockgate check` would say. Nothing was written.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A one-time sequence file or an HMAC secret the config names cannot be read (as
    /// `knockgate check` would say). Nothing was written.
    #[error(transparent)]
    Sources(#[from] SourceError),
    /// The boot directory is missing or not a directory: mount the boot partition, or give
    /// the right `--boot-dir`. Nothing was written.
    #[error("boot directory {}: {source}: mount the boot partition or give the right --boot-dir; nothing was written", path.display())]
    BootDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The random source cannot be read. Nothing was written.
    #[error(
        "cannot read random numbers from {}: {source}; nothing was written",
        OsRng::PATH
    )]
    Random {
        #[source]
        source: io::Error,
    },
    /// The random source gave no usable draw in [`MAX_DRAWS`] numbers, or the config leaves
    /// fewer than [`STEPS`] free ports in [`PORTS`]. Nothing was written.
    #[error("door {door}: cannot draw a sequence ({why}); nothing was written")]
    Draw { door: String, why: String },
    /// The note cannot be written in the boot directory (read-only, full). The config was
    /// not changed: run again once the partition is writable.
    #[error("cannot write {}: {source}; the config was not changed", path.display())]
    Note {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The config cannot be rewritten. The note just written holds a sequence that is not in
    /// the config: run again (it draws a new one and rewrites the note).
    #[error("cannot rewrite {}: {source}; the note in the boot directory holds a sequence that was not installed: run `knockgate firstboot` again", path.display())]
    ConfigWrite {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What `knockgate firstboot` is asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: PathBuf,
    pub boot_dir: PathBuf,
    /// The note's file name in `boot_dir`.
    pub file_name: String,
}

/// What it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No door has `sequence = []`: nothing was written.
    NothingToDo,
    /// These doors got a sequence, written down in `note`.
    Generated { doors: Vec<String>, note: PathBuf },
}

/// A config whose empty sequences were drawn and filled in.
#[derive(Debug, Clone)]
pub struct Filled {
    /// The new text: the old one with each `[]` replaced.
    pub text: String,
    /// The new text, validated.
    pub config: Config,
    /// (index in `config.doors`, ports in order) for each door filled in.
    pub doors: Vec<(usize, Vec<u16>)>,
}

/// Fills in every `sequence = []` of a config text, or None if there is none. Pure but for
/// `rng`; the result is validated as `check` validates a config (except for the files it
/// names: see [`run`]).
pub fn fill(text: &str, origin: &str, rng: &mut dyn Rng) -> Result<Option<Filled>, FirstbootError> {
    let (cfg, unfilled) = config::parse_unfilled(text, origin)?;
    if unfilled.is_empty() {
        return Ok(None);
    }
    let mut reserved = reserved_ports(&cfg);
    let mut edits = Vec::with_capacity(unfilled.len());
    let mut doors = Vec::with_capacity(unfilled.len());
    for u in &unfilled {
        let name = &cfg.doors[u.door].name;
        let ports = draw(rng, &free_ports(&reserved)).map_err(|e| match e {
            DrawError::Random(source) => FirstbootError::Random { source },
            DrawError::Exhausted(why) => FirstbootError::Draw {
                door: name.clone(),
                why,
            },
        })?;
        reserved.extend(ports);
        edits.push((u.value.clone(), sequence_text(&ports)));
        doors.push((u.door, ports.to_vec()));
    }
    let text = splice(text, &edits);
    let config = config::parse(&text, origin)?;
    for (i, ports) in &doors {
        let got: Vec<u16> = config.doors[*i].sequence.iter().map(|k| k.port).collect();
        assert_eq!(
            &got, ports,
            "the filled-in text parses to the drawn sequence"
        );
    }
    Ok(Some(Filled {
        text,
        config,
        doors,
    }))
}

/// `knockgate firstboot`: fills in the config's empty sequences, writes the note, then the
/// config (see the module's documentation for the order and why).
pub fn run(opts: &Options, rng: &mut dyn Rng) -> Result<Outcome, FirstbootError> {
    let origin = opts.config.display().to_string();
    let text = fs::read_to_string(&opts.config).map_err(|e| ConfigError {
        file: origin.clone(),
        line: None,
        key: None,
        message: format!("cannot read the config file: {e}"),
    })?;
    // Validate before looking at the boot directory: an invalid config is the first thing
    // to say, and "nothing to do" needs no boot partition.
    let (_, unfilled) = config::parse_unfilled(&text, &origin)?;
    if unfilled.is_empty() {
        return Ok(Outcome::NothingToDo);
    }
    match fs::metadata(&opts.boot_dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(FirstbootError::BootDir {
                path: opts.boot_dir.clone(),
                source: io::Error::other("not a directory"),
            })
        }
        Err(source) => {
            return Err(FirstbootError::BootDir {
                path: opts.boot_dir.clone(),
                source,
            })
        }
    }
    let filled = fill(&text, &origin, rng)?.expect("unfilled doors were found");
    Dynamic::load(&filled.config)?;

    let note_path = opts.boot_dir.join(&opts.file_name);
    let absolute = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let note = note(&filled, &absolute(&opts.config), &absolute(&opts.boot_dir));
    write_durably(&note_path, note.as_bytes()).map_err(|source| FirstbootError::Note {
        path: note_path.clone(),
        source,
    })?;
    // Through a symbolic link, replace the file it points to, not the link.
    let target = fs::canonicalize(&opts.config).unwrap_or_else(|_| opts.config.clone());
    crate::sys::fsutil::write_atomic_keep_owner(&target, filled.text.as_bytes()).map_err(
        |source| FirstbootError::ConfigWrite {
            path: opts.config.clone(),
            source,
        },
    )?;
    Ok(Outcome::Generated {
        doors: filled
            .doors
            .iter()
            .map(|(i, _)| filled.config.doors[*i].name.clone())
            .collect(),
        note: note_path,
    })
}

/// Writes a whole file and makes it durable: fsync of the file, then of its directory. A new
/// file is private (mode 600) where the file system has modes; on the FAT boot partition the
/// mount options decide.
fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::File::open(dir)?.sync_all()
}

/// Ports a generated sequence must not use: every port the config mentions (sequences,
/// firewall openings, wake-on-LAN, the status page), and 22. A firewall door opening "all"
/// ports reserves nothing (it would reserve everything).
pub fn reserved_ports(cfg: &Config) -> BTreeSet<u16> {
    let mut r: BTreeSet<u16> = ALWAYS_RESERVED.into_iter().collect();
    r.insert(cfg.status.listen.port());
    for d in &cfg.doors {
        r.extend(d.sequence.iter().map(|k| k.port));
        if let Some(Ports::Some(ranges)) = d.firewall.as_ref().map(|f| &f.ports) {
            for range in ranges {
                r.extend(range.first..=range.last);
            }
        }
        if let Some(w) = &d.wake_on_lan {
            r.insert(w.port);
        }
    }
    r
}

/// Why no sequence was drawn.
#[derive(Debug)]
enum DrawError {
    Random(io::Error),
    Exhausted(String),
}

/// The ports of [`PORTS`] not in `reserved`, ascending, and none a browser refuses to
/// connect to ([`crate::knock::browser_safe`]): the knock page must be able to knock them.
fn free_ports(reserved: &BTreeSet<u16>) -> Vec<u16> {
    PORTS
        .filter(|p| !reserved.contains(p) && crate::knock::browser_safe(*p))
        .collect()
}

/// Draws [`STEPS`] distinct ports of `free`, uniformly among the sequences that are neither
/// strictly ascending nor strictly descending.
fn draw(rng: &mut dyn Rng, free: &[u16]) -> Result<[u16; STEPS], DrawError> {
    if free.len() < STEPS {
        return Err(DrawError::Exhausted(format!(
            "only {} ports of {}-{} are not used elsewhere in the config",
            free.len(),
            PORTS.start(),
            PORTS.end()
        )));
    }
    let n = u32::try_from(free.len()).expect("at most 65536 ports");
    // Numbers at or above `zone` are redrawn: `x % n` is then uniform.
    let zone = u32::MAX - u32::MAX % n;
    let mut draws = 0;
    let mut next = || -> Result<u16, DrawError> {
        loop {
            draws += 1;
            if draws > MAX_DRAWS {
                return Err(DrawError::Exhausted(format!(
                    "no usable draw in {MAX_DRAWS} random numbers: the random source is broken"
                )));
            }
            let x = rng.next_u32().map_err(DrawError::Random)?;
            if x < zone {
                return Ok(free[(x % n) as usize]);
            }
        }
    };
    loop {
        let mut seq = [0u16; STEPS];
        let mut i = 0;
        while i < STEPS {
            let p = next()?;
            if !seq[..i].contains(&p) {
                seq[i] = p;
                i += 1;
            }
        }
        if !is_monotonic(&seq) {
            return Ok(seq);
        }
    }
}

/// Strictly ascending or strictly descending: what a scan in order or in reverse walks.
pub fn is_monotonic(ports: &[u16]) -> bool {
    ports.windows(2).all(|w| w[0] < w[1]) || ports.windows(2).all(|w| w[0] > w[1])
}

/// `["23456/tcp", "41234/tcp", "17890/tcp"]`
fn sequence_text(ports: &[u16]) -> String {
    let steps: Vec<String> = ports.iter().map(|p| format!("\"{p}/tcp\"")).collect();
    format!("[{}]", steps.join(", "))
}

/// Replaces byte ranges of `text` (which do not overlap) and keeps every other byte.
pub fn splice(text: &str, edits: &[(std::ops::Range<usize>, String)]) -> String {
    let mut sorted: Vec<&(std::ops::Range<usize>, String)> = edits.iter().collect();
    sorted.sort_by_key(|(r, _)| r.start);
    let mut out = String::with_capacity(text.len() + 64 * edits.len());
    let mut at = 0;
    for (range, with) in sorted {
        assert!(range.start >= at, "overlapping edits");
        out.push_str(&text[at..range.start]);
        out.push_str(with);
        at = range.end;
    }
    out.push_str(&text[at..]);
    out
}

/// "10 seconds", "30 minutes", "1 hour", "500 ms".
fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 != 0 {
        return format!("{ms} ms");
    }
    let s = d.as_secs();
    let (n, unit) = match s {
        _ if s > 0 && s % 86_400 == 0 => (s / 86_400, "day"),
        _ if s > 0 && s % 3_600 == 0 => (s / 3_600, "hour"),
        _ if s > 0 && s % 60 == 0 && s >= 120 => (s / 60, "minute"),
        _ => (s, "second"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// What a door does when its sequence is knocked, in words for the note.
fn effect(door: &Door) -> String {
    let mut parts = Vec::new();
    for action in door.actions() {
        parts.push(match action {
            DoorAction::Firewall => {
                let Some(f) = &door.firewall else { continue };
                match f.duration {
                    Some(d) => {
                        format!("opens {} to the knocking address for {}", f.ports, human(d))
                    }
                    None => format!(
                        "opens {} to the knocking address until a closing knock or the daily flush",
                        f.ports
                    ),
                }
            }
            DoorAction::Close => {
                let Some(other) = &door.close else { continue };
                format!("closes the opening of door \"{other}\" for the knocking address")
            }
            // (A stop command needs a start command: config validation says so.)
            DoorAction::Command => {
                match door.stop_for(false).is_some() || door.stop_for(true).is_some() {
                    true => format!(
                        "runs its start command, and its stop command {} later",
                        human(door.cmd_timeout)
                    ),
                    false => "runs its start command".to_string(),
                }
            }
            DoorAction::Gpio => {
                let Some(g) = &door.gpio else { continue };
                match g.mode {
                    RelayMode::Pulse(d) => {
                        format!("switches relay \"{}\" on for {}", g.relay, human(d))
                    }
                    RelayMode::On => format!("switches relay \"{}\" on", g.relay),
                    RelayMode::Off => format!("switches relay \"{}\" off", g.relay),
                    RelayMode::Toggle => format!("toggles relay \"{}\"", g.relay),
                }
            }
            DoorAction::WakeOnLan => "wakes a computer on the LAN (wake-on-LAN)".to_string(),
        });
    }
    if parts.is_empty() {
        parts.push("logs the knock".to_string());
    }
    parts.join("; ")
}

/// The note for the owner: every filled door's sequence, what it does, and commands to knock
/// it with, in plain text with CRLF line endings (it is read in Notepad as often as not).
pub fn note(filled: &Filled, config_path: &Path, boot_dir: &Path) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "KNOCKGATE: YOUR KNOCK SEQUENCE");
    let _ = writeln!(t, "==============================");
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "Your gateway drew this sequence at random at its first boot (`knockgate firstboot`):"
    );
    let _ = writeln!(
        t,
        "it did not come with the firmware image. Knock it to open the door below."
    );
    for (i, ports) in &filled.doors {
        let door = &filled.config.doors[*i];
        let list: Vec<String> = ports.iter().map(u16::to_string).collect();
        let (spaced, commas) = (list.join(" "), list.join(", "));
        let within = human(door.seq_timeout);
        let title = format!("Door \"{}\"", door.name);
        let _ = writeln!(t);
        let _ = writeln!(t, "{title}");
        let _ = writeln!(t, "{}", "-".repeat(title.chars().count()));
        let _ = writeln!(t, "Sequence:  {commas} (TCP, in this order)");
        let _ = writeln!(t, "Time:      all {} knocks within {within}", ports.len());
        let _ = writeln!(t, "Effect:    {}", effect(door));
        let _ = writeln!(t);
        let _ = writeln!(
            t,
            "Commands: replace GATEWAY with the gateway's address (e.g. 192.168.1.1 at home,"
        );
        let _ = writeln!(
            t,
            "or its public address or name from outside), and run them on the machine that"
        );
        let _ = writeln!(t, "will connect next.");
        let _ = writeln!(t);
        let _ = writeln!(t, "  knockgate:");
        let _ = writeln!(t, "    knockgate knock GATEWAY {spaced}");
        let _ = writeln!(t);
        let _ = writeln!(
            t,
            "  knock (the client of knockd; Debian/Ubuntu package knockd):"
        );
        let _ = writeln!(t, "    knock GATEWAY {spaced}");
        let _ = writeln!(t);
        let _ = writeln!(t, "  nmap, one command per port, in this order:");
        for p in &list {
            let _ = writeln!(
                t,
                "    nmap -Pn --host-timeout 201 --max-retries 0 -p {p} GATEWAY"
            );
        }
        let _ = writeln!(t);
        let _ = writeln!(t, "  netcat, one command per port, in this order:");
        for p in &list {
            let _ = writeln!(t, "    nc -z -w 1 GATEWAY {p}");
        }
        let _ = writeln!(t);
        let _ = writeln!(
            t,
            "  A port-knocking app on a phone: host GATEWAY, TCP, ports {commas},"
        );
        let _ = writeln!(t, "  in this order, within {within}.");
    }
    let _ = writeln!(t);
    let _ = writeln!(t, "Keep this card safe");
    let _ = writeln!(t, "-------------------");
    let _ = writeln!(
        t,
        "Anyone who reads this file can open the door(s) above. Note the sequence somewhere"
    );
    let _ = writeln!(
        t,
        "safe (a password manager), then delete this file from the card's boot partition."
    );
    let _ = writeln!(
        t,
        "The gateway keeps the sequence in {} only: its status page and",
        config_path.display()
    );
    let _ = writeln!(
        t,
        "logs never show it. For a new one, set `sequence = []` there again and run"
    );
    let _ = writeln!(
        t,
        "`knockgate firstboot --boot-dir {}`.",
        boot_dir.display()
    );
    t.replace('\n', "\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns the scripted numbers in order, then fails.
    struct Script(Vec<u32>);

    impl Rng for Script {
        fn next_u32(&mut self) -> io::Result<u32> {
            if self.0.is_empty() {
                return Err(io::Error::other("script exhausted"));
            }
            Ok(self.0.remove(0))
        }
    }

    /// xorshift32: deterministic, good enough to exercise the properties.
    struct XorShift(u32);

    impl Rng for XorShift {
        fn next_u32(&mut self) -> io::Result<u32> {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            self.0 = x;
            Ok(x)
        }
    }

    fn check_sequence(seq: &[u16], reserved: &BTreeSet<u16>) {
        assert_eq!(seq.len(), STEPS);
        let distinct: BTreeSet<u16> = seq.iter().copied().collect();
        assert_eq!(distinct.len(), STEPS, "{seq:?} repeats a port");
        assert!(
            seq.iter().all(|p| PORTS.contains(p)),
            "{seq:?} out of range"
        );
        assert!(!is_monotonic(seq), "{seq:?} is monotonic");
        assert!(
            seq.iter().all(|p| !reserved.contains(p)),
            "{seq:?} uses a reserved port"
        );
    }

    #[test]
    fn monotonic() {
        assert!(is_monotonic(&[1, 2, 3]));
        assert!(is_monotonic(&[3, 2, 1]));
        assert!(!is_monotonic(&[2, 3, 1]));
        assert!(!is_monotonic(&[1, 3, 2]));
        assert!(!is_monotonic(&[2, 1, 3]));
        assert!(!is_monotonic(&[3, 1, 2]));
    }

    /// firstboot never draws a port either browser refuses (the lists of
    /// [`crate::knock::BROWSER_UNSAFE`]): none is free, whatever is reserved.
    #[test]
    fn no_port_a_browser_refuses_is_ever_free() {
        let free = free_ports(&BTreeSet::new());
        for p in crate::knock::BROWSER_UNSAFE {
            assert!(!free.contains(p), "{p} is free");
        }
        assert!(
            !free.contains(&10_080),
            "Firefox's and Chromium's Amanda port"
        );
        assert_eq!(
            free.len(),
            PORTS.count() - 1,
            "only 10080 lies in {PORTS:?}"
        );
    }

    /// Each rejection rule, in a scripted order: the biased top of the u32 range, a repeated
    /// port, an ascending and a descending draw; reserved ports are never candidates.
    #[test]
    fn scripted_draws_skip_bias_repeats_and_monotonic_sequences() {
        let reserved: BTreeSet<u16> = [22, 10_000, 10_001].into_iter().collect();
        // Free ports: 10002 (index 0), 10003 (1), ... 65000 (54997): n = 54998 (10080 is
        // never free: a browser cannot knock it).
        let n = 54_998u32;
        let mut rng = Script(vec![
            u32::MAX, // in the biased zone: redrawn
            5,        // 10007
            5,        // 10007 again: redrawn
            6,        // 10008
            7,        // 10009: 10007 < 10008 < 10009 ascending: all redrawn
            9,
            8,
            7,      // 10011 > 10010 > 10009: descending, all redrawn
            n + 8,  // 10010 (x % n)
            0,      // 10002: never 10000 or 10001
            54_997, // 65000
        ]);
        let free = free_ports(&reserved);
        let seq = draw(&mut rng, &free).unwrap();
        assert_eq!(seq, [10_010, 10_002, 65_000]);
        assert!(rng.0.is_empty());
        // A source that fails is an error, not a default.
        assert!(matches!(
            draw(&mut Script(vec![1]), &free),
            Err(DrawError::Random(_))
        ));
        // A stuck source ends with an error instead of looping.
        struct Stuck;
        impl Rng for Stuck {
            fn next_u32(&mut self) -> io::Result<u32> {
                Ok(42)
            }
        }
        assert!(matches!(
            draw(&mut Stuck, &free),
            Err(DrawError::Exhausted(_))
        ));
    }

    #[test]
    fn many_draws_are_distinct_in_range_not_monotonic_and_avoid_reserved() {
        let reserved: BTreeSet<u16> = (10_000..=30_000).chain([22, 40_000, 50_000]).collect();
        let free = free_ports(&reserved);
        let mut rng = XorShift(0x9E37_79B9);
        let mut seen = BTreeSet::new();
        for _ in 0..5000 {
            let seq = draw(&mut rng, &free).unwrap();
            check_sequence(&seq, &reserved);
            seen.extend(seq);
        }
        // Spread over the free range, not stuck in a corner of it.
        assert!(*seen.first().unwrap() < 30_100 && *seen.last().unwrap() > 64_900);
    }

    #[test]
    fn the_real_random_source_draws_valid_sequences() {
        let mut rng = OsRng::open().unwrap();
        let reserved: BTreeSet<u16> = [22, 8080].into_iter().collect();
        let free = free_ports(&reserved);
        let seqs: Vec<[u16; STEPS]> = (0..200).map(|_| draw(&mut rng, &free).unwrap()).collect();
        for s in &seqs {
            check_sequence(s, &reserved);
        }
        let distinct: BTreeSet<&[u16; STEPS]> = seqs.iter().collect();
        assert!(distinct.len() > 190, "the random source repeats itself");
    }

    #[test]
    fn reserved_ports_are_every_port_the_config_uses() {
        let cfg = config::parse(
            "[status]\nlisten = \"127.0.0.1:18080\"\n[[door]]\nname = \"a\"\nsequence = [\"12000/udp\", 12001]\nfirewall = { ports = [\"22/tcp\", \"15000-15002/udp\"], duration = \"1m\" }\n[[door]]\nname = \"w\"\nsequence = [3]\nwake_on_lan = { mac = \"00:11:22:33:44:55\", port = 19999 }\n",
            "k.toml",
        )
        .unwrap();
        let r: Vec<u16> = reserved_ports(&cfg).into_iter().collect();
        assert_eq!(r, [3, 22, 12000, 12001, 15000, 15001, 15002, 18080, 19999]);
    }

    const IMAGE: &str = "# knockgate.toml of the firmware image\r\n\
[daemon]\n\
interfaces = [\"eth0\"]   # the WAN side\n\
\n\
[[door]]\n\
name = \"ssh\"\n\
sequence = []          # generated at first boot by `knockgate firstboot`\n\
seq_timeout = \"10s\"\n\
firewall = { ports = [\"22/tcp\"], duration = \"30s\" }\n\
\n\
\t# a tab, trailing blanks   \n\
[[door]]\n\
name = \"web\"\n\
sequence = [\n\
]\n\
firewall = { ports = [\"443/tcp\"], duration = \"1h\" }\n\
\n\
[[door]]\n\
name = \"fixed\"\n\
sequence = [\"7000\", \"8000\"]  # kept as written\n\
start_command = \"logger %IP%\"\n";

    #[test]
    fn filling_changes_only_the_empty_lists() {
        let mut rng = XorShift(7);
        let filled = fill(IMAGE, "k.toml", &mut rng).unwrap().unwrap();
        assert_eq!(filled.doors.len(), 2);
        let (ssh, web) = (&filled.doors[0].1, &filled.doors[1].1);
        let expected = IMAGE
            .replacen(
                "sequence = []",
                &format!(
                    "sequence = [\"{}/tcp\", \"{}/tcp\", \"{}/tcp\"]",
                    ssh[0], ssh[1], ssh[2]
                ),
                1,
            )
            .replacen(
                "sequence = [\n]",
                &format!(
                    "sequence = [\"{}/tcp\", \"{}/tcp\", \"{}/tcp\"]",
                    web[0], web[1], web[2]
                ),
                1,
            );
        assert_eq!(filled.text, expected);
        // Byte for byte: the comment after the list, the CRLF of line 1, the tab and the
        // trailing blanks are all there.
        assert!(filled
            .text
            .contains("/tcp\"]          # generated at first boot"));
        assert!(filled
            .text
            .starts_with("# knockgate.toml of the firmware image\r\n"));
        assert!(filled.text.contains("\n\t# a tab, trailing blanks   \n"));
        // Nothing left to fill.
        assert!(fill(&filled.text, "k.toml", &mut rng).unwrap().is_none());
    }

    #[test]
    fn two_doors_get_sequences_without_a_shared_port_or_a_used_one() {
        let reserved = reserved_ports(&config::parse_unfilled(IMAGE, "k.toml").unwrap().0);
        for seed in 1..200 {
            let filled = fill(IMAGE, "k.toml", &mut XorShift(seed)).unwrap().unwrap();
            let a: BTreeSet<u16> = filled.doors[0].1.iter().copied().collect();
            let b: BTreeSet<u16> = filled.doors[1].1.iter().copied().collect();
            assert!(a.is_disjoint(&b), "seed {seed}: {a:?} and {b:?}");
            check_sequence(&filled.doors[0].1, &reserved);
            check_sequence(&filled.doors[1].1, &reserved);
        }
        // The second door's draw sees the first's ports as taken: with one port left after
        // the first door, the second cannot be drawn at all.
        let crowded = "[[door]]\nname = \"a\"\nsequence = []\n[[door]]\nname = \"b\"\nsequence = []\n[[door]]\nname = \"wide\"\nsequence = [1]\nfirewall = { ports = [\"10000-64995/tcp\"], duration = \"1m\" }\n";
        // 64996..=65000: five free ports; after a's three, two are left for b.
        let e = fill(crowded, "k.toml", &mut XorShift(3)).unwrap_err();
        assert!(
            matches!(&e, FirstbootError::Draw { door, .. } if door == "b"),
            "{e}"
        );
    }

    #[test]
    fn the_note_has_the_sequence_commands_and_crlf_only() {
        let filled = fill(IMAGE, "k.toml", &mut XorShift(11)).unwrap().unwrap();
        let text = note(
            &filled,
            Path::new("/etc/knockgate/knockgate.toml"),
            Path::new("/boot/firmware"),
        );
        assert!(text.ends_with("\r\n"));
        assert_eq!(text.matches('\n').count(), text.matches("\r\n").count());
        for (_, ports) in &filled.doors {
            let [a, b, c] = [ports[0], ports[1], ports[2]];
            for line in [
                format!("Sequence:  {a}, {b}, {c} (TCP, in this order)\r\n"),
                format!("    knockgate knock GATEWAY {a} {b} {c}\r\n"),
                format!("    knock GATEWAY {a} {b} {c}\r\n"),
                format!("    nmap -Pn --host-timeout 201 --max-retries 0 -p {b} GATEWAY\r\n"),
                format!("    nc -z -w 1 GATEWAY {c}\r\n"),
                format!("ports {a}, {b}, {c},\r\n"),
            ] {
                assert!(text.contains(&line), "`{line}` not in:\n{text}");
            }
        }
        for line in [
            "Door \"ssh\"\r\n",
            "Time:      all 3 knocks within 10 seconds\r\n",
            "Effect:    opens 22/tcp to the knocking address for 30 seconds\r\n",
            "Effect:    opens 443/tcp to the knocking address for 1 hour\r\n",
            "in this order, within 10 seconds.\r\n",
            "delete this file",
            "`knockgate firstboot --boot-dir /boot/firmware`.",
        ] {
            assert!(text.contains(line), "`{line}` not in:\n{text}");
        }
    }

    #[test]
    fn durations_in_words() {
        let d = Duration::from_secs;
        assert_eq!(human(d(1)), "1 second");
        assert_eq!(human(d(10)), "10 seconds");
        assert_eq!(human(d(60)), "60 seconds");
        assert_eq!(human(d(1800)), "30 minutes");
        assert_eq!(human(d(3600)), "1 hour");
        assert_eq!(human(d(86_400 * 2)), "2 days");
        assert_eq!(human(Duration::from_millis(1500)), "1500 ms");
    }
}
