//! Test hosts in network namespaces, and the real daemon running in them.
//!
//! A [`Lab`] is a gateway namespace and a client namespace joined by a veth pair (IPv4 and
//! IPv6, no DAD delay); more client links can be added. Every name carries the test process id
//! and a counter, so tests run in parallel and leave nothing behind (namespaces are deleted on
//! drop, which also deletes their veths and iptables state). Traffic stays inside these
//! namespaces: the addresses are the labs' own.
//!
//! These tests need root. Outside CI they skip with a message; in CI (`CI` set) a missing
//! privilege is a failure, never a silent skip. The one deliberate skip is the ARM run under
//! qemu-user (scripts/arm.sh sets `KNOCKGATE_TEST_NO_NETNS` to its reason): qemu-user does not
//! emulate the packet-socket options live capture needs, so these tests run natively only.
#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// True if namespace tests can run here; false (after saying why) if they must be skipped.
/// Panics in CI, where they must run, unless `KNOCKGATE_TEST_NO_NETNS` says why not (the ARM
/// run under qemu-user; scripts/test.sh fails a native CI run that prints SKIPPED).
pub fn can_run_netns() -> bool {
    if let Some(why) = std::env::var_os("KNOCKGATE_TEST_NO_NETNS") {
        eprintln!(
            "SKIPPED (KNOCKGATE_TEST_NO_NETNS): {}",
            why.to_string_lossy()
        );
        return false;
    }
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0");
    let ip = Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if root && ip {
        return true;
    }
    let why = format!("namespace tests need root and iproute2 (root: {root}, ip: {ip})");
    if std::env::var_os("CI").is_some() {
        panic!("{why}: CI must run them");
    }
    eprintln!("SKIPPED outside CI: {why}");
    false
}

/// Runs a command, panicking with its output if it fails.
pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(role: &str) -> Netns {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("kg{}-{}-{role}", std::process::id(), n);
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip ARGS` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> Output {
        let mut full = vec!["ip", "-n", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// A command inside the namespace (not yet run).
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs a command inside the namespace and returns its output (success not required).
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args[0])
            .args(&args[1..])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"))
    }

    /// Runs a command inside the namespace, panicking if it fails.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} in {} failed: {}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// One veth link between the gateway and a client namespace.
pub struct Link {
    pub gw_if: String,
    pub client_if: String,
    pub gw_v4: String,
    pub client_v4: String,
    pub gw_v6: String,
    pub client_v6: String,
}

/// A gateway namespace and client namespaces, each joined to it by a veth pair.
pub struct Lab {
    pub gw: Netns,
    pub clients: Vec<(Netns, Link)>,
    pub dir: tempfile::TempDir,
}

impl Lab {
    /// A gateway and one client on subnet 10.200.N.0/24 and fd00:200:N::/64.
    pub fn new() -> Lab {
        let gw = Netns::new("gw");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut lab = Lab {
            gw,
            clients: Vec::new(),
            dir,
        };
        lab.add_client();
        lab
    }

    /// Adds a client namespace on its own link; returns its index.
    pub fn add_client(&mut self) -> usize {
        let i = self.clients.len();
        let ns = Netns::new(&format!("c{i}"));
        let link = Link {
            gw_if: format!("kgw{i}"),
            client_if: format!("kcl{i}"),
            gw_v4: format!("10.200.{i}.1"),
            client_v4: format!("10.200.{i}.2"),
            // Canonical text, as the daemon prints addresses.
            gw_v6: canonical(&format!("fd00:200:{i}::1")),
            client_v6: canonical(&format!("fd00:200:{i}::2")),
        };
        sh(&[
            "ip",
            "link",
            "add",
            "name",
            &link.gw_if,
            "netns",
            &self.gw.name,
            "type",
            "veth",
            "peer",
            "name",
            &link.client_if,
            "netns",
            &ns.name,
        ]);
        for (n, ifname, v4, v6) in [
            (&self.gw, &link.gw_if, &link.gw_v4, &link.gw_v6),
            (&ns, &link.client_if, &link.client_v4, &link.client_v6),
        ] {
            n.ip(&["addr", "add", &format!("{v4}/24"), "dev", ifname]);
            n.ip(&[
                "-6",
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                ifname,
                "nodad",
            ]);
            n.ip(&["link", "set", ifname, "up"]);
        }
        self.clients.push((ns, link));
        i
    }

    /// A veth from the test process's own namespace into the gateway, so the test can talk to
    /// the gateway directly (its status page). Returns the gateway's address on it. Deleting the
    /// gateway namespace deletes both ends.
    pub fn add_host_link(&self) -> String {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let host_if = format!("kh{}x{}", std::process::id() % 100_000, n);
        let (gw, host) = (
            format!("10.251.{}.1", n % 250),
            format!("10.251.{}.2", n % 250),
        );
        sh(&[
            "ip",
            "link",
            "add",
            "name",
            &host_if,
            "type",
            "veth",
            "peer",
            "name",
            "kgh0",
            "netns",
            &self.gw.name,
        ]);
        sh(&["ip", "addr", "add", &format!("{host}/30"), "dev", &host_if]);
        sh(&["ip", "link", "set", &host_if, "up"]);
        self.gw
            .ip(&["addr", "add", &format!("{gw}/30"), "dev", "kgh0"]);
        self.gw.ip(&["link", "set", "kgh0", "up"]);
        gw
    }

    pub fn client(&self, i: usize) -> &Netns {
        &self.clients[i].0
    }

    pub fn link(&self, i: usize) -> &Link {
        &self.clients[i].1
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a config file in the lab's directory, with `@DIR@` replaced by that directory.
    pub fn write_config(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        let text = text.replace("@DIR@", &self.dir.path().display().to_string());
        fs::write(&path, text).expect("write config");
        path
    }

    /// Starts `knockgate run --config CONFIG ARGS...` in the gateway namespace and waits until
    /// it listens on `wait_for` interfaces.
    pub fn start_daemon(&self, config: &Path, args: &[&str], wait_for: &[&str]) -> Daemon {
        Daemon::start(&self.gw, config, args, self.path("daemon.log"), wait_for)
    }
}

fn canonical(ip: &str) -> String {
    ip.parse::<std::net::IpAddr>()
        .expect("an address")
        .to_string()
}

/// A door with a start and a stop command 3 s apart, each appending to `events`.
pub const START_STOP: &str = r#"
[daemon]
interfaces = ["kgw0"]
state_dir = "@DIR@/state"

[[door]]
name = "timed"
sequence = ["7000", "8000"]
start_command = "sh -c 'echo open %IP% >> @DIR@/events'"
stop_command = "sh -c 'echo close %IP% >> @DIR@/events'"
cmd_timeout = "3s"
"#;

/// An HTTP GET to the status page: (status code, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the status page");
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    let code = buf.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
    (code, body.unwrap_or_default())
}

/// The real knockgate binary.
pub fn knockgate() -> &'static str {
    env!("CARGO_BIN_EXE_knockgate")
}

/// A running daemon, killed on drop; its stderr goes to a log file.
pub struct Daemon {
    pub child: Option<Child>,
    pub log: PathBuf,
    /// Where this daemon's part of the log starts (a restarted daemon appends to the same file).
    pub log_start: usize,
}

impl Daemon {
    pub fn start(
        ns: &Netns,
        config: &Path,
        args: &[&str],
        log: PathBuf,
        wait_for: &[&str],
    ) -> Daemon {
        Daemon::start_env(ns, config, args, log, wait_for, &[])
    }

    /// [`Daemon::start`] with these environment variables set (a `PATH` with other programs).
    pub fn start_env(
        ns: &Netns,
        config: &Path,
        args: &[&str],
        log: PathBuf,
        wait_for: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let log_start = fs::metadata(&log).map(|m| m.len() as usize).unwrap_or(0);
        let child = ns
            .cmd(knockgate())
            .args(["run", "--config", config.to_str().expect("utf-8 path")])
            .args(args)
            .env("KNOCKGATE_LOG", "debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup"))
            .stderr(file)
            .spawn()
            .expect("start knockgate");
        let d = Daemon {
            child: Some(child),
            log,
            log_start,
        };
        for iface in wait_for {
            d.wait_log(&format!("listening on {iface}"), Duration::from_secs(15));
        }
        d
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The whole log file (every daemon started on it).
    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// This daemon's part of the log.
    pub fn own_log(&self) -> String {
        let all = self.log_text();
        all.get(self.log_start..).unwrap_or_default().to_string()
    }

    /// Waits until this daemon's part of the log contains `needle`.
    pub fn wait_log(&self, needle: &str, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.own_log().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "`{needle}` not in the daemon log after {limit:?}:\n{}",
            self.log_text()
        );
    }

    /// Waits until this daemon's part of the log contains `needle` at least `count` times.
    pub fn wait_log_count(&self, needle: &str, count: usize, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.own_log().matches(needle).count() >= count {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "`{needle}` not {count} times in the daemon log after {limit:?}:\n{}",
            self.own_log()
        );
    }

    /// Like [`wait_file`], with this daemon's log in the failure message.
    pub fn wait_file(&self, path: &Path, needle: &str, limit: Duration) -> String {
        let start = Instant::now();
        loop {
            let text = read(path);
            if text.contains(needle) {
                return text;
            }
            if start.elapsed() >= limit {
                panic!(
                    "`{needle}` not in {} after {limit:?}; it has: {text:?}; daemon log:\n{}",
                    path.display(),
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a signal (`kill -SIG pid`): the daemon is `ip netns exec`'s child, which execs it,
    /// so the pid is the daemon's.
    pub fn signal(&self, sig: &str) {
        sh(&["kill", &format!("-{sig}"), &self.pid().to_string()]);
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        let child = self.child.as_mut().expect("running");
        while start.elapsed() < limit {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("daemon still running after {limit:?}:\n{}", self.log_text());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits until `path` contains `needle`; returns the content.
pub fn wait_file(path: &Path, needle: &str, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        if start.elapsed() >= limit {
            panic!(
                "`{needle}` not in {} after {limit:?}; it has: {text:?}",
                path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The content of a file, empty if missing.
pub fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// Whether `text` holds `port` as a whole number (not inside a longer one): a sequence port
/// must not appear in a page or a log, where a timestamp could hold its digits by accident.
pub fn has_number(text: &str, port: u16) -> bool {
    let p = port.to_string();
    text.match_indices(&p).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + p.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

/// Makes an SPA door's key files `STEM.key` and `STEM.hmac` in the lab's directory with
/// `knockgate spa keygen`; returns both keys in base64 (as fwknop's client takes them).
pub fn spa_keys(lab: &Lab, stem: &str) -> (String, String) {
    use std::io::Read;
    let opts = knockgate::cli::spa::KeygenOptions {
        key_file: lab.path(&format!("{stem}.key")),
        hmac_key_file: lab.path(&format!("{stem}.hmac")),
        force: true,
        server: "gw".into(),
        access: "tcp/22".into(),
        port: 62201,
    };
    let mut random = std::fs::File::open("/dev/urandom").unwrap().take(1024);
    knockgate::cli::spa::keygen(&opts, &mut random).unwrap();
    knockgate::doors::spa::Keys::load(&opts.key_file, &opts.hmac_key_file)
        .unwrap()
        .to_base64()
}

/// mosquitto on 127.0.0.1:1883 in the lab's gateway namespace, user `gate` / `s3cret`
/// (killed on drop).
pub struct Broker(std::process::Child);

impl Broker {
    pub fn start(lab: &Lab) -> Broker {
        Broker::start_with(lab, "listener 1883 127.0.0.1\n", 1883)
    }

    /// With `listener` (mosquitto.conf lines: the listener and its TLS files), on `port`.
    pub fn start_with(lab: &Lab, listener: &str, port: u16) -> Broker {
        let passwd = lab.path("mosquitto.passwd");
        sh(&[
            "mosquitto_passwd",
            "-c",
            "-b",
            passwd.to_str().unwrap(),
            "gate",
            "s3cret",
        ]);
        let conf = lab.path("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "{listener}allow_anonymous false\npassword_file {}\npersistence false\nuser root\n",
                passwd.display()
            ),
        )
        .unwrap();
        let child = lab
            .gw
            .cmd("mosquitto")
            .args(["-c", conf.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(lab.path("mosquitto.log")).unwrap())
            .spawn()
            .expect("mosquitto (apt-get install mosquitto)");
        let broker = Broker(child);
        let start = Instant::now();
        while !lab
            .gw
            .run(&["bash", "-c", &format!("exec 3<>/dev/tcp/127.0.0.1/{port}")])
            .status
            .success()
        {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "mosquitto did not listen: {}",
                read(&lab.path("mosquitto.log"))
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        broker
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `mosquitto_sub -v` on `topics` in the gateway, each message a line `TOPIC PAYLOAD` in
/// `out` (killed on drop).
pub struct Sub(std::process::Child);

impl Sub {
    pub fn start(lab: &Lab, out: &std::path::Path, topics: &[&str]) -> Sub {
        let mut cmd = lab.gw.cmd("mosquitto_sub");
        cmd.args(["-h", "127.0.0.1", "-u", "gate", "-P", "s3cret", "-v"]);
        for t in topics {
            cmd.args(["-t", t]);
        }
        let child = cmd
            .stdout(std::fs::File::create(out).unwrap())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mosquitto_sub (apt-get install mosquitto-clients)");
        Sub(child)
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
