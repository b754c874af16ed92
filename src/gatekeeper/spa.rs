//! SPA datagrams ([`crate::doors::spa`]) at the gatekeeper: the door whose keys verify one
//! opens for the address the request names, after the checks that need state: the replay
//! cache, the source match and the door's `allow` list. A refused datagram is a failed attempt
//! (rate limits and bans, as a wrong knock); its line says why, never a key or the plaintext.

use std::net::IpAddr;
use std::time::SystemTime;

use super::{Cue, Effect, Gatekeeper};
use crate::config::SpaConfig;
use crate::doors::spa::{self, Request};
use crate::doors::Origin;
use crate::knock::{Knock, PortRange, Ports, Proto};
use crate::status::ActivityKind;
use crate::time::{unix_secs, Instant};

impl Gatekeeper {
    /// A UDP datagram to an SPA door's port.
    pub fn on_datagram(
        &mut self,
        now: Instant,
        wall: SystemTime,
        knock: &Knock,
        data: &[u8],
        out: &mut Vec<Effect>,
    ) {
        let src = knock.src;
        if self.penalties.is_banned(src, now) || !self.local.contains(&knock.dst) {
            return;
        }
        let unix = unix_secs(wall);
        let mut refused: Option<(usize, SpaRefusal)> = None;
        for i in 0..self.config.doors.len() {
            let d = &self.config.doors[i];
            let Some(c) = d.spa.as_ref().filter(|c| c.port == knock.dst_port) else {
                continue;
            };
            let Some(keys) = self.dynamic.spa_keys(&d.name) else {
                continue;
            };
            match spa::verify(data, keys, unix, c.max_age.as_secs()) {
                Ok(request) => {
                    match check(c, src, &request, &self.spa_replay) {
                        Ok((addr, ports)) => self.spa_open(unix, i, src, addr, request, ports, out),
                        Err(why) => self.spa_refused(now, unix, src, i, why, out),
                    }
                    return;
                }
                // With several doors on the port, the first one's reason is told.
                Err(e) => {
                    refused.get_or_insert((i, e.into()));
                }
            }
        }
        if let Some((i, why)) = refused {
            self.spa_refused(now, unix, src, i, why, out);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn spa_open(
        &mut self,
        unix: u64,
        door: usize,
        src: IpAddr,
        addr: IpAddr,
        request: Request,
        ports: Ports,
        out: &mut Vec<Effect>,
    ) {
        let d = &self.config.doors[door];
        let name = d.name.clone();
        let max_age = d.spa.as_ref().map_or(0, |c| c.max_age.as_secs());
        // Kept while the packet could still pass the age check.
        let until = request.timestamp.max(unix) + max_age + 1;
        self.spa_replay.insert(request.packet_digest, until, unix);
        out.push(Effect::SaveReplay);
        let access: Vec<String> = request.access.iter().map(ToString::to_string).collect();
        self.history
            .record(unix, addr, &name, ActivityKind::Open, 1, 1);
        out.push(Effect::SpaAccepted {
            src,
            addr,
            door: name,
            user: request.user,
            access: access.join(","),
        });
        out.push(Effect::Cue(Cue::Opened));
        out.push(Effect::Open {
            origin: Origin { door, window: None },
            src: addr,
            requested: Some(ports),
        });
    }

    fn spa_refused(
        &mut self,
        now: Instant,
        unix: u64,
        src: IpAddr,
        door: usize,
        why: SpaRefusal,
        out: &mut Vec<Effect>,
    ) {
        let name = self.config.doors[door].name.clone();
        self.history
            .record(unix, src, &name, ActivityKind::Reset, 0, 1);
        if self.log_limit.allow(now) {
            out.push(Effect::SpaRefused {
                src,
                door: name,
                why,
            });
        }
        self.penalize(src, now, out);
    }
}

/// Why an SPA datagram was refused: the packet itself ([`spa::Refusal`]), or the checks that
/// need the gatekeeper's state. The text is for the log: never a key or the plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpaRefusal {
    #[error(transparent)]
    Packet(#[from] spa::Refusal),
    #[error("the same packet was accepted before: a replay")]
    Replay,
    #[error("asks to open {addr} but was sent from {src} (require_source_match; a client behind NAT sends its public address with -R, or 0.0.0.0 with -s)")]
    NotFromSource { addr: IpAddr, src: IpAddr },
    #[error("asks for {0}, which this door's allow list does not have")]
    NotAllowed(spa::Access),
}

/// The checks after the packet itself verified: not seen before, the address it names (the
/// source, if it names 0.0.0.0 or ::), and every port it asks for in `allow`. Returns the
/// address to open and the ports.
fn check(
    c: &SpaConfig,
    src: IpAddr,
    request: &Request,
    replay: &spa::ReplayCache,
) -> Result<(IpAddr, Ports), SpaRefusal> {
    if replay.contains(&request.packet_digest) {
        return Err(SpaRefusal::Replay);
    }
    let addr = if request.addr.is_unspecified() {
        src
    } else {
        request.addr
    };
    if c.require_source_match && addr != src {
        return Err(SpaRefusal::NotFromSource { addr, src });
    }
    let mut ports = Vec::with_capacity(request.access.len());
    for a in &request.access {
        let proto = if a.udp { Proto::Udp } else { Proto::Tcp };
        if !c
            .allow
            .iter()
            .any(|r| r.proto == proto && (r.first..=r.last).contains(&a.port))
        {
            return Err(SpaRefusal::NotAllowed(*a));
        }
        ports.push(PortRange {
            proto,
            first: a.port,
            last: a.port,
        });
    }
    ports.sort();
    ports.dedup();
    Ok((addr, Ports::Some(ports)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doors::spa::Access;
    use std::time::Duration;

    fn config(require_source_match: bool) -> SpaConfig {
        SpaConfig {
            key_file: "/k".into(),
            hmac_key_file: "/h".into(),
            port: 62201,
            max_age: Duration::from_secs(120),
            allow: vec![
                PortRange::parse("22/tcp").unwrap(),
                PortRange::parse("8000-8010/udp").unwrap(),
            ],
            require_source_match,
        }
    }

    fn request(addr: &str, access: &[(bool, u16)]) -> Request {
        Request {
            addr: addr.parse().unwrap(),
            access: access
                .iter()
                .map(|&(udp, port)| Access { udp, port })
                .collect(),
            user: "root".into(),
            timestamp: 0,
            client_timeout: None,
            packet_digest: [3; 32],
        }
    }

    #[test]
    fn source_match_allow_list_and_replay() {
        let src: IpAddr = "198.51.100.7".parse().unwrap();
        let empty = spa::ReplayCache::default();
        let c = config(true);
        let (addr, ports) =
            check(&c, src, &request("198.51.100.7", &[(false, 22)]), &empty).unwrap();
        assert_eq!((addr, ports.to_string()), (src, "22/tcp".to_string()));
        // 0.0.0.0 (fwknop -s) is the source.
        let (addr, _) = check(
            &c,
            src,
            &request("0.0.0.0", &[(true, 8005), (false, 22)]),
            &empty,
        )
        .unwrap();
        assert_eq!(addr, src);
        let e = check(&c, src, &request("203.0.113.1", &[(false, 22)]), &empty).unwrap_err();
        assert!(
            e.to_string()
                .contains("asks to open 203.0.113.1 but was sent from 198.51.100.7"),
            "{e}"
        );
        // Without source matching, the address inside is opened (fwknopd's way).
        let (addr, _) = check(
            &config(false),
            src,
            &request("203.0.113.1", &[(false, 22)]),
            &empty,
        )
        .unwrap();
        assert_eq!(addr, "203.0.113.1".parse::<IpAddr>().unwrap());
        for bad in [(false, 23), (true, 22), (true, 8011)] {
            let e = check(&c, src, &request("0.0.0.0", &[(false, 22), bad]), &empty).unwrap_err();
            assert!(e.to_string().contains("allow list"), "{e}");
        }
        let mut seen = spa::ReplayCache::default();
        seen.insert([3; 32], 100, 0);
        let e = check(&c, src, &request("0.0.0.0", &[(false, 22)]), &seen).unwrap_err();
        assert!(e.to_string().contains("replay"), "{e}");
    }
}
