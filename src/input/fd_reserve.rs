//! A spare file descriptor kept by an HTTP server so it can still answer when the process runs
//! out of them: on `EMFILE`, release the spare, accept one waiting connection, answer it
//! `503 Service Unavailable` with the reason, close it, and take the spare again.
//!
//! Owns only that dance. Must not serve requests: the connection is answered before its request
//! is read (the request is drained briefly so closing does not reset the answer away).

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long one refused connection may take (answer, drain, close).
const ANSWER_TIMEOUT: Duration = Duration::from_millis(200);

/// The HTTP answer given while file descriptors are exhausted.
pub const OUT_OF_FDS_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 74\r\n\
Retry-After: 1\r\n\
Connection: close\r\n\
\r\n\
lograft: out of file descriptors (too many open connections), retry later\n";

/// One reserved descriptor (an open `/dev/null`).
#[derive(Debug)]
pub struct FdReserve {
    spare: Option<std::fs::File>,
}

impl FdReserve {
    pub fn new() -> Self {
        FdReserve {
            spare: open_spare(),
        }
    }

    /// True while the spare is held.
    #[cfg(test)]
    pub fn is_held(&self) -> bool {
        self.spare.is_some()
    }

    /// After accept failed for lack of descriptors: use the spare to accept one waiting
    /// connection and answer it `response`. Returns the peer answered, if any.
    pub async fn answer_one(
        &mut self,
        listener: &TcpListener,
        response: &[u8],
    ) -> Option<SocketAddr> {
        if self.spare.is_none() {
            self.spare = open_spare();
            return None;
        }
        drop(self.spare.take());
        let accepted = tokio::time::timeout(ANSWER_TIMEOUT, listener.accept()).await;
        let peer = match accepted {
            Ok(Ok((stream, peer))) => {
                let _ =
                    tokio::time::timeout(ANSWER_TIMEOUT, answer_and_close(stream, response)).await;
                Some(peer)
            }
            _ => None,
        };
        self.spare = open_spare();
        peer
    }
}

impl Default for FdReserve {
    fn default() -> Self {
        FdReserve::new()
    }
}

/// Opening `/dev/null` does not block; it only needs a free descriptor.
fn open_spare() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

async fn answer_and_close(mut stream: TcpStream, response: &[u8]) {
    if stream.write_all(response).await.is_err() {
        return;
    }
    let _ = stream.shutdown().await;
    // Drain what the client sent, so closing sends FIN rather than a reset.
    let mut sink = [0u8; 4096];
    while let Ok(n) = stream.read(&mut sink).await {
        if n == 0 {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_length_matches_its_body() {
        let text = std::str::from_utf8(OUT_OF_FDS_RESPONSE).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }

    #[tokio::test]
    async fn answers_a_waiting_connection_and_takes_the_spare_again() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"POST /t HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
                .await
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        });
        let mut reserve = FdReserve::new();
        assert!(reserve.is_held());
        let mut peer = None;
        for _ in 0..20 {
            peer = reserve.answer_one(&listener, OUT_OF_FDS_RESPONSE).await;
            if peer.is_some() {
                break;
            }
        }
        assert!(peer.is_some());
        assert!(reserve.is_held());
        let out = client.await.unwrap();
        assert!(out.starts_with("HTTP/1.1 503 Service Unavailable"), "{out}");
        assert!(out.ends_with("retry later\n"), "{out}");
    }
}
