//! The firewall backends against the real iptables and the real nft, each test in network
//! namespaces of its own (`kgfw-<pid>-<n>`, deleted on drop, which also deletes their veths,
//! rules and tables). Test traffic stays between those namespaces, on addresses they alone
//! hold (10.210.1.0/24, fd00:210::/64). The iptables tests come first, the nftables ones
//! (`nft_*`) after the lab both use.

use std::net::IpAddr;
use std::process::{Child, Command, Stdio};

use knockgate::actions::firewall::iptables::Iptables;
use knockgate::actions::firewall::nft::Nft;
use knockgate::actions::firewall::rules::{datestop, rule_args, Family};
use knockgate::actions::firewall::{Firewall, FirewallError, Grant, PortRange, Ports, Repairs};
use knockgate::config::{NftChain, NftFamily};
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

    /// `nft ARGS` in the namespace; must succeed; returns stdout.
    fn nft(&self, args: &[&str]) -> String {
        let mut argv = vec!["ip", "netns", "exec", &self.name, "nft"];
        argv.extend_from_slice(args);
        sh(&argv)
    }

    /// `nft -f` of `ruleset` in the namespace.
    fn nft_f(&self, ruleset: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("nft -f");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), ruleset.as_bytes())
            .expect("write ruleset");
        assert!(child.wait().expect("nft -f").success(), "nft -f {ruleset}");
    }

    /// The nftables backend on `inet filter input` in the namespace.
    fn nft_fw(&self) -> Nft {
        Nft::new(&NftChain::default(), 1).in_netns(&self.name)
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

/// The gateway's base firewall in a [`Lab`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Base {
    /// iptables: INPUT policy DROP, replies and ICMPv6 accepted.
    Iptables,
    /// nftables: the owner's ruleset [`OWNER`] (the same, in `inet filter input`).
    Nftables,
}

const GW4: &str = "10.210.1.1";
const CLIENT4: &str = "10.210.1.2";
const GW6: &str = "fd00:210::1";
const CLIENT6: &str = "fd00:210::2";

impl Lab {
    fn new() -> Lab {
        Lab::with(Base::Iptables)
    }

    fn with(base: Base) -> Lab {
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
        if base == Base::Nftables {
            lab.gw.nft_f(OWNER);
            return lab;
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

// --- nftables ---------------------------------------------------------------------------

/// A Pi owner's `/etc/nftables.conf`: Debian's stock table and chain with policy drop, and a
/// few rules of their own (and a set, which knockgate must leave alone).
const OWNER: &str = "flush ruleset
table inet filter {
    set blocked { type ipv4_addr; elements = { 198.51.100.66 } }
    chain input {
        type filter hook input priority filter; policy drop;
        iif lo accept
        ct state established,related accept
        meta l4proto ipv6-icmp accept
        ip saddr @blocked drop
        tcp dport 8080 accept
    }
    chain output { type filter hook output priority filter; }
}
";

/// The elements of knockgate's set `set` as `nft list set` prints them, one per line
/// (`ADDR . tcp . 22 timeout ... comment "knockgate:DOOR:UNTIL"`).
fn nft_elements(ns: &Ns, set: &str) -> Vec<String> {
    let out = run(&[
        "ip", "netns", "exec", &ns.name, "nft", "-j", "list", "set", "inet", "filter", set,
    ]);
    if !out.status.success() {
        return Vec::new();
    }
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    doc["nftables"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|o| o.get("set"))
        .flat_map(|s| s["elem"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            let e = &e["elem"];
            let val: Vec<String> = e["val"]["concat"]
                .as_array()
                .expect("concat")
                .iter()
                .map(|v| match v {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Object(r) => {
                        format!("{}-{}", r["range"][0], r["range"][1])
                    }
                    other => other.to_string(),
                })
                .collect();
            format!(
                "{} {}",
                val.join(" . "),
                e["comment"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// The comments of `inet filter input`'s rules, in order ("" for none).
fn nft_chain_comments(ns: &Ns) -> Vec<String> {
    let doc: serde_json::Value =
        serde_json::from_str(&ns.nft(&["-j", "list", "chain", "inet", "filter", "input"]))
            .expect("JSON");
    doc["nftables"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|o| o.get("rule"))
        .map(|r| r["comment"].as_str().unwrap_or("").to_string())
        .collect()
}

/// `nft list ruleset`.
fn ruleset(ns: &Ns) -> String {
    ns.nft(&["list", "ruleset"])
}

#[test]
fn nft_ensure_adds_sets_and_rules_once_and_leaves_the_owners_alone() {
    if !can_run_netns() {
        return;
    }
    let ns = Ns::new();
    ns.nft_f(OWNER);
    let before = ruleset(&ns);
    let mut fw = ns.nft_fw();
    assert_eq!(
        fw.ensure().unwrap(),
        Repairs {
            chain_created: true,
            jumps_fixed: 1
        }
    );
    assert_eq!(fw.ensure().unwrap(), Repairs::default());
    let comments = nft_chain_comments(&ns);
    assert_eq!(comments[..2], ["knockgate", "knockgate"], "{comments:?}");
    assert!(comments[2..].iter().all(String::is_empty), "{comments:?}");
    let after = ruleset(&ns);
    assert!(after.contains("set knockgate_allow4 {"), "{after}");
    assert!(
        after.contains(
            "ip6 saddr . meta l4proto . th dport @knockgate_allow6 accept comment \"knockgate\""
        ),
        "{after}"
    );
    // The owner's rules and set untouched: removing ours gives exactly the owner's ruleset.
    // remove_chain: exactly the owner's ruleset again, twice fine.
    fw.remove_chain().unwrap();
    assert_eq!(ruleset(&ns), before);
    fw.remove_chain().unwrap();
    assert_eq!(ruleset(&ns), before);
    // Position 3: after the owner's first two rules.
    let mut third = Nft::new(&NftChain::default(), 3).in_netns(&ns.name);
    third.ensure().unwrap();
    let comments = nft_chain_comments(&ns);
    assert_eq!(
        comments[..4],
        ["", "", "knockgate", "knockgate"],
        "{comments:?}"
    );
    // Another position moves them; past the end puts them last.
    let mut last = Nft::new(&NftChain::default(), 50).in_netns(&ns.name);
    assert_eq!(
        last.ensure().unwrap(),
        Repairs {
            chain_created: false,
            jumps_fixed: 2
        }
    );
    let comments = nft_chain_comments(&ns);
    assert_eq!(
        comments[comments.len() - 2..],
        ["knockgate", "knockgate"],
        "{comments:?}"
    );
    assert_eq!(last.ensure().unwrap(), Repairs::default());
}

#[test]
fn nft_ensure_repairs_deleted_duplicated_rules_and_deleted_sets() {
    if !can_run_netns() {
        return;
    }
    let ns = Ns::new();
    ns.nft_f(OWNER);
    let mut fw = ns.nft_fw();
    fw.ensure().unwrap();
    let good = ruleset(&ns);
    let check = |fw: &mut Nft, chain_created: bool| {
        let r = fw.ensure().unwrap();
        assert_eq!(r.chain_created, chain_created);
        assert!(r.jumps_fixed > 0 || chain_created, "{r:?}");
        assert_eq!(fw.ensure().unwrap(), Repairs::default());
        assert_eq!(nft_chain_comments(&ns)[..2], ["knockgate", "knockgate"]);
        assert_eq!(
            nft_chain_comments(&ns)
                .iter()
                .filter(|c| *c == "knockgate")
                .count(),
            2
        );
    };
    // A rule of ours deleted.
    let handles = ns.nft(&["-a", "list", "chain", "inet", "filter", "input"]);
    let first = handles
        .lines()
        .find(|l| l.contains("comment \"knockgate\""))
        .and_then(|l| l.rsplit("handle ").next())
        .expect("a handle")
        .trim()
        .to_string();
    ns.nft(&[
        "delete", "rule", "inet", "filter", "input", "handle", &first,
    ]);
    check(&mut fw, false);
    // Duplicated at the end.
    ns.nft(&[
        "add",
        "rule",
        "inet",
        "filter",
        "input",
        "ip",
        "saddr",
        ".",
        "meta",
        "l4proto",
        ".",
        "th",
        "dport",
        "@knockgate_allow4",
        "accept",
        "comment",
        "knockgate",
    ]);
    check(&mut fw, false);
    // The whole ruleset reloaded by the owner (`flush ruleset` first): all recreated.
    ns.nft_f(OWNER);
    let r = fw.ensure().unwrap();
    assert!(r.chain_created && r.jumps_fixed > 0, "{r:?}");
    assert_eq!(ruleset(&ns), good);
}

#[test]
fn nft_missing_chain_says_which_and_a_family_holds_only_its_addresses() {
    if !can_run_netns() {
        return;
    }
    let ns = Ns::new();
    let mut fw = ns.nft_fw();
    let e = fw.ensure().unwrap_err().to_string();
    assert!(
        e.contains("inet filter input ([firewall] nft_chain) does not exist"),
        "{e}"
    );
    // Nothing created behind the owner's back.
    assert_eq!(ruleset(&ns), "");
    assert_eq!(fw.list().unwrap(), Vec::new());
    fw.flush().unwrap();
    fw.remove_chain().unwrap();
    // An `ip` chain: IPv4 sets only; an IPv6 grant says why it cannot be held.
    ns.nft_f("table ip fw {\n chain in { type filter hook input priority 0; policy drop; }\n}\n");
    let target = NftChain {
        family: NftFamily::Ip,
        table: "fw".into(),
        chain: "in".into(),
    };
    let mut v4only = Nft::new(&target, 1).in_netns(&ns.name);
    v4only.ensure().unwrap();
    let text = ruleset(&ns);
    assert!(
        text.contains("set knockgate_allow4") && !text.contains("knockgate_allow6"),
        "{text}"
    );
    v4only
        .open(&grant("d", "192.0.2.1", &["22"], now() + 60))
        .unwrap();
    let e = v4only
        .open(&grant("d", "2001:db8::1", &["22"], now() + 60))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ip fw in cannot hold an opening for 2001:db8::1"),
        "{e}"
    );
    assert_eq!(v4only.list().unwrap().len(), 1);
    // The program itself missing: in the namespace, `ip netns exec` says so (not taken for
    // a missing set); on the host, it cannot start.
    let mut none = ns.nft_fw().with_program("nft-not-installed");
    match none.list() {
        Err(FirewallError::Command { stderr, .. }) => {
            assert!(stderr.contains("nft-not-installed"), "{stderr}")
        }
        other => panic!("expected a command error, got {other:?}"),
    }
    let mut host = Nft::new(&NftChain::default(), 1).with_program("nft-not-installed");
    match host.ensure() {
        Err(FirewallError::Spawn { program, .. }) => assert_eq!(program, "nft-not-installed"),
        other => panic!("expected a spawn error, got {other:?}"),
    }
}

#[test]
fn nft_open_extend_share_and_close() {
    if !can_run_netns() {
        return;
    }
    let ns = Ns::new();
    ns.nft_f(OWNER);
    let mut fw = ns.nft_fw();
    fw.ensure().unwrap();
    let t = now();
    let ssh = grant(
        "openSSH",
        "192.0.2.7",
        &["22", "5060-5069/udp", "5065/udp"],
        t + 600,
    );
    for _ in 0..5 {
        fw.open(&ssh).unwrap();
    }
    let set4 = |ns: &Ns| {
        let mut e = nft_elements(ns, "knockgate_allow4");
        e.sort();
        e
    };
    assert_eq!(
        set4(&ns),
        [
            format!("192.0.2.7 . tcp . 22 knockgate:openSSH:{}", t + 600),
            format!("192.0.2.7 . udp . 5060-5069 knockgate:openSSH:{}", t + 600),
        ]
    );
    // Extended (the gate opens the new grant, then closes the old one): the new expiry stays.
    let longer = Grant {
        until: t + 900,
        ..ssh.clone()
    };
    fw.open(&longer).unwrap();
    fw.close(&ssh).unwrap();
    assert_eq!(
        set4(&ns),
        [
            format!("192.0.2.7 . tcp . 22 knockgate:openSSH:{}", t + 900),
            format!("192.0.2.7 . udp . 5060-5069 knockgate:openSSH:{}", t + 900),
        ]
    );
    // Another door for the same port: the longer opening holds the element; closing the
    // shorter door keeps it, closing the longer one removes it (the gate's check then puts
    // back what the other door still needs: is_open_for says it is missing).
    let short = grant("web", "192.0.2.7", &["22"], t + 100);
    fw.open(&short).unwrap();
    assert!(
        set4(&ns)[0].ends_with(&format!("openSSH:{}", t + 900)),
        "{:?}",
        set4(&ns)
    );
    let found = fw.list().unwrap();
    assert!(fw.is_open_for(&found, &short));
    fw.close(&short).unwrap();
    assert_eq!(set4(&ns).len(), 2);
    fw.open(&short).unwrap();
    fw.close(&longer).unwrap();
    assert!(set4(&ns).is_empty(), "{:?}", set4(&ns));
    let found = fw.list().unwrap();
    assert!(!fw.is_open_for(&found, &short));
    fw.open(&short).unwrap();
    assert_eq!(
        set4(&ns),
        [format!("192.0.2.7 . tcp . 22 knockgate:web:{}", t + 100)]
    );
    // IPv6 and all ports; list, then remove each; foreign elements stay.
    let all6 = Grant {
        door: "all".into(),
        src: "2001:db8::7".parse().unwrap(),
        ports: Ports::All,
        until: t + 60,
    };
    fw.open(&all6).unwrap();
    ns.nft(&[
        "add",
        "element",
        "inet",
        "filter",
        "knockgate_allow6",
        "{ 2001:db8::50 . tcp . 80 timeout 1h }",
    ]);
    assert_eq!(
        nft_elements(&ns, "knockgate_allow6"),
        [
            format!("2001:db8::7 . 0-255 . 0-65535 knockgate:all:{}", t + 60),
            "2001:db8::50 . tcp . 80 ".to_string()
        ]
    );
    let found = fw.list().unwrap();
    let summary: Vec<(&str, String, u64)> = found
        .iter()
        .map(|f| (f.door.as_str(), f.src.to_string(), f.until))
        .collect();
    assert_eq!(
        summary,
        [
            ("web", "192.0.2.7".into(), t + 100),
            ("all", "2001:db8::7".into(), t + 60)
        ]
    );
    for f in &found {
        fw.remove(f).unwrap();
    }
    assert_eq!(fw.list().unwrap(), Vec::new());
    assert_eq!(
        nft_elements(&ns, "knockgate_allow6"),
        ["2001:db8::50 . tcp . 80 "]
    );
    // Flush empties the sets, the rules stay.
    fw.open(&short).unwrap();
    fw.flush().unwrap();
    assert!(set4(&ns).is_empty() && nft_elements(&ns, "knockgate_allow6").is_empty());
    assert_eq!(fw.ensure().unwrap(), Repairs::default());
}

#[test]
fn nft_traffic_passes_only_while_the_element_is_there_and_the_kernel_ends_it() {
    if !can_run_netns() {
        return;
    }
    let lab = Lab::with(Base::Nftables);
    let mut fw = lab.gw.nft_fw();
    fw.ensure().unwrap();
    for (gw, client) in [(GW4, CLIENT4), (GW6, CLIENT6)] {
        assert!(!lab.connects(gw), "{gw} reachable before any grant");
        let other = grant("ssh", client, &["2223", "2222/udp"], now() + 600);
        fw.open(&other).unwrap();
        assert!(!lab.connects(gw), "{gw} reachable through {other:?}");
        fw.close(&other).unwrap();
        let door = grant("ssh", client, &["2222"], now() + 600);
        fw.open(&door).unwrap();
        assert!(lab.connects(gw), "{gw} not reachable with {door:?} open");
        fw.close(&door).unwrap();
        assert!(!lab.connects(gw), "{gw} reachable after close");
        // All ports, for 3 s: in, then out by the kernel alone (nobody calls close).
        let all = Grant {
            door: "all".into(),
            src: client.parse().unwrap(),
            ports: Ports::All,
            until: now() + 3,
        };
        fw.open(&all).unwrap();
        assert!(lab.connects(gw), "{gw} not reachable with all ports open");
        let start = Instant::now();
        while lab.connects(gw) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{gw}: the element never expired"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(
            fw.list().unwrap().is_empty(),
            "the kernel removed the element"
        );
    }
}
