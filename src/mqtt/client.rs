//! The MQTT client: rumqttc's blocking client on two threads of its own, fed by the daemon
//! loop through a bounded queue that never blocks it.
//!
//! - The loop calls [`Mqtt::event`], [`Mqtt::doors`] and [`Mqtt::health`]: each puts a message
//!   in the queue (at most [`QUEUE_MAX`]; a full queue drops the oldest and counts it) and
//!   returns. Retained states are also kept by topic, so that a reconnect republishes the
//!   current ones, and a state that did not change is not queued again.
//! - The publisher thread takes messages from the queue and hands them to rumqttc (which
//!   blocks it, not the loop, while rumqttc's own queue is full: a broker that is down, slow
//!   or refusing costs the doors nothing).
//! - The connection thread drives rumqttc's event loop: after each connect it publishes
//!   `online`, the discovery document and the retained states, subscribes to Home
//!   Assistant's status topic and resends discovery 1 to 5 s after Home Assistant says
//!   `online`; after an error it waits (1 s doubling to 60 s, with jitter) and reconnects.
//!   Idle, it wakes only for rumqttc's keep-alive ping.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use rumqttc::{Client, Event, LastWill, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use tracing::{info, warn};

use super::{EventKind, Topics};
use crate::config::MqttConfig;

/// Messages held for the publisher at most.
pub const QUEUE_MAX: usize = 256;
/// rumqttc's own request queue.
const REQUESTS: usize = 1024;
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// What the page and the log can say of the connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MqttStatus {
    pub connected: bool,
    pub last_error: Option<String>,
    /// Messages the full queue dropped.
    pub dropped: u64,
    /// Messages on a command topic that were not a command (malformed payload), and
    /// commands refused by the relay's command limit or a full mailbox.
    pub ignored: u64,
}

/// A relay takes at most one command from Home Assistant per this (a flood of commands
/// cannot switch it faster).
pub const COMMAND_EVERY: Duration = Duration::from_secs(1);

/// Hands a command to the daemon loop; false if it was not taken (the mailbox is full).
pub type OnCommand = Box<dyn Fn(super::Command) -> bool + Send>;

struct Out {
    topic: String,
    payload: String,
    retain: bool,
}

#[derive(Default)]
struct Queue {
    out: VecDeque<Out>,
    /// The current retained states, by topic.
    retained: BTreeMap<String, String>,
    status: MqttStatus,
    /// When each relay last took a command (the daemon's clock).
    last_command: BTreeMap<String, crate::time::Instant>,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    /// The topics and the discovery document, replaced when a reload changes the doors.
    now: Mutex<(Arc<Topics>, Arc<String>)>,
    /// `mqtt://host:port`.
    broker: String,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn topics(&self) -> Arc<Topics> {
        self.now
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .clone()
    }

    fn discovery(&self) -> Arc<String> {
        self.now
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .clone()
    }
}

/// The daemon's handle on the client.
pub struct Mqtt {
    shared: Arc<Shared>,
    client: Client,
}

/// Reads a secret alone in a file that only its owner can read (also `knockgate check`).
pub fn read_password(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{shown} is readable by others (mode {mode:o}): chmod 600 it"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

/// The broker's options: client id, keep-alive, last will, credentials, TLS.
fn options(cfg: &MqttConfig, topics: &Topics) -> Result<MqttOptions, String> {
    let id = cfg
        .client_id
        .clone()
        .unwrap_or_else(|| format!("knockgate-{}", super::slug(&topics.hostname)));
    let mut o = MqttOptions::new(id, cfg.host.clone(), cfg.port);
    o.set_keep_alive(cfg.keep_alive);
    o.set_max_packet_size(256 * 1024, 256 * 1024);
    o.set_clean_session(true);
    o.set_last_will(LastWill::new(
        topics.availability(),
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    if let Some(user) = &cfg.username {
        let password = match &cfg.password_file {
            Some(p) => read_password(p)?,
            None => String::new(),
        };
        o.set_credentials(user.clone(), password);
    }
    if cfg.tls {
        // ring: builds for armv7 and aarch64 with the cross gcc (aws-lc would need cmake
        // and more); installed once as the process's provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca_path = cfg
            .ca_file
            .clone()
            .unwrap_or_else(|| crate::config::SYSTEM_CA_FILE.into());
        let ca = std::fs::read(&ca_path)
            .map_err(|e| format!("cannot read the CA file {}: {e}", ca_path.display()))?;
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
            ca,
            alpn: None,
            client_auth: None,
        }));
    }
    Ok(o)
}

/// A random number of milliseconds in `0..max` (jitter; no cryptographic use).
fn jitter_ms(max: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(max);
    h.finish() % max.max(1)
}

impl Mqtt {
    /// Starts the client's threads. An error (the password file, the CA file, no thread)
    /// leaves the daemon without MQTT, logged by the caller; the doors never depend on it.
    pub fn start(cfg: &MqttConfig, topics: Topics, on_command: OnCommand) -> Result<Mqtt, String> {
        let opts = options(cfg, &topics)?;
        let discovery = super::discovery(&topics).to_string();
        let (client, mut connection) = Client::new(opts, REQUESTS);
        let broker = format!(
            "{}://{}:{}",
            if cfg.tls { "mqtts" } else { "mqtt" },
            cfg.host,
            cfg.port
        );
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            now: Mutex::new((Arc::new(topics), Arc::new(discovery))),
            broker: broker.clone(),
        });
        {
            let shared = shared.clone();
            let client = client.clone();
            std::thread::Builder::new()
                .name("knockgate-mqtt".into())
                .spawn(move || {
                    let mut backoff = BACKOFF_FIRST;
                    for notification in connection.iter() {
                        match notification {
                            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                                backoff = BACKOFF_FIRST;
                                {
                                    let mut q = shared.lock();
                                    q.status.connected = true;
                                    q.status.last_error = None;
                                }
                                info!(broker = %broker, "MQTT: connected to {broker}");
                                let _ = client
                                    .try_subscribe(shared.topics().ha_status(), QoS::AtLeastOnce);
                                // Only what opted in listens for commands.
                                for topic in shared.topics().command_topics() {
                                    let _ = client.try_subscribe(topic, QoS::AtLeastOnce);
                                }
                                announce(&shared, &client);
                            }
                            Ok(Event::Incoming(Packet::Publish(p))) => {
                                if let Some(c) = shared.topics().command(&p.topic, &p.payload) {
                                    if !on_command(c) {
                                        shared.lock().status.ignored += 1;
                                    }
                                } else if p.topic != shared.topics().ha_status() {
                                    shared.lock().status.ignored += 1;
                                } else if p.topic == shared.topics().ha_status()
                                    && p.payload.as_ref() == b"online"
                                {
                                    // Home Assistant restarted: discovery again, after a
                                    // short random delay (its documented advice).
                                    let (shared, client) = (shared.clone(), client.clone());
                                    let _ = std::thread::Builder::new()
                                        .name("knockgate-mqtt-ha".into())
                                        .spawn(move || {
                                            std::thread::sleep(Duration::from_millis(
                                                1000 + jitter_ms(4000),
                                            ));
                                            announce(&shared, &client);
                                        });
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                let text = e.to_string();
                                let first = {
                                    let mut q = shared.lock();
                                    let was = q.status.connected;
                                    q.status.connected = false;
                                    let new = q.status.last_error.as_deref() != Some(text.as_str());
                                    q.status.last_error = Some(text.clone());
                                    was || new
                                };
                                if first {
                                    warn!(broker = %broker, "MQTT: {broker}: {text}; retrying (the doors do not wait for it)");
                                }
                                let wait = backoff + Duration::from_millis(jitter_ms(backoff.as_millis() as u64 / 4 + 1));
                                std::thread::sleep(wait);
                                backoff = (backoff * 2).min(BACKOFF_MAX);
                            }
                        }
                    }
                })
                .map_err(|e| format!("cannot start the MQTT thread: {e}"))?;
        }
        {
            let shared = shared.clone();
            let client = client.clone();
            std::thread::Builder::new()
                .name("knockgate-mqtt-pub".into())
                .spawn(move || loop {
                    let out = {
                        let mut q = shared.lock();
                        loop {
                            if let Some(o) = q.out.pop_front() {
                                break o;
                            }
                            q = shared.ready.wait(q).unwrap_or_else(PoisonError::into_inner);
                        }
                    };
                    if client
                        .publish(out.topic, QoS::AtLeastOnce, out.retain, out.payload)
                        .is_err()
                    {
                        return; // the client is gone
                    }
                })
                .map_err(|e| format!("cannot start the MQTT thread: {e}"))?;
        }
        Ok(Mqtt { shared, client })
    }

    fn push(&self, topic: String, payload: String, retain: bool) {
        let mut q = self.shared.lock();
        if retain {
            if q.retained.get(&topic) == Some(&payload) {
                return;
            }
            q.retained.insert(topic.clone(), payload.clone());
        }
        if q.out.len() >= QUEUE_MAX {
            q.out.pop_front();
            q.status.dropped += 1;
        }
        q.out.push_back(Out {
            topic,
            payload,
            retain,
        });
        drop(q);
        self.shared.ready.notify_one();
    }

    /// A door event (not retained).
    pub fn event(&self, kind: EventKind, door: &str, source: &str) {
        self.push(
            self.shared.topics().event(),
            super::event(kind, door, source),
            false,
        );
    }

    /// The open sessions of every door (doors not named have none).
    pub fn doors(&self, open: &BTreeMap<String, usize>) {
        let t = self.shared.topics();
        for (door, slug) in &t.doors {
            let n = open.get(door).copied().unwrap_or(0);
            self.push(
                t.door_open(slug),
                if n > 0 { "ON" } else { "OFF" }.into(),
                true,
            );
            self.push(t.door_sessions(slug), n.to_string(), true);
        }
    }

    /// The gateway's health: `ok`, or the first fault.
    pub fn health(&self, faults: &[String]) {
        let text = faults.first().cloned().unwrap_or_else(|| "ok".into());
        self.push(self.shared.topics().health(), text, true);
    }

    /// Whether `relay` (or a wake-on-LAN door) may take a command now ([`COMMAND_EVERY`]);
    /// counts a refusal.
    pub fn allow_command(&self, relay: &str, now: crate::time::Instant) -> bool {
        let mut q = self.shared.lock();
        if q.last_command
            .get(relay)
            .is_some_and(|&t| now < t + COMMAND_EVERY)
        {
            q.status.ignored += 1;
            return false;
        }
        q.last_command.insert(relay.to_string(), now);
        true
    }

    /// The relays' levels as the GPIO reports them, for those Home Assistant sees.
    pub fn relays(&self, relays: &[crate::status::RelayStatus]) {
        let topics = self.shared.topics().relays.clone();
        for (name, slug, _) in &topics {
            if let Some(r) = relays.iter().find(|r| r.name == *name) {
                let state = if r.on { "ON" } else { "OFF" };
                self.push(self.shared.topics().relay_state(slug), state.into(), true);
            }
        }
    }

    /// A reload changed the doors (or relays, targets): the discovery document is sent anew,
    /// the components that went away removed (Home Assistant removes a component sent with
    /// its platform only), and their retained states cleared (an empty retained message).
    pub fn reconfigure(&self, topics: Topics) {
        let old = self.shared.topics();
        if *old == topics {
            return;
        }
        let new_doc = super::discovery(&topics);
        let mut doc = new_doc.clone();
        let old_doc = super::discovery(&old);
        let mut gone_states = Vec::new();
        if let (Some(cmps), Some(old_cmps)) =
            (doc["cmps"].as_object_mut(), old_doc["cmps"].as_object())
        {
            for (key, c) in old_cmps {
                if !cmps.contains_key(key) {
                    cmps.insert(key.clone(), serde_json::json!({"p": c["p"]}));
                    if let Some(t) = c["state_topic"].as_str() {
                        gone_states.push(t.to_string());
                    }
                }
            }
        }
        let discovery_topic = topics.discovery();
        *self
            .shared
            .now
            .lock()
            .unwrap_or_else(PoisonError::into_inner) =
            (Arc::new(topics), Arc::new(new_doc.to_string()));
        self.push_always(discovery_topic, doc.to_string(), true);
        for t in gone_states {
            self.shared.lock().retained.remove(&t);
            self.push_always(t, String::new(), true);
        }
        // New command topics are subscribed to at the next connect; now too.
        for topic in self.shared.topics().command_topics() {
            let _ = self.client.try_subscribe(topic, QoS::AtLeastOnce);
        }
    }

    /// Queues a message whatever the retained states say.
    fn push_always(&self, topic: String, payload: String, retain: bool) {
        let mut q = self.shared.lock();
        if q.out.len() >= QUEUE_MAX {
            q.out.pop_front();
            q.status.dropped += 1;
        }
        q.out.push_back(Out {
            topic,
            payload,
            retain,
        });
        drop(q);
        self.shared.ready.notify_one();
    }

    /// The page's view of the connection.
    pub fn view(&self) -> crate::status::MqttView {
        let st = self.status();
        crate::status::MqttView {
            broker: self.shared.broker.clone(),
            connected: st.connected,
            last_error: st.last_error,
            dropped: st.dropped,
            ignored: st.ignored,
        }
    }

    pub fn status(&self) -> MqttStatus {
        self.shared.lock().status.clone()
    }
}

impl Drop for Mqtt {
    /// A clean stop: `offline` (retained), then the disconnect (no last will then).
    fn drop(&mut self) {
        let connected = self.shared.lock().status.connected;
        let _ = self.client.try_publish(
            self.shared.topics().availability(),
            QoS::AtLeastOnce,
            true,
            "offline",
        );
        let _ = self.client.try_disconnect();
        if connected {
            // The connection thread sends both before the process ends.
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// After a connect (or Home Assistant's `online`): `online`, discovery, the retained states.
fn announce(shared: &Shared, client: &Client) {
    let t = shared.topics();
    let _ = client.try_publish(t.availability(), QoS::AtLeastOnce, true, "online");
    let _ = client.try_publish(
        t.discovery(),
        QoS::AtLeastOnce,
        true,
        shared.discovery().to_string(),
    );
    let states: Vec<(String, String)> = shared
        .lock()
        .retained
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (topic, payload) in states {
        let _ = client.try_publish(topic, QoS::AtLeastOnce, true, payload);
    }
}
