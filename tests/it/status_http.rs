//! The status page's HTTP server, for real on loopback (issue #5), serving hand-built
//! snapshots: content types, the JSON API's fields and types, the metrics format, refused Host
//! headers and methods, size and time bounds, a burst of concurrent requests, and the page in
//! headless Chromium (skipped with a message when Chromium is missing outside CI).

use crate::browser;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use knockgate::status::server::{self, ServerConfig, StatusServer};
use knockgate::status::{
    Activity, ActivityKind, Board, CaptureStatus, Counters, DoorStatus, FirewallStatus, GpioStatus,
    LedStatus, OpenSession, RelayStatus, Snapshot, StateStatus,
};
use serde_json::Value;

/// What the daemon knows and must never show: the door's sequence and its command. The
/// snapshot below is built without them, as the daemon builds it.
const SEQUENCE_PORTS: [&str; 3] = ["31337", "41999", "52777"];
const COMMAND: &str = "/usr/sbin/iptables -I INPUT -s %IP% -p tcp --dport 22 -j ACCEPT";
const DOOR: &str = "ssh<script>alert(1)</script>";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn snapshot(now: u64) -> Snapshot {
    Snapshot {
        version: "0.1.0".into(),
        now_unix: now,
        uptime_secs: 4000,
        healthy: true,
        captures: vec![CaptureStatus {
            interface: "eth0".into(),
            up: true,
            error: None,
            addresses: vec!["192.168.1.1".parse().unwrap()],
        }],
        firewall: Some(FirewallStatus {
            backend: "iptables".into(),
            chain: "KNOCKD".into(),
            healthy: true,
            next_flush_unix: Some(now + 3600),
        }),
        doors: vec![DoorStatus {
            name: DOOR.into(),
            actions: vec!["firewall".into(), "command".into()],
            steps: 3,
            open: vec![OpenSession {
                src: "198.51.100.7".parse().unwrap(),
                kind: knockgate::status::SessionKind::Firewall,
                opened_unix: now - 60,
                expires_unix: now + 1740,
            }],
            last_opened_unix: Some(now - 60),
        }],
        recent: vec![
            Activity {
                when_unix: now - 60,
                src: "198.51.100.7".parse().unwrap(),
                lan: false,
                door: DOOR.into(),
                event: ActivityKind::Open,
                stage: 3,
                of: 3,
            },
            Activity {
                when_unix: now - 200,
                src: "192.168.1.30".parse().unwrap(),
                lan: true,
                door: DOOR.into(),
                event: ActivityKind::Stage,
                stage: 1,
                of: 3,
            },
        ],
        knocks_per_hour: (0..24).map(|i| [0, 2, 5, 1][i % 4]).collect(),
        counters: Counters {
            packets: 5000,
            knocks: 120,
            stages: 30,
            opens: 9,
            timeouts: 2,
            resets: 4,
            evictions: 0,
            parse_errors: 3,
            dropped_queue: 1,
            tracked_sources: 2,
        },
        relays: vec![RelayStatus {
            name: "garage".into(),
            pin: 17,
            available: true,
            on: true,
            off_at_unix: Some(now + 5),
        }],
        led: Some(LedStatus {
            pin: 27,
            pattern: knockgate::status::LedPattern::Heartbeat,
            available: true,
        }),
        gpio: Some(GpioStatus {
            backend: "cdev".into(),
            available: true,
            error: None,
        }),
        notices: vec![],
        mqtt: None,
        state: Some(StateStatus {
            dir: "/var/lib/knockgate".into(),
            writable: true,
            error: None,
        }),
    }
}

fn start(board: Board) -> StatusServer {
    StatusServer::start(
        &ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            allowed_hosts: vec!["gw.lan".into()],
        },
        board,
    )
    .expect("start the status server")
}

fn serving(s: Snapshot) -> StatusServer {
    let board = Board::new();
    board.publish(s);
    start(board)
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no {name} header in {self:?}"))
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }
}

/// Sends raw bytes, reads the whole response (the server closes after one).
fn exchange(addr: SocketAddr, raw: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read the response");
    parse_reply(&out)
}

fn parse_reply(out: &[u8]) -> Reply {
    let end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head end in {:?}", String::from_utf8_lossy(out)));
    let head = std::str::from_utf8(&out[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status = status_line[9..12].parse().unwrap();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    Reply {
        status,
        headers,
        body: out[end + 4..].to_vec(),
    }
}

fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
    exchange(
        addr,
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: test\r\n\r\n").as_bytes(),
    )
}

fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path)
}

fn assert_security_headers(r: &Reply) {
    assert_eq!(r.header("X-Frame-Options"), "DENY");
    assert_eq!(r.header("X-Content-Type-Options"), "nosniff");
    assert_eq!(r.header("Referrer-Policy"), "no-referrer");
    assert_eq!(r.header("Cache-Control"), "no-store");
    assert_eq!(r.header("Connection"), "close");
    let csp = r.header("Content-Security-Policy");
    assert!(csp.starts_with("default-src 'none'; "), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(
        r.header("Content-Length").parse::<usize>().unwrap(),
        r.body.len()
    );
}

#[test]
fn endpoints_have_their_content_types_and_security_headers() {
    let server = serving(snapshot(now()));
    let addr = server.local_addr();
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 0);
    for (path, status, ctype) in [
        ("/", 200, "text/html; charset=utf-8"),
        ("/api/status", 200, "application/json"),
        ("/metrics", 200, "text/plain; version=0.0.4; charset=utf-8"),
        ("/healthz", 200, "text/plain; charset=utf-8"),
        ("/nope", 404, "text/plain; charset=utf-8"),
    ] {
        let r = get(addr, path);
        assert_eq!(r.status, status, "{path}");
        assert_eq!(r.header("Content-Type"), ctype, "{path}");
        assert_security_headers(&r);
    }
    assert_eq!(get(addr, "/healthz").text(), "ok\n");
    let page = get(addr, "/").text();
    assert!(page.contains("<title>knockgate: OK</title>"));
    server.stop();
}

#[test]
fn healthz_is_503_when_a_capture_is_down_or_nothing_was_published() {
    let mut s = snapshot(now());
    s.healthy = false;
    s.captures[0].up = false;
    s.captures[0].error = Some("No such device".into());
    let server = serving(s);
    let r = get(server.local_addr(), "/healthz");
    assert_eq!(r.status, 503);
    assert_eq!(
        r.text(),
        "unhealthy: capture on eth0 is down: No such device\n"
    );
    let empty = start(Board::new());
    let r = get(empty.local_addr(), "/healthz");
    assert_eq!(r.status, 503);
    assert!(r.text().contains("has not published"), "{}", r.text());
}

/// Type of a JSON value, for the schema below.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_u64() => "uint",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Checks that `v` is an object with exactly these fields, of these types (`a|b` = either).
fn check_object(v: &Value, at: &str, fields: &[(&str, &str)]) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("{at} is not an object"));
    for (name, types) in fields {
        let field = obj
            .get(*name)
            .unwrap_or_else(|| panic!("{at}.{name} missing"));
        assert!(
            types.split('|').any(|t| t == kind(field)),
            "{at}.{name} is {} not {types}",
            kind(field)
        );
    }
    let mut names: Vec<&str> = obj.keys().map(String::as_str).collect();
    names.retain(|n| !fields.iter().any(|(f, _)| f == n));
    assert!(names.is_empty(), "{at} has undocumented fields {names:?}");
}

#[test]
fn json_api_has_the_documented_fields_and_types() {
    let server = serving(snapshot(now()));
    let r = get(server.local_addr(), "/api/status");
    let v: Value = serde_json::from_slice(&r.body).expect("valid JSON");
    check_object(
        &v,
        "status",
        &[
            ("version", "string"),
            ("now_unix", "uint"),
            ("uptime_secs", "uint"),
            ("healthy", "bool"),
            ("captures", "array"),
            ("firewall", "object|null"),
            ("doors", "array"),
            ("recent", "array"),
            ("knocks_per_hour", "array"),
            ("counters", "object"),
            ("relays", "array"),
            ("led", "object|null"),
            ("gpio", "object|null"),
            ("notices", "array"),
            ("state", "object|null"),
        ],
    );
    for c in v["captures"].as_array().unwrap() {
        check_object(
            c,
            "captures[]",
            &[
                ("interface", "string"),
                ("up", "bool"),
                ("error", "string|null"),
                ("addresses", "array"),
            ],
        );
        for a in c["addresses"].as_array().unwrap() {
            a.as_str().unwrap().parse::<std::net::IpAddr>().unwrap();
        }
    }
    check_object(
        &v["firewall"],
        "firewall",
        &[
            ("backend", "string"),
            ("chain", "string"),
            ("healthy", "bool"),
            ("next_flush_unix", "uint|null"),
        ],
    );
    for d in v["doors"].as_array().unwrap() {
        check_object(
            d,
            "doors[]",
            &[
                ("name", "string"),
                ("actions", "array"),
                ("steps", "uint"),
                ("open", "array"),
                ("last_opened_unix", "uint|null"),
            ],
        );
        for o in d["open"].as_array().unwrap() {
            check_object(
                o,
                "doors[].open[]",
                &[
                    ("src", "string"),
                    ("kind", "string"),
                    ("opened_unix", "uint"),
                    ("expires_unix", "uint"),
                ],
            );
        }
    }
    assert_eq!(v["doors"][0]["name"], DOOR);
    for a in v["recent"].as_array().unwrap() {
        check_object(
            a,
            "recent[]",
            &[
                ("when_unix", "uint"),
                ("src", "string"),
                ("lan", "bool"),
                ("door", "string"),
                ("event", "string"),
                ("stage", "uint"),
                ("of", "uint"),
            ],
        );
    }
    let hours = v["knocks_per_hour"].as_array().unwrap();
    assert_eq!(hours.len(), 24);
    assert!(hours.iter().all(|h| kind(h) == "uint"));
    check_object(
        &v["counters"],
        "counters",
        &[
            ("packets", "uint"),
            ("knocks", "uint"),
            ("stages", "uint"),
            ("opens", "uint"),
            ("timeouts", "uint"),
            ("resets", "uint"),
            ("evictions", "uint"),
            ("parse_errors", "uint"),
            ("dropped_queue", "uint"),
            ("tracked_sources", "uint"),
        ],
    );
    for r in v["relays"].as_array().unwrap() {
        check_object(
            r,
            "relays[]",
            &[
                ("name", "string"),
                ("pin", "uint"),
                ("available", "bool"),
                ("on", "bool"),
                ("off_at_unix", "uint|null"),
            ],
        );
    }
    check_object(
        &v["led"],
        "led",
        &[
            ("pin", "uint"),
            ("pattern", "string"),
            ("available", "bool"),
        ],
    );
    check_object(
        &v["gpio"],
        "gpio",
        &[
            ("backend", "string"),
            ("available", "bool"),
            ("error", "string|null"),
        ],
    );
    check_object(
        &v["state"],
        "state",
        &[
            ("dir", "string"),
            ("writable", "bool"),
            ("error", "string|null"),
        ],
    );
    assert!(v["notices"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| kind(n) == "string"));
}

/// One parsed sample: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// A strict reader of the text exposition format 0.0.4, as far as we emit it: `# HELP` and
/// `# TYPE` before a family's samples, `name{label="value",...} number` lines with escaped
/// label values.
fn parse_metrics(text: &str) -> (BTreeMap<String, String>, Vec<Sample>) {
    let mut types = BTreeMap::new();
    let mut helped = Vec::new();
    let mut samples = Vec::new();
    let is_name = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !n.starts_with(|c: char| c.is_ascii_digit())
    };
    assert!(text.ends_with('\n'), "the exposition ends with a line feed");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP text");
            assert!(is_name(name) && !help.is_empty(), "{line}");
            helped.push(name.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE kind");
            assert_eq!(
                helped.last().map(String::as_str),
                Some(name),
                "HELP before TYPE"
            );
            assert!(
                ["counter", "gauge"].contains(&kind),
                "unexpected type {kind}"
            );
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "{name} declared twice"
            );
        } else {
            assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
            let (name, rest) = match line.find(['{', ' ']) {
                Some(i) => line.split_at(i),
                None => panic!("no value in {line}"),
            };
            assert!(is_name(name), "{line}");
            assert!(types.contains_key(name), "{name} sampled before its TYPE");
            let mut labels = BTreeMap::new();
            let mut rest = rest;
            if let Some(mut r) = rest.strip_prefix('{') {
                loop {
                    if let Some(after) = r.strip_prefix('}') {
                        rest = after;
                        break;
                    }
                    let (label, after) = r.split_once("=\"").expect("label=\"");
                    assert!(is_name(label), "{line}");
                    let mut value = String::new();
                    let mut chars = after.char_indices();
                    let end = loop {
                        match chars.next().expect("closing quote") {
                            (_, '\\') => match chars.next().expect("escape").1 {
                                'n' => value.push('\n'),
                                c @ ('\\' | '"') => value.push(c),
                                c => panic!("bad escape \\{c} in {line}"),
                            },
                            (i, '"') => break i,
                            (_, '\n') => panic!("raw newline in {line}"),
                            (_, c) => value.push(c),
                        }
                    };
                    labels.insert(label.to_string(), value);
                    r = &after[end + 1..];
                    r = r.strip_prefix(',').unwrap_or(r);
                }
            }
            let value = rest.strip_prefix(' ').expect("space before the value");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
            samples.push((name.to_string(), labels, value));
        }
    }
    (types, samples)
}

#[test]
fn metrics_parse_as_prometheus_text_format() {
    let mut s = snapshot(now());
    s.captures.push(CaptureStatus {
        interface: "we\"ird\\if\nname".into(),
        up: false,
        error: Some("gone".into()),
        addresses: vec![],
    });
    let server = serving(s);
    let text = get(server.local_addr(), "/metrics").text();
    let (types, samples) = parse_metrics(&text);
    for (name, kind) in &types {
        assert!(name.starts_with("knockgate_"), "{name}");
        assert_eq!(
            kind == "counter",
            name.ends_with("_total"),
            "{name}: {kind}"
        );
    }
    let find = |name: &str, label: Option<(&str, &str)>| -> f64 {
        samples
            .iter()
            .find(|(n, l, _)| {
                n == name && label.is_none_or(|(k, v)| l.get(k).map(String::as_str) == Some(v))
            })
            .unwrap_or_else(|| panic!("no sample {name} {label:?}"))
            .2
    };
    assert_eq!(
        find("knockgate_capture_up", Some(("interface", "eth0"))),
        1.0
    );
    assert_eq!(
        find(
            "knockgate_capture_up",
            Some(("interface", "we\"ird\\if\nname"))
        ),
        0.0
    );
    assert_eq!(
        find("knockgate_door_open_sessions", Some(("door", DOOR))),
        1.0
    );
    assert_eq!(find("knockgate_relay_on", Some(("relay", "garage"))), 1.0);
    assert_eq!(find("knockgate_packets_total", None), 5000.0);
    assert_eq!(find("knockgate_parse_errors_total", None), 3.0);
    assert_eq!(find("knockgate_dropped_total", None), 1.0);
    assert_eq!(find("knockgate_opens_total", None), 9.0);
    assert_eq!(find("knockgate_healthy", None), 1.0);
    assert_eq!(
        find("knockgate_firewall_healthy", Some(("backend", "iptables"))),
        1.0
    );
}

#[test]
fn a_foreign_host_header_is_refused() {
    let server = serving(snapshot(now()));
    let addr = server.local_addr();
    for host in [
        "evil.example",
        "evil.example:80",
        "gw.lan.evil.example",
        "localhost.evil.example",
    ] {
        for path in ["/", "/api/status", "/metrics"] {
            let r = exchange(
                addr,
                format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
            );
            assert_eq!(r.status, 421, "{host} {path}");
            assert_security_headers(&r);
            assert!(!r.text().contains("knockgate_"), "no data for {host}");
        }
    }
    // The names the server answers to: the configured one, localhost, addresses.
    let port = addr.port();
    for host in [
        format!("gw.lan:{port}"),
        "GW.LAN".to_string(),
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        "192.168.1.1".to_string(),
    ] {
        let r = exchange(
            addr,
            format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
        );
        assert_eq!(r.status, 200, "{host}");
    }
    // HTTP/1.1 needs a Host; HTTP/1.0 may go without.
    assert_eq!(exchange(addr, b"GET / HTTP/1.1\r\n\r\n").status, 400);
    assert_eq!(exchange(addr, b"GET / HTTP/1.0\r\n\r\n").status, 200);
}

#[test]
fn only_get_and_head_are_accepted() {
    let server = serving(snapshot(now()));
    let addr = server.local_addr();
    for method in [
        "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT",
    ] {
        let r = exchange(
            addr,
            format!("{method} / HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 2\r\n\r\nhi")
                .as_bytes(),
        );
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("Allow"), "GET, HEAD");
        assert_security_headers(&r);
    }
}

#[test]
fn head_has_the_headers_and_no_body() {
    let server = serving(snapshot(now()));
    let addr = server.local_addr();
    for path in ["/", "/api/status", "/metrics", "/healthz"] {
        let get = get(addr, path);
        let head = request(addr, "HEAD", path);
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty(), "{path}: HEAD sent a body");
        assert_eq!(head.header("Content-Type"), get.header("Content-Type"));
        assert_eq!(head.header("Content-Length"), get.header("Content-Length"));
    }
    assert_eq!(request(addr, "HEAD", "/nope").status, 404);
}

#[test]
fn user_controlled_names_are_escaped_in_the_page() {
    let server = serving(snapshot(now()));
    let page = get(server.local_addr(), "/").text();
    assert!(page.contains("ssh&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!page.contains(DOOR));
    assert_eq!(page.matches("<script>").count(), 1);
}

#[test]
fn no_response_shows_a_sequence_or_a_command() {
    let server = serving(snapshot(now()));
    let addr = server.local_addr();
    for path in ["/", "/api/status", "/metrics", "/healthz", "/nope"] {
        let text = get(addr, path).text();
        for port in SEQUENCE_PORTS {
            assert!(!text.contains(port), "{path} shows sequence port {port}");
        }
        assert!(!text.contains(COMMAND), "{path} shows the command");
        assert!(!text.contains("iptables -I"), "{path} shows a command line");
        assert!(!text.contains("%IP%"), "{path} shows a command template");
    }
}

#[test]
fn oversized_requests_are_refused() {
    let server = serving(snapshot(now()));
    let addr = server.local_addr();
    let h = format!("Host: {addr}\r\n");
    // A declared body over the limit, and a chunked one.
    let r = exchange(
        addr,
        format!("GET / HTTP/1.1\r\n{h}Content-Length: 100000\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 413);
    assert_security_headers(&r);
    let r = exchange(
        addr,
        format!("GET / HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(r.status, 413);
    // A long target, a request line longer than the whole head limit, too many headers.
    let r = get(addr, &format!("/{}", "a".repeat(3000)));
    assert_eq!(r.status, 414);
    let r = exchange(
        addr,
        format!("GET /{} HTTP/1.1\r\n{h}\r\n", "a".repeat(20_000)).as_bytes(),
    );
    assert_eq!(r.status, 414);
    let many: String = (0..400)
        .map(|i| format!("X-Filler-{i}: {}\r\n", "v".repeat(20)))
        .collect();
    let r = exchange(addr, format!("GET / HTTP/1.1\r\n{h}{many}\r\n").as_bytes());
    assert_eq!(r.status, 431);
    // The server is fine afterwards.
    assert_eq!(get(addr, "/api/status").status, 200);
}

/// One client streams an endless header line: it gets 431 after `MAX_HEAD` bytes and the
/// connection ends, however much more it would send (tiny_http 0.12 kept reading into memory).
#[test]
fn an_endless_header_is_cut_off() {
    let server = serving(snapshot(now()));
    let addr = server.local_addr();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\nX: ").as_bytes())
        .unwrap();
    let chunk = vec![b'a'; 64 * 1024];
    let mut sent = 0usize;
    let started = Instant::now();
    // The server stops reading: writes fail (reset) or block (window full) long before 64 MiB.
    while sent < 64 << 20 && started.elapsed() < Duration::from_secs(10) {
        match s.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    assert!(sent < 64 << 20, "the server kept reading {sent} bytes");
    assert_eq!(get(addr, "/healthz").status, 200);
}

#[test]
fn a_silent_client_times_out_and_does_not_block_others() {
    let server = serving(snapshot(now()));
    let addr = server.local_addr();
    let started = Instant::now();
    // More idle connections than workers.
    let idle: Vec<TcpStream> = (0..server::WORKERS * 3)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    thread::sleep(Duration::from_millis(200));
    // A real request still gets through: idle connections yield once others wait.
    let t = Instant::now();
    assert_eq!(get(addr, "/api/status").status, 200);
    let waited = t.elapsed();
    assert!(
        waited < server::BUSY_HEAD_TIMEOUT * 4 + Duration::from_secs(4),
        "served after {waited:?}"
    );
    // Every idle connection got a 408 and was closed, within the head timeout.
    for mut c in idle {
        c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut out = Vec::new();
        c.read_to_end(&mut out).unwrap();
        assert_eq!(parse_reply(&out).status, 408);
    }
    assert!(started.elapsed() < server::HEAD_TIMEOUT + Duration::from_secs(5));
}

#[test]
fn a_burst_of_concurrent_requests_is_served_quickly() {
    let server = serving(snapshot(now()));
    let addr = server.local_addr();
    let started = Instant::now();
    let threads: Vec<_> = (0..50)
        .map(|i| {
            thread::spawn(move || {
                let mut codes = Vec::new();
                for j in 0..10 {
                    let path = ["/", "/api/status", "/metrics", "/healthz"][(i + j) % 4];
                    codes.push(get(addr, path).status);
                }
                codes
            })
        })
        .collect();
    let codes: Vec<u16> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let took = started.elapsed();
    assert_eq!(codes.len(), 500);
    assert!(codes.iter().all(|&c| c == 200), "{codes:?}");
    assert!(took < Duration::from_secs(30), "500 requests took {took:?}");
    eprintln!("500 requests from 50 threads in {took:?}");
    assert_eq!(get(addr, "/healthz").status, 200);
}

#[test]
fn stop_returns_promptly_with_clients_connected() {
    let server = serving(snapshot(now()));
    let addr = server.local_addr();
    let _idle: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(addr).unwrap()).collect();
    thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    server.stop();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "stop took {:?}",
        t.elapsed()
    );
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "still listening after stop"
    );
}

#[test]
fn bind_errors_say_what_to_do() {
    let server = serving(snapshot(now()));
    let taken = ServerConfig {
        listen: server.local_addr(),
        allowed_hosts: vec![],
    };
    let err = StatusServer::start(&taken, Board::new()).unwrap_err();
    assert!(
        matches!(err, server::StatusError::AddrInUse { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("already in use"), "{err}");
    assert!(err.to_string().contains("[status] listen"), "{err}");
    // TEST-NET-3: never an address of this host.
    let foreign = ServerConfig {
        listen: "203.0.113.1:0".parse().unwrap(),
        allowed_hosts: vec![],
    };
    let err = StatusServer::start(&foreign, Board::new()).unwrap_err();
    assert!(
        matches!(err, server::StatusError::AddrNotAvailable { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("not an address of this host"),
        "{err}"
    );
    let bad = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        allowed_hosts: vec!["http://gw.lan/".into()],
    };
    let err = StatusServer::start(&bad, Board::new()).unwrap_err();
    assert!(
        matches!(err, server::StatusError::BadAllowedHost { .. }),
        "{err:?}"
    );
}

fn artifacts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/artifacts")
}

/// The text of the first time-left element in a dumped DOM, in seconds.
fn time_left(dom: &str) -> u64 {
    let at = dom.find("data-left=").expect("a time-left element");
    let text = &dom[at..];
    let text = &text[text.find('>').unwrap() + 1..];
    let text = &text[..text.find('<').unwrap()];
    text.split(':')
        .try_fold(0u64, |acc, part| part.parse::<u64>().map(|n| acc * 60 + n))
        .unwrap_or_else(|_| panic!("time left {text:?}"))
}

/// The page in headless Chromium, from a server whose snapshot is republished every 250 ms as
/// the daemon does: screenshots at phone and desktop width (kept in `target/artifacts/`), the
/// door, relay and time left in the rendered DOM, and the time left counting down both between
/// loads and live, by the page's script, under the page's Content-Security-Policy.
#[test]
fn the_page_in_a_browser() {
    if !browser::available() {
        return;
    }
    let opened = now();
    let board = Board::new();
    board.publish(snapshot(opened));
    let server = start(board.clone());
    let running = Arc::new(AtomicBool::new(true));
    let publisher = {
        let (board, running) = (board.clone(), running.clone());
        thread::spawn(move || {
            while running.load(Ordering::SeqCst) {
                let mut s = snapshot(opened);
                s.now_unix = now();
                board.publish(s);
                thread::sleep(Duration::from_millis(250));
            }
        })
    };
    let url = format!("http://{}/", server.local_addr());
    let dir = artifacts();
    for (name, w, h) in [("status-phone", 390, 844), ("status-desktop", 1280, 800)] {
        let png = dir.join(format!("{name}-{w}x{h}.png"));
        browser::screenshot(&url, w, h, &png).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{}", png.display());
        // The PNG's own header says the viewport size.
        let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
        assert_eq!((width, height), (w, h), "{}", png.display());
        eprintln!("screenshot: {}", png.display());
    }

    let first = browser::dump_dom(&url, 300).unwrap();
    assert!(
        first.contains("ssh&lt;script&gt;alert(1)&lt;/script&gt;"),
        "door name"
    );
    assert_eq!(
        first.matches("<script").count(),
        1,
        "only the page's own script"
    );
    assert!(first.contains("198.51.100.7"));
    assert!(first.contains("GPIO17"));
    assert!(first.contains("● on"), "relay on");
    let t1 = time_left(&first);
    // The screenshots took a while on a busy machine, never minutes.
    assert!((1600..=1740).contains(&t1), "time left {t1}");
    thread::sleep(Duration::from_millis(2500));
    let later = browser::dump_dom(&url, 300).unwrap();
    let t2 = time_left(&later);
    assert!(t2 < t1 && t1 - t2 <= 60, "time left went from {t1} to {t2}");

    // Live countdown by the script alone: a snapshot that does not change, the page given 300 ms
    // and then 3.3 s of (virtual) time.
    running.store(false, Ordering::SeqCst);
    publisher.join().unwrap();
    let frozen = Board::new();
    frozen.publish(snapshot(opened));
    let still = start(frozen);
    let url = format!("http://{}/", still.local_addr());
    let early = time_left(&browser::dump_dom(&url, 300).unwrap());
    let late = time_left(&browser::dump_dom(&url, 3300).unwrap());
    assert_eq!(early, 1740);
    assert!(
        (2..=4).contains(&(early - late)),
        "the script counted from {early} to {late}"
    );
}

#[test]
fn listens_on_ipv6_loopback() {
    let board = Board::new();
    board.publish(snapshot(now()));
    let server = match StatusServer::start(
        &ServerConfig {
            listen: "[::1]:0".parse().unwrap(),
            allowed_hosts: vec![],
        },
        board,
    ) {
        Ok(s) => s,
        Err(server::StatusError::AddrNotAvailable { .. }) => {
            eprintln!("no IPv6 loopback here: nothing to test");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let addr = server.local_addr();
    assert!(addr.is_ipv6());
    let r = exchange(
        addr,
        format!(
            "GET /api/status HTTP/1.1\r\nHost: [::1]:{}\r\n\r\n",
            addr.port()
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 200);
    let r = exchange(addr, b"GET / HTTP/1.1\r\nHost: [fd00::1]\r\n\r\n");
    assert_eq!(r.status, 200, "an address literal is always allowed");
}
