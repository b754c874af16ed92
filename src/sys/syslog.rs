//! Logging to syslog (`syslog = true`, knockd's `UseSyslog`): one datagram per event to the
//! local syslog socket (`/dev/log`), in the classic format `<PRI>knockgate[PID]: message`,
//! facility daemon, severity from the event's level.
//!
//! It is a `tracing_subscriber` writer: the daemon adds a second fmt layer (no time, no level,
//! no colour: syslog adds its own) that writes through it. If the socket is missing (no syslog
//! daemon), events are dropped silently; stderr or the log file still has them.

use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// The local syslog socket.
pub const DEFAULT_SOCKET: &str = "/dev/log";
/// Facility `daemon` (3), shifted as in a PRI value.
const FACILITY_DAEMON: u8 = 3 << 3;

/// Makes one [`Datagram`] writer per event.
#[derive(Debug)]
pub struct Syslog {
    socket: Option<UnixDatagram>,
    path: PathBuf,
    tag: String,
}

impl Syslog {
    /// A writer to the syslog socket at `path`.
    pub fn at(path: &Path) -> Syslog {
        let socket = UnixDatagram::unbound().ok();
        Syslog {
            socket,
            path: path.to_path_buf(),
            tag: format!("knockgate[{}]", std::process::id()),
        }
    }

    fn severity(level: &Level) -> u8 {
        match *level {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            Level::DEBUG | Level::TRACE => 7,
        }
    }
}

/// Collects one formatted event and sends it as one datagram when dropped.
pub struct Datagram<'a> {
    syslog: &'a Syslog,
    pri: u8,
    buf: Vec<u8>,
}

impl Write for Datagram<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Datagram<'_> {
    fn drop(&mut self) {
        let Some(socket) = &self.syslog.socket else {
            return;
        };
        let text = String::from_utf8_lossy(&self.buf);
        let message = text.trim_end();
        if message.is_empty() {
            return;
        }
        let line = format!("<{}>{}: {}", self.pri, self.syslog.tag, message);
        let _ = socket.send_to(line.as_bytes(), &self.syslog.path);
    }
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = Datagram<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Datagram {
            syslog: self,
            pri: FACILITY_DAEMON | 6,
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        Datagram {
            syslog: self,
            pri: FACILITY_DAEMON | Self::severity(meta.level()),
            buf: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn events_arrive_as_syslog_datagrams_with_severity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let layer = tracing_subscriber::fmt::layer()
            .without_time()
            .with_level(false)
            .with_target(false)
            .with_ansi(false)
            .with_writer(Syslog::at(&path));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("10.0.0.2: openSSH: OPEN SESAME");
            tracing::warn!("openSSH: command returned non-zero status code (1)");
        });
        let mut buf = [0u8; 512];
        let n = server.recv(&mut buf).unwrap();
        let pid = std::process::id();
        assert_eq!(
            std::str::from_utf8(&buf[..n]).unwrap(),
            format!("<30>knockgate[{pid}]: 10.0.0.2: openSSH: OPEN SESAME")
        );
        let n = server.recv(&mut buf).unwrap();
        assert!(std::str::from_utf8(&buf[..n])
            .unwrap()
            .starts_with(&format!("<28>knockgate[{pid}]: openSSH: command returned")));
    }

    #[test]
    fn missing_socket_is_not_an_error() {
        let w = Syslog::at(Path::new("/nonexistent/knockgate-test.sock"));
        let mut d = w.make_writer();
        d.write_all(b"hello\n").unwrap();
        drop(d);
    }
}
