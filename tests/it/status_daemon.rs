//! The status page served by the running daemon: in headless Chromium with a door open and a
//! relay on, and under an HTTP load while knocks are processed.

use crate::browser;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;

const LONG: Duration = Duration::from_secs(10);

fn config(status_addr: &str) -> String {
    format!(
        r#"
[daemon]
interfaces = ["kgw0"]
state_dir = "@DIR@/state"

[status]
listen = "{status_addr}:8080"

[firewall]
backend = "none"
daily_flush = "off"

[gpio]
backend = "simulated"

[[relay]]
name = "zone1"
pin = 17

[[door]]
name = "garden"
sequence = ["7000", "8000"]
gpio = {{ relay = "zone1", mode = "pulse", duration = "30m" }}
firewall = {{ ports = ["22/tcp"], duration = "30m" }}

[[door]]
name = "counter"
sequence = ["7100", "8100"]
start_command = "sh -c 'echo %IP% >> @DIR@/opened'"
"#
    )
}

/// The `data-left` time in a dumped DOM, in seconds (`MM:SS` or `H:MM:SS`).
fn time_left(dom: &str) -> u64 {
    let at = dom.find("data-left=").expect("a time-left element");
    let text = &dom[at..];
    let text = &text[text.find('>').unwrap() + 1..];
    let text = &text[..text.find('<').unwrap()];
    text.split(':')
        .try_fold(0u64, |acc, part| part.parse::<u64>().map(|n| acc * 60 + n))
        .unwrap_or_else(|_| panic!("time left {text:?}"))
}

#[test]
fn page_from_the_running_daemon_in_a_browser() {
    if !can_run_netns() || !browser::available() {
        return;
    }
    let lab = Lab::new();
    let gw = lab.add_host_link();
    let cfg = lab.write_config("knockgate.toml", &config(&gw));
    let daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    daemon.wait_log(&format!("status page on http://{gw}:8080/"), LONG);
    let link = lab.link(0);
    lab.client(0)
        .ok(&[knockgate(), "knock", &link.gw_v4, "7000", "8000"]);
    daemon.wait_log("zone1 (GPIO 17): on (pulse)", LONG);
    std::thread::sleep(Duration::from_millis(1500)); // the next snapshot
    let url = format!("http://{gw}:8080/");
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("../artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    for (w, h, name) in [(390, 844, "phone"), (1280, 800, "desktop")] {
        let png = dir.join(format!("daemon-status-{name}-{w}x{h}.png"));
        browser::screenshot(&url, w, h, &png).unwrap();
        assert!(
            std::fs::metadata(&png).unwrap().len() > 10_000,
            "empty screenshot"
        );
        eprintln!("screenshot: {}", png.display());
    }
    let first = browser::dump_dom(&url, 300).unwrap();
    for needle in ["garden", "zone1", &link.client_v4] {
        assert!(first.contains(needle), "`{needle}` not on the page");
    }
    let t1 = time_left(&first);
    assert!((1700..=1800).contains(&t1), "time left {t1}");
    std::thread::sleep(Duration::from_millis(2500));
    let t2 = time_left(&browser::dump_dom(&url, 300).unwrap());
    assert!(t2 < t1, "time left went from {t1} to {t2}");
    // The page never shows a sequence or a command.
    for secret in ["7000", "8000", "7100", "8100", "echo %IP%", "sh -c"] {
        assert!(!first.contains(secret), "the page shows `{secret}`");
    }
}

/// One plain HTTP/1.1 GET; true for a 200.
fn get(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    buf.starts_with(b"HTTP/1.1 200")
}

#[test]
fn http_load_does_not_stop_knocks_from_opening_doors() {
    if !can_run_netns() {
        return;
    }
    let lab = Lab::new();
    let gw = lab.add_host_link();
    let cfg = lab.write_config("knockgate.toml", &config(&gw));
    let daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    daemon.wait_log("status page on", LONG);
    let addr: SocketAddr = format!("{gw}:8080").parse().unwrap();
    assert!(get(addr));

    // 200 concurrent clients hammering the page for 10 s (bounded in time and count)...
    let served = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(10);
    let clients: Vec<_> = (0..200)
        .map(|_| {
            let (served, failed) = (served.clone(), failed.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while Instant::now() < until && n < 1000 {
                    if get(addr) {
                        served.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    n += 1;
                }
            })
        })
        .collect();
    // ...while 20 knock sequences arrive: every one opens its door.
    let link = lab.link(0);
    for _ in 0..20 {
        lab.client(0)
            .ok(&[knockgate(), "knock", &link.gw_v4, "7100", "8100"]);
        std::thread::sleep(Duration::from_millis(400));
    }
    for c in clients {
        c.join().unwrap();
    }
    let opened = lab.path("opened");
    let start = Instant::now();
    while read(&opened).lines().count() < 20 && start.elapsed() < LONG {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (served, failed) = (
        served.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    eprintln!("page requests: {served} served, {failed} refused or timed out");
    assert_eq!(read(&opened).lines().count(), 20, "{}", daemon.log_text());
    assert!(served > 100, "the page served only {served} requests");
    // And the page still answers afterwards.
    assert!(get(addr));
}
