//! An idle daemon does nothing (issue 15): no fixed tick wakes it, no child process runs,
//! and yet the status page is exact and a knock opens at once. Counts, not times: over 10 s
//! of idling, the context switches of all the daemon's threads together.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// A firewall door and the status page, as on the image (no LED: its heartbeat is a pattern
/// that must run).
const CONFIG: &str = r#"
[daemon]
interfaces = ["kgw0"]
state_dir = "@DIR@/state"

[firewall]
chain = "KNOCKD"
daily_flush = "04:00"

[status]
listen = "0.0.0.0:8080"

[[door]]
name = "openSSH"
sequence = ["7000", "8000", "9000"]
firewall = { ports = ["22/tcp"], duration = "30m" }
"#;

/// How many context switches the idle daemon may make in [`IDLE`]: half a wake-up a second.
/// Measured: 0 (the loop, which reads the capture ring itself, the event thread and the status
/// server all sleep until something happens). The ticks this replaced (a snapshot every second, the
/// interfaces every 2 s, `iptables -S` every 5 s) made 75 to 90; a new tick of 1 Hz or more
/// fails it, and so does a periodic child process (a fork and a wait are several switches).
const MAX_SWITCHES: u64 = 5;
const IDLE: Duration = Duration::from_secs(10);

/// Voluntary and involuntary context switches of every thread of `pid`, and its thread count.
fn switches(pid: u32) -> (u64, usize) {
    let mut total = 0;
    let mut threads = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task")).expect("the daemon runs") {
        let status =
            fs::read_to_string(task.expect("task").path().join("status")).unwrap_or_default();
        threads += 1;
        total += status
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    (total, threads)
}

/// The body of `GET /api/status` from the status page at `addr`.
fn get_status(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("the status page answers");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /api/status HTTP/1.0\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

#[test]
fn an_idle_daemon_sleeps_and_still_answers_at_once() {
    if !can_run_netns() {
        return;
    }
    let lab = Lab::new();
    let gw = lab.add_host_link();
    let cfg = lab.write_config("knockgate.toml", CONFIG);
    let daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    daemon.wait_log("chain KNOCKD ready", Duration::from_secs(10));
    // Start-up settles (the first filter, the first check of the chain).
    std::thread::sleep(Duration::from_secs(2));

    let (before, _) = switches(daemon.pid());
    std::thread::sleep(IDLE);
    let (after, threads) = switches(daemon.pid());
    let idle = after - before;
    eprintln!("idle {IDLE:?}: {idle} context switches, {threads} threads");
    assert!(
        idle <= MAX_SWITCHES,
        "{idle} context switches in {IDLE:?} of idling (at most {MAX_SWITCHES}): something wakes the daemon on a timer\n{}",
        daemon.log_text()
    );
    // The loop (which reads the capture rings), the event thread and the status server's
    // accept thread: its workers start with a connection and end when idle.
    assert!(threads <= 3, "{threads} threads");

    // The status page is exact although no snapshot was made while idle: the daemon makes
    // one for the request.
    let body = get_status(&format!("{gw}:8080"));
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON from /api/status");
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let snapshot_unix = json["now_unix"].as_u64().expect("now_unix");
    assert!(
        now_unix.abs_diff(snapshot_unix) <= 2,
        "snapshot of {snapshot_unix}, now {now_unix}"
    );
    assert!(json["uptime_secs"].as_u64().unwrap() >= 12, "{json}");

    // A knock after the idle period opens at once: the loop was asleep, not stuck.
    let link = lab.link(0);
    let start = Instant::now();
    lab.client(0)
        .ok(&[knockgate(), "knock", &link.gw_v4, "7000", "8000", "9000"]);
    loop {
        let rules = lab.gw.ok(&["iptables", "-w", "-S", "KNOCKD"]);
        if String::from_utf8_lossy(&rules.stdout).contains(&link.client_v4) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no rule for the knocker\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// wlan0 configured but not plugged in: its capture waits for a link announcement
/// instead of retrying every second, and captures as soon as the interface appears.
#[test]
fn a_missing_interface_costs_no_wake_ups_and_is_captured_when_it_appears() {
    if !can_run_netns() {
        return;
    }
    let mut lab = Lab::new();
    let cfg = lab.write_config(
        "knockgate.toml",
        &CONFIG
            .replace(r#"["kgw0"]"#, r#"["kgw0", "kgw1"]"#)
            .replace("0.0.0.0:8080", "127.0.0.1:8080"),
    );
    let daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    daemon.wait_log("cannot capture on kgw1", Duration::from_secs(10));
    // The first retries (0.2 s, doubling) pass.
    std::thread::sleep(Duration::from_secs(8));
    let (before, _) = switches(daemon.pid());
    std::thread::sleep(IDLE);
    let (after, _) = switches(daemon.pid());
    assert!(
        after - before <= MAX_SWITCHES,
        "{} context switches in {IDLE:?} with an interface missing",
        after - before
    );
    // Plugged in: captured at once (the link announcement), not after the 30 s retry.
    let start = Instant::now();
    lab.add_client();
    daemon.wait_log("listening on kgw1", Duration::from_secs(3));
    eprintln!("kgw1 captured {:?} after it appeared", start.elapsed());
    let link = lab.link(1);
    lab.client(1)
        .ok(&[knockgate(), "knock", &link.gw_v4, "7000", "8000", "9000"]);
    let start = Instant::now();
    loop {
        let rules = lab.gw.ok(&["iptables", "-w", "-S", "KNOCKD"]);
        if String::from_utf8_lossy(&rules.stdout).contains(&link.client_v4) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no rule for the knocker on kgw1"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
