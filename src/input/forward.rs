//! in_forward: the Forward-protocol server (TCP, optional TLS and `<security>` handshake, UDP
//! heartbeat on the same port).
//!
//! Owns connections: reading frames (decoded by [`crate::forward`]), handing each batch to
//! [`Emit`], and writing `{"ack": chunk}` only once `emit` returned `Ok`, in frame order.
//! Frames on one connection are pipelined (up to [`MAX_IN_FLIGHT`] awaiting their commit).
//! It must not keep accepted data anywhere but inside the `emit` call, must not decode records,
//! and must not ack anything that was not committed. Its typed config (with `<transport tls>`
//! and `<security>`) and builder: [`config`].

pub mod config;

use crate::event::{append_field_to_records, EventBatch, EventTime};
use crate::forward::{
    decode_frame, encode_ack, take_message, DecoderConfig, EventFrame, ForwardError, Frame,
    FrameDecoder, ServerHandshake, ServerSecurity, HARD_MAX_FRAME_SIZE, MAX_CONTROL_MESSAGE_SIZE,
};
use crate::input::{Emit, EmitError};
use crate::log_limit::WarnLimiter;
use bytes::{Bytes, BytesMut};
use config::ForwardInputConfig;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
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
    emit_failed: WarnLimiter,
    bad_input: WarnLimiter,
    skipped_events: WarnLimiter,
    size_warn: WarnLimiter,
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
                    let shared = Arc::new(Shared {
                        emit,
                        decoder: DecoderConfig {
                            max_frame_size: cfg.chunk_size_limit.unwrap_or(HARD_MAX_FRAME_SIZE),
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
                        emit_failed: WarnLimiter::default(),
                        bad_input: WarnLimiter::default(),
                        skipped_events: WarnLimiter::default(),
                        size_warn: WarnLimiter::default(),
                    });
                    return Ok(ForwardInput {
                        tcp,
                        udp,
                        local_addr,
                        shared,
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

    /// Serve until `shutdown` is cancelled; then stop accepting and reading, let frames already
    /// read finish their emit and send their acks, and return once every connection closed.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(addr = %self.local_addr, tls = self.shared.tls.is_some(),
            security = self.shared.security.is_some(), "in_forward listening");
        let udp = tokio::spawn(serve_udp_heartbeat(self.udp, shutdown.clone()));
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let shared = self.shared.clone();
                        let shutdown = shutdown.clone();
                        connections.spawn(handle_connection(shared, stream, peer, shutdown));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "in_forward: accept failed");
                        // e.g. out of file descriptors: do not spin
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(self.tcp);
        while connections.join_next().await.is_some() {}
        let _ = udp.await;
        tracing::info!(addr = %self.local_addr, "in_forward stopped");
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
                Ok(Ok(tls)) => serve_connection(shared, tls, peer, shutdown).await,
                Ok(Err(e)) => {
                    if shared.bad_input.check().is_some() {
                        tracing::warn!(%peer, error = %e, "in_forward: TLS handshake failed");
                    }
                }
                Err(_) => tracing::warn!(%peer, "in_forward: TLS handshake timed out"),
            }
        }
        None => serve_connection(shared, stream, peer, shutdown).await,
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
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
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
            if shared.bad_input.check().is_some() {
                tracing::warn!(%peer, %reason, "in_forward: handshake failed, closing connection");
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
    let read = read_frames(shared.clone(), reader, buf, tx, stop.clone(), info);
    let write = write_acks(shared.clone(), writer, rx, stop, peer);
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
    info: &PeerInfo,
    raw: Bytes,
    now: EventTime,
) -> Result<Option<Prepared>, ForwardError> {
    let frame: EventFrame = match decode_frame(raw, &shared.decoder, now)? {
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

async fn read_frames<R>(
    shared: Arc<Shared>,
    mut reader: R,
    mut buf: BytesMut,
    tx: mpsc::Sender<Pending>,
    stop: CancellationToken,
    info: Arc<PeerInfo>,
) where
    R: AsyncRead + Unpin,
{
    let peer = info.addr;
    let mut decoder = FrameDecoder::new(shared.decoder.clone());
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
            // Wait for a pipeline slot before doing the work (bounds frames in flight).
            let permit = tokio::select! {
                _ = stop.cancelled() => return,
                p = tx.reserve() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            let now = EventTime::now();
            let prepared = if raw.len() > BLOCKING_DECODE_THRESHOLD {
                let shared = shared.clone();
                let info = info.clone();
                match tokio::task::spawn_blocking(move || prepare(&shared, &info, raw, now)).await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(%peer, error = %e, "in_forward: decoding task failed");
                        return;
                    }
                }
            } else {
                prepare(&shared, &info, raw, now)
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
                if let Some(suppressed) = shared.skipped_events.check() {
                    tracing::warn!(%peer, skipped = prepared.frame_skipped,
                        reason = prepared.first_skip_error.as_deref().unwrap_or(""),
                        suppressed_warnings = suppressed,
                        "in_forward: dropped invalid events (skip_invalid_event)");
                }
            }
            if let Some(limit) = shared.chunk_size_warn_limit {
                if prepared.wire_size as u64 > limit {
                    if let Some(suppressed) = shared.size_warn.check() {
                        tracing::warn!(%peer, size = prepared.wire_size, limit,
                            suppressed_warnings = suppressed,
                            "in_forward: chunk is larger than chunk_size_warn_limit");
                    }
                }
            }
            let pending = match prepared.batch {
                Some(batch) => {
                    let emit = shared.emit.clone();
                    let tag = batch.tag.clone();
                    let count = batch.count;
                    Pending::Emitting {
                        commit: tokio::spawn(async move { emit.emit(batch).await }),
                        chunk: prepared.chunk,
                        tag,
                        count,
                    }
                }
                None => Pending::Nothing {
                    chunk: prepared.chunk,
                },
            };
            permit.send(pending);
            if shared.deny_keepalive {
                return;
            }
        }
        let read = tokio::select! {
            _ = stop.cancelled() => return,
            r = reader.read_buf(&mut buf) => r,
        };
        match read {
            Ok(0) => {
                if !buf.is_empty() && shared.bad_input.check().is_some() {
                    tracing::warn!(%peer, pending_bytes = buf.len(),
                        "in_forward: connection closed in the middle of a frame");
                }
                return;
            }
            Ok(_) => {
                if buf.capacity() - buf.len() < 1024 {
                    buf.reserve(READ_CHUNK);
                }
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "in_forward: read failed");
                return;
            }
        }
    }
}

fn warn_bad_input(shared: &Shared, peer: SocketAddr, error: &ForwardError) {
    match shared.bad_input.check() {
        Some(suppressed) => tracing::warn!(%peer, %error, suppressed_warnings = suppressed,
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
) where
    W: AsyncWrite + Unpin,
{
    while let Some(pending) = rx.recv().await {
        let chunk = match pending {
            Pending::Nothing { chunk } => chunk,
            Pending::Emitting {
                commit,
                chunk,
                tag,
                count,
            } => match commit.await {
                Ok(Ok(())) => chunk,
                Ok(Err(error)) => {
                    if let Some(suppressed) = shared.emit_failed.check() {
                        tracing::warn!(%peer, %tag, count, %error,
                            suppressed_warnings = suppressed,
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
