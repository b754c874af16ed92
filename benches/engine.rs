//! Engine cost per packet as the number of tracked sources grows: `cargo bench --bench engine`.
//!
//! For 1 000, 30 000 and 100 000 tracked sources (each part-way through a sequence), measures
//! three kinds of packet: a knock from a tracked source, a probe from an untracked source, and a
//! first knock from a new source that must evict one (cap = N). Each figure is the median of
//! several runs; the table also gives each figure's ratio to the 1 000-source one, measured in
//! the same process, which is what "flat" means here (machines are noisy, ratios less so).
//! A knockd-style linear list (one scan of every attempt per packet) is measured alongside as
//! the reference the engine must beat.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant as StdInstant};

use knockgate::engine::{DoorSpec, Tracker};
use knockgate::knock::{FlagRule, Knock, KnockSpec, Proto, TcpFlags};
use knockgate::time::Instant;

const SIZES: [usize; 3] = [1_000, 30_000, 100_000];
const PACKETS: u64 = 200_000;
const RUNS: usize = 5;

fn door() -> DoorSpec {
    DoorSpec {
        name: "openSSH".into(),
        sequence: vec![
            KnockSpec::tcp(7000),
            KnockSpec::tcp(8000),
            KnockSpec::tcp(9000),
        ],
        timeout: Duration::from_secs(3600),
        flags: FlagRule::SYN_NOT_ACK,
        target: None,
    }
}

fn src(i: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32.wrapping_add(i as u32)))
}

fn syn(src: IpAddr, port: u16) -> Knock {
    Knock {
        src,
        dst: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        proto: Proto::Tcp,
        dst_port: port,
        tcp_flags: TcpFlags(TcpFlags::SYN),
    }
}

/// A deterministic pseudo-random sequence (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn filled(n: usize) -> Tracker {
    let mut t = Tracker::new(vec![door()], n);
    let mut out = Vec::new();
    for i in 0..n as u64 {
        out.clear();
        t.on_knock(Instant::from_micros(i), &syn(src(i), 7000), true, &mut out);
    }
    assert_eq!(t.tracked_sources(), n);
    t
}

#[derive(Clone, Copy)]
enum Kind {
    /// A tracked source repeats its step (a retransmission): lookup of existing progress.
    Tracked,
    /// An untracked source probes a port outside every sequence.
    Untracked,
    /// A new source sends a first knock: insert, evicting the oldest at the cap.
    NewSource,
}

/// Nanoseconds per packet for one run.
fn run(n: usize, kind: Kind, seed: u64) -> f64 {
    let mut t = filled(n);
    let mut rng = Rng(seed | 1);
    let mut out = Vec::with_capacity(8);
    let base = n as u64 + 1;
    let start = StdInstant::now();
    for i in 0..PACKETS {
        out.clear();
        let now = Instant::from_micros(base + i);
        let knock = match kind {
            Kind::Tracked => syn(src(rng.next() % n as u64), 7000),
            Kind::Untracked => syn(src(1_000_000_000 + rng.next() % 1_000_000), 443),
            Kind::NewSource => syn(src(base + i), 7000),
        };
        t.on_knock(now, &knock, true, &mut out);
        black_box(&out);
    }
    let ns = start.elapsed().as_nanos() as f64 / PACKETS as f64;
    assert!(t.tracked_sources() <= n);
    black_box(t.stats());
    ns
}

/// knockd's data structure: a list of attempts scanned in full for every packet.
fn knockd_style(n: usize, seed: u64) -> f64 {
    struct Attempt {
        src: IpAddr,
        stage: u8,
        #[allow(dead_code)]
        started: u64,
    }
    let mut list: Vec<Attempt> = (0..n as u64)
        .map(|i| Attempt {
            src: src(i),
            stage: 1,
            started: i,
        })
        .collect();
    let mut rng = Rng(seed | 1);
    let packets = (PACKETS / 20).max(1000);
    let start = StdInstant::now();
    for _ in 0..packets {
        let s = src(rng.next() % n as u64);
        if let Some(a) = list.iter_mut().find(|a| a.src == s) {
            a.stage = black_box(a.stage);
        }
        black_box(&list);
    }
    start.elapsed().as_nanos() as f64 / packets as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

fn main() {
    // `cargo test --benches` runs this binary with `--bench` absent: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let runs = if quick { 1 } else { RUNS };
    println!("engine cost per packet (median of {runs} run(s) of {PACKETS} packets), ns");
    println!(
        "{:>9} | {:>14} {:>7} | {:>14} {:>7} | {:>14} {:>7} | {:>14} {:>7}",
        "sources",
        "tracked",
        "ratio",
        "untracked",
        "ratio",
        "new source",
        "ratio",
        "knockd-style",
        "ratio"
    );
    let mut base: Option<[f64; 4]> = None;
    for n in SIZES {
        let kinds = [Kind::Tracked, Kind::Untracked, Kind::NewSource];
        let mut row = [0.0; 4];
        for (k, kind) in kinds.into_iter().enumerate() {
            row[k] = median((0..runs).map(|r| run(n, kind, 42 + r as u64)).collect());
        }
        row[3] = median((0..runs).map(|r| knockd_style(n, 7 + r as u64)).collect());
        let b = *base.get_or_insert(row);
        println!(
            "{n:>9} | {:>14.1} {:>6.2}x | {:>14.1} {:>6.2}x | {:>14.1} {:>6.2}x | {:>14.1} {:>6.2}x",
            row[0],
            row[0] / b[0],
            row[1],
            row[1] / b[1],
            row[2],
            row[2] / b[2],
            row[3],
            row[3] / b[3]
        );
    }
}
