//! out_forward: sends chunks to `<server>`s over the Forward protocol, with primary/standby
//! failover, heartbeats and acknowledgements.
//!
//! Owns the send path of one `<match> @type forward`: each chunk goes out as one or more
//! PackedForward (or CompressedPackedForward) frames of at most `max_frame_size` bytes
//! ([`frames`]: split on entry boundaries) with the options `{size, chunk}` — the chunk id is
//! the buffer's, or for a split chunk derived from it and the frame's index, so a
//! retransmission carries the same ids — each to the server [`balance`] picks; on a failed
//! connect, send, handshake, ack timeout, EOF or mismatched ack that server is marked down and
//! the frame goes to the next eligible one within the same [`ForwardOutput::forward`] (a dead
//! primary promotes the standby at once). `write` succeeds only when every frame was
//! acknowledged; frames acknowledged by an attempt that failed later are not sent again by the
//! next attempt (resending them would be harmless: same ids). Only when no server took a frame
//! does `write` fail, and the output driver backs off — except for a frame holding one entry
//! larger than `max_frame_size` that a server refused (closed the connection): that chunk can
//! never be delivered, and the error says so (permanent). Heartbeat tasks ([`node`] holds the
//! health state machine, [`phi`] the detector) bring servers back and wake the driver through
//! `ChunkOutput::recovered`.
//!
//! Unlike Fluentd, `require_ack_response` defaults to **true**: a chunk leaves the buffer only
//! after the receiver's `{"ack"}` (at-least-once). With `require_ack_response false` a chunk
//! counts as delivered once written to the socket (Fluentd's at-most-once).
//!
//! It must not retry on its own schedule (the driver owns backoff) nor keep chunks: only the
//! chunks in flight are in memory. Its typed config (`<server>`, `tls_*`, `<security>`) and
//! builder: [`config`].

pub mod balance;
pub mod config;
pub mod connection;
pub mod frames;
pub mod node;
pub mod phi;
mod status;

use super::{ChunkOutput, OutputError};
use crate::buffer::{Chunk, ChunkId};
use crate::config::Compression;
use crate::forward::{encode_packed_forward, encode_packed_forward_with_origins, gzip_entries};
use crate::pipeline::BoxFuture;
use balance::{Balancer, Candidate};
use config::{ForwardOutputConfig, HeartbeatType, Transport};
use connection::{ConnectTarget, Connection, Connector, Frame, SendError};
use frames::{entries_budget, frame_id, plan_frames, plan_frames_with_origins, FrameSpan};
use node::ServerNode;
pub use status::ForwardStatus;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, DropGuard};

/// `max_frame_size` when the config does not say: 4 MiB, under every known receiver's limit
/// (Fluent Bit's 6,144,000 bytes, the lograft cluster's batch limit).
pub const DEFAULT_MAX_FRAME_SIZE: u64 = 4 << 20;

/// Chunks whose partial progress (frames already acknowledged) is remembered between attempts;
/// beyond this the memory is dropped (a resend of acknowledged frames is harmless).
const PROGRESS_REMEMBERED: usize = 1024;

/// Settings of the send path, resolved once.
#[derive(Debug, Clone)]
struct SendSettings {
    require_ack_response: bool,
    ack_response_timeout: Duration,
    send_timeout: Duration,
    compress: Compression,
    keepalive: bool,
    keepalive_timeout: Option<Duration>,
    expire_dns_cache: Option<Duration>,
    dns_round_robin: bool,
    heartbeat_type: HeartbeatType,
    heartbeat_interval: Duration,
    verify_connection_at_startup: bool,
    /// 0: no limit (a chunk is one frame).
    max_frame_size: u64,
}

struct Shared {
    nodes: Vec<ServerNode>,
    balancer: Mutex<Balancer>,
    connector: Connector,
    settings: SendSettings,
    /// Notified whenever a server comes back.
    recovered: Notify,
    /// Split chunks that failed part-way: which frames were acknowledged already.
    progress: Mutex<HashMap<ChunkId, Vec<bool>>>,
}

/// `<match> @type forward`. Built inside a tokio runtime: it starts one heartbeat task per
/// server, stopped when the output is dropped.
pub struct ForwardOutput {
    shared: Arc<Shared>,
    _stop_heartbeats: DropGuard,
}

impl ChunkOutput for ForwardOutput {
    fn type_name(&self) -> &'static str {
        config::PLUGIN.name
    }

    fn write<'a>(&'a self, chunk: &'a Chunk) -> BoxFuture<'a, Result<(), OutputError>> {
        Box::pin(self.forward(chunk))
    }

    fn start(&self) -> BoxFuture<'_, Result<(), OutputError>> {
        Box::pin(self.verify_servers())
    }

    /// Notified each time a server becomes available again (so queued chunks need not wait
    /// out a long backoff).
    fn recovered(&self) -> Option<&Notify> {
        Some(&self.shared.recovered)
    }

    /// With `require_ack_response` (see [`crate::origin`]).
    fn sends_origins(&self) -> bool {
        self.requires_ack()
    }

    fn server_status(&self) -> Option<ForwardStatus> {
        Some(self.status())
    }
}

impl ForwardOutput {
    /// Build from config: loads TLS material (blocking file reads: call at startup) and starts
    /// the heartbeat tasks. Fails outside a tokio runtime or on bad TLS settings.
    pub fn new(cfg: &ForwardOutputConfig) -> Result<Self, OutputError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            OutputError::Unrecoverable("out_forward must be built inside a tokio runtime".into())
        })?;
        if cfg.servers.is_empty() {
            return Err(OutputError::Unrecoverable(
                "out_forward needs at least one <server>".into(),
            ));
        }
        let tls = match cfg.transport {
            Transport::Tcp => None,
            Transport::Tls => Some(connection::tls_connector(
                crate::tls::client_config(&cfg.tls).map_err(|e| {
                    OutputError::Unrecoverable(format!("out_forward TLS settings: {e}"))
                })?,
            )),
        };
        let connect_timeout = cfg.connect_timeout.unwrap_or(cfg.send_timeout);
        let connector = Connector {
            connect_timeout,
            handshake_timeout: cfg.send_timeout,
            tls,
            security: cfg
                .security
                .as_ref()
                .map(|s| (s.self_hostname.clone(), s.shared_key.clone())),
        };
        let params = cfg.health.clone();
        let now = Instant::now();
        let shared = Arc::new(Shared {
            nodes: cfg
                .servers
                .iter()
                .map(|s| ServerNode::new(s.clone(), params.clone(), now))
                .collect(),
            balancer: Mutex::new(Balancer::default()),
            connector,
            settings: SendSettings {
                require_ack_response: cfg.require_ack_response,
                ack_response_timeout: cfg.ack_response_timeout,
                send_timeout: cfg.send_timeout,
                compress: cfg.compress,
                keepalive: cfg.keepalive,
                keepalive_timeout: cfg.keepalive_timeout,
                expire_dns_cache: cfg.expire_dns_cache,
                dns_round_robin: cfg.dns_round_robin,
                heartbeat_type: cfg.health.heartbeat_type,
                heartbeat_interval: cfg.health.heartbeat_interval,
                verify_connection_at_startup: cfg.verify_connection_at_startup,
                max_frame_size: cfg.max_frame_size,
            },
            recovered: Notify::new(),
            progress: Mutex::new(HashMap::new()),
        });
        let stop = CancellationToken::new();
        if cfg.health.heartbeat_type != HeartbeatType::None {
            for index in 0..shared.nodes.len() {
                runtime.spawn(heartbeat_loop(shared.clone(), index, stop.clone()));
            }
        }
        for n in &shared.nodes {
            tracing::info!(server = %n.label, host = %n.config.host, port = n.config.port,
                weight = n.config.weight, standby = n.config.standby,
                require_ack_response = cfg.require_ack_response,
                max_frame_size = cfg.max_frame_size, "out_forward server configured");
        }
        Ok(ForwardOutput {
            shared,
            _stop_heartbeats: stop.drop_guard(),
        })
    }

    /// With `verify_connection_at_startup`, connect to every server (with TLS and handshake)
    /// and fail if one cannot be reached, as Fluentd does. Otherwise nothing.
    pub async fn verify_servers(&self) -> Result<(), OutputError> {
        if !self.shared.settings.verify_connection_at_startup {
            return Ok(());
        }
        for node in &self.shared.nodes {
            match self.shared.open(node).await {
                Ok(conn) => conn.close().await,
                Err(e) => {
                    return Err(OutputError::Unrecoverable(format!(
                        "verify_connection_at_startup: server {} is unreachable: {e}",
                        node.label
                    )))
                }
            }
        }
        Ok(())
    }

    /// Whether frames carry a `chunk` id and wait for the ack (`require_ack_response`).
    pub fn requires_ack(&self) -> bool {
        self.shared.settings.require_ack_response
    }

    /// A handle that reads the servers' health (for metrics and monitor_agent).
    pub fn status(&self) -> ForwardStatus {
        ForwardStatus::new(self.shared.clone())
    }

    /// Whether each server is available now, in configuration order.
    #[cfg(test)]
    pub fn availability(&self) -> Vec<bool> {
        self.shared.nodes.iter().map(|n| n.available()).collect()
    }

    /// Deliver one chunk: `Ok` once every frame of it was acknowledged (or, without
    /// `require_ack_response`, written). Each frame tries the servers in balancer order,
    /// re-evaluating after each failure so that a standby replaces a failed primary at once;
    /// a server that failed is not tried again within this call.
    pub async fn forward(&self, chunk: &Chunk) -> Result<(), OutputError> {
        let s = &self.shared.settings;
        let id = chunk.meta.id;
        let spans = self.plan(chunk)?;
        let count = spans.len();
        let mut done = self.shared.take_progress(id, count);
        let mut tried = vec![false; self.shared.nodes.len()];
        let mut failures = Vec::new();
        let mut refused_oversized = None;
        let mut complete = true;
        'frames: for (index, span) in spans.iter().enumerate() {
            if done[index] {
                continue;
            }
            // The chunk option: the chunk's id, or derived from it for a split chunk.
            let ack = s.require_ack_response.then(|| frame_id(id, index, count));
            let frame = self.frame(chunk, span, ack.as_deref()).await?;
            loop {
                let Some(server) = self.shared.pick(&tried) else {
                    complete = false;
                    break 'frames;
                };
                let node = &self.shared.nodes[server];
                let sending = node.start_sending();
                let delivered = self.shared.deliver(node, &frame, ack.as_deref()).await;
                drop(sending);
                match delivered {
                    Ok(()) => {
                        done[index] = true;
                        tracing::debug!(server = %node.label, chunk_id = %id, frame = index,
                            frames = count, records = span.records, "frame forwarded");
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(server = %node.label, chunk_id = %id, frame = index,
                            error = %e, "frame not delivered; trying the next server");
                        if span.oversized && e.is_refusal() {
                            refused_oversized = Some(span.range.len());
                        }
                        failures.push(format!("{}: {e}", node.label));
                        node.failed(e.to_string(), &self.shared.recovered);
                        tried[server] = true;
                    }
                }
            }
        }
        if complete {
            tracing::debug!(chunk_id = %id, records = chunk.meta.records, frames = count,
                "chunk forwarded");
            return Ok(());
        }
        let acked = done.iter().filter(|d| **d).count();
        self.shared.keep_progress(id, done);
        if let Some(size) = refused_oversized {
            return Err(OutputError::Unrecoverable(format!(
                "an entry of {size} bytes is larger than max_frame_size ({}) and the server refused it ({}); {acked} of {count} frames were delivered",
                s.max_frame_size,
                failures.join("; ")
            )));
        }
        let detail = if failures.is_empty() {
            self.shared
                .nodes
                .iter()
                .map(|n| {
                    format!(
                        "{} down: {}",
                        n.label,
                        n.down_reason().unwrap_or_else(|| "unavailable".into())
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        } else {
            failures.join("; ")
        };
        let progress = if count > 1 {
            format!("; {acked} of {count} frames delivered")
        } else {
            String::new()
        };
        Err(OutputError::Retryable(format!(
            "no nodes are available ({detail}){progress}"
        )))
    }

    /// The chunk's frames (see [`frames`]).
    fn plan(&self, chunk: &Chunk) -> Result<Vec<FrameSpan>, OutputError> {
        let s = &self.shared.settings;
        // Header and options of the largest frame: the size field is fixed-width and every
        // frame id has the chunk id's length.
        let placeholder = chunk.meta.id.to_base64();
        let overhead = encode_packed_forward(
            &chunk.meta.tag,
            &[],
            0,
            s.require_ack_response.then_some(placeholder.as_bytes()),
            s.compress,
        )
        .map(|p| p.header.len() + p.trailer.len())
        .map_err(|e| OutputError::Unrecoverable(e.to_string()))?;
        let budget = entries_budget(s.max_frame_size, overhead, s.compress);
        // Origins matter only to a receiver that acknowledges (and so dedups) by id.
        if chunk.segments.is_empty() || !s.require_ack_response {
            plan_frames(&chunk.entries, chunk.meta.records, budget)
        } else {
            plan_frames_with_origins(&chunk.entries, &chunk.segments, budget)
        }
        .map_err(|e| OutputError::Unrecoverable(format!("malformed chunk entries: {e}")))
    }

    /// Frame one span of the chunk: its entries as the buffer holds them (gzipped for
    /// `compress gzip`), with `chunk: ack` in the options when an ack is required.
    async fn frame(
        &self,
        chunk: &Chunk,
        span: &FrameSpan,
        ack: Option<&str>,
    ) -> Result<Frame, OutputError> {
        let compress = self.shared.settings.compress;
        let raw = chunk.entries.slice(span.range.clone());
        let entries = match compress {
            Compression::Text => raw,
            Compression::Gzip => tokio::task::spawn_blocking(move || gzip_entries(&raw))
                .await
                .map_err(|e| OutputError::Retryable(format!("gzip task failed: {e}")))?
                .map_err(|e| OutputError::io("gzip chunk", e))?,
        };
        let parts = encode_packed_forward_with_origins(
            &chunk.meta.tag,
            &entries,
            span.records,
            ack.map(str::as_bytes),
            compress,
            &span.segments,
        )
        .map_err(|e| OutputError::Unrecoverable(e.to_string()))?;
        Ok(Frame { parts, entries })
    }
}

impl Shared {
    /// Which of the chunk's `count` frames an earlier attempt delivered (all false when none
    /// or when the split changed).
    fn take_progress(&self, id: ChunkId, count: usize) -> Vec<bool> {
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        match progress.remove(&id) {
            Some(done) if done.len() == count => done,
            _ => vec![false; count],
        }
    }

    /// Remember a split chunk's acknowledged frames for the next attempt.
    fn keep_progress(&self, id: ChunkId, done: Vec<bool>) {
        if done.len() < 2 || !done.iter().any(|d| *d) {
            return;
        }
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        if progress.len() >= PROGRESS_REMEMBERED {
            progress.clear();
        }
        progress.insert(id, done);
    }

    /// The next server to try: the balancer's pick among eligible servers, counting servers
    /// already tried for this chunk as unavailable.
    fn pick(&self, tried: &[bool]) -> Option<usize> {
        if self.settings.heartbeat_type == HeartbeatType::None {
            for n in &self.nodes {
                n.tick(&self.recovered);
            }
        }
        let candidates: Vec<Candidate> = self
            .nodes
            .iter()
            .zip(tried)
            .map(|(n, &t)| Candidate {
                weight: n.config.weight,
                standby: n.config.standby,
                available: !t && n.available(),
                in_flight: n.in_flight(),
            })
            .collect();
        let mut balancer = self.balancer.lock().unwrap_or_else(|e| e.into_inner());
        balancer.order(&candidates).first().copied()
    }

    async fn address(&self, node: &ServerNode) -> Result<SocketAddr, SendError> {
        node.address(
            self.settings.expire_dns_cache,
            self.settings.dns_round_robin,
        )
        .await
        .map_err(|source| SendError::Resolve {
            host: node.config.host.clone(),
            source,
        })
    }

    /// A new connection to `node`, with TLS and handshake.
    async fn open(&self, node: &ServerNode) -> Result<Connection, SendError> {
        let addr = self.address(node).await?;
        let c = &node.config;
        self.connector
            .connect(&ConnectTarget {
                host: &c.host,
                addr,
                shared_key: c.shared_key.as_deref(),
                username: c.username.as_deref().unwrap_or(""),
                password: c.password.as_deref().unwrap_or(""),
            })
            .await
    }

    /// Send one frame to one server. A kept-alive connection that fails is replaced by a new
    /// one once before the server is blamed (the server may simply have closed it).
    async fn deliver(
        &self,
        node: &ServerNode,
        frame: &Frame,
        ack: Option<&str>,
    ) -> Result<(), SendError> {
        let s = &self.settings;
        if s.keepalive {
            if let Some(mut conn) = node.take_idle(s.keepalive_timeout) {
                match conn
                    .send(frame, ack, s.send_timeout, s.ack_response_timeout)
                    .await
                {
                    Ok(()) => {
                        node.put_idle(conn);
                        return Ok(());
                    }
                    Err(SendError::AckTimeout { secs }) => {
                        return Err(SendError::AckTimeout { secs });
                    }
                    Err(e) => tracing::debug!(server = %node.label, error = %e,
                        "kept-alive connection failed; reconnecting"),
                }
            }
        }
        let mut conn = self.open(node).await?;
        conn.send(frame, ack, s.send_timeout, s.ack_response_timeout)
            .await?;
        if s.keepalive && conn.keepalive_allowed() {
            node.put_idle(conn);
        } else {
            conn.close().await;
        }
        Ok(())
    }
}

/// Probe one server every `heartbeat_interval` until `stop`.
async fn heartbeat_loop(shared: Arc<Shared>, index: usize, stop: CancellationToken) {
    let node = &shared.nodes[index];
    let interval = shared
        .settings
        .heartbeat_interval
        .max(Duration::from_millis(10));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut udp: Option<UdpSocket> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let probe = async {
            match shared.settings.heartbeat_type {
                HeartbeatType::Transport => transport_heartbeat(&shared, node).await,
                HeartbeatType::Udp => udp_heartbeat(&shared, node, &mut udp, interval).await,
                HeartbeatType::None => Ok(true),
            }
        };
        let outcome = tokio::select! {
            _ = stop.cancelled() => return,
            r = probe => r,
        };
        match outcome {
            Ok(true) => node.heartbeat_ok(&shared.recovered),
            Ok(false) => node.heartbeat_missed(),
            Err(e) => {
                tracing::debug!(server = %node.label, error = %e, "heartbeat failed");
                node.failed(format!("heartbeat failed: {e}"), &shared.recovered);
            }
        }
        node.tick(&shared.recovered);
    }
}

/// `heartbeat_type transport`: open a connection (TLS and `<security>` handshake included, so a
/// server that refuses our key stays down) and close it.
async fn transport_heartbeat(shared: &Shared, node: &ServerNode) -> Result<bool, SendError> {
    let conn = shared.open(node).await?;
    conn.close().await;
    Ok(true)
}

/// `heartbeat_type udp`: send `0x00` to the server's port and wait up to one interval for
/// any reply. `Ok(false)`: no reply (a lost datagram is not a failure by itself).
async fn udp_heartbeat(
    shared: &Shared,
    node: &ServerNode,
    socket: &mut Option<UdpSocket>,
    wait: Duration,
) -> Result<bool, SendError> {
    let addr = shared.address(node).await?;
    let io = |what: &'static str| move |source| SendError::Io { what, source };
    if socket.as_ref().and_then(|s| s.peer_addr().ok()) != Some(addr) {
        let bind: SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        };
        let s = UdpSocket::bind(bind)
            .await
            .map_err(io("binding the heartbeat socket"))?;
        s.connect(addr)
            .await
            .map_err(io("connecting the heartbeat socket"))?;
        *socket = Some(s);
    }
    let s = socket.as_ref().expect("set above");
    s.send(&[0u8])
        .await
        .map_err(io("sending a UDP heartbeat"))?;
    let mut reply = [0u8; 128];
    match tokio::time::timeout(wait, s.recv(&mut reply)).await {
        Ok(Ok(_)) => Ok(true),
        Ok(Err(e)) => {
            *socket = None;
            Err(SendError::Io {
                what: "receiving a UDP heartbeat",
                source: e,
            })
        }
        Err(_) => Ok(false),
    }
}

#[cfg(test)]
mod tests;
