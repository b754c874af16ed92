//! Firewall doors on nftables: knockgate's sets, and one rule per set in the owner's chain.
//!
//! An `accept` is final only for the base chain it is in: every base chain on the input hook
//! sees the packet, and a drop in any of them wins. On a host whose firewall is an nftables
//! ruleset (`inet filter input`, policy drop), a knocker is let in only by an accept in that
//! chain, and a rule can only name sets of its own table. So the nftables backend keeps, in
//! the table of the configured chain (`[firewall] nft_chain`, default `inet filter input`):
//! - the sets `knockgate_allow4` and `knockgate_allow6` (the ones the family holds), `type
//!   ipv4_addr . inet_proto . inet_service; flags interval,timeout`: one element per knocker,
//!   protocol and port range, with the door's remaining time as its timeout, so the kernel
//!   removes it at its time with or without the daemon, and the comment
//!   `knockgate:<door>:<until>` its iptables rules would carry. "All ports" is protocol
//!   `0-255`, port `0-65535`;
//! - one rule per set, at `jump_position` among the chain's rules (default first), commented
//!   `knockgate`: `ip saddr . meta l4proto . th dport @knockgate_allow4 accept`.
//!
//! A set holds a key once, so two doors opening the same port for the same knocker share an
//! element: it keeps the later expiry and that door's comment ([`Nft::open`]); closing a door
//! deletes only elements carrying its own comment, and the gate's check after the change
//! restores the other door's element ([`Firewall::is_open_for`]). Every delete is preceded,
//! in the same transaction, by an add of the exact element: deleting a key that is no longer
//! there would delete an overlapping range of another door instead.
//!
//! Commands go to `nft -j -f -` as JSON built from the `nftables` crate's schema types, one
//! transaction per operation; sets are read back with `nft -j list set` into the same types.
//! The owner's chain is read as plain JSON: its rules may use expressions the crate does not
//! model, and only knockgate's rules (by comment) and the rules' handles are needed from it.

use std::borrow::Cow;
use std::collections::HashSet;
use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use nftables::expr::{Elem, Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField};
use nftables::schema::{
    Element, FlushObject, NfCmd, NfListObject, NfObject, Nftables, Rule, Set, SetFlag, SetType,
    SetTypeValue,
};
use nftables::stmt::{Match, Operator, Statement};
use nftables::types::NfFamily;

use super::rules::{comment, parse_comment, Family};
use super::{Firewall, FirewallError, Found, Grant, Ports, Repairs};
use crate::config::{NftChain, NftFamily};
use crate::knock::Proto;
use crate::sys::busy::Steps;

/// The IPv4 set.
pub const SET4: &str = "knockgate_allow4";
/// The IPv6 set.
pub const SET6: &str = "knockgate_allow6";
/// The comment on knockgate's rules in the owner's chain.
pub const RULE_COMMENT: &str = "knockgate";

/// One key of a set, after the address: an IP protocol (None: any) and a port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub proto: Option<u8>,
    pub first: u16,
    pub last: u16,
}

impl Key {
    /// `tcp . 22`, `udp . 5060-5069`, `0-255 . 0-65535` (any): as `nft list set` prints it.
    pub fn text(&self) -> String {
        let proto = match self.proto {
            Some(6) => "tcp".to_string(),
            Some(17) => "udp".to_string(),
            Some(n) => n.to_string(),
            None => "0-255".to_string(),
        };
        if self.first == self.last {
            format!("{proto} . {}", self.first)
        } else {
            format!("{proto} . {}-{}", self.first, self.last)
        }
    }

    fn parse(text: &str) -> Option<Key> {
        let (proto, ports) = text.split_once(" . ")?;
        let proto = match proto {
            "tcp" => Some(6),
            "udp" => Some(17),
            "0-255" => None,
            n => Some(n.parse().ok()?),
        };
        let (first, last) = match ports.split_once('-') {
            Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
            None => {
                let p = ports.parse().ok()?;
                (p, p)
            }
        };
        Some(Key { proto, first, last })
    }
}

fn proto_number(p: Proto) -> u8 {
    match p {
        Proto::Tcp => 6,
        Proto::Udp => 17,
    }
}

/// The keys of a grant's ports: per protocol, the ranges sorted, with overlapping and adjacent
/// ones merged (the set would hold them as separate elements); all ports is one key.
pub fn keys(ports: &Ports) -> Vec<Key> {
    let ranges = match ports {
        Ports::All => {
            return vec![Key {
                proto: None,
                first: 0,
                last: u16::MAX,
            }]
        }
        Ports::Some(r) => r,
    };
    let mut keys: Vec<Key> = Vec::new();
    for proto in [Proto::Tcp, Proto::Udp] {
        let mut these: Vec<(u16, u16)> = ranges
            .iter()
            .filter(|r| r.proto == proto)
            .map(|r| (r.first, r.last))
            .collect();
        these.sort_unstable();
        let mut merged: Vec<(u16, u16)> = Vec::new();
        for (first, last) in these {
            match merged.last_mut() {
                Some(prev) if u32::from(first) <= u32::from(prev.1) + 1 => {
                    prev.1 = prev.1.max(last)
                }
                _ => merged.push((first, last)),
            }
        }
        keys.extend(merged.into_iter().map(|(first, last)| Key {
            proto: Some(proto_number(proto)),
            first,
            last,
        }));
    }
    keys
}

/// The set that holds `src`'s elements.
pub fn set_of(src: IpAddr) -> &'static str {
    match Family::of(src) {
        Family::V4 => SET4,
        Family::V6 => SET6,
    }
}

/// Seconds from `now` (Unix seconds) until `until`, at least 1 (nft has no zero timeout).
pub fn timeout(until: u64, now: u64) -> u32 {
    u32::try_from(until.saturating_sub(now).max(1)).unwrap_or(u32::MAX)
}

fn family(f: NftFamily) -> NfFamily {
    match f {
        NftFamily::Inet => NfFamily::INet,
        NftFamily::Ip => NfFamily::IP,
        NftFamily::Ip6 => NfFamily::IP6,
    }
}

/// The sets a chain of this family holds.
fn sets_of(f: NftFamily) -> &'static [&'static str] {
    match f {
        NftFamily::Inet => &[SET4, SET6],
        NftFamily::Ip => &[SET4],
        NftFamily::Ip6 => &[SET6],
    }
}

fn number_or_range(first: u32, last: u32) -> Expression<'static> {
    if first == last {
        Expression::Number(first)
    } else {
        Expression::Range(Box::new(nftables::expr::Range {
            range: [Expression::Number(first), Expression::Number(last)],
        }))
    }
}

/// The element's value: `ADDR . PROTO . PORTS`.
fn value(src: IpAddr, key: &Key) -> Expression<'static> {
    let proto = match key.proto {
        Some(6) => Expression::String("tcp".into()),
        Some(17) => Expression::String("udp".into()),
        Some(n) => Expression::Number(n.into()),
        None => number_or_range(0, 255),
    };
    Expression::Named(NamedExpression::Concat(vec![
        Expression::String(src.to_canonical().to_string().into()),
        proto,
        number_or_range(key.first.into(), key.last.into()),
    ]))
}

/// What nft JSON gives back for a set's element: its address, key and comment.
fn read_value(val: &Expression<'_>) -> Option<(IpAddr, Key)> {
    let Expression::Named(NamedExpression::Concat(parts)) = val else {
        return None;
    };
    let [addr, proto, ports] = &parts[..] else {
        return None;
    };
    let Expression::String(addr) = addr else {
        return None;
    };
    let range = |e: &Expression<'_>| -> Option<(u32, u32)> {
        match e {
            Expression::Number(n) => Some((*n, *n)),
            Expression::Range(r) => match &r.range {
                [Expression::Number(a), Expression::Number(b)] => Some((*a, *b)),
                _ => None,
            },
            _ => None,
        }
    };
    let proto = match proto {
        Expression::String(s) if s == "tcp" => Some(6),
        Expression::String(s) if s == "udp" => Some(17),
        other => match range(other)? {
            (0, 255) => None,
            (a, b) if a == b => Some(u8::try_from(a).ok()?),
            _ => return None,
        },
    };
    let (first, last) = range(ports)?;
    Some((
        addr.parse().ok()?,
        Key {
            proto,
            first: u16::try_from(first).ok()?,
            last: u16::try_from(last).ok()?,
        },
    ))
}

/// knockgate's elements in an `nft -j list set` document: those whose comment
/// [`parse_comment`] accepts. `spec` is `[set, key text]`, enough to delete the element.
pub fn parse_set(doc: &Nftables<'_>) -> Vec<Found> {
    let mut found = Vec::new();
    for object in doc.objects.iter() {
        let NfObject::ListObject(NfListObject::Set(set)) = object else {
            continue;
        };
        for e in set.elem.iter().flat_map(|e| e.iter()) {
            let Expression::Named(NamedExpression::Elem(elem)) = e else {
                continue;
            };
            let Some((door, until)) = elem.comment.as_deref().and_then(parse_comment) else {
                continue;
            };
            let Some((src, key)) = read_value(&elem.val) else {
                continue;
            };
            found.push(Found {
                door,
                src,
                until,
                spec: vec![set.name.to_string(), key.text()],
            });
        }
    }
    found
}

/// A chain's rules in order: each rule's handle and, for knockgate's (by comment), the set it
/// names ("" if none of ours).
pub type ChainRules = Vec<(u64, Option<String>)>;

/// The rules of an `nft -j list chain` output (read as plain JSON), as [`ChainRules`].
pub fn parse_chain(json: &str) -> Result<ChainRules, String> {
    let doc: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("nft printed no JSON: {e}"))?;
    let objects = doc
        .get("nftables")
        .and_then(|v| v.as_array())
        .ok_or("nft printed no `nftables` array")?;
    let mut rules = Vec::new();
    for o in objects {
        let Some(rule) = o.get("rule") else {
            continue;
        };
        let Some(handle) = rule.get("handle").and_then(|h| h.as_u64()) else {
            continue;
        };
        let ours = rule.get("comment").and_then(|c| c.as_str()) == Some(RULE_COMMENT);
        let set = ours.then(|| {
            let text = rule.get("expr").map(|e| e.to_string()).unwrap_or_default();
            [SET4, SET6]
                .into_iter()
                .find(|s| text.contains(&format!("\"@{s}\"")))
                .unwrap_or("")
                .to_string()
        });
        rules.push((handle, set));
    }
    Ok(rules)
}

/// Where knockgate's rules are wrong in a chain listed by [`parse_chain`]: the handles of its
/// rules to delete (all of them, when any is missing, duplicated, misplaced or not the
/// expected one) and whether to insert them anew; `want` are the sets, `position` the 1-based
/// place of the first rule among the chain's other rules.
pub fn plan_rules(
    chain: &[(u64, Option<String>)],
    want: &[&str],
    position: u32,
) -> (Vec<u64>, bool) {
    let ours: Vec<u64> = chain
        .iter()
        .filter(|(_, s)| s.is_some())
        .map(|(h, _)| *h)
        .collect();
    let others = chain.iter().filter(|(_, s)| s.is_none()).count();
    let start = usize::try_from(position.max(1) - 1)
        .unwrap_or(usize::MAX)
        .min(others);
    let at: Vec<Option<&str>> = chain
        .iter()
        .skip(start)
        .take(want.len())
        .map(|(_, s)| s.as_deref())
        .collect();
    let right = ours.len() == want.len()
        && at.len() == want.len()
        && at.iter().zip(want).all(|(got, w)| *got == Some(*w));
    if right {
        (Vec::new(), false)
    } else {
        (ours, true)
    }
}

/// Runs `nft` (or, in tests, inside a network namespace) on one chain of the owner's.
#[derive(Debug, Clone)]
pub struct Nft {
    target: NftChain,
    position: u32,
    prefix: Vec<String>,
    program: String,
    steps: Steps,
}

impl Nft {
    /// The backend for `target`, its rules at 1-based `position` among the chain's rules.
    pub fn new(target: &NftChain, position: u32) -> Nft {
        Nft {
            target: target.clone(),
            position: position.max(1),
            prefix: Vec::new(),
            program: "nft".into(),
            steps: Steps::here(),
        }
    }

    /// Runs every command inside network namespace `ns` (`ip netns exec NS ...`).
    pub fn in_netns(mut self, ns: &str) -> Nft {
        self.prefix = vec!["ip".into(), "netns".into(), "exec".into(), ns.into()];
        self
    }

    /// Another program than `nft` (a test's missing one).
    pub fn with_program(mut self, program: &str) -> Nft {
        self.program = program.to_string();
        self
    }

    /// Runs every command through `steps` (the daemon's, which empties the capture rings
    /// while nft runs).
    pub fn with_steps(mut self, steps: Steps) -> Nft {
        self.steps = steps;
        self
    }

    pub fn target(&self) -> &NftChain {
        &self.target
    }

    fn argv(&self, args: &[&str]) -> Vec<String> {
        let mut argv = self.prefix.clone();
        argv.push(self.program.clone());
        argv.extend(args.iter().map(|a| a.to_string()));
        argv
    }

    /// Runs nft with `args` (and `input` on its standard input); its argv and output.
    fn exec(
        &self,
        args: &[&str],
        input: Option<String>,
    ) -> Result<(Vec<String>, Output), FirewallError> {
        let argv = self.argv(args);
        let out = self
            .steps
            .run(|| {
                let mut child = Command::new(&argv[0])
                    .args(&argv[1..])
                    .stdin(if input.is_some() {
                        Stdio::piped()
                    } else {
                        Stdio::null()
                    })
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()?;
                if let (Some(text), Some(mut stdin)) = (&input, child.stdin.take()) {
                    stdin.write_all(text.as_bytes())?;
                }
                child.wait_with_output()
            })
            .map_err(|source| FirewallError::Spawn {
                program: argv[0].clone(),
                source,
            })?;
        Ok((argv, out))
    }

    fn run(&self, args: &[&str], input: Option<String>) -> Result<String, FirewallError> {
        let (argv, out) = self.exec(args, input)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(failed(&argv, &out))
        }
    }

    /// Applies one transaction; nothing if `commands` is empty.
    fn apply(&self, commands: Vec<NfObject<'static>>) -> Result<(), FirewallError> {
        if commands.is_empty() {
            return Ok(());
        }
        let doc = Nftables {
            objects: Cow::Owned(commands),
        };
        let json = serde_json::to_string(&doc).expect("an nft document serializes");
        self.run(&["-j", "-f", "-"], Some(json)).map(|_| ())
    }

    /// `nft -j list set`: None when the set (or its table) does not exist.
    fn list_set(&self, name: &str) -> Result<Option<Vec<Found>>, FirewallError> {
        let t = &self.target;
        let (argv, out) = self.exec(
            &["-j", "list", "set", t.family.as_str(), &t.table, name],
            None,
        )?;
        if !out.status.success() {
            return if missing(&out) {
                Ok(None)
            } else {
                Err(failed(&argv, &out))
            };
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let doc: Nftables<'_> =
            serde_json::from_str(&text).map_err(|e| FirewallError::Command {
                command: shell_words::join(&argv),
                status: out.status.to_string(),
                stderr: format!("its JSON could not be read: {e}"),
            })?;
        Ok(Some(parse_set(&doc)))
    }

    /// The chain's rules ([`parse_chain`]); None when the chain (or its table) does not exist.
    fn list_chain(&self) -> Result<Option<ChainRules>, FirewallError> {
        let t = &self.target;
        let (argv, out) = self.exec(
            &["-j", "list", "chain", t.family.as_str(), &t.table, &t.chain],
            None,
        )?;
        if !out.status.success() {
            return if missing(&out) {
                Ok(None)
            } else {
                Err(failed(&argv, &out))
            };
        }
        parse_chain(&String::from_utf8_lossy(&out.stdout))
            .map(Some)
            .map_err(|stderr| FirewallError::Command {
                command: shell_words::join(&argv),
                status: out.status.to_string(),
                stderr,
            })
    }

    fn set_object(&self, name: &str) -> Set<'static> {
        let t = &self.target;
        let addr = if name == SET4 {
            SetType::Ipv4Addr
        } else {
            SetType::Ipv6Addr
        };
        Set {
            family: family(t.family),
            table: t.table.clone().into(),
            name: name.to_string().into(),
            handle: None,
            set_type: SetTypeValue::Concatenated(
                vec![addr, SetType::InetProto, SetType::InetService].into(),
            ),
            policy: None,
            flags: Some(HashSet::from([SetFlag::Interval, SetFlag::Timeout])),
            elem: None,
            timeout: None,
            gc_interval: None,
            size: None,
            comment: Some("knockgate: knockers let in, until their door's time".into()),
        }
    }

    fn rule_object(&self, set: &str, handle: Option<u32>) -> Rule<'static> {
        let t = &self.target;
        let ip = if set == SET4 { "ip" } else { "ip6" };
        let field = |protocol: &'static str, field: &'static str| {
            Expression::Named(NamedExpression::Payload(Payload::PayloadField(
                PayloadField {
                    protocol: protocol.into(),
                    field: field.into(),
                },
            )))
        };
        Rule {
            family: family(t.family),
            table: t.table.clone().into(),
            chain: t.chain.clone().into(),
            expr: vec![
                Statement::Match(Match {
                    left: Expression::Named(NamedExpression::Concat(vec![
                        field(ip, "saddr"),
                        Expression::Named(NamedExpression::Meta(Meta {
                            key: MetaKey::L4proto,
                        })),
                        field("th", "dport"),
                    ])),
                    right: Expression::String(format!("@{set}").into()),
                    op: Operator::IN,
                }),
                Statement::Accept(None),
            ]
            .into(),
            handle,
            index: None,
            comment: Some(RULE_COMMENT.into()),
        }
    }

    /// A rule by its handle, for a delete.
    fn rule_handle(&self, handle: u64) -> Rule<'static> {
        let t = &self.target;
        Rule {
            family: family(t.family),
            table: t.table.clone().into(),
            chain: t.chain.clone().into(),
            expr: Vec::new().into(),
            handle: u32::try_from(handle).ok(),
            index: None,
            comment: None,
        }
    }

    fn element(
        &self,
        set: &str,
        src: IpAddr,
        key: &Key,
        timeout: u32,
        comment: Option<String>,
    ) -> NfListObject<'static> {
        let t = &self.target;
        let val = value(src, key);
        let elem = if comment.is_some() || timeout > 0 {
            Expression::Named(NamedExpression::Elem(Elem {
                val: Box::new(val),
                timeout: Some(timeout),
                expires: None,
                comment: comment.map(Cow::Owned),
                counter: None,
            }))
        } else {
            val
        };
        NfListObject::Element(Element {
            family: family(t.family),
            table: t.table.clone().into(),
            name: set.to_string().into(),
            elem: vec![elem].into(),
        })
    }

    /// Delete `key` exactly: an add of the element first (a short timeout if it was gone), so
    /// the delete cannot fall on an overlapping range of another door.
    fn delete_exactly(&self, set: &str, src: IpAddr, key: &Key, out: &mut Vec<NfObject<'static>>) {
        out.push(NfObject::CmdObject(NfCmd::Add(
            self.element(set, src, key, 1, None),
        )));
        out.push(NfObject::CmdObject(NfCmd::Delete(
            self.element(set, src, key, 0, None),
        )));
    }

    /// Whether the chain's family can hold `src`'s elements.
    fn holds(&self, src: IpAddr) -> Result<(), FirewallError> {
        let set = set_of(src);
        if sets_of(self.target.family).contains(&set) {
            Ok(())
        } else {
            Err(FirewallError::Command {
                command: format!("nft add element {} {}", self.target.family.as_str(), set),
                status: "not run".into(),
                stderr: format!(
                    "{} cannot hold an opening for {src}: its family is {}",
                    self.target,
                    self.target.family.as_str()
                ),
            })
        }
    }

    /// Whether any of knockgate's sets or rules is in the table (read only).
    pub fn has_anything(&self) -> bool {
        let rules = self
            .list_chain()
            .ok()
            .flatten()
            .is_some_and(|c| c.iter().any(|(_, set)| set.is_some()));
        rules
            || sets_of(self.target.family)
                .iter()
                .any(|s| matches!(self.list_set(s), Ok(Some(_))))
    }

    fn remove_all(&self) -> Result<(), FirewallError> {
        let t = &self.target;
        let mut commands = Vec::new();
        if let Some(chain) = self.list_chain()? {
            for (handle, set) in &chain {
                if set.is_some() {
                    commands.push(NfObject::CmdObject(NfCmd::Delete(NfListObject::Rule(
                        self.rule_handle(*handle),
                    ))));
                }
            }
        }
        for name in sets_of(t.family) {
            if self.list_set(name)?.is_some() {
                commands.push(NfObject::CmdObject(NfCmd::Delete(NfListObject::Set(
                    Box::new(self.set_object(name)),
                ))));
            }
        }
        self.apply(commands)
    }
}

/// nft's answer for a table, chain or set that does not exist (`Error: No such file or
/// directory`, then the command with the missing name marked); not a program that failed to
/// start under `ip netns exec`.
fn missing(out: &Output) -> bool {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .next()
        .is_some_and(|l| l.trim() == "Error: No such file or directory")
}

fn failed(argv: &[String], out: &Output) -> FirewallError {
    FirewallError::Command {
        command: shell_words::join(argv),
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Firewall for Nft {
    fn name(&self) -> &'static str {
        "nftables"
    }

    /// The same knocker and door (its name as the comment made it), expiry, and a key of the
    /// grant's.
    fn is_rule_of(&self, found: &Found, grant: &Grant) -> bool {
        found.src == grant.src.to_canonical()
            && parse_comment(&comment(&grant.door, grant.until))
                == Some((found.door.clone(), found.until))
            && found_key(found).is_some_and(|k| keys(&grant.ports).contains(&k))
    }

    /// Every key of the grant has an element for its knocker lasting at least as long (its
    /// own, or a shared one of another door's).
    fn is_open_for(&self, found: &[Found], grant: &Grant) -> bool {
        let src = grant.src.to_canonical();
        keys(&grant.ports).iter().all(|k| {
            found
                .iter()
                .any(|f| f.src == src && f.until >= grant.until && found_key(f) == Some(*k))
        })
    }

    fn notifying_table(&mut self) -> Option<String> {
        Some(self.target.table.clone())
    }

    /// The chain must exist (it is the owner's); the sets are created if absent, and the
    /// rules put right if any is missing, duplicated or out of place.
    fn ensure(&mut self) -> Result<Repairs, FirewallError> {
        let t = self.target.clone();
        let Some(chain) = self.list_chain()? else {
            return Err(FirewallError::Command {
                command: format!("nft list chain {t}"),
                status: "exit status: 1".into(),
                stderr: format!(
                    "the chain {t} ([firewall] nft_chain) does not exist: load your nftables ruleset, or name its input chain"
                ),
            });
        };
        let mut repairs = Repairs::default();
        let want = sets_of(t.family);
        let mut commands = Vec::new();
        for name in want {
            if self.list_set(name)?.is_none() {
                repairs.chain_created = true;
                commands.push(NfObject::CmdObject(NfCmd::Add(NfListObject::Set(
                    Box::new(self.set_object(name)),
                ))));
            }
        }
        let (delete, insert) = plan_rules(&chain, want, self.position);
        for handle in &delete {
            commands.push(NfObject::CmdObject(NfCmd::Delete(NfListObject::Rule(
                self.rule_handle(*handle),
            ))));
        }
        if insert {
            repairs.jumps_fixed = delete.len().max(1);
            // The other rules, in order: ours go before the one at the position, or last.
            let others: Vec<u64> = chain
                .iter()
                .filter(|(_, s)| s.is_none())
                .map(|(h, _)| *h)
                .collect();
            let index = usize::try_from(self.position - 1).unwrap_or(usize::MAX);
            match others.get(index) {
                Some(&before) => {
                    // Each inserted before the same rule: in the wanted order.
                    for name in want {
                        commands.push(NfObject::CmdObject(NfCmd::Insert(NfListObject::Rule(
                            self.rule_object(name, u32::try_from(before).ok()),
                        ))));
                    }
                }
                None => {
                    for name in want {
                        commands.push(NfObject::CmdObject(NfCmd::Add(NfListObject::Rule(
                            self.rule_object(name, None),
                        ))));
                    }
                }
            }
        }
        self.apply(commands)?;
        Ok(repairs)
    }

    /// Adds each key's element unless the knocker has it already for longer; an element of
    /// a shorter opening (another door's, or this one's before an extension) is replaced in
    /// the same transaction, so the knocker is never shut out in between.
    fn open(&mut self, grant: &Grant) -> Result<(), FirewallError> {
        self.holds(grant.src)?;
        let src = grant.src.to_canonical();
        let set = set_of(src);
        let present = self.list_set(set)?.unwrap_or_default();
        let timeout = timeout(grant.until, now_unix());
        let tag = comment(&grant.door, grant.until);
        let mut commands = Vec::new();
        for key in keys(&grant.ports) {
            let same: Vec<&Found> = present
                .iter()
                .filter(|f| f.src == src && found_key(f) == Some(key))
                .collect();
            if same.iter().any(|f| f.until >= grant.until) {
                continue;
            }
            let add = || {
                NfObject::CmdObject(NfCmd::Add(self.element(
                    set,
                    src,
                    &key,
                    timeout,
                    Some(tag.clone()),
                )))
            };
            if !same.is_empty() {
                commands.push(add());
                commands.push(NfObject::CmdObject(NfCmd::Delete(
                    self.element(set, src, &key, 0, None),
                )));
            }
            commands.push(add());
        }
        self.apply(commands)
    }

    /// Deletes the grant's own elements (by comment); a key held for another door stays.
    fn close(&mut self, grant: &Grant) -> Result<(), FirewallError> {
        if self.holds(grant.src).is_err() {
            return Ok(());
        }
        let src = grant.src.to_canonical();
        let set = set_of(src);
        let present = self.list_set(set)?.unwrap_or_default();
        let mut commands = Vec::new();
        for f in present.iter().filter(|f| self.is_rule_of(f, grant)) {
            if let Some(key) = found_key(f) {
                self.delete_exactly(set, src, &key, &mut commands);
            }
        }
        self.apply(commands)
    }

    fn list(&mut self) -> Result<Vec<Found>, FirewallError> {
        let mut found = Vec::new();
        for name in sets_of(self.target.family) {
            found.extend(self.list_set(name)?.unwrap_or_default());
        }
        Ok(found)
    }

    fn remove(&mut self, found: &Found) -> Result<(), FirewallError> {
        let (Some(set), Some(key)) = (found.spec.first(), found_key(found)) else {
            return Ok(());
        };
        let mut commands = Vec::new();
        self.delete_exactly(set, found.src, &key, &mut commands);
        self.apply(commands)
    }

    /// Empties the sets (the rules stay). A missing set is already empty.
    fn flush(&mut self) -> Result<(), FirewallError> {
        let mut commands = Vec::new();
        for name in sets_of(self.target.family) {
            if self.list_set(name)?.is_some() {
                commands.push(NfObject::CmdObject(NfCmd::Flush(FlushObject::Set(
                    Box::new(self.set_object(name)),
                ))));
            }
        }
        self.apply(commands)
    }

    /// Deletes knockgate's rules from the owner's chain and its sets from the table; the rest
    /// of the owner's ruleset stays exactly as it was. Nothing to do if the table is gone.
    fn remove_chain(&mut self) -> Result<(), FirewallError> {
        self.remove_all()
    }
}

/// The key of an element found by [`parse_set`].
fn found_key(found: &Found) -> Option<Key> {
    found.spec.get(1).and_then(|k| Key::parse(k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knock::PortRange;

    fn range(proto: Proto, first: u16, last: u16) -> PortRange {
        PortRange { proto, first, last }
    }

    #[test]
    fn keys_merge_overlaps_per_protocol_and_all_is_one_key() {
        let ports = Ports::Some(vec![
            range(Proto::Udp, 5060, 5069),
            range(Proto::Tcp, 22, 22),
            range(Proto::Tcp, 20, 30),
            range(Proto::Tcp, 31, 31),
            range(Proto::Tcp, 443, 443),
            range(Proto::Udp, 5060, 5060),
        ]);
        let texts: Vec<String> = keys(&ports).iter().map(Key::text).collect();
        assert_eq!(texts, ["tcp . 20-31", "tcp . 443", "udp . 5060-5069"]);
        assert_eq!(
            keys(&Ports::All).iter().map(Key::text).collect::<Vec<_>>(),
            ["0-255 . 0-65535"]
        );
        for k in keys(&ports).iter().chain(&keys(&Ports::All)) {
            assert_eq!(Key::parse(&k.text()), Some(*k));
        }
    }

    #[test]
    fn timeouts_are_whole_seconds_and_never_zero() {
        assert_eq!(timeout(1_000_030, 1_000_000), 30);
        assert_eq!(timeout(1_000_000, 1_000_000), 1);
        assert_eq!(timeout(5, 1_000_000), 1);
        assert_eq!(timeout(u64::MAX, 0), u32::MAX);
    }

    /// A set as nft 1.0.6 prints it with `-j` (copied from a real listing).
    const LISTING: &str = r#"{"nftables":[{"metainfo":{"version":"1.0.6","release_name":"Lester Gooch #5","json_schema_version":1}},{"set":{"family":"inet","name":"knockgate_allow4","table":"filter","type":["ipv4_addr","inet_proto","inet_service"],"handle":2,"flags":["interval","timeout"],"elem":[{"elem":{"val":{"concat":["192.0.2.7","tcp",22]},"timeout":30,"expires":29,"comment":"knockgate:openSSH:1763726430"}},{"elem":{"val":{"concat":["192.0.2.7","udp",{"range":[5060,5069]}]},"timeout":3600,"expires":3599,"comment":"knockgate:sip:1763729999"}},{"elem":{"val":{"concat":["192.0.2.9",{"range":[0,255]},{"range":[0,65535]}]},"timeout":30,"expires":29,"comment":"knockgate:all:5"}},{"elem":{"val":{"concat":["192.0.2.10","tcp",80]},"timeout":30,"expires":29,"comment":"the owner's"}}]}}]}"#;

    #[test]
    fn a_set_listing_reads_back_as_knockgates_elements_only() {
        let doc: Nftables<'_> = serde_json::from_str(LISTING).unwrap();
        let found = parse_set(&doc);
        let short: Vec<(String, String, u64, String)> = found
            .iter()
            .map(|f| {
                (
                    f.door.clone(),
                    f.src.to_string(),
                    f.until,
                    f.spec[1].clone(),
                )
            })
            .collect();
        assert_eq!(
            short,
            [
                (
                    "openSSH".into(),
                    "192.0.2.7".into(),
                    1763726430,
                    "tcp . 22".into()
                ),
                (
                    "sip".into(),
                    "192.0.2.7".into(),
                    1763729999,
                    "udp . 5060-5069".into()
                ),
                (
                    "all".into(),
                    "192.0.2.9".into(),
                    5,
                    "0-255 . 0-65535".into()
                ),
            ]
        );
        assert!(found.iter().all(|f| f.spec[0] == SET4));
    }

    #[test]
    fn elements_serialize_as_nft_reads_them() {
        let fw = Nft::new(&NftChain::default(), 1);
        let key = keys(&Ports::Some(vec![range(Proto::Udp, 5060, 5069)]))[0];
        let e = fw.element(
            SET4,
            "::ffff:192.0.2.7".parse().unwrap(),
            &key,
            30,
            Some("knockgate:sip:9".into()),
        );
        let json = serde_json::to_value(NfObject::CmdObject(NfCmd::Add(e))).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"add": {"element": {"family": "inet", "table": "filter", "name": "knockgate_allow4",
                "elem": [{"elem": {"val": {"concat": ["192.0.2.7", "udp", {"range": [5060, 5069]}]}, "timeout": 30, "comment": "knockgate:sip:9",
                    // (nft 1.0.6 takes the nulls as absent; the backend tests apply these.)
                    "expires": null, "counter": null}}]}}})
        );
    }

    #[test]
    fn the_rules_are_put_right_only_when_wrong() {
        let set = |s: &str| Some(s.to_string());
        let want = [SET4, SET6];
        // At the top, in order: nothing to do.
        let good = [(5, set(SET4)), (6, set(SET6)), (1, None), (2, None)];
        assert_eq!(plan_rules(&good, &want, 1), (vec![], false));
        // Position 2: after the owner's first rule.
        let second = [(1, None), (5, set(SET4)), (6, set(SET6)), (2, None)];
        assert_eq!(plan_rules(&second, &want, 2), (vec![], false));
        assert_eq!(plan_rules(&second, &want, 1), (vec![5, 6], true));
        // A position past the end: last.
        let last = [(1, None), (5, set(SET4)), (6, set(SET6))];
        assert_eq!(plan_rules(&last, &want, 9), (vec![], false));
        // Missing, duplicated, out of order.
        assert_eq!(plan_rules(&[(1, None)], &want, 1), (vec![], true));
        let dup = [(5, set(SET4)), (6, set(SET6)), (7, set(SET6)), (1, None)];
        assert_eq!(plan_rules(&dup, &want, 1), (vec![5, 6, 7], true));
        let swapped = [(6, set(SET6)), (5, set(SET4)), (1, None)];
        assert_eq!(plan_rules(&swapped, &want, 1), (vec![6, 5], true));
        // A rule commented knockgate that names no set of ours is not right either.
        let odd = [(5, set("")), (6, set(SET6))];
        assert_eq!(plan_rules(&odd, &want, 1), (vec![5, 6], true));
    }

    #[test]
    fn a_chain_listing_gives_handles_and_our_rules() {
        let json = r#"{"nftables":[{"metainfo":{"version":"1.0.6"}},{"chain":{"family":"inet","table":"filter","name":"input","handle":1}},{"rule":{"family":"inet","table":"filter","chain":"input","handle":4,"comment":"knockgate","expr":[{"match":{"op":"==","left":{"concat":[{"payload":{"protocol":"ip","field":"saddr"}},{"meta":{"key":"l4proto"}},{"payload":{"protocol":"th","field":"dport"}}]},"right":"@knockgate_allow4"}},{"accept":null}]}},{"rule":{"family":"inet","table":"filter","chain":"input","handle":5,"expr":[{"xt":{"type":"match","name":"conntrack"}},{"accept":null}]}}]}"#;
        assert_eq!(
            parse_chain(json).unwrap(),
            [(4, Some(SET4.to_string())), (5, None)]
        );
        assert!(parse_chain("not json").is_err());
    }
}
