//! `/metrics`: the snapshot in Prometheus' text exposition format 0.0.4.
//!
//! Every family has `# HELP` and `# TYPE` lines before its samples (also when it has none),
//! names start with `knockgate_`, counters end in `_total`, label values are escaped
//! (`\\`, `\"`, `\n`). The names are part of the stable API (README, "Status page").

use std::fmt::Write;

use super::Snapshot;

/// The Content-Type of the exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Escapes a label value: backslash, double quote and line feed.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape_label(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "counter", help);
        self.sample(name, &[], value);
    }
}

/// Renders every metric of the snapshot.
pub fn render_metrics(s: &Snapshot) -> String {
    let mut o = Out(String::with_capacity(4096));
    o.family(
        "knockgate_build_info",
        "gauge",
        "Always 1; the version label is knockgate's version.",
    );
    o.sample("knockgate_build_info", &[("version", &s.version)], 1);
    o.gauge(
        "knockgate_healthy",
        "1 when every capture is up and the firewall (if used) works, else 0.",
        u64::from(s.healthy),
    );
    o.gauge(
        "knockgate_uptime_seconds",
        "Seconds since the daemon started.",
        s.uptime_secs,
    );
    o.gauge(
        "knockgate_snapshot_timestamp_seconds",
        "Wall-clock time (Unix seconds) of the daemon's latest status snapshot.",
        s.now_unix,
    );

    o.family(
        "knockgate_capture_up",
        "gauge",
        "1 when the packet capture on the interface is up, else 0.",
    );
    for c in &s.captures {
        o.sample(
            "knockgate_capture_up",
            &[("interface", &c.interface)],
            u64::from(c.up),
        );
    }
    o.family(
        "knockgate_firewall_healthy",
        "gauge",
        "1 when the firewall backend's last command succeeded, else 0 (absent without a firewall).",
    );
    if let Some(f) = &s.firewall {
        o.sample(
            "knockgate_firewall_healthy",
            &[("backend", &f.backend), ("chain", &f.chain)],
            u64::from(f.healthy),
        );
    }

    o.family(
        "knockgate_door_open_sessions",
        "gauge",
        "Open sessions of the door (firewall openings and pending stop commands).",
    );
    for d in &s.doors {
        o.sample(
            "knockgate_door_open_sessions",
            &[("door", &d.name)],
            d.open.len() as u64,
        );
    }
    o.family(
        "knockgate_door_last_opened_timestamp_seconds",
        "gauge",
        "When the door last opened, Unix seconds (absent if it never did).",
    );
    for d in &s.doors {
        if let Some(t) = d.last_opened_unix {
            o.sample(
                "knockgate_door_last_opened_timestamp_seconds",
                &[("door", &d.name)],
                t,
            );
        }
    }

    let c = &s.counters;
    o.counter(
        "knockgate_packets_total",
        "Packets the captures delivered.",
        c.packets,
    );
    o.counter(
        "knockgate_knocks_total",
        "Packets that reached the knock engine.",
        c.knocks,
    );
    o.counter(
        "knockgate_stages_total",
        "Sequence steps accepted.",
        c.stages,
    );
    o.counter("knockgate_opens_total", "Doors opened.", c.opens);
    o.counter(
        "knockgate_timeouts_total",
        "Attempts that timed out before the last step.",
        c.timeouts,
    );
    o.counter(
        "knockgate_resets_total",
        "Attempts reset by a wrong knock.",
        c.resets,
    );
    o.counter(
        "knockgate_evictions_total",
        "Attempts evicted because too many sources were knocking.",
        c.evictions,
    );
    o.counter(
        "knockgate_parse_errors_total",
        "Captured packets that could not be parsed.",
        c.parse_errors,
    );
    o.counter(
        "knockgate_dropped_total",
        "Captured packets dropped because the daemon loop was behind.",
        c.dropped_queue,
    );
    o.gauge(
        "knockgate_tracked_sources",
        "Sources with a knock attempt in progress.",
        c.tracked_sources,
    );
    o.gauge(
        "knockgate_knocks_this_hour",
        "Accepted steps in the current hour (the last bar of the page's chart).",
        s.knocks_per_hour.last().copied().map_or(0, u64::from),
    );

    o.family(
        "knockgate_relay_on",
        "gauge",
        "1 when the GPIO relay is on, else 0.",
    );
    for r in &s.relays {
        o.sample(
            "knockgate_relay_on",
            &[("relay", &r.name), ("pin", &r.pin.to_string())],
            u64::from(r.on),
        );
    }
    o.family(
        "knockgate_led_pattern",
        "gauge",
        "1 for the pattern the status LED shows (absent without an LED).",
    );
    if let Some(l) = &s.led {
        o.sample(
            "knockgate_led_pattern",
            &[("pin", &l.pin.to_string()), ("pattern", l.pattern.as_str())],
            1,
        );
    }
    o.family(
        "knockgate_gpio_available",
        "gauge",
        "1 when every relay and LED pin is claimed, 0 while the GPIO is unavailable (absent without relays or LED).",
    );
    if let Some(g) = &s.gpio {
        o.sample(
            "knockgate_gpio_available",
            &[("backend", &g.backend)],
            u64::from(g.available),
        );
    }
    o.family(
        "knockgate_mqtt_connected",
        "gauge",
        "1 while connected to the MQTT broker (absent without [mqtt]).",
    );
    o.family(
        "knockgate_mqtt_dropped_total",
        "counter",
        "Messages for the broker dropped because the queue was full.",
    );
    o.family(
        "knockgate_mqtt_ignored_total",
        "counter",
        "Messages on command topics ignored: malformed, or over a relay's or target's limit.",
    );
    if let Some(m) = &s.mqtt {
        o.sample(
            "knockgate_mqtt_connected",
            &[("broker", &m.broker)],
            u64::from(m.connected),
        );
        o.sample("knockgate_mqtt_dropped_total", &[], m.dropped);
        o.sample("knockgate_mqtt_ignored_total", &[], m.ignored);
    }
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::html::sample;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        let mut s = sample();
        s.doors[1].name = "x\"}\ny".into();
        let text = render_metrics(&s);
        assert!(text.contains("knockgate_door_open_sessions{door=\"x\\\"}\\ny\"} 0\n"));
    }

    #[test]
    fn samples_of_every_part() {
        let text = render_metrics(&sample());
        for line in [
            "knockgate_build_info{version=\"0.1.0\"} 1",
            "knockgate_healthy 0",
            "knockgate_uptime_seconds 10920",
            "knockgate_snapshot_timestamp_seconds 1790000000",
            "knockgate_capture_up{interface=\"eth0\"} 1",
            "knockgate_capture_up{interface=\"wlan<0>\"} 0",
            "knockgate_firewall_healthy{backend=\"iptables\",chain=\"KNOCKD\"} 1",
            "knockgate_door_open_sessions{door=\"ssh<script>alert(1)</script>\"} 1",
            "knockgate_door_open_sessions{door=\"garage\"} 0",
            "knockgate_door_last_opened_timestamp_seconds{door=\"ssh<script>alert(1)</script>\"} 1789999981",
            "knockgate_packets_total 1234",
            "knockgate_knocks_total 99",
            "knockgate_stages_total 40",
            "knockgate_opens_total 7",
            "knockgate_timeouts_total 3",
            "knockgate_resets_total 2",
            "knockgate_evictions_total 0",
            "knockgate_parse_errors_total 1",
            "knockgate_dropped_total 0",
            "knockgate_tracked_sources 1",
            "knockgate_knocks_this_hour 7",
            "knockgate_relay_on{relay=\"garage \\\"door\\\"\",pin=\"17\"} 1",
            "knockgate_led_pattern{pin=\"27\",pattern=\"open\"} 1",
            "knockgate_gpio_available{backend=\"cdev\"} 1",
            "# TYPE knockgate_opens_total counter",
            "# TYPE knockgate_capture_up gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
        // A door that never opened has no last-opened sample.
        assert!(!text.contains("last_opened_timestamp_seconds{door=\"garage\"}"));
    }

    #[test]
    fn help_and_type_come_first_and_names_are_well_formed() {
        let text = render_metrics(&sample());
        let mut declared: Vec<String> = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(kind == "gauge" || kind == "counter", "{line}");
                assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
                declared.push(name.to_string());
            } else if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap();
                assert!(name.starts_with("knockgate_"), "{line}");
            } else {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(declared.last().map(String::as_str), Some(name), "{line}");
                let value = line.rsplit(' ').next().unwrap();
                value.parse::<f64>().unwrap();
            }
        }
        // No family twice.
        let mut unique = declared.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), declared.len());
    }
}
