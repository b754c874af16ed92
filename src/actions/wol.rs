//! Wake-on-LAN: the magic packet (6 × 0xFF, then the MAC 16 times, then an optional 6-byte
//! SecureOn password), sent as a UDP broadcast, at most once per target per rate-limit window.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::WakeAction;
use crate::time::Instant;

/// The magic packet: 102 bytes, or 108 with a SecureOn password.
pub fn magic_packet(mac: [u8; 6], password: Option<[u8; 6]>) -> Vec<u8> {
    let mut p = Vec::with_capacity(108);
    p.extend_from_slice(&[0xff; 6]);
    for _ in 0..16 {
        p.extend_from_slice(&mac);
    }
    if let Some(pw) = password {
        p.extend_from_slice(&pw);
    }
    p
}

/// `00:11:22:33:44:55`.
pub fn mac_text(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Remembers when each target was last woken.
#[derive(Debug, Default)]
pub struct RateLimit {
    last: HashMap<[u8; 6], Instant>,
}

impl RateLimit {
    /// Whether a packet to `mac` may go now; if so, records it.
    pub fn allow(&mut self, now: Instant, mac: [u8; 6], window: Duration) -> bool {
        match self.last.get(&mac) {
            Some(t) if now < *t + window => false,
            _ => {
                self.last.insert(mac, now);
                true
            }
        }
    }
}

/// Sends the action's magic packet; returns the bytes sent.
pub fn send(action: &WakeAction) -> io::Result<usize> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_broadcast(true)?;
    if let Some(iface) = &action.interface {
        socket.bind_device(Some(iface.as_bytes()))?;
    }
    let socket: UdpSocket = socket.into();
    let packet = magic_packet(action.mac, action.password);
    socket.send_to(&packet, SocketAddr::new(action.broadcast, action.port))
}

/// Where wake-on-LAN packets go.
pub trait Wake: Send {
    /// Sends `action`'s magic packet for `door`, logging the outcome.
    fn wake(&mut self, door: &str, action: &WakeAction);
}

/// Real UDP broadcasts.
#[derive(Debug, Default)]
pub struct Broadcast;

impl Wake for Broadcast {
    fn wake(&mut self, door: &str, w: &WakeAction) {
        let mac = mac_text(w.mac);
        match send(w) {
            Ok(n) => tracing::info!(
                door,
                "{door}: wake-on-LAN sent to {mac} ({n} bytes to {}:{})",
                w.broadcast,
                w.port
            ),
            Err(e) => tracing::error!(door, "{door}: cannot send wake-on-LAN to {mac}: {e}"),
        }
    }
}

/// `--dry-run`: only logged.
#[derive(Debug, Default)]
pub struct DryRun;

impl Wake for DryRun {
    fn wake(&mut self, door: &str, w: &WakeAction) {
        let mac = mac_text(w.mac);
        tracing::info!(door, "{door}: (dry run) would send wake-on-LAN to {mac}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_packet_layout() {
        let mac = [0x00, 0x11, 0x22, 0x33, 0x44, 0x55];
        let p = magic_packet(mac, None);
        assert_eq!(p.len(), 102);
        assert_eq!(&p[..6], &[0xff; 6]);
        for i in 0..16 {
            assert_eq!(&p[6 + 6 * i..12 + 6 * i], &mac);
        }
        let p = magic_packet(mac, Some([1, 2, 3, 4, 5, 6]));
        assert_eq!(p.len(), 108);
        assert_eq!(&p[102..], &[1, 2, 3, 4, 5, 6]);
        assert_eq!(mac_text(mac), "00:11:22:33:44:55");
    }

    #[test]
    fn rate_limit_per_target() {
        let mut r = RateLimit::default();
        let (a, b) = ([1; 6], [2; 6]);
        let w = Duration::from_secs(30);
        assert!(r.allow(Instant::from_secs(0), a, w));
        assert!(!r.allow(Instant::from_secs(29), a, w));
        assert!(
            r.allow(Instant::from_secs(29), b, w),
            "another target is not limited"
        );
        assert!(r.allow(Instant::from_secs(30), a, w));
    }

    #[test]
    fn sends_to_a_loopback_listener() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let action = WakeAction {
            mac: [0xaa; 6],
            interface: None,
            port: rx.local_addr().unwrap().port(),
            broadcast: "127.0.0.1".parse().unwrap(),
            password: None,
            rate_limit: Duration::from_secs(1),
            mqtt_command: false,
        };
        assert_eq!(send(&action).unwrap(), 102);
        let mut buf = [0u8; 200];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &magic_packet([0xaa; 6], None)[..]);
    }
}
