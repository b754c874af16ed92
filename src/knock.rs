//! The vocabulary shared by the wire parser, the engine and the config: what a knock is.
//!
//! A [`Knock`] is one TCP or UDP packet reduced to what port knocking looks at: the source and
//! destination addresses, the protocol, the destination port and (for TCP) the flags.

use std::fmt;
use std::net::IpAddr;

/// Transport protocol of a knock.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// TCP flag bits, as in the TCP header's flags byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    /// Names in knockd's `TCPFlags` syntax, with their bits.
    pub const NAMES: [(&'static str, u8); 6] = [
        ("fin", Self::FIN),
        ("syn", Self::SYN),
        ("rst", Self::RST),
        ("psh", Self::PSH),
        ("ack", Self::ACK),
        ("urg", Self::URG),
    ];

    pub fn has(self, bits: u8) -> bool {
        self.0 & bits == bits
    }
}

/// A condition on TCP flags: every bit of `set` must be set, every bit of `unset` must be clear;
/// other flags do not matter (knockd's `TCPFlags = syn,!ack`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FlagRule {
    pub set: u8,
    pub unset: u8,
}

impl FlagRule {
    /// No condition: any flags match (knockd's default when `TCPFlags` is absent).
    pub const ANY: FlagRule = FlagRule { set: 0, unset: 0 };
    /// knockgate's default: a connection attempt (`syn,!ack`), what every knock client sends.
    pub const SYN_NOT_ACK: FlagRule = FlagRule {
        set: TcpFlags::SYN,
        unset: TcpFlags::ACK,
    };

    pub fn matches(self, flags: TcpFlags) -> bool {
        flags.0 & self.set == self.set && flags.0 & self.unset == 0
    }

    /// Parses `syn,!ack` (names case-insensitive, blanks ignored); `any` or an empty string is
    /// [`FlagRule::ANY`]. The error names the offending word.
    pub fn parse(text: &str) -> Result<FlagRule, String> {
        let mut rule = FlagRule::ANY;
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.eq_ignore_ascii_case("any") {
            return Ok(rule);
        }
        for word in trimmed.split(',') {
            let word = word.trim();
            let (negated, name) = match word.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, word),
            };
            let bit = TcpFlags::NAMES
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, b)| *b)
                .ok_or_else(|| {
                    format!(
                        "unknown TCP flag `{word}`: expected a comma-separated list of fin, syn, rst, psh, ack, urg, each optionally prefixed with `!`, or `any`"
                    )
                })?;
            if negated {
                rule.unset |= bit;
            } else {
                rule.set |= bit;
            }
        }
        if rule.set & rule.unset != 0 {
            return Err(format!(
                "`{trimmed}` requires a flag to be both set and clear: no packet can match"
            ));
        }
        Ok(rule)
    }
}

impl fmt::Display for FlagRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == FlagRule::ANY {
            return f.write_str("any");
        }
        let mut first = true;
        for (name, bit) in TcpFlags::NAMES {
            for (mask, bang) in [(self.set, ""), (self.unset, "!")] {
                if mask & bit != 0 {
                    if !first {
                        f.write_str(",")?;
                    }
                    write!(f, "{bang}{name}")?;
                    first = false;
                }
            }
        }
        Ok(())
    }
}

/// One step of a door's sequence: a port and its protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KnockSpec {
    pub port: u16,
    pub proto: Proto,
}

impl KnockSpec {
    pub fn tcp(port: u16) -> Self {
        KnockSpec {
            port,
            proto: Proto::Tcp,
        }
    }
    pub fn udp(port: u16) -> Self {
        KnockSpec {
            port,
            proto: Proto::Udp,
        }
    }

    /// Parses `7000`, `7000/udp` or `7000:udp` (protocol case-insensitive, default tcp). Port 0
    /// and anything that is not a whole number from 1 to 65535 are refused (knockd's atoi is not).
    pub fn parse(text: &str) -> Result<KnockSpec, String> {
        let text = text.trim();
        let (port, proto) = match text.find(['/', ':']) {
            Some(i) => (&text[..i], Some(&text[i + 1..])),
            None => (text, None),
        };
        let proto = match proto.map(str::trim) {
            None => Proto::Tcp,
            Some(p) if p.eq_ignore_ascii_case("tcp") => Proto::Tcp,
            Some(p) if p.eq_ignore_ascii_case("udp") => Proto::Udp,
            Some(p) => {
                return Err(format!(
                    "unknown protocol `{p}` in `{text}`: expected tcp or udp"
                ))
            }
        };
        let port = port.trim();
        match port.parse::<u16>() {
            Ok(p) if p != 0 && port.bytes().all(|b| b.is_ascii_digit()) => {
                Ok(KnockSpec { port: p, proto })
            }
            _ => Err(format!(
                "invalid port `{port}` in `{text}`: expected a whole number from 1 to 65535"
            )),
        }
    }
}

impl fmt::Display for KnockSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.proto)
    }
}

/// One packet as port knocking sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Knock {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: Proto,
    pub dst_port: u16,
    /// TCP flags; zero for UDP.
    pub tcp_flags: TcpFlags,
}

impl Knock {
    pub fn spec(&self) -> KnockSpec {
        KnockSpec {
            port: self.dst_port,
            proto: self.proto,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_rule_parse_and_match() {
        let r = FlagRule::parse("syn,!ack").unwrap();
        assert_eq!(r, FlagRule::SYN_NOT_ACK);
        assert!(r.matches(TcpFlags(TcpFlags::SYN)));
        assert!(r.matches(TcpFlags(TcpFlags::SYN | TcpFlags::URG)));
        assert!(!r.matches(TcpFlags(TcpFlags::SYN | TcpFlags::ACK)));
        assert!(!r.matches(TcpFlags(TcpFlags::FIN)));
        assert_eq!(FlagRule::parse(" SYN , !Ack ").unwrap(), r);
        assert_eq!(FlagRule::parse("").unwrap(), FlagRule::ANY);
        assert_eq!(FlagRule::parse("any").unwrap(), FlagRule::ANY);
        assert!(FlagRule::ANY.matches(TcpFlags(0x3f)));
        assert!(FlagRule::parse("syn,!syn").is_err());
        let e = FlagRule::parse("syn,ecn").unwrap_err();
        assert!(e.contains("`ecn`"), "{e}");
        assert_eq!(r.to_string(), "syn,!ack");
        assert_eq!(FlagRule::parse(&r.to_string()).unwrap(), r);
    }

    #[test]
    fn knock_spec_parse() {
        assert_eq!(KnockSpec::parse("7000").unwrap(), KnockSpec::tcp(7000));
        assert_eq!(KnockSpec::parse("7000/udp").unwrap(), KnockSpec::udp(7000));
        assert_eq!(KnockSpec::parse("7000:UDP").unwrap(), KnockSpec::udp(7000));
        assert_eq!(
            KnockSpec::parse("65535:tcp").unwrap(),
            KnockSpec::tcp(65535)
        );
        for bad in ["0", "-1", "65536", "abc", "+5", "7000/icmp", "", "70 00"] {
            assert!(KnockSpec::parse(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(KnockSpec::udp(53).to_string(), "53/udp");
    }
}
