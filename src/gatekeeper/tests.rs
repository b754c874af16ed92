//! The daemon's policy, in-process: packets and explicit times in, effects out. No root, no
//! network, no clock: what was tested only as root in a namespace is decided here.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use super::*;
use crate::doors::spa::{self as spa_packet, Access, Keys, Message};
use crate::knock::{Knock, KnockSpec, TcpFlags};

/// 2026-11-28 and a bit: a wall-clock time well inside an HMAC window (none starts near it).
const T0: u64 = 1_795_000_010;
const GW: &str = "192.0.2.1";
const SPA_KEY: &str = "eKHmC2Ow2JTqzXLy7sjYBRFfCmrQwbTAx2uiznipAug=";
const SPA_HMAC: &str =
    "VNrfU/1Pichlo/Kg61u8pMHCMoLk4PyQfVACF6UxTYG/bpN3D5/ciou6JoJngnTQ+AHRIbBpyeKMyXTpsWAujg==";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn wall(unix: u64, ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(unix) + Duration::from_millis(ms)
}

/// A config from `text`, with `@DIR@` the temporary directory (its secret files mode 600).
fn config(dir: &std::path::Path, text: &str) -> Config {
    for (name, content) in [
        ("spa.key", SPA_KEY),
        ("spa.hmac", SPA_HMAC),
        ("hmac.secret", "000102030405060708090a0b0c0d0e0f"),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let text = text.replace("@DIR@", &dir.display().to_string());
    crate::config::parse(&text, "t.toml").unwrap()
}

/// A gatekeeper whose host has the address [`GW`], started at `T0`.
fn gatekeeper(config: Config) -> Gatekeeper {
    let dynamic = Dynamic::load(&config).unwrap();
    let local = Local::Only([ip(GW)].into_iter().collect());
    Gatekeeper::new(
        config,
        dynamic,
        ReplayCache::default(),
        local,
        Instant::ZERO,
        wall(T0, 0),
    )
}

/// Drives a gatekeeper with time: `at` milliseconds after `T0` (mono 0).
struct Drive {
    gk: Gatekeeper,
}

impl Drive {
    fn at(ms: u64) -> (Instant, SystemTime) {
        (Instant::ZERO + Duration::from_millis(ms), wall(T0, ms))
    }

    fn knock(&mut self, ms: u64, src: &str, port: u16, proto: Proto) -> Vec<Effect> {
        self.knock_to(ms, src, GW, port, proto)
    }

    fn knock_to(&mut self, ms: u64, src: &str, dst: &str, port: u16, proto: Proto) -> Vec<Effect> {
        let knock = Knock {
            src: ip(src),
            dst: ip(dst),
            proto,
            dst_port: port,
            tcp_flags: TcpFlags(if proto == Proto::Tcp {
                TcpFlags::SYN
            } else {
                0
            }),
        };
        let (now, wall) = Drive::at(ms);
        let mut out = Vec::new();
        self.gk
            .on_packet(now, wall, &Packet::Knock(knock), &mut out);
        out
    }

    fn datagram(&mut self, ms: u64, src: &str, port: u16, data: &[u8]) -> Vec<Effect> {
        let knock = Knock {
            src: ip(src),
            dst: ip(GW),
            proto: Proto::Udp,
            dst_port: port,
            tcp_flags: TcpFlags(0),
        };
        let (now, wall) = Drive::at(ms);
        let mut out = Vec::new();
        self.gk
            .on_packet(now, wall, &Packet::Datagram(knock, data.into()), &mut out);
        out
    }

    fn poll(&mut self, ms: u64) -> Vec<Effect> {
        let (now, wall) = Drive::at(ms);
        let mut out = Vec::new();
        self.gk.poll(now, wall, &mut out);
        out
    }

    fn sequence(&mut self, ms: u64, src: &str, ports: &[KnockSpec]) -> Vec<Effect> {
        let mut all = Vec::new();
        for (i, k) in ports.iter().enumerate() {
            all.extend(self.knock(ms + i as u64 * 10, src, k.port, k.proto));
        }
        all
    }
}

fn opened(fx: &[Effect]) -> Vec<(usize, IpAddr)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Open { origin, src, .. } => Some((origin.door, *src)),
            _ => None,
        })
        .collect()
}

/// An SPA packet as fwknop sends it, from `addr`'s owner at wall time `unix`.
fn spa(addr: &str, port: u16, unix: u64, random: u64) -> Vec<u8> {
    let keys = Keys::from_base64(SPA_KEY, SPA_HMAC).unwrap();
    let msg = Message {
        random,
        user: "root",
        timestamp: unix,
        addr: ip(addr),
        access: &[Access { udp: false, port }],
        client_timeout: None,
    };
    spa_packet::encode(&msg, &keys, [7; 8]).into_bytes()
}

const FIXED: &str = r#"
[daemon]
max_failures = 3
failure_window = "10m"
ban = "10m"

[[door]]
name = "ssh"
sequence = [7000, 8000, 9000]
start_command = "true"

[[door]]
name = "spa-ssh"
spa = { key_file = "@DIR@/spa.key", hmac_key_file = "@DIR@/spa.hmac", allow = ["tcp/22"], max_age = "60s" }
firewall = { ports = ["22/tcp"], duration = "30s" }
"#;

#[test]
fn a_sequence_opens_with_the_led_and_the_history_told() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Drive {
        gk: gatekeeper(config(dir.path(), FIXED)),
    };
    let fx = d.sequence(0, "198.51.100.7", &[7000, 8000, 9000].map(KnockSpec::tcp));
    let lines: Vec<String> = fx.iter().filter_map(Effect::line).collect();
    assert_eq!(
        lines,
        [
            "198.51.100.7: ssh: Stage 1",
            "198.51.100.7: ssh: Stage 2",
            "198.51.100.7: ssh: OPEN SESAME"
        ]
    );
    let cues: Vec<Cue> = (fx.iter())
        .filter_map(|e| match e {
            Effect::Cue(c) => Some(*c),
            _ => None,
        })
        .collect();
    assert_eq!(cues, [Cue::Stage, Cue::Stage, Cue::Opened]);
    assert_eq!(opened(&fx), [(0, ip("198.51.100.7"))]);
    // The opening is the last effect: the plan runs after the LED and the log line.
    assert!(matches!(
        fx.last(),
        Some(Effect::Open {
            requested: None,
            ..
        })
    ));
    let h = d.gk.history();
    assert_eq!(h.last_opened("ssh"), Some(T0));
    let recent: Vec<(ActivityKind, usize)> = h.recent().map(|a| (a.event, a.stage)).collect();
    assert_eq!(
        recent,
        [
            (ActivityKind::Open, 3),
            (ActivityKind::Stage, 2),
            (ActivityKind::Stage, 1)
        ]
    );
    assert_eq!(h.per_hour(T0).last(), Some(&3));
}

#[test]
fn knocks_to_another_address_do_not_count() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Drive {
        gk: gatekeeper(config(dir.path(), FIXED)),
    };
    for (i, port) in [7000, 8000, 9000].into_iter().enumerate() {
        let fx = d.knock_to(
            i as u64 * 10,
            "198.51.100.7",
            "192.0.2.99",
            port,
            Proto::Tcp,
        );
        assert_eq!(fx, []);
    }
    // The host's addresses change (a DHCP renewal): now they do.
    d.gk.set_local(Local::Only([ip("192.0.2.99")].into_iter().collect()));
    let mut fx = Vec::new();
    for (i, port) in [7000, 8000, 9000].into_iter().enumerate() {
        fx.extend(d.knock_to(
            100 + i as u64 * 10,
            "198.51.100.7",
            "192.0.2.99",
            port,
            Proto::Tcp,
        ));
    }
    assert_eq!(opened(&fx).len(), 1);
}

#[test]
fn too_many_failed_attempts_ban_the_source_until_the_ban_ends() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Drive {
        gk: gatekeeper(config(dir.path(), FIXED)),
    };
    let bad = "203.0.113.9";
    // Four wrong knocks after a first step: one more failure than max_failures = 3 allows.
    let mut fx = Vec::new();
    for i in 0..4 {
        let ms = i * 100;
        fx.extend(d.knock(ms, bad, 7000, Proto::Tcp));
        fx.extend(d.knock(ms + 10, bad, 1234, Proto::Tcp));
    }
    let bans: Vec<&Effect> = fx
        .iter()
        .filter(|e| matches!(e, Effect::Banned { .. }))
        .collect();
    assert_eq!(
        bans,
        [&Effect::Banned {
            src: ip(bad),
            secs: 600
        }]
    );
    assert_eq!(
        bans[0].line().unwrap(),
        "203.0.113.9: ignored for 600s after too many failed attempts"
    );
    // Banned: the right sequence does nothing at all, while another source opens.
    assert_eq!(
        d.sequence(1_000, bad, &[7000, 8000, 9000].map(KnockSpec::tcp)),
        []
    );
    let other = d.sequence(
        1_000,
        "198.51.100.7",
        &[7000, 8000, 9000].map(KnockSpec::tcp),
    );
    assert_eq!(opened(&other).len(), 1);
    // Its SPA packets are ignored too, even valid ones.
    assert_eq!(d.datagram(1_100, bad, 62201, &spa(bad, 22, T0, 1)), []);
    // After the ban (10 minutes), it opens again.
    let after = 600_000 + 1_000;
    let fx = d.sequence(after, bad, &[7000, 8000, 9000].map(KnockSpec::tcp));
    assert_eq!(opened(&fx), [(0, ip(bad))]);
}

#[test]
fn a_timed_out_attempt_is_a_failure_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Drive {
        gk: gatekeeper(config(dir.path(), FIXED)),
    };
    let src = "203.0.113.10";
    let mut fx = Vec::new();
    for i in 0..4u64 {
        let start = i * 30_000;
        fx.extend(d.knock(start, src, 7000, Proto::Tcp));
        // The attempt times out (the door's seq_timeout) when the gatekeeper is polled.
        let (now, _) = Drive::at(start);
        let due = d.gk.poll_at().unwrap();
        assert!(due > now);
        fx.extend(d.poll(start + due.saturating_since(now).as_millis() as u64));
    }
    let timeouts = (fx.iter())
        .filter(|e| {
            matches!(
                e,
                Effect::Knock {
                    event: Event::Timeout { .. },
                    ..
                }
            )
        })
        .count();
    assert_eq!(timeouts, 4);
    assert!(fx.contains(&Effect::Banned {
        src: ip(src),
        secs: 600
    }));
}

#[test]
fn spa_opens_for_the_source_and_refusals_count_as_failures() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Drive {
        gk: gatekeeper(config(dir.path(), FIXED)),
    };
    let phone = "198.51.100.20";
    let fx = d.datagram(0, phone, 62201, &spa(phone, 22, T0, 1));
    assert_eq!(fx.len(), 4, "{fx:?}");
    assert_eq!(fx[0], Effect::SaveReplay);
    assert_eq!(
        fx[1].line().unwrap(),
        "198.51.100.20: spa-ssh: SPA request for tcp/22 to 198.51.100.20 (user root)"
    );
    assert_eq!(fx[2], Effect::Cue(Cue::Opened));
    let Effect::Open {
        origin, requested, ..
    } = &fx[3]
    else {
        panic!("{fx:?}")
    };
    assert_eq!(origin.door, 1);
    assert_eq!(requested.as_ref().unwrap().to_string(), "22/tcp");
    assert_eq!(d.gk.history().last_opened("spa-ssh"), Some(T0));
    // The same packet again is a replay, refused, and so is one for a port not allowed.
    let again = d.datagram(10, phone, 62201, &spa(phone, 22, T0, 1));
    assert!(
        again[0]
            .line()
            .unwrap()
            .contains("SPA packet refused: the same packet"),
        "{again:?}"
    );
    assert_eq!(opened(&again), []);
    let fx = d.datagram(20, phone, 62201, &spa(phone, 23, T0, 2));
    assert!(fx[0].line().unwrap().contains("allow list"), "{fx:?}");
    // Two refusals more (garbage) and the phone is banned: refusals are failed attempts, and
    // max_failures = 3 allows three.
    let garbage = b"not an spa packet at all, but long enough to be read";
    let fx = d.datagram(25, phone, 62201, garbage);
    assert!(matches!(fx[..], [Effect::SpaRefused { .. }]), "{fx:?}");
    let fx = d.datagram(30, phone, 62201, garbage);
    assert!(matches!(fx[0], Effect::SpaRefused { .. }), "{fx:?}");
    assert_eq!(
        fx[1],
        Effect::Banned {
            src: ip(phone),
            secs: 600
        }
    );
    assert_eq!(d.datagram(40, phone, 62201, &spa(phone, 22, T0, 3)), []);
}

#[test]
fn an_spa_datagram_between_two_knocks_does_not_reset_the_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Drive {
        gk: gatekeeper(config(dir.path(), FIXED)),
    };
    let src = "198.51.100.30";
    let mut fx = d.knock(0, src, 7000, Proto::Tcp);
    // Any UDP datagram to the SPA port (a valid one for another address, here) is SPA's.
    fx.extend(d.datagram(10, src, 62201, b"short"));
    fx.extend(d.knock(20, src, 8000, Proto::Tcp));
    fx.extend(d.knock(30, src, 9000, Proto::Tcp));
    assert_eq!(opened(&fx), [(0, ip(src))]);
    // Fed to the engine as a knock, the same datagram would have reset the attempt: the
    // routing is what keeps it.
    let mut d = Drive {
        gk: gatekeeper(config(dir.path(), FIXED)),
    };
    let mut fx = d.knock(0, src, 7000, Proto::Tcp);
    fx.extend(d.knock(10, src, 62201, Proto::Udp));
    fx.extend(d.knock(20, src, 8000, Proto::Tcp));
    fx.extend(d.knock(30, src, 9000, Proto::Tcp));
    assert_eq!(opened(&fx), []);
}

#[test]
fn a_restart_with_the_replay_cache_still_refuses_an_accepted_packet() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), FIXED);
    let mut d = Drive {
        gk: gatekeeper(c.clone()),
    };
    let phone = "198.51.100.20";
    let packet = spa(phone, 22, T0, 9);
    assert_eq!(opened(&d.datagram(0, phone, 62201, &packet)).len(), 1);
    // What the daemon writes (SaveReplay) and reads back at start.
    let saved = d.gk.spa_replay().to_text();
    let (cache, bad) = ReplayCache::parse(&saved);
    assert_eq!(bad, 0);
    let dynamic = Dynamic::load(&c).unwrap();
    let local = Local::Only([ip(GW)].into_iter().collect());
    let gk = Gatekeeper::new(c, dynamic, cache, local, Instant::ZERO, wall(T0, 5_000));
    let mut d = Drive { gk };
    let fx = d.datagram(5_000, phone, 62201, &packet);
    assert_eq!(opened(&fx), []);
    assert!(fx[0].line().unwrap().contains("a replay"), "{fx:?}");
    // The cache is forgotten once no packet in it could pass the age check: a chore.
    let (now, _) = Drive::at(5_000);
    assert!(d.gk.poll_at().is_some_and(|t| t <= now + CHORES_EVERY));
    let fx = d.poll(200_000);
    assert!(fx.contains(&Effect::SaveReplay), "{fx:?}");
    assert!(d.gk.spa_replay().is_empty());
}

#[test]
fn a_one_time_line_opens_once_and_the_next_one_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("ssh.otp");
    std::fs::write(&list, "# codes\n1001,1002\n2001,2002\n").unwrap();
    let text = "[[door]]\nname = \"otp\"\none_time_sequences = \"@DIR@/ssh.otp\"\nstart_command = \"true\"\n";
    let mut d = Drive {
        gk: gatekeeper(config(dir.path(), text)),
    };
    let src = "198.51.100.40";
    let fx = d.sequence(0, src, &[1001, 1002].map(KnockSpec::tcp));
    let Some(Effect::Open { origin, .. }) = fx.last() else {
        panic!("{fx:?}")
    };
    // The plan's Retire: what to write down comes back as an effect; the gatekeeper writes
    // nothing itself.
    let (now, wall) = Drive::at(20);
    let mut out = Vec::new();
    d.gk.retire(now, wall, *origin, &mut out);
    assert_eq!(
        out,
        [Effect::Retired(Used::OneTime {
            door: "otp".into(),
            path: list.clone(),
            text: "# codes\n#1001,1002\n2001,2002\n".into(),
            left: 1
        })]
    );
    assert_eq!(
        std::fs::read_to_string(&list).unwrap(),
        "# codes\n1001,1002\n2001,2002\n"
    );
    // The used line cannot open again; the next one does.
    assert_eq!(
        opened(&d.sequence(1_000, src, &[1001, 1002].map(KnockSpec::tcp))),
        []
    );
    assert_eq!(
        opened(&d.sequence(2_000, src, &[2001, 2002].map(KnockSpec::tcp))).len(),
        1
    );
}

#[test]
fn hmac_windows_roll_when_polled_and_a_used_window_does_not_open_again() {
    use crate::doors::hmacseq::{self, Params, Secret};
    let dir = tempfile::tempdir().unwrap();
    let text = "[[door]]\nname = \"totp\"\nhmac = { secret_file = \"@DIR@/hmac.secret\" }\nstart_command = \"true\"\n";
    let mut d = Drive {
        gk: gatekeeper(config(dir.path(), text)),
    };
    let secret = Secret::load(&dir.path().join("hmac.secret")).unwrap();
    let params = Params::default();
    let w = params.counter(T0);
    let seq = |w| hmacseq::sequence(&secret, "totp", w, &params);
    // The window changes at a wall-clock time the gatekeeper asks to be polled at.
    let roll = (w + 1) * params.window;
    let (now, _) = Drive::at(0);
    assert_eq!(d.gk.poll_at(), Some(now + Duration::from_secs(roll - T0)));
    // Window w opens, once: retired, its sequence is gone.
    let fx = d.sequence(0, "198.51.100.50", &seq(w));
    let Some(Effect::Open { origin, .. }) = fx.last() else {
        panic!("{fx:?}")
    };
    assert_eq!(origin.window, Some(w));
    let mut out = Vec::new();
    let (now, wall) = Drive::at(100);
    d.gk.retire(now, wall, *origin, &mut out);
    assert_eq!(
        out[0],
        Effect::Retired(Used::Window {
            door: "totp".into(),
            window: w
        })
    );
    assert_eq!(opened(&d.sequence(1_000, "198.51.100.50", &seq(w))), []);
    // Two windows on, w + 2 is not yet accepted; after the roll (polled) it is.
    let ms = (roll - T0) * 1000;
    assert_eq!(
        opened(&d.sequence(ms - 5_000, "198.51.100.51", &seq(w + 2))),
        []
    );
    let p = d.poll(ms);
    assert_eq!(p, []);
    let fx = d.sequence(ms + 1_000, "198.51.100.51", &seq(w + 2));
    assert_eq!(opened(&fx).len(), 1, "{fx:?} {:?}", seq(w + 2));
}

#[test]
fn held_back_lines_are_summed_up_by_a_chore() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Drive {
        gk: gatekeeper(config(
            dir.path(),
            &FIXED.replace("max_failures = 3", "max_failures = 0"),
        )),
    };
    // A scan of the first port from many sources: more stage lines than the burst allows.
    let mut logged = 0;
    let mut held = 0;
    for i in 0..100u32 {
        let src = format!("10.1.{}.{}", i / 250, i % 250 + 1);
        for e in d.knock(u64::from(i), &src, 7000, Proto::Tcp) {
            if let Effect::Knock { log, .. } = e {
                if log {
                    logged += 1;
                } else {
                    held += 1;
                }
            }
        }
    }
    assert_eq!((logged, held), (LOG_BURST, 100 - LOG_BURST));
    let fx = d.poll(200);
    assert_eq!(fx, [Effect::HeldBack(u64::from(100 - LOG_BURST))]);
}
