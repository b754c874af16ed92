//! Running a door's commands: from an argv, never through a shell, never blocking the loop.
//!
//! Each command runs in its own child process with standard input closed; a thread waits for it
//! and logs knockd's lines (`door: running command: CMD`, `door: command returned non-zero status
//! code (N)`). A command that runs longer than its limit is killed.

use std::io;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

/// How long a command may run before it is killed.
pub const DEFAULT_LIMIT: Duration = Duration::from_secs(60);

/// How a finished command ended.
#[derive(Debug)]
pub enum Outcome {
    Exited(ExitStatus),
    /// Killed after running longer than the limit.
    TimedOut,
}

/// Runs `argv` to completion (or the limit) and says how it ended.
pub fn run_blocking(argv: &[String], limit: Duration) -> io::Result<Outcome> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .spawn()?;
    let start = Instant::now();
    let mut nap = Duration::from_millis(2);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Outcome::Exited(status));
        }
        if start.elapsed() >= limit {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Outcome::TimedOut);
        }
        thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(100));
    }
}

/// Renders an argv for a log line, quoted as a shell would read it back.
pub fn display(argv: &[String]) -> String {
    shell_words::join(argv)
}

/// Where a door's commands run.
pub trait Commands: Send {
    /// Logs and starts `argv` for `door` in the background.
    fn spawn(&mut self, door: &str, argv: Vec<String>);
    /// Runs `argv` for `door` to completion within `limit` (the stop commands at shutdown).
    fn run(&mut self, door: &str, argv: &[String], limit: Duration);
}

/// Real processes.
#[derive(Debug, Default)]
pub struct Processes;

impl Commands for Processes {
    fn spawn(&mut self, door: &str, argv: Vec<String>) {
        spawn(door, argv);
    }

    fn run(&mut self, door: &str, argv: &[String], limit: Duration) {
        let shown = display(argv);
        info!(door, "{door}: running command: {shown}");
        match run_blocking(argv, limit) {
            Ok(Outcome::Exited(st)) if st.success() => {}
            Ok(other) => warn!(door, "{door}: stop command ended with {other:?}"),
            Err(e) => error!(door, "{door}: cannot run stop command: {e}"),
        }
    }
}

/// `--dry-run`: commands are only logged.
#[derive(Debug, Default)]
pub struct DryRun;

impl Commands for DryRun {
    fn spawn(&mut self, door: &str, argv: Vec<String>) {
        let shown = display(&argv);
        info!(door, command = %shown, "{door}: (dry run) would run command: {shown}");
    }

    fn run(&mut self, door: &str, argv: &[String], _limit: Duration) {
        self.spawn(door, argv.to_vec());
    }
}

/// Logs and starts `argv` for `door` in the background.
fn spawn(door: &str, argv: Vec<String>) {
    let shown = display(&argv);
    info!(door, command = %shown, "{door}: running command: {shown}");
    let door = door.to_string();
    let spawned = thread::Builder::new()
        .name("command".into())
        .spawn(move || match run_blocking(&argv, DEFAULT_LIMIT) {
            Ok(Outcome::Exited(status)) if status.success() => {}
            Ok(Outcome::Exited(status)) => match status.code() {
                Some(code) => {
                    warn!(
                        door,
                        code, "{door}: command returned non-zero status code ({code})"
                    )
                }
                None => warn!(door, "{door}: command was killed by a signal ({status})"),
            },
            Ok(Outcome::TimedOut) => warn!(
                door,
                "{door}: command still running after {}s: killed",
                DEFAULT_LIMIT.as_secs()
            ),
            Err(e) => error!(door, "{door}: cannot run command {shown}: {e}"),
        });
    if let Err(e) = spawned {
        error!("cannot start a thread for a command: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn runs_without_a_shell() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        // `;` and `$(...)` are plain bytes in an argv: nothing is interpreted.
        let arg = "1.2.3.4; touch /tmp/x $(id)";
        let status = run_blocking(
            &argv(&[
                "sh",
                "-c",
                "printf %s \"$1\" > \"$2\"",
                "sh",
                arg,
                out.to_str().unwrap(),
            ]),
            Duration::from_secs(5),
        )
        .unwrap();
        assert!(matches!(status, Outcome::Exited(s) if s.success()));
        assert_eq!(std::fs::read_to_string(&out).unwrap(), arg);
    }

    #[test]
    fn exit_code_and_empty_command() {
        match run_blocking(&argv(&["sh", "-c", "exit 3"]), Duration::from_secs(5)).unwrap() {
            Outcome::Exited(s) => assert_eq!(s.code(), Some(3)),
            other => panic!("{other:?}"),
        }
        assert!(run_blocking(&[], Duration::from_secs(1)).is_err());
    }

    /// Skipped in the ARM run under qemu-user (scripts/arm.sh): qemu emulates the vfork-style
    /// clone of glibc's posix_spawn as a fork, so the exec error never reaches the parent and
    /// the child exits 127 instead. On a real Pi, as natively, spawning fails with NotFound.
    #[test]
    fn missing_program_is_not_found() {
        let err = run_blocking(
            &argv(&["/nonexistent/knockgate-test"]),
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn overlong_command_is_killed() {
        let start = Instant::now();
        let out = run_blocking(&argv(&["sleep", "30"]), Duration::from_millis(300)).unwrap();
        assert!(matches!(out, Outcome::TimedOut));
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn display_quotes() {
        assert_eq!(display(&argv(&["echo", "a b", "c"])), "echo 'a b' c");
    }
}
