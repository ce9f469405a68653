//! in_forward: the Forward-protocol server (TCP, optional TLS and `<security>` handshake, UDP
//! heartbeat on the same port).
//!
//! Owns connections: reading frames (decoded by [`crate::forward`]), handing each batch to
//! [`Emit`], and writing `{"ack": chunk}` only once `emit` returned `Ok`, in frame order.
//! Frames on one connection are pipelined (up to [`MAX_IN_FLIGHT`] awaiting their commit).
//! It must not keep accepted data anywhere but inside the `emit` call, must not decode records,
//! and must not ack anything that was not committed.
//!
//! Limits: at most `max_connections` connections (more are closed at once, with a warning);
//! a connection without a complete frame and without a pending ack for `idle_timeout` is
//! closed; bytes a connection buffers (a partial frame, frames awaiting their commit) are held
//! against the node's [`InFlightBudget`], and reading pauses while it is spent; when accept
//! fails for lack of file descriptors, accepting backs off while connections keep being served.
//!
//! Its typed config (with `<transport tls>` and `<security>`) and builder: [`config`].

pub mod config;

use crate::event::{append_field_to_records, EventBatch, EventTime};
use crate::fd_limit::is_fd_exhaustion;
use crate::forward::{
    decode_frame, encode_ack, frame_is_gzip, take_message, DecoderConfig, EventFrame, ForwardError,
    Frame, FrameDecoder, ServerHandshake, ServerSecurity, HARD_MAX_FRAME_SIZE,
    MAX_CONTROL_MESSAGE_SIZE,
};
use crate::input::budget::{kib, ConnectionBudget, Held, InFlightBudget};
use crate::log_limit::{WarnLimiter, WARN_INTERVAL};
use crate::pipeline::{Emit, EmitError};
use bytes::{Bytes, BytesMut};
use config::ForwardInputConfig;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Frames read ahead on one connection while earlier ones await their commit.
pub const MAX_IN_FLIGHT: usize = 16;
/// Frames larger than this are decoded on the blocking pool.
const BLOCKING_DECODE_THRESHOLD: usize = 256 * 1024;
/// Time allowed for the TLS and `<security>` handshakes.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
const READ_CHUNK: usize = 64 * 1024;
/// A read into an empty buffer, taken without budget (and the initial buffer's size).
const IDLE_READ: usize = 4 * 1024;
/// Longest pause between accept attempts while file descriptors are exhausted.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
const HOSTNAME_CACHE_TTL: Duration = Duration::from_secs(300);

struct Shared {
    emit: Arc<dyn Emit>,
    decoder: DecoderConfig,
    tag: Option<String>,
    add_tag_prefix: Option<String>,
    chunk_size_warn_limit: Option<u64>,
    source_address_key: Option<String>,
    source_hostname_key: Option<String>,
    /// Reverse-DNS results for `source_hostname_key`, kept for [`HOSTNAME_CACHE_TTL`].
    hostnames: Mutex<HashMap<IpAddr, (String, Instant)>>,
    deny_keepalive: bool,
    security: Option<ServerSecurity>,
    tls: Option<TlsAcceptor>,
    /// `chunk_size_limit` (or the hard cap); the decoder's limit is this capped by the budget.
    configured_frame_limit: u64,
    max_connections: usize,
    /// `None`: connections are never closed for being idle.
    idle_timeout: Option<Duration>,
    budget: InFlightBudget,
    emit_failed: WarnLimiter,
    bad_input: WarnLimiter,
    skipped_events: WarnLimiter,
    size_warn: WarnLimiter,
    over_connection_limit: WarnLimiter,
    accept_failed: WarnLimiter,
    budget_spent: WarnLimiter,
}

impl Shared {
    /// Set the node budget; frames can be at most as large as it.
    fn set_budget(&mut self, budget: InFlightBudget) {
        self.decoder.max_frame_size = self.configured_frame_limit.min(budget.total_bytes());
        self.budget = budget;
    }

    /// What a connection may hold when `connections` are open: one maximal frame plus a read,
    /// or an equal part of the budget if that is more.
    fn connection_share(&self, connections: usize) -> u64 {
        let frame = self.decoder.max_frame_size + READ_CHUNK as u64;
        frame.max(self.budget.total_bytes() / connections.max(1) as u64)
    }

    /// Log the counts of warnings held back by the rate limiters, so none is lost when the
    /// condition stops repeating.
    fn flush_warnings(&self) {
        if let Some(dropped) = self.skipped_events.flush_due() {
            tracing::warn!(dropped,
                "in_forward: dropped {dropped} invalid event(s) since the last warning (skip_invalid_event)");
        }
        if let Some(refused) = self.over_connection_limit.flush_due() {
            tracing::warn!(refused, max_connections = self.max_connections,
                "in_forward: closed {refused} new connection(s) since the last warning: max_connections ({}) reached",
                self.max_connections);
        }
        for (limiter, what) in [
            (&self.emit_failed, "could not commit a chunk"),
            (&self.bad_input, "invalid input or failed handshake"),
            (&self.accept_failed, "accept failed"),
            (
                &self.budget_spent,
                "reading paused: max_in_flight_bytes spent",
            ),
            (&self.size_warn, "chunk larger than chunk_size_warn_limit"),
        ] {
            if let Some(n) = limiter.flush_due() {
                tracing::warn!(
                    occurrences = n,
                    "in_forward: {what}: {n} more time(s) since the last warning"
                );
            }
        }
    }
}

/// A bound in_forward server; [`ForwardInput::run`] serves it.
pub struct ForwardInput {
    tcp: TcpListener,
    udp: UdpSocket,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
}

fn invalid_input(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
}

fn resolve_bind(bind: &str) -> io::Result<IpAddr> {
    if let Ok(ip) = bind.parse::<IpAddr>() {
        return Ok(ip);
    }
    // Startup only: a blocking lookup of the configured bind name.
    (bind, 0)
        .to_socket_addrs()?
        .next()
        .map(|a| a.ip())
        .ok_or_else(|| invalid_input(format!("bind address {bind:?} does not resolve")))
}

impl ForwardInput {
    /// Bind TCP and UDP on `bind:port` (port 0: an ephemeral port, the same for UDP) and load
    /// TLS and `<security>`. Must be called inside a tokio runtime. Blocking work (reading
    /// certificate files, resolving `<client host>` names) happens here, once, at startup.
    pub fn bind(cfg: &ForwardInputConfig, emit: Arc<dyn Emit>) -> io::Result<ForwardInput> {
        let ip = resolve_bind(&cfg.bind)?;
        let tls = match &cfg.tls {
            Some(t) => Some(TlsAcceptor::from(
                crate::tls::server_config(t).map_err(invalid_input)?,
            )),
            None => None,
        };
        let security = match &cfg.security {
            Some(s) => Some(ServerSecurity::from_config(s).map_err(invalid_input)?),
            None => None,
        };
        let attempts = if cfg.port == 0 { 16 } else { 1 };
        let mut last_err = None;
        for _ in 0..attempts {
            let socket = if ip.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            socket.set_reuseaddr(true)?;
            socket.bind(SocketAddr::new(ip, cfg.port))?;
            let tcp = socket.listen(1024)?;
            let local_addr = tcp.local_addr()?;
            match std::net::UdpSocket::bind(local_addr) {
                Ok(udp) => {
                    udp.set_nonblocking(true)?;
                    let udp = UdpSocket::from_std(udp)?;
                    let budget = InFlightBudget::default();
                    let configured_frame_limit =
                        cfg.chunk_size_limit.unwrap_or(HARD_MAX_FRAME_SIZE);
                    let mut shared = Shared {
                        emit,
                        decoder: DecoderConfig {
                            max_frame_size: configured_frame_limit,
                            decompression_size_limit: cfg.decompression_size_limit,
                            skip_invalid_event: cfg.skip_invalid_event,
                        },
                        tag: cfg.tag.clone(),
                        add_tag_prefix: cfg.add_tag_prefix.clone(),
                        chunk_size_warn_limit: cfg.chunk_size_warn_limit,
                        source_address_key: cfg.source_address_key.clone(),
                        source_hostname_key: cfg.source_hostname_key.clone(),
                        hostnames: Mutex::new(HashMap::new()),
                        deny_keepalive: cfg.deny_keepalive,
                        security,
                        tls,
                        configured_frame_limit,
                        max_connections: cfg.max_connections.max(1),
                        idle_timeout: Some(cfg.idle_timeout).filter(|d| !d.is_zero()),
                        budget: budget.clone(),
                        emit_failed: WarnLimiter::default(),
                        bad_input: WarnLimiter::default(),
                        skipped_events: WarnLimiter::default(),
                        size_warn: WarnLimiter::default(),
                        over_connection_limit: WarnLimiter::default(),
                        accept_failed: WarnLimiter::default(),
                        budget_spent: WarnLimiter::default(),
                    };
                    shared.set_budget(budget);
                    return Ok(ForwardInput {
                        tcp,
                        udp,
                        local_addr,
                        shared: Arc::new(shared),
                    });
                }
                Err(e) if cfg.port == 0 && e.kind() == io::ErrorKind::AddrInUse => {
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("cannot bind UDP heartbeat port")))
    }

    /// The bound address (TCP and UDP).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Hold frames in flight against `budget` (shared by every input of the node) instead of
    /// a budget of this input's own ([`crate::input::budget::DEFAULT_MAX_IN_FLIGHT_BYTES`]).
    pub fn with_in_flight_budget(mut self, budget: InFlightBudget) -> Self {
        Arc::get_mut(&mut self.shared)
            .expect("the input is not serving yet")
            .set_budget(budget);
        self
    }

    /// Serve until `shutdown` is cancelled; then stop accepting and reading, let frames already
    /// read finish their emit and send their acks, and return once every connection closed.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(addr = %self.local_addr, tls = self.shared.tls.is_some(),
            security = self.shared.security.is_some(),
            max_connections = self.shared.max_connections,
            idle_timeout_secs = self.shared.idle_timeout.map_or(0, |d| d.as_secs()),
            max_in_flight_bytes = self.shared.budget.total_bytes(),
            max_frame_bytes = self.shared.decoder.max_frame_size,
            "in_forward listening");
        let udp = tokio::spawn(serve_udp_heartbeat(self.udp, shutdown.clone()));
        let mut connections = JoinSet::new();
        let mut backoff = Duration::ZERO;
        let mut flush = tokio::time::interval(WARN_INTERVAL);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, peer)) => {
                        backoff = Duration::ZERO;
                        if connections.len() >= self.shared.max_connections {
                            refuse_over_limit(&self.shared, stream, peer);
                            continue;
                        }
                        let shared = self.shared.clone();
                        let shutdown = shutdown.clone();
                        let budget = shared
                            .budget
                            .connection(shared.connection_share(connections.len() + 1));
                        connections.spawn(handle_connection(shared, stream, peer, budget, shutdown));
                    }
                    Err(e) => {
                        // Out of file descriptors (or another transient failure): back off
                        // instead of spinning; open connections keep being served meanwhile.
                        backoff = (backoff * 2).clamp(Duration::from_millis(10), MAX_ACCEPT_BACKOFF);
                        if let Some(held_back) = self.shared.accept_failed.check() {
                            let fds = if is_fd_exhaustion(&e) {
                                "out of file descriptors: "
                            } else {
                                ""
                            };
                            tracing::warn!(error = %e, open_connections = connections.len(),
                                retry_in_ms = backoff.as_millis() as u64,
                                failures_since_last_warning = held_back + 1,
                                "in_forward: accept failed ({fds}accepting paused, open connections are still served)");
                        }
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                _ = flush.tick() => self.shared.flush_warnings(),
            }
        }
        drop(self.tcp);
        while connections.join_next().await.is_some() {}
        let _ = udp.await;
        tracing::info!(addr = %self.local_addr, "in_forward stopped");
    }
}

/// Close a connection accepted over `max_connections`, with a rate-limited warning.
fn refuse_over_limit(shared: &Shared, stream: TcpStream, peer: SocketAddr) {
    // Close at once: the sender sees EOF (or a reset) and retries elsewhere or later.
    let _ = stream.set_zero_linger();
    drop(stream);
    if let Some(held_back) = shared.over_connection_limit.check() {
        let refused = held_back + 1;
        tracing::warn!(%peer, max_connections = shared.max_connections, refused,
            "in_forward: connection limit reached: closed {refused} new connection(s) since the last warning (max_connections {})",
            shared.max_connections);
    }
}

/// Answer each `0x00` datagram with `0x00`.
async fn serve_udp_heartbeat(udp: UdpSocket, shutdown: CancellationToken) {
    let mut buf = [0u8; 128];
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = udp.recv_from(&mut buf) => r,
        };
        match received {
            Ok((1, peer)) if buf[0] == 0 => {
                if let Err(e) = udp.send_to(&[0u8], peer).await {
                    tracing::debug!(%peer, error = %e, "in_forward: heartbeat reply failed");
                }
            }
            Ok((_, peer)) => tracing::debug!(%peer, "in_forward: ignored non-heartbeat datagram"),
            // ICMP errors from earlier replies surface here; keep serving.
            Err(e) => tracing::debug!(error = %e, "in_forward: UDP receive error"),
        }
    }
}

async fn handle_connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    budget: ConnectionBudget,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    match &shared.tls {
        Some(acceptor) => {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => r,
            };
            match accepted {
                Ok(Ok(tls)) => serve_connection(shared, tls, peer, budget, shutdown).await,
                Ok(Err(e)) => {
                    if let Some(held_back) = shared.bad_input.check() {
                        tracing::warn!(%peer, error = %e,
                            occurrences_since_last_warning = held_back + 1,
                            "in_forward: TLS handshake failed");
                    }
                }
                Err(_) => tracing::warn!(%peer, "in_forward: TLS handshake timed out"),
            }
        }
        None => serve_connection(shared, stream, peer, budget, shutdown).await,
    }
}

/// What the ack writer waits for, in frame order.
enum Pending {
    /// An emit running in its own task; ack `chunk` once it returns Ok.
    Emitting {
        commit: JoinHandle<Result<(), EmitError>>,
        chunk: Option<Bytes>,
        tag: String,
        count: u32,
        /// The frame's share of the in-flight budget, released once it is acked.
        hold: Held,
    },
    /// Nothing to commit (every event was dropped as invalid): ack right away.
    Nothing { chunk: Option<Bytes> },
}

/// Per-connection facts added to records.
struct PeerInfo {
    addr: SocketAddr,
    address: String,
    hostname: Option<String>,
}

async fn serve_connection<S>(
    shared: Arc<Shared>,
    stream: S,
    peer: SocketAddr,
    budget: ConnectionBudget,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(IDLE_READ);
    if let Some(security) = &shared.security {
        let handshake = tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            server_handshake(
                security,
                !shared.deny_keepalive,
                &mut reader,
                &mut writer,
                &mut buf,
                peer,
                &shutdown,
            ),
        )
        .await;
        let failure = match handshake {
            Ok(Ok(())) => None,
            Ok(Err(reason)) => Some(reason),
            Err(_) => Some("timed out".to_string()),
        };
        if let Some(reason) = failure {
            if let Some(held_back) = shared.bad_input.check() {
                tracing::warn!(%peer, %reason, occurrences_since_last_warning = held_back + 1,
                    "in_forward: handshake failed, closing connection");
            }
            let _ = writer.shutdown().await;
            return;
        }
    }
    let ip = peer.ip().to_canonical();
    let hostname = if shared.source_hostname_key.is_some() {
        Some(resolve_peer_hostname(&shared, ip).await)
    } else {
        None
    };
    let info = Arc::new(PeerInfo {
        addr: peer,
        address: ip.to_string(),
        hostname,
    });
    let (tx, rx) = mpsc::channel::<Pending>(MAX_IN_FLIGHT);
    let stop = shutdown.child_token();
    let outstanding = Arc::new(AtomicUsize::new(0));
    let conn = Connection {
        info,
        budget,
        outstanding: outstanding.clone(),
    };
    let read = read_frames(shared.clone(), reader, buf, tx, stop.clone(), conn);
    let write = write_acks(shared.clone(), writer, rx, stop, peer, outstanding);
    tokio::join!(read, write);
}

/// Hostname for `source_hostname_key`: the peer's reverse-DNS name (as Fluentd, which turns
/// `resolve_hostname` on with that key), or its address when the lookup fails.
async fn resolve_peer_hostname(shared: &Shared, ip: IpAddr) -> String {
    {
        let cache = shared.hostnames.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((name, at)) = cache.get(&ip) {
            if at.elapsed() < HOSTNAME_CACHE_TTL {
                return name.clone();
            }
        }
    }
    let name = tokio::task::spawn_blocking(move || dns_lookup::lookup_addr(&ip))
        .await
        .ok()
        .and_then(|r| r.ok())
        .unwrap_or_else(|| ip.to_string());
    let mut cache = shared.hostnames.lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() > 10_000 {
        cache.clear();
    }
    cache.insert(ip, (name.clone(), Instant::now()));
    name
}

/// HELO → PING → PONG. `Err(reason)` after sending a refusing PONG (or on I/O failure).
async fn server_handshake<R, W>(
    security: &ServerSecurity,
    keepalive: bool,
    reader: &mut R,
    writer: &mut W,
    buf: &mut BytesMut,
    peer: SocketAddr,
    shutdown: &CancellationToken,
) -> Result<(), String>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let handshake = ServerHandshake::new(security, keepalive);
    writer
        .write_all(&handshake.helo())
        .await
        .map_err(|e| e.to_string())?;
    writer.flush().await.map_err(|e| e.to_string())?;
    let ping = loop {
        match take_message(buf, MAX_CONTROL_MESSAGE_SIZE) {
            Ok(Some(m)) => break m,
            Ok(None) => {}
            Err(e) => return Err(format!("invalid PING: {e}")),
        }
        let n = tokio::select! {
            _ = shutdown.cancelled() => return Err("shutting down".into()),
            r = reader.read_buf(buf) => r.map_err(|e| e.to_string())?,
        };
        if n == 0 {
            return Err("connection closed before PING".into());
        }
    };
    let outcome = handshake.check_ping(security, &ping, peer.ip());
    writer
        .write_all(&outcome.pong)
        .await
        .map_err(|e| e.to_string())?;
    writer.flush().await.map_err(|e| e.to_string())?;
    match outcome.result {
        Ok(client_hostname) => {
            tracing::debug!(%peer, %client_hostname, "in_forward: handshake succeeded");
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// What reading one frame produced.
struct Prepared {
    batch: Option<EventBatch>,
    chunk: Option<Bytes>,
    frame_skipped: u32,
    first_skip_error: Option<String>,
    wire_size: usize,
}

/// Decode a frame and shape its batch (tag rules, source keys). CPU work only.
fn prepare(
    shared: &Shared,
    decoder: &DecoderConfig,
    info: &PeerInfo,
    raw: Bytes,
    now: EventTime,
) -> Result<Option<Prepared>, ForwardError> {
    let frame: EventFrame = match decode_frame(raw, decoder, now)? {
        Frame::Heartbeat => return Ok(None),
        Frame::Events(e) => e,
    };
    let chunk = frame.options.chunk.clone();
    let prepared = Prepared {
        batch: None,
        chunk,
        frame_skipped: frame.skipped,
        first_skip_error: frame.first_skip_error.as_ref().map(|e| e.to_string()),
        wire_size: frame.wire_size,
    };
    if frame.count == 0 {
        return Ok(Some(prepared));
    }
    let mut tag = shared.tag.clone().unwrap_or_else(|| frame.tag.clone());
    if let Some(prefix) = &shared.add_tag_prefix {
        tag = format!("{prefix}.{tag}");
    }
    let mut batch = frame.into_batch(tag);
    if let Some(key) = &shared.source_address_key {
        batch.entries = append_field_to_records(&batch.entries, key, &info.address)
            .map_err(ForwardError::BadEntries)?;
    }
    if let (Some(key), Some(hostname)) = (&shared.source_hostname_key, &info.hostname) {
        batch.entries = append_field_to_records(&batch.entries, key, hostname)
            .map_err(ForwardError::BadEntries)?;
    }
    Ok(Some(Prepared {
        batch: Some(batch),
        ..prepared
    }))
}

/// One connection's reading state shared with nothing else but its ack writer's counter.
struct Connection {
    info: Arc<PeerInfo>,
    budget: ConnectionBudget,
    /// Frames sent to the ack writer and not yet acked (or refused).
    outstanding: Arc<AtomicUsize>,
}

/// Why reading stopped waiting.
enum Wait<T> {
    Done(T),
    Stop,
    Idle,
}

/// Await `fut` unless the connection is stopped or its idle deadline passes first.
async fn wait_for<T>(
    fut: impl std::future::Future<Output = T>,
    stop: &CancellationToken,
    idle_deadline: Option<tokio::time::Instant>,
) -> Wait<T> {
    let idle = async {
        match idle_deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = stop.cancelled() => Wait::Stop,
        v = fut => Wait::Done(v),
        _ = idle => Wait::Idle,
    }
}

async fn read_frames<R>(
    shared: Arc<Shared>,
    mut reader: R,
    mut buf: BytesMut,
    tx: mpsc::Sender<Pending>,
    stop: CancellationToken,
    conn: Connection,
) where
    R: AsyncRead + Unpin,
{
    let info = conn.info.clone();
    let peer = info.addr;
    let mut decoder = FrameDecoder::new(shared.decoder.clone());
    let next_deadline = || shared.idle_timeout.map(|d| tokio::time::Instant::now() + d);
    let mut idle_deadline = next_deadline();
    // Budget for the bytes in `buf` (a partial frame) and the next read.
    let mut held = Held::default();
    loop {
        loop {
            let raw = match decoder.next_frame(&mut buf) {
                Ok(Some(raw)) => raw,
                Ok(None) => break,
                Err(e) => {
                    warn_bad_input(&shared, peer, &e);
                    return;
                }
            };
            idle_deadline = next_deadline();
            // The frame's bytes leave the buffer: so does their budget.
            let mut hold = held.split(kib(raw.len() as u64));
            // Wait for a pipeline slot before doing the work (bounds frames in flight).
            let permit = tokio::select! {
                _ = stop.cancelled() => return,
                p = tx.reserve() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            let mut frame_decoder = None;
            if frame_is_gzip(&raw) {
                // Reserve what decompression may produce before it runs: at most
                // decompression_size_limit, and no more than this connection may hold.
                let room = conn
                    .budget
                    .share_bytes()
                    .saturating_sub(held.bytes() + hold.bytes());
                let allowance = shared.decoder.decompression_size_limit.min(room);
                let extra = match conn.budget.try_acquire(kib(allowance)) {
                    Some(h) => h,
                    None => {
                        note_budget_spent(&shared, peer);
                        match wait_for(conn.budget.acquire(kib(allowance)), &stop, None).await {
                            Wait::Done(h) => h,
                            _ => return,
                        }
                    }
                };
                hold.merge(extra);
                let mut d = shared.decoder.clone();
                d.decompression_size_limit = allowance;
                frame_decoder = Some(d);
            }
            let now = EventTime::now();
            let prepared = if raw.len() > BLOCKING_DECODE_THRESHOLD || frame_decoder.is_some() {
                let shared = shared.clone();
                let info = info.clone();
                match tokio::task::spawn_blocking(move || {
                    let d = frame_decoder.as_ref().unwrap_or(&shared.decoder);
                    prepare(&shared, d, &info, raw, now)
                })
                .await
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(%peer, error = %e, "in_forward: decoding task failed");
                        return;
                    }
                }
            } else {
                prepare(&shared, &shared.decoder, &info, raw, now)
            };
            let prepared = match prepared {
                Ok(Some(p)) => p,
                Ok(None) => continue, // heartbeat
                Err(e) => {
                    warn_bad_input(&shared, peer, &e);
                    return;
                }
            };
            if prepared.frame_skipped > 0 {
                let dropped = prepared.frame_skipped as u64;
                // Held-back occurrences are events, so the line counts every dropped event.
                if let Some(held_back) = shared.skipped_events.check_n(dropped) {
                    let dropped = dropped + held_back;
                    tracing::warn!(%peer, dropped,
                        reason = prepared.first_skip_error.as_deref().unwrap_or(""),
                        "in_forward: dropped {dropped} invalid event(s) since the last warning (skip_invalid_event)");
                }
            }
            if let Some(limit) = shared.chunk_size_warn_limit {
                if prepared.wire_size as u64 > limit {
                    if let Some(held_back) = shared.size_warn.check() {
                        tracing::warn!(%peer, size = prepared.wire_size, limit,
                            occurrences_since_last_warning = held_back + 1,
                            "in_forward: chunk is larger than chunk_size_warn_limit");
                    }
                }
            }
            let pending = match prepared.batch {
                Some(batch) => {
                    // Keep budget for what stays in memory until the ack: the batch.
                    hold.shrink_to(kib(batch.entries.len() as u64));
                    let emit = shared.emit.clone();
                    let tag = batch.tag.clone();
                    let count = batch.count;
                    Pending::Emitting {
                        commit: tokio::spawn(async move { emit.emit(batch).await }),
                        chunk: prepared.chunk,
                        tag,
                        count,
                        hold,
                    }
                }
                None => Pending::Nothing {
                    chunk: prepared.chunk,
                },
            };
            conn.outstanding.fetch_add(1, Ordering::SeqCst);
            permit.send(pending);
            if shared.deny_keepalive {
                return;
            }
        }
        // Between frames, hold nothing: the first bytes of the next frame are read without
        // budget (at most IDLE_READ), so idle connections do not spend the node's budget.
        let want = if buf.is_empty() {
            held = Held::default();
            0
        } else {
            // Budget for the partial frame and the next read, capped by this share.
            (buf.len() as u64 + READ_CHUNK as u64).min(conn.budget.share_bytes())
        };
        if held.kib() < kib(want) {
            let more = kib(want) - held.kib();
            match conn.budget.try_acquire(more) {
                Some(h) => held.merge(h),
                None => {
                    note_budget_spent(&shared, peer);
                    loop {
                        match wait_for(conn.budget.acquire(more), &stop, idle_deadline).await {
                            Wait::Done(h) => {
                                held.merge(h);
                                break;
                            }
                            Wait::Stop => return,
                            Wait::Idle => {
                                if !close_if_idle(&shared, &conn, peer, buf.len()) {
                                    idle_deadline = next_deadline();
                                    continue;
                                }
                                return;
                            }
                        }
                    }
                }
            }
        }
        let room = if buf.is_empty() {
            IDLE_READ as u64
        } else {
            held.bytes().saturating_sub(buf.len() as u64)
        };
        if room == 0 {
            // Cannot happen while the share holds a whole frame; do not spin if it does.
            if shared.bad_input.check().is_some() {
                tracing::warn!(%peer, pending_bytes = buf.len(),
                    "in_forward: frame exceeds this connection's share of max_in_flight_bytes, closing connection");
            }
            return;
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve((room as usize).clamp(1024, READ_CHUNK));
        }
        let read = {
            let mut limited = (&mut reader).take(room.min(READ_CHUNK as u64));
            match wait_for(limited.read_buf(&mut buf), &stop, idle_deadline).await {
                Wait::Done(r) => r,
                Wait::Stop => return,
                Wait::Idle => {
                    if close_if_idle(&shared, &conn, peer, buf.len()) {
                        return;
                    }
                    idle_deadline = next_deadline();
                    continue;
                }
            }
        };
        match read {
            Ok(0) => {
                if !buf.is_empty() {
                    if let Some(held_back) = shared.bad_input.check() {
                        tracing::warn!(%peer, pending_bytes = buf.len(),
                            occurrences_since_last_warning = held_back + 1,
                            "in_forward: connection closed in the middle of a frame");
                    }
                }
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(%peer, error = %e, "in_forward: read failed");
                return;
            }
        }
    }
}

/// The idle deadline passed: close (true) unless acks are still pending.
fn close_if_idle(shared: &Shared, conn: &Connection, peer: SocketAddr, buffered: usize) -> bool {
    if conn.outstanding.load(Ordering::SeqCst) > 0 {
        return false;
    }
    tracing::info!(%peer, idle_timeout_secs = shared.idle_timeout.map_or(0, |d| d.as_secs()),
        buffered_bytes = buffered,
        "in_forward: closing idle connection (no complete frame and no pending ack within idle_timeout)");
    true
}

/// Reading pauses until budget frees (rate-limited warning).
fn note_budget_spent(shared: &Shared, peer: SocketAddr) {
    if let Some(held_back) = shared.budget_spent.check() {
        tracing::warn!(%peer, max_in_flight_bytes = shared.budget.total_bytes(),
            available_bytes = shared.budget.available_bytes(),
            occurrences_since_last_warning = held_back + 1,
            "in_forward: in-flight budget spent, reading paused until frames are committed (max_in_flight_bytes)");
    }
}

fn warn_bad_input(shared: &Shared, peer: SocketAddr, error: &ForwardError) {
    match shared.bad_input.check() {
        Some(held_back) => tracing::warn!(%peer, %error,
            occurrences_since_last_warning = held_back + 1,
            "in_forward: invalid input, closing connection"),
        None => tracing::debug!(%peer, %error, "in_forward: invalid input, closing connection"),
    }
}

async fn write_acks<W>(
    shared: Arc<Shared>,
    mut writer: W,
    mut rx: mpsc::Receiver<Pending>,
    stop: CancellationToken,
    peer: SocketAddr,
    outstanding: Arc<AtomicUsize>,
) where
    W: AsyncWrite + Unpin,
{
    while let Some(pending) = rx.recv().await {
        // Counted as outstanding until this iteration ends (ack written, or the loop left).
        struct Done<'a>(&'a AtomicUsize);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _done = Done(&outstanding);
        let mut _hold = Held::default();
        let chunk = match pending {
            Pending::Nothing { chunk } => chunk,
            Pending::Emitting {
                commit,
                chunk,
                tag,
                count,
                hold,
            } => match commit.await {
                Ok(Ok(())) => {
                    _hold = hold;
                    chunk
                }
                Ok(Err(error)) => {
                    if let Some(held_back) = shared.emit_failed.check() {
                        tracing::warn!(%peer, %tag, count, %error,
                            occurrences_since_last_warning = held_back + 1,
                            "in_forward: could not commit a chunk; not acknowledged, closing connection so the sender retries");
                    }
                    break;
                }
                Err(e) => {
                    tracing::error!(%peer, %tag, error = %e, "in_forward: emit task failed");
                    break;
                }
            },
        };
        if let Some(chunk) = chunk {
            let written = async {
                writer.write_all(&encode_ack(&chunk)).await?;
                writer.flush().await
            }
            .await;
            if let Err(e) = written {
                tracing::debug!(%peer, error = %e, "in_forward: writing ack failed");
                break;
            }
        }
    }
    stop.cancel();
    drop(rx);
    let _ = writer.shutdown().await;
}

#[cfg(test)]
mod tests;
