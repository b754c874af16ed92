//! SPA datagrams ([`crate::doors::spa`]) in the daemon: the door whose keys verify one opens
//! for the address the request names, after the checks that need the daemon's state: the
//! replay cache, the source match and the door's `allow` list. A refused datagram is a failed
//! attempt (rate limits and bans, as a wrong knock); its log line says why, never a key or
//! the plaintext.

use std::net::IpAddr;

use tracing::{error, info, warn};

use super::Daemon;
use crate::config::SpaConfig;
use crate::doors::spa::{self, Request};
use crate::doors::Origin;
use crate::knock::{Knock, Proto};
use crate::knock::{PortRange, Ports};
use crate::status::ActivityKind;
use crate::time::Instant;

impl Daemon {
    /// A UDP datagram to an SPA door's port.
    pub(super) fn on_datagram(&mut self, knock: &Knock, data: &[u8]) {
        let now = self.backends.clock.now();
        let src = knock.src;
        if self.penalties.is_banned(src, now) || !self.local.contains(&knock.dst) {
            return;
        }
        let wall = self.unix_now();
        let mut refused: Option<(usize, String)> = None;
        for i in 0..self.config.doors.len() {
            let d = &self.config.doors[i];
            let Some(c) = d.spa.as_ref().filter(|c| c.port == knock.dst_port) else {
                continue;
            };
            let Some(keys) = self.dynamic.spa_keys(&d.name) else {
                continue;
            };
            match spa::verify(data, keys, wall, c.max_age.as_secs()) {
                Ok(request) => {
                    match check(c, src, &request, &self.spa_replay) {
                        Ok((addr, ports)) => self.spa_open(now, i, src, addr, request, ports),
                        Err(why) => self.spa_refused(now, src, i, &why),
                    }
                    return;
                }
                // With several doors on the port, the first one's reason is told.
                Err(e) => {
                    refused.get_or_insert((i, e.to_string()));
                }
            }
        }
        if let Some((i, why)) = refused {
            self.spa_refused(now, src, i, &why);
        }
    }

    fn spa_open(
        &mut self,
        now: Instant,
        door: usize,
        src: IpAddr,
        addr: IpAddr,
        request: Request,
        ports: Ports,
    ) {
        let wall = self.unix_now();
        let d = &self.config.doors[door];
        let name = d.name.clone();
        let max_age = d.spa.as_ref().map_or(0, |c| c.max_age.as_secs());
        // Kept while the packet could still pass the age check.
        let until = request.timestamp.max(wall) + max_age + 1;
        self.spa_replay.insert(request.packet_digest, until, wall);
        self.save_spa_replay();
        let access: Vec<String> = request.access.iter().map(ToString::to_string).collect();
        info!(%src, door = %name, user = %request.user, "{src}: {name}: SPA request for {} to {addr} (user {})", access.join(","), request.user);
        info!(src = %addr, door = %name, "{addr}: {name}: OPEN SESAME");
        self.report
            .record(wall, addr, &name, ActivityKind::Open, 1, 1);
        if let Some(o) = &mut self.outputs {
            o.opened(now);
        }
        let origin = Origin { door, window: None };
        self.open(now, addr, origin, Some(&ports));
        self.publish(now);
    }

    fn spa_refused(&mut self, now: Instant, src: IpAddr, door: usize, why: &str) {
        let name = self.config.doors[door].name.clone();
        if self.log_limit.allow(now) {
            warn!(%src, door = %name, "{src}: {name}: SPA packet refused: {why}");
        }
        let wall = self.unix_now();
        self.report
            .record(wall, src, &name, ActivityKind::Reset, 0, 1);
        self.penalize(src, now);
    }

    /// Writes the replay cache to the state directory (atomically), if the daemon keeps state.
    pub(super) fn save_spa_replay(&mut self) {
        let Some(dir) = self.journal.as_ref().and_then(|j| j.parent()) else {
            return;
        };
        let path = dir.join(spa::REPLAY_FILE);
        let result = crate::sys::fsutil::write_atomic(&path, self.spa_replay.to_text().as_bytes());
        if let Err(e) = &result {
            error!(
                "cannot save the SPA replay cache {}: {e}; it is kept in memory",
                path.display()
            );
        }
        self.report.state_written(
            spa::REPLAY_FILE,
            result.err().map(|e| format!("{}: {e}", path.display())),
        );
    }
}

/// The checks after the packet itself verified: not seen before, the address it names (the
/// source, if it names 0.0.0.0 or ::), and every port it asks for in `allow`. Returns the
/// address to open and the ports.
fn check(
    c: &SpaConfig,
    src: IpAddr,
    request: &Request,
    replay: &spa::ReplayCache,
) -> Result<(IpAddr, Ports), String> {
    if replay.contains(&request.packet_digest) {
        return Err("the same packet was accepted before: a replay".to_string());
    }
    let addr = if request.addr.is_unspecified() {
        src
    } else {
        request.addr
    };
    if c.require_source_match && addr != src {
        return Err(format!(
            "asks to open {addr} but was sent from {src} (require_source_match; a client behind NAT sends its public address with -R, or 0.0.0.0 with -s)"
        ));
    }
    let mut ports = Vec::with_capacity(request.access.len());
    for a in &request.access {
        let proto = if a.udp { Proto::Udp } else { Proto::Tcp };
        if !c
            .allow
            .iter()
            .any(|r| r.proto == proto && (r.first..=r.last).contains(&a.port))
        {
            return Err(format!(
                "asks for {a}, which this door's allow list does not have"
            ));
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
            e.contains("asks to open 203.0.113.1 but was sent from 198.51.100.7"),
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
            assert!(e.contains("allow list"), "{e}");
        }
        let mut seen = spa::ReplayCache::default();
        seen.insert([3; 32], 100, 0);
        let e = check(&c, src, &request("0.0.0.0", &[(false, 22)]), &seen).unwrap_err();
        assert!(e.contains("replay"), "{e}");
    }
}
