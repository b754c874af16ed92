//! What opening a door means, decided in one place: [`plan`] is a pure function from the door,
//! the knocker, the open sessions and the time to the list of [`Action`]s to take, in order.
//! The daemon executes each through its backends (firewall, commands, GPIO, wake-on-LAN);
//! `knockgate replay` prints the same plan and applies it to its own sessions, so the two can
//! never drift apart. As in boringtun, the core returns what to do and the loop does it.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use crate::actions::firewall::{Grant, Ports};
use crate::actions::sessions::{unix_ms, Sessions};
use crate::config::{Door, RelayMode, Vars, WakeAction};
use crate::doors::Origin;
use crate::time::Instant;

/// The time a plan is made at, passed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time: session deadlines.
    pub mono: Instant,
    /// Wall-clock time: the firewall rule's expiry and the journal.
    pub wall: SystemTime,
    /// Time left until the next daily flush: how long an opening without a duration lasts.
    pub until_flush: Duration,
}

/// One thing an opened door does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Retire what the opening used (a one-time line, an HMAC window), durably, before
    /// anything else: a power cut right after can never use it again.
    Retire { origin: Origin },
    /// Keep the door's stop command to run after `after` (journalled). `extend`: the knocker
    /// already has one pending, whose deadline moves instead (and no second start command).
    ScheduleStop {
        argv: Vec<String>,
        after: Duration,
        extend: bool,
    },
    /// Run a command now (the start command).
    Run { argv: Vec<String> },
    /// Open the firewall for `grant` (until its Unix time), journalled with a session of
    /// `after`; `extend`: the knocker's opening of this door moves instead.
    Open {
        grant: Grant,
        after: Duration,
        extend: bool,
    },
    /// A closing sequence: close the knocker's opening of door `target`; `open` says whether
    /// there is one.
    Close { target: String, open: bool },
    /// Switch a relay.
    Relay { relay: String, mode: RelayMode },
    /// Send a wake-on-LAN magic packet (within its rate limit).
    Wake(WakeAction),
}

/// The actions for `src` completing `door` (engine door `origin`), given the open `sessions`.
/// `requested`: the ports an SPA request asked for (within the door's `allow`), opened instead
/// of the door's own firewall ports.
pub fn plan(
    door: &Door,
    origin: Origin,
    src: IpAddr,
    requested: Option<&Ports>,
    sessions: &Sessions,
    now: &Now,
) -> Vec<Action> {
    let mut actions = Vec::new();
    let name = door.name.as_str();
    if door.one_time_sequences.is_some() || door.hmac.is_some() {
        actions.push(Action::Retire { origin });
    }
    let vars = Vars {
        ip: src,
        door: name,
    };
    let ipv6 = src.is_ipv6();
    let start = door.start_for(ipv6).map(|c| c.render(&vars));
    match door.stop_for(ipv6).map(|c| c.render(&vars)) {
        None => actions.extend(start.map(|argv| Action::Run { argv })),
        Some(stop) => {
            let extend = sessions.get_stop(name, src).is_some();
            actions.push(Action::ScheduleStop {
                argv: stop,
                after: door.cmd_timeout,
                extend,
            });
            if !extend {
                actions.extend(start.map(|argv| Action::Run { argv }));
            }
        }
    }
    if let Some(fw) = &door.firewall {
        let after = fw.duration.unwrap_or(now.until_flush);
        let until = unix_ms(now.wall) / 1000 + after.as_secs().max(1);
        actions.push(Action::Open {
            grant: Grant {
                door: name.to_string(),
                src,
                ports: requested.unwrap_or(&fw.ports).clone(),
                until,
            },
            after,
            extend: sessions.get_close(name, src).is_some(),
        });
    }
    if let Some(target) = &door.close {
        actions.push(Action::Close {
            target: target.clone(),
            open: sessions.get_close(target, src).is_some(),
        });
    }
    if let Some(g) = &door.gpio {
        actions.push(Action::Relay {
            relay: g.relay.clone(),
            mode: g.mode,
        });
    }
    if let Some(w) = &door.wake_on_lan {
        actions.push(Action::Wake(w.clone()));
    }
    actions
}

/// How `replay` and the daemon's debug log show an action (never a knock sequence).
impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Retire { origin } => match origin.window {
                Some(w) => write!(f, "retire time window {w}"),
                None => write!(f, "retire the one-time sequence used"),
            },
            Action::ScheduleStop {
                argv,
                after,
                extend,
            } => {
                let verb = if *extend { "extend" } else { "schedule" };
                let shown = crate::actions::command::display(argv);
                write!(
                    f,
                    "{verb} the stop command in {}s: {shown}",
                    after.as_secs()
                )
            }
            Action::Run { argv } => {
                write!(f, "run command: {}", crate::actions::command::display(argv))
            }
            Action::Open {
                grant,
                after,
                extend,
            } => {
                let verb = if *extend { "extend" } else { "open" };
                write!(f, "{verb} {} for {}s", grant.ports, after.as_secs())
            }
            Action::Close { target, open } => match open {
                true => write!(f, "close {target}"),
                false => write!(f, "close {target}: not open, nothing to do"),
            },
            Action::Relay { relay, mode } => match mode {
                RelayMode::Pulse(d) => write!(f, "pulse relay {relay} for {}ms", d.as_millis()),
                RelayMode::On => write!(f, "switch relay {relay} on"),
                RelayMode::Off => write!(f, "switch relay {relay} off"),
                RelayMode::Toggle => write!(f, "toggle relay {relay}"),
            },
            Action::Wake(w) => write!(
                f,
                "wake-on-LAN {} (to {}:{})",
                crate::actions::wol::mac_text(w.mac),
                w.broadcast,
                w.port
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::sessions::Pending;

    fn config(doors: &str) -> crate::config::Config {
        crate::config::parse(
            &format!("[firewall]\ndaily_flush = \"04:00\"\n[[relay]]\nname = \"garage\"\npin = 17\n{doors}"),
            "t.toml",
        )
        .unwrap()
    }

    fn now() -> Now {
        Now {
            mono: Instant::ZERO + Duration::from_secs(100),
            wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000),
            until_flush: Duration::from_secs(5 * 3600),
        }
    }

    const SRC: &str = "192.0.2.7";

    /// The plan of the first door of `c` for `src`.
    fn plan_from(c: &crate::config::Config, src: &str, sessions: &Sessions) -> Vec<Action> {
        let origin = Origin {
            door: 0,
            window: None,
        };
        plan(
            &c.doors[0],
            origin,
            src.parse().unwrap(),
            None,
            sessions,
            &now(),
        )
    }

    fn plan_of(doors: &str, sessions: &Sessions) -> Vec<String> {
        plan_from(&config(doors), SRC, sessions)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_firewall_door_opens_until_its_duration_or_the_flush() {
        let s = Sessions::new();
        let c = config("[[door]]\nname = \"ssh\"\nsequence = [1, 2]\nfirewall = { ports = [\"22/tcp\"], duration = \"30s\" }");
        let a = plan_from(&c, SRC, &s);
        assert_eq!(
            a,
            vec![Action::Open {
                grant: Grant {
                    door: "ssh".into(),
                    src: SRC.parse().unwrap(),
                    ports: c.doors[0].firewall.as_ref().unwrap().ports.clone(),
                    until: 1_790_000_030,
                },
                after: Duration::from_secs(30),
                extend: false,
            }]
        );
        assert_eq!(
            plan_of(
                "[[door]]\nname = \"ssh\"\nsequence = [1, 2]\nfirewall = { ports = \"all\" }",
                &s
            ),
            ["open all ports for 18000s"]
        );
    }

    #[test]
    fn knocking_again_extends_the_opening() {
        let c = config("[[door]]\nname = \"ssh\"\nsequence = [1, 2]\nfirewall = { ports = [\"22/tcp\"], duration = \"30s\" }");
        let mut s = Sessions::new();
        let first = plan_from(&c, SRC, &s);
        let Action::Open { grant, after, .. } = &first[0] else {
            panic!("{first:?}")
        };
        s.open(
            now().mono,
            now().wall,
            "ssh",
            grant.src,
            *after,
            Pending::Close {
                grant: grant.clone(),
            },
        );
        let again = plan_from(&c, SRC, &s);
        assert!(
            matches!(again[0], Action::Open { extend: true, .. }),
            "{again:?}"
        );
    }

    #[test]
    fn commands_start_then_stop_once_and_extend_on_a_second_knock() {
        let door = "[[door]]\nname = \"cmd\"\nsequence = [1, 2]\nstart_command = \"open %IP%\"\nstop_command = \"close %IP%\"\ncmd_timeout = \"20s\"";
        let mut s = Sessions::new();
        assert_eq!(
            plan_of(door, &s),
            [
                "schedule the stop command in 20s: close 192.0.2.7",
                "run command: open 192.0.2.7"
            ]
        );
        s.open(
            now().mono,
            now().wall,
            "cmd",
            SRC.parse().unwrap(),
            Duration::from_secs(20),
            Pending::Stop {
                argv: vec!["close".into()],
            },
        );
        assert_eq!(
            plan_of(door, &s),
            ["extend the stop command in 20s: close 192.0.2.7"]
        );
        // Without a stop command, the start command runs at every opening.
        assert_eq!(
            plan_of(
                "[[door]]\nname = \"c\"\nsequence = [1]\nstart_command = \"logger %DOOR% %IP%\"",
                &s
            ),
            ["run command: logger c 192.0.2.7"]
        );
        // An IPv6 knocker with start_command_6 = "" runs nothing.
        let c = config(
            "[[door]]\nname = \"c\"\nsequence = [1]\nstart_command = \"x\"\nstart_command_6 = \"\"",
        );
        let v6 = plan_from(&c, "2001:db8::1", &s);
        assert!(v6.is_empty(), "{v6:?}");
    }

    /// What the page and the first-boot note say a door does ([`Door::actions`]) is what its
    /// plan does, for an IPv4 and an IPv6 knocker.
    #[test]
    fn the_doors_described_actions_are_what_the_plan_does() {
        use crate::config::DoorAction;
        let s = Sessions::new();
        for (door, described) in [
            ("start_command = \"x\"", vec![DoorAction::Command]),
            // The case the page once got wrong: an IPv6-only "no command" runs nothing.
            ("start_command_6 = \"\"", vec![]),
            (
                "start_command = \"x\"\nstop_command = \"y\"\ncmd_timeout = 5",
                vec![DoorAction::Command],
            ),
            ("start_command_6 = \"z\"", vec![DoorAction::Command]),
            (
                "firewall = { ports = [\"22/tcp\"], duration = \"1m\" }\ngpio = { relay = \"garage\", mode = \"on\" }",
                vec![DoorAction::Firewall, DoorAction::Gpio],
            ),
            ("wake_on_lan = { mac = \"00:11:22:33:44:55\" }", vec![DoorAction::WakeOnLan]),
        ] {
            let c = config(&format!("[[door]]\nname = \"d\"\nsequence = [1]\n{door}"));
            assert_eq!(c.doors[0].actions(), described, "{door}");
            let mut done = Vec::new();
            for src in [SRC, "2001:db8::1"] {
                for a in plan_from(&c, src, &s) {
                    let kind = match a {
                        Action::Run { .. } | Action::ScheduleStop { .. } => DoorAction::Command,
                        Action::Open { .. } => DoorAction::Firewall,
                        Action::Close { .. } => DoorAction::Close,
                        Action::Relay { .. } => DoorAction::Gpio,
                        Action::Wake(_) => DoorAction::WakeOnLan,
                        Action::Retire { .. } => continue,
                    };
                    if !done.contains(&kind) {
                        done.push(kind);
                    }
                }
            }
            done.sort_by_key(|k| described.iter().position(|d| d == k));
            assert_eq!(done, described, "{door}");
        }
    }

    #[test]
    fn closing_relay_and_wake_doors() {
        let s = Sessions::new();
        assert_eq!(
            plan_of("[[door]]\nname = \"bye\"\nsequence = [1, 2]\nclose = \"ssh\"\n[[door]]\nname = \"ssh\"\nsequence = [3, 4]\nfirewall = { ports = [\"22/tcp\"], duration = \"1m\" }", &s),
            ["close ssh: not open, nothing to do"]
        );
        assert_eq!(
            plan_of("[[door]]\nname = \"g\"\nsequence = [1, 2]\ngpio = { relay = \"garage\", mode = \"pulse\", duration = \"500ms\" }\nwake_on_lan = { mac = \"00:11:22:33:44:55\" }", &s),
            [
                "pulse relay garage for 500ms",
                "wake-on-LAN 00:11:22:33:44:55 (to 255.255.255.255:9)"
            ]
        );
    }

    #[test]
    fn a_one_time_door_retires_its_line_first() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("otp");
        std::fs::write(&list, "1000,2000\n3000,4000\n").unwrap();
        let s = Sessions::new();
        let door = format!(
            "[[door]]\nname = \"o\"\none_time_sequences = \"{}\"\nstart_command = \"x\"",
            list.display()
        );
        assert_eq!(
            plan_of(&door, &s),
            ["retire the one-time sequence used", "run command: x"]
        );
    }
}
