//! An idle daemon does nothing (issue 15): no fixed tick wakes it, no child process runs,
//! and yet the status page is exact and a knock opens at once. Counts, not times: over 10 s
//! of idling, the context switches of all the daemon's threads together. And a daemon that
//! falls behind loses packets only in the kernel's ring, counted.

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

/// A loop that cannot keep up loses packets in the kernel, never silently. Stopped (SIGSTOP)
/// while 20 000 knocks arrive, the daemon finds what its capture ring (1 MiB) held, counts
/// the rest as dropped on the status page, and opens for the next knock as before.
#[test]
fn packets_the_ring_cannot_hold_are_counted_as_dropped() {
    if !can_run_netns() {
        return;
    }
    const SENT: usize = 20_000;
    let lab = Lab::new();
    let gw = lab.add_host_link();
    let config = format!(
        "{CONFIG}\n[[door]]\nname = \"udpDoor\"\nsequence = [\"6001/udp\", \"6002/udp\"]\n\
         start_command = \"true\"\n"
    );
    let cfg = lab.write_config("knockgate.toml", &config);
    let daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    daemon.wait_log("chain KNOCKD ready", Duration::from_secs(10));
    let status = format!("{gw}:8080");
    let counters = || {
        let json: serde_json::Value =
            serde_json::from_str(&get_status(&status)).expect("JSON from /api/status");
        let c = &json["counters"];
        (
            c["packets"].as_u64().expect("packets"),
            c["dropped_queue"].as_u64().expect("dropped_queue"),
        )
    };
    let (packets0, dropped0) = counters();
    assert_eq!(dropped0, 0);

    let link = lab.link(0);
    let mut args = vec![knockgate().to_string(), "knock".into(), link.gw_v4.clone()];
    args.extend(std::iter::repeat_n("6001:udp".to_string(), SENT));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    daemon.signal("STOP");
    lab.client(0).ok(&args);
    daemon.signal("CONT");

    // Read until the counts stop moving (the ring drained): bounded by time.
    let start = Instant::now();
    let mut last = counters();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = counters();
        if now == last || start.elapsed() > Duration::from_secs(10) {
            break;
        }
        last = now;
    }
    let (packets, dropped) = last;
    let seen = packets - packets0;
    eprintln!("{SENT} sent while stopped: {seen} read from the ring, {dropped} dropped");
    assert!(
        dropped > 0,
        "{SENT} knocks cannot fit in the ring: some were dropped, and counted ({seen} read)"
    );
    // Each of the ring's four blocks holds at least the packets of one 10 ms window.
    assert!(seen >= 4, "the ring held only {seen} packets");
    // Every knock is accounted for: read or dropped (the kernel's backlog may lose a few
    // before the capture sees them, never add any).
    assert!(
        seen + dropped <= SENT as u64 && seen + dropped >= SENT as u64 * 9 / 10,
        "{seen} read + {dropped} dropped of {SENT} sent"
    );

    // Still listening: a knock opens.
    lab.client(0)
        .ok(&[knockgate(), "knock", &link.gw_v4, "7000", "8000", "9000"]);
    let start = Instant::now();
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

/// Connected to a broker and with nothing happening, MQTT adds only its keep-alive: a ping
/// every `keep_alive` (here 30 s), so over 10 s of idling the daemon's threads together switch
/// no more than without it (issue 25: rumqttc's event loop sleeps on its socket and timer).
#[test]
fn an_idle_daemon_connected_to_mqtt_still_sleeps() {
    if !can_run_netns() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let lab = Lab::new();
    let _broker = Broker::start(&lab);
    let password = lab.path("mqtt.password");
    fs::write(&password, "s3cret\n").unwrap();
    fs::set_permissions(&password, fs::Permissions::from_mode(0o600)).unwrap();
    let config = CONFIG.replace("0.0.0.0:8080", "127.0.0.1:8080")
        + "\n[mqtt]\nbroker = \"mqtt://127.0.0.1:1883\"\nusername = \"gate\"\npassword_file = \"@DIR@/mqtt.password\"\nkeep_alive = \"30s\"\n";
    let cfg = lab.write_config("knockgate.toml", &config);
    let daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    daemon.wait_log("MQTT: connected", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(2));
    let (before, _) = switches(daemon.pid());
    std::thread::sleep(IDLE);
    let (after, threads) = switches(daemon.pid());
    let idle = after - before;
    eprintln!("idle with MQTT {IDLE:?}: {idle} context switches, {threads} threads");
    assert!(
        idle <= MAX_SWITCHES,
        "{idle} context switches in {IDLE:?} of idling with MQTT connected (at most {MAX_SWITCHES})"
    );
}
