//! Headless Chromium for the status page's browser tests: a screenshot at a given viewport,
//! and the DOM after the page's scripts have run for a while.
//!
//! Uses Debian's `chromium` package (`apt-get install chromium`), or the binary named by
//! `$CHROMIUM`. Each run gets a fresh profile in a temporary directory, no sandbox (the tests
//! run as root, where Chromium refuses its sandbox), no GPU, and none of the background
//! networking a first run would do: the only traffic is to the URL given. `--virtual-time-budget`
//! lets the page's timers run for that long in virtual time (fast, and the same on a slow
//! machine), and Date.now() advances with it. Included by `tests/it/main.rs`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A Chromium run that takes longer than this is killed.
const RUN_LIMIT: Duration = Duration::from_secs(90);

/// The Chromium binary: `$CHROMIUM`, else `chromium` on the PATH.
pub fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("chromium"))
            .find(|p| p.is_file())
    })
}

/// True if Chromium is here. Otherwise prints `SKIPPED: chromium not installed` and returns
/// false, or panics when `CI` is set (CI must run browser tests).
pub fn available() -> bool {
    if chromium().is_some() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("chromium not installed: CI must run the browser tests (apt-get install chromium)");
    }
    eprintln!("SKIPPED: chromium not installed (apt-get install chromium)");
    false
}

/// Saves a PNG of `url` rendered in a `width`×`height` viewport, after the page settled
/// (1 s of virtual time).
pub fn screenshot(url: &str, width: u32, height: u32, out_png: &Path) -> Result<(), String> {
    if let Some(dir) = out_png.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let _ = std::fs::remove_file(out_png);
    let out = out_png
        .canonicalize()
        .or_else(|_| {
            out_png
                .parent()
                .unwrap_or(Path::new("."))
                .canonicalize()
                .map(|d| d.join(out_png.file_name().unwrap_or_default()))
        })
        .map_err(|e| format!("{}: {e}", out_png.display()))?;
    run(&[
        format!("--window-size={width},{height}"),
        format!("--screenshot={}", out.display()),
        "--virtual-time-budget=1000".to_string(),
        url.to_string(),
    ])?;
    match std::fs::metadata(&out) {
        Ok(m) if m.len() > 0 => Ok(()),
        _ => Err(format!("chromium wrote no screenshot at {}", out.display())),
    }
}

/// The serialized DOM of `url` after its scripts ran for `wait_ms` of virtual time.
pub fn dump_dom(url: &str, wait_ms: u64) -> Result<String, String> {
    run(&[
        "--window-size=1280,800".to_string(),
        format!("--virtual-time-budget={wait_ms}"),
        "--dump-dom".to_string(),
        url.to_string(),
    ])
}

/// The serialized DOM of `url` after `wait_ms` of virtual time, Chromium run inside network
/// namespace `ns` (`ip netns exec NS chromium ...`).
pub fn dump_dom_in(ns: &str, url: &str, wait_ms: u64) -> Result<String, String> {
    run_in(
        &["ip", "netns", "exec", ns],
        &[
            "--window-size=412,915".to_string(),
            format!("--virtual-time-budget={wait_ms}"),
            "--dump-dom".to_string(),
            url.to_string(),
        ],
    )
}

/// A screenshot of `url` inside network namespace `ns`, at `width`×`height`.
pub fn screenshot_in(
    ns: &str,
    url: &str,
    width: u32,
    height: u32,
    out_png: &Path,
    wait_ms: u64,
) -> Result<(), String> {
    run_in(
        &["ip", "netns", "exec", ns],
        &[
            format!("--window-size={width},{height}"),
            format!("--screenshot={}", out_png.display()),
            format!("--virtual-time-budget={wait_ms}"),
            url.to_string(),
        ],
    )
    .map(|_| ())
}

/// Runs headless Chromium with the common flags and `args`; returns its stdout.
fn run(args: &[String]) -> Result<String, String> {
    run_in(&[], args)
}

/// [`run`], the command line prefixed with `prefix` (`ip netns exec NS`).
fn run_in(prefix: &[&str], args: &[String]) -> Result<String, String> {
    let bin = chromium().ok_or("chromium not installed")?;
    let profile = tempfile::tempdir().map_err(|e| format!("temporary profile: {e}"))?;
    let (program, lead): (std::ffi::OsString, Vec<std::ffi::OsString>) = match prefix.split_first()
    {
        Some((p, rest)) => (
            (*p).into(),
            rest.iter()
                .map(|s| (*s).into())
                .chain([bin.clone().into_os_string()])
                .collect(),
        ),
        None => (bin.clone().into_os_string(), Vec::new()),
    };
    let mut child = Command::new(&program)
        .args(&lead)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
            "--no-first-run",
            "--no-default-browser-check",
            "--no-proxy-server",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--mute-audio",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    // Read both pipes in threads so a chatty Chromium never blocks on a full pipe.
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > RUN_LIMIT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("chromium took over {RUN_LIMIT:?}: killed"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("waiting for chromium: {e}")),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if !status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        return Err(format!(
            "chromium exited with {status}: {}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    Ok(stdout)
}
