//! The vocabulary shared by the wire parser, the engine, the config, the doors and the actions:
//! what a knock is, and the ports a door opens.
//!
//! A [`Knock`] is one TCP or UDP packet reduced to what port knocking looks at: the source and
//! destination addresses, the protocol, the destination port and (for TCP) the flags.
//! Protocol names and port numbers written as text are read here alone ([`Proto::parse`],
//! [`parse_port`]), with one message each, wherever they come from (the config, an imported
//! knockd.conf, the `knock` client's arguments, an SPA request).

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
    /// Parses `tcp` or `udp` (case and surrounding blanks ignored). `within` is the text it
    /// was taken from (`7000/icmp`), named in the error when it is more than the word itself.
    pub fn parse(word: &str, within: &str) -> Result<Proto, String> {
        let word = word.trim();
        if word.eq_ignore_ascii_case("tcp") {
            Ok(Proto::Tcp)
        } else if word.eq_ignore_ascii_case("udp") {
            Ok(Proto::Udp)
        } else {
            Err(format!(
                "unknown protocol `{word}`{}: expected tcp or udp",
                context(word, within)
            ))
        }
    }

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

/// Parses a port number written as text: a whole number from 1 to 65535, digits only (no sign,
/// no blanks inside; knockd's atoi would take `+5` or `7a`). `within` as for [`Proto::parse`].
pub fn parse_port(text: &str, within: &str) -> Result<u16, String> {
    let p = text.trim();
    match p.parse::<u16>() {
        Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(bad_port(p, within)),
    }
}

/// The message for a port that is not one (also for numbers read from TOML as integers).
pub fn bad_port(port: &str, within: &str) -> String {
    format!(
        "invalid port `{port}`{}: expected a whole number from 1 to 65535",
        context(port, within)
    )
}

/// ` in `TEXT`` when the word was taken from a longer text.
fn context(word: &str, within: &str) -> String {
    let within = within.trim();
    if within == word {
        String::new()
    } else {
        format!(" in `{within}`")
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
        let proto = match proto {
            None => Proto::Tcp,
            Some(p) => Proto::parse(p, text)?,
        };
        Ok(KnockSpec {
            port: parse_port(port, text)?,
            proto,
        })
    }
}

impl fmt::Display for KnockSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.proto)
    }
}

/// A range of ports of one protocol (`22/tcp`, `5060-5069/udp`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct PortRange {
    pub proto: Proto,
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    /// Parses `22`, `22/tcp`, `5060-5069/udp` (also `:` before the protocol, and `5060:5069`
    /// is not accepted to avoid confusion with it). Ports 1..=65535, first <= last.
    pub fn parse(text: &str) -> Result<PortRange, String> {
        let text = text.trim();
        let (ports, proto) = match text.rsplit_once(['/', ':']) {
            Some((p, proto)) => (p, Proto::parse(proto, text)?),
            None => (text, Proto::Tcp),
        };
        let port = |p: &str| parse_port(p, text);
        let (first, last) = match ports.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => {
                let p = port(ports)?;
                (p, p)
            }
        };
        if first > last {
            return Err(format!(
                "`{text}`: the range runs backwards (write {last}-{first})"
            ));
        }
        Ok(PortRange { proto, first, last })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}/{}", self.first, self.proto)
        } else {
            write!(f, "{}-{}/{}", self.first, self.last, self.proto)
        }
    }
}

/// What a grant opens.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Ports {
    /// Every port and protocol ("everything for one hour").
    All,
    /// These ports (at least one range).
    Some(Vec<PortRange>),
}

impl fmt::Display for Ports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ports::All => f.write_str("all ports"),
            Ports::Some(r) => {
                let parts: Vec<String> = r.iter().map(ToString::to_string).collect();
                f.write_str(&parts.join(", "))
            }
        }
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

/// One captured packet, as the gatekeeper takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Knock(Knock),
    /// A UDP datagram to an SPA door's port, with its data.
    Datagram(Knock, Box<[u8]>),
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
        assert_eq!(
            KnockSpec::parse("80000/tcp").unwrap_err(),
            "invalid port `80000` in `80000/tcp`: expected a whole number from 1 to 65535"
        );
        assert_eq!(
            KnockSpec::parse("7000/ICMP").unwrap_err(),
            "unknown protocol `ICMP` in `7000/ICMP`: expected tcp or udp"
        );
    }

    #[test]
    fn protocols_and_ports_are_read_in_one_place_with_one_message() {
        assert_eq!(Proto::parse(" UDP ", "x"), Ok(Proto::Udp));
        assert_eq!(
            Proto::parse("icmp", "icmp").unwrap_err(),
            "unknown protocol `icmp`: expected tcp or udp"
        );
        assert_eq!(parse_port("65535", "65535"), Ok(65535));
        for bad in ["0", "65536", "+5", "7a", "", "-1"] {
            assert!(parse_port(bad, bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_port("0", "0").unwrap_err(),
            "invalid port `0`: expected a whole number from 1 to 65535"
        );
    }
    #[test]
    fn port_ranges() {
        let r = |s| PortRange::parse(s).unwrap();
        assert_eq!(
            r("22"),
            PortRange {
                proto: Proto::Tcp,
                first: 22,
                last: 22
            }
        );
        assert_eq!(
            r("5060-5069/udp"),
            PortRange {
                proto: Proto::Udp,
                first: 5060,
                last: 5069
            }
        );
        assert_eq!(
            r("80:TCP"),
            PortRange {
                proto: Proto::Tcp,
                first: 80,
                last: 80
            }
        );
        for bad in ["0", "70000", "9-1", "22/icmp", "a-b", "", "-5"] {
            assert!(PortRange::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(r("5060-5069/udp").to_string(), "5060-5069/udp");
        assert_eq!(
            Ports::Some(vec![r("22"), r("53/udp")]).to_string(),
            "22/tcp, 53/udp"
        );
    }
}

/// The ports browsers refuse to connect to, whatever the page asks (`ERR_UNSAFE_PORT`): the
/// union of Chromium's `kRestrictedPorts` (`net/base/port_util.cc`) and Firefox's
/// `gBadPortList` (`netwerk/base/nsIOService.cpp`), both as of 2026, which follow the Fetch
/// standard's "bad port" list (<https://fetch.spec.whatwg.org/#port-blocking>). Firefox and
/// today's Chromium both have 10080, the only one in firstboot's 10000-65000.
pub const BROWSER_UNSAFE: &[u16] = &[
    0, 1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101,
    102, 103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427,
    465, 512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990,
    993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667,
    6668, 6669, 6679, 6697, 10080,
];

/// Whether a browser's `fetch()` can connect to `port` (a knock page can knock it).
pub fn browser_safe(port: u16) -> bool {
    BROWSER_UNSAFE.binary_search(&port).is_err()
}

#[cfg(test)]
mod browser_tests {
    #[test]
    fn the_unsafe_list_is_sorted_and_has_what_both_browsers_refuse() {
        let l = super::BROWSER_UNSAFE;
        assert!(
            l.windows(2).all(|w| w[0] < w[1]),
            "sorted, no repeats: binary_search"
        );
        for p in [22, 25, 53, 5060, 6000, 6697, 10080] {
            assert!(!super::browser_safe(p), "{p}");
        }
        for p in [80, 443, 7000, 8080, 10000, 10081, 65000] {
            assert!(super::browser_safe(p), "{p}");
        }
    }
}
