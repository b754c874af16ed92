//! The status page's HTTP request handling on any bytes: the bytes a client sends before
//! waiting for the answer, framed and answered as a worker does (`status::server::respond`),
//! routing and rendering included.
//!
//! Invariants checked beyond "no panic": every answer has a status line, `Connection: close`
//! and a Content-Length equal to its body (a HEAD answer: no body); 200 only for GET or HEAD
//! (after the empty lines a server skips before a request line, RFC 9112 section 2.2).
#![no_main]

use knockgate::status::server::respond;
use knockgate::status::{DoorStatus, OpenSession, Snapshot};
use libfuzzer_sys::fuzz_target;

const NOW: u64 = 1_790_000_000;

fn snapshot() -> Snapshot {
    Snapshot {
        version: "0.1.0".into(),
        now_unix: NOW,
        uptime_secs: 3600,
        healthy: true,
        doors: vec![DoorStatus {
            name: "ssh<script>".into(),
            actions: vec!["firewall".into()],
            steps: 3,
            open: vec![OpenSession {
                src: "203.0.113.9".parse().unwrap(),
                kind: knockgate::status::SessionKind::Firewall,
                opened_unix: NOW - 19,
                expires_unix: NOW + 1781,
            }],
            last_opened_unix: Some(NOW - 19),
        }],
        knocks_per_hour: vec![1; 24],
        ..Snapshot::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let hosts = ["gw.lan".to_string(), "[fd00::1]:8080".to_string()];
    let Some(answer) = respond(data, &hosts, snapshot(), NOW + 1).expect("hosts are valid") else {
        return;
    };
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let head = std::str::from_utf8(&answer[..end]).expect("an ASCII head");
    let body = &answer[end + 4..];
    // RFC 9112 2.2: empty lines before the request line are skipped (httparse does).
    let start = data.iter().position(|b| !matches!(b, b'\r' | b'\n'));
    let request = &data[start.unwrap_or(data.len())..];
    let status: u16 = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head}"));
    assert!(head.contains("\r\nConnection: close\r\n"), "{head}");
    let length: usize = head
        .split("\r\n")
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length: {head}"));
    if body.len() != length {
        assert!(body.is_empty() && request.starts_with(b"HEAD "), "{head}");
    }
    if status == 200 {
        assert!(
            request.starts_with(b"GET ") || request.starts_with(b"HEAD "),
            "{head}"
        );
    }
});
