//! Writing acks on one connection: `{"ack": chunk}` for each frame, in frame order, once its
//! emit returned `Ok`.
//!
//! Owns waiting for each frame's commit, releasing its share of the in-flight budget after the
//! ack, and closing the connection when a commit fails (so the sender retries). It must never
//! ack a frame whose emit failed or has not returned, nor ack out of order.

use super::Shared;
use crate::forward::encode_ack;
use crate::input::budget::Held;
use crate::pipeline::EmitError;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What the ack writer waits for, in frame order.
pub(super) enum Pending {
    /// An emit running in its own task; ack `chunk` once it returns Ok.
    Emitting {
        commit: JoinHandle<Result<(), EmitError>>,
        chunk: Option<Bytes>,
        tag: String,
        count: u32,
        /// The frame's share of the in-flight budget, released once it is acked.
        hold: Held,
    },
    /// Nothing to commit (every event was dropped as invalid): ack right away.
    Nothing { chunk: Option<Bytes> },
}

pub(super) async fn write_acks<W>(
    shared: Arc<Shared>,
    mut writer: W,
    mut rx: mpsc::Receiver<Pending>,
    stop: CancellationToken,
    peer: SocketAddr,
    outstanding: Arc<AtomicUsize>,
) where
    W: AsyncWrite + Unpin,
{
    while let Some(pending) = rx.recv().await {
        // Counted as outstanding until this iteration ends (ack written, or the loop left).
        struct Done<'a>(&'a AtomicUsize);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _done = Done(&outstanding);
        let mut _hold = Held::default();
        let chunk = match pending {
            Pending::Nothing { chunk } => chunk,
            Pending::Emitting {
                commit,
                chunk,
                tag,
                count,
                hold,
            } => match commit.await {
                Ok(Ok(())) => {
                    _hold = hold;
                    chunk
                }
                Ok(Err(error)) => {
                    if let Some(held_back) = shared.emit_failed.check() {
                        tracing::warn!(%peer, %tag, count, %error,
                            occurrences_since_last_warning = held_back + 1,
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
