//! Slow steps of the daemon loop that do not leave the capture rings to overflow.
//!
//! The daemon loop does everything itself, capture included, so while it waits for `iptables`
//! (a few ms here; more on a Pi with iptables-nft, up to seconds behind a held xtables lock)
//! or for an fsync of its journal on an SD card, nothing empties the capture rings. A ring
//! hands packets over in blocks that close 10 ms after their first packet, so sparse traffic
//! fills its four blocks in 40 ms and the kernel drops the rest: a knock sent while another
//! door opens would be lost.
//!
//! A [`Steps`] runs such a step. The daemon makes one over its capture intake
//! ([`Steps::draining`]) and hands it to the backends that have slow steps (the firewall, the
//! journal and state writers): each step then runs on a short-lived helper thread while the
//! calling thread keeps emptying the rings into memory through the [`Drain`]; the loop handles
//! those packets, in arrival order, once the step has returned. Nothing else changes while the
//! step runs (the drain only reads packets), so the loop's state stays its own. The command-line
//! tools, the startup before the loop and the tests use [`Steps::here`]: the step runs on the
//! calling thread. So does a draining runner that cannot start a thread.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Mutex, PoisonError, TryLockError};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

/// What the calling thread does while a slow step runs.
pub trait Drain: Send {
    /// Waits until `done` is readable (the step has returned: true) or until something it
    /// drains is ready, which it then takes in (false). Must not wait on anything it cannot
    /// take in, or the wait would spin.
    fn drain_until(&mut self, done: BorrowedFd<'_>) -> bool;
}

/// Runs slow steps, with or without a drain beside them. Cheap to clone: the backends each
/// hold one.
#[derive(Clone, Default)]
pub struct Steps {
    drain: Option<Arc<Mutex<dyn Drain>>>,
}

impl std::fmt::Debug for Steps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.drain.is_some() {
            "Steps(draining)"
        } else {
            "Steps(here)"
        })
    }
}

impl Steps {
    /// Steps run on the calling thread, nothing drained.
    pub fn here() -> Steps {
        Steps { drain: None }
    }

    /// Steps run on a helper thread while `drain` runs on the calling thread.
    pub fn draining(drain: Arc<Mutex<dyn Drain>>) -> Steps {
        Steps { drain: Some(drain) }
    }

    /// Runs `step`; when draining, on a helper thread while the drain runs here until the step
    /// returns.
    pub fn run<T: Send>(&self, step: impl FnOnce() -> T + Send) -> T {
        let Some(drain) = &self.drain else {
            return step();
        };
        let Ok(done) = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK) else {
            return step();
        };
        let slot = Mutex::new(Some(step));
        let take = || slot.lock().unwrap_or_else(PoisonError::into_inner).take();
        std::thread::scope(|scope| {
            let helper = std::thread::Builder::new()
                .name("knockgate-step".into())
                .spawn_scoped(scope, || {
                    let result = take().map(|step| step());
                    let _ = done.write(1);
                    result
                });
            let Ok(helper) = helper else {
                // No thread: run it here (the rings wait, as they would have without this).
                return take().map(|step| step());
            };
            loop {
                let finished = match drain.try_lock() {
                    Ok(mut d) => d.drain_until(done.as_fd()),
                    Err(TryLockError::Poisoned(p)) => p.into_inner().drain_until(done.as_fd()),
                    // The drain is in use further up this thread's stack: just wait.
                    Err(TryLockError::WouldBlock) => {
                        let mut fds = [PollFd::new(done.as_fd(), PollFlags::POLLIN)];
                        let _ = poll(&mut fds, PollTimeout::NONE);
                        fds[0].any().unwrap_or(false)
                    }
                };
                if finished {
                    break;
                }
            }
            match helper.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
        .unwrap_or_else(|| unreachable!("the step is taken exactly once"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::OwnedFd;
    use std::time::Duration;

    /// A drain over a pipe: counts the bytes it takes in while the step runs.
    struct PipeDrain {
        read: OwnedFd,
        taken: Vec<u8>,
    }

    impl Drain for PipeDrain {
        fn drain_until(&mut self, done: BorrowedFd<'_>) -> bool {
            let mut fds = [
                PollFd::new(done, PollFlags::POLLIN),
                PollFd::new(self.read.as_fd(), PollFlags::POLLIN),
            ];
            poll(&mut fds, PollTimeout::NONE).expect("poll");
            if fds[1].any().unwrap_or(false) {
                let mut buf = [0u8; 64];
                let n = nix::unistd::read(&self.read, &mut buf).expect("read");
                self.taken.extend_from_slice(&buf[..n]);
            }
            fds[0].any().unwrap_or(false)
        }
    }

    #[test]
    fn without_a_drain_the_step_runs_here() {
        let here = std::thread::current().id();
        assert_eq!(Steps::here().run(|| std::thread::current().id()), here);
    }

    #[test]
    fn the_drain_takes_in_what_arrives_while_the_step_runs() {
        let (read, write) = nix::unistd::pipe().expect("pipe");
        let drain = Arc::new(Mutex::new(PipeDrain {
            read,
            taken: Vec::new(),
        }));
        let steps = Steps::draining(drain.clone());
        let here = std::thread::current().id();
        let (ran_on, value) = steps.run(move || {
            for b in b"knock" {
                nix::unistd::write(&write, &[*b]).expect("write");
                std::thread::sleep(Duration::from_millis(5));
            }
            (std::thread::current().id(), 42)
        });
        assert_ne!(ran_on, here);
        assert_eq!(value, 42);
        assert_eq!(drain.lock().unwrap().taken, b"knock");
    }

    #[test]
    fn a_drain_in_use_is_not_reentered() {
        let (read, _write) = nix::unistd::pipe().expect("pipe");
        let drain = Arc::new(Mutex::new(PipeDrain {
            read,
            taken: Vec::new(),
        }));
        let steps = Steps::draining(drain.clone());
        let held = drain.lock().unwrap();
        assert_eq!(steps.run(|| 7), 7);
        drop(held);
    }
}
