//! `knockgate firstboot` end to end: the image's config filled in at first boot, the daemon
//! run on it in a namespace, the door knocked open with Debian's `knock` and the ports read
//! from the note, and the status page showing the opening but never the sequence.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

const LONG: Duration = Duration::from_secs(10);

/// The image's config, as shipped: the SSH door's sequence is left empty.
fn image(status_addr: &str) -> String {
    format!(
        r#"
[daemon]
interfaces = ["kgw0"]
state_dir = "@DIR@/state"

[status]
listen = "{status_addr}:8080"

[[door]]
name = "ssh"
sequence = []          # generated at first boot by `knockgate firstboot`
seq_timeout = "10s"
firewall = {{ ports = ["22/tcp"], duration = "30s" }}
"#
    )
}

/// One HTTP/1.1 GET: the status code and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

#[test]
fn firstboot_sequence_opens_the_door_and_never_shows_on_the_status_page() {
    if !can_run_netns() {
        return;
    }
    let lab = Lab::new();
    let gw = lab.add_host_link();
    let config = lab.write_config("knockgate.toml", &image(&gw));
    let boot = lab.path("boot");
    std::fs::create_dir(&boot).unwrap();

    let out = Command::new(knockgate())
        .args(["firstboot", "--config", config.to_str().unwrap()])
        .args(["--boot-dir", boot.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The ports, as the owner reads them from the note (Debian's `knock` line).
    let note = read(&boot.join("knockgate-sequence.txt"));
    let line = note
        .lines()
        .find_map(|l| l.trim().strip_prefix("knock GATEWAY "))
        .unwrap_or_else(|| panic!("no knock command in the note:\n{note}"));
    let ports: Vec<String> = line.split_whitespace().map(str::to_string).collect();
    assert_eq!(ports.len(), 3, "{line}");
    let numbers: Vec<u16> = ports.iter().map(|p| p.parse().unwrap()).collect();

    let daemon = lab.start_daemon(&config, &[], &["kgw0"]);
    daemon.wait_log(&format!("status page on http://{gw}:8080/"), LONG);
    let link = lab.link(0);
    let mut knock = vec!["knock", link.gw_v4.as_str()];
    knock.extend(ports.iter().map(String::as_str));
    lab.client(0).ok(&knock);
    daemon.wait_log(&format!("{}: ssh: OPEN SESAME", link.client_v4), LONG);
    daemon.wait_log(
        &format!("{}: ssh: opened 22/tcp for 30s", link.client_v4),
        LONG,
    );

    // Once the page has the opening, no page shows a port of the sequence.
    let addr: SocketAddr = format!("{gw}:8080").parse().unwrap();
    let start = Instant::now();
    while !get(addr, "/api/status").1.contains(&link.client_v4) {
        assert!(start.elapsed() < LONG, "the opening never reached the page");
        std::thread::sleep(Duration::from_millis(200));
    }
    for path in ["/api/status", "/", "/metrics"] {
        let (code, body) = get(addr, path);
        assert_eq!(code, 200, "{path}: {body}");
        assert!(
            body.contains("ssh"),
            "{path} does not show the door: {body}"
        );
        for p in &numbers {
            assert!(!has_number(&body, *p), "{path} shows port {p}:\n{body}");
        }
    }
    // A reload of a config whose sequence is empty again is refused; the door stays.
    let filled = read(&config);
    let at = filled.find("sequence = [").unwrap();
    let end = at + filled[at..].find(']').unwrap() + 1;
    std::fs::write(
        &config,
        format!("{}sequence = []{}", &filled[..at], &filled[end..]),
    )
    .unwrap();
    daemon.signal("HUP");
    daemon.wait_log("config reload failed, keeping the current config", LONG);
    assert!(daemon.own_log().contains("knockgate firstboot --boot-dir"));

    // Nor the daemon's log, debug lines included.
    let log = daemon.log_text();
    for l in log.lines() {
        assert!(
            numbers.iter().all(|p| !has_number(l, *p)),
            "a log line shows the sequence: {l}"
        );
    }
}
