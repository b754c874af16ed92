//! The iptables rule text, as pure functions: what knockgate writes to the chain
//! ([`rule_args`], [`comment`], [`datestop`], [`multiport_lists`]), what it reads back from a
//! listing ([`parse_rules`], [`parse_comment`]) and how it repairs INPUT's jump
//! ([`plan_jumps`]). [`super::iptables`] runs them; nothing here runs a process.

use std::net::IpAddr;

use super::{Found, Grant, Ports};
use crate::knock::Proto;

/// Ports one `-m multiport` match can hold (a range takes two).
pub const MULTIPORT_MAX: usize = 15;
/// Largest `--datestop` iptables accepts: 2038-01-19T03:14:07 (`i32::MAX` seconds).
pub const DATESTOP_MAX: u64 = i32::MAX as u64;
/// Smallest `--datestop` written: 1970-01-01T00:00:01. (`iptables -S` prints a datestop of 0
/// as a bare `-m time`, which would no longer match the rule for `-C`/`-D`.)
pub const DATESTOP_MIN: u64 = 1;

const COMMENT_PREFIX: &str = "knockgate:";
/// The comment match holds at most 255 bytes.
const COMMENT_MAX: usize = 255;

/// IPv4 (`iptables`) or IPv6 (`ip6tables`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The family whose tables hold rules for `ip` (an IPv4-mapped IPv6 address is IPv4).
    pub fn of(ip: IpAddr) -> Family {
        match ip.to_canonical() {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// Whether a character may appear in a door name inside a comment.
fn safe_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// The comment that tags a grant's rules: `knockgate:<door>:<until>`, with every character of
/// `door` outside `[A-Za-z0-9_.-]` replaced by `_` and the door cut so the comment fits the
/// comment match's 255 bytes.
pub fn comment(door: &str, until: u64) -> String {
    let tail = format!(":{until}");
    let room = COMMENT_MAX - COMMENT_PREFIX.len() - tail.len();
    let door: String = door
        .chars()
        .map(|c| if safe_char(c) { c } else { '_' })
        .take(room)
        .collect();
    format!("{COMMENT_PREFIX}{door}{tail}")
}

/// Reads a comment written by [`comment`]: `Some((door, until))`, or `None` if it is not ours.
pub fn parse_comment(text: &str) -> Option<(String, u64)> {
    let rest = text.strip_prefix(COMMENT_PREFIX)?;
    let (door, until) = rest.rsplit_once(':')?;
    if !door.chars().all(safe_char)
        || until.is_empty()
        || !until.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some((door.to_string(), until.parse().ok()?))
}

/// `until` (Unix seconds) as `-m time --datestop` reads it: `YYYY-MM-DDThh:mm:ss`, UTC (the time
/// match compares UTC unless given `--kerneltz`, which knockgate never gives), clamped to
/// [`DATESTOP_MIN`]..=[`DATESTOP_MAX`].
pub fn datestop(until: u64) -> String {
    let t = until.clamp(DATESTOP_MIN, DATESTOP_MAX) as i64;
    let utc = jiff::Timestamp::from_second(t)
        .expect("clamped to 1970..2038")
        .to_zoned(jiff::tz::TimeZone::UTC);
    utc.strftime("%Y-%m-%dT%H:%M:%S").to_string()
}

/// Port lists for `--dports`, each within [`MULTIPORT_MAX`] (a range `a:b` counts as 2), in
/// the order given.
pub fn multiport_lists(ranges: &[(u16, u16)]) -> Vec<String> {
    let mut lists = Vec::new();
    let mut items: Vec<String> = Vec::new();
    let mut used = 0;
    for &(first, last) in ranges {
        let (item, cost) = if first == last {
            (first.to_string(), 1)
        } else {
            (format!("{first}:{last}"), 2)
        };
        if used + cost > MULTIPORT_MAX {
            lists.push(items.join(","));
            items.clear();
            used = 0;
        }
        items.push(item);
        used += cost;
    }
    if !items.is_empty() {
        lists.push(items.join(","));
    }
    lists
}

/// The rules of a grant, each as the arguments after `-A`/`-C`/`-D` (starting with the chain):
/// `KNOCKD -s 192.0.2.7/32 -p tcp -m multiport --dports 22,5060:5069 -m comment --comment
/// knockgate:openSSH:1763726430 -m time --datestop 2025-11-21T12:00:30 -j ACCEPT`.
///
/// One rule per protocol (TCP first), more when the ports exceed one multiport match; ports are
/// sorted and duplicates dropped. [`Ports::All`] is one rule without `-p`. The source is the
/// host (`/32` or `/128`; an IPv4-mapped IPv6 address is written as IPv4). An empty
/// `Ports::Some` opens nothing: no rules.
pub fn rule_args(chain: &str, grant: &Grant) -> Vec<Vec<String>> {
    let src = grant.src.to_canonical();
    let host = match src {
        IpAddr::V4(a) => format!("{a}/32"),
        IpAddr::V6(a) => format!("{a}/128"),
    };
    let head = |rule: &mut Vec<String>| {
        rule.extend([chain.to_string(), "-s".into(), host.clone()]);
    };
    let tail = |rule: &mut Vec<String>| {
        rule.extend([
            "-m".into(),
            "comment".into(),
            "--comment".into(),
            comment(&grant.door, grant.until),
            "-m".into(),
            "time".into(),
            "--datestop".into(),
            datestop(grant.until),
            "-j".into(),
            "ACCEPT".into(),
        ]);
    };
    let mut rules = Vec::new();
    match &grant.ports {
        Ports::All => {
            let mut rule = Vec::new();
            head(&mut rule);
            tail(&mut rule);
            rules.push(rule);
        }
        Ports::Some(ranges) => {
            for proto in [Proto::Tcp, Proto::Udp] {
                let mut these: Vec<(u16, u16)> = ranges
                    .iter()
                    .filter(|r| r.proto == proto)
                    .map(|r| (r.first, r.last))
                    .collect();
                these.sort_unstable();
                these.dedup();
                for list in multiport_lists(&these) {
                    let mut rule = Vec::new();
                    head(&mut rule);
                    rule.extend([
                        "-p".into(),
                        proto.as_str().into(),
                        "-m".into(),
                        "multiport".into(),
                        "--dports".into(),
                        list,
                    ]);
                    tail(&mut rule);
                    rules.push(rule);
                }
            }
        }
    }
    rules
}

/// The value after `flag` in a rule's words, unless the flag is negated (`! -s ADDR`).
fn value_after<'a>(words: &'a [String], flag: &str) -> Option<&'a str> {
    let i = words.iter().position(|w| w == flag)?;
    if i > 0 && words[i - 1] == "!" {
        return None;
    }
    words.get(i + 1).map(String::as_str)
}

/// knockgate's rules in `iptables -S CHAIN` output: the `-A CHAIN` lines whose comment
/// [`parse_comment`] accepts and whose source is one host (`/32`, `/128`). Every other rule
/// (a foreign one, or a line that does not split) is left out.
pub fn parse_rules(chain: &str, listing: &str) -> Vec<Found> {
    let mut found = Vec::new();
    for line in listing.lines() {
        let Ok(words) = shell_words::split(line) else {
            continue;
        };
        if words.len() < 2 || words[0] != "-A" || words[1] != chain {
            continue;
        }
        let spec = words[2..].to_vec();
        let Some((door, until)) = value_after(&spec, "--comment").and_then(parse_comment) else {
            continue;
        };
        let Some((addr, len)) = value_after(&spec, "-s").and_then(|s| s.split_once('/')) else {
            continue;
        };
        let Ok(src) = addr.parse::<IpAddr>() else {
            continue;
        };
        let host = match src {
            IpAddr::V4(_) => "32",
            IpAddr::V6(_) => "128",
        };
        if len != host {
            continue;
        }
        found.push(Found {
            door,
            src,
            until,
            spec,
        });
    }
    found
}

/// From `iptables -S INPUT`: for each unconditional `-j CHAIN` jump, the number of other rules
/// before it; and the number of other rules.
pub(crate) fn jumps(listing: &str, chain: &str) -> (Vec<usize>, usize) {
    let mut others = 0usize;
    let mut jumps = Vec::new();
    for line in listing.lines() {
        let words = shell_words::split(line).unwrap_or_default();
        if words.len() < 2 || words[0] != "-A" || words[1] != "INPUT" {
            continue;
        }
        if words[2..] == ["-j", chain] {
            jumps.push(others);
        } else {
            others += 1;
        }
    }
    (jumps, others)
}

/// What [`Iptables::ensure`] must do to INPUT's jumps, from `iptables -S INPUT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JumpPlan {
    /// How many `-D INPUT -j CHAIN` to run (each deletes the first jump).
    pub delete: usize,
    /// Then `-I INPUT <n> -j CHAIN`, if any.
    pub insert_at: Option<usize>,
}

/// Plans the jump repair: the jump belongs after `position - 1` other rules (after all of them
/// when INPUT has fewer). One correct jump: nothing to do. If the last jump is in the right
/// place, the ones before it are deleted (deletion by spec removes the first match). Otherwise
/// every jump is deleted and one inserted.
pub(crate) fn plan_jumps(listing: &str, chain: &str, position: u32) -> JumpPlan {
    let (jumps, others) = jumps(listing, chain);
    let target = (position.max(1) as usize).min(others + 1);
    match jumps.last() {
        Some(&last) if last == target - 1 => JumpPlan {
            delete: jumps.len() - 1,
            insert_at: None,
        },
        _ => JumpPlan {
            delete: jumps.len(),
            insert_at: Some(target),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::firewall::PortRange;

    fn ports(list: &[&str]) -> Ports {
        Ports::Some(list.iter().map(|p| PortRange::parse(p).unwrap()).collect())
    }

    fn grant(door: &str, src: &str, ports: Ports, until: u64) -> Grant {
        Grant {
            door: door.into(),
            src: src.parse().unwrap(),
            ports,
            until,
        }
    }

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn rule_for_tcp_ports_and_a_range() {
        let g = grant(
            "openSSH",
            "192.0.2.7",
            ports(&["5060-5069/tcp", "22"]),
            1_763_726_430,
        );
        assert_eq!(
            rule_args("KNOCKD", &g),
            vec![words(
                "KNOCKD -s 192.0.2.7/32 -p tcp -m multiport --dports 22,5060:5069 \
                 -m comment --comment knockgate:openSSH:1763726430 \
                 -m time --datestop 2025-11-21T12:00:30 -j ACCEPT"
            )]
        );
    }

    #[test]
    fn one_rule_per_protocol_tcp_first() {
        let g = grant(
            "sip",
            "2001:db8::7",
            ports(&["5060/udp", "443", "443/tcp", "5061/udp"]),
            1_000_000_000,
        );
        let tail = "-m comment --comment knockgate:sip:1000000000 \
                    -m time --datestop 2001-09-09T01:46:40 -j ACCEPT";
        assert_eq!(
            rule_args("KG", &g),
            vec![
                words(&format!(
                    "KG -s 2001:db8::7/128 -p tcp -m multiport --dports 443 {tail}"
                )),
                words(&format!(
                    "KG -s 2001:db8::7/128 -p udp -m multiport --dports 5060,5061 {tail}"
                )),
            ]
        );
    }

    #[test]
    fn all_ports_is_one_rule_without_protocol() {
        let g = grant("everything", "::ffff:192.0.2.9", Ports::All, 1_763_726_430);
        assert_eq!(
            rule_args("KNOCKD", &g),
            vec![words(
                "KNOCKD -s 192.0.2.9/32 -m comment --comment knockgate:everything:1763726430 \
                 -m time --datestop 2025-11-21T12:00:30 -j ACCEPT"
            )]
        );
        assert_eq!(Family::of(g.src), Family::V4);
        assert_eq!(
            rule_args("KNOCKD", &grant("x", "192.0.2.9", Ports::Some(vec![]), 5)),
            Vec::<Vec<String>>::new()
        );
    }

    #[test]
    fn multiport_splits_at_fifteen_slots_ranges_count_two() {
        let singles: Vec<(u16, u16)> = (1..=16).map(|p| (p, p)).collect();
        assert_eq!(
            multiport_lists(&singles),
            vec!["1,2,3,4,5,6,7,8,9,10,11,12,13,14,15", "16"]
        );
        // Seven ranges and a port fill 15 slots; an eighth range does not fit.
        let mut ranges: Vec<(u16, u16)> = (0..7).map(|i| (2 * i + 1, 2 * i + 2)).collect();
        ranges.push((15, 15));
        assert_eq!(
            multiport_lists(&ranges),
            vec!["1:2,3:4,5:6,7:8,9:10,11:12,13:14,15"]
        );
        ranges.pop();
        ranges.push((15, 16));
        assert_eq!(
            multiport_lists(&ranges),
            vec!["1:2,3:4,5:6,7:8,9:10,11:12,13:14", "15:16"]
        );
        // 14 singles then a range: the range starts the next rule.
        let mut r: Vec<(u16, u16)> = (1..=14).map(|p| (p, p)).collect();
        r.push((100, 200));
        assert_eq!(
            multiport_lists(&r),
            vec!["1,2,3,4,5,6,7,8,9,10,11,12,13,14", "100:200"]
        );
        assert!(multiport_lists(&[]).is_empty());

        // Through rule_args: 20 TCP ports and one UDP port are three rules.
        let list: Vec<String> = (1000..1020).map(|p| p.to_string()).collect();
        let mut spec: Vec<&str> = list.iter().map(String::as_str).collect();
        spec.push("53/udp");
        let rules = rule_args("KNOCKD", &grant("many", "192.0.2.1", ports(&spec), 9));
        let dports: Vec<(&str, &str)> = rules
            .iter()
            .map(|r| (r[4].as_str(), r[8].as_str()))
            .collect();
        assert_eq!(
            dports,
            vec![
                (
                    "tcp",
                    "1000,1001,1002,1003,1004,1005,1006,1007,1008,1009,1010,1011,1012,1013,1014"
                ),
                ("tcp", "1015,1016,1017,1018,1019"),
                ("udp", "53"),
            ]
        );
    }

    #[test]
    fn datestop_is_utc_and_clamped() {
        assert_eq!(datestop(1_763_726_430), "2025-11-21T12:00:30");
        assert_eq!(datestop(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(datestop(1_709_164_799), "2024-02-28T23:59:59");
        assert_eq!(datestop(1_709_251_200), "2024-03-01T00:00:00");
        assert_eq!(datestop(2_147_483_647), "2038-01-19T03:14:07");
        assert_eq!(datestop(2_147_483_648), "2038-01-19T03:14:07");
        assert_eq!(datestop(u64::MAX), "2038-01-19T03:14:07");
        assert_eq!(datestop(0), "1970-01-01T00:00:01");
        assert_eq!(datestop(1), "1970-01-01T00:00:01");
    }

    #[test]
    fn comment_round_trip_and_escaping() {
        assert_eq!(
            comment("openSSH", 1_763_726_430),
            "knockgate:openSSH:1763726430"
        );
        assert_eq!(
            parse_comment("knockgate:openSSH:1763726430"),
            Some(("openSSH".into(), 1_763_726_430))
        );
        // Spaces, colons, quotes, non-ASCII: one `_` per character.
        let c = comment("open SSH:\"ü\"", 7);
        assert_eq!(c, "knockgate:open_SSH____:7");
        assert_eq!(parse_comment(&c), Some(("open_SSH____".into(), 7)));
        assert_eq!(comment("a.b-c_D9", 0), "knockgate:a.b-c_D9:0");
        assert_eq!(parse_comment("knockgate::5"), Some((String::new(), 5)));
        // Long names are cut so the comment fits 255 bytes, whatever the expiry's length.
        for until in [0, 1_763_726_430, u64::MAX] {
            let c = comment(&"é".repeat(300), until);
            assert_eq!(c.len(), 255, "{c}");
            let (door, back) = parse_comment(&c).unwrap();
            assert_eq!(back, until);
            assert!(door.chars().all(|ch| ch == '_'));
        }
        assert_eq!(comment(&"d".repeat(10), 1).len(), 22);
        // Not ours.
        for other in [
            "added by hand",
            "knockgate:open SSH:1",
            "knockgate:door:",
            "knockgate:door:12x",
            "knockgate:door",
            "knockgate:door:99999999999999999999999",
            "Knockgate:door:1",
            "",
        ] {
            assert_eq!(parse_comment(other), None, "{other}");
        }
    }

    /// `iptables -S KNOCKD` as iptables 1.8.9 (nf_tables) printed it on Debian 12.
    const LISTING_V4: &str = r#"-N KNOCKD
-A KNOCKD -s 192.0.2.7/32 -p tcp -m multiport --dports 22,5060:5069 -m comment --comment "knockgate:openSSH:1763726430" -m time --datestop 2025-11-21T12:00:30 -j ACCEPT
-A KNOCKD -s 192.0.2.8/32 -p udp -m multiport --dports 53 -m comment --comment "knockgate:dns:1763726431" -m time --datestop 2025-11-21T12:00:31 -j ACCEPT
-A KNOCKD -s 192.0.2.9/32 -m comment --comment "knockgate:open SSH:1763726430" -j ACCEPT
-A KNOCKD -s 192.0.2.10/32 -p tcp -m tcp --dport 80 -m comment --comment "added by hand" -j ACCEPT
-A KNOCKD ! -s 192.0.2.11/32 -m comment --comment "knockgate:neg:1" -j ACCEPT
-A KNOCKD -s 198.51.100.0/24 -m comment --comment "knockgate:net:1" -j ACCEPT
-A KNOCKD -s 192.0.2.12/32 -m time --datestop 2038-01-19T03:14:07 -m comment --comment "knockgate:all:2147483647" -j ACCEPT
"#;

    /// `ip6tables -S KNOCKD`, same machine.
    const LISTING_V6: &str = r#"-N KNOCKD
-A KNOCKD -s 2001:db8::7/128 -p tcp -m multiport --dports 22 -m comment --comment "knockgate:openSSH:1763726430" -m time --datestop 2025-11-21T12:00:30 -j ACCEPT
-A KNOCKD -s 2001:db8::8/128 -m comment --comment "knockgate:all ports:1763726430" -m time --datestop 2025-11-21T12:00:30 -j ACCEPT
"#;

    #[test]
    fn parses_real_listings() {
        let found = parse_rules("KNOCKD", LISTING_V4);
        let summary: Vec<(&str, String, u64)> = found
            .iter()
            .map(|f| (f.door.as_str(), f.src.to_string(), f.until))
            .collect();
        // Foreign comments (with spaces too), a negated source and a network are left out.
        assert_eq!(
            summary,
            vec![
                ("openSSH", "192.0.2.7".into(), 1_763_726_430),
                ("dns", "192.0.2.8".into(), 1_763_726_431),
                ("all", "192.0.2.12".into(), 2_147_483_647),
            ]
        );
        // The spec is what rule_args wrote (quotes removed), so -C/-D find the rule.
        let g = grant(
            "openSSH",
            "192.0.2.7",
            ports(&["22", "5060-5069"]),
            1_763_726_430,
        );
        assert_eq!(found[0].spec, rule_args("KNOCKD", &g)[0][1..].to_vec());
        let g = grant("dns", "192.0.2.8", ports(&["53/udp"]), 1_763_726_431);
        assert_eq!(found[1].spec, rule_args("KNOCKD", &g)[0][1..].to_vec());

        let found = parse_rules("KNOCKD", LISTING_V6);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].door, "openSSH");
        assert_eq!(found[0].src, "2001:db8::7".parse::<IpAddr>().unwrap());
        let g = grant("openSSH", "2001:db8::7", ports(&["22"]), 1_763_726_430);
        assert_eq!(found[0].spec, rule_args("KNOCKD", &g)[0][1..].to_vec());

        // Another chain's name, an empty or broken listing: nothing.
        assert!(parse_rules("OTHER", LISTING_V4).is_empty());
        assert!(parse_rules("KNOCKD", "").is_empty());
        assert!(parse_rules("KNOCKD", "-A KNOCKD -m comment --comment \"unterminated").is_empty());
    }

    /// `iptables -S INPUT` with a conditional jump (not ours) and two of ours.
    const INPUT: &str = "-P INPUT ACCEPT
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -j KNOCKD
-A INPUT -i lo -j ACCEPT
-A INPUT -i eth0 -j KNOCKD
-A INPUT -j KNOCKD
";

    #[test]
    fn jump_plans() {
        let plan = |listing, position| plan_jumps(listing, "KNOCKD", position);
        let none = JumpPlan {
            delete: 0,
            insert_at: None,
        };
        // Three other rules; jumps after 1 and after 3 of them.
        assert_eq!(
            plan(INPUT, 1),
            JumpPlan {
                delete: 2,
                insert_at: Some(1)
            }
        );
        assert_eq!(
            plan(INPUT, 2),
            JumpPlan {
                delete: 2,
                insert_at: Some(2)
            }
        );
        // The last jump is in place: delete the one before it (deletion takes the first).
        assert_eq!(
            plan(INPUT, 4),
            JumpPlan {
                delete: 1,
                insert_at: None
            }
        );
        assert_eq!(plan(INPUT, 99), plan(INPUT, 4));
        assert_eq!(
            plan("-P INPUT DROP\n", 3),
            JumpPlan {
                delete: 0,
                insert_at: Some(1)
            }
        );
        assert_eq!(plan("-P INPUT DROP\n-A INPUT -j KNOCKD\n", 1), none);
        assert_eq!(plan("-P INPUT DROP\n-A INPUT -j KNOCKD\n", 0), none);
        assert_eq!(
            plan(
                "-A INPUT -j KNOCKD\n-A INPUT -j KNOCKD\n-A INPUT -j DROP\n",
                1
            ),
            JumpPlan {
                delete: 1,
                insert_at: None
            }
        );
        assert_eq!(
            plan("-A INPUT -j DROP\n-A INPUT -j KNOCKD\n", 1),
            JumpPlan {
                delete: 1,
                insert_at: Some(1)
            }
        );
        // A jump to another chain is another rule.
        assert_eq!(
            plan("-A INPUT -j KNOCKD2\n", 1),
            JumpPlan {
                delete: 0,
                insert_at: Some(1)
            }
        );
    }
}
