//! The one-time sequence list on any text (`OneTime::parse`), then using it up as the daemon
//! does: retire the active line and rewrite the file, line after line.
//!
//! Invariants checked beyond "no panic": an error names a line of the text; after each use the
//! rewritten file, read again as after a restart, has the same active sequence and one fewer
//! unused line (a used line is never active again), and the last use leaves none.
#![no_main]

use std::path::Path;

use knockgate::doors::otp::{OneTime, OtpError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("ssh.otp");
    let mut list = match OneTime::parse(text, path) {
        Ok(l) => l,
        Err(OtpError::Line { line, .. }) => {
            let lines = text.lines().count();
            assert!((1..=lines).contains(&line), "line {line} of {lines}");
            return;
        }
        Err(e) => panic!("parse of text failed with {e}"),
    };
    // Bound the work per input: long lists add nothing the first uses don't exercise.
    for _ in 0..64 {
        let before = list.remaining();
        if !list.retire() {
            assert_eq!(before, 0);
            assert!(list.active().is_empty());
            break;
        }
        let restarted = OneTime::parse(&list.text(), path).expect("a rewritten list parses");
        assert_eq!(restarted.remaining(), before - 1);
        assert_eq!(restarted.active(), list.active());
        list = restarted;
    }
});
