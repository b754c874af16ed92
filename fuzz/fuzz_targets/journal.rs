//! The state journal loader on any bytes (`sessions::parse_journal`, which `sessions::load`
//! reads the file with), then what the daemon does with a journal at start: restore the
//! sessions, and write the journal again.
//!
//! Invariants checked beyond "no panic": what the daemon writes it reads back unchanged; a
//! restored session closes no later than its own duration from now (a wrong clock can make a
//! door close early, never late).
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use knockgate::actions::sessions::{self, Sessions};
use knockgate::time::Instant;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(journal) = sessions::parse_journal(data) else {
        return;
    };
    // Written as `sessions::save` writes it, and read back: the same journal.
    let round_trip = |j: &sessions::Journal| {
        let written = serde_json::to_vec_pretty(j).expect("a journal serializes");
        let reread = sessions::parse_journal(&written).expect("a written journal reads back");
        let rewritten = serde_json::to_vec_pretty(&reread).expect("a journal serializes");
        assert_eq!(
            String::from_utf8_lossy(&written),
            String::from_utf8_lossy(&rewritten)
        );
    };
    round_trip(&journal);

    let now = Instant::from_secs(100);
    let wall = UNIX_EPOCH + Duration::from_secs(1_790_000_000);
    let restored = Sessions::restore(journal, now, wall);
    for s in restored.iter() {
        assert!(
            s.deadline <= now + Duration::from_millis(s.duration_ms),
            "{s:?}"
        );
        assert!(s.deadline >= now, "{s:?}");
    }
    round_trip(&restored.to_journal());
});
