//! The packet parser: captured bytes in, a [`Knock`] out.
//!
//! [`parse`] takes the link type of the capture and the captured bytes of one packet and returns
//! the TCP or UDP packet as port knocking sees it, or a [`WireError`] saying why it is not one.
//!
//! Invariants:
//!
//! - `data` is untrusted and is the captured bytes only (libpcap's `caplen`): it may be cut
//!   anywhere, and no length field inside it is believed beyond the bytes actually present.
//!   [`parse`] never panics and never reads out of bounds, whatever the input (tested on every
//!   prefix of every fixture and on pseudo-random bytes).
//! - Link headers: Ethernet II, Linux cooked capture v1 and v2, raw IP, BSD and OpenBSD loopback.
//!   Any number of VLAN tags (802.1Q `0x8100`, 802.1ad `0x88a8`, `0x9100`) is skipped.
//! - IPv4 (options and an authentication header skipped) and IPv6 (hop-by-hop, routing,
//!   destination options, fragment and authentication headers skipped) are decoded with
//!   `etherparse`'s lax slicers, which accept a cut-off payload. Header checksums are not checked.
//! - A fragment that is not the first one has no transport header: [`WireError::Fragment`]. The
//!   first fragment carries the ports and is a knock like any other packet.
//! - A TCP header cut off after its flags byte (options missing) is still a knock: the ports and
//!   flags are all port knocking reads.
//!
//! Errors are values to count ([`WireStats`]), never to log one by one: a gateway sees malformed
//! and foreign packets all day.
//!
//! The link headers `etherparse` 0.16 does not handle as a capture needs are read here from
//! fixed-size arrays (`split_first_chunk`), so no index can be out of bounds: Linux cooked
//! capture v2 (not supported by `etherparse`), v1 (`etherparse` refuses ARPHRD types other than
//! Ethernet, but `-i any` on a gateway also sees `ppp0`, `lo` and tunnels) and BSD loopback.

use std::fmt;

use etherparse::err::{ip::LaxHeaderSliceError, ipv6_exts::HeaderSliceError, tcp};
use etherparse::{
    Ethernet2Slice, IpNumber, Ipv6ExtensionSlice, LaxIpSlice, SingleVlanSlice, TcpHeaderSlice,
    UdpHeaderSlice,
};

use crate::knock::{Knock, Proto, TcpFlags};

/// The link-layer header type of a capture (libpcap's `DLT_*` / `LINKTYPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// Ethernet II (`DLT_EN10MB`, 1): `eth0`, `wlan0`.
    Ethernet,
    /// Linux cooked capture v1 (`DLT_LINUX_SLL`, 113): `-i any`, `ppp0`.
    LinuxSll,
    /// Linux cooked capture v2 (`DLT_LINUX_SLL2`, 276): `-i any` on newer libpcap.
    LinuxSll2,
    /// Raw IP, version from the first nibble (`DLT_RAW`, 12 or 14; `LINKTYPE_RAW`, 101):
    /// WireGuard and other tunnels.
    RawIp,
    /// Raw IPv4 only (`LINKTYPE_IPV4`, 228).
    Ipv4,
    /// Raw IPv6 only (`LINKTYPE_IPV6`, 229).
    Ipv6,
    /// BSD loopback (`DLT_NULL`, 0): a 4-byte address family in the capturing host's byte order.
    Null,
    /// OpenBSD loopback (`DLT_LOOP`, 108): a 4-byte address family in network byte order.
    Loop,
}

impl LinkType {
    /// Every link type, in a fixed order (the fuzz target `wire` picks one by index).
    pub const ALL: [LinkType; 8] = [
        LinkType::Ethernet,
        LinkType::LinuxSll,
        LinkType::LinuxSll2,
        LinkType::RawIp,
        LinkType::Ipv4,
        LinkType::Ipv6,
        LinkType::Null,
        LinkType::Loop,
    ];

    /// Maps a libpcap `DLT_*` value (as `pcap_datalink` returns it) or a `LINKTYPE_*` value (as
    /// a savefile stores it) to a link type; `None` if knockgate cannot parse that link type.
    ///
    /// 12 and 14 are both `DLT_RAW` (14 on OpenBSD, where 12 is `DLT_LOOP`: knockgate follows
    /// Linux, where it runs).
    pub fn from_dlt(dlt: i32) -> Option<LinkType> {
        Some(match dlt {
            0 => LinkType::Null,
            1 => LinkType::Ethernet,
            12 | 14 | 101 => LinkType::RawIp,
            108 => LinkType::Loop,
            113 => LinkType::LinuxSll,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            276 => LinkType::LinuxSll2,
            _ => return None,
        })
    }
}

/// Why a captured packet is not a knock. Cheap to copy: count it with [`WireStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum WireError {
    /// The captured bytes end before a header that is needed (link, VLAN, IP, extension or
    /// transport header): the packet was cut short, or the capture's snapshot length is too
    /// small (it must cover the link, IP and extension headers plus 14 bytes of TCP).
    #[error("packet truncated")]
    Truncated,
    /// The link header names another protocol than IPv4 or IPv6 (ARP, LLDP, an unknown address
    /// family on loopback, a raw packet whose version is neither 4 nor 6). Nothing to fix: the
    /// capture filter normally keeps these out.
    #[error("not an IP packet")]
    NotIp,
    /// An IP packet that carries neither TCP nor UDP (ICMP, ESP, GRE, "no next header"). Nothing
    /// to fix: these cannot be knocks.
    #[error("IP packet carries neither TCP nor UDP")]
    NotTransport,
    /// A fragment other than the first one: its payload continues a transport header sent
    /// earlier, so it has no ports. Knock clients never fragment; an attacker might.
    #[error("IP fragment without a transport header")]
    Fragment,
    /// A link header knockgate does not decode: an 802.3 length field (LLC/SNAP) instead of an
    /// EtherType, a netlink capture, a Linux "non-standard" protocol. Capture on an Ethernet or
    /// IP interface instead.
    #[error("unsupported link-layer header")]
    Link,
    /// A header whose fields contradict themselves: IPv4 header length below 20 bytes, TCP data
    /// offset below 20 bytes, an IP version that disagrees with the link header, a hop-by-hop
    /// header that is not first. Sent by broken or hostile software.
    #[error("malformed header")]
    Malformed,
}

impl WireError {
    /// Every kind, in the order [`WireStats::iter`] reports them.
    pub const ALL: [WireError; 6] = [
        WireError::Truncated,
        WireError::NotIp,
        WireError::NotTransport,
        WireError::Fragment,
        WireError::Link,
        WireError::Malformed,
    ];

    /// A short, stable label for counters and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            WireError::Truncated => "truncated",
            WireError::NotIp => "not_ip",
            WireError::NotTransport => "not_transport",
            WireError::Fragment => "fragment",
            WireError::Link => "link",
            WireError::Malformed => "malformed",
        }
    }

    fn index(self) -> usize {
        match self {
            WireError::Truncated => 0,
            WireError::NotIp => 1,
            WireError::NotTransport => 2,
            WireError::Fragment => 3,
            WireError::Link => 4,
            WireError::Malformed => 5,
        }
    }
}

/// Counters of packets [`parse`] refused, per [`WireError`] kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WireStats {
    counts: [u64; WireError::ALL.len()],
}

impl WireStats {
    /// Counts one refused packet.
    pub fn record(&mut self, e: &WireError) {
        let n = &mut self.counts[e.index()];
        *n = n.saturating_add(1);
    }

    /// The count for one kind.
    pub fn get(&self, e: WireError) -> u64 {
        self.counts[e.index()]
    }

    /// All refused packets.
    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, &n| a.saturating_add(n))
    }

    /// `(label, count)` for every kind, zeros included, in the order of [`WireError::ALL`].
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        WireError::ALL.iter().map(|e| (e.kind(), self.get(*e)))
    }
}

impl fmt::Display for WireStats {
    /// `truncated=0 not_ip=3 ...`, for a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (label, n)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{label}={n}")?;
        }
        Ok(())
    }
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: [u16; 3] = [0x8100, 0x88a8, 0x9100];
/// EtherType values below this are 802.3 lengths (or, in Linux cooked captures, Linux's
/// non-standard protocol numbers), not protocols.
const ETHERTYPE_MIN: u16 = 0x0600;
/// `ARPHRD_NETLINK`: a cooked capture of netlink messages, whose protocol field is a netlink family.
const ARPHRD_NETLINK: u16 = 824;

/// The IP version a link header announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V4,
    V6,
    /// Raw IP: the packet's first nibble says.
    Any,
}

/// Parses one captured packet. See the module documentation for what is accepted.
pub fn parse(link: LinkType, data: &[u8]) -> Result<Knock, WireError> {
    parse_with_payload(link, data).map(|(knock, _)| knock)
}

/// [`parse`], and a UDP datagram's payload (as far as it was captured and as long as its
/// header says; empty for TCP): an SPA packet's data.
pub fn parse_with_payload(link: LinkType, data: &[u8]) -> Result<(Knock, &[u8]), WireError> {
    let (version, ip) = match link {
        LinkType::Ethernet => {
            let eth =
                Ethernet2Slice::from_slice_without_fcs(data).map_err(|_| WireError::Truncated)?;
            ether_payload(eth.ether_type().0, eth.payload_slice())?
        }
        LinkType::LinuxSll => {
            // packet type (2), ARPHRD type (2), address length (2), address (8), protocol (2)
            let (h, rest) = data.split_first_chunk::<16>().ok_or(WireError::Truncated)?;
            cooked(
                u16::from_be_bytes([h[2], h[3]]),
                u16::from_be_bytes([h[14], h[15]]),
                rest,
            )?
        }
        LinkType::LinuxSll2 => {
            // protocol (2), reserved (2), interface index (4), ARPHRD type (2), packet type (1),
            // address length (1), address (8)
            let (h, rest) = data.split_first_chunk::<20>().ok_or(WireError::Truncated)?;
            cooked(
                u16::from_be_bytes([h[8], h[9]]),
                u16::from_be_bytes([h[0], h[1]]),
                rest,
            )?
        }
        LinkType::RawIp => (Version::Any, data),
        LinkType::Ipv4 => (Version::V4, data),
        LinkType::Ipv6 => (Version::V6, data),
        LinkType::Null => {
            let (h, rest) = data.split_first_chunk::<4>().ok_or(WireError::Truncated)?;
            // The byte order of the host that captured, which need not be ours: try both.
            let v = address_family(u32::from_le_bytes(*h))
                .or_else(|| address_family(u32::from_be_bytes(*h)))
                .ok_or(WireError::NotIp)?;
            (v, rest)
        }
        LinkType::Loop => {
            let (h, rest) = data.split_first_chunk::<4>().ok_or(WireError::Truncated)?;
            (
                address_family(u32::from_be_bytes(*h)).ok_or(WireError::NotIp)?,
                rest,
            )
        }
    };
    parse_ip(version, ip)
}

/// Skips VLAN tags, then maps the EtherType to an IP version.
fn ether_payload(mut ether_type: u16, mut rest: &[u8]) -> Result<(Version, &[u8]), WireError> {
    // Each tag consumes 4 bytes, so this ends.
    while ETHERTYPE_VLAN.contains(&ether_type) {
        let tag = SingleVlanSlice::from_slice(rest).map_err(|_| WireError::Truncated)?;
        ether_type = tag.ether_type().0;
        rest = tag.payload_slice();
    }
    match ether_type {
        ETHERTYPE_IPV4 => Ok((Version::V4, rest)),
        ETHERTYPE_IPV6 => Ok((Version::V6, rest)),
        t if t < ETHERTYPE_MIN => Err(WireError::Link),
        _ => Err(WireError::NotIp),
    }
}

/// A Linux cooked capture's protocol field is an EtherType, except for netlink captures and
/// Linux's non-standard values below 0x0600 (802.2 LLC, CAN, ...).
fn cooked(arphrd: u16, protocol: u16, rest: &[u8]) -> Result<(Version, &[u8]), WireError> {
    if arphrd == ARPHRD_NETLINK {
        return Err(WireError::Link);
    }
    ether_payload(protocol, rest)
}

/// `AF_INET` is 2 everywhere; `AF_INET6` is 10 (Linux), 24 (NetBSD, OpenBSD), 28 (FreeBSD) or
/// 30 (macOS).
fn address_family(af: u32) -> Option<Version> {
    match af {
        2 => Some(Version::V4),
        10 | 24 | 28 | 30 => Some(Version::V6),
        _ => None,
    }
}

fn parse_ip(version: Version, data: &[u8]) -> Result<(Knock, &[u8]), WireError> {
    if version == Version::Any {
        match data.first().map(|b| b >> 4) {
            None => return Err(WireError::Truncated),
            Some(4 | 6) => {}
            Some(_) => return Err(WireError::NotIp),
        }
    }
    let (ip, stopped) = LaxIpSlice::from_slice(data).map_err(|e| match e {
        LaxHeaderSliceError::Len(_) => WireError::Truncated,
        LaxHeaderSliceError::Content(_) => WireError::Malformed,
    })?;
    match (&ip, version) {
        (LaxIpSlice::Ipv4(_), Version::V6) | (LaxIpSlice::Ipv6(_), Version::V4) => {
            return Err(WireError::Malformed)
        }
        _ => {}
    }
    // An extension header (or IPv4 authentication header) that could not be read.
    let stopped = stopped.map(|(e, _layer)| match e {
        HeaderSliceError::Len(_) => WireError::Truncated,
        HeaderSliceError::Content(_) => WireError::Malformed,
    });
    // A later fragment has no transport header, whatever its protocol field says.
    match &ip {
        LaxIpSlice::Ipv4(v4) => {
            if v4.header().fragments_offset().value() != 0 {
                return Err(WireError::Fragment);
            }
            if let Some(e) = stopped {
                return Err(e);
            }
        }
        LaxIpSlice::Ipv6(v6) => {
            // Only iterate the extension headers when all were read: etherparse 0.16 (and 0.21)
            // `Ipv6ExtensionSliceIter` follows the last header's next-header field past the end
            // of the slice after a lax parse stopped early, an out-of-bounds read.
            if let Some(e) = stopped {
                return Err(e);
            }
            let later_fragment = v6.extensions().clone().into_iter().any(|ext| match ext {
                Ipv6ExtensionSlice::Fragment(f) => ipv6_fragment_offset(f.slice()) != 0,
                _ => false,
            });
            if later_fragment {
                return Err(WireError::Fragment);
            }
        }
    }
    let payload = ip.payload();
    let (proto, dst_port, tcp_flags, data) = match payload.ip_number {
        IpNumber::TCP => {
            let (port, flags) = parse_tcp(payload.payload)?;
            (Proto::Tcp, port, flags, &[][..])
        }
        IpNumber::UDP => {
            let udp =
                UdpHeaderSlice::from_slice(payload.payload).map_err(|_| WireError::Truncated)?;
            let rest = &payload.payload[udp.slice().len()..];
            // The header's length bounds the data (Ethernet pads short frames); a capture cut
            // short by the snap length has less.
            let said = usize::from(udp.length()).saturating_sub(8);
            let data = &rest[..said.min(rest.len())];
            (Proto::Udp, udp.destination_port(), TcpFlags(0), data)
        }
        _ => return Err(WireError::NotTransport),
    };
    Ok((
        Knock {
            src: ip.source_addr(),
            dst: ip.destination_addr(),
            proto,
            dst_port,
            tcp_flags,
        },
        data,
    ))
}

/// The fragment offset (in 8-byte units) of an IPv6 fragment header: the top 13 bits of bytes
/// 2 and 3 (RFC 8200 section 4.5). Read here because etherparse 0.16's
/// `Ipv6FragmentHeaderSlice::fragment_offset` decodes them with the IPv4 layout (fixed in 0.21).
fn ipv6_fragment_offset(header: &[u8]) -> u16 {
    match header.first_chunk::<4>() {
        Some(h) => u16::from_be_bytes([h[2], h[3]]) >> 3,
        // Unreachable: etherparse checked the 8-byte header. Not a first fragment, then.
        None => u16::MAX,
    }
}

/// The flags port knocking knows (FIN to URG); ECE, CWR and NS are ignored.
const TCP_FLAGS_MASK: u8 = 0x3f;

/// Destination port and flags of a TCP header.
fn parse_tcp(data: &[u8]) -> Result<(u16, TcpFlags), WireError> {
    match TcpHeaderSlice::from_slice(data) {
        Ok(h) => {
            let bits = [
                (h.fin(), TcpFlags::FIN),
                (h.syn(), TcpFlags::SYN),
                (h.rst(), TcpFlags::RST),
                (h.psh(), TcpFlags::PSH),
                (h.ack(), TcpFlags::ACK),
                (h.urg(), TcpFlags::URG),
            ];
            let flags = bits
                .iter()
                .filter(|(set, _)| *set)
                .fold(0, |a, (_, b)| a | b);
            Ok((h.destination_port(), TcpFlags(flags)))
        }
        Err(tcp::HeaderSliceError::Content(_)) => Err(WireError::Malformed),
        // Cut off inside the header (before the end of the options, say): ports, data offset
        // and flags are in the first 14 bytes, and that is all a knock needs.
        Err(tcp::HeaderSliceError::Len(_)) => {
            let h = data.first_chunk::<14>().ok_or(WireError::Truncated)?;
            if h[12] >> 4 < 5 {
                return Err(WireError::Malformed);
            }
            Ok((
                u16::from_be_bytes([h[2], h[3]]),
                TcpFlags(h[13] & TCP_FLAGS_MASK),
            ))
        }
    }
}

/// Packets for tests, written byte by byte (checksums correct: `tcpdump -vv` agrees), and
/// builders for the capture filter's tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use super::LinkType;

    pub(crate) const CLIENT4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);
    pub(crate) const GATEWAY4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    pub(crate) const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 5);
    pub(crate) const GATEWAY6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

    /// Concatenates two byte arrays at compile time (`C` must be `A + B`).
    const fn cat<const A: usize, const B: usize, const C: usize>(
        a: [u8; A],
        b: [u8; B],
    ) -> [u8; C] {
        assert!(A + B == C, "cat: the lengths do not add up");
        let mut out = [0u8; C];
        let mut i = 0;
        while i < A {
            out[i] = a[i];
            i += 1;
        }
        while i < C {
            out[i] = b[i - A];
            i += 1;
        }
        out
    }

    /// Ethernet destination 02:00:00:00:00:01 (the gateway), source 02:00:00:00:00:02 (the
    /// knocking client).
    const ETH_ADDRS: [u8; 12] = [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    /// Ethernet addresses and EtherType IPv4.
    const ETH_IPV4: [u8; 14] = cat(ETH_ADDRS, [0x08, 0x00]);
    /// Ethernet addresses and EtherType IPv6.
    const ETH_IPV6: [u8; 14] = cat(ETH_ADDRS, [0x86, 0xdd]);

    /// An IPv4 header without options from 203.0.113.5 to 192.0.2.1 (identification 0x1c46,
    /// DF, TTL 64): total length `len`, `protocol`, header `checksum`.
    const fn ipv4(len: u16, protocol: u8, checksum: u16) -> [u8; 20] {
        let (l, c) = (len.to_be_bytes(), checksum.to_be_bytes());
        [
            0x45, 0x00, l[0], l[1], 0x1c, 0x46, 0x40, 0x00, 0x40, protocol, c[0], c[1], 203, 0,
            113, 5, 192, 0, 2, 1,
        ]
    }

    /// An IPv6 header from 2001:db8::5 to 2001:db8::1 (traffic class and flow label 0, hop
    /// limit 64): `payload` length, `next` header.
    const fn ipv6(payload: u16, next: u8) -> [u8; 40] {
        let l = payload.to_be_bytes();
        #[rustfmt::skip]
        let header = [
            0x60, 0, 0, 0, l[0], l[1], next, 64,
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, // source 2001:db8::5
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // destination 2001:db8::1
        ];
        header
    }

    /// A 20-byte TCP header from port 40000 to `port` (sequence 0x01020304, no acknowledgment,
    /// window 64240): `flags`, `checksum`.
    const fn tcp(port: u16, flags: u8, checksum: u16) -> [u8; 20] {
        let (p, c) = (port.to_be_bytes(), checksum.to_be_bytes());
        [
            0x9c, 0x40, p[0], p[1], 1, 2, 3, 4, 0, 0, 0, 0, 0x50, flags, 0xfa, 0xf0, c[0], c[1], 0,
            0,
        ]
    }

    /// A UDP datagram from port 40001 to `port` with the 4-byte payload 'knok': `checksum`.
    const fn udp_knok(port: u16, checksum: u16) -> [u8; 12] {
        let (p, c) = (port.to_be_bytes(), checksum.to_be_bytes());
        [
            0x9c, 0x41, p[0], p[1], 0x00, 0x0c, c[0], c[1], b'k', b'n', b'o', b'k',
        ]
    }

    /// IPv4, UDP with a 4-byte payload: 203.0.113.5:40001 -> 192.0.2.1:8000.
    const IPV4_UDP: [u8; 32] = cat(ipv4(32, 17, 0x2080), udp_knok(8000, 0x6b73));

    /// Ethernet, IPv4, TCP SYN with an MSS option: 203.0.113.5:40000 -> 192.0.2.1:7000.
    pub(crate) const ETH_IPV4_TCP_SYN: [u8; 58] = cat(
        ETH_IPV4,
        cat::<20, 24, 44>(
            ipv4(44, 6, 0x207f),
            [
                0x9c, 0x40, // TCP source port 40000
                0x1b, 0x58, // TCP destination port 7000
                0x01, 0x02, 0x03, 0x04, // sequence number
                0x00, 0x00, 0x00, 0x00, // acknowledgment number
                0x60, // data offset 6 (24 bytes), reserved, NS 0
                0x02, // flags 0x02: SYN
                0xfa, 0xf0, // window 64240
                0xe3, 0x8f, // checksum
                0x00, 0x00, // urgent pointer
                0x02, 0x04, 0x05, 0xb4, // options: MSS 1460
            ],
        ),
    );

    /// Ethernet, IPv4, UDP with a 4-byte payload: 203.0.113.5:40001 -> 192.0.2.1:8000.
    pub(crate) const ETH_IPV4_UDP: [u8; 46] = cat(ETH_IPV4, IPV4_UDP);

    /// Ethernet, one 802.1Q tag (VLAN 10), IPv4, TCP SYN to port 7001.
    pub(crate) const ETH_VLAN_IPV4_TCP: [u8; 58] = cat(
        cat::<12, 6, 18>(
            ETH_ADDRS,
            [
                0x81, 0x00, // EtherType 802.1Q VLAN
                0x00, 0x0a, // VLAN TCI: PCP 0, DEI 0, VID 10
                0x08, 0x00, // EtherType IPv4
            ],
        ),
        cat::<20, 20, 40>(ipv4(40, 6, 0x2083), tcp(7001, 0x02, 0xfb4a)),
    );

    /// Ethernet, QinQ (802.1ad VLAN 100 then 802.1Q VLAN 10), IPv4, ECN-setup TCP SYN to port
    /// 7002 (flags 0xc2: SYN, ECE, CWR).
    pub(crate) const ETH_QINQ_IPV4_TCP: [u8; 62] = cat(
        cat::<12, 10, 22>(
            ETH_ADDRS,
            [
                0x88, 0xa8, // EtherType 802.1ad service tag
                0x00, 0x64, // VLAN TCI: PCP 0, DEI 0, VID 100
                0x81, 0x00, // EtherType 802.1Q customer tag
                0x00, 0x0a, // VLAN TCI: PCP 0, DEI 0, VID 10
                0x08, 0x00, // EtherType IPv4
            ],
        ),
        cat::<20, 20, 40>(ipv4(40, 6, 0x2083), tcp(7002, 0xc2, 0xfa89)),
    );

    /// Ethernet, IPv6, TCP SYN: [2001:db8::5]:40000 -> [2001:db8::1]:7000.
    pub(crate) const ETH_IPV6_TCP: [u8; 74] = cat(
        ETH_IPV6,
        cat::<40, 20, 60>(ipv6(20, 6), tcp(7000, 0x02, 0x9ddb)),
    );

    /// Ethernet, IPv6, hop-by-hop options, destination options, TCP RST to port 7003.
    pub(crate) const ETH_IPV6_HBH_DSTOPTS_TCP: [u8; 90] = cat(
        ETH_IPV6,
        cat::<40, 36, 76>(
            ipv6(36, 0), // next header 0 (hop-by-hop options)
            cat::<16, 20, 36>(
                [
                    0x3c, // hop-by-hop: next header 60 (destination options)
                    0x00, // header extension length 0 (8 bytes)
                    0x01, 0x04, 0x00, 0x00, 0x00, 0x00, // PadN option, 4 bytes of padding
                    0x06, // destination options: next header 6 (TCP)
                    0x00, // header extension length 0 (8 bytes)
                    0x01, 0x04, 0x00, 0x00, 0x00, 0x00, // PadN option, 4 bytes of padding
                ],
                tcp(7003, 0x04, 0x9dd6),
            ),
        ),
    );

    /// Ethernet, IPv6, fragment header (offset 0, more fragments), the first 16 bytes of a UDP
    /// datagram to port 8001.
    pub(crate) const ETH_IPV6_FRAG_FIRST: [u8; 78] = cat(
        ETH_IPV6,
        cat::<40, 24, 64>(
            ipv6(24, 44), // next header 44 (fragment)
            [
                0x11, 0x00, // fragment: next header 17 (UDP), reserved
                0x00, 0x01, // fragment offset 0, M=1 (more fragments follow)
                0x00, 0x00, 0xca, 0xfe, // identification
                0x9c, 0x41, // UDP source port 40001
                0x1f, 0x41, // UDP destination port 8001
                0x00, 0x1f, // UDP length 31 (the whole datagram)
                0xd1, 0x0c, // checksum
                0x6b, 0x6e, 0x6f, 0x63, 0x6b, 0x20, 0x6b,
                0x6e, // the first 8 bytes of the payload
            ],
        ),
    );

    /// Ethernet, IPv6, fragment header (offset 16 bytes): the second fragment of the datagram
    /// above.
    pub(crate) const ETH_IPV6_FRAG_LATER: [u8; 77] = cat(
        ETH_IPV6,
        cat::<40, 23, 63>(
            ipv6(23, 44), // next header 44 (fragment)
            [
                0x11, 0x00, // fragment: next header 17 (UDP), reserved
                0x00, 0x10, // fragment offset 2 (16 bytes), M=0 (last fragment)
                0x00, 0x00, 0xca, 0xfe, // identification
                0x6f, 0x63, 0x6b, 0x20, 0x6b, 0x6e, 0x6f, 0x63, 0x6b, 0x20, 0x6b, 0x6e, 0x6f, 0x63,
                0x6b, // the rest of the UDP payload: no UDP header here
            ],
        ),
    );

    /// Linux cooked capture (SLL), IPv4, TCP SYN to port 7000.
    pub(crate) const SLL_IPV4_TCP: [u8; 56] = cat(
        [
            0x00, 0x00, // SLL packet type 0 (to us)
            0x00, 0x01, // ARPHRD_ETHER
            0x00, 0x06, // link-layer address length 6
            0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, // link-layer address, padded to 8
            0x08, 0x00, // protocol: EtherType IPv4
        ],
        cat::<20, 20, 40>(ipv4(40, 6, 0x2083), tcp(7000, 0x02, 0xfb4b)),
    );

    /// Linux cooked capture v2 (SLL2), IPv6, UDP to port 8000.
    pub(crate) const SLL2_IPV6_UDP: [u8; 72] = cat(
        [
            0x86, 0xdd, // SLL2 protocol: EtherType IPv6
            0x00, 0x00, // reserved
            0x00, 0x00, 0x00, 0x02, // interface index 2
            0x00, 0x01, // ARPHRD_ETHER
            0x00, // packet type 0 (to us)
            0x06, // link-layer address length 6
            0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, // link-layer address, padded to 8
        ],
        cat::<40, 12, 52>(ipv6(12, 17), udp_knok(8000, 0x0e03)),
    );

    /// Raw IPv4 (no link header), TCP SYN+ACK to port 7000.
    pub(crate) const RAW_IPV4_TCP: [u8; 40] = cat(ipv4(40, 6, 0x2083), tcp(7000, 0x12, 0xfb3b));

    /// Raw IPv6 (no link header), TCP FIN+PSH+ACK+URG to port 7000.
    pub(crate) const RAW_IPV6_TCP: [u8; 60] = cat(ipv6(20, 6), tcp(7000, 0x39, 0x9da4));

    /// BSD loopback (DLT_NULL) from a little-endian host (address family 2, AF_INET), IPv4, UDP
    /// to port 8000.
    pub(crate) const NULL_IPV4_UDP: [u8; 36] = cat([0x02, 0x00, 0x00, 0x00], IPV4_UDP);

    /// Ethernet, ARP request: who has 192.0.2.1?
    pub(crate) const ETH_ARP: [u8; 42] = cat(
        cat::<12, 2, 14>(ETH_ADDRS, [0x08, 0x06]), // EtherType ARP
        [
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00,
            0x01, // ARP: hardware Ethernet, protocol IPv4, sizes 6 and 4, opcode 1 (request)
            0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0xcb, 0x00, 0x71,
            0x05, // sender 02:00:00:00:00:02, 203.0.113.5
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0x00, 0x02,
            0x01, // target 00:00:00:00:00:00, 192.0.2.1
        ],
    );

    /// Ethernet, IPv4, ICMP echo request.
    pub(crate) const ETH_IPV4_ICMP: [u8; 46] = cat(
        ETH_IPV4,
        cat::<20, 12, 32>(
            ipv4(32, 1, 0x2090),
            [
                0x08, 0x00, // ICMP type 8 (echo request), code 0
                0x06, 0xfa, // checksum
                0x12, 0x34, 0x00, 0x01, // identifier 0x1234, sequence 1
                0x70, 0x69, 0x6e, 0x67, // payload 'ping'
            ],
        ),
    );

    /// Every fixture with its link type.
    pub(crate) const ALL: [(&str, LinkType, &[u8]); 15] = [
        ("ETH_IPV4_TCP_SYN", LinkType::Ethernet, &ETH_IPV4_TCP_SYN),
        ("ETH_IPV4_UDP", LinkType::Ethernet, &ETH_IPV4_UDP),
        ("ETH_VLAN_IPV4_TCP", LinkType::Ethernet, &ETH_VLAN_IPV4_TCP),
        ("ETH_QINQ_IPV4_TCP", LinkType::Ethernet, &ETH_QINQ_IPV4_TCP),
        ("ETH_IPV6_TCP", LinkType::Ethernet, &ETH_IPV6_TCP),
        (
            "ETH_IPV6_HBH_DSTOPTS_TCP",
            LinkType::Ethernet,
            &ETH_IPV6_HBH_DSTOPTS_TCP,
        ),
        (
            "ETH_IPV6_FRAG_FIRST",
            LinkType::Ethernet,
            &ETH_IPV6_FRAG_FIRST,
        ),
        (
            "ETH_IPV6_FRAG_LATER",
            LinkType::Ethernet,
            &ETH_IPV6_FRAG_LATER,
        ),
        ("SLL_IPV4_TCP", LinkType::LinuxSll, &SLL_IPV4_TCP),
        ("SLL2_IPV6_UDP", LinkType::LinuxSll2, &SLL2_IPV6_UDP),
        ("RAW_IPV4_TCP", LinkType::RawIp, &RAW_IPV4_TCP),
        ("RAW_IPV6_TCP", LinkType::RawIp, &RAW_IPV6_TCP),
        ("NULL_IPV4_UDP", LinkType::Null, &NULL_IPV4_UDP),
        ("ETH_ARP", LinkType::Ethernet, &ETH_ARP),
        ("ETH_IPV4_ICMP", LinkType::Ethernet, &ETH_IPV4_ICMP),
    ];

    /// An Ethernet frame from the client's address of `dst`'s family to `dst`: TCP with `flags`
    /// ([`crate::knock::TcpFlags`] bits), or UDP if `flags` is `None`; tagged with `vlan` if given.
    pub(crate) fn eth_frame(
        dst: IpAddr,
        dst_port: u16,
        flags: Option<u8>,
        vlan: Option<u16>,
    ) -> Vec<u8> {
        use crate::knock::TcpFlags;
        use etherparse::PacketBuilder;

        let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1]);
        let ip = match dst {
            IpAddr::V4(d) => eth.ipv4(CLIENT4.octets(), d.octets(), 64),
            IpAddr::V6(d) => eth.ipv6(CLIENT6.octets(), d.octets(), 64),
        };
        let mut frame = Vec::new();
        match flags {
            None => ip.udp(40001, dst_port).write(&mut frame, b"knok").unwrap(),
            Some(f) => {
                let mut t = ip.tcp(40000, dst_port, 0x0102_0304, 64240);
                if f & TcpFlags::FIN != 0 {
                    t = t.fin();
                }
                if f & TcpFlags::SYN != 0 {
                    t = t.syn();
                }
                if f & TcpFlags::RST != 0 {
                    t = t.rst();
                }
                if f & TcpFlags::PSH != 0 {
                    t = t.psh();
                }
                if f & TcpFlags::ACK != 0 {
                    t = t.ack(1);
                }
                if f & TcpFlags::URG != 0 {
                    t = t.urg(0);
                }
                t.write(&mut frame, &[]).unwrap();
            }
        }
        if let Some(id) = vlan {
            insert_vlan_tag(&mut frame, 0x8100, id);
        }
        frame
    }

    /// Inserts a VLAN tag (`tpid`, VLAN `id`) right after the Ethernet addresses.
    pub(crate) fn insert_vlan_tag(frame: &mut Vec<u8>, tpid: u16, id: u16) {
        let tag = [tpid.to_be_bytes(), id.to_be_bytes()].concat();
        frame.splice(12..12, tag);
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::fixtures::*;
    use super::*;

    const SYN: u8 = TcpFlags::SYN;
    const ACK: u8 = TcpFlags::ACK;

    fn knock4(proto: Proto, dst_port: u16, flags: u8) -> Knock {
        Knock {
            src: IpAddr::V4(CLIENT4),
            dst: IpAddr::V4(GATEWAY4),
            proto,
            dst_port,
            tcp_flags: TcpFlags(flags),
        }
    }

    fn knock6(proto: Proto, dst_port: u16, flags: u8) -> Knock {
        Knock {
            src: IpAddr::V6(CLIENT6),
            dst: IpAddr::V6(GATEWAY6),
            proto,
            dst_port,
            tcp_flags: TcpFlags(flags),
        }
    }

    #[test]
    fn ethernet_ipv4_tcp_syn() {
        assert_eq!(
            parse(LinkType::Ethernet, &ETH_IPV4_TCP_SYN),
            Ok(knock4(Proto::Tcp, 7000, SYN))
        );
    }

    #[test]
    fn ethernet_ipv4_udp() {
        assert_eq!(
            parse(LinkType::Ethernet, &ETH_IPV4_UDP),
            Ok(knock4(Proto::Udp, 8000, 0))
        );
    }

    #[test]
    fn ethernet_vlan_ipv4_tcp() {
        assert_eq!(
            parse(LinkType::Ethernet, &ETH_VLAN_IPV4_TCP),
            Ok(knock4(Proto::Tcp, 7001, SYN))
        );
    }

    #[test]
    fn ethernet_qinq_ipv4_tcp_ignores_ecn_flags() {
        assert_eq!(
            parse(LinkType::Ethernet, &ETH_QINQ_IPV4_TCP),
            Ok(knock4(Proto::Tcp, 7002, SYN))
        );
    }

    #[test]
    fn any_number_of_vlan_tags() {
        let mut frame = ETH_VLAN_IPV4_TCP.to_vec();
        for (tpid, id) in [(0x8100, 20), (0x88a8, 30), (0x9100, 40), (0x9100, 50)] {
            insert_vlan_tag(&mut frame, tpid, id);
            assert_eq!(
                parse(LinkType::Ethernet, &frame),
                Ok(knock4(Proto::Tcp, 7001, SYN))
            );
        }
        // Tags all the way to the end of the capture.
        let tags: Vec<u8> = [0x81, 0x00, 0x00, 0x0a].repeat(8);
        let frame = [&ETH_VLAN_IPV4_TCP[..12], &tags].concat();
        assert_eq!(parse(LinkType::Ethernet, &frame), Err(WireError::Truncated));
    }

    #[test]
    fn ethernet_ipv6_tcp() {
        assert_eq!(
            parse(LinkType::Ethernet, &ETH_IPV6_TCP),
            Ok(knock6(Proto::Tcp, 7000, SYN))
        );
    }

    #[test]
    fn ethernet_ipv6_extension_headers_tcp() {
        assert_eq!(
            parse(LinkType::Ethernet, &ETH_IPV6_HBH_DSTOPTS_TCP),
            Ok(knock6(Proto::Tcp, 7003, TcpFlags::RST))
        );
        // Cut inside the destination options header.
        let cut = &ETH_IPV6_HBH_DSTOPTS_TCP[..14 + 40 + 8 + 4];
        assert_eq!(parse(LinkType::Ethernet, cut), Err(WireError::Truncated));
        // A hop-by-hop header that is not first.
        let mut bad = ETH_IPV6_HBH_DSTOPTS_TCP;
        bad[14 + 40 + 8] = 0; // destination options: next header 0 (hop-by-hop)
        assert_eq!(parse(LinkType::Ethernet, &bad), Err(WireError::Malformed));
    }

    /// The first fragment (offset 0, M=1) is a knock; etherparse 0.16 reads its offset as 256.
    #[test]
    fn ipv6_fragments() {
        assert_eq!(
            parse(LinkType::Ethernet, &ETH_IPV6_FRAG_FIRST),
            Ok(knock6(Proto::Udp, 8001, 0))
        );
        assert_eq!(
            parse(LinkType::Ethernet, &ETH_IPV6_FRAG_LATER),
            Err(WireError::Fragment)
        );
    }

    #[test]
    fn ipv4_fragments() {
        // ETH_IPV4_UDP with flags MF, offset 0: the first fragment, ports present.
        let mut first = ETH_IPV4_UDP;
        first[20] = 0x20;
        first[21] = 0x00;
        assert_eq!(
            parse(LinkType::Ethernet, &first),
            Ok(knock4(Proto::Udp, 8000, 0))
        );
        // Offset 185 (1480 bytes): a later fragment; its first bytes are not a UDP header.
        let mut later = ETH_IPV4_UDP;
        later[20] = 0x00;
        later[21] = 185;
        assert_eq!(parse(LinkType::Ethernet, &later), Err(WireError::Fragment));
    }

    #[test]
    fn linux_cooked_v1() {
        assert_eq!(
            parse(LinkType::LinuxSll, &SLL_IPV4_TCP),
            Ok(knock4(Proto::Tcp, 7000, SYN))
        );
        // ARPHRD_PPP (512), as `ppp0` and `-i any` give: etherparse 0.16 refuses it, we do not.
        let mut ppp = SLL_IPV4_TCP;
        ppp[2..4].copy_from_slice(&512u16.to_be_bytes());
        assert_eq!(
            parse(LinkType::LinuxSll, &ppp),
            Ok(knock4(Proto::Tcp, 7000, SYN))
        );
        let mut netlink = SLL_IPV4_TCP;
        netlink[2..4].copy_from_slice(&824u16.to_be_bytes());
        assert_eq!(parse(LinkType::LinuxSll, &netlink), Err(WireError::Link));
        let mut llc = SLL_IPV4_TCP;
        llc[14..16].copy_from_slice(&4u16.to_be_bytes()); // ETH_P_802_2
        assert_eq!(parse(LinkType::LinuxSll, &llc), Err(WireError::Link));
    }

    #[test]
    fn linux_cooked_v2_ipv6_udp() {
        assert_eq!(
            parse(LinkType::LinuxSll2, &SLL2_IPV6_UDP),
            Ok(knock6(Proto::Udp, 8000, 0))
        );
        let mut arp = SLL2_IPV6_UDP;
        arp[0..2].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(parse(LinkType::LinuxSll2, &arp), Err(WireError::NotIp));
    }

    #[test]
    fn raw_ip() {
        assert_eq!(
            parse(LinkType::RawIp, &RAW_IPV4_TCP),
            Ok(knock4(Proto::Tcp, 7000, SYN | ACK))
        );
        let fpau = TcpFlags::FIN | TcpFlags::PSH | ACK | TcpFlags::URG;
        assert_eq!(
            parse(LinkType::RawIp, &RAW_IPV6_TCP),
            Ok(knock6(Proto::Tcp, 7000, fpau))
        );
        assert_eq!(
            parse(LinkType::Ipv4, &RAW_IPV4_TCP),
            Ok(knock4(Proto::Tcp, 7000, SYN | ACK))
        );
        assert_eq!(
            parse(LinkType::Ipv6, &RAW_IPV6_TCP),
            Ok(knock6(Proto::Tcp, 7000, fpau))
        );
        // The link type and the packet disagree on the version.
        assert_eq!(
            parse(LinkType::Ipv4, &RAW_IPV6_TCP),
            Err(WireError::Malformed)
        );
        assert_eq!(
            parse(LinkType::Ipv6, &RAW_IPV4_TCP),
            Err(WireError::Malformed)
        );
        let mut v5 = RAW_IPV4_TCP;
        v5[0] = 0x55;
        assert_eq!(parse(LinkType::RawIp, &v5), Err(WireError::NotIp));
        assert_eq!(parse(LinkType::RawIp, &[]), Err(WireError::Truncated));
    }

    #[test]
    fn bsd_loopback_both_byte_orders() {
        assert_eq!(
            parse(LinkType::Null, &NULL_IPV4_UDP),
            Ok(knock4(Proto::Udp, 8000, 0))
        );
        let big_endian = [&[0, 0, 0, 2], &NULL_IPV4_UDP[4..]].concat();
        assert_eq!(
            parse(LinkType::Null, &big_endian),
            Ok(knock4(Proto::Udp, 8000, 0))
        );
        for af in [10u32, 24, 28, 30] {
            for header in [af.to_le_bytes(), af.to_be_bytes()] {
                let frame = [&header[..], &RAW_IPV6_TCP].concat();
                assert_eq!(
                    parse(LinkType::Null, &frame).map(|k| k.dst),
                    Ok(IpAddr::V6(GATEWAY6)),
                    "AF {af}"
                );
            }
        }
        let appletalk = [&16u32.to_le_bytes()[..], &RAW_IPV4_TCP].concat();
        assert_eq!(parse(LinkType::Null, &appletalk), Err(WireError::NotIp));
    }

    #[test]
    fn openbsd_loopback_is_network_order() {
        let frame = [&2u32.to_be_bytes()[..], &RAW_IPV4_TCP].concat();
        assert_eq!(
            parse(LinkType::Loop, &frame),
            Ok(knock4(Proto::Tcp, 7000, SYN | ACK))
        );
        let frame = [&2u32.to_le_bytes()[..], &RAW_IPV4_TCP].concat();
        assert_eq!(parse(LinkType::Loop, &frame), Err(WireError::NotIp));
    }

    #[test]
    fn arp_is_not_ip() {
        assert_eq!(parse(LinkType::Ethernet, &ETH_ARP), Err(WireError::NotIp));
    }

    #[test]
    fn icmp_is_not_transport() {
        assert_eq!(
            parse(LinkType::Ethernet, &ETH_IPV4_ICMP),
            Err(WireError::NotTransport)
        );
    }

    #[test]
    fn ieee_802_3_length_field_is_an_unsupported_link() {
        let mut llc = ETH_ARP;
        llc[12..14].copy_from_slice(&38u16.to_be_bytes()); // a length, as STP BPDUs carry
        assert_eq!(parse(LinkType::Ethernet, &llc), Err(WireError::Link));
    }

    #[test]
    fn tcp_header_cut_after_the_flags_is_a_knock() {
        // The SYN's TCP header is 24 bytes; keep 14 (ports to flags).
        let cut = &ETH_IPV4_TCP_SYN[..14 + 20 + 14];
        assert_eq!(
            parse(LinkType::Ethernet, cut),
            Ok(knock4(Proto::Tcp, 7000, SYN))
        );
        let cut = &ETH_IPV4_TCP_SYN[..14 + 20 + 13];
        assert_eq!(parse(LinkType::Ethernet, cut), Err(WireError::Truncated));
    }

    #[test]
    fn lengths_in_headers_are_not_trusted() {
        // Ethernet padding to the 60-byte minimum frame after a 40-byte IPv4 packet.
        let padded = [&RAW_IPV4_TCP[..], &[0; 6]].concat();
        assert_eq!(
            parse(LinkType::RawIp, &padded),
            Ok(knock4(Proto::Tcp, 7000, SYN | ACK))
        );
        // Total length 0, as captured before segmentation offload fills it in.
        let mut tso = RAW_IPV4_TCP;
        tso[2..4].copy_from_slice(&[0, 0]);
        assert_eq!(
            parse(LinkType::RawIp, &tso),
            Ok(knock4(Proto::Tcp, 7000, SYN | ACK))
        );
        // Total length and payload length claiming more than was captured.
        let mut long = RAW_IPV4_TCP;
        long[2..4].copy_from_slice(&u16::MAX.to_be_bytes());
        assert!(parse(LinkType::RawIp, &long).is_ok());
        let mut long6 = RAW_IPV6_TCP;
        long6[4..6].copy_from_slice(&u16::MAX.to_be_bytes());
        assert!(parse(LinkType::RawIp, &long6).is_ok());
    }

    #[test]
    fn malformed_headers() {
        let mut ihl = RAW_IPV4_TCP;
        ihl[0] = 0x44; // IHL 4: 16 bytes, shorter than the fixed header
        assert_eq!(parse(LinkType::RawIp, &ihl), Err(WireError::Malformed));
        let mut doff = RAW_IPV4_TCP;
        doff[20 + 12] = 0x40; // data offset 4
        assert_eq!(parse(LinkType::RawIp, &doff), Err(WireError::Malformed));
        assert_eq!(
            parse(LinkType::RawIp, &doff[..20 + 14]),
            Err(WireError::Malformed)
        );
    }

    #[test]
    fn the_filter_builder_makes_what_the_parser_reads() {
        let dst = IpAddr::V4(GATEWAY4);
        let k = parse(
            LinkType::Ethernet,
            &eth_frame(dst, 7000, Some(SYN), Some(7)),
        )
        .unwrap();
        assert_eq!(k, knock4(Proto::Tcp, 7000, SYN));
        let dst6 = IpAddr::V6(GATEWAY6);
        let k = parse(LinkType::Ethernet, &eth_frame(dst6, 9, None, None)).unwrap();
        assert_eq!(k, knock6(Proto::Udp, 9, 0));
    }

    /// Every prefix of every fixture: no panic, and a cut packet is either refused or read as the
    /// same knock as the whole packet (a cut never invents a knock).
    #[test]
    fn every_prefix_of_every_fixture() {
        for (name, link, bytes) in ALL {
            let whole = parse(link, bytes);
            for len in 0..bytes.len() {
                if let Ok(k) = parse(link, &bytes[..len]) {
                    assert_eq!(Ok(k), whole, "{name}[..{len}]");
                }
            }
            // The link header alone is never a knock.
            assert!(parse(link, &bytes[..4.min(bytes.len())]).is_err(), "{name}");
        }
    }

    /// xorshift64: deterministic, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Random bytes for every link type, and random mutations of the fixtures (which reach
    /// deeper than random bytes do). The assertions: no panic, and the mutations reach both
    /// knocks and every refusal the parser has.
    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut seen = WireStats::default();
        let mut knocks = 0;
        for link in LinkType::ALL {
            for _ in 0..3000 {
                let len = rng.below(160);
                let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                let _ = parse(link, &bytes);
            }
        }
        for _ in 0..20_000 {
            let (_, link, fixture) = ALL[rng.below(ALL.len())];
            let mut bytes = fixture.to_vec();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(bytes.len());
                bytes[i] = rng.next() as u8;
            }
            bytes.truncate(rng.below(bytes.len() + 1).max(bytes.len() / 2));
            match parse(link, &bytes) {
                Ok(_) => knocks += 1,
                Err(e) => seen.record(&e),
            }
        }
        assert!(knocks > 0);
        for (label, n) in seen.iter() {
            assert!(n > 0, "no mutation produced {label}: {seen}");
        }
    }

    /// Writes the fixtures as seeds for the fuzz target `wire` (`fuzz/corpus/wire/`): the
    /// first byte is the link type's index in [`LinkType::ALL`], the rest the packet. Run by
    /// `scripts/fuzz-seeds.sh`; the seeds are committed.
    #[test]
    #[ignore = "writes fuzz/corpus/wire; run by scripts/fuzz-seeds.sh"]
    fn write_fuzz_seeds() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/wire");
        std::fs::create_dir_all(&dir).unwrap();
        let loop_v4 = [&[0, 0, 0, 2][..], &RAW_IPV4_TCP].concat();
        let extra: [(&str, LinkType, &[u8]); 3] = [
            ("IPV4_TCP", LinkType::Ipv4, &RAW_IPV4_TCP),
            ("IPV6_TCP", LinkType::Ipv6, &RAW_IPV6_TCP),
            ("LOOP_IPV4_TCP", LinkType::Loop, &loop_v4),
        ];
        for (name, link, bytes) in ALL.iter().chain(&extra) {
            let index = LinkType::ALL.iter().position(|l| l == link).unwrap();
            let seed = [&[index as u8][..], bytes].concat();
            let path = dir.join(format!("seed-{}", name.to_ascii_lowercase()));
            std::fs::write(&path, seed).unwrap();
        }
        assert!(std::fs::read_dir(&dir).unwrap().count() >= ALL.len() + extra.len());
    }

    #[test]
    fn link_types_from_dlt() {
        let table = [
            (0, LinkType::Null),
            (1, LinkType::Ethernet),
            (12, LinkType::RawIp),
            (14, LinkType::RawIp),
            (101, LinkType::RawIp),
            (108, LinkType::Loop),
            (113, LinkType::LinuxSll),
            (228, LinkType::Ipv4),
            (229, LinkType::Ipv6),
            (276, LinkType::LinuxSll2),
        ];
        for (dlt, link) in table {
            assert_eq!(LinkType::from_dlt(dlt), Some(link), "{dlt}");
        }
        for dlt in [-1, 2, 105, 127, 192] {
            assert_eq!(LinkType::from_dlt(dlt), None, "{dlt}");
        }
    }

    #[test]
    fn stats_count_by_kind() {
        let mut stats = WireStats::default();
        assert_eq!(stats.total(), 0);
        for e in [WireError::Truncated, WireError::NotIp, WireError::Truncated] {
            stats.record(&e);
        }
        assert_eq!(stats.total(), 3);
        assert_eq!(stats.get(WireError::Truncated), 2);
        let labels: Vec<_> = stats.iter().collect();
        assert_eq!(
            labels,
            [
                ("truncated", 2),
                ("not_ip", 1),
                ("not_transport", 0),
                ("fragment", 0),
                ("link", 0),
                ("malformed", 0)
            ]
        );
        assert_eq!(
            stats.to_string(),
            "truncated=2 not_ip=1 not_transport=0 fragment=0 link=0 malformed=0"
        );
        let kinds: Vec<_> = WireError::ALL.iter().map(|e| e.kind()).collect();
        let mut unique = kinds.clone();
        unique.dedup();
        assert_eq!(kinds, unique);
    }
}
