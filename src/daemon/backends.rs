//! Everything the daemon does to the world, as one bundle of backends chosen at start: the
//! clock, commands, wake-on-LAN, the interface list, the firewall and the GPIO, and whether
//! state is written. [`Backends::system`] is the real thing; [`Backends::dry_run`] is
//! `--dry-run`: the same daemon with backends that only log (and no state written), so that no
//! action code ever asks whether it is a dry run. What the daemon decides is tested without
//! backends, on the gatekeeper ([`crate::gatekeeper`]); the backends themselves are tested real.

use crate::actions::command::{self, Commands};
use crate::actions::firewall::{iptables::Iptables, nft::Nft, Firewall, Noop};
use crate::actions::wol::{self, Wake};
use crate::config::{Backend, FirewallConfig, GpioBackend};
use crate::net::capture::{InterfaceSource, SystemInterfaces};
use crate::sys::busy::Steps;
use crate::time::{Clock, SystemClock};

/// Makes the firewall backend for a `[firewall]` table, its commands run through the given
/// slow-step runner.
pub type FirewallFactory = Box<dyn Fn(&FirewallConfig, &Steps) -> Box<dyn Firewall> + Send>;

pub struct Backends {
    pub clock: Box<dyn Clock>,
    pub commands: Box<dyn Commands>,
    pub wake: Box<dyn Wake>,
    pub interfaces: Box<dyn InterfaceSource>,
    pub firewall: FirewallFactory,
    /// The GPIO backend to use instead of the config's (the simulated one for a dry run).
    pub gpio: Option<GpioBackend>,
    /// Whether the journal of open doors and the pid file are written.
    pub persist: bool,
    /// How slow steps (firewall commands, state written to the SD card) are waited for: on
    /// the calling thread until the daemon's loop gives the backends its runner, which empties
    /// the capture rings meanwhile.
    pub steps: Steps,
    /// Says what kind of run this is, for the start-up log line.
    pub dry_run: bool,
}

impl Backends {
    /// The real clock, processes, broadcasts, interfaces, iptables (or none, as configured)
    /// and GPIO.
    pub fn system() -> Backends {
        Backends {
            clock: Box::new(SystemClock::default()),
            commands: Box::new(command::Processes),
            wake: Box::new(wol::Broadcast),
            interfaces: Box::new(SystemInterfaces),
            firewall: Box::new(|f: &FirewallConfig, steps: &Steps| -> Box<dyn Firewall> {
                match f.backend {
                    Backend::None => Box::new(Noop),
                    Backend::Nftables => {
                        Box::new(Nft::new(&f.nft_chain, f.jump_position).with_steps(steps.clone()))
                    }
                    Backend::Iptables => {
                        Box::new(Iptables::new(&f.chain, f.jump_position).with_steps(steps.clone()))
                    }
                }
            }),
            gpio: None,
            persist: true,
            steps: Steps::here(),
            dry_run: false,
        }
    }

    /// `--dry-run`: real capture and clock; commands, wake-on-LAN and the firewall only logged,
    /// the GPIO simulated, no state written.
    pub fn dry_run() -> Backends {
        Backends {
            commands: Box::new(command::DryRun),
            wake: Box::new(wol::DryRun),
            firewall: Box::new(|_: &FirewallConfig, _: &Steps| -> Box<dyn Firewall> {
                Box::new(Noop)
            }),
            gpio: Some(GpioBackend::Simulated),
            persist: false,
            dry_run: true,
            ..Backends::system()
        }
    }
}
