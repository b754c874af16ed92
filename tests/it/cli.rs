//! The `knockgate` binary's commands that need no privileges: `check`, `import-knockd`,
//! `replay` (on capture files written here with libpcap) and the knock client on loopback.

use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Command, Output};

use crate::common::has_number;
use etherparse::PacketBuilder;

/// Runs `knockgate ARGS`. Under an emulator (the ARM run under qemu-user, scripts/arm.sh),
/// `KNOCKGATE_TEST_RUNNER` holds the emulator's command line, as cargo's target runner does for
/// the test binary itself, and the binary is run through it.
fn knockgate(args: &[&str]) -> Output {
    let runner = std::env::var("KNOCKGATE_TEST_RUNNER").unwrap_or_default();
    let mut argv: Vec<&str> = runner.split_whitespace().collect();
    argv.push(env!("CARGO_BIN_EXE_knockgate"));
    Command::new(argv[0])
        .args(&argv[1..])
        .args(args)
        .output()
        .expect("run knockgate")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const CONFIG: &str = r#"
[[door]]
name = "openSSH"
sequence = ["7000", "8000", "9000"]
seq_timeout = "5s"
start_command = "/sbin/iptables -w -I KNOCKD -s %IP% -p tcp --dport 22 -j ACCEPT"
stop_command = "/sbin/iptables -w -D KNOCKD -s %IP% -p tcp --dport 22 -j ACCEPT"
cmd_timeout = "30s"

[[door]]
name = "udpDoor"
sequence = ["6001/udp", "6002/udp"]
command = "logger %IP%"
"#;

#[test]
fn check_accepts_a_good_config_and_the_example() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.toml");
    fs::write(&path, CONFIG).unwrap();
    let out = knockgate(&["check", "--config", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("2 door(s)"));
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/knockgate.toml");
    let out = knockgate(&["check", "--config", example.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The firewall backend it will use, named.
    let nft = dir.path().join("nft.toml");
    fs::write(
        &nft,
        "[firewall]\nbackend = \"nftables\"\nnft_chain = \"inet fw in\"\n[[door]]\nname = \"a\"\nsequence = [1000, 2000]\nfirewall = { ports = [\"22\"] }\n",
    )
    .unwrap();
    let out = knockgate(&["check", "--config", nft.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(
            "firewall: nftables, sets knockgate_allow4/6 and their rules at 1 of inet fw in"
        ),
        "{}",
        text(&out.stdout)
    );
    // [mqtt]'s password file, readable by others: named by check, exit 78.
    use std::os::unix::fs::PermissionsExt;
    let password = dir.path().join("mqtt.password");
    fs::write(&password, "s3cret\n").unwrap();
    fs::set_permissions(&password, fs::Permissions::from_mode(0o644)).unwrap();
    let mqtt = dir.path().join("mqtt.toml");
    fs::write(
        &mqtt,
        format!("[mqtt]\nbroker = \"mqtt://127.0.0.1\"\nusername = \"gate\"\npassword_file = \"{}\"\n[[door]]\nname = \"a\"\nsequence = [1000, 2000]\n", password.display()),
    )
    .unwrap();
    let out = knockgate(&["check", "--config", mqtt.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    let said = text(&out.stderr);
    assert!(
        said.contains("mqtt.password_file") && said.contains("chmod 600"),
        "{said}"
    );
    fs::set_permissions(&password, fs::Permissions::from_mode(0o600)).unwrap();
    let out = knockgate(&["check", "--config", mqtt.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn check_rejects_bad_configs_with_exit_78_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[[door]]\nname = \"a\"\nsequence = [\"7000\", \"abc\"]\n",
            3,
            "door[a].sequence",
        ),
        (
            "[[door]]\nname = \"a\"\nsequence = [\"7000\"]\nseq_timeout = \"xyz\"\n",
            4,
            "door[a].seq_timeout",
        ),
        ("[daemon]\nmax_sources = 0\n", 2, "daemon.max_sources"),
        (
            "[[door]]\nname = \"a\"\nsequence = [\"7000\"]\ntcp_flags = \"syn,bogus\"\n",
            4,
            "door[a].tcp_flags",
        ),
        (
            "[[door]]\nname = \"a\"\nsequence = [\"7000\"]\ncolour = 1\n",
            4,
            "colour",
        ),
    ];
    for (i, (config, line, key)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        fs::write(&path, config).unwrap();
        let out = knockgate(&["check", "--config", path.to_str().unwrap()]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "case {i}: {err}");
        let place = format!("{}:{line}:", path.display());
        assert!(err.contains(&place), "case {i}: `{place}` not in {err}");
        assert!(err.contains(key), "case {i}: `{key}` not in {err}");
    }
    let out = knockgate(&["check", "--config", "/nonexistent/knockgate.toml"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out.stderr).contains("/nonexistent/knockgate.toml"));
}

#[test]
fn import_knockd_conf_then_check_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let knockd = dir.path().join("knockd.conf");
    fs::write(
        &knockd,
        "[options]\n\tUseSyslog\n\tInterface = eth1\n\n[openSSH]\n\tsequence    = 7000,8000,9000\n\tseq_timeout = 5\n\tcommand     = /sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n\ttcpflags    = syn\n\n[closeSSH]\n\tsequence    = 9000,8000,7000\n\tseq_timeout = 5\n\tcommand     = /sbin/iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n\ttcpflags    = syn\n",
    )
    .unwrap();
    let out = knockgate(&["import-knockd", knockd.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let toml = dir.path().join("imported.toml");
    fs::write(&toml, &out.stdout).unwrap();
    let out = knockgate(&["check", "--config", toml.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stderr),
        text(&fs::read(&toml).unwrap())
    );
    assert!(text(&out.stdout).contains("2 door(s)"));

    // knockd's atoi would turn `abc` into port 0: we name the line instead.
    fs::write(&knockd, "[openSSH]\n  sequence = 7000,abc,9000\n").unwrap();
    let out = knockgate(&["import-knockd", knockd.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out.stderr).contains(&format!("{}:2", knockd.display())),
        "{}",
        text(&out.stderr)
    );
}

/// Writes an Ethernet capture: (time in ms, source, destination port, SYN or UDP).
fn write_capture(path: &Path, packets: &[(u64, [u8; 4], u16, bool)]) {
    let cap = pcap::Capture::dead(pcap::Linktype::ETHERNET).unwrap();
    let mut save = cap.savefile(path).unwrap();
    for &(ms, src, port, tcp) in packets {
        let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1]).ipv4(
            src,
            [10, 0, 0, 1],
            64,
        );
        let mut frame = Vec::new();
        if tcp {
            builder
                .tcp(40000, port, 1, 64240)
                .syn()
                .write(&mut frame, &[])
                .unwrap();
        } else {
            builder.udp(40000, port).write(&mut frame, &[0]).unwrap();
        }
        let header = pcap::PacketHeader {
            ts: libc::timeval {
                tv_sec: 1_700_000_000 + (ms / 1000) as libc::time_t,
                // `as _`: __suseconds64_t with the 64-bit time_t of the armv7 build (vendor/README.md).
                tv_usec: ((ms % 1000) * 1000) as _,
            },
            caplen: frame.len() as u32,
            len: frame.len() as u32,
        };
        save.write(&pcap::Packet::new(&header, &frame));
    }
    save.flush().unwrap();
}

#[test]
fn replay_prints_stages_opens_timeouts_and_actions() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("k.toml");
    fs::write(&config, CONFIG).unwrap();
    let capture = dir.path().join("knocks.pcap");
    let a = [192, 0, 2, 10];
    let b = [192, 0, 2, 20];
    let c = [192, 0, 2, 30];
    write_capture(
        &capture,
        &[
            (0, a, 7000, true),
            (100, a, 8000, true),
            (150, b, 7000, true),
            (200, a, 9000, true),
            (250, c, 7000, true),
            (300, b, 6001, false),
            (400, b, 6002, false),
        ],
    );
    let out = knockgate(&[
        "replay",
        "--config",
        config.to_str().unwrap(),
        capture.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let expected = [
        "[     0.000s] 192.0.2.10: openSSH: Stage 1",
        "[     0.100s] 192.0.2.10: openSSH: Stage 2",
        "[     0.200s] 192.0.2.10: openSSH: OPEN SESAME",
        "[     0.200s] openSSH: would run command: /sbin/iptables -w -I KNOCKD -s 192.0.2.10 -p tcp --dport 22 -j ACCEPT",
        "[     0.250s] 192.0.2.30: openSSH: Stage 1",
        // A knock on another door's port is a wrong knock for openSSH: b starts over.
        "[     0.300s] 192.0.2.20: openSSH: reset at stage 1 by a knock on 6001/udp",
        "[     0.400s] 192.0.2.20: udpDoor: OPEN SESAME",
        "[     0.400s] udpDoor: would run command: logger 192.0.2.20",
        // c's attempt started at 0.250 s and times out 5 s later, after the capture's end.
        "[     5.250s] 192.0.2.30: openSSH: sequence timeout (stage 1)",
        "[    30.200s] 192.0.2.10: openSSH: command timeout",
        "[    30.200s] openSSH: would run command: /sbin/iptables -w -D KNOCKD -s 192.0.2.10 -p tcp --dport 22 -j ACCEPT",
        "# 7 packets, 7 knocks, 0 malformed, 2 opened",
    ];
    let mut rest = stdout.as_str();
    for line in expected {
        let at = rest
            .find(line)
            .unwrap_or_else(|| panic!("`{line}` missing or out of order in:\n{stdout}"));
        rest = &rest[at + line.len()..];
    }
}

/// `replay` decides as the daemon does (the same gatekeeper): a source banned after failed
/// attempts opens nothing, and a UDP datagram to an SPA door's port is an SPA packet (refused
/// here), not a knock that would reset the sequence in progress.
#[test]
fn replay_bans_like_the_daemon_and_routes_spa_datagrams_away_from_sequences() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    for (name, key) in [
        ("spa.key", "eKHmC2Ow2JTqzXLy7sjYBRFfCmrQwbTAx2uiznipAug="),
        ("spa.hmac", "VNrfU/1Pichlo/Kg61u8pMHCMoLk4PyQfVACF6UxTYG/bpN3D5/ciou6JoJngnTQ+AHRIbBpyeKMyXTpsWAujg=="),
    ] {
        fs::write(dir.path().join(name), key).unwrap();
        fs::set_permissions(dir.path().join(name), fs::Permissions::from_mode(0o600)).unwrap();
    }
    let config = dir.path().join("k.toml");
    fs::write(
        &config,
        format!(
            "[daemon]\nmax_failures = 1\nban = \"10m\"\n\n[[door]]\nname = \"openSSH\"\nsequence = [7000, 8000, 9000]\nstart_command = \"logger %IP%\"\n\n[[door]]\nname = \"spa\"\nspa = {{ key_file = \"{d}/spa.key\", hmac_key_file = \"{d}/spa.hmac\", allow = [\"tcp/22\"] }}\nstart_command = \"logger spa %IP%\"\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let capture = dir.path().join("knocks.pcap");
    let a = [192, 0, 2, 10];
    let b = [192, 0, 2, 20];
    write_capture(
        &capture,
        &[
            // a fails twice (one failure allowed): banned.
            (0, a, 7000, true),
            (10, a, 1234, true),
            (20, a, 7000, true),
            (30, a, 1234, true),
            (100, a, 7000, true),
            (110, a, 8000, true),
            (120, a, 9000, true),
            // b's sequence with a datagram to the SPA port in the middle.
            (200, b, 7000, true),
            (210, b, 62201, false),
            (220, b, 8000, true),
            (230, b, 9000, true),
        ],
    );
    let out = knockgate(&[
        "replay",
        "--config",
        config.to_str().unwrap(),
        capture.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let expected = [
        "[     0.010s] 192.0.2.10: openSSH: reset at stage 1 by a knock on 1234/tcp",
        "[     0.030s] 192.0.2.10: ignored for 600s after too many failed attempts",
        "[     0.210s] 192.0.2.20: spa: SPA packet refused: ",
        "[     0.230s] 192.0.2.20: openSSH: OPEN SESAME",
        "[     0.230s] openSSH: would run command: logger 192.0.2.20",
        "# 11 packets, 11 knocks, 0 malformed, 1 opened",
    ];
    let mut rest = stdout.as_str();
    for line in expected {
        let at = rest
            .find(line)
            .unwrap_or_else(|| panic!("`{line}` missing or out of order in:\n{stdout}"));
        rest = &rest[at + line.len()..];
    }
    // Banned, a's right sequence counts nothing at all.
    assert!(!stdout.contains("[     0.100s] 192.0.2.10"), "{stdout}");
    assert!(
        !stdout.contains("192.0.2.10: openSSH: OPEN SESAME"),
        "{stdout}"
    );
}

#[test]
fn replay_rejects_a_file_that_is_not_a_capture() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("k.toml");
    fs::write(&config, CONFIG).unwrap();
    let bogus = dir.path().join("bogus.pcap");
    fs::write(&bogus, b"not a capture").unwrap();
    let out = knockgate(&[
        "replay",
        "--config",
        config.to_str().unwrap(),
        bogus.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("bogus.pcap"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn knock_client_on_loopback() {
    let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    udp.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let tcp = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).unwrap();
    let (uport, tport) = (
        udp.local_addr().unwrap().port(),
        tcp.local_addr().unwrap().port(),
    );
    let out = knockgate(&["knock", "-v", "127.0.0.1", &format!("{uport}:udp")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("hitting udp 127.0.0.1:{uport}")));
    let mut buf = [0u8; 8];
    assert_eq!(udp.recv_from(&mut buf).unwrap().0, 1);
    let out = knockgate(&["knock", "-6", "::1", &tport.to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(tcp.accept().is_ok());
    // Bad arguments are errors, not port 0.
    let out = knockgate(&["knock", "127.0.0.1", "abc:tcp"]);
    assert!(!out.status.success());
    let out = knockgate(&["knock", "no-such-host.invalid", "7000"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("cannot resolve"));
}

#[test]
fn check_validates_one_time_sequence_files() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("ssh.otp");
    fs::write(&list, "1000,2000\n3000,70000\n").unwrap();
    let config = dir.path().join("k.toml");
    fs::write(
        &config,
        format!(
            "[[door]]\nname = \"otp\"\none_time_sequences = \"{}\"\ncommand = \"true\"\n",
            list.display()
        ),
    )
    .unwrap();
    let out = knockgate(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("{}:2: invalid port `70000`", list.display())),
        "{}",
        text(&out.stderr)
    );
    fs::write(&list, "1000,2000\n").unwrap();
    let out = knockgate(&["check", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Issue 9: at least 30 invalid configs, each refused by the real binary with exit 78 and a
/// message naming the file, the line and the key.
#[test]
fn thirty_invalid_configs_each_exit_78_with_file_line_key() {
    const D: &str = "[[door]]\nname = \"a\"\nsequence = [\"7000\"]\n";
    let cases: Vec<(String, usize, &str)> = vec![
        (
            "[daemon]\ninterfaces = 5\n".to_string() + D,
            2,
            "daemon.interfaces",
        ),
        (
            "[daemon]\ninterfaces = [\"eth0/1\"]\n".to_string() + D,
            2,
            "daemon.interfaces",
        ),
        (
            "[daemon]\nlog_file = \"\"\n".to_string() + D,
            2,
            "daemon.log_file",
        ),
        (
            "[daemon]\nsyslog = \"yes\"\n".to_string() + D,
            2,
            "daemon.syslog",
        ),
        (
            "[daemon]\nmax_sources = 0\n".to_string() + D,
            2,
            "daemon.max_sources",
        ),
        (
            "[daemon]\nmax_failures = -3\n".to_string() + D,
            2,
            "daemon.max_failures",
        ),
        ("[daemon]\nban = 0\n".to_string() + D, 2, "daemon.ban"),
        (
            "[daemon]\nuser = \"root\"\n".to_string() + D,
            2,
            "daemon.user",
        ),
        (
            "[daemon]\nlogfile = \"/x\"\n".to_string() + D,
            2,
            "daemon.logfile",
        ),
        (
            "[firewall]\nbackend = \"pf\"\n".to_string() + D,
            2,
            "firewall.backend",
        ),
        (
            "[firewall]\nchain = \"INPUT\"\n".to_string() + D,
            2,
            "firewall.chain",
        ),
        (
            "[firewall]\njump_position = 0\n".to_string() + D,
            2,
            "firewall.jump_position",
        ),
        (
            "[firewall]\ndaily_flush = \"4am\"\n".to_string() + D,
            2,
            "firewall.daily_flush",
        ),
        (
            "[status]\nlisten = \"localhost\"\n".to_string() + D,
            2,
            "status.listen",
        ),
        (
            "[status]\nenabled = 1\n".to_string() + D,
            2,
            "status.enabled",
        ),
        (
            "[gpio]\nbackend = \"sysfs\"\n".to_string() + D,
            2,
            "gpio.backend",
        ),
        (
            "[[relay]]\nname = \"z\"\npin = 28\n".to_string() + D,
            3,
            "relay[z].pin",
        ),
        ("[led]\npin = \"25\"\n".to_string() + D, 2, "led.pin"),
        (
            "[[door]]\nsequence = [\"7000\"]\n".to_string(),
            1,
            "door[0].name",
        ),
        (
            "[[door]]\nname = \"a\"\n".to_string(),
            1,
            "door[a].sequence",
        ),
        (
            "[[door]]\nname = \"a\"\nsequence = [\"7000\", \"0\"]\n".to_string(),
            3,
            "door[a].sequence",
        ),
        (
            "[[door]]\nname = \"a\"\nsequence = [\"70000\"]\n".to_string(),
            3,
            "door[a].sequence",
        ),
        (
            "[[door]]\nname = \"a\"\nsequence = [\"7000/icmp\"]\n".to_string(),
            3,
            "door[a].sequence",
        ),
        (
            D.to_string() + "seq_timeout = \"xyz\"\n",
            4,
            "door[a].seq_timeout",
        ),
        (
            D.to_string() + "seq_timeout = 0\n",
            4,
            "door[a].seq_timeout",
        ),
        (
            D.to_string() + "tcp_flags = \"syn,!syn\"\n",
            4,
            "door[a].tcp_flags",
        ),
        (
            D.to_string() + "target = \"nas.lan\"\n",
            4,
            "door[a].target",
        ),
        (
            D.to_string() + "start_command = \"echo 'unclosed\"\n",
            4,
            "door[a].start_command",
        ),
        (
            D.to_string() + "stop_command = \"true\"\n",
            4,
            "door[a].stop_command",
        ),
        (
            D.to_string() + "cmd_timeout = -1\n",
            4,
            "door[a].cmd_timeout",
        ),
        (
            D.to_string() + "firewall = { ports = [\"22/sctp\"] }\n",
            4,
            "door[a].firewall.ports",
        ),
        (D.to_string() + "close = \"nothing\"\n", 4, "door[a].close"),
        (
            D.to_string() + "gpio = { relay = \"none\", mode = \"on\" }\n",
            4,
            "door[a].gpio.relay",
        ),
        (
            D.to_string() + "wake_on_lan = { mac = \"zz:11:22:33:44:55\" }\n",
            4,
            "door[a].wake_on_lan.mac",
        ),
        (
            D.to_string() + "TCPFlags = \"syn\"\n",
            4,
            "door[a].TCPFlags",
        ),
        (D.to_string() + D, 5, "door[a].name"),
    ];
    assert!(cases.len() >= 30);
    let dir = tempfile::tempdir().unwrap();
    for (i, (config, line, key)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("case{i}.toml"));
        fs::write(&path, config).unwrap();
        let out = knockgate(&["check", "--config", path.to_str().unwrap()]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "case {i}:\n{config}\n{err}");
        let place = format!("{}:{line}: key `{key}`", path.display());
        assert!(
            err.contains(&place),
            "case {i}: `{place}` not in: {err}\n{config}"
        );
        assert!(
            err.trim_end().len() > place.len() + 10,
            "case {i}: no explanation: {err}"
        );
    }
}

/// The firmware image's config: the SSH door's sequence is left for `knockgate firstboot`.
const IMAGE: &str = r#"# /etc/knockgate/knockgate.toml of the SD-card image
[status]
listen = "127.0.0.1:8080"

[[door]]
name = "ssh"
sequence = []          # generated at first boot by `knockgate firstboot`
seq_timeout = "10s"
firewall = { ports = ["22/tcp"], duration = "30s" }
"#;

/// `knockgate firstboot --config CONFIG --boot-dir BOOT EXTRA...`
fn firstboot(config: &Path, boot: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "firstboot",
        "--config",
        config.to_str().unwrap(),
        "--boot-dir",
        boot.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    knockgate(&args)
}

/// The ports of `sequence = ["P/tcp", ...]` on the line that has it.
fn sequence_ports(config: &str) -> Vec<u16> {
    let line = config
        .lines()
        .find(|l| l.starts_with("sequence = ["))
        .expect("a sequence line");
    let list = &line[line.find('[').unwrap() + 1..line.find(']').unwrap()];
    list.split(',')
        .map(|s| {
            s.trim()
                .trim_matches('"')
                .trim_end_matches("/tcp")
                .parse()
                .unwrap_or_else(|_| panic!("`{s}` in {line}"))
        })
        .collect()
}

#[test]
fn firstboot_fills_the_sequence_writes_the_note_and_runs_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("knockgate.toml");
    let boot = dir.path().join("boot");
    fs::create_dir(&boot).unwrap();
    fs::write(&config, IMAGE).unwrap();
    let cfg = config.to_str().unwrap();

    // Unfilled, the config is refused, naming the place and the remedy.
    let out = knockgate(&["check", "--config", cfg]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains(&format!("{cfg}:7: key `door[ssh].sequence`")),
        "{err}"
    );
    assert!(err.contains("knockgate firstboot --boot-dir"), "{err}");
    // `run` refuses it before touching anything.
    let out = knockgate(&["run", "--dry-run", "--config", cfg]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("knockgate firstboot"), "{err}");

    let out = firstboot(&config, &boot, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let note_path = boot.join("knockgate-sequence.txt");
    assert_eq!(
        text(&out.stdout),
        format!(
            "door ssh: knock sequence generated and written to {}\n",
            note_path.display()
        )
    );
    assert_eq!(text(&out.stderr), "");

    // The config: the `[]` replaced, every other byte as it was.
    let filled = fs::read_to_string(&config).unwrap();
    let ports = sequence_ports(&filled);
    assert_eq!(ports.len(), 3, "{filled}");
    let seq_text = format!(
        "[\"{}/tcp\", \"{}/tcp\", \"{}/tcp\"]",
        ports[0], ports[1], ports[2]
    );
    assert_eq!(filled, IMAGE.replacen("[]", &seq_text, 1));
    for p in &ports {
        assert!((10000..=65000).contains(p), "{ports:?}");
        assert!(!has_number(&text(&out.stdout), *p));
    }

    // The note: the same ports, the commands, CRLF line endings only.
    let note = fs::read_to_string(&note_path).unwrap();
    assert!(note.ends_with("\r\n"));
    assert_eq!(
        note.matches('\n').count(),
        note.matches("\r\n").count(),
        "a bare LF in the note"
    );
    let spaced = format!("{} {} {}", ports[0], ports[1], ports[2]);
    for line in [
        format!(
            "Sequence:  {}, {}, {} (TCP, in this order)",
            ports[0], ports[1], ports[2]
        ),
        "within 10 seconds".to_string(),
        "opens 22/tcp to the knocking address for 30 seconds".to_string(),
        format!("    knockgate knock GATEWAY {spaced}\r\n"),
        format!("    knock GATEWAY {spaced}\r\n"),
        format!(
            "    nmap -Pn --host-timeout 201 --max-retries 0 -p {} GATEWAY\r\n",
            ports[0]
        ),
        format!("    nc -z -w 1 GATEWAY {}\r\n", ports[2]),
        "delete this file".to_string(),
    ] {
        assert!(note.contains(&line), "`{line}` not in the note:\n{note}");
    }

    // The filled config passes `check`.
    let out = knockgate(&["check", "--config", cfg]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // A second run (the next boot) changes nothing.
    let out = firstboot(&config, &boot, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("nothing to do"));
    assert_eq!(fs::read_to_string(&config).unwrap(), filled);
    assert_eq!(fs::read_to_string(&note_path).unwrap(), note);
}

#[test]
fn firstboot_refuses_a_missing_boot_dir_and_an_invalid_config_writing_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("knockgate.toml");
    let boot = dir.path().join("boot");
    fs::write(&config, IMAGE).unwrap();
    let cfg = config.to_str().unwrap();

    // No boot directory (the partition not mounted): exit 1, nothing written.
    let out = firstboot(&config, &boot, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&format!("boot directory {}", boot.display())));
    assert_eq!(fs::read_to_string(&config).unwrap(), IMAGE);

    // A config invalid for another reason: exit 78 naming it, nothing written.
    fs::create_dir(&boot).unwrap();
    let bad = IMAGE.replace("\"10s\"", "\"10 seconds\"");
    fs::write(&config, &bad).unwrap();
    let out = firstboot(&config, &boot, &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains(&format!("{cfg}:8: key `door[ssh].seq_timeout`")),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&config).unwrap(), bad);
    assert_eq!(fs::read_dir(&boot).unwrap().count(), 0);

    // A file name with a directory in it is a usage error (2).
    fs::write(&config, IMAGE).unwrap();
    let out = firstboot(&config, &boot, &["--file", "../x.txt"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(fs::read_to_string(&config).unwrap(), IMAGE);

    // --file names the note; the config keeps its mode.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&config, fs::Permissions::from_mode(0o640)).unwrap();
    let out = firstboot(&config, &boot, &["--file", "SEQUENCE.TXT"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ports = sequence_ports(&fs::read_to_string(&config).unwrap());
    let note = fs::read_to_string(boot.join("SEQUENCE.TXT")).unwrap();
    assert!(ports.iter().all(|p| has_number(&note, *p)));
    assert_eq!(
        fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o640
    );
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(ports.iter().all(|p| !has_number(&all, *p)), "{all}");
}

/// The package's unit gives two boot directories: /boot/firmware (Raspberry Pi OS), else the
/// config's own directory. The first that exists gets the note, private (mode 600).
#[test]
fn firstboot_takes_the_first_boot_dir_that_exists_and_the_note_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("knockgate.toml");
    fs::write(&config, IMAGE).unwrap();
    let missing = dir.path().join("boot-firmware");
    let out = knockgate(&[
        "firstboot",
        "--config",
        config.to_str().unwrap(),
        "--boot-dir",
        missing.to_str().unwrap(),
        "--boot-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let note_path = dir.path().join("knockgate-sequence.txt");
    assert!(text(&out.stdout).contains(&note_path.display().to_string()));
    assert!(!missing.exists());
    let ports = sequence_ports(&fs::read_to_string(&config).unwrap());
    let note = fs::read_to_string(&note_path).unwrap();
    assert!(ports.iter().all(|p| has_number(&note, *p)));
    assert_eq!(
        fs::metadata(&note_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

/// The note is written before the config: when the config cannot be written (a power cut
/// between the two, here a directory in the way of the temporary file), the config stays
/// unfilled and the next run draws again and rewrites both.
#[test]
fn firstboot_writes_the_note_before_the_config_and_a_failure_between_redraws() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("knockgate.toml");
    let boot = dir.path().join("boot");
    fs::create_dir(&boot).unwrap();
    fs::write(&config, IMAGE).unwrap();
    let obstacle = dir.path().join(".knockgate.toml.knockgate-tmp");
    fs::create_dir(&obstacle).unwrap();
    let out = firstboot(&config, &boot, &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("run `knockgate firstboot` again"), "{err}");
    assert_eq!(fs::read_to_string(&config).unwrap(), IMAGE);
    let first_note = fs::read_to_string(boot.join("knockgate-sequence.txt")).unwrap();
    assert!(first_note.contains("knockgate knock GATEWAY"));

    fs::remove_dir(&obstacle).unwrap();
    let out = firstboot(&config, &boot, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ports = sequence_ports(&fs::read_to_string(&config).unwrap());
    let note = fs::read_to_string(boot.join("knockgate-sequence.txt")).unwrap();
    assert_ne!(note, first_note, "the note was not rewritten");
    assert!(
        note.contains(&format!(
            "knockgate knock GATEWAY {} {} {}\r\n",
            ports[0], ports[1], ports[2]
        )),
        "{note}"
    );
    let out = knockgate(&["check", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// `knockgate phone` for a fixed door: the QR code (PNG, and SVG rendered by rsvg-convert)
/// decodes with zbarimg to the exact sequence text, the Knock on Ports file and the knockd
/// snippet are there, every file mode 600; an unknown door is named.
#[test]
fn phone_files_of_a_fixed_door_decode_back_to_the_sequence() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("k.toml");
    fs::write(
        &cfg,
        "[[door]]\nname = \"open SSH\"\nsequence = [\"7000\", \"8000/udp\", \"9000\"]\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let run = knockgate(&[
        "phone",
        "open SSH",
        "--config",
        cfg.to_str().unwrap(),
        "--host",
        "gw.example",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(text(&run.stdout).contains("Delete these files once"));
    let want = "gw.example 7000/tcp 8000/udp 9000/tcp";
    let decode = |png: &Path| {
        let o = std::process::Command::new("zbarimg")
            .args(["-q", "--raw"])
            .arg(png)
            .output()
            .expect("zbarimg (zbar-tools)");
        text(&o.stdout).trim_end().to_string()
    };
    assert_eq!(decode(&out.join("open_SSH-qr.png")), want);
    let svg_png = dir.path().join("svg.png");
    let r = std::process::Command::new("rsvg-convert")
        .args(["-w", "400", "-o"])
        .arg(&svg_png)
        .arg(out.join("open_SSH-qr.svg"))
        .status()
        .expect("rsvg-convert (librsvg2-bin)");
    assert!(r.success());
    assert_eq!(decode(&svg_png), want);
    for f in [
        "open_SSH-knockonports.json",
        "open_SSH-knockd.conf",
        "open_SSH-qr.png",
        "open_SSH-qr.svg",
    ] {
        let m = fs::metadata(out.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(m, 0o600, "{f}");
    }
    let kop: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("open_SSH-knockonports.json")).unwrap())
            .unwrap();
    assert_eq!(
        kop["sequences"][0]["steps"][1],
        serde_json::json!({"type": "udp", "port": 8000})
    );
    let bad = knockgate(&[
        "phone",
        "nope",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("no door named `nope` (doors: open SSH)"),
        "{}",
        text(&bad.stderr)
    );
}
