//! The knock page in a real browser: headless Chromium inside the client namespace opens the
//! page file and knocks the real daemon in the gateway namespace; a fixed door and an HMAC
//! door (version 2, its sequence computed by the page with WebCrypto) open (a rule for the
//! client in the chain), the page says it sent them, and a page with a wrong secret opens
//! nothing. Screenshots at phone width go to target/artifacts/. (The gateway answers closed
//! ports with a reset here, so each fetch() ends at once: Chromium's virtual time does not
//! wait for a dropped SYN.)

use std::time::{Duration, Instant};

use crate::browser;
use crate::common::*;

const CONFIG: &str = r#"
[daemon]
interfaces = ["kgw0"]
state_dir = "@DIR@/state"

[firewall]
daily_flush = "off"

[[door]]
name = "openSSH"
sequence = ["7000", "8000", "9000"]
firewall = { ports = ["2222/tcp"], duration = "1h" }

[[door]]
name = "timed"
hmac = { secret_file = "@DIR@/timed.secret", version = 2 }
firewall = { ports = ["2223/tcp"], duration = "1h" }
"#;

fn rules(lab: &Lab) -> String {
    String::from_utf8_lossy(&lab.gw.ok(&["iptables", "-w", "-S", "KNOCKD"]).stdout).into_owned()
}

fn wait_rule(lab: &Lab, port: &str) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        let r = rules(lab);
        if r.lines()
            .any(|l| l.contains(&lab.link(0).client_v4) && l.contains(port))
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn the_knock_page_opens_a_fixed_and_an_hmac_door_from_a_real_browser() {
    if !can_run_netns() || !browser::available() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let lab = Lab::new();
    let secret = lab.path("timed.secret");
    std::fs::write(
        &secret,
        "3f1b6c0e9a7d52e4b8c1f0a3d6e9b2c57a4e1d8c0b3f6a9e2d5c8b1f4a7e0d3c\n",
    )
    .unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = lab.write_config("knockgate.toml", CONFIG);
    let _daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    let gw = lab.link(0).gw_v4.clone();
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let page_of = |door: &str, file: &str, config: &std::path::Path| {
        let page = lab.path(file);
        sh(&[
            knockgate(),
            "phone",
            door,
            "--config",
            config.to_str().unwrap(),
            "--host",
            &gw,
            "--out",
            lab.path("phone").to_str().unwrap(),
            "--page",
            page.to_str().unwrap(),
        ]);
        assert_eq!(
            std::fs::metadata(&page).unwrap().permissions().mode() & 0o777,
            0o600
        );
        page
    };
    for (door, port) in [("openSSH", "2222"), ("timed", "2223")] {
        let page = page_of(door, &format!("{door}.html"), &cfg);
        let url = format!("file://{}#knock", page.display());
        let dom = browser::dump_dom_in(&lab.client(0).name, &url, 5000).expect("chromium");
        assert!(
            dom.contains("data-state=\"sent\""),
            "{door}: the page did not say sent:\n{dom}"
        );
        assert!(dom.contains("Self-test passed"), "{door}: {dom}");
        assert!(
            wait_rule(&lab, port),
            "{door}: no rule for the client:\n{}",
            rules(&lab)
        );
        let shot = artifacts.join(format!("knock-page-{door}.png"));
        browser::screenshot_in(
            &lab.client(0).name,
            &format!("file://{}#knock", page.display()),
            412,
            915,
            &shot,
            5000,
        )
        .expect("screenshot");
    }
    // A page made with a wrong secret: the page knocks, nothing opens.
    let wrong = lab.path("wrong.secret");
    std::fs::write(
        &wrong,
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
    )
    .unwrap();
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
    let wrong_cfg = lab.write_config(
        "wrong.toml",
        &CONFIG
            .replace("timed.secret", "wrong.secret")
            .replace("2223/tcp", "2224/tcp"),
    );
    let page = page_of("timed", "wrong.html", &wrong_cfg);
    let dom = browser::dump_dom_in(
        &lab.client(0).name,
        &format!("file://{}#knock", page.display()),
        5000,
    )
    .expect("chromium");
    assert!(dom.contains("data-state=\"sent\""), "{dom}");
    std::thread::sleep(Duration::from_secs(1));
    let before = rules(&lab);
    assert_eq!(
        before.lines().filter(|l| l.contains("-A KNOCKD")).count(),
        2,
        "{before}"
    );
}
