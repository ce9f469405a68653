//! One accepted connection: its setup and the pair of tasks that serve it.
//!
//! Owns the TLS accept and the `<security>` handshake (both under a timeout), the facts about
//! the peer added to records (address, cached reverse-DNS hostname), and running the frame
//! reader and the ack writer side by side over a bounded channel of [`MAX_IN_FLIGHT`] frames.
//! It must not decode frames, emit, or ack itself (that is `reader` and `acks`).

use super::acks::{write_acks, Pending};
use super::handshake::server_handshake;
use super::reader::{read_frames, Connection, PeerInfo};
use super::{Shared, HANDSHAKE_TIMEOUT, HOSTNAME_CACHE_TTL, IDLE_READ, MAX_IN_FLIGHT};
use crate::input::budget::ConnectionBudget;
use bytes::BytesMut;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub(super) async fn handle_connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    budget: ConnectionBudget,
    shutdown: CancellationToken,
) {
    let _open = shared.metrics.connection();
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
                    if let Some(held_back) = shared.note_bad_input() {
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
            if let Some(held_back) = shared.note_handshake_refused() {
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
