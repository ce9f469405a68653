//! out_forward's connections: opening one to a server (TCP, optional TLS, the client side of
//! the `<security>` handshake), writing a framed chunk and waiting for its ack.
//!
//! Owns the socket-level work and its timeouts (`connect_timeout`, `send_timeout`,
//! `ack_response_timeout`) and says precisely what went wrong ([`SendError`]). A frame is
//! written as header, entries and trailer in vectored writes, without copying the entries. It
//! must not decide what a failure means for the server's health or where to retry: the output
//! does that.

use crate::forward::{
    decode_ack, take_message, ClientHandshake, EncodedFrameParts, ForwardError, HandshakeError,
    Helo, MAX_CONTROL_MESSAGE_SIZE,
};
use bytes::{Buf, Bytes, BytesMut};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

/// Why a chunk (or a heartbeat) could not go through one server.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connect to {addr} failed: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("connect to {addr} timed out after {secs:.1}s")]
    ConnectTimeout { addr: SocketAddr, secs: f64 },
    #[error("TLS handshake with {addr} failed: {source}")]
    Tls {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid TLS server name {0:?}")]
    TlsName(String),
    #[error("handshake refused: {0}")]
    Handshake(HandshakeError),
    #[error("the server asks for a <security> handshake (it sent HELO) but this out_forward has no <security> section")]
    UnexpectedHelo,
    #[error("connection closed by the server during {0}")]
    Eof(&'static str),
    #[error("{what} failed: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} timed out after {secs:.1}s")]
    Timeout { what: &'static str, secs: f64 },
    #[error("no response from node: no ack within ack_response_timeout ({secs:.1}s)")]
    AckTimeout { secs: f64 },
    #[error("invalid ack: {0}")]
    BadAck(ForwardError),
    #[error("ack does not match the chunk: expected {expected:?}, got {got:?}")]
    AckMismatch { expected: String, got: String },
}

impl SendError {
    /// The server was reached and then dropped the frame: it closed or reset the connection
    /// while the frame was written or its ack awaited (what a receiver does with a message
    /// larger than it accepts).
    pub fn is_refusal(&self) -> bool {
        matches!(self, SendError::Eof(_) | SendError::Io { .. })
    }
}

/// A byte stream to a server: plain TCP or TLS.
pub trait ForwardStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ForwardStream for T {}

/// What a connection needs to know about its server.
pub struct ConnectTarget<'a> {
    pub host: &'a str,
    pub addr: SocketAddr,
    /// Per-`<server>` credentials override `<security> shared_key`.
    pub shared_key: Option<&'a str>,
    pub username: &'a str,
    pub password: &'a str,
}

/// How to open connections (one per output, shared by all servers).
#[derive(Clone)]
pub struct Connector {
    pub connect_timeout: Duration,
    /// Time allowed for the TLS and `<security>` handshakes.
    pub handshake_timeout: Duration,
    pub tls: Option<TlsConnector>,
    /// `<security>`: (self_hostname, shared_key).
    pub security: Option<(String, String)>,
}

impl Connector {
    /// Connect, then TLS, then the `<security>` handshake, each within its timeout.
    pub async fn connect(&self, target: &ConnectTarget<'_>) -> Result<Connection, SendError> {
        let addr = target.addr;
        let tcp = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err(SendError::Connect { addr, source }),
            Err(_) => {
                return Err(SendError::ConnectTimeout {
                    addr,
                    secs: self.connect_timeout.as_secs_f64(),
                })
            }
        };
        let _ = tcp.set_nodelay(true);
        let handshake_deadline = tokio::time::Instant::now() + self.handshake_timeout;
        let stream: Box<dyn ForwardStream> = match &self.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let name = ServerName::try_from(target.host.to_string())
                    .map_err(|_| SendError::TlsName(target.host.to_string()))?;
                match tokio::time::timeout_at(handshake_deadline, tls.connect(name, tcp)).await {
                    Ok(Ok(s)) => Box::new(s),
                    Ok(Err(source)) => return Err(SendError::Tls { addr, source }),
                    Err(_) => {
                        return Err(SendError::Timeout {
                            what: "TLS handshake",
                            secs: self.handshake_timeout.as_secs_f64(),
                        })
                    }
                }
            }
        };
        let mut conn = Connection {
            stream,
            read_buf: BytesMut::with_capacity(256),
            keepalive_allowed: true,
            last_used: Instant::now(),
        };
        if let Some((self_hostname, shared_key)) = &self.security {
            let key = target.shared_key.unwrap_or(shared_key);
            let mut hs = ClientHandshake::new(self_hostname, key, target.username, target.password);
            match tokio::time::timeout_at(handshake_deadline, conn.handshake(&mut hs)).await {
                Ok(Ok(keepalive)) => conn.keepalive_allowed = keepalive,
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(SendError::Timeout {
                        what: "<security> handshake",
                        secs: self.handshake_timeout.as_secs_f64(),
                    })
                }
            }
        }
        Ok(conn)
    }
}

/// A framed chunk ready to write: header ‖ entries ‖ trailer.
#[derive(Debug, Clone)]
pub struct Frame {
    pub parts: EncodedFrameParts,
    /// The chunk's entries (gzip when compressed), shared with the buffer's chunk.
    pub entries: Bytes,
}

/// An open connection to one server.
pub struct Connection {
    stream: Box<dyn ForwardStream>,
    read_buf: BytesMut,
    /// False when the server's HELO said `keepalive: false`.
    keepalive_allowed: bool,
    last_used: Instant,
}

impl Connection {
    pub fn keepalive_allowed(&self) -> bool {
        self.keepalive_allowed
    }

    pub fn idle_for(&self) -> Duration {
        self.last_used.elapsed()
    }

    /// Read one msgpack message (handshake or ack); `what` names it in errors.
    async fn read_message(&mut self, what: &'static str) -> Result<Bytes, SendError> {
        loop {
            match take_message(&mut self.read_buf, MAX_CONTROL_MESSAGE_SIZE) {
                Ok(Some(m)) => return Ok(m),
                Ok(None) => {}
                Err(e) if what == "ack" => return Err(SendError::BadAck(e)),
                Err(e) => {
                    return Err(SendError::Handshake(HandshakeError::Malformed(
                        what,
                        e.to_string(),
                    )))
                }
            }
            let n = self
                .stream
                .read_buf(&mut self.read_buf)
                .await
                .map_err(|source| SendError::Io {
                    what: "reading from the server",
                    source,
                })?;
            if n == 0 {
                return Err(SendError::Eof(what));
            }
        }
    }

    /// HELO → PING → PONG; returns whether the server allows keepalive.
    async fn handshake(&mut self, hs: &mut ClientHandshake) -> Result<bool, SendError> {
        let helo = self.read_message("HELO").await?;
        let (helo, ping) = hs.ping(&helo).map_err(SendError::Handshake)?;
        self.write_all(&ping, "writing PING").await?;
        let pong = self.read_message("PONG").await?;
        hs.check_pong(&pong).map_err(SendError::Handshake)?;
        Ok(helo.keepalive)
    }

    async fn write_all(&mut self, bytes: &[u8], what: &'static str) -> Result<(), SendError> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|source| SendError::Io { what, source })?;
        self.stream
            .flush()
            .await
            .map_err(|source| SendError::Io { what, source })
    }

    /// Write the frame within `send_timeout`; then, when `ack` is given, wait up to
    /// `ack_timeout` for `{"ack": ack}`.
    pub async fn send(
        &mut self,
        frame: &Frame,
        ack: Option<&str>,
        send_timeout: Duration,
        ack_timeout: Duration,
    ) -> Result<(), SendError> {
        let mut bufs = frame
            .parts
            .header
            .clone()
            .chain(frame.entries.clone())
            .chain(frame.parts.trailer.clone());
        let write = async {
            self.stream.write_all_buf(&mut bufs).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(send_timeout, write).await {
            Ok(Ok(())) => {}
            Ok(Err(source)) => {
                return Err(SendError::Io {
                    what: "sending the chunk",
                    source,
                })
            }
            Err(_) => {
                return Err(SendError::Timeout {
                    what: "sending the chunk (send_timeout)",
                    secs: send_timeout.as_secs_f64(),
                })
            }
        }
        if let Some(expected) = ack {
            match tokio::time::timeout(ack_timeout, self.read_ack(expected)).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(SendError::AckTimeout {
                        secs: ack_timeout.as_secs_f64(),
                    })
                }
            }
        }
        self.last_used = Instant::now();
        Ok(())
    }

    async fn read_ack(&mut self, expected: &str) -> Result<(), SendError> {
        let msg = self.read_message("ack").await?;
        if Helo::parse(&msg).is_ok() {
            return Err(SendError::UnexpectedHelo);
        }
        let mut one = BytesMut::from(&msg[..]);
        let got = match decode_ack(&mut one) {
            Ok(Some(v)) => v,
            Ok(None) => {
                return Err(SendError::BadAck(ForwardError::BadAck(
                    "truncated ack".into(),
                )))
            }
            Err(e) => return Err(SendError::BadAck(e)),
        };
        if got.as_ref() != expected.as_bytes() {
            return Err(SendError::AckMismatch {
                expected: expected.to_string(),
                got: String::from_utf8_lossy(&got).into_owned(),
            });
        }
        Ok(())
    }

    /// Close politely (TLS close_notify, FIN), giving up after a second.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.stream.shutdown()).await;
    }
}

/// Build a TLS connector from a rustls client config.
pub fn tls_connector(config: Arc<tokio_rustls::rustls::ClientConfig>) -> TlsConnector {
    TlsConnector::from(config)
}
