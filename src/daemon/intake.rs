//! The captures and the packets read from them that the loop has not handled yet.
//!
//! Every packet goes ring -> [`Intake::read`] or [`Drain::drain_until`] -> the backlog -> the
//! loop, so packets are handled in the order each ring delivered them, whether the loop read
//! them itself or they were taken in while it waited for a slow step ([`crate::sys::busy`]).

use std::collections::{BTreeMap, VecDeque};
use std::os::fd::BorrowedFd;
use std::sync::Arc;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::net::capture::{Capture, Change, Counters, Packet};
use crate::sys::busy::Drain;
use crate::time::Instant;

/// Packets held at most while the loop is busy: a 50 ms step at 150 000 packets/s (a
/// 100 Mbit/s line of minimum-size frames), about 450 KiB. Beyond it the rings hold what
/// they can and the kernel counts what it drops.
const BACKLOG_MAX: usize = 8192;
/// A backlog that grew past this is given back when it empties (floods only).
const BACKLOG_KEEP: usize = 1024;

pub(super) struct Intake {
    pub captures: BTreeMap<String, Capture>,
    pub counters: Counters,
    backlog: VecDeque<Packet>,
    /// Captures that closed while being read, each with the number of backlog packets read
    /// before it (they are handled first).
    changes: Vec<(Arc<str>, Change, usize)>,
    /// Rings that had nothing to read although `poll(2)` said so, left out of the drain until
    /// the loop reads them again (a wait must not spin on them).
    quiet: Vec<Arc<str>>,
    /// The loop's time at its last turn: a capture that fails while drained is retried from
    /// then.
    pub now: Instant,
}

impl Intake {
    pub fn new(now: Instant) -> Intake {
        Intake {
            captures: BTreeMap::new(),
            counters: Counters::default(),
            backlog: VecDeque::new(),
            changes: Vec::new(),
            quiet: Vec::new(),
            now,
        }
    }

    /// Reads at most `max` packets of `iface`'s ring into the backlog. Returns how many it read
    /// (malformed ones included: fewer than `max` means the ring is empty now).
    pub fn read(&mut self, iface: &str, max: usize) -> usize {
        self.quiet.retain(|q| **q != *iface);
        self.read_ring(iface, max)
    }

    fn read_ring(&mut self, iface: &str, max: usize) -> usize {
        let Some(capture) = self.captures.get_mut(iface) else {
            return 0;
        };
        let (n, change) = capture.read(max, &mut self.backlog, &self.counters, self.now);
        if let Some(change) = change {
            let at = self.backlog.len();
            self.changes.push((capture.iface.clone(), change, at));
        }
        n
    }

    /// Moves at most `max` packets from the backlog to `out`, and the captures' changes that
    /// came after them to `changes`. Returns false when there was nothing to take.
    pub fn take(
        &mut self,
        max: usize,
        out: &mut Vec<Packet>,
        changes: &mut Vec<(Arc<str>, Change)>,
    ) -> bool {
        let n = max.min(self.backlog.len());
        out.extend(self.backlog.drain(..n));
        for (_, _, at) in &mut self.changes {
            *at = at.saturating_sub(n);
        }
        let ready = self
            .changes
            .iter()
            .take_while(|(_, _, at)| *at == 0)
            .count();
        changes.extend(self.changes.drain(..ready).map(|(i, c, _)| (i, c)));
        if self.backlog.is_empty() && self.backlog.capacity() > BACKLOG_KEEP {
            self.backlog = VecDeque::new();
        }
        n > 0 || ready > 0
    }
}

impl Drain for Intake {
    fn drain_until(&mut self, done: BorrowedFd<'_>) -> bool {
        let room = BACKLOG_MAX.saturating_sub(self.backlog.len());
        let open: Vec<(Arc<str>, BorrowedFd<'_>)> = if room > 0 {
            self.captures
                .values()
                .filter(|c| !self.quiet.contains(&c.iface))
                .filter_map(|c| c.fd().map(|fd| (c.iface.clone(), fd)))
                .collect()
        } else {
            // Full: the rings keep what they can until the step returns.
            Vec::new()
        };
        let mut fds = Vec::with_capacity(open.len() + 1);
        fds.push(PollFd::new(done, PollFlags::POLLIN));
        fds.extend(
            open.iter()
                .map(|(_, fd)| PollFd::new(*fd, PollFlags::POLLIN)),
        );
        if poll(&mut fds, PollTimeout::NONE).is_err() {
            return false; // EINTR: look again
        }
        if fds[0].any().unwrap_or(false) {
            return true;
        }
        let ready: Vec<Arc<str>> = open
            .iter()
            .zip(&fds[1..])
            .filter(|(_, f)| f.revents().is_some_and(|r| !r.is_empty()))
            .map(|((name, _), _)| name.clone())
            .collect();
        for name in ready {
            let room = BACKLOG_MAX.saturating_sub(self.backlog.len());
            if self.read_ring(&name, room) == 0 {
                self.quiet.push(name);
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knock::{Knock, Proto, TcpFlags};

    fn knock(port: u16) -> Packet {
        Packet::Knock(Knock {
            src: "10.0.0.2".parse().unwrap(),
            dst: "10.0.0.1".parse().unwrap(),
            proto: Proto::Tcp,
            dst_port: port,
            tcp_flags: TcpFlags::default(),
        })
    }

    fn gone() -> crate::net::capture::CaptureError {
        crate::net::capture::CaptureError::Stopped {
            iface: "eth0".into(),
            reason: "gone".into(),
        }
    }

    #[test]
    fn a_change_comes_after_the_packets_read_before_it() {
        let mut intake = Intake::new(Instant::ZERO);
        intake.backlog.extend([knock(1), knock(2)]);
        intake
            .changes
            .push(("eth0".into(), Change::Down(gone()), 2));
        intake.backlog.push_back(knock(3));
        let (mut out, mut changes) = (Vec::new(), Vec::new());
        assert!(intake.take(1, &mut out, &mut changes));
        assert_eq!(out, [knock(1)]);
        assert!(changes.is_empty());
        out.clear();
        assert!(intake.take(1, &mut out, &mut changes));
        assert_eq!(out, [knock(2)]);
        assert_eq!(changes, [("eth0".into(), Change::Down(gone()))]);
        out.clear();
        assert!(intake.take(8, &mut out, &mut changes));
        assert_eq!(out, [knock(3)]);
        assert!(!intake.take(8, &mut out, &mut changes));
    }

    #[test]
    fn a_flood_backlog_is_given_back_once_handled() {
        let mut intake = Intake::new(Instant::ZERO);
        intake.backlog.extend((0..BACKLOG_MAX as u16).map(knock));
        let (mut out, mut changes) = (Vec::new(), Vec::new());
        while intake.take(512, &mut out, &mut changes) {
            out.clear();
        }
        assert_eq!(intake.backlog.capacity(), 0);
    }
}
