//! knockgate's SPA door side by side with Debian's `fwknopd` (fwknop-server 2.6.10) as the
//! reference: both sniff the same gateway interface in a namespace, the same packets come from
//! Debian's fwknop client in a client namespace (or, for replays and tampering, its saved
//! packets sent again with `nc -u`), and each daemon's verdict on each packet must be the same.
//! fwknopd manages its own chain (FWKNOP_INPUT, its jump first in INPUT; its test mode `-t`
//! would not keep a replay cache) and its verdict is read from its output (`Added access rule`);
//! knockgate's from its `OPEN SESAME` and `SPA packet refused` lines (its jump second, after
//! fwknopd's). The door is configured as fwknopd is (`require_source_match = false`,
//! `allow = ["tcp/22"]`, 120 s): knockgate's stricter default is tested in
//! tests/it/spa_daemon.rs. Needs root, fwknop and fwknopd (scripts/setup.sh); outside CI the
//! test skips and says so.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

const LONG: Duration = Duration::from_secs(10);

fn available() -> bool {
    let has = |p: &str| {
        Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let ok = has("fwknop") && has("fwknopd");
    if !ok {
        let why = "fwknop and fwknopd (Debian's fwknop-client, fwknop-server) are not installed";
        if std::env::var_os("CI").is_some() {
            panic!("{why}: CI must run this test (scripts/setup.sh installs them)");
        }
        eprintln!("SKIPPED outside CI: {why}");
    }
    ok
}

/// fwknopd in the gateway namespace, in the foreground; killed on drop.
struct Fwknopd {
    child: Child,
    log: std::path::PathBuf,
}

impl Fwknopd {
    fn start(lab: &Lab, keys: &(String, String)) -> Fwknopd {
        let dir = lab.path("fwknopd");
        fs::create_dir_all(dir.join("run")).unwrap();
        let conf = dir.join("fwknopd.conf");
        let access = dir.join("access.conf");
        fs::write(
            &conf,
            format!(
                "PCAP_INTF kgw0;\nENABLE_PCAP_PROMISC N;\nPCAP_FILTER udp port 62201;\n\
                 MAX_SPA_PACKET_AGE 120;\nENABLE_DIGEST_PERSISTENCE Y;\nFWKNOP_RUN_DIR {};\n",
                dir.join("run").display()
            ),
        )
        .unwrap();
        fs::write(
            &access,
            format!(
                "SOURCE ANY\nOPEN_PORTS tcp/22\nKEY_BASE64 {}\nHMAC_KEY_BASE64 {}\nFW_ACCESS_TIMEOUT 30\n",
                keys.0, keys.1
            ),
        )
        .unwrap();
        for f in [&conf, &access] {
            fs::set_permissions(f, fs::Permissions::from_mode(0o600)).unwrap();
        }
        let log = dir.join("out.log");
        let out = fs::File::create(&log).unwrap();
        let child = lab
            .gw
            .cmd("fwknopd")
            .args(["-c", conf.to_str().unwrap(), "-a", access.to_str().unwrap()])
            .args(["-d", dir.join("digest.cache").to_str().unwrap()])
            .args(["-p", dir.join("run/pid").to_str().unwrap()])
            .args(["-i", "kgw0", "-f", "-v"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("fwknopd");
        let f = Fwknopd { child, log };
        f.wait_for("Starting fwknopd main event loop");
        f
    }

    fn text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for(&self, needle: &str) {
        let start = Instant::now();
        while !self.text().contains(needle) {
            assert!(
                start.elapsed() < LONG,
                "fwknopd: no `{needle}`:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Packets accepted so far: each adds a rule to fwknopd's own chain.
    fn accepted(&self) -> usize {
        self.text()
            .matches("Added access rule to FWKNOP_INPUT for")
            .count()
    }
}

impl Drop for Fwknopd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What is sent in one case.
enum Packet<'a> {
    /// fwknop builds and sends it (and saves it to `save`).
    Client {
        keys: &'a (String, String),
        args: &'a [&'a str],
    },
    /// These bytes, with `nc -u`.
    Raw(Vec<u8>),
}

#[test]
fn knockgate_and_fwknopd_give_the_same_verdicts() {
    if !can_run_netns() || !available() {
        return;
    }
    let lab = Lab::new();
    let k = spa_keys(&lab, "spa");
    let other = spa_keys(&lab, "other");
    let cfg = lab.write_config(
        "knockgate.toml",
        r#"
[daemon]
interfaces = ["kgw0"]
state_dir = "@DIR@/state"

[firewall]
daily_flush = "off"
jump_position = 2

[[door]]
name = "spa"
spa = { key_file = "@DIR@/spa.key", hmac_key_file = "@DIR@/spa.hmac", allow = ["tcp/22"], require_source_match = false }
firewall = { ports = ["22/tcp"], duration = "2s" }
"#,
    );
    let daemon = lab.start_daemon(&cfg, &[], &["kgw0"]);
    let fwknopd = Fwknopd::start(&lab, &k);
    let client = lab.link(0).client_v4.clone();
    let gw = lab.link(0).gw_v4.clone();
    let home = lab.path("home");
    fs::create_dir_all(&home).unwrap();
    let saved = lab.path("saved.pkt");

    // A valid packet, saved to be replayed and tampered with below. --test: not sent.
    let build = |keys: &(String, String), args: &[&str]| {
        let mut argv: Vec<String> = vec![
            "env".into(),
            format!("HOME={}", home.display()),
            "fwknop".into(),
            "-D".into(),
            gw.clone(),
            "--key-base64-rijndael".into(),
            keys.0.clone(),
            "--key-base64-hmac".into(),
            keys.1.clone(),
            "--use-hmac".into(),
            "--save-packet".into(),
            saved.display().to_string(),
        ];
        argv.extend(args.iter().map(|a| a.to_string()));
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        lab.client(0).ok(&argv);
        // The saved file ends with a newline that the client does not send.
        let mut p = fs::read(&saved).unwrap();
        while p.last() == Some(&b'\n') {
            p.pop();
        }
        p
    };
    let keep = build(&k, &["-A", "tcp/22", "-a", &client, "--test"]);
    let mut flipped = build(&k, &["-A", "tcp/22", "-a", &client, "--test"]);
    flipped[30] = if flipped[30] == b'A' { b'B' } else { b'A' };
    let truncated = {
        let p = build(&k, &["-A", "tcp/22", "-a", &client, "--test"]);
        p[..p.len() - 12].to_vec()
    };

    let stale: &[&str] = &[
        "-A",
        "tcp/22",
        "-a",
        &client,
        "--time-offset-minus",
        "300sec",
    ];
    let valid: &[&str] = &["-A", "tcp/22", "-a", &client];
    let elsewhere: &[&str] = &["-A", "tcp/22", "-a", "192.0.2.55"];
    let port23: &[&str] = &["-A", "tcp/23", "-a", &client];
    let cases: Vec<(&str, Packet, bool)> = vec![
        ("valid, sent by the client", Packet::Raw(keep.clone()), true),
        ("the same packet again", Packet::Raw(keep.clone()), false),
        (
            "built 300 s ago",
            Packet::Client {
                keys: &k,
                args: stale,
            },
            false,
        ),
        ("a byte flipped", Packet::Raw(flipped), false),
        ("truncated", Packet::Raw(truncated), false),
        (
            "other keys",
            Packet::Client {
                keys: &other,
                args: valid,
            },
            false,
        ),
        (
            "a port not allowed",
            Packet::Client {
                keys: &k,
                args: port23,
            },
            false,
        ),
        (
            "another address inside",
            Packet::Client {
                keys: &k,
                args: elsewhere,
            },
            true,
        ),
        (
            "valid, sent by the client",
            Packet::Client {
                keys: &k,
                args: valid,
            },
            true,
        ),
    ];
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for (what, packet, _) in &cases {
        let (opened, refused) = (
            daemon.own_log().matches("OPEN SESAME").count(),
            daemon.own_log().matches("SPA packet refused").count(),
        );
        let accepted = fwknopd.accepted();
        match packet {
            Packet::Client { keys, args } => {
                build(keys, args);
            }
            Packet::Raw(bytes) => {
                let file = lab.path("datagram");
                fs::write(&file, bytes).unwrap();
                let cmd = format!("nc -u -w 1 {gw} 62201 < {}", file.display());
                lab.client(0).ok(&["sh", "-c", &cmd]);
            }
        }
        // knockgate logs a verdict for every datagram; fwknopd only accepts loudly.
        let start = Instant::now();
        loop {
            let log = daemon.own_log();
            let now = (
                log.matches("OPEN SESAME").count(),
                log.matches("SPA packet refused").count(),
            );
            if now != (opened, refused) {
                ours.push((*what, now.0 > opened));
                break;
            }
            assert!(
                start.elapsed() < LONG,
                "knockgate said nothing about: {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(700));
        theirs.push((*what, fwknopd.accepted() > accepted));
    }
    let expected: Vec<(&str, bool)> = cases.iter().map(|(w, _, ok)| (*w, *ok)).collect();
    assert_eq!(
        theirs,
        expected,
        "fwknopd (the reference) disagrees with the test's expectations:\n{}",
        fwknopd.text()
    );
    assert_eq!(
        ours,
        theirs,
        "knockgate and fwknopd disagree:\n{}",
        daemon.own_log()
    );
}
