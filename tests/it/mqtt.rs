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

/// The broker stopped, then started again: knocks keep opening doors meanwhile, the client
/// reconnects (backoff from 1 s) and republishes `online`, discovery and the states the new
/// broker lost; Home Assistant's `online` brings discovery again within 1 to 5 s; a daemon
/// killed leaves `offline` (its last will).
#[test]
fn a_broker_outage_costs_no_knock_and_the_client_comes_back() {
    if !can_run_netns() {
        return;
    }
    let lab = Lab::new();
    let broker = Broker::start(&lab);
    password_file(&lab);
    let cfg = lab.write_config(
        "knockgate.toml",
        &(CONFIG.to_string()
            + "\n[[door]]\nname = \"cmd\"\nsequence = [\"7100\", \"8100\"]\nstart_command = \"sh -c 'echo %IP% >> @DIR@/opened'\"\n"),
    );
    let mut daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    daemon.wait_log_count("MQTT: connected", 1, LONG);
    drop(broker);
    daemon.wait_log("retrying (the doors do not wait for it)", LONG);
    let gw4 = lab.link(0).gw_v4.clone();
    lab.client(0)
        .ok(&[knockgate(), "knock", &gw4, "7100", "8100"]);
    daemon.wait_file(&lab.path("opened"), &lab.link(0).client_v4, LONG);

    let _broker = Broker::start(&lab);
    daemon.wait_log_count("MQTT: connected", 2, Duration::from_secs(20));
    let out = lab.path("sub.txt");
    let _sub = Sub::start(&lab, &out, &["homeassistant/#", "knockgate/#"]);
    wait_last(&out, "knockgate/gw/availability", "online", LONG);
    wait_last(&out, "knockgate/gw/door/cmd/open", "OFF", LONG);
    let discoveries = || {
        read(&out)
            .lines()
            .filter(|l| l.starts_with("homeassistant/device/"))
            .count()
    };
    let start = Instant::now();
    while discoveries() < 1 {
        assert!(
            start.elapsed() < LONG,
            "no discovery after the reconnect:\n{}",
            read(&out)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Home Assistant restarts and says so.
    lab.gw.ok(&[
        "mosquitto_pub",
        "-h",
        "127.0.0.1",
        "-u",
        "gate",
        "-P",
        "s3cret",
        "-t",
        "homeassistant/status",
        "-m",
        "online",
    ]);
    let said = Instant::now();
    while discoveries() < 2 {
        assert!(
            said.elapsed() < Duration::from_secs(7),
            "discovery not resent:\n{}",
            read(&out)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        said.elapsed() >= Duration::from_millis(900),
        "resent without the delay"
    );
    // Killed: the broker publishes the last will.
    daemon.signal("KILL");
    daemon.wait_exit(LONG);
    wait_last(
        &out,
        "knockgate/gw/availability",
        "offline",
        Duration::from_secs(60),
    );
}

/// A test CA (`name`) and, signed by it, a certificate for 127.0.0.1: (ca, cert, key).
fn test_ca(lab: &Lab, name: &str) -> (String, String, String) {
    let p = |f: &str| {
        lab.path(&format!("{name}-{f}"))
            .to_str()
            .unwrap()
            .to_string()
    };
    let (ca_key, ca, key, csr, cert, ext) = (
        p("ca.key"),
        p("ca.pem"),
        p("server.key"),
        p("server.csr"),
        p("server.pem"),
        p("ext"),
    );
    std::fs::write(
        &ext,
        "subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\n",
    )
    .unwrap();
    for args in [
        vec![
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &ca_key,
            "-out",
            &ca,
            "-days",
            "2",
            "-subj",
            "/CN=knockgate test CA",
        ],
        vec![
            "openssl",
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            "/CN=127.0.0.1",
        ],
        vec![
            "openssl",
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    ] {
        let out = std::process::Command::new(args[0])
            .args(&args[1..])
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (ca, cert, key)
}

/// TLS with a test CA: `mqtts://` with the right `ca_file` connects and publishes; another
/// CA is refused with a clear log line, and the doors do not notice.
#[test]
fn tls_with_the_brokers_ca_connects_and_a_wrong_ca_is_refused() {
    if !can_run_netns() {
        return;
    }
    let lab = Lab::new();
    let (ca, cert, key) = test_ca(&lab, "good");
    let (other_ca, _, _) = test_ca(&lab, "other");
    let _broker = Broker::start_with(
        &lab,
        &format!("listener 8883 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n"),
        8883,
    );
    password_file(&lab);
    let tls = |ca_file: &str| {
        CONFIG.replace("mqtt://127.0.0.1:1883", "mqtts://127.0.0.1:8883").replace(
            "keep_alive = \"30s\"",
            &format!("keep_alive = \"30s\"\nca_file = \"{ca_file}\""),
        ) + "\n[[door]]\nname = \"cmd\"\nsequence = [\"7100\", \"8100\"]\nstart_command = \"sh -c 'echo %IP% >> @DIR@/opened'\"\n"
    };
    let cfg = lab.write_config("good.toml", &tls(&ca));
    let daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    daemon.wait_log("MQTT: connected to mqtts://127.0.0.1:8883", LONG);
    let out = lab.path("sub.txt");
    let _sub = {
        let mut cmd = lab.gw.cmd("mosquitto_sub");
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            "8883",
            "--cafile",
            &ca,
            "-u",
            "gate",
            "-P",
            "s3cret",
            "-v",
            "-t",
            "knockgate/#",
        ])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::process::Stdio::null());
        ChildGuard(cmd.spawn().expect("mosquitto_sub"))
    };
    wait_last(&out, "knockgate/gw/availability", "online", LONG);
    drop(daemon);

    let cfg = lab.write_config("other.toml", &tls(&other_ca));
    let daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    daemon.wait_log("MQTT: mqtts://127.0.0.1:8883: TLS", LONG);
    let gw4 = lab.link(0).gw_v4.clone();
    lab.client(0)
        .ok(&[knockgate(), "knock", &gw4, "7100", "8100"]);
    daemon.wait_file(&lab.path("opened"), &lab.link(0).client_v4, LONG);
}

/// A child process killed on drop.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A reload that renames a door: Home Assistant gets the new door's entities, the old door's
/// components are removed (sent with their platform only) and its retained states cleared.
#[test]
fn a_reload_adds_and_removes_doors_entities() {
    if !can_run_netns() {
        return;
    }
    let lab = Lab::new();
    let _broker = Broker::start(&lab);
    password_file(&lab);
    let cfg = lab.write_config("knockgate.toml", CONFIG);
    let daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    daemon.wait_log("MQTT: connected", LONG);
    let out = lab.path("sub.txt");
    let _sub = Sub::start(&lab, &out, &["homeassistant/#", "knockgate/#"]);
    wait_last(&out, "knockgate/gw/door/open_ssh/open", "OFF", LONG);
    lab.write_config(
        "knockgate.toml",
        &CONFIG.replace("name = \"open SSH\"", "name = \"garage\""),
    );
    daemon.signal("HUP");
    daemon.wait_log("config reloaded", LONG);
    wait_last(&out, "knockgate/gw/door/garage/open", "OFF", LONG);
    // (mosquitto_sub prints an empty message as `(null)`.)
    wait_last(&out, "knockgate/gw/door/open_ssh/open", "(null)", LONG);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let device = format!("knockgate_{}", knockgate::mqtt::slug(host.trim()));
    let doc = last(&out, &format!("homeassistant/device/{device}/config")).expect("discovery");
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(doc["cmps"]["door_garage_open"]["p"], "binary_sensor");
    assert_eq!(
        doc["cmps"]["door_open_ssh_open"],
        serde_json::json!({"p": "binary_sensor"})
    );
    assert_eq!(
        doc["cmps"]["door_open_ssh_sessions"],
        serde_json::json!({"p": "sensor"})
    );
}
