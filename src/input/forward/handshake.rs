//! The server side of the Forward `<security>` handshake on one connection: HELO, PING, PONG.
//!
//! Owns only the message exchange (the checks themselves are [`crate::forward`]'s
//! `ServerHandshake`); it must not read past the PING (what follows stays in the buffer for the
//! frame reader), and the caller bounds it with a timeout and closes on failure.

use crate::forward::{take_message, ServerHandshake, ServerSecurity, MAX_CONTROL_MESSAGE_SIZE};
use bytes::BytesMut;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// HELO → PING → PONG. `Err(reason)` after sending a refusing PONG (or on I/O failure).
pub(super) async fn server_handshake<R, W>(
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
