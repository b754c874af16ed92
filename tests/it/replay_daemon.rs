//! `knockgate replay` reports what the daemon really does (issue 14): the same knocks, sent to
//! the real daemon in a namespace and captured there with tcpdump, then replayed from that
//! capture, give the same plan, door by door and action by action (the daemon's `plan:` debug
//! lines against replay's `would` lines). Both run `actions::plan::plan`; this checks that the
//! daemon and replay feed it the same sessions and doors.

use std::process::Stdio;
use std::time::Duration;

use crate::common::*;

const LONG: Duration = Duration::from_secs(10);

const CONFIG: &str = r#"
[daemon]
interfaces = ["kgw0"]
state_dir = "@DIR@/state"

[firewall]
backend = "none"
daily_flush = "off"

[gpio]
backend = "simulated"

[[relay]]
name = "garage"
pin = 27

[[door]]
name = "ssh"
sequence = ["7000", "8000"]
firewall = { ports = ["22/tcp", "5060-5061/udp"], duration = "30s" }

[[door]]
name = "bye"
sequence = ["7100", "8100"]
close = "ssh"

[[door]]
name = "timed"
sequence = ["7200", "8200"]
start_command = "logger open %IP%"
stop_command = "logger close %IP%"
cmd_timeout = "20s"

[[door]]
name = "garage"
sequence = ["7300", "8300"]
gpio = { relay = "garage", mode = "pulse", duration = "500ms" }
wake_on_lan = { mac = "02:00:00:00:00:99", interface = "kgw0", rate_limit = "1m" }
"#;

/// (door, action) from the daemon's `SRC: DOOR: plan: ACTION` lines.
fn daemon_plan(log: &str) -> Vec<(String, String)> {
    log.lines()
        .filter_map(|l| l.split_once(": plan: "))
        .map(|(head, action)| {
            let door = head.rsplit(": ").next().unwrap().to_string();
            // The structured fields tracing appends after the message.
            let action = action.split(" src=").next().unwrap().trim().to_string();
            (door, action)
        })
        .collect()
}

/// (door, action) from replay's `[T] [SRC: ]DOOR: would ACTION` lines that follow an
/// `OPEN SESAME` at the same time (not the timers that fire after the capture's end).
fn replay_plan(out: &str) -> Vec<(String, String)> {
    let mut opened_at = None;
    let mut plan = Vec::new();
    for line in out.lines() {
        let stamp = line.split(']').next().unwrap_or_default();
        if line.ends_with(": OPEN SESAME") {
            opened_at = Some(stamp.to_string());
            continue;
        }
        let Some((head, action)) = line.split_once(": would ") else {
            continue;
        };
        if opened_at.as_deref() != Some(stamp) {
            continue;
        }
        let door = head.rsplit([' ', ':']).find(|s| !s.is_empty()).unwrap();
        plan.push((door.to_string(), action.trim().to_string()));
    }
    plan
}

#[test]
fn replay_of_a_capture_prints_the_plan_the_daemon_executed() {
    if !can_run_netns() {
        return;
    }
    let lab = Lab::new();
    let cfg = lab.write_config("knockgate.toml", CONFIG);
    let pcap = lab.path("knocks.pcap");
    let tcpdump_err = lab.path("tcpdump.err");
    let mut tcpdump = lab
        .gw
        .cmd("tcpdump")
        .args([
            "-i",
            "kgw0",
            "--immediate-mode",
            "-Z",
            "root",
            "-U",
            "-n",
            "-w",
        ])
        .arg(&pcap)
        .arg("tcp or udp")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&tcpdump_err).unwrap())
        .spawn()
        .expect("tcpdump");
    wait_file(&tcpdump_err, "listening on", LONG);
    let mut daemon = lab.start_daemon(&cfg, &["--dry-run"], &["kgw0"]);
    let gw = lab.link(0).gw_v4.clone();
    let client = lab.client(0);
    let knock = |ports: &[&str]| {
        let mut argv = vec![knockgate(), "knock", gw.as_str()];
        argv.extend_from_slice(ports);
        client.ok(&argv);
    };
    // Every kind of door; ssh twice (the second extends), closed, then opened again; the
    // command door twice (the second only extends its stop command).
    for (ports, opens) in [
        (["7000", "8000"], 1),
        (["7000", "8000"], 2),
        (["7200", "8200"], 3),
        (["7200", "8200"], 4),
        (["7100", "8100"], 5),
        (["7100", "8100"], 6),
        (["7300", "8300"], 7),
        (["7000", "8000"], 8),
    ] {
        knock(&ports);
        daemon.wait_log_count("OPEN SESAME", opens, LONG);
    }
    std::thread::sleep(Duration::from_millis(500));
    let _ = std::process::Command::new("kill")
        .args(["-INT", &tcpdump.id().to_string()])
        .status();
    let _ = tcpdump.wait();
    daemon.signal("TERM");
    daemon.wait_exit(LONG);
    let log = daemon.log_text();
    let executed = daemon_plan(&log);
    assert!(executed.len() >= 10, "too few plan lines:\n{log}");

    let out = std::process::Command::new(knockgate())
        .args(["replay", "--config"])
        .arg(&cfg)
        .args(["--local", &gw])
        .arg(&pcap)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed = replay_plan(&stdout);
    assert_eq!(replayed, executed, "replay:\n{stdout}\ndaemon:\n{log}");
    // And what was planned: the extension, the close, the relay and wake-on-LAN.
    let all: Vec<String> = executed.iter().map(|(d, a)| format!("{d}: {a}")).collect();
    for want in [
        "ssh: open 22/tcp, 5060-5061/udp for 30s",
        "ssh: extend 22/tcp, 5060-5061/udp for 30s",
        "timed: extend the stop command in 20s: logger close 10.200.0.2",
        "bye: close ssh",
        "bye: close ssh: not open, nothing to do",
        "garage: pulse relay garage for 500ms",
        "garage: wake-on-LAN 02:00:00:00:00:99 (to 255.255.255.255:9)",
    ] {
        assert!(
            all.iter().any(|l| l == want),
            "`{want}` not planned: {all:#?}"
        );
    }
}
