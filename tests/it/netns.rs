//! The real daemon capturing on veth pairs in network namespaces, knocked by real clients:
//! knockgate's own, Debian's `knock`, `nc -z` and `nmap`. Every test asserts the action's
//! effect: a command that writes the knocker's address to a file.

use std::time::{Duration, Instant};

use crate::common::*;

const LONG: Duration = Duration::from_secs(10);

/// Doors used by most tests: a TCP door and a UDP door, each appending the knocker's address.
const CONFIG: &str = r#"
[daemon]
interfaces = ["kgw0"]
state_dir = "@DIR@/state"

[[door]]
name = "openSSH"
sequence = ["7000/tcp", "8000/tcp", "9000/tcp"]
seq_timeout = "10s"
start_command = "sh -c 'echo %IP% >> @DIR@/opened'"

[[door]]
name = "udpDoor"
sequence = ["6001/udp", "6002/udp", "6003/udp"]
seq_timeout = "10s"
start_command = "sh -c 'echo udp %IP% >> @DIR@/opened'"
"#;

fn lab_with_daemon(config: &str, args: &[&str], ifaces: &[&str]) -> (Lab, Daemon) {
    let lab = Lab::new();
    let cfg = lab.write_config("knockgate.toml", config);
    let daemon = lab.start_daemon(&cfg, args, ifaces);
    (lab, daemon)
}

#[test]
fn knockgate_client_opens_over_ipv4_and_ipv6() {
    if !can_run_netns() {
        return;
    }
    let (lab, daemon) = lab_with_daemon(CONFIG, &[], &["kgw0"]);
    let opened = lab.path("opened");
    let link = lab.link(0);
    let c = lab.client(0);
    c.ok(&[knockgate(), "knock", &link.gw_v4, "7000", "8000", "9000"]);
    wait_file(&opened, &format!("{}\n", link.client_v4), LONG);
    c.ok(&[
        knockgate(),
        "knock",
        "-6",
        &link.gw_v6,
        "7000",
        "8000",
        "9000",
    ]);
    wait_file(&opened, &format!("{}\n", link.client_v6), LONG);
    c.ok(&[
        knockgate(),
        "knock",
        "-u",
        &link.gw_v4,
        "6001",
        "6002",
        "6003",
    ]);
    wait_file(&opened, &format!("udp {}\n", link.client_v4), LONG);
    let log = daemon.log_text();
    for line in [
        format!("{}: openSSH: Stage 1", link.client_v4),
        format!("{}: openSSH: Stage 2", link.client_v4),
        format!("{}: openSSH: OPEN SESAME", link.client_v4),
        format!("{}: openSSH: OPEN SESAME", link.client_v6),
        "openSSH: running command: sh -c".to_string(),
    ] {
        assert!(log.contains(&line), "missing `{line}` in:\n{log}");
    }
    // One knock sequence, one command run per address.
    assert_eq!(
        read(&opened)
            .matches(&format!("{}\n", link.client_v4))
            .count(),
        2
    ); // tcp + "udp IP"
}

#[test]
fn debian_knock_client_opens_tcp_udp_and_ipv6() {
    if !can_run_netns() {
        return;
    }
    let (lab, _daemon) = lab_with_daemon(CONFIG, &[], &["kgw0"]);
    let opened = lab.path("opened");
    let link = lab.link(0);
    let c = lab.client(0);
    c.ok(&["knock", &link.gw_v4, "7000", "8000", "9000"]);
    wait_file(&opened, &format!("{}\n", link.client_v4), LONG);
    c.ok(&["knock", &link.gw_v4, "6001:udp", "6002:udp", "6003:udp"]);
    wait_file(&opened, &format!("udp {}\n", link.client_v4), LONG);
    c.ok(&["knock", "-6", &link.gw_v6, "7000", "8000", "9000"]);
    wait_file(&opened, &format!("{}\n", link.client_v6), LONG);
}

#[test]
fn nc_z_with_retransmitted_syns_opens() {
    if !can_run_netns() {
        return;
    }
    let (lab, daemon) = lab_with_daemon(CONFIG, &[], &["kgw0"]);
    let link = lab.link(0);
    // The gateway drops the knocks silently, as a locked-down gateway does: nc's SYN gets no
    // answer and the kernel retransmits it after 1 s. knockd resets on that retransmission.
    lab.gw.ok(&[
        "iptables",
        "-w",
        "-A",
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        "7000:9000",
        "-j",
        "DROP",
    ]);
    let c = lab.client(0);
    for port in ["7000", "8000", "9000"] {
        let start = Instant::now();
        c.run(&["nc", "-z", "-w", "2", &link.gw_v4, port]);
        assert!(
            start.elapsed() >= Duration::from_millis(1500),
            "nc returned before its SYN was retransmitted"
        );
    }
    wait_file(&lab.path("opened"), &format!("{}\n", link.client_v4), LONG);
    assert!(
        !daemon.log_text().contains("reset at stage"),
        "{}",
        daemon.log_text()
    );
}

#[test]
fn nmap_knocks_but_an_in_order_full_scan_never_opens() {
    if !can_run_netns() {
        return;
    }
    // An ascending sequence: what knockd #71 walks open with `nmap -r`.
    let config = r#"
[daemon]
interfaces = ["kgw0"]
state_dir = "@DIR@/state"

[[door]]
name = "ascending"
sequence = ["1000", "2000", "3000"]
seq_timeout = "60s"
start_command = "sh -c 'echo %IP% >> @DIR@/opened'"
"#;
    let (lab, daemon) = lab_with_daemon(config, &[], &["kgw0"]);
    let link = lab.link(0);
    let c = lab.client(0);
    let opened = lab.path("opened");
    let scan = c.ok(&[
        "nmap",
        "-n",
        "-Pn",
        "-sS",
        "-r",
        "-T5",
        "--max-retries",
        "0",
        "-p",
        "1-65535",
        &link.gw_v4,
    ]);
    assert!(
        String::from_utf8_lossy(&scan.stdout).contains("65535 closed"),
        "the scan did not cross every port: {}",
        String::from_utf8_lossy(&scan.stdout)
    );
    daemon.wait_log(
        &format!(
            "{}: ascending: reset at stage 1 by a knock on 1001/tcp",
            link.client_v4
        ),
        LONG,
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !read(&opened).contains(&link.client_v4),
        "a port scan opened the door"
    );
    // nmap as a knock client: the three ports in order, one probe at a time.
    c.ok(&[
        "nmap",
        "-n",
        "-Pn",
        "-sS",
        "-r",
        "--max-parallelism",
        "1",
        "--max-retries",
        "0",
        "-p",
        "1000,2000,3000",
        &link.gw_v4,
    ]);
    wait_file(&opened, &format!("{}\n", link.client_v4), LONG);
}

#[test]
fn two_interfaces_at_once() {
    if !can_run_netns() {
        return;
    }
    let mut lab = Lab::new();
    lab.add_client();
    let cfg = lab.write_config(
        "knockgate.toml",
        &CONFIG.replace(r#"["kgw0"]"#, r#"["kgw0", "kgw1"]"#),
    );
    let _daemon = lab.start_daemon(&cfg, &[], &["kgw0", "kgw1"]);
    let opened = lab.path("opened");
    for i in [1, 0] {
        let link = lab.link(i);
        lab.client(i)
            .ok(&[knockgate(), "knock", &link.gw_v4, "7000", "8000", "9000"]);
        wait_file(&opened, &format!("{}\n", link.client_v4), LONG);
    }
}

#[test]
fn cli_interface_overrides_config() {
    if !can_run_netns() {
        return;
    }
    let mut lab = Lab::new();
    lab.add_client();
    // The config names kgw0 only; --interface kgw1 replaces it.
    let cfg = lab.write_config("knockgate.toml", CONFIG);
    let daemon = lab.start_daemon(&cfg, &["--interface", "kgw1"], &["kgw1"]);
    assert!(!daemon.log_text().contains("listening on kgw0"));
    let link = lab.link(1);
    lab.client(1)
        .ok(&[knockgate(), "knock", &link.gw_v4, "7000", "8000", "9000"]);
    wait_file(&lab.path("opened"), &format!("{}\n", link.client_v4), LONG);
}

#[test]
fn address_added_after_start_works_without_restart() {
    if !can_run_netns() {
        return;
    }
    // `interfaces = "auto"`: the daemon finds kgw0 by itself.
    let config = CONFIG.replace(r#"interfaces = ["kgw0"]"#, r#"interfaces = "auto""#);
    let (lab, daemon) = lab_with_daemon(&config, &[], &["kgw0"]);
    let link = lab.link(0);
    // A DHCP renewal that brings a new address: followed within 1 s (rtnetlink announces it;
    // issue 15), so a knock sent to it 1 s later counts. Knocks to an address the capture
    // filter does not have yet never reach the daemon.
    lab.client(0)
        .ip(&["addr", "add", "10.201.0.2/24", "dev", &link.client_if]);
    lab.gw
        .ip(&["addr", "add", "10.201.0.1/24", "dev", &link.gw_if]);
    std::thread::sleep(Duration::from_secs(1));
    lab.client(0)
        .ok(&[knockgate(), "knock", "10.201.0.1", "7000", "8000", "9000"]);
    wait_file(&lab.path("opened"), "10.201.0.2\n", LONG);
    assert!(daemon
        .log_text()
        .contains("interface=kgw0 filter=((ip dst host 10.200.0.1 or ip dst host 10.201.0.1)"));
}

#[test]
fn target_door_counts_knocks_to_its_address_only() {
    if !can_run_netns() {
        return;
    }
    let config = r#"
[daemon]
interfaces = ["kgw0"]
state_dir = "@DIR@/state"

[[door]]
name = "wakeNAS"
sequence = ["4000", "4001"]
target = "10.200.0.50"
start_command = "sh -c 'echo %IP% >> @DIR@/opened'"
"#;
    let (lab, _daemon) = lab_with_daemon(config, &[], &["kgw0"]);
    let link = lab.link(0);
    let c = lab.client(0);
    let opened = lab.path("opened");
    // Knocked at the gateway's own address: not this door's target.
    c.ok(&[knockgate(), "knock", &link.gw_v4, "4000", "4001"]);
    // The NAS is asleep: nobody answers ARP for it; the client sends to the gateway's MAC.
    let mac = String::from_utf8(
        lab.gw
            .ok(&["cat", &format!("/sys/class/net/{}/address", link.gw_if)])
            .stdout,
    )
    .unwrap();
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
    let text = wait_file(&opened, &format!("{}\n", link.client_v4), LONG);
    assert_eq!(
        text.lines().count(),
        1,
        "the knock at the gateway's address opened it: {text}"
    );
}

#[test]
fn sighup_reloads_and_keeps_the_old_config_when_the_new_is_broken() {
    if !can_run_netns() {
        return;
    }
    let lab = Lab::new();
    let cfg = lab.write_config("knockgate.toml", CONFIG);
    let daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    let link = lab.link(0);
    let c = lab.client(0);
    let opened = lab.path("opened");
    lab.write_config(
        "knockgate.toml",
        &CONFIG.replace(
            r#"["7000/tcp", "8000/tcp", "9000/tcp"]"#,
            r#"["7100", "7200"]"#,
        ),
    );
    daemon.signal("HUP");
    daemon.wait_log("config reloaded", LONG);
    c.ok(&[knockgate(), "knock", &link.gw_v4, "7000", "8000", "9000"]);
    c.ok(&[knockgate(), "knock", &link.gw_v4, "7100", "7200"]);
    wait_file(&opened, &format!("{}\n", link.client_v4), LONG);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        read(&opened).lines().count(),
        1,
        "the old sequence still opened"
    );
    // A broken config is refused; the running one stays.
    lab.write_config(
        "knockgate.toml",
        "[[door]]\nname = \"x\"\nsequence = [\"abc\"]\n",
    );
    daemon.signal("HUP");
    daemon.wait_log("config reload failed, keeping the current config", LONG);
    assert!(
        daemon
            .log_text()
            .contains("knockgate.toml:3: key `door[x].sequence`"),
        "{}",
        daemon.log_text()
    );
    c.ok(&[knockgate(), "knock", "-6", &link.gw_v6, "7100", "7200"]);
    wait_file(&opened, &format!("{}\n", link.client_v6), LONG);
}

#[test]
fn pending_stop_command_survives_sigkill_and_repeat_knock_extends() {
    if !can_run_netns() {
        return;
    }
    let lab = Lab::new();
    let cfg = lab.write_config("knockgate.toml", START_STOP);
    let mut daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    let link = lab.link(0);
    let c = lab.client(0);
    let events = lab.path("events");
    c.ok(&[knockgate(), "knock", &link.gw_v4, "7000", "8000"]);
    wait_file(&events, &format!("open {}", link.client_v4), LONG);
    let opened_at = Instant::now();
    // Knocking again while open extends the door: no second start command.
    c.ok(&[knockgate(), "knock", &link.gw_v4, "7000", "8000"]);
    daemon.wait_log("already open: extended", LONG);
    // The daemon dies hard before the stop command is due...
    daemon.signal("KILL");
    daemon.wait_exit(LONG);
    assert!(!read(&events).contains("close"));
    // ...and the restarted daemon still closes the door on time.
    let _daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    wait_file(&events, &format!("close {}", link.client_v4), LONG);
    let took = opened_at.elapsed();
    assert!(
        took >= Duration::from_millis(2500),
        "closed early: {took:?}"
    );
    assert!(took <= Duration::from_secs(8), "closed late: {took:?}");
    let text = read(&events);
    assert_eq!(text.matches("open ").count(), 1, "{text}");
    assert_eq!(text.matches("close ").count(), 1, "{text}");
}

#[test]
fn sigterm_closes_open_doors_and_exits_cleanly() {
    if !can_run_netns() {
        return;
    }
    let lab = Lab::new();
    let cfg = lab.write_config("knockgate.toml", &START_STOP.replace("3s", "1h"));
    let mut daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    let link = lab.link(0);
    lab.client(0)
        .ok(&[knockgate(), "knock", &link.gw_v4, "7000", "8000"]);
    let events = lab.path("events");
    wait_file(&events, &format!("open {}", link.client_v4), LONG);
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(LONG), Some(0));
    assert!(read(&events).contains(&format!("close {}", link.client_v4)));
    assert!(daemon.log_text().contains("shutting down"));
    // Nothing left pending in the journal.
    let journal = read(&lab.path("state/sessions.json"));
    assert!(journal.contains("\"sessions\": []"), "{journal}");
}

#[test]
fn dry_run_logs_instead_of_running() {
    if !can_run_netns() {
        return;
    }
    let (lab, daemon) = lab_with_daemon(CONFIG, &["--dry-run"], &["kgw0"]);
    let link = lab.link(0);
    lab.client(0)
        .ok(&[knockgate(), "knock", &link.gw_v4, "7000", "8000", "9000"]);
    daemon.wait_log("openSSH: (dry run) would run command: sh -c", LONG);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!lab.path("opened").exists(), "dry run ran the command");
}

#[test]
fn knock_client_fails_when_a_knock_cannot_be_sent() {
    if !can_run_netns() {
        return;
    }
    // A namespace with no route anywhere: the knock cannot leave.
    let ns = Netns::new("noroute");
    let out = ns.run(&[knockgate(), "knock", "192.0.2.1", "7000"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("cannot send the 7000/tcp knock to 192.0.2.1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ns.run(&[knockgate(), "knock", "-u", "192.0.2.1", "7000"]);
    assert!(!out.status.success());
}

#[test]
fn one_time_sequences_over_ipv4_and_ipv6_then_used_up_without_crash() {
    if !can_run_netns() {
        return;
    }
    let lab = Lab::new();
    let list = lab.path("ssh.otp");
    std::fs::write(
        &list,
        "# one line per knock\n1001,1002\n2001,2002:udp\n3001,3002\n",
    )
    .unwrap();
    let config = r#"
[daemon]
interfaces = ["kgw0"]
state_dir = "@DIR@/state"

[[door]]
name = "otp"
one_time_sequences = "@DIR@/ssh.otp"
start_command = "sh -c 'echo %IP% >> @DIR@/opened'"
"#;
    let cfg = lab.write_config("knockgate.toml", config);
    let mut daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    let link = lab.link(0);
    let c = lab.client(0);
    let opened = lab.path("opened");
    c.ok(&["knock", &link.gw_v4, "1001", "1002"]);
    daemon.wait_file(&opened, &format!("{}\n", link.client_v4), LONG);
    daemon.wait_log("otp: one-time sequence used, 2 left", LONG);
    // The used sequence is dead: replaying it opens nothing.
    c.ok(&["knock", "-6", &link.gw_v6, "1001", "1002"]);
    c.ok(&["knock", "-6", &link.gw_v6, "2001", "2002:udp"]);
    daemon.wait_file(&opened, &format!("{}\n", link.client_v6), LONG);
    c.ok(&["knock", &link.gw_v4, "3001", "3002"]);
    daemon.wait_log("otp: no one-time sequences left", LONG);
    // The start command runs after that line: wait for what it writes (a loaded machine is
    // slow to spawn it).
    daemon.wait_file(
        &opened,
        &format!("{}\n{}\n", link.client_v6, link.client_v4),
        LONG,
    );
    assert_eq!(read(&opened).lines().count(), 3, "{}", read(&opened));
    // Used up: nothing opens, and the daemon is still alive.
    c.ok(&["knock", &link.gw_v4, "3001", "3002"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(read(&opened).lines().count(), 3);
    assert_eq!(
        read(&list),
        "# one line per knock\n#1001,1002\n#2001,2002:udp\n#3001,3002\n"
    );
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(LONG), Some(0), "{}", daemon.log_text());
}

#[test]
fn log_file_and_pid_file() {
    if !can_run_netns() {
        return;
    }
    let lab = Lab::new();
    let config = CONFIG.replace(
        "[daemon]\n",
        "[daemon]\nlog_file = \"@DIR@/knockgate.log\"\npid_file = \"@DIR@/knockgate.pid\"\n",
    );
    let cfg = lab.write_config("knockgate.toml", &config);
    let mut daemon = lab.start_daemon(&cfg, &[], &[]);
    let log = lab.path("knockgate.log");
    wait_file(&log, "listening on kgw0", LONG);
    assert_eq!(
        read(&lab.path("knockgate.pid")).trim(),
        daemon.pid().to_string()
    );
    let link = lab.link(0);
    lab.client(0)
        .ok(&[knockgate(), "knock", &link.gw_v4, "7000", "8000", "9000"]);
    let text = wait_file(
        &log,
        &format!("{}: openSSH: OPEN SESAME", link.client_v4),
        LONG,
    );
    assert!(!text.contains('\u{1b}'), "colour codes in the log file");
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(LONG), Some(0));
    assert!(!lab.path("knockgate.pid").exists(), "pid file left behind");
}

#[test]
fn interface_that_appears_after_start_is_captured() {
    if !can_run_netns() {
        return;
    }
    // wlan0 plugged in after boot: kgw1 does not exist when the daemon starts.
    let mut lab = Lab::new();
    let cfg = lab.write_config(
        "knockgate.toml",
        &CONFIG.replace(r#"["kgw0"]"#, r#"["kgw0", "kgw1"]"#),
    );
    let daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    daemon.wait_log("cannot capture on kgw1", LONG);
    lab.add_client();
    daemon.wait_log("listening on kgw1", LONG);
    daemon.wait_log(
        "interface=kgw1 filter=((ip dst host 10.200.0.1 or ip dst host 10.200.1.1)",
        LONG,
    );
    let link = lab.link(1);
    lab.client(1)
        .ok(&[knockgate(), "knock", &link.gw_v4, "7000", "8000", "9000"]);
    daemon.wait_file(&lab.path("opened"), &format!("{}\n", link.client_v4), LONG);
}

#[test]
fn hmac_door_opens_once_per_sequence_and_refuses_replays() {
    if !can_run_netns() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let mut lab = Lab::new();
    lab.add_client();
    let secret = lab.path("ssh.secret");
    std::fs::write(
        &secret,
        "3f1b6c0e9a7d52e4b8c1f0a3d6e9b2c57a4e1d8c0b3f6a9e2d5c8b1f4a7e0d3c\n",
    )
    .unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = r#"
[daemon]
interfaces = ["kgw0", "kgw1"]
state_dir = "@DIR@/state"

[[door]]
name = "ssh"
hmac = { secret_file = "@DIR@/ssh.secret" }
start_command = "sh -c 'echo %IP% >> @DIR@/opened'"
"#;
    let cfg = lab.write_config("knockgate.toml", config);
    let daemon = lab.start_daemon(&cfg, &[], &["kgw0", "kgw1"]);
    let opened = lab.path("opened");
    let (l0, l1) = (lab.link(0), lab.link(1));
    let s = secret.to_str().unwrap();
    // A phone app: the ports from `knockgate otp`, knocked with Debian's knock.
    let out = lab
        .client(0)
        .ok(&[knockgate(), "otp", "--secret-file", s, "--door", "ssh"]);
    let ports: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(ports.len(), 4, "{ports:?}");
    let mut args = vec!["knock", l0.gw_v4.as_str()];
    args.extend(ports.iter().map(String::as_str));
    lab.client(0).ok(&args);
    daemon.wait_file(&opened, &format!("{}\n", l0.client_v4), LONG);
    daemon.wait_log("ssh: time-based sequence of window", LONG);
    // The same knock replayed, from the same host and from another: refused.
    lab.client(0).ok(&args);
    let mut other = vec!["knock", l1.gw_v4.as_str()];
    other.extend(ports.iter().map(String::as_str));
    lab.client(1).ok(&other);
    // A wrong secret never opens.
    let wrong = lab.path("wrong.secret");
    std::fs::write(
        &wrong,
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
    )
    .unwrap();
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
    lab.client(1).ok(&[
        knockgate(),
        "knock",
        "--secret-file",
        wrong.to_str().unwrap(),
        "--door",
        "ssh",
        &l1.gw_v4,
    ]);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(read(&opened).lines().count(), 1, "{}", daemon.log_text());
    // `knockgate knock --secret-file` computes the sequence itself. If the window rolled over
    // since the first knock, this is a new window; if not, the window after this one is
    // still unused: wait for it so the test does not depend on where in the window it runs.
    let unix = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let window = unix() / 30;
    while unix() / 30 == window {
        std::thread::sleep(Duration::from_millis(200));
    }
    lab.client(1).ok(&[
        knockgate(),
        "knock",
        "--secret-file",
        s,
        "--door",
        "ssh",
        &l1.gw_v4,
    ]);
    daemon.wait_file(
        &opened,
        &format!("{}\n", l1.client_v4),
        Duration::from_secs(40),
    );
}

#[test]
fn a_source_failing_too_often_is_ignored_for_a_while() {
    if !can_run_netns() {
        return;
    }
    let mut lab = Lab::new();
    lab.add_client();
    let config = CONFIG
        .replace(r#"["kgw0"]"#, r#"["kgw0", "kgw1"]"#)
        .replace(
            "[daemon]\n",
            "[daemon]\nmax_failures = 3\nfailure_window = \"1m\"\nban = \"1h\"\n",
        );
    let cfg = lab.write_config("knockgate.toml", &config);
    let daemon = lab.start_daemon(&cfg, &[], &["kgw0", "kgw1"]);
    let (l0, l1) = (lab.link(0), lab.link(1));
    // A guesser: four wrong tries.
    for _ in 0..4 {
        lab.client(0)
            .ok(&[knockgate(), "knock", &l0.gw_v4, "7000", "1234"]);
    }
    daemon.wait_log(
        &format!(
            "{}: ignored for 3600s after too many failed attempts",
            l0.client_v4
        ),
        LONG,
    );
    // Even the right sequence is ignored now...
    lab.client(0)
        .ok(&[knockgate(), "knock", &l0.gw_v4, "7000", "8000", "9000"]);
    // ...while another host still gets in.
    lab.client(1)
        .ok(&[knockgate(), "knock", &l1.gw_v4, "7000", "8000", "9000"]);
    daemon.wait_file(&lab.path("opened"), &format!("{}\n", l1.client_v4), LONG);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!read(&lab.path("opened")).contains(&format!("{}\n", l0.client_v4)));
}

#[test]
fn a_knock_flood_cannot_flood_the_log() {
    if !can_run_netns() {
        return;
    }
    let config = CONFIG.replace("[daemon]\n", "[daemon]\nmax_failures = 0\n");
    let (lab, daemon) = lab_with_daemon(&config, &[], &["kgw0"]);
    let link = lab.link(0);
    // 300 attempts in one burst: each first knock is a Stage 1, each next knock a reset.
    let mut args = vec![knockgate().to_string(), "knock".into(), link.gw_v4.clone()];
    for _ in 0..300 {
        args.push("7000".into());
        args.push("1".into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let start = Instant::now();
    lab.client(0).ok(&args);
    // The summary comes with the daemon's next 10 s chore: up to 10 s after the flood, and a
    // loaded machine's scheduling on top (one wait of exactly 10 s failed under load).
    daemon.wait_log("knock log line(s) held back by the rate limit", LONG * 2);
    let took = start.elapsed().as_secs();
    let stage_lines = daemon.log_text().matches("openSSH: Stage 1").count();
    assert!(
        stage_lines <= 50 + 5 * (took as usize + 1),
        "{stage_lines} stage lines in {took}s"
    );
    assert!(
        stage_lines >= 40,
        "the first ones are logged: {stage_lines}"
    );
}

#[test]
fn kill_right_after_a_one_time_open_never_re_enables_the_line() {
    if !can_run_netns() {
        return;
    }
    let lab = Lab::new();
    let list = lab.path("ssh.otp");
    std::fs::write(&list, "1001,1002\n2001,2002\n").unwrap();
    let config = r#"
[daemon]
interfaces = ["kgw0"]
state_dir = "@DIR@/state"

[[door]]
name = "otp"
one_time_sequences = "@DIR@/ssh.otp"
start_command = "sh -c 'echo %IP% >> @DIR@/opened'"
"#;
    let cfg = lab.write_config("knockgate.toml", config);
    let link = lab.link(0);
    let opened = lab.path("opened");
    let mut daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    lab.client(0).ok(&["knock", &link.gw_v4, "1001", "1002"]);
    // The power cut: SIGKILL the moment the door's command has run.
    daemon.wait_file(&opened, &link.client_v4, LONG);
    daemon.signal("KILL");
    daemon.wait_exit(LONG);
    assert!(read(&list).starts_with("#1001,1002\n"), "{}", read(&list));
    // After the restart the used line stays used; the next one works.
    let daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    lab.client(0).ok(&["knock", &link.gw_v4, "1001", "1002"]);
    lab.client(0).ok(&["knock", &link.gw_v4, "2001", "2002"]);
    daemon.wait_log("otp: no one-time sequences left", LONG);
    assert_eq!(read(&opened).lines().count(), 2, "{}", read(&opened));
}

/// An HMAC door of version 2 (no port a browser refuses): `knockgate otp --hmac-version 2`
/// gives the sequence that opens it; version 1's sequence of the same window does not.
#[test]
fn an_hmac_door_of_version_2_opens_with_version_2_only() {
    if !can_run_netns() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let lab = Lab::new();
    let secret = lab.path("ssh.secret");
    std::fs::write(
        &secret,
        "3f1b6c0e9a7d52e4b8c1f0a3d6e9b2c57a4e1d8c0b3f6a9e2d5c8b1f4a7e0d3c\n",
    )
    .unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = r#"
[daemon]
interfaces = ["kgw0"]
state_dir = "@DIR@/state"

[[door]]
name = "ssh"
hmac = { secret_file = "@DIR@/ssh.secret", version = 2 }
start_command = "sh -c 'echo %IP% >> @DIR@/opened'"
"#;
    let cfg = lab.write_config("knockgate.toml", config);
    let daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    let opened = lab.path("opened");
    let gw = lab.link(0).gw_v4.clone();
    let s = secret.to_str().unwrap();
    let otp = |extra: &[&str]| -> Vec<String> {
        let mut args = vec![knockgate(), "otp", "--secret-file", s, "--door", "ssh"];
        args.extend_from_slice(extra);
        let out = lab.client(0).ok(&args);
        String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let (v1, v2) = (otp(&[]), otp(&["--hmac-version", "2"]));
    assert_ne!(v1, v2);
    let knock = |ports: &[String]| {
        let mut args = vec!["knock", gw.as_str()];
        args.extend(ports.iter().map(String::as_str));
        lab.client(0).ok(&args);
    };
    knock(&v1);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !opened.exists(),
        "version 1's sequence opened a version 2 door"
    );
    knock(&v2);
    daemon.wait_file(&opened, &lab.link(0).client_v4, LONG);
}
