//! Live capture: one thread per interface, feeding parsed knocks into the daemon's channel.
//!
//! A capture thread opens its interface with libpcap (not promiscuous, small snaplen), applies
//! the filter the daemon publishes for it (re-applied whenever the interface's addresses or the
//! config change), parses each packet with [`crate::net::wire`] and sends the [`Knock`]s on in
//! batches (a datagram to an SPA door's port goes alone, with its data). It never logs per
//! packet: malformed packets and a full channel are counted. When the interface disappears or
//! goes down, the thread reports it and keeps trying to reopen it, so detection resumes
//! without a restart.
//!
//! **Blocks, not packets.** libpcap is opened without immediate mode, so on Linux it uses a
//! TPACKET_V3 ring: the kernel fills a block and hands it over when it is full or
//! [`BLOCK_TIMEOUT_MS`] after its first packet. The handle is non-blocking and the thread
//! waits in `poll(2)` on the ring and on an eventfd: it drains every packet the ring holds,
//! sends them as one message, and sleeps again. A flood costs one wake-up per block, not per
//! packet; an idle ring never wakes the thread (the block timer only retires a block that has
//! packets), and the daemon wakes it through the eventfd when it has something to say: a new
//! filter, or stop.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::knock::{Knock, Proto};
use crate::net::bpf;
use crate::net::wire::{self, LinkType};

/// Bytes kept of each packet: link, VLAN, IPv6 extension and transport headers, and a whole
/// SPA datagram (up to 1500 bytes of data; the filter passes only knock and SPA ports).
const SNAPLEN: i32 = 2048;
/// How long the kernel holds a TPACKET_V3 block that has packets before handing it over: the
/// most a knock waits in the ring (libpcap's packet buffer timeout; knockd uses 50 ms). It
/// bounds the wake-ups to 100 a second whatever the rate: bench/run.sh measured 4 µs a packet
/// at 5 000 packets/s with 4 ms (twice the wake-ups, each about 40 µs on a VM), 1.7 µs with
/// 10 ms, and a knock-to-open p99 of 11 ms.
pub const BLOCK_TIMEOUT_MS: i32 = 10;
/// At most this many knocks in one message to the daemon loop.
const BATCH: usize = 512;
/// The ring's size. It is mapped into the process and counts in its RSS, so it is half
/// libpcap's default: about 8 000 minimum-size frames, 50 ms of a 100 Mbit/s flood, while the
/// loop takes well under a millisecond for a block (bench/run.sh's 60 s flood at 190 000
/// packets/s lost none).
const RING_BYTES: i32 = 1 << 20;

/// What capture threads tell the daemon loop.
#[derive(Debug)]
pub enum CaptureEvent {
    /// Knocks in arrival order: everything one wake-up of the capture thread found.
    Knocks {
        iface: Arc<str>,
        knocks: Vec<Knock>,
    },
    /// A UDP datagram to an SPA door's port, with its data.
    Datagram {
        iface: Arc<str>,
        knock: Knock,
        data: Box<[u8]>,
    },
    Up {
        iface: Arc<str>,
        link: LinkType,
    },
    Down {
        iface: Arc<str>,
        error: String,
    },
}

/// Counters shared by every capture thread.
#[derive(Debug, Default)]
pub struct Counters {
    pub packets: AtomicU64,
    pub malformed: AtomicU64,
    /// Packets dropped because the daemon loop was behind (channel full).
    pub queue_full: AtomicU64,
}

/// What the capture filter is made of (see [`crate::net::bpf`]): the thread renders it for its
/// link type, which is known only once the interface is open.
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

/// The filter a capture thread should run, with a version so it notices a change.
#[derive(Debug, Default)]
struct FilterSlot {
    version: u64,
    spec: FilterSpec,
}

/// Wakes a capture thread waiting in `poll(2)` (an eventfd).
type Waker = Arc<nix::sys::eventfd::EventFd>;

/// A running capture thread.
pub struct Capture {
    pub iface: Arc<str>,
    filter: Arc<Mutex<FilterSlot>>,
    stop: Arc<AtomicBool>,
    waker: Waker,
    thread: Option<JoinHandle<()>>,
}

impl Capture {
    /// Starts capturing on `iface` with `filter`. While the interface cannot be opened, the
    /// thread tries again after 0.2 s, doubling up to `retry_max`, or at once when
    /// [`Capture::nudge`]d (the daemon does on every link announcement, and then passes a
    /// long `retry_max`: a wlan0 that is not plugged in costs no wake-ups).
    pub fn start<M: From<CaptureEvent> + Send + 'static>(
        iface: &str,
        filter: FilterSpec,
        tx: SyncSender<M>,
        counters: Arc<Counters>,
        retry_max: Duration,
    ) -> std::io::Result<Capture> {
        let iface: Arc<str> = Arc::from(iface);
        let slot = Arc::new(Mutex::new(FilterSlot {
            version: 1,
            spec: filter,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let waker = Arc::new(
            nix::sys::eventfd::EventFd::from_flags(
                nix::sys::eventfd::EfdFlags::EFD_CLOEXEC
                    | nix::sys::eventfd::EfdFlags::EFD_NONBLOCK,
            )
            .map_err(std::io::Error::from)?,
        );
        let thread = {
            let (iface, slot, stop) = (iface.clone(), slot.clone(), stop.clone());
            let waker = waker.clone();
            thread::Builder::new()
                .name(format!("capture-{iface}"))
                .spawn(move || capture_loop(iface, slot, stop, &waker, tx, counters, retry_max))?
        };
        Ok(Capture {
            iface,
            filter: slot,
            stop,
            waker,
            thread: Some(thread),
        })
    }

    /// Publishes a new filter and wakes the thread to apply it. Returns whether it changed.
    pub fn set_filter(&self, spec: &FilterSpec) -> bool {
        let changed = {
            let mut slot = self.filter.lock().expect("filter lock");
            let changed = slot.spec != *spec;
            if changed {
                slot.spec = spec.clone();
                slot.version += 1;
            }
            changed
        };
        if changed {
            self.wake();
        }
        changed
    }

    fn wake(&self) {
        let _ = self.waker.write(1);
    }

    /// Something changed on the system's links: a thread waiting to reopen its interface
    /// tries now. (An open capture notices nothing: it sees no new filter.)
    pub fn nudge(&self) {
        self.wake();
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake();
    }
}

fn capture_loop<M: From<CaptureEvent>>(
    iface: Arc<str>,
    slot: Arc<Mutex<FilterSlot>>,
    stop: Arc<AtomicBool>,
    waker: &Waker,
    tx: SyncSender<M>,
    counters: Arc<Counters>,
    retry_max: Duration,
) {
    let mut last_error: Option<String> = None;
    let mut backoff = Duration::from_millis(200);
    while !stop.load(Ordering::Relaxed) {
        let error = match read_until_error(&iface, &slot, &stop, waker, &tx, &counters) {
            Ok(()) => return,
            Err(e) => e,
        };
        if last_error.as_deref() != Some(error.as_str()) {
            let _ = tx.send(
                CaptureEvent::Down {
                    iface: iface.clone(),
                    error: error.clone(),
                }
                .into(),
            );
            last_error = Some(error);
        }
        // Retry soon, then less and less often up to `retry_max`; stop or a nudge (the
        // eventfd) ends the wait at once.
        let ms = u16::try_from(backoff.as_millis()).unwrap_or(u16::MAX);
        wait_readable(None, waker, nix::poll::PollTimeout::from(ms));
        backoff = (backoff * 2).min(retry_max);
    }
}

/// Opens the interface and reads until stopped (Ok) or an error (Err, the reason).
fn read_until_error<M: From<CaptureEvent>>(
    iface: &Arc<str>,
    slot: &Mutex<FilterSlot>,
    stop: &AtomicBool,
    waker: &Waker,
    tx: &SyncSender<M>,
    counters: &Counters,
) -> Result<(), String> {
    let mut cap = pcap::Capture::from_device(&**iface)
        .and_then(|c| {
            c.promisc(false)
                .snaplen(SNAPLEN)
                .timeout(BLOCK_TIMEOUT_MS)
                .buffer_size(RING_BYTES)
                .open()
        })
        .and_then(|c| c.setnonblock())
        .map_err(|e| format!("cannot capture on {iface}: {e}"))?;
    let dlt = cap.get_datalink().0;
    let link =
        LinkType::from_dlt(dlt).ok_or_else(|| format!("{iface}: unsupported link type {dlt}"))?;
    read_packets(iface, &mut cap, link, slot, stop, waker, tx, counters)
}

/// Waits until the ring (if any) has packets, the waker was written to, or `timeout`.
/// Empties the waker.
fn wait_readable(ring: Option<BorrowedFd<'_>>, waker: &Waker, timeout: nix::poll::PollTimeout) {
    use nix::poll::{poll, PollFd, PollFlags};
    let mut fds = vec![PollFd::new(waker.as_fd(), PollFlags::POLLIN)];
    if let Some(fd) = ring {
        fds.push(PollFd::new(fd, PollFlags::POLLIN));
    }
    // EINTR and the like: the caller looks at its state again either way.
    let _ = poll(&mut fds, timeout);
    if fds[0]
        .revents()
        .is_some_and(|r| r.contains(PollFlags::POLLIN))
    {
        let _ = waker.read();
    }
}

/// Hands a batch to the daemon loop; a full channel drops it (counted). False once the loop
/// is gone.
fn send_batch<M: From<CaptureEvent>>(
    iface: &Arc<str>,
    batch: &mut Vec<Knock>,
    tx: &SyncSender<M>,
    counters: &Counters,
) -> bool {
    if batch.is_empty() {
        return true;
    }
    let n = batch.len() as u64;
    let knocks = std::mem::replace(batch, Vec::with_capacity(BATCH));
    match tx.try_send(
        CaptureEvent::Knocks {
            iface: iface.clone(),
            knocks,
        }
        .into(),
    ) {
        Ok(()) => true,
        Err(TrySendError::Full(_)) => {
            counters.queue_full.fetch_add(n, Ordering::Relaxed);
            true
        }
        Err(TrySendError::Disconnected(_)) => false,
    }
}

#[allow(clippy::too_many_arguments)]
fn read_packets<M: From<CaptureEvent>>(
    iface: &Arc<str>,
    cap: &mut pcap::Capture<pcap::Active>,
    link: LinkType,
    slot: &Mutex<FilterSlot>,
    stop: &AtomicBool,
    waker: &Waker,
    tx: &SyncSender<M>,
    counters: &Counters,
) -> Result<(), String> {
    let mut applied = 0;
    let mut spa_ports: Vec<u16> = Vec::new();
    let mut announced = false;
    let mut batch: Vec<Knock> = Vec::with_capacity(BATCH);
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let (version, spec) = {
            let s = slot.lock().expect("filter lock");
            (s.version, (s.version != applied).then(|| s.spec.clone()))
        };
        if let Some(spec) = spec {
            let expr = spec.render(link);
            cap.filter(&expr, true)
                .map_err(|e| format!("{iface}: cannot apply filter `{expr}`: {e}"))?;
            tracing::debug!(interface = %iface, filter = %expr, "capture filter applied");
            applied = version;
            spa_ports = spec.spa_ports;
        }
        if !announced {
            announced = true;
            let _ = tx.send(
                CaptureEvent::Up {
                    iface: iface.clone(),
                    link,
                }
                .into(),
            );
        }
        // Drain the ring: every packet it holds, in batches.
        loop {
            match cap.next_packet() {
                Ok(packet) => {
                    counters.packets.fetch_add(1, Ordering::Relaxed);
                    match wire::parse_with_payload(link, packet.data) {
                        Ok((knock, data))
                            if knock.proto == Proto::Udp && spa_ports.contains(&knock.dst_port) =>
                        {
                            // In order: the knocks before it first.
                            if !send_batch(iface, &mut batch, tx, counters) {
                                return Ok(());
                            }
                            let event = CaptureEvent::Datagram {
                                iface: iface.clone(),
                                knock,
                                data: data.into(),
                            };
                            match tx.try_send(event.into()) {
                                Ok(()) => {}
                                Err(TrySendError::Full(_)) => {
                                    counters.queue_full.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(TrySendError::Disconnected(_)) => return Ok(()),
                            }
                        }
                        Ok((knock, _)) => {
                            batch.push(knock);
                            if batch.len() >= BATCH && !send_batch(iface, &mut batch, tx, counters)
                            {
                                return Ok(());
                            }
                        }
                        Err(_) => {
                            counters.malformed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                // The ring is empty (a non-blocking read).
                Err(pcap::Error::TimeoutExpired | pcap::Error::NoMorePackets) => break,
                Err(e) => return Err(format!("capture on {iface} stopped: {e}")),
            }
        }
        if !send_batch(iface, &mut batch, tx, counters) {
            return Ok(());
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        wait_readable(Some(cap.as_fd()), waker, nix::poll::PollTimeout::NONE);
    }
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

/// Tests: interfaces set by hand.
#[derive(Debug, Clone, Default)]
pub struct FixedInterfaces(pub std::sync::Arc<std::sync::Mutex<BTreeMap<String, Interface>>>);

impl InterfaceSource for FixedInterfaces {
    fn interfaces(&mut self) -> BTreeMap<String, Interface> {
        self.0.lock().expect("interfaces lock").clone()
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
