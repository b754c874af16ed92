//! The iptables/ip6tables backend (being written on branch `firewall`).

use super::{Firewall, FirewallError, Found, Grant, Repairs};

/// The comment that marks a rule as knockgate's: `knockgate:<door>:<until>` (stub: the real
/// one, with the door name made safe, is on branch `firewall`).
pub fn comment(door: &str, until: u64) -> String {
    format!("knockgate:{door}:{until}")
}

/// The (door, until) of a knockgate comment.
pub fn parse_comment(comment: &str) -> Option<(String, u64)> {
    let rest = comment.strip_prefix("knockgate:")?;
    let (door, until) = rest.rsplit_once(':')?;
    Some((door.to_string(), until.parse().ok()?))
}

/// Runs `iptables -w` and `ip6tables -w` (or, in tests, inside a network namespace).
#[derive(Debug, Clone)]
pub struct Iptables {
    chain: String,
    position: u32,
    prefix: Vec<String>,
}

impl Iptables {
    pub fn new(chain: &str, position: u32) -> Iptables {
        Iptables {
            chain: chain.to_string(),
            position,
            prefix: Vec::new(),
        }
    }

    /// Runs every command inside network namespace `ns` (`ip netns exec NS ...`).
    pub fn in_netns(mut self, ns: &str) -> Iptables {
        self.prefix = vec!["ip".into(), "netns".into(), "exec".into(), ns.into()];
        self
    }

    fn unimplemented(&self) -> FirewallError {
        FirewallError::Command {
            command: format!("{:?} {} {}", self.prefix, self.chain, self.position),
            status: "unimplemented".into(),
            stderr: String::new(),
        }
    }
}

impl Firewall for Iptables {
    fn name(&self) -> &'static str {
        "iptables"
    }
    fn ensure(&mut self) -> Result<Repairs, FirewallError> {
        Err(self.unimplemented())
    }
    fn open(&mut self, _grant: &Grant) -> Result<(), FirewallError> {
        Err(self.unimplemented())
    }
    fn close(&mut self, _grant: &Grant) -> Result<(), FirewallError> {
        Err(self.unimplemented())
    }
    fn list(&mut self) -> Result<Vec<Found>, FirewallError> {
        Err(self.unimplemented())
    }
    fn remove(&mut self, _found: &Found) -> Result<(), FirewallError> {
        Err(self.unimplemented())
    }
    fn flush(&mut self) -> Result<(), FirewallError> {
        Err(self.unimplemented())
    }
}
