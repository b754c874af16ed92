//! Home automation by knock, end to end: wake-on-LAN magic packets seen on the receiving end of
//! a veth pair, and relays and the status LED on the simulated GPIO backend, driven by real
//! knocks through the real daemon; and the doors with a GPIO that cannot be opened. (The real
//! GPIO is read back on QEMU's Raspberry Pi 3 by image/test-pi.sh.)

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

const LONG: Duration = Duration::from_secs(10);

/// `tcpdump` on the client's end of the link, writing UDP port 9 packets to a file.
struct Sniffer {
    child: Child,
    err: std::path::PathBuf,
}

impl Sniffer {
    fn start(lab: &Lab, out: &Path) -> Sniffer {
        let link = lab.link(0);
        let err = lab.path("tcpdump.err");
        let child = lab
            .client(0)
            .cmd("tcpdump")
            // -Z root: tcpdump would otherwise drop to its own user before opening the file,
            // and could not write into the test's private directory.
            // --immediate-mode: deliver each packet at once, not when libpcap's 1 s buffer
            // timeout expires (the test stops tcpdump sooner than that).
            .args([
                "-i",
                &link.client_if,
                "--immediate-mode",
                "-Z",
                "root",
                "-U",
                "-n",
                "-w",
            ])
            .arg(out)
            .arg("udp port 9")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("tcpdump");
        wait_file(&err, "listening on", LONG);
        Sniffer { child, err }
    }

    /// Stops tcpdump and returns the UDP payloads it saw.
    fn payloads(mut self, file: &Path) -> Vec<Vec<u8>> {
        std::thread::sleep(Duration::from_millis(300));
        let _ = std::process::Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let mut cap = pcap::Capture::from_file(file)
            .unwrap_or_else(|e| panic!("{e}; tcpdump said: {}", read(&self.err)));
        let mut out = Vec::new();
        while let Ok(p) = cap.next_packet() {
            let sliced = etherparse::SlicedPacket::from_ethernet(p.data).expect("a packet");
            if let Some(etherparse::TransportSlice::Udp(udp)) = sliced.transport {
                out.push(udp.payload().to_vec());
            }
        }
        out
    }
}

fn magic(mac: [u8; 6], password: Option<[u8; 6]>) -> Vec<u8> {
    knockgate::actions::wol::magic_packet(mac, password)
}

#[test]
fn knock_wakes_a_host_once_per_rate_limit() {
    if !can_run_netns() {
        return;
    }
    let lab = Lab::new();
    let config = r#"
[daemon]
interfaces = ["kgw0"]
state_dir = "@DIR@/state"

[[door]]
name = "wakePC"
sequence = ["7000", "8000"]
wake_on_lan = { mac = "00:11:22:33:44:55", interface = "kgw0", rate_limit = "1h" }

[[door]]
name = "wakeNAS"
sequence = ["7100", "8100"]
wake_on_lan = { mac = "aa:bb:cc:dd:ee:ff", interface = "kgw0", broadcast = "10.200.0.255", password = "01:02:03:04:05:06" }
"#;
    let cfg = lab.write_config("knockgate.toml", config);
    let daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    let dump = lab.path("wol.pcap");
    let sniffer = Sniffer::start(&lab, &dump);
    let gw = lab.link(0).gw_v4.clone();
    let c = lab.client(0);
    c.ok(&[knockgate(), "knock", &gw, "7000", "8000"]);
    daemon.wait_log(
        "wakePC: wake-on-LAN sent to 00:11:22:33:44:55 (102 bytes",
        LONG,
    );
    // Knocked again within the rate limit: nothing is sent.
    c.ok(&[knockgate(), "knock", &gw, "7000", "8000"]);
    daemon.wait_log(
        "wakePC: wake-on-LAN to 00:11:22:33:44:55 not sent: rate-limited",
        LONG,
    );
    c.ok(&[knockgate(), "knock", &gw, "7100", "8100"]);
    daemon.wait_log(
        "wakeNAS: wake-on-LAN sent to aa:bb:cc:dd:ee:ff (108 bytes to 10.200.0.255:9)",
        LONG,
    );
    let seen = sniffer.payloads(&dump);
    assert_eq!(
        seen,
        vec![
            magic([0x00, 0x11, 0x22, 0x33, 0x44, 0x55], None),
            magic(
                [0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff],
                Some([1, 2, 3, 4, 5, 6])
            ),
        ],
        "the receiving end saw exactly one packet per target, with the right MAC"
    );
}

#[test]
fn knocking_at_a_sleeping_hosts_address_wakes_it() {
    if !can_run_netns() {
        return;
    }
    // knockd's Target use case: the knock is addressed to the NAS (asleep, it answers nothing),
    // the gateway sees it and wakes the NAS.
    let lab = Lab::new();
    let config = r#"
[daemon]
interfaces = ["kgw0"]
state_dir = "@DIR@/state"

[[door]]
name = "wakeNAS"
sequence = ["4000", "4001"]
target = "10.200.0.50"
wake_on_lan = { mac = "02:00:00:00:00:50", interface = "kgw0" }
"#;
    let cfg = lab.write_config("knockgate.toml", config);
    let daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    let dump = lab.path("wol.pcap");
    let sniffer = Sniffer::start(&lab, &dump);
    let link = lab.link(0);
    let mac = String::from_utf8(
        lab.gw
            .ok(&["cat", &format!("/sys/class/net/{}/address", link.gw_if)])
            .stdout,
    )
    .unwrap();
    let c = lab.client(0);
    c.ip(&[
        "neigh",
        "add",
        "10.200.0.50",
        "lladdr",
        mac.trim(),
        "dev",
        &link.client_if,
    ]);
    c.ok(&[knockgate(), "knock", "10.200.0.50", "4000", "4001"]);
    daemon.wait_log("wakeNAS: wake-on-LAN sent to 02:00:00:00:00:50", LONG);
    assert_eq!(
        sniffer.payloads(&dump),
        vec![magic([2, 0, 0, 0, 0, 0x50], None)]
    );
}

const RELAYS: &str = r#"
[daemon]
interfaces = ["kgw0"]
state_dir = "@DIR@/state"

[gpio]
backend = "simulated"

[[relay]]
name = "zone1"
pin = 17
group = "sprinklers"
max_on = "2s"

[[relay]]
name = "zone2"
pin = 18
group = "sprinklers"

[[relay]]
name = "garage"
pin = 27
active_low = true

[led]
pin = 25

[[door]]
name = "water1"
sequence = ["7000", "8000"]
gpio = { relay = "zone1", mode = "on" }

[[door]]
name = "water2"
sequence = ["7100", "8100"]
gpio = { relay = "zone2", mode = "pulse", duration = "10m" }

[[door]]
name = "garage"
sequence = ["7200", "8200"]
gpio = { relay = "garage", mode = "pulse", duration = "700ms" }
"#;

/// The time at which a log line containing `needle` was written (its RFC 3339 prefix).
fn logged_at(log: &str, needle: &str) -> jiff::Timestamp {
    let line = log
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("`{needle}` not logged:\n{log}"));
    line.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn relays_pulse_watchdog_groups_and_safe_state_by_knock() {
    if !can_run_netns() {
        return;
    }
    let lab = Lab::new();
    let cfg = lab.write_config("knockgate.toml", RELAYS);
    let mut daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    // At start every relay is in its safe state (off; high on the active-low garage board).
    daemon.wait_log(
        "garage (GPIO 27): off (safe state, simulated backend)",
        LONG,
    );
    let gw = lab.link(0).gw_v4.clone();
    let c = lab.client(0);

    // Garage door: a 700 ms pulse.
    c.ok(&[knockgate(), "knock", &gw, "7200", "8200"]);
    daemon.wait_log("garage (GPIO 27): on (pulse)", LONG);
    daemon.wait_log("garage (GPIO 27): off (time is up)", LONG);
    let log = daemon.log_text();
    let pulse = logged_at(&log, "garage (GPIO 27): off (time is up)")
        .duration_since(logged_at(&log, "garage (GPIO 27): on (pulse)"));
    assert!(
        pulse >= jiff::SignedDuration::from_millis(650)
            && pulse <= jiff::SignedDuration::from_millis(1500),
        "pulse lasted {pulse:?}"
    );

    // Zone 1 "on": cut by its 2 s watchdog.
    c.ok(&[knockgate(), "knock", &gw, "7000", "8000"]);
    daemon.wait_log("zone1 (GPIO 17): on (on)", LONG);
    let start = Instant::now();
    daemon.wait_log("zone1 (GPIO 17): off (time is up)", LONG);
    assert!(
        start.elapsed() >= Duration::from_millis(1500),
        "watchdog fired early"
    );

    // One zone at a time: zone1 on, then zone2 switches it off first.
    c.ok(&[knockgate(), "knock", &gw, "7000", "8000"]);
    daemon.wait_log_count("zone1 (GPIO 17): on (on)", 2, LONG);
    c.ok(&[knockgate(), "knock", &gw, "7100", "8100"]);
    daemon.wait_log("zone1 (GPIO 17): off (exclusive group)", LONG);
    daemon.wait_log("zone2 (GPIO 18): on (pulse)", LONG);

    // SIGTERM: everything back to its safe state before exit.
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(LONG), Some(0));
    let log = daemon.log_text();
    let safe_at_exit = log.rsplit("received signal 15").next().unwrap();
    assert!(
        safe_at_exit.contains("zone2 (GPIO 18): off (safe state)"),
        "{safe_at_exit}"
    );
}

#[test]
fn status_led_heartbeats_and_lights_up_on_a_knock() {
    if !can_run_netns() {
        return;
    }
    let lab = Lab::new();
    let cfg = lab.write_config("knockgate.toml", RELAYS);
    let daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    // The heartbeat: GPIO 25 goes high and low again within a few seconds.
    std::thread::sleep(Duration::from_millis(4500));
    let log = daemon.log_text();
    let highs = log.matches("simulated GPIO 25 high").count();
    assert!(
        (2..=4).contains(&highs),
        "heartbeat flashes in 4.5 s: {highs}"
    );
    // A knock: the LED stays on for the door opening (3 s solid).
    let gw = lab.link(0).gw_v4.clone();
    lab.client(0)
        .ok(&[knockgate(), "knock", &gw, "7200", "8200"]);
    daemon.wait_log("garage (GPIO 27): on (pulse)", LONG);
    std::thread::sleep(Duration::from_millis(3500));
    let log = daemon.log_text();
    // From the door opening, the LED is on (it may already be on from the stage blink) and
    // does not go low for 3 s.
    let opened = logged_at(&log, "garage: OPEN SESAME");
    let after = &log[log.find("garage: OPEN SESAME").unwrap()..];
    let off = logged_at(after, "simulated GPIO 25 low");
    let solid = off.duration_since(opened);
    assert!(
        solid >= jiff::SignedDuration::from_millis(2800)
            && solid <= jiff::SignedDuration::from_millis(3500),
        "LED solid for {solid:?}"
    );
}

#[test]
fn pulse_interrupted_by_sigkill_is_not_resumed_at_restart() {
    if !can_run_netns() {
        return;
    }
    let lab = Lab::new();
    let cfg = lab.write_config("knockgate.toml", RELAYS);
    let mut daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    let gw = lab.link(0).gw_v4.clone();
    lab.client(0)
        .ok(&[knockgate(), "knock", &gw, "7100", "8100"]);
    daemon.wait_log("zone2 (GPIO 18): on (pulse)", LONG);
    daemon.signal("KILL");
    daemon.wait_exit(LONG);
    // The restarted daemon puts the sprinkler in its safe state and leaves it there.
    let before = daemon.log_text().len();
    let restarted = lab.start_daemon(&cfg, &[], &["kgw0"]);
    std::thread::sleep(Duration::from_millis(500));
    let log = restarted.log_text();
    let after_restart = &log[before..];
    assert!(
        after_restart.contains("zone2 (GPIO 18): off (safe state"),
        "{after_restart}"
    );
    assert!(
        !after_restart.contains("zone2 (GPIO 18): on"),
        "{after_restart}"
    );
}

const NO_GPIO: &str = r#"
[daemon]
interfaces = ["kgw0"]
state_dir = "@DIR@/state"

[status]
listen = "@GW@:8080"

[firewall]
backend = "none"
daily_flush = "off"

# A GPIO chip that does not exist: the character device backend cannot open it.
[gpio]
backend = "cdev"
chip = "@DIR@/gpiochip9"

[[relay]]
name = "garage"
pin = 27

[led]
pin = 25

[[door]]
name = "garage"
sequence = ["7200", "8200"]
gpio = { relay = "garage", mode = "pulse", duration = "1s" }

[[door]]
name = "counter"
sequence = ["7100", "8100"]
start_command = "sh -c 'echo %IP% >> @DIR@/opened'"
"#;

/// Issue 13: a GPIO that cannot be opened never takes the gate down.
#[test]
fn a_gpio_that_cannot_be_opened_leaves_every_door_working() {
    if !can_run_netns() {
        return;
    }
    let lab = Lab::new();
    let gw = lab.add_host_link();
    let cfg = lab.write_config("knockgate.toml", &NO_GPIO.replace("@GW@", &gw));
    let daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    daemon.wait_log("status page on", LONG);
    let addr = format!("{gw}:8080");
    std::thread::sleep(Duration::from_millis(1500)); // the first snapshot

    // Shown on the status page and /healthz, with the reason.
    let (code, body) = http_get(&addr, "/api/status");
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["gpio"]["available"], false, "{body}");
    assert_eq!(v["gpio"]["backend"], "cdev");
    let why = v["gpio"]["error"].as_str().unwrap();
    assert!(why.contains("gpiochip9: no such GPIO chip"), "{why}");
    assert_eq!(v["relays"][0]["available"], false);
    assert_eq!(v["led"]["available"], false);
    assert_eq!(v["healthy"], false);
    let (code, health) = http_get(&addr, "/healthz");
    assert_eq!(code, 503, "{health}");
    assert!(health.contains("relays and LED unavailable"), "{health}");
    let (_, page) = http_get(&addr, "/");
    assert!(page.contains("unavailable"), "the page shows it");

    // Every door still works: a command door runs its command...
    let link = lab.link(0);
    let client = lab.client(0);
    client.ok(&[knockgate(), "knock", &link.gw_v4, "7100", "8100"]);
    let opened = daemon.wait_file(&lab.path("opened"), &link.client_v4, LONG);
    assert!(opened.contains(&link.client_v4));
    // ...and a door whose only action is the relay opens (logged, on the page), the relay
    // left alone.
    client.ok(&[knockgate(), "knock", &link.gw_v4, "7200", "8200"]);
    daemon.wait_log("garage: OPEN SESAME", LONG);
    daemon.wait_log("garage (GPIO 27): unavailable, not switched", LONG);
    std::thread::sleep(Duration::from_millis(1500));
    let (_, body) = http_get(&addr, "/api/status");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let garage = v["doors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "garage")
        .unwrap();
    assert!(garage["last_opened_unix"].is_u64(), "{body}");
    assert_eq!(v["relays"][0]["on"], false);

    // Retried (5 s, then 10 s later) without logging the same problem again.
    std::thread::sleep(Duration::from_secs(12));
    let log = daemon.log_text();
    assert_eq!(log.matches("GPIO unavailable:").count(), 1, "{log}");
    assert!(
        Path::new(&format!("/proc/{}", daemon.pid())).exists(),
        "the daemon keeps running"
    );
    let (code, _) = http_get(&addr, "/api/status");
    assert_eq!(code, 200);
}

/// Home Assistant's wake-on-LAN button (MQTT): a press sends the door's magic packet, within
/// its rate limit; a door that did not opt in has no button and ignores its topic.
#[test]
fn a_wake_on_lan_button_over_mqtt_sends_within_the_rate_limit() {
    if !can_run_netns() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let lab = Lab::new();
    let _broker = Broker::start(&lab);
    let p = lab.path("mqtt.password");
    std::fs::write(&p, "s3cret\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = r#"
[daemon]
interfaces = ["kgw0"]
state_dir = "@DIR@/state"

[mqtt]
broker = "mqtt://127.0.0.1:1883"
username = "gate"
password_file = "@DIR@/mqtt.password"
base_topic = "knockgate/gw"

[[door]]
name = "wakePC"
sequence = ["7000", "8000"]
wake_on_lan = { mac = "00:11:22:33:44:55", interface = "kgw0", rate_limit = "1h", mqtt_command = true }

[[door]]
name = "wakeNAS"
sequence = ["7100", "8100"]
wake_on_lan = { mac = "aa:bb:cc:dd:ee:ff", interface = "kgw0" }
"#;
    let cfg = lab.write_config("knockgate.toml", config);
    let daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    daemon.wait_log("MQTT: connected", LONG);
    let dump = lab.path("wol.pcap");
    let sniffer = Sniffer::start(&lab, &dump);
    let press = |topic: &str| {
        lab.gw.ok(&[
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-u",
            "gate",
            "-P",
            "s3cret",
            "-t",
            topic,
            "-m",
            "PRESS",
        ]);
    };
    press("knockgate/gw/wake/wakepc/set");
    daemon.wait_log("wakePC: wake-on-LAN sent to 00:11:22:33:44:55", LONG);
    std::thread::sleep(Duration::from_millis(1100));
    press("knockgate/gw/wake/wakepc/set");
    daemon.wait_log(
        "wakePC: wake-on-LAN to 00:11:22:33:44:55 not sent: rate-limited",
        LONG,
    );
    press("knockgate/gw/wake/wakenas/set");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        sniffer.payloads(&dump),
        vec![magic([0x00, 0x11, 0x22, 0x33, 0x44, 0x55], None)],
        "one packet, for the door that opted in"
    );
}
