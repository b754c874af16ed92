//! The event thread: signals and the kernel's netlink announcements, turned into messages for
//! the loop. It sleeps in `poll(2)` until one of them has something; nothing here runs on a
//! timer.
//!
//! Signal handlers only write to a socket pair (signal-hook's self-pipe); this thread reads it
//! and sends [`Msg::Signal`], so a reload or a shutdown happens in the loop, in order with
//! everything else. Link and address changes become [`Msg::Links`], ruleset changes to the
//! chain's table [`Msg::Ruleset`]; a burst of notifications is one message.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::backend::SignalDelivery;
use signal_hook::iterator::exfiltrator::SignalOnly;

use super::{DaemonError, Mailbox, Msg};
use crate::net::watch::{LinkWatch, News, RulesetWatch};

/// What the event thread listens to, besides signals (each may be missing: the loop then
/// falls back to a slow re-read).
#[derive(Default)]
pub(super) struct Watches {
    pub(super) links: Option<LinkWatch>,
    pub(super) ruleset: Option<RulesetWatch>,
}

/// Installs the signal handlers and starts the thread.
pub(super) fn start(mailbox: Mailbox, mut watches: Watches) -> Result<(), DaemonError> {
    let (read, write) = UnixStream::pair().map_err(DaemonError::Thread)?;
    let mut signals: SignalDelivery<UnixStream, SignalOnly> =
        SignalDelivery::with_pipe(read, write, SignalOnly, [SIGHUP, SIGTERM, SIGINT])
            .map_err(DaemonError::Thread)?;
    std::thread::Builder::new()
        .name("events".into())
        .spawn(move || loop {
            let (sig, links, ruleset) = {
                let mut fds = vec![PollFd::new(signals.get_read().as_fd(), PollFlags::POLLIN)];
                if let Some(l) = &watches.links {
                    fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
                }
                if let Some(r) = &watches.ruleset {
                    fds.push(PollFd::new(r.as_fd(), PollFlags::POLLIN));
                }
                if poll(&mut fds, PollTimeout::NONE).is_err() {
                    continue; // EINTR
                }
                let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
                let mut it = ready.into_iter();
                let sig = it.next().unwrap_or(false);
                let links = watches.links.is_some() && it.next().unwrap_or(false);
                let ruleset = watches.ruleset.is_some() && it.next().unwrap_or(false);
                (sig, links, ruleset)
            };
            let mut out: Vec<Msg> = Vec::new();
            if sig {
                out.extend(signals.pending().map(Msg::Signal));
            }
            if let Some(l) = watches.links.as_mut().filter(|_| links) {
                match l.drain() {
                    News::Nothing => {}
                    news => out.push(Msg::Links(news)),
                }
            }
            if let Some(r) = watches.ruleset.as_mut().filter(|_| ruleset) {
                if r.drain() != News::Nothing {
                    out.push(Msg::Ruleset);
                }
            }
            for m in out {
                if !mailbox.send(m) {
                    return;
                }
            }
        })
        .map_err(DaemonError::Thread)?;
    Ok(())
}
