//! The iptables/ip6tables backend: knockgate's chain in the filter table of both families,
//! driven by running `iptables -w` and `ip6tables -w` from an argv (no shell).
//!
//! Rule text is built and read back by the pure functions of [`super::rules`]; [`Iptables`]
//! only applies them.
//!
//! Invariants (see the parent module): the chain is created only if absent; INPUT holds exactly
//! one unconditional `-j CHAIN` jump at the configured position and no other INPUT rule is ever
//! touched (repairs delete jumps by their spec `-D INPUT -j CHAIN`, never by number); `open`
//! checks (`-C`) before it appends (`-A`), `close` and `remove` check before they delete (`-D`);
//! every rule carries `-m comment --comment knockgate:<door>:<until>` and
//! `-m time --datestop <until, UTC>`.
//!
//! IPv6 is best effort where IPv4 must not suffer for it: on a host whose ip6tables does not work
//! (kernel without IPv6, no ip6tables binary), [`Firewall::ensure`], [`Firewall::list`] and
//! [`Firewall::flush`] do their IPv4 work, succeed, and log the IPv6 failure once (`warn`) until
//! IPv6 works again (`info`). Only an operation on an IPv6 source (`open`, `close`, `remove` of an
//! IPv6 grant) reports the IPv6 failure as an error.
//!
//! Every operation runs its commands one after the other and waits for them (3-4 ms each on a
//! 2-core x86 VM with the nf_tables backend; expect several times that on a Raspberry Pi):
//! `ensure` runs 2 per family when nothing needs repair, `open`/`close` 1-2 per rule, `list`
//! and `flush` 1 per family (2 when the chain is missing). Each command waits at most
//! [`LOCK_WAIT_SECS`] for the xtables lock (legacy backend only) rather than forever.
//!
//! The chain is knockgate's own: `flush` empties it of every rule, foreign ones included, while
//! `list` reports only rules whose comment is ours, so the daemon never removes the others one
//! by one. Only an unconditional `-j CHAIN` in INPUT counts as the jump; a conditional one
//! (`-i eth0 -j CHAIN`) is another rule and is left alone.

use std::process::{Command, Output, Stdio};

use tracing::{info, warn};

use crate::sys::busy::Steps;

use super::rules::{comment, jumps, parse_comment, parse_rules, plan_jumps, rule_args, Family};
use super::{Firewall, FirewallError, Found, Grant, Repairs};

/// How long a command waits for the xtables lock (`-w SECONDS`; the legacy backend takes
/// the lock, the nf_tables backend does not).
pub const LOCK_WAIT_SECS: u32 = 10;

/// Runs `iptables -w` and `ip6tables -w` (or, in tests, inside a network namespace).
#[derive(Debug, Clone)]
pub struct Iptables {
    chain: String,
    position: u32,
    prefix: Vec<String>,
    v4: String,
    v6: String,
    /// The IPv6 failure last logged, until IPv6 works again (so it is logged once).
    v6_problem: Option<String>,
    /// How a command is waited for (in the daemon, with the capture rings emptied meanwhile).
    steps: Steps,
}

impl Iptables {
    /// The backend for `chain` in the filter table, its INPUT jump at 1-based `position` (0 is
    /// taken as 1; a position past INPUT's end puts the jump last).
    pub fn new(chain: &str, position: u32) -> Iptables {
        Iptables {
            chain: chain.to_string(),
            position: position.max(1),
            prefix: Vec::new(),
            v4: "iptables".into(),
            v6: "ip6tables".into(),
            v6_problem: None,
            steps: Steps::here(),
        }
    }

    /// Runs every command through `steps` (the daemon's, which empties the capture rings
    /// while iptables runs).
    pub fn with_steps(mut self, steps: Steps) -> Iptables {
        self.steps = steps;
        self
    }

    /// Runs every command inside network namespace `ns` (`ip netns exec NS ...`).
    pub fn in_netns(mut self, ns: &str) -> Iptables {
        self.prefix = vec!["ip".into(), "netns".into(), "exec".into(), ns.into()];
        self
    }

    /// Other programs for IPv4 and IPv6 (default `iptables`, `ip6tables`), such as
    /// `iptables-legacy` and `ip6tables-legacy`.
    pub fn with_programs(mut self, v4: &str, v6: &str) -> Iptables {
        self.v4 = v4.to_string();
        self.v6 = v6.to_string();
        self
    }

    /// Why IPv6 rules cannot be managed (ip6tables missing or failing), if they cannot.
    pub fn v6_problem(&self) -> Option<&str> {
        self.v6_problem.as_deref()
    }

    pub fn chain(&self) -> &str {
        &self.chain
    }

    fn argv(&self, family: Family, args: &[&str]) -> Vec<String> {
        let program = match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        };
        let mut argv = self.prefix.clone();
        argv.push(program.clone());
        argv.push("-w".into());
        argv.push(LOCK_WAIT_SECS.to_string());
        argv.extend(args.iter().map(|a| a.to_string()));
        argv
    }

    /// Runs a command and returns its argv and output, whatever its exit status.
    fn exec(&self, family: Family, args: &[&str]) -> Result<(Vec<String>, Output), FirewallError> {
        let argv = self.argv(family, args);
        let out = self
            .steps
            .run(|| {
                Command::new(&argv[0])
                    .args(&argv[1..])
                    .stdin(Stdio::null())
                    .output()
            })
            .map_err(|source| FirewallError::Spawn {
                program: argv[0].clone(),
                source,
            })?;
        Ok((argv, out))
    }

    /// Runs a command that must succeed; returns its standard output.
    fn run(&self, family: Family, args: &[&str]) -> Result<String, FirewallError> {
        let (argv, out) = self.exec(family, args)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(failed(&argv, &out))
        }
    }

    /// `-C`: whether the rule exists (exit 0), is absent (exit 1, which includes a missing
    /// chain), or the check itself failed (any other status).
    fn exists(&self, family: Family, rule: &[&str]) -> Result<bool, FirewallError> {
        let mut args = vec!["-C"];
        args.extend_from_slice(rule);
        let (argv, out) = self.exec(family, &args)?;
        match out.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(failed(&argv, &out)),
        }
    }

    /// Whether the chain is certainly absent: `-S` of the whole filter table works and has no
    /// `-N CHAIN` line. Used when `-S CHAIN` or `-F CHAIN` fails, whose messages differ between
    /// backends.
    fn chain_missing(&self, family: Family) -> bool {
        let Ok(all) = self.run(family, &["-S"]) else {
            return false;
        };
        let declared = ["-N", self.chain.as_str()];
        !all.lines()
            .any(|l| l.split_whitespace().eq(declared.iter().copied()))
    }

    fn ensure_family(&self, family: Family) -> Result<Repairs, FirewallError> {
        let chain = self.chain.as_str();
        let mut repairs = Repairs::default();
        if self.run(family, &["-S", chain]).is_err() {
            self.run(family, &["-N", chain])?;
            repairs.chain_created = true;
        }
        let input = self.run(family, &["-S", "INPUT"])?;
        let plan = plan_jumps(&input, chain, self.position);
        for _ in 0..plan.delete {
            self.run(family, &["-D", "INPUT", "-j", chain])?;
            repairs.jumps_fixed += 1;
        }
        if let Some(at) = plan.insert_at {
            self.run(family, &["-I", "INPUT", &at.to_string(), "-j", chain])?;
            repairs.jumps_fixed += 1;
        }
        Ok(repairs)
    }

    fn list_family(&self, family: Family) -> Result<Vec<Found>, FirewallError> {
        match self.run(family, &["-S", &self.chain]) {
            Ok(listing) => Ok(parse_rules(&self.chain, &listing)),
            Err(_) if self.chain_missing(family) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    fn flush_family(&self, family: Family) -> Result<(), FirewallError> {
        match self.run(family, &["-F", &self.chain]) {
            Ok(_) => Ok(()),
            Err(_) if self.chain_missing(family) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes `rule` (after the chain) if it exists.
    fn delete(&self, family: Family, rule: &[&str]) -> Result<(), FirewallError> {
        if self.exists(family, rule)? {
            let mut args = vec!["-D"];
            args.extend_from_slice(rule);
            self.run(family, &args)?;
        }
        Ok(())
    }

    /// Removes the chain and every unconditional `INPUT -j CHAIN` jump to it, in one family:
    /// what `knockgate remove-chain` (and so `apt remove`) does. Already gone is done. A rule
    /// elsewhere that still jumps to the chain (not ours) makes `-X` fail, named in the error.
    fn remove_family(&self, family: Family) -> Result<(), FirewallError> {
        let chain = self.chain.as_str();
        let input = self.run(family, &["-S", "INPUT"])?;
        for _ in jumps(&input, chain).0 {
            self.run(family, &["-D", "INPUT", "-j", chain])?;
        }
        if self.chain_missing(family) {
            return Ok(());
        }
        self.run(family, &["-F", chain])?;
        self.run(family, &["-X", chain])?;
        Ok(())
    }

    /// Removes the chain and its INPUT jump in IPv4 and IPv6 (every door closed). IPv6 is
    /// skipped when `ip6tables` cannot be run or its table cannot be read at all (no IPv6 in
    /// the kernel); any other failure is returned.
    /// Whether the chain exists in either family (`-S CHAIN`, which changes nothing, not even
    /// with iptables-nft on a host without its tables).
    pub fn has_chain(&self) -> bool {
        [Family::V4, Family::V6]
            .into_iter()
            .any(|f| self.run(f, &["-S", &self.chain]).is_ok())
    }

    pub fn remove_chain(&self) -> Result<(), FirewallError> {
        self.remove_family(Family::V4)?;
        if self.run(Family::V6, &["-S", "INPUT"]).is_err() {
            return Ok(());
        }
        self.remove_family(Family::V6)
    }

    /// An IPv6 step of a both-families operation failed: logged once, not returned.
    fn v6_failed(&mut self, what: &str, e: &FirewallError) {
        if self.v6_problem.is_none() {
            warn!(error = %e, chain = %self.chain, "IPv6 firewall unusable ({what}), IPv4 only until it works: {e}");
        }
        self.v6_problem = Some(e.to_string());
    }

    fn v6_worked(&mut self) {
        if self.v6_problem.take().is_some() {
            info!(chain = %self.chain, "IPv6 firewall works again");
        }
    }
}

fn failed(argv: &[String], out: &Output) -> FirewallError {
    FirewallError::Command {
        command: shell_words::join(argv),
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    }
}

impl Firewall for Iptables {
    /// The chain keeps the door and expiry in a comment, with the door's name sanitized:
    /// compare what the comment made of this grant.
    fn is_rule_of(&self, found: &Found, grant: &Grant) -> bool {
        found.src == grant.src
            && parse_comment(&comment(&grant.door, grant.until))
                == Some((found.door.clone(), found.until))
    }

    fn name(&self) -> &'static str {
        "iptables"
    }
    /// `filter` when `iptables -V` says it is the nf_tables variant (Debian's and Raspberry Pi
    /// OS's default); iptables-legacy changes are invisible to nf_tables notifications.
    fn notifying_table(&mut self) -> Option<String> {
        let version = self.run(Family::V4, &["-V"]).ok()?;
        version.contains("nf_tables").then(|| "filter".to_string())
    }

    fn ensure(&mut self) -> Result<Repairs, FirewallError> {
        let mut repairs = self.ensure_family(Family::V4)?;
        match self.ensure_family(Family::V6) {
            Ok(r6) => {
                self.v6_worked();
                repairs.chain_created |= r6.chain_created;
                repairs.jumps_fixed += r6.jumps_fixed;
            }
            Err(e) => self.v6_failed("ensure", &e),
        }
        Ok(repairs)
    }

    /// Appends each missing rule of the grant. On an error the rules before it stay: `close`
    /// removes whichever exist.
    fn open(&mut self, grant: &Grant) -> Result<(), FirewallError> {
        let family = Family::of(grant.src);
        for rule in rule_args(&self.chain, grant) {
            let rule: Vec<&str> = rule.iter().map(String::as_str).collect();
            if !self.exists(family, &rule)? {
                let mut args = vec!["-A"];
                args.extend_from_slice(&rule);
                self.run(family, &args)?;
            }
        }
        Ok(())
    }

    /// Deletes each rule of the grant that exists, going on past a failure; returns the first.
    fn close(&mut self, grant: &Grant) -> Result<(), FirewallError> {
        let family = Family::of(grant.src);
        let mut first_error = None;
        for rule in rule_args(&self.chain, grant) {
            let rule: Vec<&str> = rule.iter().map(String::as_str).collect();
            if let Err(e) = self.delete(family, &rule) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Our rules in both families (a missing chain lists as empty; IPv6 failures are logged
    /// and leave IPv6 out).
    fn list(&mut self) -> Result<Vec<Found>, FirewallError> {
        let mut found = self.list_family(Family::V4)?;
        match self.list_family(Family::V6) {
            Ok(v6) => {
                self.v6_worked();
                found.extend(v6);
            }
            Err(e) => self.v6_failed("list", &e),
        }
        Ok(found)
    }

    fn remove(&mut self, found: &Found) -> Result<(), FirewallError> {
        let mut rule = vec![self.chain.as_str()];
        rule.extend(found.spec.iter().map(String::as_str));
        self.delete(Family::of(found.src), &rule)
    }

    /// `-F CHAIN` in both families (INPUT and its jump stay). A missing chain is already empty.
    fn flush(&mut self) -> Result<(), FirewallError> {
        let v4 = self.flush_family(Family::V4);
        match self.flush_family(Family::V6) {
            Ok(()) => self.v6_worked(),
            Err(e) => self.v6_failed("flush", &e),
        }
        v4
    }

    fn remove_chain(&mut self) -> Result<(), FirewallError> {
        Iptables::remove_chain(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn command_lines() {
        let fw = Iptables::new("KNOCKD", 0).in_netns("ns1");
        assert_eq!(fw.position, 1);
        assert_eq!(
            fw.argv(Family::V6, &["-S", "KNOCKD"]),
            words("ip netns exec ns1 ip6tables -w 10 -S KNOCKD")
        );
        let fw = Iptables::new("KNOCKD", 3).with_programs("iptables-legacy", "ip6tables-legacy");
        assert_eq!(
            fw.argv(Family::V4, &["-F", "KNOCKD"]),
            words("iptables-legacy -w 10 -F KNOCKD")
        );
    }
}
