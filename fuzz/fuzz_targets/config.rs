//! The TOML config loader on any text.
//!
//! Invariants checked beyond "no panic": an error names a line of the text (1 to one past the
//! last); an accepted config has exactly the `[[door]]` tables of the text, with unique names,
//! and every door without a one-time list or an HMAC secret has 1 to 32 steps.
#![no_main]

use knockgate::config::{self, MAX_SEQUENCE_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match config::parse(text, "fuzz.toml") {
        Err(e) => {
            if let Some(line) = e.line {
                let lines = text.lines().count();
                assert!(
                    (1..=lines + 1).contains(&line),
                    "line {line} of {lines}: {e}"
                );
            }
        }
        Ok(c) => {
            let table: toml::Table = text.parse().expect("accepted by config::parse");
            let doors = table
                .get("door")
                .and_then(|d| d.as_array())
                .map_or(0, |a| a.len());
            assert_eq!(c.doors.len(), doors, "door count");
            for (i, d) in c.doors.iter().enumerate() {
                assert!(
                    c.doors[..i].iter().all(|o| o.name != d.name),
                    "door name {:?} twice",
                    d.name
                );
                if d.one_time_sequences.is_none() && d.hmac.is_none() {
                    assert!(
                        (1..=MAX_SEQUENCE_LEN).contains(&d.sequence.len()),
                        "door {:?}: {} steps",
                        d.name,
                        d.sequence.len()
                    );
                }
            }
        }
    }
});
