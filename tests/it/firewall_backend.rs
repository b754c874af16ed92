//! The iptables backend against the real iptables, each test in network namespaces of its own
//! (`kgfw-<pid>-<n>`, deleted on drop, which also deletes their veths and rules). Test traffic
//! stays between those namespaces, on addresses they alone hold (10.210.1.0/24, fd00:210::/64).
//! (Moved here from `src/actions/firewall/iptables.rs`: root-only tests live in `tests/`.)

use std::net::IpAddr;
use std::process::{Child, Command, Stdio};

use knockgate::actions::firewall::iptables::Iptables;
use knockgate::actions::firewall::rules::{datestop, rule_args, Family};
use knockgate::actions::firewall::{Firewall, FirewallError, Grant, PortRange, Ports, Repairs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// [`crate::common::can_run_netns`], and the iptables these tests drive.
fn can_run_netns() -> bool {
    if !crate::common::can_run_netns() {
        return false;
    }
    let works = |program: &str| {
        Command::new(program)
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    assert!(
        works("iptables") && works("ip6tables"),
        "iptables and ip6tables are needed (scripts/setup.sh installs them)"
    );
    true
}

/// Runs a command and returns its output, whatever its status.
fn run(argv: &[&str]) -> std::process::Output {
    Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"))
}

/// Runs a command; must succeed; returns its stdout.
fn sh(argv: &[&str]) -> String {
    String::from_utf8_lossy(&crate::common::sh(argv).stdout).into_owned()
}

/// A network namespace, deleted on drop (even when the test panics).
struct Ns {
    name: String,
}

impl Ns {
    fn new() -> Ns {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("kgfw-{}-{n}", std::process::id());
        sh(&["ip", "netns", "add", &name]);
        let ns = Ns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    fn ip(&self, args: &[&str]) -> String {
        let mut argv = vec!["ip", "-n", &self.name];
        argv.extend_from_slice(args);
        sh(&argv)
    }

    /// `iptables`/`ip6tables ARGS` in the namespace; must succeed; returns stdout.
    fn ipt(&self, family: Family, args: &[&str]) -> String {
        let program = match family {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        };
        let mut argv = vec!["ip", "netns", "exec", &self.name, program, "-w"];
        argv.extend_from_slice(args);
        sh(&argv)
    }

    fn fw(&self) -> Iptables {
        Iptables::new("KNOCKD", 1).in_netns(&self.name)
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

const BOTH: [Family; 2] = [Family::V4, Family::V6];

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn grant(door: &str, src: &str, ports: &[&str], until: u64) -> Grant {
    Grant {
        door: door.into(),
        src: src.parse().unwrap(),
        ports: Ports::Some(ports.iter().map(|p| PortRange::parse(p).unwrap()).collect()),
        until,
    }
}

/// Some other INPUT rules, as a gateway has them.
fn other_rules(ns: &Ns) {
    for family in BOTH {
        ns.ipt(family, &["-A", "INPUT", "-i", "lo", "-j", "ACCEPT"]);
        ns.ipt(
            family,
            &["-A", "INPUT", "-p", "tcp", "--dport", "80", "-j", "ACCEPT"],
        );
        ns.ipt(family, &["-A", "INPUT", "-i", "eth9", "-j", "DROP"]);
    }
}

/// `listing` (an `-S INPUT`) with `-A INPUT -j KNOCKD` inserted as the `position`th rule.
fn with_jump(listing: &str, position: usize) -> String {
    let mut lines: Vec<&str> = listing.lines().collect();
    let first_rule = lines
        .iter()
        .position(|l| l.starts_with("-A "))
        .unwrap_or(lines.len());
    lines.insert(first_rule + position - 1, "-A INPUT -j KNOCKD");
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[test]
fn ensure_twice_is_one_chain_and_one_jump_other_rules_untouched() {
    if !can_run_netns() {
        return;
    }
    let ns = Ns::new();
    other_rules(&ns);
    let before = BOTH.map(|f| ns.ipt(f, &["-S", "INPUT"]));
    let mut fw = ns.fw();
    assert_eq!(
        fw.ensure().unwrap(),
        Repairs {
            chain_created: true,
            jumps_fixed: 2
        }
    );
    assert_eq!(fw.ensure().unwrap(), Repairs::default());
    for (i, family) in BOTH.into_iter().enumerate() {
        assert_eq!(ns.ipt(family, &["-S", "INPUT"]), with_jump(&before[i], 1));
        assert_eq!(ns.ipt(family, &["-S", "KNOCKD"]), "-N KNOCKD\n");
    }
}

#[test]
fn jump_position_counts_other_rules_and_stops_at_the_end() {
    if !can_run_netns() {
        return;
    }
    let ns = Ns::new();
    other_rules(&ns);
    let before = ns.ipt(Family::V4, &["-S", "INPUT"]);
    let mut fw = Iptables::new("KNOCKD", 3).in_netns(&ns.name);
    fw.ensure().unwrap();
    assert_eq!(ns.ipt(Family::V4, &["-S", "INPUT"]), with_jump(&before, 3));
    // Another position moves the jump; past the end puts it last.
    let mut fw = Iptables::new("KNOCKD", 50).in_netns(&ns.name);
    assert_eq!(
        fw.ensure().unwrap(),
        Repairs {
            chain_created: false,
            jumps_fixed: 4
        }
    );
    assert_eq!(ns.ipt(Family::V4, &["-S", "INPUT"]), with_jump(&before, 4));
    assert_eq!(fw.ensure().unwrap(), Repairs::default());
}

#[test]
fn ensure_repairs_duplicate_misplaced_and_deleted_jumps() {
    if !can_run_netns() {
        return;
    }
    let ns = Ns::new();
    other_rules(&ns);
    let before = BOTH.map(|f| ns.ipt(f, &["-S", "INPUT"]));
    let mut fw = ns.fw();
    fw.ensure().unwrap();
    let good = BOTH.map(|f| with_jump(&before[f as usize], 1));
    let check = |fw: &mut Iptables, jumps_fixed: usize, chain_created: bool| {
        assert_eq!(
            fw.ensure().unwrap(),
            Repairs {
                chain_created,
                jumps_fixed
            }
        );
        for family in BOTH {
            assert_eq!(ns.ipt(family, &["-S", "INPUT"]), good[family as usize]);
        }
        assert_eq!(fw.ensure().unwrap(), Repairs::default());
    };
    // A second jump at the end (IPv4) and at the start (IPv6).
    ns.ipt(Family::V4, &["-A", "INPUT", "-j", "KNOCKD"]);
    ns.ipt(Family::V6, &["-I", "INPUT", "1", "-j", "KNOCKD"]);
    // v4: both deleted, one inserted (3); v6: the first deleted, the last is right (1).
    check(&mut fw, 4, false);
    // At the wrong place.
    for family in BOTH {
        ns.ipt(family, &["-D", "INPUT", "-j", "KNOCKD"]);
        ns.ipt(family, &["-I", "INPUT", "3", "-j", "KNOCKD"]);
    }
    check(&mut fw, 4, false);
    // Deleted from outside (`iptables -D INPUT -j KNOCKD`).
    ns.ipt(Family::V4, &["-D", "INPUT", "-j", "KNOCKD"]);
    check(&mut fw, 1, false);
    // The chain emptied from outside (`iptables -F KNOCKD`): nothing to repair (the daemon
    // reopens its grants), the chain and jump stay.
    fw.open(&grant("d", "192.0.2.1", &["22"], now() + 60))
        .unwrap();
    ns.ipt(Family::V4, &["-F", "KNOCKD"]);
    check(&mut fw, 0, false);
    assert_eq!(ns.ipt(Family::V4, &["-S", "KNOCKD"]), "-N KNOCKD\n");
    // The jump and the chain deleted from outside.
    for family in BOTH {
        ns.ipt(family, &["-D", "INPUT", "-j", "KNOCKD"]);
        ns.ipt(family, &["-X", "KNOCKD"]);
    }
    check(&mut fw, 2, true);
    for family in BOTH {
        assert_eq!(ns.ipt(family, &["-S", "KNOCKD"]), "-N KNOCKD\n");
    }
}

#[test]
fn open_is_idempotent_and_close_deletes_only_what_exists() {
    if !can_run_netns() {
        return;
    }
    let ns = Ns::new();
    let mut fw = ns.fw();
    fw.ensure().unwrap();
    let until = now() + 600;
    let ssh = grant("openSSH", "192.0.2.7", &["22"], until);
    for _ in 0..10 {
        fw.open(&ssh).unwrap();
    }
    let rule = format!(
        "-A KNOCKD -s 192.0.2.7/32 -p tcp -m multiport --dports 22 -m comment --comment \
         \"knockgate:openSSH:{until}\" -m time --datestop {} -j ACCEPT\n",
        datestop(until)
    );
    assert_eq!(
        ns.ipt(Family::V4, &["-S", "KNOCKD"]),
        format!("-N KNOCKD\n{rule}")
    );
    // 20 TCP ports and a UDP port over IPv6: three rules, opened twice, still three.
    let list: Vec<String> = (3000..3020).map(|p| p.to_string()).collect();
    let mut ports: Vec<&str> = list.iter().map(String::as_str).collect();
    ports.push("53/udp");
    let many = grant("many", "2001:db8::9", &ports, until);
    fw.open(&many).unwrap();
    fw.open(&many).unwrap();
    assert_eq!(ns.ipt(Family::V6, &["-S", "KNOCKD"]).lines().count(), 4);

    fw.close(&ssh).unwrap();
    fw.close(&many).unwrap();
    for family in BOTH {
        assert_eq!(ns.ipt(family, &["-S", "KNOCKD"]), "-N KNOCKD\n");
    }
    fw.close(&ssh).unwrap();
    fw.close(&many).unwrap();
}

#[test]
fn list_finds_what_open_added_and_remove_deletes_it() {
    if !can_run_netns() {
        return;
    }
    let ns = Ns::new();
    let mut fw = ns.fw();
    fw.ensure().unwrap();
    let until = now() + 600;
    let v4 = grant("open SSH", "192.0.2.7", &["22", "60000-61000/udp"], until);
    let v6 = Grant {
        door: "web".into(),
        src: "2001:db8::7".parse().unwrap(),
        ports: Ports::All,
        until: until + 1,
    };
    fw.open(&v4).unwrap();
    fw.open(&v6).unwrap();
    // Foreign rules in our chain are not listed, nor removed.
    ns.ipt(
        Family::V4,
        &[
            "-A",
            "KNOCKD",
            "-s",
            "192.0.2.50",
            "-m",
            "comment",
            "--comment",
            "hand made",
            "-j",
            "ACCEPT",
        ],
    );
    ns.ipt(
        Family::V6,
        &["-A", "KNOCKD", "-s", "2001:db8::50", "-j", "ACCEPT"],
    );
    let found = fw.list().unwrap();
    let summary: Vec<(&str, IpAddr, u64)> = found
        .iter()
        .map(|f| (f.door.as_str(), f.src, f.until))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("open_SSH", v4.src, until),
            ("open_SSH", v4.src, until),
            ("web", v6.src, until + 1),
        ]
    );
    let expected: Vec<Vec<String>> = rule_args("KNOCKD", &v4)
        .into_iter()
        .chain(rule_args("KNOCKD", &v6))
        .map(|r| r[1..].to_vec())
        .collect();
    let specs: Vec<Vec<String>> = found.iter().map(|f| f.spec.clone()).collect();
    assert_eq!(specs, expected);

    for f in &found {
        fw.remove(f).unwrap();
    }
    assert_eq!(fw.list().unwrap(), Vec::new());
    fw.remove(&found[0]).unwrap();
    assert_eq!(
        ns.ipt(Family::V4, &["-S", "KNOCKD"]),
        "-N KNOCKD\n-A KNOCKD -s 192.0.2.50/32 -m comment --comment \"hand made\" -j ACCEPT\n"
    );
    assert_eq!(
        ns.ipt(Family::V6, &["-S", "KNOCKD"]),
        "-N KNOCKD\n-A KNOCKD -s 2001:db8::50/128 -j ACCEPT\n"
    );
}

/// What `apt remove` runs: every jump and the chain gone in both families, the other rules
/// untouched; a second run (already gone) is fine; a conditional jump that is not ours keeps
/// the chain referenced: an error naming `-X`, our jump still removed.
#[test]
fn remove_chain_deletes_jumps_and_chain_and_nothing_else() {
    if !can_run_netns() {
        return;
    }
    let ns = Ns::new();
    other_rules(&ns);
    let input = BOTH.map(|f| ns.ipt(f, &["-S", "INPUT"]));
    let mut fw = ns.fw();
    fw.ensure().unwrap();
    fw.open(&grant("a", "192.0.2.1", &["22"], now() + 60))
        .unwrap();
    fw.open(&grant("b", "2001:db8::1", &["22"], now() + 60))
        .unwrap();
    // A duplicated jump, as an admin's script might leave.
    ns.ipt(Family::V4, &["-A", "INPUT", "-j", "KNOCKD"]);
    fw.remove_chain().unwrap();
    for family in BOTH {
        assert_eq!(ns.ipt(family, &["-S", "INPUT"]), input[family as usize]);
        let all = ns.ipt(family, &["-S"]);
        assert!(!all.contains("KNOCKD"), "{all}");
    }
    fw.remove_chain().unwrap();

    fw.ensure().unwrap();
    ns.ipt(Family::V4, &["-A", "INPUT", "-i", "eth9", "-j", "KNOCKD"]);
    let e = fw.remove_chain().unwrap_err().to_string();
    assert!(e.contains("-X KNOCKD"), "{e}");
    let v4 = ns.ipt(Family::V4, &["-S", "INPUT"]);
    assert!(!v4.contains("-A INPUT -j KNOCKD"), "{v4}");
}

#[test]
fn flush_empties_the_chain_and_keeps_the_jump() {
    if !can_run_netns() {
        return;
    }
    let ns = Ns::new();
    other_rules(&ns);
    let mut fw = ns.fw();
    fw.ensure().unwrap();
    let input = BOTH.map(|f| ns.ipt(f, &["-S", "INPUT"]));
    fw.open(&grant("a", "192.0.2.1", &["22"], now() + 60))
        .unwrap();
    fw.open(&grant("b", "2001:db8::1", &["22", "53/udp"], now() + 60))
        .unwrap();
    ns.ipt(
        Family::V4,
        &["-A", "KNOCKD", "-s", "192.0.2.9", "-j", "ACCEPT"],
    );
    fw.flush().unwrap();
    for family in BOTH {
        assert_eq!(ns.ipt(family, &["-S", "KNOCKD"]), "-N KNOCKD\n");
        assert_eq!(ns.ipt(family, &["-S", "INPUT"]), input[family as usize]);
    }
    assert_eq!(fw.ensure().unwrap(), Repairs::default());
}

#[test]
fn missing_chain_lists_empty_and_open_says_why_it_failed() {
    if !can_run_netns() {
        return;
    }
    let ns = Ns::new();
    let mut fw = ns.fw();
    assert_eq!(fw.list().unwrap(), Vec::new());
    fw.flush().unwrap();
    let g = grant("d", "192.0.2.1", &["22"], now() + 60);
    fw.close(&g).unwrap();
    match fw.open(&g) {
        Err(FirewallError::Command {
            command,
            status,
            stderr,
        }) => {
            assert!(
                command.starts_with(&format!(
                    "ip netns exec {} iptables -w 10 -A KNOCKD -s 192.0.2.1/32",
                    ns.name
                )),
                "{command}"
            );
            assert_eq!(status, "exit status: 1");
            assert!(!stderr.is_empty() && stderr == stderr.trim(), "{stderr:?}");
        }
        other => panic!("expected a command error, got {other:?}"),
    }
    // Not created behind the daemon's back.
    for family in BOTH {
        assert!(!ns.ipt(family, &["-S"]).contains("KNOCKD"));
    }
}

#[test]
fn without_ip6tables_ipv4_works_and_only_ipv6_grants_fail() {
    if !can_run_netns() {
        return;
    }
    let ns = Ns::new();
    let mut fw = ns.fw().with_programs("iptables", "ip6tables-not-installed");
    assert_eq!(
        fw.ensure().unwrap(),
        Repairs {
            chain_created: true,
            jumps_fixed: 1
        }
    );
    assert!(fw.v6_problem().is_some());
    assert_eq!(fw.ensure().unwrap(), Repairs::default());
    let v4 = grant("d", "192.0.2.1", &["22"], now() + 60);
    fw.open(&v4).unwrap();
    let err = fw
        .open(&grant("d", "2001:db8::1", &["22"], now() + 60))
        .unwrap_err();
    assert!(err.to_string().contains("ip6tables-not-installed"), "{err}");
    assert_eq!(fw.list().unwrap().len(), 1);
    fw.flush().unwrap();
    assert_eq!(fw.list().unwrap(), Vec::new());
    // The real ip6tables was left alone.
    assert!(!ns.ipt(Family::V6, &["-S"]).contains("KNOCKD"));
    // Not in a namespace: the program itself cannot start.
    let mut host = Iptables::new("KNOCKD", 1).with_programs("iptables-nope", "ip6tables-nope");
    match host.list() {
        Err(FirewallError::Spawn { program, .. }) => assert_eq!(program, "iptables-nope"),
        other => panic!("expected a spawn error, got {other:?}"),
    }
}

const PORT: &str = "2222";

/// A gateway and a client namespace on a veth pair, the gateway's INPUT dropping everything
/// but replies and ICMPv6 (neighbour discovery), with the jump to KNOCKD first, and `nc`
/// listening on both families (killed on drop, before the namespaces go).
struct Lab {
    listeners: Vec<Child>,
    gw: Ns,
    client: Ns,
}

const GW4: &str = "10.210.1.1";
const CLIENT4: &str = "10.210.1.2";
const GW6: &str = "fd00:210::1";
const CLIENT6: &str = "fd00:210::2";

impl Lab {
    fn new() -> Lab {
        let gw = Ns::new();
        let client = Ns::new();
        sh(&[
            "ip",
            "link",
            "add",
            "name",
            "kfgw",
            "netns",
            &gw.name,
            "type",
            "veth",
            "peer",
            "name",
            "kfcl",
            "netns",
            &client.name,
        ]);
        for (ns, ifname, v4, v6) in [(&gw, "kfgw", GW4, GW6), (&client, "kfcl", CLIENT4, CLIENT6)] {
            ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", ifname]);
            ns.ip(&[
                "-6",
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                ifname,
                "nodad",
            ]);
            ns.ip(&["link", "set", ifname, "up"]);
        }
        let mut lab = Lab {
            listeners: Vec::new(),
            gw,
            client,
        };
        for family in ["-4", "-6"] {
            let child = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &lab.gw.name,
                    "nc",
                    family,
                    "-l",
                    "-k",
                    PORT,
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start nc");
            lab.listeners.push(child);
        }
        // Both listeners answer before the firewall goes up (else a refused connection
        // later would prove nothing).
        for addr in [GW4, GW6] {
            let start = Instant::now();
            while !lab.connects(addr) {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "nc on {addr} never answered"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        for family in BOTH {
            lab.gw.ipt(
                family,
                &[
                    "-A",
                    "INPUT",
                    "-m",
                    "conntrack",
                    "--ctstate",
                    "ESTABLISHED,RELATED",
                    "-j",
                    "ACCEPT",
                ],
            );
            lab.gw.ipt(family, &["-P", "INPUT", "DROP"]);
        }
        lab.gw.ipt(
            Family::V6,
            &["-A", "INPUT", "-p", "ipv6-icmp", "-j", "ACCEPT"],
        );
        lab
    }

    /// A TCP connection from the client to the gateway's port (2 s at most).
    fn connects(&self, addr: &str) -> bool {
        run(&[
            "timeout",
            "10",
            "ip",
            "netns",
            "exec",
            &self.client.name,
            "nc",
            "-z",
            "-w",
            "2",
            addr,
            PORT,
        ])
        .status
        .success()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.listeners {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn traffic_passes_only_while_the_grant_is_open() {
    if !can_run_netns() {
        return;
    }
    let lab = Lab::new();
    let mut fw = lab.gw.fw();
    fw.ensure().unwrap();
    for (gw, client) in [(GW4, CLIENT4), (GW6, CLIENT6)] {
        assert!(!lab.connects(gw), "{gw} reachable before any grant");
        // Other ports, another protocol: still closed.
        let other = grant("ssh", client, &["2223", "2222/udp"], now() + 600);
        fw.open(&other).unwrap();
        assert!(!lab.connects(gw), "{gw} reachable through {other:?}");
        fw.close(&other).unwrap();

        let door = grant("ssh", client, &["2222"], now() + 600);
        fw.open(&door).unwrap();
        assert!(lab.connects(gw), "{gw} not reachable with {door:?} open");
        fw.close(&door).unwrap();
        assert!(!lab.connects(gw), "{gw} reachable after close");
    }
}

#[test]
fn a_grant_already_expired_lets_nothing_through() {
    if !can_run_netns() {
        return;
    }
    let lab = Lab::new();
    let mut fw = lab.gw.fw();
    fw.ensure().unwrap();
    for (gw, client) in [(GW4, CLIENT4), (GW6, CLIENT6)] {
        let expired = grant("ssh", client, &["2222"], now() - 3600);
        fw.open(&expired).unwrap();
        assert!(fw.list().unwrap().iter().any(|f| f.src == expired.src));
        assert!(!lab.connects(gw), "{gw} reachable through an expired rule");
        // The same door with a future expiry does let it through.
        let live = Grant {
            until: now() + 600,
            ..expired
        };
        fw.open(&live).unwrap();
        assert!(lab.connects(gw), "{gw} not reachable with {live:?} open");
    }
}
