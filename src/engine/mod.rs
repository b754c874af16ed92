//! The knock engine: a pure state machine from knocks to events.
//!
//! It has no I/O and reads no clock: every call takes `now`, and [`Tracker::poll_at`] tells the
//! caller when the engine next needs [`Tracker::poll`] (a sequence timeout). It returns what
//! happened ([`Event`]); the daemon decides what to do about it.
//!
//! Invariants:
//! - per source, one compact [`Source`] (48 bytes, in [`Sources`]: a slab indexed by a hash
//!   table, O(1) lookup), holding the progress of each door that source is part-way through; a
//!   source with no progress is not tracked;
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
        self.describe_named(doors.get(self.door()).map_or("?", |d| d.name.as_str()))
    }

    /// The index of the event's door.
    pub fn door(&self) -> usize {
        match *self {
            Event::Stage { door, .. }
            | Event::Opened { door, .. }
            | Event::Timeout { door, .. }
            | Event::Reset { door, .. } => door,
        }
    }

    /// knockd's log line for the event, its door being called `name`.
    pub fn describe_named(&self, name: &str) -> String {
        match *self {
            Event::Stage { src, stage, .. } => format!("{src}: {name}: Stage {stage}"),
            Event::Opened { src, .. } => format!("{src}: {name}: OPEN SESAME"),
            Event::Timeout { src, stage, .. } => {
                format!("{src}: {name}: sequence timeout (stage {stage})")
            }
            Event::Reset {
                src,
                stage,
                reason: ResetReason::WrongKnock(k),
                ..
            } => format!("{src}: {name}: reset at stage {stage} by a knock on {k}"),
            Event::Reset {
                src,
                stage,
                reason: ResetReason::Evicted,
                ..
            } => format!("{src}: {name}: attempt at stage {stage} evicted (too many sources)"),
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

/// A source's attempts while the engine works on them (copied out of its [`Source`] and back).
type Attempts = SmallVec<[Progress; 2]>;

/// A source address, compact: 16 bytes and the family (an IPv4 address is kept apart from
/// the IPv4-mapped IPv6 one, so a spoofed `::ffff:a.b.c.d` never stands for `a.b.c.d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
struct Key {
    bytes: [u8; 16],
    v6: bool,
}

impl From<IpAddr> for Key {
    fn from(ip: IpAddr) -> Key {
        match ip {
            IpAddr::V4(v4) => {
                let mut bytes = [0; 16];
                bytes[..4].copy_from_slice(&v4.octets());
                Key { bytes, v6: false }
            }
            IpAddr::V6(v6) => Key {
                bytes: v6.octets(),
                v6: true,
            },
        }
    }
}

impl From<Key> for IpAddr {
    fn from(k: Key) -> IpAddr {
        if k.v6 {
            IpAddr::from(k.bytes)
        } else {
            IpAddr::from([k.bytes[0], k.bytes[1], k.bytes[2], k.bytes[3]])
        }
    }
}

/// A tracked source, 48 bytes: its address, a generation (so that a timer filed for an
/// earlier occupant of the slot is recognised) and up to two attempts inline. A source with
/// more attempts at once (three doors part-way) keeps them all in [`Sources::spill`].
#[derive(Debug, Clone, Copy, Default)]
struct Source {
    key: Key,
    /// Inline attempts (0 to 2), or [`SPILLED`], or [`FREE`] for a slot on the free list.
    len: u8,
    stage: [u8; 2],
    door: [u16; 2],
    generation: u32,
    started: [Instant; 2],
}

const SPILLED: u8 = 0xfe;
const FREE: u8 = 0xff;

/// The tracked sources: a slab of [`Source`]s (stable indices, freed slots reused) and a hash
/// table of slab indices keyed by address (hashbrown's `HashTable`: 5 bytes a source, with
/// std's randomly keyed SipHash, so spoofed sources cannot aim at collisions). About 60 to 80
/// bytes a tracked source in all, timers included, instead of a map entry and heap per source.
#[derive(Debug, Default)]
struct Sources {
    index: hashbrown::HashTable<u32>,
    hasher: std::hash::RandomState,
    slab: Vec<Source>,
    free: Vec<u32>,
    spill: HashMap<u32, Vec<Progress>>,
    next_generation: u32,
}

impl Sources {
    fn hash(&self, key: &Key) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(key)
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    fn find(&self, key: &Key) -> Option<u32> {
        let slab = &self.slab;
        self.index
            .find(self.hash(key), |&i| slab[i as usize].key == *key)
            .copied()
    }

    fn live(&self, slot: u32) -> bool {
        self.slab.get(slot as usize).is_some_and(|s| s.len != FREE)
    }

    fn key(&self, slot: u32) -> Key {
        self.slab[slot as usize].key
    }

    fn generation(&self, slot: u32) -> u32 {
        self.slab[slot as usize].generation
    }

    fn load(&self, slot: u32) -> Attempts {
        let s = &self.slab[slot as usize];
        if s.len == SPILLED {
            return self
                .spill
                .get(&slot)
                .map_or_else(Attempts::new, |v| v.iter().copied().collect());
        }
        (0..usize::from(s.len.min(2)))
            .map(|i| Progress {
                door: s.door[i],
                stage: s.stage[i],
                started: s.started[i],
            })
            .collect()
    }

    fn store(&mut self, slot: u32, attempts: &[Progress]) {
        let s = &mut self.slab[slot as usize];
        if attempts.len() > 2 {
            s.len = SPILLED;
            self.spill.insert(slot, attempts.to_vec());
            return;
        }
        if s.len == SPILLED {
            self.spill.remove(&slot);
        }
        s.len = attempts.len() as u8;
        for (i, p) in attempts.iter().enumerate() {
            s.door[i] = p.door;
            s.stage[i] = p.stage;
            s.started[i] = p.started;
        }
    }

    /// Adds a source that is not tracked; returns its slot.
    fn insert(&mut self, key: Key, attempts: &[Progress]) -> u32 {
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        let source = Source {
            key,
            generation: self.next_generation,
            ..Source::default()
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slab[slot as usize] = source;
                slot
            }
            None => {
                self.slab.push(source);
                u32::try_from(self.slab.len() - 1).expect("fewer sources than u32::MAX")
            }
        };
        self.store(slot, attempts);
        let hash = self.hash(&key);
        let (slab, hasher) = (&self.slab, &self.hasher);
        self.index.insert_unique(hash, slot, |&i| {
            use std::hash::BuildHasher;
            hasher.hash_one(slab[i as usize].key)
        });
        slot
    }

    fn remove(&mut self, slot: u32) {
        let key = self.key(slot);
        let hash = self.hash(&key);
        if let Ok(entry) = self.index.find_entry(hash, |&i| i == slot) {
            entry.remove();
        }
        let s = &mut self.slab[slot as usize];
        if s.len == SPILLED {
            self.spill.remove(&slot);
        }
        s.len = FREE;
        self.free.push(slot);
    }

    fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.index.iter().copied()
    }
}

/// A timer: (deadline, generation of the source, slot of the source).
type Entry = (Instant, u32, u32);

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

    /// Replaces every entry with `entries`, giving back the memory of the old queues.
    fn rebuild(&mut self, mut entries: Vec<(Duration, Entry)>) {
        entries.sort_by_key(|(_, e)| *e);
        self.queues = Vec::new();
        self.heap = BinaryHeap::new();
        for (timeout, entry) in entries {
            self.push(timeout, entry);
        }
    }
}

/// The per-source, per-door knock state.
#[derive(Debug)]
pub struct Tracker {
    doors: Vec<DoorSpec>,
    sources: Sources,
    timers: Timers,
    max_sources: usize,
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
            sources: Sources::default(),
            timers: Timers::default(),
            max_sources: max_sources.clamp(1, u32::MAX as usize - 1),
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
        self.sources.slots().flat_map(|slot| {
            let src = IpAddr::from(self.sources.key(slot));
            self.sources
                .load(slot)
                .into_iter()
                .map(move |p| (src, usize::from(p.door), usize::from(p.stage), p.started))
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
        self.max_sources = max_sources.clamp(1, u32::MAX as usize - 1);
        let slots: Vec<u32> = self.sources.slots().collect();
        for slot in slots {
            let mut progress = self.sources.load(slot);
            progress.retain(|p| match remap[usize::from(p.door)] {
                Some(new) => {
                    p.door = new;
                    true
                }
                None => false,
            });
            if progress.is_empty() {
                self.sources.remove(slot);
            } else {
                self.sources.store(slot, &progress);
            }
        }
        // Timers first: eviction takes the earliest deadline.
        self.rebuild_timers();
        while self.sources.len() > self.max_sources {
            if !self.evict_one() {
                break;
            }
        }
    }

    /// When [`Tracker::poll`] must next be called, if ever.
    pub fn poll_at(&mut self) -> Option<Instant> {
        while let Some((deadline, generation, slot)) = self.timers.peek() {
            if self.is_live(deadline, generation, slot) {
                return Some(deadline);
            }
            self.timers.pop();
        }
        None
    }

    /// Expires every attempt whose time is up at `now`.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Event>) {
        while let Some((deadline, generation, slot)) = self.timers.peek() {
            if deadline > now {
                break;
            }
            self.timers.pop();
            if self.is_live(deadline, generation, slot) {
                self.expire_source(slot, now, out);
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
        let key = Key::from(src);
        let mut existing = self.sources.find(&key);
        let mut progress = Attempts::new();
        let mut before = None;
        if let Some(slot) = existing {
            progress = self.sources.load(slot);
            let deadline = deadline_of(&self.doors, &progress).0;
            if deadline <= now {
                self.expire_source(slot, now, out);
                existing = self.sources.find(&key);
                progress = existing.map_or_else(Attempts::new, |slot| self.sources.load(slot));
                before = (!progress.is_empty()).then(|| deadline_of(&self.doors, &progress).0);
            } else {
                before = Some(deadline);
            }
        }
        for (index, door) in self.doors.iter().enumerate() {
            if door.sequence.is_empty() {
                // A door with no sequence (a used-up one-time list) is disabled.
                continue;
            }
            let to_door = match door.target {
                Some(target) => knock.dst == target,
                None => dst_is_local,
            };
            if to_door && (knock.proto == Proto::Udp || door.flags.matches(knock.tcp_flags)) {
                step(index, door, &mut progress, knock, now, &mut self.stats, out);
            }
        }
        match existing {
            Some(slot) => {
                if progress.is_empty() {
                    self.sources.remove(slot);
                    return;
                }
                self.sources.store(slot, &progress);
                let (deadline, timeout) = deadline_of(&self.doors, &progress);
                if Some(deadline) != before {
                    let generation = self.sources.generation(slot);
                    self.timers.push(timeout, (deadline, generation, slot));
                    self.maybe_compact();
                }
            }
            None if !progress.is_empty() => {
                // A new source: make room under the cap.
                while self.sources.len() >= self.max_sources {
                    if !self.evict_one_into(out) {
                        break;
                    }
                }
                let (deadline, timeout) = deadline_of(&self.doors, &progress);
                let slot = self.sources.insert(key, &progress);
                let generation = self.sources.generation(slot);
                self.timers.push(timeout, (deadline, generation, slot));
                self.maybe_compact();
            }
            None => {}
        }
    }

    /// Whether a timer entry stands for its source's current earliest deadline.
    fn is_live(&self, deadline: Instant, generation: u32, slot: u32) -> bool {
        self.sources.live(slot)
            && self.sources.generation(slot) == generation
            && deadline_of(&self.doors, &self.sources.load(slot)).0 == deadline
    }

    /// Drops the attempts of the source in `slot` that have timed out at `now`, re-filing the
    /// source under its next deadline or forgetting it.
    fn expire_source(&mut self, slot: u32, now: Instant, out: &mut Vec<Event>) {
        let src = IpAddr::from(self.sources.key(slot));
        let mut progress = self.sources.load(slot);
        let before = deadline_of(&self.doors, &progress).0;
        let doors = &self.doors;
        let stats = &mut self.stats;
        progress.retain(|p| {
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
        if progress.is_empty() {
            self.sources.remove(slot);
            return;
        }
        self.sources.store(slot, &progress);
        let (deadline, timeout) = deadline_of(&self.doors, &progress);
        if deadline != before {
            let generation = self.sources.generation(slot);
            self.timers.push(timeout, (deadline, generation, slot));
        }
    }

    fn evict_one(&mut self) -> bool {
        let mut sink = Vec::new();
        self.evict_one_into(&mut sink)
    }

    /// Forgets the tracked source whose deadline comes first.
    fn evict_one_into(&mut self, out: &mut Vec<Event>) -> bool {
        while let Some((deadline, generation, slot)) = self.timers.pop() {
            if !self.is_live(deadline, generation, slot) {
                continue;
            }
            let src = IpAddr::from(self.sources.key(slot));
            let progress = self.sources.load(slot);
            self.sources.remove(slot);
            self.stats.evictions += 1;
            for p in progress {
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
        for slot in self.sources.slots() {
            let (deadline, timeout) = deadline_of(&self.doors, &self.sources.load(slot));
            entries.push((timeout, (deadline, self.sources.generation(slot), slot)));
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

    /// The compact layout (issue 15): a tracked source is 48 bytes in the slab, 4 (and a
    /// control byte) in the index, 16 per timer entry.
    #[test]
    fn per_source_state_is_compact() {
        assert!(std::mem::size_of::<Source>() <= 48);
        assert_eq!(std::mem::size_of::<Entry>(), 16);
    }

    #[test]
    fn ipv4_and_its_mapped_ipv6_form_are_different_sources() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_ne!(Key::from(v4), Key::from(mapped));
        assert_eq!(IpAddr::from(Key::from(v4)), v4);
        assert_eq!(IpAddr::from(Key::from(mapped)), mapped);
        let mut t = Tracker::new(vec![ssh()], 100);
        knock(&mut t, 0, syn(v4, 7000));
        knock(&mut t, 1, syn(mapped, 8000));
        // The mapped source's knock is its own wrong first step, not the IPv4 one's second.
        assert_eq!(t.tracked_sources(), 1);
        assert!(opened(&knock(&mut t, 2, syn(v4, 8000))).is_empty());
        assert_eq!(opened(&knock(&mut t, 3, syn(v4, 9000))), vec![(v4, 0)]);
    }

    /// Three doors part-way at once (a shared prefix): the attempts spill out of the inline
    /// two, and every operation sees them there.
    #[test]
    fn a_source_part_way_through_three_doors() {
        let d = |name: &str, last: u16| {
            door(
                name,
                &[
                    KnockSpec::tcp(100),
                    KnockSpec::tcp(101),
                    KnockSpec::tcp(last),
                ],
                5,
            )
        };
        let mut t = Tracker::new(vec![d("a", 102), d("b", 202), d("c", 302)], 10);
        knock(&mut t, 0, syn(ip(1), 100));
        knock(&mut t, 1, syn(ip(1), 101));
        let stages = |t: &Tracker| {
            let mut a: Vec<_> = t
                .attempts()
                .map(|(_, door, stage, _)| (door, stage))
                .collect();
            a.sort();
            a
        };
        assert_eq!(stages(&t), vec![(0, 2), (1, 2), (2, 2)]);
        // c opens; a and b are reset by the same knock; the source is forgotten.
        assert_eq!(opened(&knock(&mut t, 2, syn(ip(1), 302))), vec![(ip(1), 2)]);
        assert_eq!(t.tracked_sources(), 0);
        // Three again, then all time out together; a reload keeps them (same doors).
        knock(&mut t, 10, syn(ip(1), 100));
        knock(&mut t, 11, syn(ip(1), 101));
        let doors = t.doors().to_vec();
        t.set_doors(doors, 10);
        assert_eq!(stages(&t), vec![(0, 2), (1, 2), (2, 2)]);
        assert_eq!(t.poll_at(), Some(Instant::from_millis(5_010)));
        let mut out = Vec::new();
        t.poll(Instant::from_millis(5_010), &mut out);
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(out
            .iter()
            .all(|e| matches!(e, Event::Timeout { stage: 2, .. })));
        assert_eq!(t.tracked_sources(), 0);
    }

    #[test]
    fn timers_pop_in_deadline_order_across_queues_and_heap() {
        let mut timers = Timers::default();
        let e = |ms: u64, g: u32| (Instant::from_millis(ms), g, 1);
        let (short, long) = (Duration::from_secs(5), Duration::from_secs(60));
        timers.push(long, e(60_000, 1));
        timers.push(short, e(5_000, 2));
        timers.push(short, e(6_000, 3));
        // Out of order for its queue: goes to the heap, still comes out in order.
        timers.push(short, e(5_500, 4));
        timers.push(long, e(61_000, 5));
        assert_eq!(timers.len(), 5);
        let order: Vec<u32> = std::iter::from_fn(|| timers.pop())
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
