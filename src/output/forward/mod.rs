//! out_forward: sends chunks to `<server>`s over the Forward protocol, with primary/standby
//! failover, heartbeats and acknowledgements.
//!
//! Owns the send path of one `<match> @type forward`: each chunk goes out as one PackedForward
//! (or CompressedPackedForward) frame with the options `{size, chunk}` — the chunk id is the
//! buffer's, so a retransmission carries the same id — to the server [`balance`] picks; on a
//! failed connect, send, handshake, ack timeout, EOF or mismatched ack that server is marked
//! down and the chunk goes to the next eligible one within the same [`ForwardOutput::write`]
//! (a dead primary promotes the standby at once). Only when no server took the chunk does
//! `write` fail, and the output driver backs off. Heartbeat tasks ([`node`] holds the health
//! state machine, [`phi`] the detector) bring servers back and wake the driver through
//! [`ForwardOutput::recovered`].
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
pub mod node;
pub mod phi;

use super::OutputError;
use crate::buffer::Chunk;
use crate::config::Compression;
use crate::forward::{encode_packed_forward, gzip_entries};
use balance::{Balancer, Candidate};
use config::{ForwardOutputConfig, HeartbeatType, Transport};
use connection::{ConnectTarget, Connection, Connector, Frame, SendError};
use node::{HealthParams, ServerNode};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, DropGuard};

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
}

struct Shared {
    nodes: Vec<ServerNode>,
    balancer: Mutex<Balancer>,
    connector: Connector,
    settings: SendSettings,
    /// Notified whenever a server comes back.
    recovered: Notify,
}

/// `<match> @type forward`. Built inside a tokio runtime: it starts one heartbeat task per
/// server, stopped when the output is dropped.
pub struct ForwardOutput {
    shared: Arc<Shared>,
    _stop_heartbeats: DropGuard,
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
        let params = HealthParams {
            heartbeat_type: cfg.heartbeat_type,
            heartbeat_interval: cfg.heartbeat_interval,
            recover_wait: cfg.recover_wait,
            hard_timeout: cfg.hard_timeout,
            phi_failure_detector: cfg.phi_failure_detector,
            phi_threshold: cfg.phi_threshold,
        };
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
                heartbeat_type: cfg.heartbeat_type,
                heartbeat_interval: cfg.heartbeat_interval,
                verify_connection_at_startup: cfg.verify_connection_at_startup,
            },
            recovered: Notify::new(),
        });
        let stop = CancellationToken::new();
        if cfg.heartbeat_type != HeartbeatType::None {
            for index in 0..shared.nodes.len() {
                runtime.spawn(heartbeat_loop(shared.clone(), index, stop.clone()));
            }
        }
        for n in &shared.nodes {
            tracing::info!(server = %n.label, host = %n.config.host, port = n.config.port,
                weight = n.config.weight, standby = n.config.standby,
                require_ack_response = cfg.require_ack_response, "out_forward server configured");
        }
        Ok(ForwardOutput {
            shared,
            _stop_heartbeats: stop.drop_guard(),
        })
    }

    /// With `verify_connection_at_startup`, connect to every server (with TLS and handshake)
    /// and fail if one cannot be reached, as Fluentd does. Otherwise nothing.
    pub async fn start(&self) -> Result<(), OutputError> {
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

    /// Notified each time a server becomes available again (so queued chunks need not wait
    /// out a long backoff).
    pub fn recovered(&self) -> &Notify {
        &self.shared.recovered
    }

    /// Whether each server is available now, in configuration order (for tests and status).
    pub fn availability(&self) -> Vec<bool> {
        self.shared.nodes.iter().map(|n| n.available()).collect()
    }

    /// Deliver one chunk to one server: `Ok` once it acknowledged the chunk (or, without
    /// `require_ack_response`, once it was written). Tries the servers in balancer order,
    /// re-evaluating after each failure so that a standby replaces a failed primary at once.
    pub async fn write(&self, chunk: &Chunk) -> Result<(), OutputError> {
        // The buffer's chunk id, unchanged on every (re)transmission.
        let ack = self
            .shared
            .settings
            .require_ack_response
            .then(|| chunk.meta.id.to_base64());
        let frame = self.frame(chunk, ack.as_deref()).await?;
        let mut tried = vec![false; self.shared.nodes.len()];
        let mut failures = Vec::new();
        while let Some(index) = self.shared.pick(&tried) {
            tried[index] = true;
            let node = &self.shared.nodes[index];
            let sending = node.start_sending();
            let delivered = self.shared.deliver(node, &frame, ack.as_deref()).await;
            drop(sending);
            match delivered {
                Ok(()) => {
                    tracing::debug!(server = %node.label, chunk_id = %chunk.meta.id,
                        records = chunk.meta.records, "chunk forwarded");
                    return Ok(());
                }
                Err(e) => {
                    tracing::debug!(server = %node.label, chunk_id = %chunk.meta.id,
                        error = %e, "chunk not delivered; trying the next server");
                    failures.push(format!("{}: {e}", node.label));
                    node.failed(e.to_string(), &self.shared.recovered);
                }
            }
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
        Err(OutputError::Retryable(format!(
            "no nodes are available ({detail})"
        )))
    }

    /// Frame the chunk: the entries as the buffer holds them (gzipped for `compress gzip`),
    /// with `chunk: ack` in the options when an ack is required.
    async fn frame(&self, chunk: &Chunk, ack: Option<&str>) -> Result<Frame, OutputError> {
        let compress = self.shared.settings.compress;
        let entries = match compress {
            Compression::Text => chunk.entries.clone(),
            Compression::Gzip => {
                let raw = chunk.entries.clone();
                tokio::task::spawn_blocking(move || gzip_entries(&raw))
                    .await
                    .map_err(|e| OutputError::Retryable(format!("gzip task failed: {e}")))?
                    .map_err(|e| OutputError::io("gzip chunk", e))?
            }
        };
        let count = u32::try_from(chunk.meta.records).unwrap_or(u32::MAX);
        let parts = encode_packed_forward(
            &chunk.meta.tag,
            &entries,
            count,
            ack.map(str::as_bytes),
            compress,
        )
        .map_err(|e| OutputError::Unrecoverable(e.to_string()))?;
        Ok(Frame { parts, entries })
    }
}

impl Shared {
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
