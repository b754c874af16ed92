//! Live capture: one libpcap handle per interface, read by the daemon loop itself.
//!
//! A [`Capture`] opens its interface with libpcap (not promiscuous, small snaplen) and applies
//! the filter the daemon gives it (again whenever the interface's addresses or the config
//! change). [`Capture::read`] parses each packet with [`crate::net::wire`] into a [`Packet`]
//! in the loop's reused buffer: no heap allocation per packet, no log line per packet
//! (malformed packets are counted). When the interface disappears or goes down, the capture
//! closes and is reopened later ([`Capture::retry_at`], or at once when
//! [`Capture::nudge`]d after a link announcement), so detection resumes without a restart.
//!
//! **Blocks, not packets, and one thread.** libpcap is opened without immediate mode, so on
//! Linux it uses a TPACKET_V3 ring: the kernel fills a block and hands it over when it is full
//! or [`BLOCK_TIMEOUT_MS`] after its first packet. The handle is non-blocking; the daemon loop
//! waits in `poll(2)` on every ring ([`Capture::fd`]) and on its mailbox, then drains what the
//! rings hold. A flood costs one wake-up of one thread per block: no hand-over from a capture
//! thread to the loop (that second wake-up was most of the cost at a few thousand packets a
//! second). An idle ring never wakes anything: the block timer only retires a block that has
//! packets.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use crate::knock::Packet;
use crate::knock::Proto;
use crate::net::bpf;
use crate::net::wire::{self, LinkType};
use crate::time::Instant;

/// Bytes kept of each packet: link, VLAN, IPv6 extension and transport headers, and a whole
/// SPA datagram (up to 1500 bytes of data; the filter passes only knock and SPA ports).
const SNAPLEN: i32 = 2048;
/// How long the kernel holds a TPACKET_V3 block that has packets before handing it over: the
/// most a knock waits in the ring (libpcap's packet buffer timeout; knockd uses 50 ms). It
/// bounds the wake-ups to 100 a second whatever the rate: bench/run.sh measured 4 µs a packet
/// at 5 000 packets/s with 4 ms (twice the wake-ups, each about 40 µs on a VM), 1.7 µs with
/// 10 ms, and a knock-to-open p99 of 11 ms.
pub const BLOCK_TIMEOUT_MS: i32 = 10;
/// The ring's size. It is mapped into the process and counts in its RSS, so it is half
/// libpcap's default: four blocks of 256 KiB (libpcap's TPACKET_V3 block), about 8 000
/// minimum-size frames of a flood, but only four 10 ms windows of sparse traffic: while the
/// loop waits for iptables or an fsync, [`crate::sys::busy`] keeps emptying it. The kernel
/// counts what it drops ([`Capture::count_drops`]).
const RING_BYTES: i32 = 1 << 20;
/// The first wait before reopening an interface that cannot be opened; it doubles up to the
/// capture's `retry_max`.
const FIRST_RETRY: Duration = Duration::from_millis(200);

/// A capture opening or closing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Up(LinkType),
    /// Closed, with the reason; reported once per distinct reason while it stays closed.
    Down(CaptureError),
}

/// Why a capture is not open (libpcap's own message kept as its reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    /// libpcap could not open the interface (gone, down, no permission).
    #[error("cannot capture on {iface}: {reason}")]
    Open { iface: String, reason: String },
    /// A link layer the wire parser does not read.
    #[error("{iface}: unsupported link type {dlt}")]
    LinkType { iface: String, dlt: i32 },
    /// The kernel refused the capture filter.
    #[error("{iface}: cannot apply filter `{filter}`: {reason}")]
    Filter {
        iface: String,
        filter: String,
        reason: String,
    },
    /// Reading failed on an open capture (the interface went away).
    #[error("capture on {iface} stopped: {reason}")]
    Stopped { iface: String, reason: String },
}

/// Counters of every capture.
#[derive(Debug, Default)]
pub struct Counters {
    pub packets: AtomicU64,
    pub malformed: AtomicU64,
    /// Packets the kernel dropped because its ring was full: the daemon loop was behind.
    pub queue_full: AtomicU64,
}

/// What the capture filter is made of (see [`crate::net::bpf`]): rendered for the link type,
/// which is known only once the interface is open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterSpec {
    pub local: Vec<IpAddr>,
    pub targets: Vec<IpAddr>,
    pub udp_ports: Vec<u16>,
    /// SPA doors' ports (also in `udp_ports`): their datagrams come with their data.
    pub spa_ports: Vec<u16>,
}

impl FilterSpec {
    pub fn render(&self, link: LinkType) -> String {
        bpf::filter_for_link(
            &bpf::FilterInput {
                local: &self.local,
                targets: &self.targets,
                udp_ports: &self.udp_ports,
            },
            link,
        )
    }
}

struct Open {
    cap: pcap::Capture<pcap::Active>,
    link: LinkType,
    /// The kernel's drop count at the last look (libpcap's total since opening).
    drops: u32,
}

enum State {
    Open(Open),
    Closed {
        retry_at: Instant,
        backoff: Duration,
        error: Option<CaptureError>,
    },
}

/// One interface's capture.
pub struct Capture {
    pub iface: Arc<str>,
    filter: FilterSpec,
    state: State,
    retry_max: Duration,
}

impl Capture {
    /// A capture of `iface`, closed: [`Capture::open_if_due`] opens it. While the interface
    /// cannot be opened, it is tried again after 0.2 s, doubling up to `retry_max`, or at
    /// once when [`Capture::nudge`]d (the daemon does on every link announcement, and then
    /// passes a long `retry_max`: a wlan0 that is not plugged in costs no wake-ups).
    pub fn new(iface: &str, filter: FilterSpec, retry_max: Duration, now: Instant) -> Capture {
        Capture {
            iface: Arc::from(iface),
            filter,
            state: State::Closed {
                retry_at: now,
                backoff: FIRST_RETRY,
                error: None,
            },
            retry_max,
        }
    }

    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open(_))
    }

    /// The ring to wait on, while open.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.state {
            State::Open(o) => Some(o.cap.as_fd()),
            State::Closed { .. } => None,
        }
    }

    /// When a closed capture tries again.
    pub fn retry_at(&self) -> Option<Instant> {
        match self.state {
            State::Open(_) => None,
            State::Closed { retry_at, .. } => Some(retry_at),
        }
    }

    /// Something changed on the system's links: a closed capture tries at once.
    pub fn nudge(&mut self, now: Instant) {
        if let State::Closed { retry_at, .. } = &mut self.state {
            *retry_at = now;
        }
    }

    /// Opens a closed capture whose retry time has come. Returns what changed: `Up`, or
    /// `Down` when it failed for a reason not reported yet.
    pub fn open_if_due(&mut self, now: Instant) -> Option<Change> {
        let State::Closed {
            retry_at,
            backoff,
            error,
        } = &mut self.state
        else {
            return None;
        };
        if now < *retry_at {
            return None;
        }
        match open(&self.iface, &self.filter) {
            Ok(o) => {
                let link = o.link;
                self.state = State::Open(o);
                Some(Change::Up(link))
            }
            Err(e) => {
                *retry_at = now + *backoff;
                *backoff = (*backoff * 2).min(self.retry_max);
                if error.as_ref() == Some(&e) {
                    return None;
                }
                *error = Some(e.clone());
                Some(Change::Down(e))
            }
        }
    }

    /// Takes a new filter, applied at once if open. Returns whether it changed, and `Down`
    /// if the capture closed because the filter could not be applied.
    pub fn set_filter(&mut self, spec: &FilterSpec, now: Instant) -> (bool, Option<Change>) {
        if self.filter == *spec {
            return (false, None);
        }
        self.filter = spec.clone();
        let State::Open(o) = &mut self.state else {
            return (true, None);
        };
        match apply(&self.iface, &mut o.cap, o.link, &self.filter) {
            Ok(()) => (true, None),
            Err(e) => (true, Some(self.close(e, now))),
        }
    }

    /// Reads at most `max` packets from the ring into `out` (appended, in arrival order).
    /// Returns how many packets it read (malformed ones included: fewer than `max` means the
    /// ring is empty now), and `Down` if the capture failed and closed.
    pub fn read(
        &mut self,
        max: usize,
        out: &mut VecDeque<Packet>,
        counters: &Counters,
        now: Instant,
    ) -> (usize, Option<Change>) {
        let State::Open(o) = &mut self.state else {
            return (0, None);
        };
        let spa = &self.filter.spa_ports;
        let mut n = 0;
        while n < max {
            match o.cap.next_packet() {
                Ok(packet) => {
                    n += 1;
                    match wire::parse_with_payload(o.link, packet.data) {
                        Ok((knock, data))
                            if knock.proto == Proto::Udp && spa.contains(&knock.dst_port) =>
                        {
                            out.push_back(Packet::Datagram(knock, data.into()));
                        }
                        Ok((knock, _)) => out.push_back(Packet::Knock(knock)),
                        Err(_) => {
                            counters.malformed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                // The ring is empty (a non-blocking read).
                Err(pcap::Error::TimeoutExpired | pcap::Error::NoMorePackets) => break,
                Err(e) => {
                    counters.packets.fetch_add(n as u64, Ordering::Relaxed);
                    let error = CaptureError::Stopped {
                        iface: self.iface.to_string(),
                        reason: e.to_string(),
                    };
                    return (n, Some(self.close(error, now)));
                }
            }
        }
        counters.packets.fetch_add(n as u64, Ordering::Relaxed);
        (n, None)
    }

    /// Adds the packets the kernel dropped since the last look (its ring was full) to
    /// `counters`.
    pub fn count_drops(&mut self, counters: &Counters) {
        if let State::Open(o) = &mut self.state {
            if let Ok(stats) = o.cap.stats() {
                let new = stats.dropped.wrapping_sub(o.drops);
                o.drops = stats.dropped;
                counters
                    .queue_full
                    .fetch_add(u64::from(new), Ordering::Relaxed);
            }
        }
    }

    fn close(&mut self, error: CaptureError, now: Instant) -> Change {
        self.state = State::Closed {
            retry_at: now + FIRST_RETRY,
            backoff: FIRST_RETRY * 2,
            error: Some(error.clone()),
        };
        Change::Down(error)
    }
}

/// Opens `iface`, non-blocking, with `filter` applied.
fn open(iface: &str, filter: &FilterSpec) -> Result<Open, CaptureError> {
    let mut cap = pcap::Capture::from_device(iface)
        .and_then(|c| {
            c.promisc(false)
                .snaplen(SNAPLEN)
                .timeout(BLOCK_TIMEOUT_MS)
                .buffer_size(RING_BYTES)
                .open()
        })
        .and_then(|c| c.setnonblock())
        .map_err(|e| CaptureError::Open {
            iface: iface.to_string(),
            reason: e.to_string(),
        })?;
    let dlt = cap.get_datalink().0;
    let link = LinkType::from_dlt(dlt).ok_or_else(|| CaptureError::LinkType {
        iface: iface.to_string(),
        dlt,
    })?;
    apply(iface, &mut cap, link, filter)?;
    Ok(Open {
        cap,
        link,
        drops: 0,
    })
}

fn apply(
    iface: &str,
    cap: &mut pcap::Capture<pcap::Active>,
    link: LinkType,
    filter: &FilterSpec,
) -> Result<(), CaptureError> {
    let expr = filter.render(link);
    cap.filter(&expr, true).map_err(|e| CaptureError::Filter {
        iface: iface.to_string(),
        filter: expr.clone(),
        reason: e.to_string(),
    })?;
    tracing::debug!(interface = %iface, filter = %expr, "capture filter applied");
    Ok(())
}

/// One interface as the system reports it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub up: bool,
    pub loopback: bool,
    pub addresses: Vec<IpAddr>,
}

/// Where the daemon reads the interfaces and their addresses.
pub trait InterfaceSource: Send {
    fn interfaces(&mut self) -> BTreeMap<String, Interface>;
}

/// The system's interfaces, as libpcap lists them.
#[derive(Debug, Default)]
pub struct SystemInterfaces;

impl InterfaceSource for SystemInterfaces {
    fn interfaces(&mut self) -> BTreeMap<String, Interface> {
        interfaces()
    }
}

/// The system's interfaces and their addresses (libpcap's list), by name.
pub fn interfaces() -> BTreeMap<String, Interface> {
    let devices = pcap::Device::list().unwrap_or_default();
    devices
        .into_iter()
        .map(|d| {
            let mut addresses: Vec<IpAddr> = d.addresses.iter().map(|a| a.addr).collect();
            addresses.sort();
            addresses.dedup();
            let iface = Interface {
                name: d.name.clone(),
                up: d.flags.is_up(),
                loopback: d.flags.is_loopback(),
                addresses,
            };
            (d.name, iface)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    /// libpcap hands out `struct pcap_pkthdr` (a `struct timeval`, then caplen and len) and the
    /// pcap crate reads it through the libc crate's timeval. Every libpcap knockgate is built
    /// against has a 64-bit time_t (amd64, arm64, and Debian 13's armhf libpcap0.8t64), so
    /// caplen sits at byte 16. An armv7 build without `--cfg libc_unstable_gnu_time_bits="64"`
    /// (scripts/cross.sh) would read caplen from the timestamp and slice past the packet: this
    /// fails there (it runs under qemu-arm in scripts/arm.sh).
    #[test]
    fn packet_headers_are_read_as_libpcap_with_a_64_bit_time_t_writes_them() {
        assert_eq!(std::mem::size_of::<libc::time_t>(), 8);
        assert_eq!(std::mem::offset_of!(pcap::PacketHeader, caplen), 16);
        assert_eq!(std::mem::offset_of!(pcap::PacketHeader, len), 20);
        assert_eq!(std::mem::size_of::<pcap::PacketHeader>(), 24);
    }
}
