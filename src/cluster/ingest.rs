//! Cluster ingest: the [`Emit`] of an aggregator in a cluster. Each batch an input accepted
//! becomes one `AppendChunk` entry in the Raft log; the input acknowledges only after that
//! entry is committed on a majority and applied (so it is on disk on a majority of nodes).
//!
//! Owns the mapping of proposal outcomes to [`EmitError`]s and the rate-limited "cluster
//! unavailable" warning (one line per interval, not one per chunk). It must not store data
//! itself nor talk to peers directly: `server::propose` does both.

use super::server::{self, NodeShared, ProposeError};
use super::{ClusterRequest, ClusterResponse};
use crate::event::EventBatch;
use crate::input::{BoxFuture, Emit, EmitError};
use crate::log_limit::WarnLimiter;
use crate::router::TagRoutes;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Largest chunk the cluster takes as one log entry (it travels in one gRPC message).
pub const MAX_CHUNK_BYTES: usize = 16 * 1024 * 1024;

/// Stores batches through the cluster's Raft log.
pub struct ClusterIngest {
    shared: Arc<NodeShared>,
    routes: Arc<TagRoutes>,
    unavailable: WarnLimiter,
}

impl ClusterIngest {
    /// `routes` decides which tags are kept (a tag no `<match>` matches is dropped with a
    /// warning, as on a single node); the uploader of the matching `<match>` uploads them.
    pub(crate) fn new(shared: Arc<NodeShared>, routes: Arc<TagRoutes>) -> Self {
        ClusterIngest {
            shared,
            routes,
            unavailable: WarnLimiter::default(),
        }
    }

    async fn store(&self, batch: EventBatch) -> Result<(), EmitError> {
        if self.routes.route_for(&batch.tag).is_none() {
            self.routes.warn_unmatched(&batch.tag, batch.count);
            return Ok(());
        }
        if batch.entries.len() > MAX_CHUNK_BYTES {
            return Err(EmitError::TooLarge(format!(
                "chunk of {} bytes; an aggregator cluster takes chunks up to {MAX_CHUNK_BYTES} bytes (lower the sender's chunk_limit_size)",
                batch.entries.len()
            )));
        }
        let received_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let request = ClusterRequest::AppendChunk {
            origin: batch.origin_chunk,
            tag: batch.tag,
            entries: batch.entries,
            count: batch.count,
            received_unix_ms,
        };
        match server::propose(&self.shared, request).await {
            Ok(ClusterResponse::Appended { .. } | ClusterResponse::Duplicate { .. }) => Ok(()),
            Ok(ClusterResponse::Rejected(reason)) => Err(EmitError::TooLarge(reason)),
            Ok(other) => Err(EmitError::Storage(format!(
                "unexpected answer to a chunk append: {other:?}"
            ))),
            Err(error) => {
                if let Some(held_back) = self.unavailable.check() {
                    tracing::warn!(
                        node_id = self.shared.id,
                        %error,
                        chunks_refused_since_last_warning = held_back + 1,
                        "cluster cannot commit chunks; not acknowledging them (senders retry or fail over)"
                    );
                }
                Err(match error {
                    ProposeError::Stopped(_) => EmitError::ShuttingDown,
                    other => EmitError::Unavailable(other.to_string()),
                })
            }
        }
    }
}

impl Emit for ClusterIngest {
    fn emit(&self, batch: EventBatch) -> BoxFuture<'_, Result<(), EmitError>> {
        Box::pin(self.store(batch))
    }
}
