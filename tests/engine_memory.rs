//! Memory per tracked source (issue 15: at most 100 bytes at 100 000 sources). Counted by a
//! global allocator around the real engine, so the figure is the heap the engine holds, not
//! an estimate: 100 000 sources part-way through a sequence, then the same after a flood of
//! new sources has churned through the cap for a while (evictions, timer queues, reuse of
//! freed slots).

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use knockgate::engine::{DoorSpec, Tracker};
use knockgate::knock::{FlagRule, Knock, KnockSpec, Proto, TcpFlags};
use knockgate::time::Instant;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SOURCES: u32 = 100_000;
const MAX_BYTES_PER_SOURCE: isize = 100;

fn syn(n: u32, port: u16) -> Knock {
    Knock {
        src: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)),
        dst: IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1)),
        proto: Proto::Tcp,
        dst_port: port,
        tcp_flags: TcpFlags(TcpFlags::SYN),
    }
}

#[test]
fn a_tracked_source_costs_at_most_100_bytes_at_100k_sources() {
    let door = DoorSpec {
        name: "openSSH".into(),
        sequence: vec![
            KnockSpec::tcp(7000),
            KnockSpec::tcp(8000),
            KnockSpec::tcp(9000),
        ],
        timeout: Duration::from_secs(25),
        flags: FlagRule::SYN_NOT_ACK,
        target: None,
    };
    let before = LIVE.load(Ordering::Relaxed);
    let mut t = Tracker::new(vec![door], SOURCES as usize);
    let mut events = Vec::new();
    for n in 0..SOURCES {
        events.clear();
        let now = Instant::from_micros(u64::from(n) * 10);
        t.on_knock(now, &syn(n, 7000), true, &mut events);
    }
    assert_eq!(t.tracked_sources(), SOURCES as usize);
    let filled = LIVE.load(Ordering::Relaxed) - before;
    // A flood of new sources through the full table: each evicts the oldest.
    for n in SOURCES..4 * SOURCES {
        events.clear();
        let now = Instant::from_micros(u64::from(n) * 10);
        t.on_knock(now, &syn(n, 7000), true, &mut events);
    }
    assert_eq!(t.tracked_sources(), SOURCES as usize);
    assert_eq!(t.stats().evictions, u64::from(3 * SOURCES));
    let churned = LIVE.load(Ordering::Relaxed) - before;
    let per = |bytes: isize| bytes / SOURCES as isize;
    eprintln!(
        "{} B per source when filled, {} B after 300 000 evictions",
        per(filled),
        per(churned)
    );
    assert!(
        per(filled) <= MAX_BYTES_PER_SOURCE,
        "{} B per source",
        per(filled)
    );
    assert!(
        per(churned) <= MAX_BYTES_PER_SOURCE,
        "{} B per source",
        per(churned)
    );
    drop(t);
}
