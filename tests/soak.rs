//! A soak test: background noise (full nmap scans, thousands of packets a second) and a
//! legitimate knock every 10 s, for a bounded time (`KNOCKGATE_SOAK_SECONDS`, 180 by default).
//! After a warm-up, the daemon's RSS stays within 5 %, its file descriptor and thread counts
//! do not change, and every legitimate knock opens its door.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const WARM_UP: Duration = Duration::from_secs(30);

/// (RSS in KiB, open file descriptors, threads) of a process.
fn footprint(pid: u32) -> (u64, usize, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name}"))
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    (field("VmRSS:"), fds, field("Threads:") as usize)
}

#[test]
fn noise_and_knocks_for_minutes_keep_the_daemon_flat() {
    if !can_run_netns() {
        return;
    }
    let seconds: u64 = std::env::var("KNOCKGATE_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180);
    let run_for = Duration::from_secs(seconds.clamp(60, 3600));
    let mut lab = Lab::new();
    lab.add_client();
    let config = r#"
[daemon]
interfaces = ["kgw0", "kgw1"]
state_dir = "@DIR@/state"

[firewall]
daily_flush = "off"

[[door]]
name = "ssh"
sequence = ["7000", "8000", "9000"]
firewall = { ports = ["22/tcp"], duration = "1h" }
"#;
    let cfg = lab.write_config("knockgate.toml", config);
    let daemon = lab.start_daemon(&cfg, &[], &["kgw0", "kgw1"]);
    let pid = daemon.pid();
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));

    // The noise: full in-order scans from one host, bounded by the run's end.
    let noise = {
        let (ns, gw) = (lab.client(0).name.clone(), lab.link(0).gw_v4.clone());
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut scans = 0;
            while !stop.load(Ordering::Relaxed) && scans < 100 {
                let _ = std::process::Command::new("ip")
                    .args([
                        "netns", "exec", &ns, "nmap", "-n", "-Pn", "-sS", "-r", "-p", "1-65535",
                    ])
                    .args([
                        "--max-rate",
                        "3000",
                        "--max-retries",
                        "0",
                        "--host-timeout",
                        "60s",
                        &gw,
                    ])
                    .output();
                scans += 1;
            }
            scans
        })
    };

    // The legitimate knocks, every 10 s, and the footprint sampled as we go.
    let l1 = lab.link(1);
    let mut knocks = 0;
    let mut baseline = None;
    let mut peak_rss = 0;
    while start.elapsed() < run_for {
        lab.client(1)
            .ok(&[knockgate(), "knock", &l1.gw_v4, "7000", "8000", "9000"]);
        knocks += 1;
        std::thread::sleep(Duration::from_secs(10));
        let now = footprint(pid);
        if start.elapsed() >= WARM_UP {
            let base = *baseline.get_or_insert(now);
            peak_rss = peak_rss.max(now.0);
            assert_eq!(
                (now.1, now.2),
                (base.1, base.2),
                "fds/threads changed at {:?}",
                start.elapsed()
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let scans = noise.join().unwrap();
    let (base_rss, _, _) = baseline.expect("a baseline after the warm-up");
    let (end_rss, fds, threads) = footprint(pid);
    eprintln!(
        "soak {seconds}s: {scans} scans, {knocks} knocks; RSS {base_rss} KiB after warm-up, peak {peak_rss}, end {end_rss}; {fds} fds, {threads} threads"
    );
    assert!(
        peak_rss * 100 <= base_rss * 105,
        "RSS grew from {base_rss} to {peak_rss} KiB"
    );
    assert!(
        end_rss * 100 <= base_rss * 105,
        "RSS grew from {base_rss} to {end_rss} KiB"
    );
    assert!(scans >= 2, "the noise did not run");
    // Every knock opened (the first opens, the rest extend the same opening).
    let log = daemon.own_log();
    let opened = log
        .matches(&format!("{}: ssh: OPEN SESAME", l1.client_v4))
        .count();
    assert_eq!(opened, knocks, "{knocks} knocks, {opened} opened");
}
