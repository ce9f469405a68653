//! TLS streams for tonic on the cluster port: the server side ([`incoming`]: accept, handshake
//! with the current server config, hand tonic a stream whose connect info is the verified
//! [`Caller`]) and the client side ([`connector`]: dial, handshake with the current client
//! config, checking the server certificate names the node dialed).
//!
//! Owns only moving bytes through rustls. It must not decide who may call what (that is
//! [`super::Gate`]).

use super::{node_name, Caller, ClusterTls};
use crate::cluster::NodeId;
use crate::log_limit::WarnLimiter;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{server, TlsAcceptor, TlsConnector};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;
use tonic::transport::Uri;
use tracing::{debug, warn};

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The name an admin client asks for: it accepts any node certificate of the cluster.
const ADMIN_SERVER_NAME: &str = "node.lograft";

/// One accepted TLS connection and its verified client certificate.
pub(crate) struct TlsConn {
    stream: server::TlsStream<TcpStream>,
    caller: Caller,
}

impl Connected for TlsConn {
    type ConnectInfo = Caller;

    fn connect_info(&self) -> Caller {
        self.caller.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Accept connections on `listener` until `stop`, each completing a mutual-TLS handshake (in
/// its own task, bounded by [`HANDSHAKE_TIMEOUT`]) before tonic sees it. Plaintext and
/// clients without a certificate of the cluster CA are dropped at the handshake.
pub(crate) fn incoming(
    listener: TcpListener,
    tls: Arc<ClusterTls>,
    stop: CancellationToken,
) -> ReceiverStream<Result<TlsConn, io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = stop.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    debug!(%error, "cluster port: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (tls, tx) = (tls.clone(), tx.clone());
            tokio::spawn(async move {
                let acceptor = TlsAcceptor::from(tls.current().await.server.clone());
                let stream =
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(error)) => return refused(&peer.to_string(), &error.to_string()),
                        Err(_) => return refused(&peer.to_string(), "handshake timed out"),
                    };
                let cert = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .map(|c| c.clone().into_owned());
                let Some(cert) = cert else {
                    return refused(&peer.to_string(), "no client certificate");
                };
                let conn = TlsConn {
                    stream,
                    caller: Caller::new(cert),
                };
                let _ = tx.send(Ok(conn)).await;
            });
        }
    });
    ReceiverStream::new(rx)
}

fn refused(peer: &str, reason: &str) {
    static REFUSED: LazyLock<WarnLimiter> =
        LazyLock::new(|| WarnLimiter::new(Duration::from_secs(60)));
    if let Some(others) = REFUSED.check() {
        warn!(%peer, %reason, refused_since_last_line = others,
            "cluster port: connection refused at the TLS handshake");
    }
}

/// Whom a client connection is for: a peer (its certificate must name it) or any node.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Dial {
    Peer(NodeId),
    Admin,
}

/// A tonic connector that dials `host:port` of the URI and completes a mutual-TLS handshake
/// with the current client config of `tls`.
pub(crate) fn connector(
    tls: Arc<ClusterTls>,
    dial: Dial,
) -> impl tower::Service<
    Uri,
    Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>,
    Error = io::Error,
    Future = impl std::future::Future<
        Output = io::Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>,
    > + Send,
> + Clone
       + Send
       + 'static {
    tower::service_fn(move |uri: Uri| {
        let tls = tls.clone();
        async move {
            let host = uri
                .host()
                .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host"))?;
            let port = uri.port_u16().unwrap_or(7100);
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let loaded = tls.current().await;
            let (config, name) = match dial {
                Dial::Peer(id) => (loaded.peer.clone(), node_name(id)),
                Dial::Admin => (loaded.admin.clone(), ADMIN_SERVER_NAME.to_string()),
            };
            let name = ServerName::try_from(name)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let stream = TlsConnector::from(config).connect(name, tcp).await?;
            Ok(TokioIo::new(stream))
        }
    })
}
