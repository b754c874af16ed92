//! The knockd.conf importer on any text.
//!
//! Invariants checked beyond "no panic": an error names a line of the text; an accepted file's
//! output is a config `config::parse` accepts (the importer's promise), with one door per door
//! section of the knockd file (nothing dropped silently).
#![no_main]

use knockgate::cli::knockd_import;
use knockgate::config;
use libfuzzer_sys::fuzz_target;

/// C's isspace() in the "C" locale, as knockd (and the importer) trims lines.
const C_SPACE: [char; 6] = [' ', '\t', '\n', '\r', '\x0b', '\x0c'];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match knockd_import::import(text, "knockd.conf") {
        Err(e) => {
            let lines = text.lines().count().max(1);
            assert!(
                (1..=lines).contains(&e.line),
                "line {} of {lines}: {e}",
                e.line
            );
        }
        Ok(out) => {
            let c = config::parse(&out, "knockd.conf")
                .unwrap_or_else(|e| panic!("import output refused: {e}\n{out}"));
            let sections = text
                .lines()
                .map(|l| l.trim_matches(C_SPACE))
                .filter(|l| l.len() >= 2 && l.starts_with('[') && l.ends_with(']'))
                .filter(|l| *l != "[options]")
                .count();
            assert_eq!(c.doors.len(), sections, "doors\n{out}");
        }
    }
});
