//! `/api/status`: the snapshot as JSON, for scripts and Home Assistant.
//!
//! The document is [`Snapshot`] serialized by serde: its field names are the API, documented
//! field by field in README.md ("Status page"), and stay stable. Addresses are strings, times
//! are Unix seconds, absent values are `null`.

use super::Snapshot;

/// The Content-Type of `/api/status` (JSON is UTF-8 by definition: RFC 8259 defines no charset
/// parameter).
pub const CONTENT_TYPE: &str = "application/json";

/// Renders the snapshot as one line of JSON, followed by a newline.
pub fn render_json(s: &Snapshot) -> String {
    // A Snapshot is plain data with string keys: serializing it cannot fail.
    let mut out = serde_json::to_string(s).expect("a Snapshot serializes");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::status::html::sample;

    #[test]
    fn field_names_and_types_are_the_documented_api() {
        let v: Value = serde_json::from_str(&render_json(&sample())).unwrap();
        assert_eq!(v["version"], "0.1.0");
        assert_eq!(v["now_unix"], 1_790_000_000);
        assert_eq!(v["healthy"], false);
        assert_eq!(v["captures"][1]["interface"], "wlan<0>");
        assert_eq!(v["captures"][1]["error"], "No such device");
        assert_eq!(v["captures"][0]["error"], Value::Null);
        assert_eq!(v["captures"][0]["addresses"][1], "fd00::1");
        assert_eq!(v["firewall"]["chain"], "KNOCKD");
        let door = &v["doors"][0];
        assert_eq!(door["steps"], 3);
        assert_eq!(door["open"][0]["src"], "203.0.113.9");
        assert_eq!(door["open"][0]["expires_unix"], 1_790_001_781);
        assert_eq!(v["recent"][1]["lan"], true);
        assert_eq!(v["knocks_per_hour"].as_array().unwrap().len(), 24);
        assert_eq!(v["counters"]["dropped_queue"], 0);
        assert_eq!(v["relays"][0]["pin"], 17);
        assert_eq!(v["led"]["pattern"], "open");
        assert_eq!(v["state"]["writable"], true);
        assert!(render_json(&sample()).ends_with("}\n"));
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "captures",
                "counters",
                "doors",
                "firewall",
                "gpio",
                "healthy",
                "knocks_per_hour",
                "led",
                "notices",
                "now_unix",
                "recent",
                "relays",
                "state",
                "uptime_secs",
                "version"
            ]
        );
    }
}
