//! The knock client: `knockgate knock HOST PORT[:tcp|udp]...`, wire-compatible with knockd's
//! `knock`.
//!
//! A TCP knock is a non-blocking `connect()` closed at once: exactly one SYN leaves, whatever
//! the port's state. A UDP knock is one 1-byte datagram. Unlike knockd's client, a knock that
//! cannot be sent (no route, refused by the local firewall, unknown host) is an error.

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::thread;
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::knock::{KnockSpec, Proto};

/// Address family restriction (`-4`, `-6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Family {
    #[default]
    Any,
    V4,
    V6,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The host name did not resolve (to an address of the requested family).
    #[error("cannot resolve `{host}`{family}: {reason}")]
    Resolve {
        host: String,
        family: &'static str,
        reason: String,
    },
    /// A knock argument is neither `port[:proto]` nor `service[:proto]`.
    #[error("invalid knock `{arg}`: {reason}")]
    Knock { arg: String, reason: String },
    /// The operating system refused to send the packet (no route, local firewall, ...).
    #[error("cannot send the {spec} knock to {addr}: {source}")]
    Send {
        spec: KnockSpec,
        addr: IpAddr,
        #[source]
        source: io::Error,
    },
}

/// Parses one knock argument: `7000`, `7000:udp`, `ssh`, `ssh:tcp`; the protocol defaults to
/// udp when `udp_default` (`-u`) is set. Service names come from /etc/services.
pub fn parse_knock(arg: &str, udp_default: bool) -> Result<KnockSpec, ClientError> {
    let bad = |reason: String| ClientError::Knock {
        arg: arg.to_string(),
        reason,
    };
    let (name, proto) = match arg.rsplit_once(':') {
        Some((n, p)) => {
            let proto = Proto::parse(p, p).map_err(bad)?;
            (n, proto)
        }
        None if udp_default => (arg, Proto::Udp),
        None => (arg, Proto::Tcp),
    };
    if name.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty() {
        return crate::knock::parse_port(name, name)
            .map(|port| KnockSpec { port, proto })
            .map_err(bad);
    }
    let services = std::fs::read_to_string("/etc/services").unwrap_or_default();
    service_port(&services, name, proto)
        .map(|port| KnockSpec { port, proto })
        .ok_or_else(|| {
            bad(format!(
                "`{name}` is not a port number nor a {proto} service in /etc/services"
            ))
        })
}

/// Looks a service name (or alias) up in /etc/services text.
fn service_port(services: &str, name: &str, proto: Proto) -> Option<u16> {
    services.lines().find_map(|line| {
        let line = line.split('#').next()?;
        let mut words = line.split_whitespace();
        let primary = words.next()?;
        let (port, p) = words.next()?.split_once('/')?;
        let matches = primary == name || words.any(|alias| alias == name);
        (matches && p == proto.as_str())
            .then(|| port.parse().ok())
            .flatten()
    })
}

/// Resolves `host` to one address of the requested family.
pub fn resolve(host: &str, family: Family) -> Result<IpAddr, ClientError> {
    let label = match family {
        Family::Any => "",
        Family::V4 => " (IPv4)",
        Family::V6 => " (IPv6)",
    };
    let err = |reason: String| ClientError::Resolve {
        host: host.to_string(),
        family: label,
        reason,
    };
    let fits = |ip: &IpAddr| match family {
        Family::Any => true,
        Family::V4 => ip.is_ipv4(),
        Family::V6 => ip.is_ipv6(),
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return if fits(&ip) {
            Ok(ip)
        } else {
            Err(err("the address is of the other family".into()))
        };
    }
    let addrs = (bare, 0u16)
        .to_socket_addrs()
        .map_err(|e| err(e.to_string()))?;
    addrs
        .map(|a| a.ip())
        .find(fits)
        .ok_or_else(|| err("no address of that family".into()))
}

/// Sends one knock.
pub fn send(addr: IpAddr, spec: KnockSpec) -> Result<(), ClientError> {
    let target = SocketAddr::new(addr, spec.port);
    let result = match spec.proto {
        Proto::Tcp => send_syn(target),
        Proto::Udp => send_datagram(target),
    };
    result.map_err(|source| ClientError::Send { spec, addr, source })
}

fn send_syn(target: SocketAddr) -> io::Result<()> {
    let socket = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    match socket.connect(&SockAddr::from(target)) {
        Ok(()) => Ok(()),
        // The SYN is on its way; the socket is closed without waiting for an answer.
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(()),
        // A closed port on this very host answered at once: the SYN was sent.
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(()),
        Err(e) => Err(e),
    }
}

fn send_datagram(target: SocketAddr) -> io::Result<()> {
    let bind: SocketAddr = match target {
        SocketAddr::V4(_) => "0.0.0.0:0".parse().expect("literal"),
        SocketAddr::V6(_) => "[::]:0".parse().expect("literal"),
    };
    let socket = UdpSocket::bind(bind)?;
    socket.send_to(&[0u8], target).map(|_| ())
}

/// A knock run: every knock in order, `delay` after each.
pub struct Plan {
    pub addr: IpAddr,
    pub knocks: Vec<KnockSpec>,
    pub delay: Duration,
}

/// Sends the plan's knocks; `on_hit` is called before each (verbose output). Stops at the first
/// knock that cannot be sent.
pub fn run(plan: &Plan, mut on_hit: impl FnMut(&KnockSpec)) -> Result<(), ClientError> {
    for spec in &plan.knocks {
        on_hit(spec);
        send(plan.addr, *spec)?;
        if !plan.delay.is_zero() {
            thread::sleep(plan.delay);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, UdpSocket};

    const SERVICES: &str = "ssh\t\t22/tcp\t\t\t# SSH Remote Login Protocol\n\
        domain\t\t53/tcp\nrtelnet\t107/tcp\nsyslog\t\t514/udp\nhttp\t80/tcp\twww\t# WorldWideWeb HTTP\n";

    #[test]
    fn knock_arguments() {
        assert_eq!(parse_knock("7000", false).unwrap(), KnockSpec::tcp(7000));
        assert_eq!(parse_knock("7000", true).unwrap(), KnockSpec::udp(7000));
        assert_eq!(
            parse_knock("7000:udp", false).unwrap(),
            KnockSpec::udp(7000)
        );
        assert_eq!(parse_knock("7000:TCP", true).unwrap(), KnockSpec::tcp(7000));
        for bad in ["0", "65536", "7000:icmp", "", "no-such-service-xyz"] {
            assert!(parse_knock(bad, false).is_err(), "{bad}");
        }
        assert_eq!(service_port(SERVICES, "ssh", Proto::Tcp), Some(22));
        assert_eq!(service_port(SERVICES, "www", Proto::Tcp), Some(80));
        assert_eq!(service_port(SERVICES, "syslog", Proto::Udp), Some(514));
        assert_eq!(service_port(SERVICES, "syslog", Proto::Tcp), None);
    }

    #[test]
    fn resolve_families() {
        assert_eq!(
            resolve("127.0.0.1", Family::Any).unwrap(),
            IpAddr::from([127, 0, 0, 1])
        );
        assert_eq!(
            resolve("[::1]", Family::V6).unwrap(),
            "::1".parse::<IpAddr>().unwrap()
        );
        assert!(resolve("127.0.0.1", Family::V6).is_err());
        assert!(resolve("localhost", Family::V4).unwrap().is_ipv4());
    }

    #[test]
    fn udp_knock_is_one_small_datagram() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let port = rx.local_addr().unwrap().port();
        send(IpAddr::from([127, 0, 0, 1]), KnockSpec::udp(port)).unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = rx.recv_from(&mut buf).unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn tcp_knock_reaches_a_listener_and_a_closed_port_is_fine() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        send(IpAddr::from([127, 0, 0, 1]), KnockSpec::tcp(port)).unwrap();
        // The SYN arrived: the kernel completed the handshake into the accept queue.
        listener.set_nonblocking(false).unwrap();
        let (_conn, peer) = listener.accept().unwrap();
        assert!(peer.ip().is_loopback());
        drop(listener);
        // Closed port (RST from the local stack) still counts as sent.
        send(IpAddr::from([127, 0, 0, 1]), KnockSpec::tcp(port)).unwrap();
    }
}
