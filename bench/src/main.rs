//! `knockgen`: the traffic generator and the measuring probes of the knockgate-vs-knockd
//! benchmark (`bench/run.sh`, issue #9).
//!
//! Traffic: Ethernet/IPv4/TCP SYN frames built with etherparse and injected with libpcap's
//! `sendpacket` on the client end of a veth pair, inside the benchmark's client namespace.
//! Frames only ever go on that veth: the destination is the gateway namespace's address and
//! the MACs are the two veth ends'. Every sending command is bounded by a packet count AND a
//! time limit.
//!
//! Probes (read from /proc, which every network namespace shares):
//! - CPU time of a process: the sum of `/proc/PID/task/*/schedstat` field 1 (nanoseconds on a
//!   CPU, per thread; threads that exited meanwhile are not counted);
//! - memory: `VmRSS` and `VmHWM` (peak) of `/proc/PID/status`;
//! - wake-ups: voluntary + involuntary context switches of every thread;
//! - knockgate's tracked sources: its status JSON (`/api/status`, `counters.tracked_sources`).
//!
//! Subcommands (each prints one JSON object on stdout, except `sample` and `report`):
//! `send`, `flood`, `latency`, `idle`, `mem`, `quiet`, `status`, `sample`, `report`.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

type Res<T> = Result<T, String>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        usage();
    };
    let opts = match Opts::parse(rest) {
        Ok(o) => o,
        Err(e) => fail(&e),
    };
    let result = match cmd.as_str() {
        "send" => send(&opts),
        "flood" => flood(&opts),
        "latency" => latency(&opts),
        "idle" => idle(&opts),
        "mem" => mem(&opts),
        "quiet" => quiet(&opts),
        "status" => status_cmd(&opts),
        "sample" => sample(&opts),
        "report" => report(&opts),
        _ => usage(),
    };
    if let Err(e) = result {
        fail(&e);
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: knockgen send|flood|latency|idle|mem|quiet|status|sample|report --key value ...\n\
         (see bench/run.sh for every use)"
    );
    std::process::exit(2);
}

fn fail(e: &str) -> ! {
    eprintln!("knockgen: {e}");
    std::process::exit(1);
}

/// `--key value` pairs.
struct Opts(HashMap<String, String>);

impl Opts {
    fn parse(args: &[String]) -> Res<Opts> {
        let mut map = HashMap::new();
        let mut it = args.iter();
        while let Some(k) = it.next() {
            let key = k
                .strip_prefix("--")
                .ok_or_else(|| format!("expected --key, got `{k}`"))?;
            let v = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
            map.insert(key.to_string(), v.clone());
        }
        Ok(Opts(map))
    }

    fn str(&self, key: &str) -> Res<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("--{key} is required"))
    }

    fn opt(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn num<T: std::str::FromStr>(&self, key: &str, default: Option<T>) -> Res<T> {
        match self.0.get(key) {
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{key}: `{v}` is not a number")),
            None => default.ok_or_else(|| format!("--{key} is required")),
        }
    }

    fn ip(&self, key: &str) -> Res<Ipv4Addr> {
        let v = self.str(key)?;
        v.parse()
            .map_err(|_| format!("--{key}: `{v}` is not an IPv4 address"))
    }

    fn ports(&self, key: &str) -> Res<Vec<u16>> {
        self.str(key)?
            .split(',')
            .map(|p| {
                p.trim()
                    .parse()
                    .map_err(|_| format!("--{key}: bad port `{p}`"))
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------

/// A sender of TCP SYN frames on one interface, to one destination.
struct Sender {
    cap: pcap::Capture<pcap::Active>,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    dst: [u8; 4],
    buf: Vec<u8>,
    seq: u32,
}

impl Sender {
    fn open(o: &Opts) -> Res<Sender> {
        let iface = o.str("iface")?;
        let src_mac = parse_mac(
            fs::read_to_string(format!("/sys/class/net/{iface}/address"))
                .map_err(|e| format!("{iface}: cannot read its MAC address: {e}"))?
                .trim(),
        )?;
        let dst_mac = parse_mac(o.str("dst-mac")?)?;
        let mut cap = pcap::Capture::from_device(iface)
            .and_then(|c| {
                c.snaplen(64)
                    .immediate_mode(true)
                    .buffer_size(1 << 16)
                    .open()
            })
            .map_err(|e| format!("cannot open {iface}: {e}"))?;
        // This handle only sends: a filter that matches nothing keeps the kernel from copying
        // every frame on the link (our own included) into its ring.
        cap.filter("less 1", true)
            .map_err(|e| format!("filter on {iface}: {e}"))?;
        Ok(Sender {
            cap,
            src_mac,
            dst_mac,
            dst: o.ip("dst")?.octets(),
            buf: Vec::with_capacity(64),
            seq: 0x1234_5678,
        })
    }

    /// Sends one SYN from `src` to `port`.
    fn syn(&mut self, src: Ipv4Addr, port: u16) -> Res<()> {
        self.seq = self.seq.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let sport = 32768 + (self.seq >> 17) as u16 % 28000;
        let builder = etherparse::PacketBuilder::ethernet2(self.src_mac, self.dst_mac)
            .ipv4(src.octets(), self.dst, 64)
            .tcp(sport, port, self.seq, 64240)
            .syn();
        self.buf.clear();
        builder
            .write(&mut self.buf, &[])
            .map_err(|e| format!("building a frame: {e}"))?;
        self.cap
            .sendpacket(&self.buf[..])
            .map_err(|e| format!("sendpacket: {e}"))
    }
}

fn parse_mac(s: &str) -> Res<[u8; 6]> {
    let parts: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| format!("`{s}` is not a MAC address"))?;
    parts
        .try_into()
        .map_err(|_| format!("`{s}` is not a MAC address"))
}

/// The `i`-th spoofed source: `base + i mod count`.
fn source(base: Ipv4Addr, count: u32, i: u64) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(base).wrapping_add((i % u64::from(count.max(1))) as u32))
}

// ---------------------------------------------------------------------------------------
// /proc probes
// ---------------------------------------------------------------------------------------

fn tasks(pid: u32) -> Vec<PathBuf> {
    fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Nanoseconds the process's live threads have spent on a CPU.
fn cpu_ns(pid: u32) -> Res<u64> {
    let t = tasks(pid);
    if t.is_empty() {
        return Err(format!("process {pid} is gone"));
    }
    Ok(t.iter()
        .filter_map(|p| fs::read_to_string(p.join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum())
}

/// Voluntary + involuntary context switches of every live thread.
fn switches(pid: u32) -> u64 {
    tasks(pid)
        .iter()
        .filter_map(|p| fs::read_to_string(p.join("status")).ok())
        .map(|s| {
            s.lines()
                .filter(|l| l.starts_with("voluntary_ctxt") || l.starts_with("nonvoluntary_ctxt"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// `VmRSS` and `VmHWM` in kB.
fn memory(pid: u32) -> (u64, u64) {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Where the RSS is, in kB, from `/proc/PID/smaps`: the program's own file, shared libraries,
/// mapped sockets (libpcap's capture ring), and the rest (heap, stacks, other anonymous).
fn rss_parts(pid: u32) -> [u64; 4] {
    let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
    let smaps = fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut parts = [0u64; 4];
    let mut kind = 3;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first == "Rss:" {
            parts[kind] += words
                .next()
                .and_then(|w| w.parse::<u64>().ok())
                .unwrap_or(0);
        } else if first.contains('-') && !first.ends_with(':') {
            // A mapping's header: range perms offset dev inode [path].
            let path = words.nth(4).unwrap_or("");
            kind = if !path.is_empty() && Path::new(path) == exe {
                0
            } else if path.contains(".so") {
                1
            } else if path.starts_with("socket:") {
                2
            } else {
                3
            };
        }
    }
    parts
}

/// CPU time of reaped children (cutime + cstime), in ms.
fn children_cpu_ms(pid: u32) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // cutime and cstime are fields 16 and 17, i.e. indexes 13 and 14 after the name.
    let ticks = f.get(13).copied().unwrap_or(0) + f.get(14).copied().unwrap_or(0);
    ticks * 10 // USER_HZ = 100
}

/// How long a process must stay idle to count as drained. Longer than knockd's libpcap read
/// timeout (50 ms): with TPACKET_V3 the kernel hands it a partly filled block of packets only
/// when that timer fires, so a knockd that looks idle for 50 ms may still have packets coming.
const QUIET: Duration = Duration::from_millis(120);

/// Waits until the process has used under 0.3 ms of CPU in every 10 ms window for [`QUIET`]
/// (it has drained what it was sent), or `limit` passes. Returns whether it settled.
fn wait_quiet(pid: u32, limit: Duration) -> Res<bool> {
    let start = Instant::now();
    let mut last_busy = Instant::now();
    let mut last = cpu_ns(pid)?;
    while start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(10));
        let now = cpu_ns(pid)?;
        if now - last >= 300_000 {
            last_busy = Instant::now();
        } else if last_busy.elapsed() >= QUIET {
            return Ok(true);
        }
        last = now;
    }
    Ok(false)
}

/// Packets dropped by the kernel's per-CPU input backlogs (all namespaces), summed.
fn softnet_drops() -> u64 {
    fs::read_to_string("/proc/net/softnet_stat")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| u64::from_str_radix(l.split_whitespace().nth(1)?, 16).ok())
        .sum()
}

/// GET http://ADDR/api/status, parsed.
fn status(addr: &str) -> Res<Value> {
    let sa: SocketAddr = addr.parse().map_err(|_| format!("bad address {addr}"))?;
    let mut s = TcpStream::connect_timeout(&sa, Duration::from_secs(2))
        .map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok();
    s.write_all(b"GET /api/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut text = String::new();
    s.take(4 << 20)
        .read_to_string(&mut text)
        .map_err(|e| format!("{addr}: {e}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .ok_or("no HTTP body")?;
    serde_json::from_str(body).map_err(|e| format!("status JSON: {e}"))
}

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

/// `send`: COUNT SYNs to PORT from SRC-COUNT sources starting at SRC-BASE (+ SRC-OFFSET), at
/// RATE packets/s (0 = as fast as possible), for at most MAX-SECONDS. With --settle-pid, sends
/// in batches and waits after each until that process is idle again (closed loop: nothing is
/// dropped because the daemon fell behind), and reports the process's CPU time for the run.
fn send(o: &Opts) -> Res<()> {
    let mut tx = Sender::open(o)?;
    let (base, src_count) = (o.ip("src-base")?, o.num::<u32>("src-count", None)?);
    let offset = o.num::<u64>("src-offset", Some(0))?;
    let port = o.num::<u16>("port", None)?;
    let count = o.num::<u64>("count", None)?;
    let rate = o.num::<f64>("rate", Some(0.0))?;
    let max = Duration::from_secs_f64(o.num::<f64>("max-seconds", None)?);
    let pid = o
        .opt("settle-pid")
        .map(str::parse::<u32>)
        .transpose()
        .map_err(|_| "bad pid")?;
    let batch = o.num::<u64>("batch", Some(1000))?.max(1);

    let start = Instant::now();
    let mut settled = true;
    if let Some(pid) = pid {
        settled &= wait_quiet(pid, Duration::from_secs(30))?;
    }
    let cpu0 = pid.map(cpu_ns).transpose()?;
    let t0 = Instant::now();
    let mut sent = 0u64;
    let mut timed_out = false;
    'outer: while sent < count {
        let end = (sent + batch).min(count);
        while sent < end {
            if sent % 64 == 0 && start.elapsed() >= max {
                timed_out = true;
                break 'outer;
            }
            if rate > 0.0 {
                let due = t0 + Duration::from_secs_f64(sent as f64 / rate);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
            }
            tx.syn(source(base, src_count, offset + sent), port)?;
            sent += 1;
        }
        if let Some(pid) = pid {
            let left = max
                .saturating_sub(start.elapsed())
                .max(Duration::from_secs(5));
            settled &= wait_quiet(pid, left.min(Duration::from_secs(30)))?;
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = match (pid, cpu0) {
        (Some(pid), Some(c0)) => Some((cpu_ns(pid)? - c0) as f64 / 1e6),
        _ => None,
    };
    println!(
        "{}",
        json!({
            "sent": sent, "wall_s": wall, "pps": sent as f64 / wall,
            "cpu_ms": cpu, "timed_out": timed_out, "settled": settled,
        })
    );
    Ok(())
}

/// `flood`: SYNs to PORT from SRC-COUNT spoofed sources, as fast as possible (or at RATE) for
/// DURATION seconds (and at most MAX-PACKETS), with LEGIT knock sequences SEQ from LEGIT-BASE,
/// LEGIT-BASE+1, ... spread evenly through it (each sent back to back, like `knock`).
fn flood(o: &Opts) -> Res<()> {
    let mut tx = Sender::open(o)?;
    let (base, src_count) = (o.ip("src-base")?, o.num::<u32>("src-count", None)?);
    let port = o.num::<u16>("port", None)?;
    let duration = Duration::from_secs_f64(o.num::<f64>("duration", None)?);
    let max_packets = o.num::<u64>("max-packets", None)?;
    let rate = o.num::<f64>("rate", Some(0.0))?;
    let legit = o.num::<u32>("legit", Some(0))?;
    let legit_base = o.ip("legit-base")?;
    let seq = o.ports("seq")?;

    let drops0 = softnet_drops();
    let t0 = Instant::now();
    let mut sent = 0u64;
    let mut next_legit = 0u32;
    let mut legit_times = Vec::new();
    loop {
        if sent % 256 == 0 {
            let now = t0.elapsed();
            if now >= duration || sent >= max_packets {
                break;
            }
            let due = duration.mul_f64((f64::from(next_legit) + 0.5) / f64::from(legit.max(1)));
            if next_legit < legit && now >= due {
                let src = Ipv4Addr::from(u32::from(legit_base) + next_legit);
                for &p in &seq {
                    tx.syn(src, p)?;
                }
                legit_times.push(json!({"src": src.to_string(), "at_s": now.as_secs_f64()}));
                next_legit += 1;
            }
        }
        if rate > 0.0 {
            let due = Duration::from_secs_f64(sent as f64 / rate);
            let now = t0.elapsed();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        tx.syn(source(base, src_count, sent), port)?;
        sent += 1;
    }
    let wall = t0.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({
            "sent": sent, "wall_s": wall, "pps": sent as f64 / wall,
            "legit": legit_times, "softnet_drops": softnet_drops() - drops0,
        })
    );
    Ok(())
}

/// `latency`: COUNT knocks (SEQ, back to back) from SRC-BASE, SRC-BASE+1, ...; for each, the
/// time from just before the last knock's frame is handed to the kernel to the moment the
/// gateway namespace's ruleset gains a rule for that source, as reported by `nft monitor`
/// (a netlink event on commit, read through a pipe by a thread that timestamps each line).
fn latency(o: &Opts) -> Res<()> {
    let mut tx = Sender::open(o)?;
    let seq = o.ports("seq")?;
    let count = o.num::<u32>("count", None)?;
    let base = o.ip("src-base")?;
    let gw = o.str("gw-netns")?;
    let gap = Duration::from_millis(o.num::<u64>("gap-ms", Some(200))?);
    let limit = Duration::from_millis(o.num::<u64>("timeout-ms", Some(5000))?);
    let max = Duration::from_secs_f64(o.num::<f64>("max-seconds", None)?);

    let mut mon = Command::new("ip")
        .args(["netns", "exec", gw, "nft", "monitor", "rules"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("nft monitor: {e}"))?;
    let out = mon.stdout.take().ok_or("no stdout")?;
    let (ltx, lrx) = mpsc::channel::<(Instant, String)>();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if ltx.send((Instant::now(), line)).is_err() {
                return;
            }
        }
    });
    let result = (|| {
        // Prove the monitor is subscribed before timing anything: add a marker rule and wait
        // for its event.
        let ipt = |args: &[&str]| {
            Command::new("ip")
                .args(["netns", "exec", gw, "iptables", "-w"])
                .args(args)
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        let primed = Instant::now();
        let mut seen = false;
        while !seen && primed.elapsed() < Duration::from_secs(10) {
            ipt(&["-N", "KGBENCH_PRIME"]);
            ipt(&["-A", "KGBENCH_PRIME", "-j", "RETURN"]);
            let until = Instant::now() + Duration::from_millis(500);
            while let Ok((_, l)) = lrx.recv_timeout(until.saturating_duration_since(Instant::now()))
            {
                if l.contains("KGBENCH_PRIME") {
                    seen = true;
                    break;
                }
            }
            ipt(&["-F", "KGBENCH_PRIME"]);
            ipt(&["-X", "KGBENCH_PRIME"]);
        }
        if !seen {
            return Err("nft monitor never reported the marker rule".to_string());
        }
        while lrx.try_recv().is_ok() {}

        let start = Instant::now();
        let mut lat_ms = Vec::new();
        let mut missed = Vec::new();
        for i in 0..count {
            if start.elapsed() >= max {
                break;
            }
            let src = Ipv4Addr::from(u32::from(base) + i);
            let needle = format!("saddr {src} ");
            let (last, firsts) = seq.split_last().ok_or("--seq is empty")?;
            for &p in firsts {
                tx.syn(src, p)?;
            }
            let t_last = Instant::now();
            tx.syn(src, *last)?;
            let deadline = t_last + limit;
            let mut found = None;
            while let Ok((t, l)) =
                lrx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                if l.starts_with("add rule") && l.contains(&needle) {
                    found = Some(t);
                    break;
                }
            }
            match found {
                Some(t) => lat_ms.push((t - t_last).as_secs_f64() * 1e3),
                None => missed.push(src.to_string()),
            }
            std::thread::sleep(gap);
        }
        let attempted = lat_ms.len() + missed.len();
        let mut sorted = lat_ms.clone();
        sorted.sort_by(f64::total_cmp);
        println!(
            "{}",
            json!({
                "attempted": attempted, "opened": lat_ms.len(), "missed": missed,
                "p50_ms": percentile(&sorted, 50.0), "p99_ms": percentile(&sorted, 99.0),
                "min_ms": sorted.first(), "max_ms": sorted.last(), "all_ms": lat_ms,
            })
        );
        Ok(())
    })();
    let _ = mon.kill();
    let _ = mon.wait();
    result
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// `idle`: over SECONDS with no traffic, the process's wake-ups (context switches of all its
/// threads) per second, its CPU time, and its reaped children's CPU time.
fn idle(o: &Opts) -> Res<()> {
    let pid = o.num::<u32>("pid", None)?;
    let secs = o.num::<f64>("seconds", None)?;
    let (s0, c0, k0) = (switches(pid), cpu_ns(pid)?, children_cpu_ms(pid));
    std::thread::sleep(Duration::from_secs_f64(secs));
    let (s1, c1, k1) = (switches(pid), cpu_ns(pid)?, children_cpu_ms(pid));
    let (rss, hwm) = memory(pid);
    let [program, libraries, ring, anon] = rss_parts(pid);
    println!(
        "{}",
        json!({
            "seconds": secs, "wakeups_per_s": (s1.saturating_sub(s0)) as f64 / secs,
            "cpu_ms": (c1 - c0) as f64 / 1e6, "children_cpu_ms": k1 - k0,
            "threads": tasks(pid).len(), "rss_kb": rss, "hwm_kb": hwm,
            "rss_program_kb": program, "rss_libraries_kb": libraries,
            "rss_ring_kb": ring, "rss_anon_kb": anon,
        })
    );
    Ok(())
}

/// `mem`: VmRSS, VmHWM and CPU time (ms) now.
fn mem(o: &Opts) -> Res<()> {
    let pid = o.num::<u32>("pid", None)?;
    let (rss, hwm) = memory(pid);
    let cpu = cpu_ns(pid)? as f64 / 1e6;
    println!("{}", json!({"rss_kb": rss, "hwm_kb": hwm, "cpu_ms": cpu}));
    Ok(())
}

/// `quiet`: waits (at most MAX-SECONDS) until the process is idle: it has drained its backlog.
fn quiet(o: &Opts) -> Res<()> {
    let pid = o.num::<u32>("pid", None)?;
    let max = Duration::from_secs_f64(o.num::<f64>("max-seconds", None)?);
    let t0 = Instant::now();
    let settled = wait_quiet(pid, max)?;
    println!(
        "{}",
        json!({"settled": settled, "waited_s": t0.elapsed().as_secs_f64()})
    );
    Ok(())
}

/// `status`: knockgate's counters (from its status JSON).
fn status_cmd(o: &Opts) -> Res<()> {
    let v = status(o.str("addr")?)?;
    println!("{}", v["counters"]);
    Ok(())
}

/// `sample`: every EVERY-MS, one TSV line `secs rss_kb hwm_kb tracked needle_count cpu_ms`
/// to OUT, until STOP-FILE exists or MAX-SECONDS pass. `tracked` comes from knockgate's
/// status page (--status ADDR; -1 without), `needle_count` counts NEEDLE in the growing file
/// LOG (-1 without): knockd's `Stage 1` lines.
fn sample(o: &Opts) -> Res<()> {
    let pid = o.num::<u32>("pid", None)?;
    let out = PathBuf::from(o.str("out")?);
    let stop = PathBuf::from(o.str("stop-file")?);
    let every = Duration::from_millis(o.num::<u64>("every-ms", Some(1000))?);
    let max = Duration::from_secs_f64(o.num::<f64>("max-seconds", None)?);
    let status_addr = o.opt("status");
    let log = o.opt("log").map(PathBuf::from);
    let needle = o.opt("needle").unwrap_or(": Stage 1\n");

    let mut f = fs::File::create(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let (mut log_pos, mut count, mut tail) = (0u64, 0i64, String::new());
    let t0 = Instant::now();
    let mut next = t0;
    while t0.elapsed() < max && !stop.exists() {
        let (rss, hwm) = memory(pid);
        if rss == 0 {
            break; // gone
        }
        let tracked = status_addr
            .and_then(|a| status(a).ok())
            .and_then(|v| v["counters"]["tracked_sources"].as_i64())
            .unwrap_or(-1);
        let n = match &log {
            Some(p) => {
                count_new(p, &mut log_pos, &mut tail, needle, &mut count);
                count
            }
            None => -1,
        };
        let cpu = cpu_ns(pid).unwrap_or(0) as f64 / 1e6;
        writeln!(
            f,
            "{:.3}\t{rss}\t{hwm}\t{tracked}\t{n}\t{cpu:.1}",
            t0.elapsed().as_secs_f64()
        )
        .map_err(|e| e.to_string())?;
        next += every;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    Ok(())
}

/// Counts `needle` in what was appended to `path` since `pos`.
fn count_new(path: &Path, pos: &mut u64, tail: &mut String, needle: &str, count: &mut i64) {
    use std::io::{Seek, SeekFrom};
    let Ok(mut f) = fs::File::open(path) else {
        return;
    };
    if f.seek(SeekFrom::Start(*pos)).is_err() {
        return;
    }
    let mut buf = Vec::new();
    if f.take(256 << 20).read_to_end(&mut buf).is_err() {
        return;
    }
    *pos += buf.len() as u64;
    let text = std::mem::take(tail) + &String::from_utf8_lossy(&buf);
    // Keep the unfinished last line for the next round.
    let (done, rest) = match text.rfind('\n') {
        Some(i) => text.split_at(i + 1),
        None => ("", text.as_str()),
    };
    *count += done.matches(needle).count() as i64;
    *tail = rest.to_string();
}

// ---------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------

/// `report`: the markdown table from the JSON/TSV files run.sh left in DIR.
fn report(o: &Opts) -> Res<()> {
    let dir = PathBuf::from(o.str("dir")?);
    let r = Report { dir };
    print!("{}", r.render()?);
    Ok(())
}

const DAEMONS: [&str; 2] = ["knockgate", "knockd"];

struct Report {
    dir: PathBuf,
}

impl Report {
    fn json(&self, name: &str) -> Value {
        fs::read_to_string(self.dir.join(name))
            .ok()
            .and_then(|s| serde_json::from_str(s.trim()).ok())
            .unwrap_or(Value::Null)
    }

    fn text(&self, name: &str) -> String {
        fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    fn render(&self) -> Res<String> {
        let mut s = String::new();
        s += &self.text("machine.md");
        s += "\n";
        s += &self.test1();
        s += &self.test5();
        s += &self.test2();
        s += &self.test3();
        s += &self.test4();
        Ok(s)
    }

    fn test1(&self) -> String {
        let mut s = String::from(
            "### 1. CPU per 100 000 packets as tracked sources grow\n\n\
             | tracked sources | packets | knockgate CPU / 100k | knockd CPU / 100k | knockd / knockgate |\n\
             |---:|---|---:|---:|---:|\n",
        );
        let sizes = self.text("t1-sizes.txt");
        let mut notes = Vec::new();
        for size in sizes.split_whitespace() {
            for (phase, what) in [
                ("probe", "SYN to the 2nd knock port, untracked source"),
                (
                    "preload",
                    "first knock, new source (table growing to this size)",
                ),
            ] {
                let mut per = Vec::new();
                for d in DAEMONS {
                    let v = self.json(&format!("t1-{d}-{size}-{phase}.json"));
                    let sent = v["sent"].as_f64().unwrap_or(0.0);
                    let cpu = v["cpu_ms"].as_f64();
                    per.push(match cpu {
                        Some(c) if sent > 0.0 => Some(c / sent * 100_000.0),
                        _ => None,
                    });
                    if v["timed_out"].as_bool() == Some(true) {
                        notes.push(format!(
                            "{d} at {size}, {phase}: hit the phase's time limit after {} packets \
                             ({:.0} packets/s); its figure is scaled from those",
                            sent,
                            v["pps"].as_f64().unwrap_or(0.0)
                        ));
                    }
                    if v["settled"].as_bool() == Some(false) {
                        notes.push(format!(
                            "{d} at {size}, {phase}: did not go idle between batches within the limit \
                             (it may have been behind)"
                        ));
                    }
                }
                s += &format!(
                    "| {} | {what} | {} | {} | {} |\n",
                    group(size),
                    ms(per[0]),
                    ms(per[1]),
                    ratio(per[1], per[0])
                );
            }
        }
        for n in notes {
            s += &format!("\n- {n}");
        }
        let checks = self.text("t1-checks.txt");
        if !checks.trim().is_empty() {
            s += "\n\nChecks:\n\n";
            for l in checks.lines() {
                s += &format!("- {l}\n");
            }
        }
        s += "\n";
        s
    }

    fn test2(&self) -> String {
        let mut s =
            String::from("### 2. Spoofed-source SYN flood, 60 s, with 10 legitimate knocks\n\n");
        let mut rows: Vec<(String, [String; 2])> = Vec::new();
        let mut add = |name: &str, vals: [String; 2]| rows.push((name.to_string(), vals));
        let f: Vec<Value> = DAEMONS
            .iter()
            .map(|d| self.json(&format!("t2-{d}-flood.json")))
            .collect();
        let res: Vec<Value> = DAEMONS
            .iter()
            .map(|d| self.json(&format!("t2-{d}-result.json")))
            .collect();
        let samples: Vec<Vec<Vec<f64>>> = DAEMONS
            .iter()
            .map(|d| parse_tsv(&self.text(&format!("t2-{d}-samples.tsv"))))
            .collect();
        let num = |v: &Value, k: &str| v[k].as_f64();
        add(
            "flood packets sent (rate)",
            [0, 1].map(|i| match (num(&f[i], "sent"), num(&f[i], "pps")) {
                (Some(n), Some(p)) => format!(
                    "{} ({} /s)",
                    group(&format!("{n:.0}")),
                    group(&format!("{p:.0}"))
                ),
                _ => "n/a".into(),
            }),
        );
        add(
            "legitimate knocks that opened",
            [0, 1].map(|i| match num(&res[i], "opened") {
                Some(n) => format!("{n:.0} / {}", f[i]["legit"].as_array().map_or(0, Vec::len)),
                None => "n/a".into(),
            }),
        );
        add(
            "flood packets the daemon processed",
            [0, 1].map(|i| {
                // knockgate counts what its captures delivered; knockd says nothing, but every
                // flood packet it processes starts an attempt and logs one `Stage 1` line.
                let (n, how) = match i {
                    0 => (num(&res[i], "received"), ""),
                    _ => (num(&res[i], "stage1_lines"), ", from its Stage 1 lines"),
                };
                match (n, num(&f[i], "sent")) {
                    (Some(n), Some(sent)) if sent > 0.0 => format!(
                        "{} ({:.1} %{how})",
                        group(&format!("{n:.0}")),
                        (n / sent * 100.0).min(100.0)
                    ),
                    _ => "n/a".into(),
                }
            }),
        );
        add(
            "of which dropped by the daemon (its loop behind)",
            [0, 1].map(|i| match num(&res[i], "queue_full") {
                Some(n) => group(&format!("{n:.0}")),
                None if i == 1 => "not reported by knockd".into(),
                None => "n/a".into(),
            }),
        );
        let kb = |v: Option<f64>| v.map_or("n/a".to_string(), |k| format!("{:.1} MiB", k / 1024.0));
        add(
            "RSS before the flood",
            [0, 1].map(|i| kb(num(&res[i], "rss_before_kb"))),
        );
        add(
            "peak RSS (VmHWM)",
            [0, 1].map(|i| kb(num(&res[i], "hwm_kb"))),
        );
        add(
            "RSS at the end of the flood",
            [0, 1].map(|i| kb(num(&res[i], "rss_end_kb"))),
        );
        add(
            "final RSS (after catching up)",
            [0, 1].map(|i| kb(num(&res[i], "rss_final_kb"))),
        );
        // Tracked sources: knockgate from its status page; knockd estimated from its log.
        let timeout = 25.0;
        let tracked = |i: usize| -> (Option<f64>, Option<f64>) {
            let rows = &samples[i];
            if i == 0 {
                let vals: Vec<f64> = rows.iter().map(|r| r[3]).filter(|v| *v >= 0.0).collect();
                (vals.iter().copied().reduce(f64::max), vals.last().copied())
            } else {
                // Attempts created in the last seq_timeout seconds = tracked (knockd removes
                // expired ones on every packet).
                let est: Vec<f64> = rows
                    .iter()
                    .map(|r| {
                        let old = rows
                            .iter()
                            .rev()
                            .find(|o| o[0] <= r[0] - timeout)
                            .map_or(0.0, |o| o[4]);
                        r[4] - old
                    })
                    .collect();
                (est.iter().copied().reduce(f64::max), est.last().copied())
            }
        };
        let t: Vec<_> = [0, 1].map(tracked).into();
        add(
            "tracked sources: peak / at the end",
            [0, 1].map(|i| match t[i] {
                (Some(p), Some(e)) => format!(
                    "{} / {}{}",
                    group(&format!("{p:.0}")),
                    group(&format!("{e:.0}")),
                    if i == 1 { " (estimated)" } else { "" }
                ),
                _ => "n/a".into(),
            }),
        );
        add(
            "CPU time during the flood",
            [0, 1].map(|i| match num(&res[i], "cpu_ms") {
                Some(c) => format!("{:.1} s", c / 1e3),
                None => "n/a".into(),
            }),
        );
        s += "| | knockgate | knockd |\n|---|---:|---:|\n";
        for (name, v) in rows {
            s += &format!("| {name} | {} | {} |\n", v[0], v[1]);
        }
        s += "\n";
        s
    }

    fn test3(&self) -> String {
        let v: Vec<Value> = DAEMONS
            .iter()
            .map(|d| self.json(&format!("t3-{d}.json")))
            .collect();
        let mut s = String::from(
            "### 3. Knock-to-open latency (last knock sent -> rule in the ruleset), 100 knocks\n\n\
             | | knockgate | knockd | knockd / knockgate |\n|---|---:|---:|---:|\n",
        );
        for (k, name) in [
            ("p50_ms", "p50"),
            ("p99_ms", "p99"),
            ("min_ms", "min"),
            ("max_ms", "max"),
        ] {
            let a = v[0][k].as_f64();
            let b = v[1][k].as_f64();
            s += &format!(
                "| {name} | {} | {} | {} |\n",
                a.map_or("n/a".into(), |x| format!("{x:.1} ms")),
                b.map_or("n/a".into(), |x| format!("{x:.1} ms")),
                ratio(b, a)
            );
        }
        s += &format!(
            "| opened | {} / {} | {} / {} | |\n\n",
            v[0]["opened"], v[0]["attempted"], v[1]["opened"], v[1]["attempted"]
        );
        s
    }

    fn test5(&self) -> String {
        let rates = self.text("t5-rates.txt");
        if rates.trim().is_empty() {
            return String::new();
        }
        let mut s = String::from(
            "### 5. CPU per packet at fixed rates (100 000 SYNs from 30 000 spoofed sources)\n\n\
             | rate asked | knockgate: rate sent, CPU per packet | knockd: rate sent, CPU per packet | knockd / knockgate |\n\
             |---:|---:|---:|---:|\n",
        );
        for rate in rates.split_whitespace() {
            let mut per = Vec::new();
            let mut cells = Vec::new();
            for d in DAEMONS {
                let v = self.json(&format!("t5-{d}-{rate}.json"));
                let sent = v["sent"].as_f64().unwrap_or(0.0);
                let us = v["cpu_ms"]
                    .as_f64()
                    .filter(|_| sent > 0.0)
                    .map(|c| c * 1000.0 / sent);
                per.push(us);
                cells.push(format!(
                    "{}/s, {}",
                    group(&format!("{:.0}", v["pps"].as_f64().unwrap_or(0.0))),
                    us.map_or("n/a".to_string(), |u| format!("{u:.2} µs"))
                ));
            }
            s += &format!(
                "| {}/s | {} | {} | {} |\n",
                group(rate),
                cells[0],
                cells[1],
                ratio(per[1], per[0])
            );
        }
        s += "\n";
        s
    }

    fn test4(&self) -> String {
        let v: Vec<Value> = DAEMONS
            .iter()
            .map(|d| self.json(&format!("t4-{d}.json")))
            .collect();
        let m: Vec<Value> = DAEMONS
            .iter()
            .map(|d| self.json(&format!("t4-{d}-start.json")))
            .collect();
        let secs = v[0]["seconds"].as_f64().unwrap_or(0.0);
        let mut s = format!(
            "### 4. Idle cost ({secs:.0} s without traffic, after start)\n\n\
             | | knockgate | knockd | knockgate / knockd |\n|---|---:|---:|---:|\n"
        );
        let f = |x: Option<f64>, unit: &str, prec: usize| {
            x.map_or("n/a".into(), |x| format!("{x:.prec$}{unit}"))
        };
        /// name, knockgate, knockd, unit, decimals
        type Row<'a> = (&'a str, Option<f64>, Option<f64>, &'a str, usize);
        let mib = |i: usize, key: &str| v[i][key].as_f64().map(|k| k / 1024.0);
        let rows: [Row; 10] = [
            (
                "wake-ups per second (context switches, all threads)",
                v[0]["wakeups_per_s"].as_f64(),
                v[1]["wakeups_per_s"].as_f64(),
                "",
                2,
            ),
            (
                "CPU time of the daemon",
                v[0]["cpu_ms"].as_f64(),
                v[1]["cpu_ms"].as_f64(),
                " ms",
                1,
            ),
            (
                "CPU time of its child processes",
                v[0]["children_cpu_ms"].as_f64(),
                v[1]["children_cpu_ms"].as_f64(),
                " ms",
                0,
            ),
            (
                "threads",
                v[0]["threads"].as_f64(),
                v[1]["threads"].as_f64(),
                "",
                0,
            ),
            (
                "RSS 2 s after start",
                m[0]["rss_kb"].as_f64().map(|k| k / 1024.0),
                m[1]["rss_kb"].as_f64().map(|k| k / 1024.0),
                " MiB",
                1,
            ),
            (
                "RSS at the end of the idle period",
                v[0]["rss_kb"].as_f64().map(|k| k / 1024.0),
                v[1]["rss_kb"].as_f64().map(|k| k / 1024.0),
                " MiB",
                1,
            ),
            (
                "of which: the program's own file (shared, clean)",
                mib(0, "rss_program_kb"),
                mib(1, "rss_program_kb"),
                " MiB",
                1,
            ),
            (
                "of which: shared libraries (libc, libpcap and its libdbus chain)",
                mib(0, "rss_libraries_kb"),
                mib(1, "rss_libraries_kb"),
                " MiB",
                1,
            ),
            (
                "of which: the capture ring (mapped socket)",
                mib(0, "rss_ring_kb"),
                mib(1, "rss_ring_kb"),
                " MiB",
                1,
            ),
            (
                "of which: heap, stacks, other anonymous",
                mib(0, "rss_anon_kb"),
                mib(1, "rss_anon_kb"),
                " MiB",
                1,
            ),
        ];
        for (name, a, b, unit, p) in rows {
            let r = match b {
                Some(0.0) => "— (knockd: 0)".to_string(),
                _ => ratio(a, b),
            };
            s += &format!("| {name} | {} | {} | {r} |\n", f(a, unit, p), f(b, unit, p));
        }
        s += "\n";
        s
    }
}

fn parse_tsv(text: &str) -> Vec<Vec<f64>> {
    text.lines()
        .map(|l| {
            l.split('\t')
                .map(|x| x.parse().unwrap_or(-1.0))
                .collect::<Vec<f64>>()
        })
        .filter(|r| r.len() >= 6)
        .collect()
}

fn ms(v: Option<f64>) -> String {
    match v {
        Some(x) if x >= 100.0 => format!("{x:.0} ms"),
        Some(x) => format!("{x:.1} ms"),
        None => "n/a".into(),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => {
            let r = a / b;
            if r >= 10.0 {
                format!("{r:.0}×")
            } else {
                format!("{r:.2}×")
            }
        }
        _ => "n/a".into(),
    }
}

/// 100000 -> "100 000".
fn group(n: &str) -> String {
    let (int, frac) = n.split_once('.').map_or((n, None), |(a, b)| (a, Some(b)));
    let digits: Vec<char> = int.chars().collect();
    let mut out = String::new();
    for (i, c) in digits.iter().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 && c.is_ascii_digit() {
            out.push(' ');
        }
        out.push(*c);
    }
    match frac {
        Some(f) => format!("{out}.{f}"),
        None => out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(group("100000"), "100 000");
        assert_eq!(group("999"), "999");
        assert_eq!(group("1234567.5"), "1 234 567.5");
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&[3.0], 99.0), Some(3.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn sources_wrap() {
        let b: Ipv4Addr = "10.0.0.0".parse().unwrap();
        assert_eq!(source(b, 256, 257), "10.0.0.1".parse::<Ipv4Addr>().unwrap());
        assert_eq!(
            source(b, 1 << 24, 65536),
            "10.1.0.0".parse::<Ipv4Addr>().unwrap()
        );
    }

    #[test]
    fn counts_needles_across_reads() {
        let dir = std::env::temp_dir().join(format!("knockgen-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("log");
        fs::write(&p, "a: Stage 1\nb: Stage 1\nc: Sta").unwrap();
        let (mut pos, mut tail, mut n) = (0, String::new(), 0);
        count_new(&p, &mut pos, &mut tail, ": Stage 1\n", &mut n);
        assert_eq!(n, 2);
        fs::write(&p, "a: Stage 1\nb: Stage 1\nc: Stage 1\nd: Stage 2\n").unwrap();
        count_new(&p, &mut pos, &mut tail, ": Stage 1\n", &mut n);
        assert_eq!(n, 3);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn ratios() {
        assert_eq!(ratio(Some(30.0), Some(2.0)), "15×");
        assert_eq!(ratio(Some(3.0), Some(2.0)), "1.50×");
        assert_eq!(ratio(None, Some(2.0)), "n/a");
    }
}
