//! Firewall doors: knockgate's own chain (default `KNOCKD`) in the filter table, for IPv4
//! (iptables) and IPv6 (ip6tables).
//!
//! The model is netavark's firewall drivers: one trait, a real backend ([`iptables`]), a no-op
//! backend for `--dry-run` ([`Noop`]) and a recording fake for unit tests ([`Recording`]).
//! Rule text is built by pure functions; applying it is separate.
//!
//! Invariants the backends keep:
//! - [`Firewall::ensure`] creates the chain only if absent and leaves exactly one
//!   `INPUT -j CHAIN` jump, at the configured position, touching no other rule;
//! - [`Firewall::open`] is idempotent (`-C` before `-A`): the same grant twice is one rule;
//! - [`Firewall::close`] deletes only what exists;
//! - every rule carries a comment `knockgate:<door>:<until>` (door name made safe for a
//!   comment, expiry in Unix seconds), so the daemon recognises its own rules after a restart,
//!   and a kernel-side `-m time --datestop` so a rule stops matching at its expiry even if the
//!   daemon is dead.

pub mod iptables;
pub mod nft;
pub mod rules;

use std::net::IpAddr;

pub use crate::knock::{PortRange, Ports};

/// One opening: `src` may reach `ports` until `until` (Unix seconds, wall clock).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Grant {
    pub door: String,
    pub src: IpAddr,
    pub ports: Ports,
    pub until: u64,
}

/// A knockgate rule found in the chain (recognised by its comment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The door name as written in the comment (made safe: may differ from the config's).
    pub door: String,
    pub src: IpAddr,
    pub until: u64,
    /// The rule as `iptables -S` prints it, after `-A CHAIN`: enough to delete it exactly.
    pub spec: Vec<String>,
}

/// What [`Firewall::ensure`] had to fix.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Repairs {
    pub chain_created: bool,
    /// Jumps added (missing) or removed (duplicates, wrong place).
    pub jumps_fixed: usize,
}

impl Repairs {
    pub fn any(&self) -> bool {
        self.chain_created || self.jumps_fixed > 0
    }
}

/// A firewall command that failed.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// The program (iptables, ip6tables) could not be started: install iptables.
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// The program ran and failed; `stderr` says why (no permission: run as root or with
    /// CAP_NET_ADMIN; xtables lock held too long; unknown match module).
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
}

/// The firewall operations the daemon needs.
pub trait Firewall: Send {
    /// Short name for logs (`iptables`, `none`, `recording`).
    fn name(&self) -> &'static str;
    /// Makes sure the chain exists (both families) with exactly one jump from INPUT at the
    /// configured position.
    fn ensure(&mut self) -> Result<Repairs, FirewallError>;
    /// Adds the grant's rule(s) unless already present.
    fn open(&mut self, grant: &Grant) -> Result<(), FirewallError>;
    /// Deletes the grant's rule(s) if present.
    fn close(&mut self, grant: &Grant) -> Result<(), FirewallError>;
    /// knockgate's rules now in the chain (both families).
    fn list(&mut self) -> Result<Vec<Found>, FirewallError>;
    /// Deletes one found rule.
    fn remove(&mut self, found: &Found) -> Result<(), FirewallError>;
    /// Empties the chain (both families); the jump stays.
    fn flush(&mut self) -> Result<(), FirewallError>;
    /// Removes all knockgate made (the chain and its jump, both families): `knockgate
    /// remove-chain`, which the package runs when it is removed.
    fn remove_chain(&mut self) -> Result<(), FirewallError>;
    /// Whether `found`, listed from the chain, is the rule `grant` made. By default the same
    /// knocker, door and expiry; a backend that stores them lossily (iptables' comments)
    /// compares what it stored.
    fn is_rule_of(&self, found: &Found, grant: &Grant) -> bool {
        found.src == grant.src && found.door == grant.door && found.until == grant.until
    }
    /// Whether `grant` is in force among the `found` rules (else the check restores it). By
    /// default, when one of them is its rule; a backend whose rules a grant can share (the
    /// nftables sets) answers for every port of it.
    fn is_open_for(&self, found: &[Found], grant: &Grant) -> bool {
        found.iter().any(|f| self.is_rule_of(f, grant))
    }
    /// Whether opening and closing change a real firewall (the no-op backend only logs
    /// what it would do, and the gate then says nothing more).
    fn applies_rules(&self) -> bool {
        true
    }
    /// The nf_tables table whose change notifications announce a change to the chain
    /// (`filter` with iptables-nft). None: the kernel cannot tell (iptables-legacy, or no real
    /// firewall), and the gate checks the chain periodically instead.
    fn notifying_table(&mut self) -> Option<String> {
        None
    }
}

/// `--dry-run`: does nothing, and says so in the log.
#[derive(Debug, Default)]
pub struct Noop;

impl Firewall for Noop {
    fn name(&self) -> &'static str {
        "none"
    }
    fn ensure(&mut self) -> Result<Repairs, FirewallError> {
        Ok(Repairs::default())
    }
    fn open(&mut self, grant: &Grant) -> Result<(), FirewallError> {
        tracing::info!(door = %grant.door, src = %grant.src, "{}: (dry run) would open {} for {}", grant.door, grant.ports, grant.src);
        Ok(())
    }
    fn close(&mut self, grant: &Grant) -> Result<(), FirewallError> {
        tracing::info!(door = %grant.door, src = %grant.src, "{}: (dry run) would close {} for {}", grant.door, grant.ports, grant.src);
        Ok(())
    }
    fn list(&mut self) -> Result<Vec<Found>, FirewallError> {
        Ok(Vec::new())
    }
    fn remove(&mut self, _found: &Found) -> Result<(), FirewallError> {
        Ok(())
    }
    fn flush(&mut self) -> Result<(), FirewallError> {
        tracing::info!("(dry run) would flush the chain");
        Ok(())
    }
    fn remove_chain(&mut self) -> Result<(), FirewallError> {
        Ok(())
    }
    fn applies_rules(&self) -> bool {
        false
    }
}

/// One call recorded by [`Recording`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Ensure,
    Open(Grant),
    Close(Grant),
    List,
    Remove(Found),
    Flush,
    RemoveChain,
}

/// A fake for unit tests: keeps the grants in memory and records every call.
#[derive(Debug, Default)]
pub struct Recording {
    pub calls: Vec<Call>,
    pub rules: Vec<Grant>,
    /// When set, every call fails (to test the daemon's error paths).
    pub fail: bool,
}

impl Recording {
    fn check(&self) -> Result<(), FirewallError> {
        if self.fail {
            Err(FirewallError::Command {
                command: "recording".into(),
                status: "exit status: 1".into(),
                stderr: "told to fail".into(),
            })
        } else {
            Ok(())
        }
    }
}

impl Firewall for Recording {
    fn name(&self) -> &'static str {
        "recording"
    }
    fn ensure(&mut self) -> Result<Repairs, FirewallError> {
        self.calls.push(Call::Ensure);
        self.check()?;
        Ok(Repairs::default())
    }
    fn open(&mut self, grant: &Grant) -> Result<(), FirewallError> {
        self.calls.push(Call::Open(grant.clone()));
        self.check()?;
        if !self.rules.contains(grant) {
            self.rules.push(grant.clone());
        }
        Ok(())
    }
    fn close(&mut self, grant: &Grant) -> Result<(), FirewallError> {
        self.calls.push(Call::Close(grant.clone()));
        self.check()?;
        self.rules.retain(|g| g != grant);
        Ok(())
    }
    fn list(&mut self) -> Result<Vec<Found>, FirewallError> {
        self.calls.push(Call::List);
        self.check()?;
        Ok(self
            .rules
            .iter()
            .map(|g| Found {
                door: g.door.clone(),
                src: g.src,
                until: g.until,
                spec: vec![format!("{g:?}")],
            })
            .collect())
    }
    fn remove(&mut self, found: &Found) -> Result<(), FirewallError> {
        self.calls.push(Call::Remove(found.clone()));
        self.check()?;
        self.rules
            .retain(|g| !(g.src == found.src && g.until == found.until && g.door == found.door));
        Ok(())
    }
    fn flush(&mut self) -> Result<(), FirewallError> {
        self.calls.push(Call::Flush);
        self.check()?;
        self.rules.clear();
        Ok(())
    }
    fn remove_chain(&mut self) -> Result<(), FirewallError> {
        self.calls.push(Call::RemoveChain);
        self.check()?;
        self.rules.clear();
        Ok(())
    }
}
