//! The knock engine: a pure state machine from knocks to events.
//!
//! It has no I/O and reads no clock: every call takes `now`, and [`Tracker::poll_at`] tells the
//! caller when the engine next needs [`Tracker::poll`] (a sequence timeout). It returns what
//! happened ([`Event`]); the daemon decides what to do about it.
//!
//! Invariants:
//! - per source, one [`SourceState`] in a hash map (O(1) lookup), holding the progress of each
//!   door that source is part-way through; a source with no progress is not tracked;
//! - at most `max_sources` sources are tracked; a new source beyond that evicts the tracked
//!   source whose deadline comes first (the oldest attempt);
//! - every tracked source has a live entry in [`Timers`] at its earliest deadline; stale
//!   entries are skipped when popped and the timers are rebuilt when they outnumber live ones, so
//!   memory stays proportional to the number of tracked sources.
//!
//! Semantics (knockd's where knockd is right, fixed where it is wrong):
//! - doors progress in parallel: one knock may advance several doors;
//! - a TCP packet that fails a door's flag rule is ignored for that door;
//! - the timeout counts from the first knock of the attempt;
//! - a knock repeating the previous step (retransmitted SYN, `nc -z` retry) is ignored;
//! - the first step knocked again mid-sequence restarts the attempt;
//! - any other connection attempt (TCP without ACK, or UDP) to a port that is not the expected
//!   step resets the attempt, so an in-order port scan never walks a sequence open (knockd #71).
//!   TCP packets carrying ACK belong to established connections and never reset an attempt.

pub mod limits;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use smallvec::SmallVec;

use crate::knock::{FlagRule, Knock, KnockSpec, Proto, TcpFlags};
use crate::time::Instant;

/// What the engine needs to know of a door.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoorSpec {
    pub name: String,
    pub sequence: Vec<KnockSpec>,
    pub timeout: Duration,
    pub flags: FlagRule,
    pub target: Option<IpAddr>,
}

/// Why an attempt was abandoned before completion (other than a timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetReason {
    /// A connection attempt to a port that is not the expected step.
    WrongKnock(KnockSpec),
    /// The source was evicted to stay under the cap on tracked sources.
    Evicted,
}

/// What happened. `door` is an index into the doors the tracker was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// `src` completed step `stage` (1-based) of `of`.
    Stage {
        src: IpAddr,
        door: usize,
        stage: usize,
        of: usize,
    },
    /// `src` completed the whole sequence: open the door.
    Opened { src: IpAddr, door: usize },
    /// The attempt ran out of time after `stage` steps.
    Timeout {
        src: IpAddr,
        door: usize,
        stage: usize,
    },
    /// The attempt was abandoned after `stage` steps.
    Reset {
        src: IpAddr,
        door: usize,
        stage: usize,
        reason: ResetReason,
    },
}

impl Event {
    /// knockd's log line for the event (`SRC: door: Stage N`, `SRC: door: OPEN SESAME`, ...),
    /// with door names from `doors`.
    pub fn describe(&self, doors: &[DoorSpec]) -> String {
        let name = |door: usize| doors.get(door).map_or("?", |d| d.name.as_str());
        match *self {
            Event::Stage {
                src, door, stage, ..
            } => format!("{src}: {}: Stage {stage}", name(door)),
            Event::Opened { src, door } => format!("{src}: {}: OPEN SESAME", name(door)),
            Event::Timeout { src, door, stage } => {
                format!("{src}: {}: sequence timeout (stage {stage})", name(door))
            }
            Event::Reset {
                src,
                door,
                stage,
                reason: ResetReason::WrongKnock(k),
            } => format!(
                "{src}: {}: reset at stage {stage} by a knock on {k}",
                name(door)
            ),
            Event::Reset {
                src,
                door,
                stage,
                reason: ResetReason::Evicted,
            } => format!(
                "{src}: {}: attempt at stage {stage} evicted (too many sources)",
                name(door)
            ),
        }
    }
}

/// Counters, for the status page and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub knocks: u64,
    pub stages: u64,
    pub opens: u64,
    pub timeouts: u64,
    pub resets: u64,
    pub evictions: u64,
}

#[derive(Debug, Clone, Copy)]
struct Progress {
    door: u16,
    /// Steps completed so far (1..len).
    stage: u8,
    started: Instant,
}

#[derive(Debug)]
struct SourceState {
    generation: u64,
    /// The deadline this source is filed under in the timers.
    deadline: Instant,
    progress: Attempts,
}

/// A source's attempts, inline for the common case of one or two doors in progress (no
/// separate allocation: one cache miss per packet, not two).
type Attempts = SmallVec<[Progress; 2]>;

/// A timer: (deadline, generation of the source, source).
type Entry = (Instant, u64, IpAddr);

/// Deadlines of tracked sources, earliest first.
///
/// A deadline is `start + door timeout` and time only moves forward, so the deadlines filed
/// for one timeout value arrive in order: each distinct timeout gets a FIFO queue (O(1) push
/// and pop, sequential memory, no sift through a large heap). A deadline that would break a
/// queue's order (a source whose earliest attempt changed to an older one) goes to a small
/// binary heap instead.
#[derive(Debug, Default)]
struct Timers {
    queues: Vec<(Duration, VecDeque<Entry>)>,
    heap: BinaryHeap<Reverse<Entry>>,
}

impl Timers {
    fn push(&mut self, timeout: Duration, entry: Entry) {
        let queue = match self.queues.iter().position(|(t, _)| *t == timeout) {
            Some(i) => &mut self.queues[i].1,
            None => {
                self.queues.push((timeout, VecDeque::new()));
                &mut self.queues.last_mut().expect("just pushed").1
            }
        };
        if queue.back().is_none_or(|back| back.0 <= entry.0) {
            queue.push_back(entry);
        } else {
            self.heap.push(Reverse(entry));
        }
    }

    /// Where the earliest entry is: `Some(i)` for queue i, `None` for the heap.
    fn earliest(&self) -> Option<(Entry, Option<usize>)> {
        let mut best = self.heap.peek().map(|Reverse(e)| (*e, None));
        for (i, (_, q)) in self.queues.iter().enumerate() {
            if let Some(front) = q.front() {
                if best.is_none_or(|(b, _)| front.0 < b.0) {
                    best = Some((*front, Some(i)));
                }
            }
        }
        best
    }

    fn peek(&self) -> Option<Entry> {
        self.earliest().map(|(e, _)| e)
    }

    fn pop(&mut self) -> Option<Entry> {
        let (entry, place) = self.earliest()?;
        match place {
            Some(i) => self.queues[i].1.pop_front(),
            None => self.heap.pop().map(|Reverse(e)| e),
        };
        Some(entry)
    }

    fn len(&self) -> usize {
        self.heap.len() + self.queues.iter().map(|(_, q)| q.len()).sum::<usize>()
    }

    /// Replaces every entry with `entries`.
    fn rebuild(&mut self, mut entries: Vec<(Duration, Entry)>) {
        entries.sort_by_key(|(_, e)| *e);
        self.queues.clear();
        self.heap.clear();
        for (timeout, entry) in entries {
            self.push(timeout, entry);
        }
    }
}

/// The per-source, per-door knock state.
#[derive(Debug)]
pub struct Tracker {
    doors: Vec<DoorSpec>,
    sources: HashMap<IpAddr, SourceState>,
    timers: Timers,
    max_sources: usize,
    next_generation: u64,
    stats: Stats,
}

impl Tracker {
    pub fn new(doors: Vec<DoorSpec>, max_sources: usize) -> Self {
        assert!(
            doors.len() <= usize::from(u16::MAX),
            "more doors than the engine indexes"
        );
        Tracker {
            doors,
            sources: HashMap::new(),
            timers: Timers::default(),
            max_sources: max_sources.max(1),
            next_generation: 0,
            stats: Stats::default(),
        }
    }

    pub fn doors(&self) -> &[DoorSpec] {
        &self.doors
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Number of sources with an attempt in progress.
    pub fn tracked_sources(&self) -> usize {
        self.sources.len()
    }

    /// Attempts in progress: (source, door index, steps done, started).
    pub fn attempts(&self) -> impl Iterator<Item = (IpAddr, usize, usize, Instant)> + '_ {
        self.sources.iter().flat_map(|(src, s)| {
            s.progress
                .iter()
                .map(move |p| (*src, usize::from(p.door), usize::from(p.stage), p.started))
        })
    }

    /// Replaces the doors (config reload). Attempts in progress are kept for doors that still
    /// exist under the same name with the same sequence, flags and target; the new timeout
    /// applies to them.
    pub fn set_doors(&mut self, doors: Vec<DoorSpec>, max_sources: usize) {
        let remap: Vec<Option<u16>> = self
            .doors
            .iter()
            .map(|old| {
                doors
                    .iter()
                    .position(|new| {
                        new.name == old.name
                            && new.sequence == old.sequence
                            && new.flags == old.flags
                            && new.target == old.target
                    })
                    .and_then(|i| u16::try_from(i).ok())
            })
            .collect();
        self.doors = doors;
        self.max_sources = max_sources.max(1);
        for state in self.sources.values_mut() {
            state
                .progress
                .retain_mut(|p| match remap[usize::from(p.door)] {
                    Some(new) => {
                        p.door = new;
                        true
                    }
                    None => false,
                });
        }
        self.sources.retain(|_, s| !s.progress.is_empty());
        while self.sources.len() > self.max_sources {
            if !self.evict_one() {
                break;
            }
        }
        self.rebuild_timers();
    }

    /// When [`Tracker::poll`] must next be called, if ever.
    pub fn poll_at(&mut self) -> Option<Instant> {
        while let Some((deadline, generation, src)) = self.timers.peek() {
            if self.is_live(deadline, generation, src) {
                return Some(deadline);
            }
            self.timers.pop();
        }
        None
    }

    /// Expires every attempt whose time is up at `now`.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Event>) {
        while let Some((deadline, generation, src)) = self.timers.peek() {
            if deadline > now {
                break;
            }
            self.timers.pop();
            if self.is_live(deadline, generation, src) {
                self.expire_source(src, now, out);
            }
        }
    }

    /// Applies one knock seen at `now`. `dst_is_local` says whether the knock was addressed to
    /// one of the capturing host's own addresses (doors without a target only count those).
    pub fn on_knock(
        &mut self,
        now: Instant,
        knock: &Knock,
        dst_is_local: bool,
        out: &mut Vec<Event>,
    ) {
        self.stats.knocks += 1;
        let src = knock.src;
        if self.sources.get(&src).is_some_and(|s| s.deadline <= now) {
            self.expire_source(src, now, out);
        }
        let Tracker {
            doors,
            sources,
            stats,
            ..
        } = self;
        let existing = sources.get_mut(&src);
        let existed = existing.is_some();
        let mut fresh = Attempts::new();
        let progress = match existing {
            Some(state) => &mut state.progress,
            None => &mut fresh,
        };
        for (index, door) in doors.iter().enumerate() {
            if door.sequence.is_empty() {
                // A door with no sequence (a used-up one-time list) is disabled.
                continue;
            }
            let to_door = match door.target {
                Some(target) => knock.dst == target,
                None => dst_is_local,
            };
            if to_door && (knock.proto == Proto::Udp || door.flags.matches(knock.tcp_flags)) {
                step(index, door, progress, knock, now, stats, out);
            }
        }
        if existed {
            let state = self.sources.get_mut(&src).expect("checked above");
            if state.progress.is_empty() {
                self.sources.remove(&src);
                return;
            }
            let (deadline, timeout) = deadline_of(&self.doors, &state.progress);
            if deadline != state.deadline {
                state.deadline = deadline;
                self.timers.push(timeout, (deadline, state.generation, src));
                self.maybe_compact();
            }
        } else if !fresh.is_empty() {
            // A new source: make room under the cap.
            while self.sources.len() >= self.max_sources {
                if !self.evict_one_into(out) {
                    break;
                }
            }
            self.next_generation += 1;
            let (deadline, timeout) = deadline_of(&self.doors, &fresh);
            let generation = self.next_generation;
            self.sources.insert(
                src,
                SourceState {
                    generation,
                    deadline,
                    progress: fresh,
                },
            );
            self.timers.push(timeout, (deadline, generation, src));
            self.maybe_compact();
        }
    }

    fn is_live(&self, deadline: Instant, generation: u64, src: IpAddr) -> bool {
        self.sources
            .get(&src)
            .is_some_and(|s| s.generation == generation && s.deadline == deadline)
    }

    /// Drops the attempts of `src` that have timed out at `now`, re-filing the source under its
    /// next deadline or forgetting it.
    fn expire_source(&mut self, src: IpAddr, now: Instant, out: &mut Vec<Event>) {
        let Some(mut state) = self.sources.remove(&src) else {
            return;
        };
        let doors = &self.doors;
        let stats = &mut self.stats;
        state.progress.retain(|p| {
            let door = usize::from(p.door);
            if p.started + doors[door].timeout <= now {
                stats.timeouts += 1;
                out.push(Event::Timeout {
                    src,
                    door,
                    stage: usize::from(p.stage),
                });
                false
            } else {
                true
            }
        });
        if state.progress.is_empty() {
            return;
        }
        let (deadline, timeout) = deadline_of(&self.doors, &state.progress);
        if deadline != state.deadline {
            state.deadline = deadline;
            self.timers.push(timeout, (deadline, state.generation, src));
        }
        self.sources.insert(src, state);
    }

    fn evict_one(&mut self) -> bool {
        let mut sink = Vec::new();
        self.evict_one_into(&mut sink)
    }

    /// Forgets the tracked source whose deadline comes first.
    fn evict_one_into(&mut self, out: &mut Vec<Event>) -> bool {
        while let Some((deadline, generation, src)) = self.timers.pop() {
            if !self.is_live(deadline, generation, src) {
                continue;
            }
            let state = self.sources.remove(&src).expect("live entry has a source");
            self.stats.evictions += 1;
            for p in state.progress {
                out.push(Event::Reset {
                    src,
                    door: usize::from(p.door),
                    stage: usize::from(p.stage),
                    reason: ResetReason::Evicted,
                });
            }
            return true;
        }
        false
    }

    fn maybe_compact(&mut self) {
        if self.timers.len() > 2 * self.sources.len() + 1024 {
            self.rebuild_timers();
        }
    }

    fn rebuild_timers(&mut self) {
        let mut entries = Vec::with_capacity(self.sources.len());
        let doors = &self.doors;
        for (src, state) in self.sources.iter_mut() {
            let (deadline, timeout) = deadline_of(doors, &state.progress);
            state.deadline = deadline;
            entries.push((timeout, (deadline, state.generation, *src)));
        }
        self.timers.rebuild(entries);
    }
}

/// The earliest deadline of a source's attempts, and the timeout of the door it comes from.
fn deadline_of(doors: &[DoorSpec], progress: &[Progress]) -> (Instant, Duration) {
    progress
        .iter()
        .map(|p| {
            let timeout = doors[usize::from(p.door)].timeout;
            (p.started + timeout, timeout)
        })
        .min()
        .expect("a tracked source has progress")
}

/// Applies a knock (already known to be addressed to `door` and to pass its flags) to the
/// source's attempt at door `index`, if any, or starts one.
fn step(
    index: usize,
    door: &DoorSpec,
    progress: &mut Attempts,
    knock: &Knock,
    now: Instant,
    stats: &mut Stats,
    out: &mut Vec<Event>,
) {
    let src = knock.src;
    let spec = knock.spec();
    let len = door.sequence.len();
    let Some(i) = progress.iter().position(|p| usize::from(p.door) == index) else {
        if spec != door.sequence[0] {
            return;
        }
        stats.stages += 1;
        if len == 1 {
            stats.opens += 1;
            out.push(Event::Opened { src, door: index });
        } else {
            progress.push(Progress {
                door: index as u16,
                stage: 1,
                started: now,
            });
            out.push(Event::Stage {
                src,
                door: index,
                stage: 1,
                of: len,
            });
        }
        return;
    };
    let p = &mut progress[i];
    let done = usize::from(p.stage);
    if spec == door.sequence[done] {
        p.stage += 1;
        stats.stages += 1;
        if usize::from(p.stage) == len {
            progress.swap_remove(i);
            stats.opens += 1;
            out.push(Event::Opened { src, door: index });
        } else {
            out.push(Event::Stage {
                src,
                door: index,
                stage: usize::from(p.stage),
                of: len,
            });
        }
    } else if spec == door.sequence[done - 1] {
        // A retransmission or duplicate of the step just taken.
    } else if spec == door.sequence[0] {
        p.stage = 1;
        p.started = now;
        stats.stages += 1;
        out.push(Event::Stage {
            src,
            door: index,
            stage: 1,
            of: len,
        });
    } else if knock.proto == Proto::Udp || !knock.tcp_flags.has(TcpFlags::ACK) {
        // A connection attempt elsewhere: a scan crossing the sequence, or a wrong knock.
        progress.swap_remove(i);
        stats.resets += 1;
        out.push(Event::Reset {
            src,
            door: index,
            stage: done,
            reason: ResetReason::WrongKnock(spec),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    fn door(name: &str, seq: &[KnockSpec], timeout_s: u64) -> DoorSpec {
        DoorSpec {
            name: name.into(),
            sequence: seq.to_vec(),
            timeout: Duration::from_secs(timeout_s),
            flags: FlagRule::SYN_NOT_ACK,
            target: None,
        }
    }

    fn ssh() -> DoorSpec {
        door(
            "openSSH",
            &[
                KnockSpec::tcp(7000),
                KnockSpec::tcp(8000),
                KnockSpec::tcp(9000),
            ],
            5,
        )
    }

    fn syn(src: IpAddr, port: u16) -> Knock {
        Knock {
            src,
            dst: LOCAL,
            proto: Proto::Tcp,
            dst_port: port,
            tcp_flags: TcpFlags(TcpFlags::SYN),
        }
    }

    fn with_flags(mut k: Knock, flags: u8) -> Knock {
        k.tcp_flags = TcpFlags(flags);
        k
    }

    fn udp(src: IpAddr, port: u16) -> Knock {
        Knock {
            src,
            dst: LOCAL,
            proto: Proto::Udp,
            dst_port: port,
            tcp_flags: TcpFlags(0),
        }
    }

    /// Feeds a knock at `ms` milliseconds, after polling timers up to then, as the daemon does.
    fn knock(t: &mut Tracker, ms: u64, k: Knock) -> Vec<Event> {
        let mut out = Vec::new();
        let now = Instant::from_millis(ms);
        t.poll(now, &mut out);
        t.on_knock(now, &k, true, &mut out);
        out
    }

    fn opened(events: &[Event]) -> Vec<(IpAddr, usize)> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Opened { src, door } => Some((*src, *door)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn full_sequence_opens_with_stages() {
        let mut t = Tracker::new(vec![ssh()], 100);
        assert_eq!(
            knock(&mut t, 0, syn(ip(2), 7000)),
            vec![Event::Stage {
                src: ip(2),
                door: 0,
                stage: 1,
                of: 3
            }]
        );
        assert_eq!(
            knock(&mut t, 100, syn(ip(2), 8000)),
            vec![Event::Stage {
                src: ip(2),
                door: 0,
                stage: 2,
                of: 3
            }]
        );
        assert_eq!(
            knock(&mut t, 200, syn(ip(2), 9000)),
            vec![Event::Opened {
                src: ip(2),
                door: 0
            }]
        );
        assert_eq!(t.tracked_sources(), 0, "a completed attempt is forgotten");
        assert_eq!(t.poll_at(), None);
        assert_eq!(t.stats().opens, 1);
    }

    #[test]
    fn timeout_counts_from_first_knock_and_is_timer_driven() {
        let mut t = Tracker::new(vec![ssh()], 100);
        knock(&mut t, 0, syn(ip(2), 7000));
        knock(&mut t, 4000, syn(ip(2), 8000));
        // The deadline is first knock + 5 s, not last knock + 5 s.
        assert_eq!(t.poll_at(), Some(Instant::from_secs(5)));
        let mut out = Vec::new();
        t.poll(Instant::from_millis(4999), &mut out);
        assert!(out.is_empty());
        t.poll(Instant::from_secs(5), &mut out);
        assert_eq!(
            out,
            vec![Event::Timeout {
                src: ip(2),
                door: 0,
                stage: 2
            }]
        );
        assert_eq!(t.tracked_sources(), 0);
        assert_eq!(t.poll_at(), None);
        // The last step after the timeout opens nothing.
        assert!(knock(&mut t, 5100, syn(ip(2), 9000)).is_empty());
    }

    #[test]
    fn late_knock_expires_even_without_poll() {
        let mut t = Tracker::new(vec![ssh()], 100);
        let mut out = Vec::new();
        t.on_knock(Instant::ZERO, &syn(ip(2), 7000), true, &mut out);
        t.on_knock(Instant::from_secs(1), &syn(ip(2), 8000), true, &mut out);
        out.clear();
        t.on_knock(Instant::from_secs(6), &syn(ip(2), 9000), true, &mut out);
        assert_eq!(
            out,
            vec![Event::Timeout {
                src: ip(2),
                door: 0,
                stage: 2
            }]
        );
    }

    #[test]
    fn retransmitted_knock_does_not_reset() {
        let mut t = Tracker::new(vec![ssh()], 100);
        knock(&mut t, 0, syn(ip(2), 7000));
        // SYN retry 1 s later (nc -z against a dropping firewall), then the next steps.
        assert!(knock(&mut t, 1000, syn(ip(2), 7000)).is_empty());
        knock(&mut t, 1100, syn(ip(2), 8000));
        assert!(knock(&mut t, 2100, syn(ip(2), 8000)).is_empty());
        assert!(knock(&mut t, 2150, syn(ip(2), 8000)).is_empty());
        assert_eq!(
            opened(&knock(&mut t, 2200, syn(ip(2), 9000))),
            vec![(ip(2), 0)]
        );
    }

    #[test]
    fn in_order_full_port_scan_never_opens_ascending_door() {
        // knockd #71: nmap -r -p1-65535 crosses 1000, 2000, 3000 in order.
        let asc = door(
            "asc",
            &[
                KnockSpec::tcp(1000),
                KnockSpec::tcp(2000),
                KnockSpec::tcp(3000),
            ],
            25,
        );
        let mut t = Tracker::new(vec![asc], 100);
        let mut out = Vec::new();
        for port in 1..=u16::MAX {
            let now = Instant::from_micros(u64::from(port) * 10);
            t.poll(now, &mut out);
            t.on_knock(now, &syn(ip(9), port), true, &mut out);
        }
        assert!(opened(&out).is_empty(), "a port scan walked the door open");
        assert!(out.iter().any(|e| matches!(
            e,
            Event::Reset { stage: 1, reason: ResetReason::WrongKnock(k), .. } if k.port == 1001
        )));
        // The legitimate knock still works right after.
        knock(&mut t, 1000, syn(ip(9), 1000));
        knock(&mut t, 1001, syn(ip(9), 2000));
        assert_eq!(
            opened(&knock(&mut t, 1002, syn(ip(9), 3000))),
            vec![(ip(9), 0)]
        );
    }

    #[test]
    fn wrong_port_mid_sequence_resets() {
        let mut t = Tracker::new(vec![ssh()], 100);
        knock(&mut t, 0, syn(ip(2), 7000));
        knock(&mut t, 10, syn(ip(2), 8000));
        let out = knock(&mut t, 20, syn(ip(2), 443));
        assert_eq!(
            out,
            vec![Event::Reset {
                src: ip(2),
                door: 0,
                stage: 2,
                reason: ResetReason::WrongKnock(KnockSpec::tcp(443))
            }]
        );
        assert!(knock(&mut t, 30, syn(ip(2), 9000)).is_empty());
        // Out of order is wrong too.
        knock(&mut t, 40, syn(ip(2), 7000));
        assert!(matches!(
            knock(&mut t, 50, syn(ip(2), 9000))[..],
            [Event::Reset { .. }]
        ));
    }

    #[test]
    fn established_traffic_does_not_reset() {
        let mut t = Tracker::new(vec![ssh()], 100);
        knock(&mut t, 0, syn(ip(2), 7000));
        // The knocker's open SSH session keeps sending ACKs to port 22.
        for i in 0..10 {
            assert!(knock(
                &mut t,
                10 + i,
                with_flags(syn(ip(2), 22), TcpFlags::ACK | TcpFlags::PSH)
            )
            .is_empty());
        }
        knock(&mut t, 100, syn(ip(2), 8000));
        assert_eq!(
            opened(&knock(&mut t, 200, syn(ip(2), 9000))),
            vec![(ip(2), 0)]
        );
    }

    #[test]
    fn first_port_again_restarts_the_attempt() {
        let mut t = Tracker::new(vec![ssh()], 100);
        knock(&mut t, 0, syn(ip(2), 7000));
        knock(&mut t, 1000, syn(ip(2), 8000));
        assert_eq!(
            knock(&mut t, 4000, syn(ip(2), 7000)),
            vec![Event::Stage {
                src: ip(2),
                door: 0,
                stage: 1,
                of: 3
            }]
        );
        // The window restarted at 4 s: 8.5 s is inside it.
        assert_eq!(t.poll_at(), Some(Instant::from_secs(9)));
        knock(&mut t, 8000, syn(ip(2), 8000));
        assert_eq!(
            opened(&knock(&mut t, 8500, syn(ip(2), 9000))),
            vec![(ip(2), 0)]
        );
    }

    #[test]
    fn flags_mismatch_is_ignored_for_that_door_only() {
        let mut any = ssh();
        any.name = "any".into();
        any.flags = FlagRule::ANY;
        let mut t = Tracker::new(vec![ssh(), any], 100);
        knock(&mut t, 0, syn(ip(2), 7000));
        // A SYN+ACK to the expected port: door 0 (syn,!ack) ignores it, door 1 (any) advances.
        let out = knock(
            &mut t,
            10,
            with_flags(syn(ip(2), 8000), TcpFlags::SYN | TcpFlags::ACK),
        );
        assert_eq!(
            out,
            vec![Event::Stage {
                src: ip(2),
                door: 1,
                stage: 2,
                of: 3
            }]
        );
        // A FIN probe to a wrong port fails door 0's flags: ignored there; door 1 resets.
        let out = knock(&mut t, 20, with_flags(syn(ip(2), 1234), TcpFlags::FIN));
        assert!(matches!(out[..], [Event::Reset { door: 1, .. }]), "{out:?}");
        knock(&mut t, 30, syn(ip(2), 8000));
        assert_eq!(
            opened(&knock(&mut t, 40, syn(ip(2), 9000))),
            vec![(ip(2), 0)]
        );
    }

    #[test]
    fn doors_progress_in_parallel() {
        let a = door("a", &[KnockSpec::tcp(100), KnockSpec::tcp(200)], 5);
        let b = door(
            "b",
            &[
                KnockSpec::tcp(100),
                KnockSpec::tcp(200),
                KnockSpec::udp(300),
            ],
            5,
        );
        let mut t = Tracker::new(vec![a, b], 100);
        assert_eq!(knock(&mut t, 0, syn(ip(3), 100)).len(), 2);
        let out = knock(&mut t, 10, syn(ip(3), 200));
        assert_eq!(
            out,
            vec![
                Event::Opened {
                    src: ip(3),
                    door: 0
                },
                Event::Stage {
                    src: ip(3),
                    door: 1,
                    stage: 2,
                    of: 3
                }
            ]
        );
        assert_eq!(
            opened(&knock(&mut t, 20, udp(ip(3), 300))),
            vec![(ip(3), 1)]
        );
        // Another source is independent.
        assert!(opened(&knock(&mut t, 30, syn(ip(4), 200))).is_empty());
    }

    #[test]
    fn udp_and_repeated_ports() {
        let d = door(
            "rep",
            &[
                KnockSpec::udp(5000),
                KnockSpec::udp(5000),
                KnockSpec::tcp(5000),
            ],
            5,
        );
        let mut t = Tracker::new(vec![d], 100);
        knock(&mut t, 0, udp(ip(5), 5000));
        knock(&mut t, 10, udp(ip(5), 5000));
        // The TCP knock on the same port number is a different step.
        assert_eq!(
            opened(&knock(&mut t, 20, syn(ip(5), 5000))),
            vec![(ip(5), 0)]
        );
        // The wrong protocol on the right port resets.
        knock(&mut t, 100, udp(ip(5), 5000));
        assert!(matches!(
            knock(&mut t, 110, syn(ip(5), 5000))[..],
            [Event::Reset { .. }]
        ));
    }

    #[test]
    fn single_step_door_opens_at_once() {
        let mut t = Tracker::new(vec![door("one", &[KnockSpec::udp(9)], 5)], 100);
        assert_eq!(opened(&knock(&mut t, 0, udp(ip(6), 9))), vec![(ip(6), 0)]);
        assert_eq!(t.tracked_sources(), 0);
    }

    #[test]
    fn destination_rules_local_and_target() {
        let target: IpAddr = "10.0.0.50".parse().unwrap();
        let mut wake = door("wake", &[KnockSpec::tcp(1), KnockSpec::tcp(2)], 5);
        wake.target = Some(target);
        let mut t = Tracker::new(vec![ssh(), wake], 100);
        let mut out = Vec::new();
        // Not to a local address: the door without target ignores it.
        t.on_knock(Instant::ZERO, &syn(ip(2), 7000), false, &mut out);
        assert!(out.is_empty());
        // To the target (not local): only the target door counts it.
        let mut k = syn(ip(2), 1);
        k.dst = target;
        t.on_knock(Instant::ZERO, &k, false, &mut out);
        assert_eq!(
            out,
            vec![Event::Stage {
                src: ip(2),
                door: 1,
                stage: 1,
                of: 2
            }]
        );
        // A local knock to the target door's port does not count for it.
        out.clear();
        t.on_knock(Instant::from_millis(1), &syn(ip(2), 2), true, &mut out);
        assert!(opened(&out).is_empty());
    }

    #[test]
    fn cap_evicts_oldest_attempt() {
        let mut t = Tracker::new(vec![ssh()], 3);
        for i in 0..3u8 {
            knock(&mut t, u64::from(i) * 100, syn(ip(10 + i), 7000));
        }
        let out = knock(&mut t, 400, syn(ip(20), 7000));
        assert_eq!(t.tracked_sources(), 3);
        assert_eq!(t.stats().evictions, 1);
        assert!(out.contains(&Event::Reset {
            src: ip(10),
            door: 0,
            stage: 1,
            reason: ResetReason::Evicted
        }));
        // The evicted source starts over; the others are intact.
        assert!(opened(&knock(&mut t, 500, syn(ip(10), 8000))).is_empty());
        knock(&mut t, 500, syn(ip(11), 8000));
        assert_eq!(
            opened(&knock(&mut t, 600, syn(ip(11), 9000))),
            vec![(ip(11), 0)]
        );
    }

    #[test]
    fn timers_stay_proportional_to_tracked_sources() {
        let mut t = Tracker::new(vec![ssh()], 100_000);
        let mut out = Vec::new();
        // One source restarting its attempt 50 000 times files 50 000 deadlines.
        for i in 0..50_000u64 {
            out.clear();
            t.on_knock(Instant::from_micros(i), &syn(ip(1), 7000), true, &mut out);
            t.on_knock(Instant::from_micros(i), &syn(ip(1), 8000), true, &mut out);
        }
        assert_eq!(t.tracked_sources(), 1);
        assert!(
            t.timers.len() <= 2 * t.tracked_sources() + 1025,
            "heap {}",
            t.timers.len()
        );
    }

    #[test]
    fn flood_of_sources_is_capped() {
        let mut t = Tracker::new(vec![ssh()], 1000);
        let mut out = Vec::new();
        for i in 0..20_000u32 {
            out.clear();
            let src = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            t.on_knock(
                Instant::from_micros(u64::from(i)),
                &syn(src, 7000),
                true,
                &mut out,
            );
        }
        assert_eq!(t.tracked_sources(), 1000);
        assert_eq!(t.stats().evictions, 19_000);
        assert!(t.timers.len() <= 2 * 1000 + 1025);
    }

    #[test]
    fn reload_keeps_matching_attempts() {
        let mut t = Tracker::new(
            vec![
                ssh(),
                door("x", &[KnockSpec::tcp(7000), KnockSpec::tcp(1)], 5),
            ],
            100,
        );
        knock(&mut t, 0, syn(ip(2), 7000));
        assert_eq!(t.attempts().count(), 2);
        // New config: door x changed its sequence, openSSH moved and got a longer timeout.
        let mut longer = ssh();
        longer.timeout = Duration::from_secs(60);
        t.set_doors(
            vec![
                door("x", &[KnockSpec::tcp(7000), KnockSpec::tcp(2)], 5),
                longer,
            ],
            100,
        );
        let attempts: Vec<_> = t.attempts().collect();
        assert_eq!(attempts, vec![(ip(2), 1, 1, Instant::ZERO)]);
        assert_eq!(t.poll_at(), Some(Instant::from_secs(60)));
        knock(&mut t, 30_000, syn(ip(2), 8000));
        assert_eq!(
            opened(&knock(&mut t, 30_001, syn(ip(2), 9000))),
            vec![(ip(2), 1)]
        );
    }

    #[test]
    fn timers_pop_in_deadline_order_across_queues_and_heap() {
        let mut timers = Timers::default();
        let e = |ms: u64, g: u64| (Instant::from_millis(ms), g, ip(1));
        let (short, long) = (Duration::from_secs(5), Duration::from_secs(60));
        timers.push(long, e(60_000, 1));
        timers.push(short, e(5_000, 2));
        timers.push(short, e(6_000, 3));
        // Out of order for its queue: goes to the heap, still comes out in order.
        timers.push(short, e(5_500, 4));
        timers.push(long, e(61_000, 5));
        assert_eq!(timers.len(), 5);
        let order: Vec<u64> = std::iter::from_fn(|| timers.pop())
            .map(|(_, g, _)| g)
            .collect();
        assert_eq!(order, vec![2, 4, 3, 1, 5]);
        timers.rebuild(vec![(long, e(9, 7)), (short, e(3, 8))]);
        assert_eq!(timers.peek(), Some(e(3, 8)));
    }

    #[test]
    fn doors_with_different_timeouts_expire_in_order() {
        let short = door("short", &[KnockSpec::tcp(1), KnockSpec::tcp(2)], 2);
        let long = door("long", &[KnockSpec::tcp(1), KnockSpec::tcp(3)], 10);
        let mut t = Tracker::new(vec![long, short], 100);
        knock(&mut t, 0, syn(ip(2), 1));
        knock(&mut t, 1000, syn(ip(3), 1));
        let mut out = Vec::new();
        t.poll(Instant::from_secs(3), &mut out);
        assert_eq!(
            out,
            vec![
                Event::Timeout {
                    src: ip(2),
                    door: 1,
                    stage: 1
                },
                Event::Timeout {
                    src: ip(3),
                    door: 1,
                    stage: 1
                }
            ]
        );
        assert_eq!(t.poll_at(), Some(Instant::from_secs(10)));
        out.clear();
        t.poll(Instant::from_secs(11), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(t.tracked_sources(), 0);
    }

    #[test]
    fn door_without_sequence_is_disabled() {
        let mut t = Tracker::new(vec![door("used-up", &[], 5), ssh()], 100);
        assert_eq!(
            knock(&mut t, 0, syn(ip(2), 7000)),
            vec![Event::Stage {
                src: ip(2),
                door: 1,
                stage: 1,
                of: 3
            }]
        );
    }
}
