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
//!
//! Split by concept: this file holds the shared settings and limits and binding the sockets;
//! `listener` the accept loop (connection limit, fd-exhaustion backoff) and the UDP heartbeat;
//! `connection` a connection's setup (TLS, `<security>`, peer facts) and its reader/ack-writer
//! pair; `handshake` the `<security>` HELO/PING/PONG; `reader` reading and decoding frames
//! against the in-flight budget and the idle timeout; `acks` writing acks in frame order.

pub mod config;

mod acks;
mod connection;
mod handshake;
mod listener;
mod reader;
#[cfg(test)]
mod tests;

use crate::forward::{DecoderConfig, ServerSecurity, HARD_MAX_FRAME_SIZE};
use crate::input::budget::InFlightBudget;
use crate::log_limit::WarnLimiter;
use crate::observe::handles::Rejection;
use crate::observe::InputMetrics;
use crate::pipeline::Emit;
use config::ForwardInputConfig;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpSocket, UdpSocket};
use tokio_rustls::TlsAcceptor;
// Names `tests` takes through `use super::*` that the code here no longer needs itself.
#[cfg(test)]
use crate::event::{EventBatch, EventTime};
#[cfg(test)]
use crate::forward::{take_message, MAX_CONTROL_MESSAGE_SIZE};
#[cfg(test)]
use crate::pipeline::EmitError;
#[cfg(test)]
use bytes::{Bytes, BytesMut};
#[cfg(test)]
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
#[cfg(test)]
use tokio::net::TcpStream;
#[cfg(test)]
use tokio::task::{JoinHandle, JoinSet};
#[cfg(test)]
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
    /// `<security>` handshakes refused (wrong key, unknown user): apart from `bad_input`, so a
    /// port probe's aborted TLS handshake never hides a refused key.
    handshake_refused: WarnLimiter,
    skipped_events: WarnLimiter,
    size_warn: WarnLimiter,
    over_connection_limit: WarnLimiter,
    accept_failed: WarnLimiter,
    budget_spent: WarnLimiter,
    /// Open connections and refusals (batches are counted by the node's `MeteredEmit`).
    metrics: InputMetrics,
}

impl Shared {
    /// Count an undecodable frame or failed TLS handshake; `Some` when its warning is due.
    fn note_bad_input(&self) -> Option<u64> {
        self.metrics.rejected(Rejection::BadInput);
        self.bad_input.check()
    }

    /// Count a refused `<security>` handshake; `Some` when its warning is due.
    fn note_handshake_refused(&self) -> Option<u64> {
        self.metrics.rejected(Rejection::Handshake);
        self.handshake_refused.check()
    }

    /// Count a connection closed over `max_connections`; `Some` when its warning is due.
    fn note_over_limit(&self) -> Option<u64> {
        self.metrics.rejected(Rejection::ConnectionLimit);
        self.over_connection_limit.check()
    }

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
            (&self.bad_input, "invalid input or failed TLS handshake"),
            (&self.handshake_refused, "handshake failed"),
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
                        handshake_refused: WarnLimiter::default(),
                        skipped_events: WarnLimiter::default(),
                        size_warn: WarnLimiter::default(),
                        over_connection_limit: WarnLimiter::default(),
                        accept_failed: WarnLimiter::default(),
                        budget_spent: WarnLimiter::default(),
                        metrics: InputMetrics::detached(),
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

    /// Count open connections and refusals in `metrics` (the node's handles for this input).
    pub(crate) fn with_metrics(mut self, metrics: InputMetrics) -> Self {
        Arc::get_mut(&mut self.shared)
            .expect("the input is not serving yet")
            .metrics = metrics;
        self
    }
}
