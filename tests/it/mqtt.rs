//! Home Assistant over MQTT with a real broker: Debian's `mosquitto`, started by the test on
//! the gateway namespace's loopback with a password file, and `mosquitto_sub` reading what the
//! daemon publishes there (issue 25).

use std::time::{Duration, Instant};

use crate::common::*;

const LONG: Duration = Duration::from_secs(10);

/// The last payload of `topic` in a `mosquitto_sub -v` file.
fn last(out: &std::path::Path, topic: &str) -> Option<String> {
    read(out)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(t, _)| *t == topic)
        .map(|(_, p)| p.to_string())
        .next_back()
}

fn wait_last(out: &std::path::Path, topic: &str, want: &str, limit: Duration) {
    let start = Instant::now();
    while last(out, topic).as_deref() != Some(want) {
        assert!(
            start.elapsed() < limit,
            "{topic} is not `{want}` after {limit:?}:\n{}",
            read(out)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

const CONFIG: &str = r#"
[daemon]
interfaces = ["kgw0"]
state_dir = "@DIR@/state"

[firewall]
backend = "none"
daily_flush = "off"

[mqtt]
broker = "mqtt://127.0.0.1:1883"
username = "gate"
password_file = "@DIR@/mqtt.password"
base_topic = "knockgate/gw"
keep_alive = "30s"

[[door]]
name = "open SSH"
sequence = ["7000", "8000"]
firewall = { ports = ["22/tcp"], duration = "3s" }
"#;

fn password_file(lab: &Lab) {
    use std::os::unix::fs::PermissionsExt;
    let p = lab.path("mqtt.password");
    std::fs::write(&p, "s3cret\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn discovery_events_and_door_states_reach_a_real_broker() {
    if !can_run_netns() {
        return;
    }
    let lab = Lab::new();
    let _broker = Broker::start(&lab);
    password_file(&lab);
    let cfg = lab.write_config("knockgate.toml", CONFIG);
    let daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    daemon.wait_log("MQTT: connected to mqtt://127.0.0.1:1883", LONG);
    // Subscribed after the daemon published: the retained messages come first.
    let out = lab.path("sub.txt");
    let _sub = Sub::start(&lab, &out, &["homeassistant/#", "knockgate/#"]);
    wait_last(&out, "knockgate/gw/availability", "online", LONG);
    wait_last(&out, "knockgate/gw/door/open_ssh/open", "OFF", LONG);
    wait_last(&out, "knockgate/gw/door/open_ssh/sessions", "0", LONG);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let device = format!("knockgate_{}", knockgate::mqtt::slug(host.trim()));
    let doc = last(&out, &format!("homeassistant/device/{device}/config")).expect("discovery");
    let doc: serde_json::Value = serde_json::from_str(&doc).expect("discovery is JSON");
    assert_eq!(doc["dev"]["ids"][0], device.as_str());
    assert_eq!(doc["o"]["name"], "knockgate");
    assert_eq!(doc["avty_t"], "knockgate/gw/availability");
    let cmps = doc["cmps"].as_object().expect("cmps");
    assert_eq!(cmps["knock"]["p"], "event");
    assert_eq!(
        cmps["knock"]["event_types"],
        serde_json::json!(["open", "close", "timeout", "refused"])
    );
    assert_eq!(cmps["door_open_ssh_open"]["p"], "binary_sensor");
    assert_eq!(
        cmps["door_open_ssh_open"]["unique_id"],
        format!("{device}_door_open_ssh_open").as_str()
    );
    assert_eq!(cmps["door_open_ssh_sessions"]["p"], "sensor");
    assert_eq!(cmps["health"]["p"], "sensor");

    // A knock: the open event within a second, the binary sensor on, then off after 3 s.
    let gw4 = lab.link(0).gw_v4.clone();
    let client = lab.link(0).client_v4.clone();
    let sent = Instant::now();
    lab.client(0)
        .ok(&[knockgate(), "knock", &gw4, "7000", "8000"]);
    let open = format!(r#"{{"door":"open SSH","event_type":"open","source":"{client}"}}"#);
    wait_last(&out, "knockgate/gw/event", &open, Duration::from_secs(1));
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "{:?}",
        sent.elapsed()
    );
    wait_last(&out, "knockgate/gw/door/open_ssh/open", "ON", LONG);
    assert_eq!(
        last(&out, "knockgate/gw/door/open_ssh/sessions").as_deref(),
        Some("1")
    );
    let timeout = format!(r#"{{"door":"open SSH","event_type":"timeout","source":"{client}"}}"#);
    wait_last(&out, "knockgate/gw/event", &timeout, LONG);
    wait_last(&out, "knockgate/gw/door/open_ssh/open", "OFF", LONG);
    assert!(sent.elapsed() >= Duration::from_secs(3), "closed early");
    // Nothing secret on the broker.
    let all = read(&out);
    for secret in ["7000", "8000", "s3cret"] {
        assert!(!all.contains(secret), "`{secret}` published:\n{all}");
    }
}

/// A wrong password: a clear log line, and the doors are not affected.
#[test]
fn a_refusing_broker_costs_the_doors_nothing() {
    if !can_run_netns() {
        return;
    }
    let lab = Lab::new();
    let _broker = Broker::start(&lab);
    use std::os::unix::fs::PermissionsExt;
    let p = lab.path("mqtt.password");
    std::fs::write(&p, "wrong\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = lab.write_config(
        "knockgate.toml",
        &(CONFIG.to_string()
            + "\n[[door]]\nname = \"cmd\"\nsequence = [\"7100\", \"8100\"]\nstart_command = \"sh -c 'echo %IP% >> @DIR@/opened'\"\n"),
    );
    let daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    daemon.wait_log("MQTT: mqtt://127.0.0.1:1883: Connection refused", LONG);
    let gw4 = lab.link(0).gw_v4.clone();
    lab.client(0)
        .ok(&[knockgate(), "knock", &gw4, "7100", "8100"]);
    daemon.wait_file(&lab.path("opened"), &lab.link(0).client_v4, LONG);
}

const RELAYS: &str = r#"
[daemon]
interfaces = ["kgw0"]
state_dir = "@DIR@/state"

[mqtt]
broker = "mqtt://127.0.0.1:1883"
username = "gate"
password_file = "@DIR@/mqtt.password"
base_topic = "knockgate/gw"

[gpio]
backend = "simulated"

[[relay]]
name = "garage"
pin = 27
mqtt_command = "pulse 500ms"

[[relay]]
name = "zone1"
pin = 17
max_on = "2s"
mqtt_command = "switch"

[[relay]]
name = "pump"
pin = 19

[[door]]
name = "cmd"
sequence = ["7100", "8100"]
start_command = "sh -c 'echo %IP% >> @DIR@/opened'"
"#;

fn publish(lab: &Lab, topic: &str, payload: &str) {
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
        payload,
    ]);
}

/// Commands reach the relays that opted in, through their own rules, and nothing else: a
/// button pulses the garage (the simulated pin's levels, and the state topic follows), a
/// switch turns a zone on and its max_on turns it off, a relay that did not opt in ignores its
/// topic, and 1 000 presses in a second switch the garage at most once a second while a knock
/// still opens its door.
#[test]
fn commands_switch_only_the_relays_that_opted_in_within_their_limits() {
    if !can_run_netns() {
        return;
    }
    let lab = Lab::new();
    let _broker = Broker::start(&lab);
    password_file(&lab);
    let cfg = lab.write_config("knockgate.toml", RELAYS);
    let daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    daemon.wait_log("MQTT: connected", LONG);
    let out = lab.path("sub.txt");
    let _sub = Sub::start(&lab, &out, &["knockgate/#", "homeassistant/#"]);
    wait_last(&out, "knockgate/gw/relay/garage/state", "OFF", LONG);
    wait_last(&out, "knockgate/gw/relay/zone1/state", "OFF", LONG);
    let highs = |pin: u8| {
        daemon
            .log_text()
            .matches(&format!("simulated GPIO {pin} high"))
            .count()
    };

    publish(&lab, "knockgate/gw/relay/garage/set", "PRESS");
    wait_last(&out, "knockgate/gw/relay/garage/state", "ON", LONG);
    wait_last(&out, "knockgate/gw/relay/garage/state", "OFF", LONG);
    assert_eq!(highs(27), 1);

    publish(&lab, "knockgate/gw/relay/zone1/set", "ON");
    wait_last(&out, "knockgate/gw/relay/zone1/state", "ON", LONG);
    let on = Instant::now();
    wait_last(&out, "knockgate/gw/relay/zone1/state", "OFF", LONG);
    assert!(
        on.elapsed() >= Duration::from_millis(1500),
        "max_on ended it early"
    );

    publish(&lab, "knockgate/gw/relay/pump/set", "ON");
    publish(&lab, "knockgate/gw/relay/garage/set", "ON"); // a button takes PRESS only
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(highs(19), 0, "a relay that did not opt in switched");
    assert_eq!(highs(27), 1, "a malformed command pulsed the garage");

    // 1 000 presses within about a second, and a knock meanwhile.
    std::thread::sleep(Duration::from_millis(1100));
    let presses = lab.path("presses.txt");
    std::fs::write(&presses, "PRESS\n".repeat(1000)).unwrap();
    let start = Instant::now();
    lab.gw.ok(&[
        "sh",
        "-c",
        &format!(
            "mosquitto_pub -h 127.0.0.1 -u gate -P s3cret -t knockgate/gw/relay/garage/set -l < {}",
            presses.display()
        ),
    ]);
    let flood = start.elapsed();
    let gw4 = lab.link(0).gw_v4.clone();
    lab.client(0)
        .ok(&[knockgate(), "knock", &gw4, "7100", "8100"]);
    daemon.wait_file(&lab.path("opened"), &lab.link(0).client_v4, LONG);
    std::thread::sleep(Duration::from_millis(1500));
    let pulses = highs(27) - 1;
    let most = 2 + flood.as_secs() as usize;
    assert!(
        pulses >= 1 && pulses <= most,
        "{pulses} pulses from 1 000 presses in {flood:?}"
    );
}
