//! This boot's setup problems, as notice files the status page shows: `knockgate bootfiles`
//! writes one per boot file it could not take in ([`crate::cli::bootfiles`]), the daemon reads
//! them at start and at each reload. In a tmpfs ([`NOTICES_DIR`]): they are one boot's.

use std::fs;
use std::path::{Path, PathBuf};

/// Where this boot's setup problems are written for the status page (tmpfs: one boot's).
pub const NOTICES_DIR: &str = "/run/knockgate-notices";
/// At most this many notices, of at most this many bytes, are shown.
const MAX_NOTICES: usize = 8;
const MAX_NOTICE_BYTES: usize = 500;

/// The notice file for `name` (a boot file's: `wifi`, `config`).
fn notice_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.notice"))
}

/// Writes the notice `name` (`problem`), or removes it (None). Best effort: a notice that
/// cannot be written is only not shown.
pub fn set(dir: &Path, name: &str, problem: Option<&str>) {
    let path = notice_path(dir, name);
    match problem {
        Some(text) => {
            let _ = fs::create_dir_all(dir);
            let _ = fs::write(&path, format!("{text}\n"));
        }
        None => {
            let _ = fs::remove_file(&path);
        }
    }
}

/// The notices in `dir`, for the status page: the first line of each `*.notice`, by name.
pub fn read(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "notice"))
        .collect();
    names.sort();
    names
        .iter()
        .take(MAX_NOTICES)
        .filter_map(|p| {
            let text = fs::read(p).ok()?;
            let text = String::from_utf8_lossy(&text[..text.len().min(MAX_NOTICE_BYTES)]);
            let line = text.lines().next()?.trim().to_string();
            (!line.is_empty()).then_some(line)
        })
        .collect()
}
