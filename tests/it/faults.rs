//! Faults the gateway meets in its life, with the real daemon in namespaces: the capture
//! interface going down and up, deleted and recreated, its address changed; the state
//! directory read-only or full, at startup and while running. Detection resumes by itself
//! within 5 s, errors are clear, and no door is left open past its time.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

const LONG: Duration = Duration::from_secs(10);
/// What the issue allows for detection to resume after a fault.
const RESUME: Duration = Duration::from_secs(5);

const CONFIG: &str = r#"
[daemon]
interfaces = ["kgw0"]
state_dir = "@DIR@/state"

[[door]]
name = "openSSH"
sequence = ["7000", "8000", "9000"]
seq_timeout = "10s"
start_command = "sh -c 'echo %IP% >> @DIR@/opened'"
"#;

/// Knocks once a second until the door opens for the client (a new line in `opened`), at most
/// `limit`; returns how long it took from `since`.
fn knock_until_open(lab: &Lab, since: Instant, limit: Duration) -> Duration {
    let link = lab.link(0);
    let opened = lab.path("opened");
    let before = read(&opened).lines().count();
    while since.elapsed() < limit {
        lab.client(0)
            .run(&[knockgate(), "knock", &link.gw_v4, "7000", "8000", "9000"]);
        let wait = Instant::now();
        while wait.elapsed() < Duration::from_millis(800) {
            if read(&opened).lines().count() > before {
                return since.elapsed();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("the door did not open within {limit:?} of the fault's end");
}

#[test]
fn interface_down_for_five_seconds_then_up() {
    if !can_run_netns() {
        return;
    }
    let lab = Lab::new();
    let cfg = lab.write_config("knockgate.toml", CONFIG);
    let daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    knock_until_open(&lab, Instant::now(), LONG);
    lab.gw.ip(&["link", "set", "kgw0", "down"]);
    std::thread::sleep(Duration::from_secs(5));
    lab.gw.ip(&["link", "set", "kgw0", "up"]);
    let up = Instant::now();
    let took = knock_until_open(&lab, up, RESUME + Duration::from_secs(2));
    assert!(
        took <= RESUME,
        "detection resumed {took:?} after the link came back"
    );
    assert!(
        daemon.own_log().contains("retrying") || daemon.own_log().contains("listening on kgw0")
    );
}

#[test]
fn veth_deleted_and_recreated() {
    if !can_run_netns() {
        return;
    }
    let lab = Lab::new();
    let cfg = lab.write_config("knockgate.toml", CONFIG);
    let daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    knock_until_open(&lab, Instant::now(), LONG);
    // Deleting one end deletes the pair.
    lab.gw.ip(&["link", "del", "kgw0"]);
    daemon.wait_log("cannot capture on kgw0", LONG);
    // The same link again (a USB Ethernet adapter plugged back in).
    let link = lab.link(0);
    sh(&[
        "ip",
        "link",
        "add",
        "name",
        "kgw0",
        "netns",
        &lab.gw.name,
        "type",
        "veth",
        "peer",
        "name",
        &link.client_if,
        "netns",
        &lab.client(0).name,
    ]);
    for (ns, ifname, v4) in [
        (&lab.gw, "kgw0", &link.gw_v4),
        (lab.client(0), link.client_if.as_str(), &link.client_v4),
    ] {
        ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", ifname]);
        ns.ip(&["link", "set", ifname, "up"]);
    }
    let back = Instant::now();
    let took = knock_until_open(&lab, back, RESUME + Duration::from_secs(2));
    assert!(
        took <= RESUME,
        "detection resumed {took:?} after the link was recreated"
    );
}

#[test]
fn address_changed() {
    if !can_run_netns() {
        return;
    }
    let lab = Lab::new();
    let cfg = lab.write_config("knockgate.toml", CONFIG);
    let daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    let link = lab.link(0);
    // A DHCP renewal hands the gateway another address: the old one goes, the new one comes.
    lab.gw
        .ip(&["addr", "del", &format!("{}/24", link.gw_v4), "dev", "kgw0"]);
    lab.gw.ip(&["addr", "add", "10.200.0.9/24", "dev", "kgw0"]);
    let changed = Instant::now();
    let opened = lab.path("opened");
    loop {
        lab.client(0)
            .run(&[knockgate(), "knock", "10.200.0.9", "7000", "8000", "9000"]);
        std::thread::sleep(Duration::from_millis(500));
        if read(&opened).contains(&link.client_v4) {
            break;
        }
        assert!(
            changed.elapsed() <= RESUME,
            "knocks at the new address ignored:\n{}",
            daemon.own_log()
        );
    }
    // Knocks at the old address count no more (nothing answers there, but a client that
    // still knows it may knock; the gateway must not treat it as its own).
    daemon.wait_log("kgw0: knocks count when sent to [10.200.0.9", LONG);
}

/// A small tmpfs on the lab's state directory (unmounted on drop): lets the tests make the
/// state directory read-only or full without touching the machine's own disks.
struct SmallFs(std::path::PathBuf);

impl SmallFs {
    fn mount(path: &std::path::Path, opts: &str) -> SmallFs {
        std::fs::create_dir_all(path).unwrap();
        sh(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            opts,
            "knockgate-test",
            path.to_str().unwrap(),
        ]);
        SmallFs(path.to_path_buf())
    }

    fn remount(&self, opts: &str) {
        sh(&[
            "mount",
            "-o",
            &format!("remount,{opts}"),
            self.0.to_str().unwrap(),
        ]);
    }

    /// Fills the file system up.
    fn fill(&self) {
        let _ = Command::new("dd")
            .args([
                "if=/dev/zero",
                &format!("of={}/filler", self.0.display()),
                "bs=4k",
            ])
            .output();
    }

    fn unfill(&self) {
        let _ = std::fs::remove_file(self.0.join("filler"));
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn read_only_state_directory_at_startup_is_a_clear_error() {
    if !can_run_netns() {
        return;
    }
    let lab = Lab::new();
    let _fs = SmallFs::mount(&lab.path("state"), "ro,size=64k");
    let cfg = lab.write_config("knockgate.toml", START_STOP);
    let out = lab
        .gw
        .run(&[knockgate(), "run", "--config", cfg.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("state directory {}", lab.path("state").display()))
            && err.contains("Read-only file system"),
        "{err}"
    );
}

/// A state directory that cannot be written makes the gateway unhealthy (503 naming it and
/// the error) while the doors still work, until a write succeeds again.
#[test]
fn a_full_state_directory_makes_the_gateway_unhealthy_until_a_write_succeeds() {
    if !can_run_netns() {
        return;
    }
    let lab = Lab::new();
    let fs = SmallFs::mount(&lab.path("state"), "size=64k");
    let gw = lab.add_host_link();
    let config = format!("{START_STOP}\n[status]\nlisten = \"{gw}:8080\"\n");
    let cfg = lab.write_config("knockgate.toml", &config);
    let daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    daemon.wait_log("status page on", LONG);
    let addr = format!("{gw}:8080");
    let healthz = |want: u16| {
        let start = Instant::now();
        loop {
            let (code, body) = http_get(&addr, "/healthz");
            if code == want || start.elapsed() > LONG {
                return (code, body);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    assert_eq!(healthz(200).0, 200, "healthy before the disk fills");
    let link = lab.link(0);
    let events = lab.path("events");
    fs.fill();
    lab.client(0)
        .ok(&[knockgate(), "knock", &link.gw_v4, "7000", "8000"]);
    daemon.wait_file(&events, "open", LONG);
    let (code, body) = healthz(503);
    assert_eq!(code, 503, "{body}");
    let state = lab.path("state");
    assert!(
        body.contains(&format!("state_dir {} cannot be written", state.display()))
            && body.contains("No space left on device"),
        "{body}"
    );
    let (_, status) = http_get(&addr, "/api/status");
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(v["state"]["writable"], false, "{status}");
    assert_eq!(v["healthy"], false);
    // The door still closes on time; with space back, that close is journalled and the
    // gateway is healthy again.
    fs.unfill();
    daemon.wait_file(&events, "close", LONG);
    let (code, body) = healthz(200);
    assert_eq!(code, 200, "{body}");
    let (_, status) = http_get(&addr, "/api/status");
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(v["state"]["writable"], true, "{status}");
    assert_eq!(v["state"]["error"], serde_json::Value::Null, "{status}");
}

#[test]
fn full_or_read_only_state_directory_while_running_loses_no_door() {
    if !can_run_netns() {
        return;
    }
    let lab = Lab::new();
    let fs = SmallFs::mount(&lab.path("state"), "size=64k");
    let cfg = lab.write_config("knockgate.toml", START_STOP);
    let daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    let link = lab.link(0);
    let events = lab.path("events");
    // The disk fills up; a door opens: the journal cannot be written, the daemon says so
    // and still closes the door on time.
    fs.fill();
    lab.client(0)
        .ok(&[knockgate(), "knock", &link.gw_v4, "7000", "8000"]);
    daemon.wait_file(&events, "open", LONG);
    let opened = Instant::now();
    daemon.wait_log("cannot save open doors", LONG);
    daemon.wait_file(&events, "close", LONG);
    assert!(
        opened.elapsed() >= Duration::from_millis(2500),
        "closed early"
    );
    // Space comes back, then the file system turns read-only: same story.
    fs.unfill();
    fs.remount("ro");
    lab.client(0)
        .ok(&[knockgate(), "knock", &link.gw_v4, "7000", "8000"]);
    daemon.wait_log_count("cannot save open doors", 2, LONG);
    let start = Instant::now();
    while read(&events).matches("close").count() < 2 && start.elapsed() < LONG {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        read(&events).matches("close").count(),
        2,
        "{}",
        daemon.own_log()
    );
    // Writable again: the next change is journalled.
    fs.remount("rw");
    lab.client(0)
        .ok(&[knockgate(), "knock", &link.gw_v4, "7000", "8000"]);
    daemon.wait_log_count("timed: running command: sh -c 'echo open", 3, LONG);
    // (The journal is written right after the command starts: wait for it.)
    daemon.wait_file(
        &lab.path("state/sessions.json"),
        "\"door\": \"timed\"",
        LONG,
    );
}
