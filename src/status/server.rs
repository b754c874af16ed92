//! The status page's HTTP server: `GET`/`HEAD` on `/`, `/api/status`, `/metrics` and
//! `/healthz`, read-only, from a snapshot the daemon loop makes for the request ([`Board`]).
//!
//! Invariants, so that no number of HTTP clients can starve the daemon:
//! - Bounded threads: one accept thread and at most [`WORKERS`] workers. A worker is started
//!   when a connection is queued and none is free, and ends after [`WORKER_IDLE`] without
//!   work, so an idle server is the accept thread alone, asleep in `accept(2)`. Accepted
//!   connections wait in a queue of [`QUEUE`]; when it is full the accept thread stops
//!   accepting and further connections wait in the kernel's listen backlog ([`BACKLOG`]) or
//!   are refused by the kernel. Nothing grows with the number of clients.
//! - One request per connection (`Connection: close`), no request body is ever read.
//! - A request head is at most [`MAX_HEAD`] bytes (431, or 414 when the request line alone is
//!   longer; a target over [`MAX_TARGET`] bytes is 414), a declared body over [`MAX_BODY`] (or a
//!   chunked one) is 413. Memory per connection is bounded by `MAX_HEAD` plus the response.
//! - Time: the whole head must arrive within [`HEAD_TIMEOUT`] of a worker taking the connection
//!   (else 408), or within [`BUSY_HEAD_TIMEOUT`] while other connections wait for a worker, and
//!   the whole exchange ends within [`CONN_TIMEOUT`] (a client that reads the response too
//!   slowly is cut off). This bounds slowloris: a slow client holds a worker for at most
//!   `CONN_TIMEOUT`, and for about `BUSY_HEAD_TIMEOUT` when others are waiting, whatever it
//!   trickles.
//! - Workers look at the stop flag at least every 200 ms, so [`StatusServer::stop`] returns
//!   promptly even while slow clients are connected.
//! - The daemon loop is waited for at most [`FRESH_WAIT`]: a request asks it for a snapshot
//!   (one message, shared by concurrent requests; [`Board::fresh`]) and renders outside any
//!   lock the one it gets, or the last one if the loop does not answer in time (then
//!   `/healthz` says how old it is). An idle daemon makes no snapshot at all.
//!
//! Host header (DNS rebinding): a request is served only if its Host (compared
//! case-insensitively, without the port, a trailing dot ignored) is `localhost`, an IP address
//! literal (which includes the listen address; a rebinding attack needs a name), or one of
//! [`ServerConfig::allowed_hosts`]. Others get 421. An HTTP/1.1 request without Host gets 400.
//!
//! Why not tiny_http (the issue's suggestion): tiny_http 0.12 reads a header line into a
//! `Vec` without a limit (tiny-http#56, open since 2015: one client streaming a 200 MiB header
//! line took the process to 208 MB RSS in our test), runs one thread per connection with no
//! read timeout (300 idle connections made 266 threads, still there after 7 s), and cannot
//! bound either from outside. The HTTP we need (GET/HEAD, no body, no keep-alive) is small
//! enough to do here with every bound explicit.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tracing::{debug, error, warn};

use super::{html, json, metrics, Board, Snapshot};

/// Worker threads: the number of connections served at the same time.
pub const WORKERS: usize = 4;
/// A worker with nothing to do for this long ends (the next connection starts one again).
pub const WORKER_IDLE: Duration = Duration::from_secs(10);
/// Accepted connections waiting for a worker.
pub const QUEUE: usize = 32;
/// The kernel's listen backlog (connections not yet accepted).
pub const BACKLOG: i32 = 64;
/// Largest request head (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;
/// Longest request target (path and query).
pub const MAX_TARGET: usize = 2 * 1024;
/// Largest declared request body (which is never read).
pub const MAX_BODY: u64 = 4 * 1024;
/// Time for a client to send its request head, from when a worker takes the connection.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for a client to send its request head while other connections wait for a worker. A
/// browser sends its request right after connecting; an idle or trickling connection makes
/// room for the others.
pub const BUSY_HEAD_TIMEOUT: Duration = Duration::from_secs(1);
/// Time for the whole exchange, from when a worker takes the connection.
pub const CONN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request waits for the daemon loop to make a snapshot (it is asked for one
/// per request); past it, the last one is shown, and `/healthz` says how old it is.
const FRESH_WAIT: Duration = Duration::from_secs(1);
/// `/healthz` fails when the latest snapshot is older than this (the daemon loop is stuck).
pub const STALE_SECS: u64 = 30;

/// How often a worker blocked on a client looks at the stop flag.
const SLICE: Duration = Duration::from_millis(200);
/// After the response, unread request bytes are drained this long (at most [`DRAIN_BYTES`]) so
/// that closing does not reset the connection before the client has read the response.
const DRAIN: Duration = Duration::from_millis(100);
const DRAIN_BYTES: usize = 64 * 1024;

/// Where the server listens and which Host names it answers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Address and port to listen on; port 0 picks a free port (see
    /// [`StatusServer::local_addr`]).
    pub listen: SocketAddr,
    /// Host header values to accept besides `localhost` and IP address literals (the listen
    /// address is one): e.g. `gateway.lan`, `pi.home.arpa`. Compared case-insensitively, with
    /// or without a port (`gateway.lan:8080` is the same entry as `gateway.lan`).
    pub allowed_hosts: Vec<String>,
}

/// Why the status server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// Something else listens on that address and port (another knockgate, a web server):
    /// stop it or choose another port.
    #[error(
        "status page: {addr} is already in use: stop what listens there \
         (`ss -ltnp 'sport = :{}'`) or choose another port in [status] listen",
        addr.port()
    )]
    AddrInUse {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// The address is not one of this host's (a typo, or DHCP gave another address): use one
    /// of `ip -br addr`, 127.0.0.1, or 0.0.0.0 to listen on every address.
    #[error(
        "status page: {addr} is not an address of this host: use one shown by `ip -br addr`, \
         127.0.0.1 (this host only), or 0.0.0.0 (every address) in [status] listen"
    )]
    AddrNotAvailable {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// Ports below 1024 need root or CAP_NET_BIND_SERVICE.
    #[error(
        "status page: no permission to listen on {addr}: ports below 1024 need root or \
         CAP_NET_BIND_SERVICE; use a port such as 8080 in [status] listen"
    )]
    PermissionDenied {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// Any other failure to listen.
    #[error("status page: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// An `allowed_hosts` entry is not a host name or address (no scheme, no path).
    #[error(
        "status page: allowed_hosts entry `{host}` is not a host name or address \
         (write e.g. `gateway.lan`, `192.168.1.1` or `[fd00::1]`, without http:// or a path)"
    )]
    BadAllowedHost { host: String },
    /// The system refused a thread (out of memory or a thread limit).
    #[error("status page: cannot start its threads: {source}")]
    Spawn {
        #[source]
        source: io::Error,
    },
}

/// The running server. Dropping it stops it, as [`StatusServer::stop`] does.
#[derive(Debug)]
pub struct StatusServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    listener: Socket,
    accept: Option<JoinHandle<()>>,
    pool: Arc<Pool>,
}

/// The workers: how many run, how many wait for a connection, and their handles (joined at
/// stop). Starting a worker and a worker ending both happen under this lock, so a queued
/// connection always has a worker to take it.
#[derive(Debug, Default)]
struct Pool {
    state: Mutex<PoolState>,
}

#[derive(Debug, Default)]
struct PoolState {
    live: usize,
    idle: usize,
    handles: Vec<JoinHandle<()>>,
}

struct Ctx {
    board: Board,
    hosts: Vec<String>,
    csp: String,
    stop: Arc<AtomicBool>,
    /// Connections accepted and not yet taken by a worker.
    waiting: Arc<AtomicUsize>,
}

impl Ctx {
    fn new(allowed_hosts: &[String], board: Board) -> Result<Ctx, StatusError> {
        let hosts = allowed_hosts
            .iter()
            .map(|h| {
                normalize_host(h).ok_or_else(|| StatusError::BadAllowedHost { host: h.clone() })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Ctx {
            board,
            hosts,
            csp: content_security_policy(),
            stop: Arc::new(AtomicBool::new(false)),
            waiting: Arc::new(AtomicUsize::new(0)),
        })
    }
}

impl StatusServer {
    /// Binds `config.listen` and starts the accept thread and the workers.
    pub fn start(config: &ServerConfig, board: Board) -> Result<StatusServer, StatusError> {
        let ctx = Arc::new(Ctx::new(&config.allowed_hosts, board)?);
        let listener = bind(config.listen)?;
        let addr = listener
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or(config.listen);
        let waker = listener.try_clone().map_err(|source| StatusError::Bind {
            addr: config.listen,
            source,
        })?;
        let (tx, rx) = mpsc::sync_channel::<TcpStream>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let pool = Arc::new(Pool::default());
        let (stop, listener): (_, TcpListener) = (ctx.stop.clone(), listener.into());
        let accept = {
            let pool = pool.clone();
            thread::Builder::new()
                .name("status-accept".into())
                .stack_size(128 * 1024)
                .spawn(move || accept_loop(&listener, &tx, &rx, &ctx, &pool))
                .map_err(|source| StatusError::Spawn { source })?
        };
        debug!(%addr, "status page listening");
        Ok(StatusServer {
            addr,
            stop,
            listener: waker,
            accept: Some(accept),
            pool,
        })
    }

    /// The bound address (with the real port when `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, ends every connection (within about 200 ms) and joins the threads.
    pub fn stop(self) {}
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // On Linux, shutting a listening socket down wakes a thread blocked in accept(). Its
        // end drops the queue's sender, which ends the workers (within about 200 ms).
        let _ = self.listener.shutdown(Shutdown::Both);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        let handles = std::mem::take(&mut lock(&self.pool.state).handles);
        for t in handles {
            let _ = t.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts a worker if more connections are queued than workers are free.
fn ensure_worker(pool: &Arc<Pool>, rx: &Arc<Mutex<Receiver<TcpStream>>>, ctx: &Arc<Ctx>) {
    let mut state = lock(&pool.state);
    if ctx.waiting.load(Ordering::SeqCst) <= state.idle || state.live >= WORKERS {
        return;
    }
    state.handles.retain(|h| !h.is_finished());
    let (p, r, c) = (pool.clone(), rx.clone(), ctx.clone());
    let spawned = thread::Builder::new()
        .name("status-http".into())
        .stack_size(256 * 1024)
        .spawn(move || worker(&r, &c, &p));
    match spawned {
        Ok(h) => {
            state.live += 1;
            state.idle += 1;
            state.handles.push(h);
        }
        // The connection waits for a running worker, or for the next one started.
        Err(e) => warn!(error = %e, "status page: cannot start a worker"),
    }
}

fn bind(addr: SocketAddr) -> Result<Socket, StatusError> {
    let err = |source: io::Error| match source.kind() {
        io::ErrorKind::AddrInUse => StatusError::AddrInUse { addr, source },
        io::ErrorKind::AddrNotAvailable => StatusError::AddrNotAvailable { addr, source },
        io::ErrorKind::PermissionDenied => StatusError::PermissionDenied { addr, source },
        _ => StatusError::Bind { addr, source },
    };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    // As std's TcpListener::bind does: a restarted daemon can bind while old connections linger.
    socket.set_reuse_address(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(BACKLOG).map_err(err)?;
    Ok(socket)
}

fn accept_loop(
    listener: &TcpListener,
    tx: &SyncSender<TcpStream>,
    rx: &Arc<Mutex<Receiver<TcpStream>>>,
    ctx: &Arc<Ctx>,
    pool: &Arc<Pool>,
) {
    let mut last_warning: Option<Instant> = None;
    loop {
        let accepted = listener.accept();
        if ctx.stop.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            // Blocks while QUEUE connections wait: backpressure into the kernel's backlog.
            Ok((stream, _)) => {
                ctx.waiting.fetch_add(1, Ordering::SeqCst);
                if tx.send(stream).is_err() {
                    return;
                }
                ensure_worker(pool, rx, ctx);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                ) => {}
            Err(e) => {
                // Out of file descriptors or buffers: back off instead of spinning, and say so
                // at most once a minute.
                if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    warn!(error = %e, "status page: cannot accept a connection");
                    last_warning = Some(Instant::now());
                }
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn worker(rx: &Mutex<Receiver<TcpStream>>, ctx: &Ctx, pool: &Pool) {
    loop {
        let next = lock(rx).recv_timeout(WORKER_IDLE);
        let stream = match next {
            Ok(stream) => stream,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let mut state = lock(&pool.state);
                // A connection queued since the timeout is taken now. (Under the pool lock
                // the queue's lock is held only by a worker waiting in recv_timeout, which
                // will take any connection: this one may then end.)
                let late = rx.try_lock().ok().and_then(|r| r.try_recv().ok());
                match late {
                    Some(stream) => {
                        drop(state);
                        stream
                    }
                    None => {
                        state.idle -= 1;
                        state.live -= 1;
                        return;
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let mut state = lock(&pool.state);
                state.idle -= 1;
                state.live -= 1;
                return;
            }
        };
        lock(&pool.state).idle -= 1;
        ctx.waiting.fetch_sub(1, Ordering::SeqCst);
        if !ctx.stop.load(Ordering::SeqCst) {
            // A bug in a renderer must not cost a worker for good.
            if panic::catch_unwind(AssertUnwindSafe(|| serve(stream, ctx))).is_err() {
                error!("status page: a request handler panicked");
            }
        }
        lock(&pool.state).idle += 1;
    }
}

fn serve(mut stream: TcpStream, ctx: &Ctx) {
    let start = Instant::now();
    let _ = stream.set_nodelay(true);
    let head = read_head(&mut stream, start, &ctx.stop, &ctx.waiting);
    let wall = crate::time::unix_secs(crate::time::wall_now());
    let Some((response, unread)) = response_for(head, ctx, wall) else {
        return;
    };
    debug!(status = response.status, "status page request");
    let bytes = response.to_bytes(&ctx.csp);
    if write_by(&mut stream, &bytes, start + CONN_TIMEOUT, &ctx.stop).is_ok() {
        let _ = stream.flush();
        let _ = stream.shutdown(Shutdown::Write);
        if unread {
            drain(&mut stream);
        }
    }
}

/// The response to what [`read_head`] got, and whether request bytes are left unread; `None`
/// when there is no one to answer.
fn response_for(
    head: Result<(Vec<u8>, bool), HeadError>,
    ctx: &Ctx,
    wall_now: u64,
) -> Option<(Response, bool)> {
    Some(match head {
        Ok((head, extra)) => {
            let (response, body) = handle(&head, ctx, wall_now);
            (response, extra || body)
        }
        Err(HeadError::RequestLineTooLong) => (Response::error(414, "request line too long"), true),
        Err(HeadError::TooLarge) => (Response::error(431, "request head too large"), true),
        Err(HeadError::Timeout) => (Response::error(408, "request head too slow"), false),
        Err(HeadError::Gone) => return None,
    })
}

/// The bytes the server sends back to a client that sent `request` and then waited, without a
/// socket: the head is framed ([`MAX_HEAD`]) and answered as a worker does, with
/// `allowed_hosts` as in [`ServerConfig`], `snapshot` as the current one and `wall_now` as the
/// time (Unix seconds). `Ok(None)` when `request` holds no complete head (a worker would wait
/// for more, then answer 408). For the fuzz target `http` (`fuzz/fuzz_targets/http.rs`).
pub fn respond(
    request: &[u8],
    allowed_hosts: &[String],
    snapshot: Snapshot,
    wall_now: u64,
) -> Result<Option<Vec<u8>>, StatusError> {
    let board = Board::new();
    board.publish(snapshot);
    let ctx = Ctx::new(allowed_hosts, board)?;
    // A worker never buffers more than MAX_HEAD bytes.
    let read = &request[..request.len().min(MAX_HEAD)];
    let head = match frame(read, 0) {
        Ok(Some(end)) => Ok((read[..end].to_vec(), request.len() > end)),
        Ok(None) => return Ok(None),
        Err(e) => Err(e),
    };
    Ok(response_for(head, &ctx, wall_now).map(|(r, _)| r.to_bytes(&ctx.csp)))
}

#[derive(Debug, PartialEq, Eq)]
enum HeadError {
    RequestLineTooLong,
    TooLarge,
    Timeout,
    /// The client closed, the connection failed, or the server is stopping.
    Gone,
}

/// Reads up to the end of the request head (an empty line). Returns the head and whether more
/// bytes (a body, a pipelined request) came after it.
fn read_head(
    stream: &mut TcpStream,
    start: Instant,
    stop: &AtomicBool,
    waiting: &AtomicUsize,
) -> Result<(Vec<u8>, bool), HeadError> {
    let deadline = start + HEAD_TIMEOUT;
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 2048];
    loop {
        let now = Instant::now();
        if now >= deadline
            || (now >= start + BUSY_HEAD_TIMEOUT && waiting.load(Ordering::SeqCst) > 0)
        {
            return Err(HeadError::Timeout);
        }
        if stop.load(Ordering::SeqCst) {
            return Err(HeadError::Gone);
        }
        let _ = stream.set_read_timeout(Some((deadline - now).min(SLICE)));
        let room = (MAX_HEAD - buf.len()).min(chunk.len());
        match stream.read(&mut chunk[..room]) {
            Ok(0) => return Err(HeadError::Gone),
            Ok(n) => {
                let from = buf.len().saturating_sub(3);
                buf.extend_from_slice(&chunk[..n]);
                if let Some(end) = frame(&buf, from)? {
                    let extra = buf.len() > end;
                    buf.truncate(end);
                    return Ok((buf, extra));
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return Err(HeadError::Gone),
        }
    }
}

/// Where the head ends in the bytes read so far (`buf`, searched from `from`): `Some(end)`, or
/// `None` to read more, or an error once [`MAX_HEAD`] bytes hold no complete head.
fn frame(buf: &[u8], from: usize) -> Result<Option<usize>, HeadError> {
    if let Some(end) = head_end(buf, from) {
        return Ok(Some(end));
    }
    if buf.len() >= MAX_HEAD {
        return Err(if buf.contains(&b'\n') {
            HeadError::TooLarge
        } else {
            HeadError::RequestLineTooLong
        });
    }
    Ok(None)
}

/// The index just after the head's terminating empty line (CRLF CRLF, or bare LF LF as RFC 9112
/// allows a server to accept), searching from `from`.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len()).find_map(|i| {
        if buf[i..].starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if buf[i..].starts_with(b"\n\n") {
            Some(i + 2)
        } else {
            None
        }
    })
}

fn write_by(
    stream: &mut TcpStream,
    mut data: &[u8],
    deadline: Instant,
    stop: &AtomicBool,
) -> io::Result<()> {
    while !data.is_empty() {
        let now = Instant::now();
        if now >= deadline || stop.load(Ordering::SeqCst) {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let _ = stream.set_write_timeout(Some((deadline - now).min(SLICE)));
        match stream.write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn drain(stream: &mut TcpStream) {
    let until = Instant::now() + DRAIN;
    let mut sink = [0u8; 4096];
    let mut total = 0;
    while total < DRAIN_BYTES {
        let now = Instant::now();
        if now >= until {
            return;
        }
        let _ = stream.set_read_timeout(Some(until - now));
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
}

/// A response, before the common headers are added.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Response {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    /// HEAD: the headers of the GET response, no body.
    head_only: bool,
}

const TEXT: &str = "text/plain; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

impl Response {
    fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            body: body.into(),
            head_only: false,
        }
    }

    fn error(status: u16, why: &str) -> Response {
        Response::new(
            status,
            TEXT,
            format!("{status} {}: {why}\n", reason(status)),
        )
    }

    fn to_bytes(&self, csp: &str) -> Vec<u8> {
        let date = jiff::Timestamp::now().strftime("%a, %d %b %Y %H:%M:%S GMT");
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nDate: {date}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Connection: close\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
             X-Frame-Options: DENY\r\nReferrer-Policy: no-referrer\r\n\
             Cross-Origin-Resource-Policy: same-origin\r\nContent-Security-Policy: {csp}\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len(),
        );
        if self.status == 405 {
            out.push_str("Allow: GET, HEAD\r\n");
        }
        out.push_str("\r\n");
        let mut out = out.into_bytes();
        if !self.head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// The policy every response carries: nothing may load, frame or be framed; only the page's
/// own inline style and script (by hash) apply.
pub fn content_security_policy() -> String {
    format!(
        "default-src 'none'; style-src '{}'; script-src '{}'; base-uri 'none'; \
         form-action 'none'; frame-ancestors 'none'",
        html::STYLE_HASH,
        html::SCRIPT_HASH
    )
}

/// Answers one request head. Returns the response and whether the request announced a body
/// (left unread).
fn handle(head: &[u8], ctx: &Ctx, wall_now: u64) -> (Response, bool) {
    let req = match parse(head) {
        Ok(r) => r,
        Err(rejected) => return (rejected, true),
    };
    let body = req.content_length.is_some_and(|n| n > 0) || req.chunked;
    let mut response = answer(&req, ctx, wall_now);
    // A response to HEAD never has a body, whatever its status.
    response.head_only = req.method == "HEAD";
    (response, body)
}

fn answer(req: &Request<'_>, ctx: &Ctx, wall_now: u64) -> Response {
    if let Some(host) = req.host {
        if !host_allowed(host, &ctx.hosts) {
            return Response::error(
                421,
                "this Host is not allowed here; to reach the page by this name, \
                 add it to [status] allowed_hosts",
            );
        }
    } else if req.http11 {
        return Response::error(400, "HTTP/1.1 needs a Host header");
    }
    if req.chunked || req.content_length.is_some_and(|n| n > MAX_BODY) {
        return Response::error(413, "request bodies are not accepted");
    }
    if req.method != "GET" && req.method != "HEAD" {
        return Response::error(405, "only GET and HEAD");
    }
    if !req.target.starts_with('/') {
        return Response::error(400, "the target must be a path");
    }
    let path = req.target.split(['?', '#']).next().unwrap_or("");
    route(path, &ctx.board.fresh(FRESH_WAIT), wall_now)
}

fn route(path: &str, s: &Snapshot, wall_now: u64) -> Response {
    match path {
        "/" => Response::new(200, HTML, html::render_html(s)),
        "/api/status" => Response::new(200, json::CONTENT_TYPE, json::render_json(s)),
        "/metrics" => Response::new(200, metrics::CONTENT_TYPE, metrics::render_metrics(s)),
        "/healthz" => {
            let problems = health_problems(s, wall_now);
            if problems.is_empty() {
                Response::new(200, TEXT, "ok\n")
            } else {
                Response::new(503, TEXT, format!("unhealthy: {}\n", problems.join("; ")))
            }
        }
        _ => Response::error(404, "the pages are /, /api/status, /metrics and /healthz"),
    }
}

/// The page's problems, plus a stale snapshot (the daemon publishes at least every second).
pub fn health_problems(s: &Snapshot, wall_now: u64) -> Vec<String> {
    let mut problems = html::problems(s);
    if s.now_unix != 0 && wall_now > s.now_unix + STALE_SECS {
        problems.push(format!(
            "the daemon's status is {} s old: its loop may be stuck",
            wall_now - s.now_unix
        ));
    }
    problems
}

#[derive(Debug, PartialEq, Eq)]
struct Request<'a> {
    method: &'a str,
    target: &'a str,
    http11: bool,
    host: Option<&'a str>,
    content_length: Option<u64>,
    chunked: bool,
}

/// Header lines a request may have; more is 431.
const MAX_HEADERS: usize = 64;

/// Parses a whole request head (up to and including its empty line) with httparse, then
/// applies our rules: one Host, one Content-Length value, a bounded target, HTTP/1.x only.
fn parse(head: &[u8]) -> Result<Request<'_>, Response> {
    let bad = |why: &str| Response::error(400, why);
    std::str::from_utf8(head).map_err(|_| bad("the request head is not UTF-8"))?;
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(bad("incomplete request head")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Response::error(431, "too many header lines"))
        }
        Err(httparse::Error::Version) => {
            // Another HTTP version is 505; anything else in its place is malformed.
            // (After the empty lines httparse skips before a request line.)
            let mut lines = head.split(|b| *b == b'\n');
            let line = lines
                .find(|l| !l.is_empty() && *l != b"\r")
                .unwrap_or_default();
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let parts: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
            return Err(if parts.len() == 3 && parts[2].starts_with(b"HTTP/") {
                Response::error(505, "only HTTP/1.0 and HTTP/1.1")
            } else {
                bad("malformed request line")
            });
        }
        Err(httparse::Error::HeaderName) => {
            // Also refuses obsolete line folding (a line starting with white space).
            return Err(bad("malformed header name"));
        }
        Err(e) => return Err(bad(&format!("malformed request: {e}"))),
    }
    let (Some(method), Some(target), Some(version)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Err(bad("malformed request line"));
    };
    if target.len() > MAX_TARGET {
        return Err(Response::error(414, "request target too long"));
    }
    let mut req = Request {
        method,
        target,
        http11: version == 1,
        host: None,
        content_length: None,
        chunked: false,
    };
    for h in parsed.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| bad("the request head is not UTF-8"))?
            .trim_matches([' ', '\t']);
        if h.name.eq_ignore_ascii_case("host") {
            if req.host.replace(value).is_some() {
                return Err(bad("more than one Host header"));
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value.parse().map_err(|_| bad("malformed Content-Length"))?;
            if req.content_length.replace(n).is_some_and(|old| old != n) {
                return Err(bad("conflicting Content-Length headers"));
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            req.chunked = true;
        }
    }
    Ok(req)
}

/// A Host header value or an `allowed_hosts` entry without its port, lowercased, without a
/// trailing dot, IP addresses in canonical form. `None` if it is neither a name nor an address.
fn normalize_host(raw: &str) -> Option<String> {
    let raw = raw.trim().to_ascii_lowercase();
    let port_ok = |p: &str| p.is_empty() || (p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    if let Some(rest) = raw.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let port = match after {
            "" => "",
            a => a.strip_prefix(':')?,
        };
        if !port_ok(port) || port.is_empty() && !after.is_empty() {
            return None;
        }
        return ip.parse::<std::net::Ipv6Addr>().ok().map(|a| a.to_string());
    }
    let name = match raw.split_once(':') {
        Some((name, port)) if port_ok(port) && !port.is_empty() => name,
        Some(_) => return None,
        None => raw.as_str(),
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return None;
    }
    match name.parse::<IpAddr>() {
        Ok(ip) => Some(ip.to_string()),
        Err(_) => Some(name.to_string()),
    }
}

fn host_allowed(host: &str, allowed: &[String]) -> bool {
    match normalize_host(host) {
        Some(h) => h == "localhost" || h.parse::<IpAddr>().is_ok() || allowed.contains(&h),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::html::sample;

    fn ctx(allowed: &[&str]) -> Ctx {
        let board = Board::new();
        board.publish(sample());
        Ctx {
            board,
            hosts: allowed.iter().map(|h| normalize_host(h).unwrap()).collect(),
            csp: content_security_policy(),
            stop: Arc::new(AtomicBool::new(false)),
            waiting: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn status(head: &str) -> u16 {
        handle(head.as_bytes(), &ctx(&["gw.lan"]), 1_790_000_001)
            .0
            .status
    }

    #[test]
    fn host_values_are_normalized() {
        for (raw, want) in [
            ("localhost", Some("localhost")),
            ("LocalHost:8080", Some("localhost")),
            ("gw.lan.", Some("gw.lan")),
            ("GW.Lan:80", Some("gw.lan")),
            ("192.168.1.1:8080", Some("192.168.1.1")),
            ("[FD00::1]:8080", Some("fd00::1")),
            ("[fd00:0::1]", Some("fd00::1")),
            ("pi_4.home.arpa", Some("pi_4.home.arpa")),
            ("fd00::1", None),
            ("[fd00::1]x", None),
            ("[fd00::1]:", None),
            ("gw.lan:", None),
            ("gw.lan:http", None),
            ("gw.lan:123456", None),
            ("http://gw.lan", None),
            ("gw.lan/x", None),
            ("", None),
            (".", None),
            ("a b", None),
        ] {
            assert_eq!(normalize_host(raw).as_deref(), want, "{raw}");
        }
    }

    #[test]
    fn allowed_hosts_names_addresses_and_localhost() {
        let allowed = vec!["gw.lan".to_string()];
        for ok in [
            "gw.lan",
            "GW.LAN:8080",
            "localhost:8080",
            "127.0.0.1",
            "192.168.1.1:8080",
            "[::1]:8080",
        ] {
            assert!(host_allowed(ok, &allowed), "{ok}");
        }
        for refused in [
            "evil.example",
            "gw.lan.evil.example",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "",
            "gw.lan:x",
        ] {
            assert!(!host_allowed(refused, &allowed), "{refused}");
        }
    }

    #[test]
    fn requests_are_parsed_strictly() {
        let r = parse(b"GET /api/status?x=1 HTTP/1.1\r\nHost: gw.lan\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        assert_eq!(
            r,
            Request {
                method: "GET",
                target: "/api/status?x=1",
                http11: true,
                host: Some("gw.lan"),
                content_length: Some(0),
                chunked: false
            }
        );
        let r = parse(b"HEAD / HTTP/1.0\n\n").unwrap();
        assert_eq!((r.method, r.http11, r.host), ("HEAD", false, None));
        // RFC 9112 2.2: empty lines before the request line are skipped.
        let r = parse(b"\r\n\nGET / HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!((r.method, r.target), ("GET", "/"));
        for (head, code) in [
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost a\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
            (
                "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                400,
            ),
            ("GET /  HTTP/1.1\r\n\r\n", 400),
            ("GET / HTTP/2.0\r\n\r\n", 505),
            ("\r\nGET / HTTP/2.0\r\n\r\n", 505),
            ("GET / FTP/1.0\r\n\r\n", 400),
            ("G(T / HTTP/1.1\r\n\r\n", 400),
            ("GET\r\n\r\n", 400),
        ] {
            assert_eq!(parse(head.as_bytes()).unwrap_err().status, code, "{head:?}");
        }
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_TARGET));
        assert_eq!(parse(long.as_bytes()).unwrap_err().status, 414);
        assert_eq!(
            parse(b"GET /\xff HTTP/1.1\r\n\r\n").unwrap_err().status,
            400
        );
    }

    #[test]
    fn status_codes() {
        let h = "Host: gw.lan\r\n";
        assert_eq!(status(&format!("GET / HTTP/1.1\r\n{h}\r\n")), 200);
        assert_eq!(status(&format!("GET /api/status HTTP/1.1\r\n{h}\r\n")), 200);
        assert_eq!(status(&format!("GET /metrics?x HTTP/1.1\r\n{h}\r\n")), 200);
        assert_eq!(status(&format!("GET /nope HTTP/1.1\r\n{h}\r\n")), 404);
        assert_eq!(status(&format!("GET /index.html HTTP/1.1\r\n{h}\r\n")), 404);
        assert_eq!(status(&format!("POST / HTTP/1.1\r\n{h}\r\n")), 405);
        assert_eq!(status(&format!("OPTIONS * HTTP/1.1\r\n{h}\r\n")), 405);
        assert_eq!(
            status(&format!("GET http://gw.lan/ HTTP/1.1\r\n{h}\r\n")),
            400
        );
        assert_eq!(status("GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n"), 421);
        assert_eq!(status("POST / HTTP/1.1\r\nHost: evil.example\r\n\r\n"), 421);
        assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.0\r\n\r\n"), 200);
        assert_eq!(
            status(&format!(
                "GET / HTTP/1.1\r\n{h}Content-Length: 5000\r\n\r\n"
            )),
            413
        );
        assert_eq!(
            status(&format!(
                "GET / HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n"
            )),
            413
        );
        // The sample has a capture down: /healthz says so.
        let (r, _) = handle(
            format!("GET /healthz HTTP/1.1\r\n{h}\r\n").as_bytes(),
            &ctx(&["gw.lan"]),
            1_790_000_001,
        );
        assert_eq!(r.status, 503);
        assert_eq!(
            String::from_utf8(r.body).unwrap(),
            "unhealthy: capture on wlan<0> is down: No such device\n"
        );
    }

    #[test]
    fn healthz_fails_on_a_stale_snapshot() {
        let s = Snapshot {
            now_unix: 1000,
            healthy: true,
            ..Snapshot::default()
        };
        assert!(health_problems(&s, 1000 + STALE_SECS).is_empty());
        assert_eq!(
            health_problems(&s, 1031),
            ["the daemon's status is 31 s old: its loop may be stuck"]
        );
        assert_eq!(route("/healthz", &s, 1001).body, b"ok\n");
    }

    #[test]
    fn head_never_gets_a_body() {
        let c = ctx(&[]);
        for head in [
            "HEAD / HTTP/1.1\r\nHost: evil.example\r\n\r\n",
            "HEAD /nope HTTP/1.1\r\nHost: localhost\r\n\r\n",
            "HEAD / HTTP/1.1\r\n\r\n",
        ] {
            let (r, _) = handle(head.as_bytes(), &c, 0);
            assert_ne!(r.status, 200, "{head:?}");
            let bytes = String::from_utf8(r.to_bytes("csp")).unwrap();
            assert!(bytes.ends_with("\r\n\r\n"), "{head:?}: {bytes}");
        }
    }

    #[test]
    fn head_gets_the_get_headers_without_the_body() {
        let c = ctx(&[]);
        let (get, _) = handle(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", &c, 0);
        let (head, _) = handle(b"HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n", &c, 0);
        let get = String::from_utf8(get.to_bytes("csp")).unwrap();
        let head = String::from_utf8(head.to_bytes("csp")).unwrap();
        let (get_head, body) = get.split_once("\r\n\r\n").unwrap();
        assert!(body.starts_with("<!DOCTYPE html>"));
        assert!(head.ends_with("\r\n\r\n"));
        let strip_date = |h: &str| {
            h.lines()
                .filter(|l| !l.starts_with("Date:"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(strip_date(get_head), strip_date(head.trim_end()));
    }

    /// `respond` (the fuzz target's entry) frames and answers as a worker does.
    #[test]
    fn respond_frames_and_answers_like_a_worker() {
        let hosts = ["gw.lan".to_string()];
        let status = |req: &[u8]| {
            respond(req, &hosts, sample(), 1_790_000_001)
                .unwrap()
                .map(|r| String::from_utf8_lossy(&r[..12]).into_owned())
        };
        assert_eq!(
            status(b"GET /api/status HTTP/1.1\r\nHost: GW.lan:8080\r\n\r\n").as_deref(),
            Some("HTTP/1.1 200")
        );
        assert_eq!(
            status(b"GET / HTTP/1.1\nHost: evil.example\n\nGET / HTTP/1.1").as_deref(),
            Some("HTTP/1.1 421")
        );
        // Incomplete: a worker would read on, then time out.
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: gw.lan\r\n"), None);
        assert_eq!(status(b""), None);
        // MAX_HEAD bytes without the end of the head.
        let mut long = b"GET /".to_vec();
        long.resize(MAX_HEAD + 100, b'a');
        assert_eq!(status(&long).as_deref(), Some("HTTP/1.1 414"));
        long[10] = b'\n';
        assert_eq!(status(&long).as_deref(), Some("HTTP/1.1 431"));
        // The end of the head beyond MAX_HEAD is never seen.
        long.extend_from_slice(b"\r\n\r\n");
        assert_eq!(status(&long).as_deref(), Some("HTTP/1.1 431"));
        assert!(matches!(
            respond(b"", &["http://gw.lan/".to_string()], sample(), 0),
            Err(StatusError::BadAllowedHost { .. })
        ));
    }

    #[test]
    fn every_response_carries_the_security_headers() {
        let r = Response::error(405, "only GET and HEAD").to_bytes(&content_security_policy());
        let text = String::from_utf8(r).unwrap();
        for h in [
            "HTTP/1.1 405 Method Not Allowed\r\n",
            "\r\nAllow: GET, HEAD\r\n",
            "\r\nConnection: close\r\n",
            "\r\nCache-Control: no-store\r\n",
            "\r\nX-Content-Type-Options: nosniff\r\n",
            "\r\nX-Frame-Options: DENY\r\n",
            "\r\nReferrer-Policy: no-referrer\r\n",
            "\r\nContent-Type: text/plain; charset=utf-8\r\n",
            "\r\nContent-Length: 42\r\n",
            "\r\nContent-Security-Policy: default-src 'none'; style-src 'sha256-",
            "; frame-ancestors 'none'\r\n",
        ] {
            assert!(text.contains(h), "{h:?} in {text}");
        }
        assert!(text.ends_with("\r\n\r\n405 Method Not Allowed: only GET and HEAD\n"));
    }

    #[test]
    fn the_head_ends_at_the_first_empty_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody", 0), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.0\n\n", 0), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n", 0), None);
    }
}
