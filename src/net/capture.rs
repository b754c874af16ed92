//! Live capture: one thread per interface, feeding parsed knocks into the daemon's channel.
//!
//! A capture thread opens its interface with libpcap (not promiscuous, small snaplen, immediate
//! mode), applies the filter the daemon publishes for it (re-applied whenever the interface's
//! addresses or the config change), parses each packet with [`crate::net::wire`] and sends the
//! [`Knock`] on (with its data, for a datagram to an SPA door's port). It never logs per packet: malformed packets and a full channel are counted.
//! When the interface disappears or goes down, the thread reports it and keeps trying to
//! reopen it, so detection resumes without a restart.
//!
//! An idle capture blocks in libpcap (its read timeout does not wake an idle Linux capture), so
//! the daemon wakes a thread with `pcap_breakloop` whenever it has something to say: a new
//! filter, or stop.

use std::collections::BTreeMap;
use std::net::IpAddr;
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
/// libpcap read timeout; also how often a capture thread looks at its filter and stop flag.
const READ_TIMEOUT_MS: i32 = 500;

/// What capture threads tell the daemon loop.
#[derive(Debug)]
pub enum CaptureEvent {
    Knock {
        iface: Arc<str>,
        knock: Knock,
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

/// Wakes a capture thread blocked in libpcap; None while the interface is not open.
type Waker = Arc<Mutex<Option<pcap::BreakLoop>>>;

/// A running capture thread.
pub struct Capture {
    pub iface: Arc<str>,
    filter: Arc<Mutex<FilterSlot>>,
    stop: Arc<AtomicBool>,
    waker: Waker,
    thread: Option<JoinHandle<()>>,
}

impl Capture {
    /// Starts capturing on `iface` with `filter`.
    pub fn start<M: From<CaptureEvent> + Send + 'static>(
        iface: &str,
        filter: FilterSpec,
        tx: SyncSender<M>,
        counters: Arc<Counters>,
    ) -> std::io::Result<Capture> {
        let iface: Arc<str> = Arc::from(iface);
        let slot = Arc::new(Mutex::new(FilterSlot {
            version: 1,
            spec: filter,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let waker = Waker::default();
        let thread = {
            let (iface, slot, stop) = (iface.clone(), slot.clone(), stop.clone());
            let waker = waker.clone();
            thread::Builder::new()
                .name(format!("capture-{iface}"))
                .spawn(move || capture_loop(iface, slot, stop, &waker, tx, counters))?
        };
        Ok(Capture {
            iface,
            filter: slot,
            stop,
            waker,
            thread: Some(thread),
        })
    }

    /// Publishes a new filter; the thread applies it within one read timeout.
    /// Returns whether it changed.
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
        if let Some(b) = self.waker.lock().expect("waker lock").as_ref() {
            b.breakloop();
        }
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
        // Retry soon, then every second: an interface that comes back is picked up quickly.
        let mut slept = Duration::ZERO;
        while slept < backoff && !stop.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(100));
            slept += Duration::from_millis(100);
        }
        backoff = (backoff * 2).min(Duration::from_secs(1));
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
                .timeout(READ_TIMEOUT_MS)
                .immediate_mode(true)
                .open()
        })
        .map_err(|e| format!("cannot capture on {iface}: {e}"))?;
    let dlt = cap.get_datalink().0;
    let link =
        LinkType::from_dlt(dlt).ok_or_else(|| format!("{iface}: unsupported link type {dlt}"))?;
    *waker.lock().expect("waker lock") = Some(cap.breakloop_handle());
    let result = read_packets(iface, &mut cap, link, slot, stop, tx, counters);
    *waker.lock().expect("waker lock") = None;
    result
}

fn read_packets<M: From<CaptureEvent>>(
    iface: &Arc<str>,
    cap: &mut pcap::Capture<pcap::Active>,
    link: LinkType,
    slot: &Mutex<FilterSlot>,
    stop: &AtomicBool,
    tx: &SyncSender<M>,
    counters: &Counters,
) -> Result<(), String> {
    let mut applied = 0;
    let mut spa_ports: Vec<u16> = Vec::new();
    let mut announced = false;
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
        match cap.next_packet() {
            Ok(packet) => {
                counters.packets.fetch_add(1, Ordering::Relaxed);
                match wire::parse_with_payload(link, packet.data) {
                    Ok((knock, data)) => {
                        let event =
                            if knock.proto == Proto::Udp && spa_ports.contains(&knock.dst_port) {
                                CaptureEvent::Datagram {
                                    iface: iface.clone(),
                                    knock,
                                    data: data.into(),
                                }
                            } else {
                                CaptureEvent::Knock {
                                    iface: iface.clone(),
                                    knock,
                                }
                            };
                        match tx.try_send(event.into()) {
                            Ok(()) => {}
                            Err(TrySendError::Full(_)) => {
                                counters.queue_full.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(TrySendError::Disconnected(_)) => return Ok(()),
                        }
                    }
                    Err(_) => {
                        counters.malformed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            // A read timeout, or pcap_breakloop (the daemon has news): look at stop and filter.
            Err(pcap::Error::TimeoutExpired | pcap::Error::NoMorePackets) => {}
            Err(e) => return Err(format!("capture on {iface} stopped: {e}")),
        }
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
