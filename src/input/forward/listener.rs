//! The listener: accepting TCP connections and answering UDP heartbeats on the same port.
//!
//! Owns the accept loop: the `max_connections` limit (connections over it are closed at once,
//! with a rate-limited warning), backing off when accept fails (file descriptors exhausted)
//! while open connections keep being served, the periodic flush of held-back warnings, and the
//! graceful stop (wait for every connection to finish its acks). It must not read frames or
//! write acks (that is `connection` and below).

use super::connection::handle_connection;
use super::{ForwardInput, Shared, MAX_ACCEPT_BACKOFF};
use crate::fd_limit::is_fd_exhaustion;
use crate::log_limit::WARN_INTERVAL;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpStream, UdpSocket};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

impl ForwardInput {
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
    if let Some(held_back) = shared.note_over_limit() {
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
