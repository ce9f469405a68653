//! Cluster ingest: the [`Emit`] of an aggregator in a cluster. Each batch an input accepted
//! becomes one `AppendChunk` entry in the Raft log — or, when it is larger than one entry
//! should carry ([`MAX_ENTRY_BYTES`]), several, split on event boundaries; the input
//! acknowledges only after every entry is committed on a majority and applied (so it is on disk
//! on a majority of nodes). The parts of a split chunk carry ids derived from the chunk's id
//! and the part's position, the same on every node, so a resent chunk is stored once.
//!
//! Owns the mapping of proposal outcomes to [`EmitError`]s and the rate-limited "cluster
//! unavailable" warning (one line per interval, not one per chunk). It must not store data
//! itself nor talk to peers directly: `node::propose` does both.

use super::node::{self, NodeShared, ProposeError};
use super::{ClusterRequest, ClusterResponse};
use crate::event::{entry_runs, EventBatch};
use crate::log_limit::WarnLimiter;
use crate::observe::ClusterMetrics;
use crate::pipeline::{BoxFuture, Emit, EmitError};
use crate::router::TagRoutes;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Largest part of a chunk stored as one log entry; larger chunks become several entries.
/// openraft must replicate an entry (send, fsync on the follower, answer) within one
/// `heartbeat_interval`, and a single entry cannot be cut smaller by the network layer, so
/// entries stay at out_forward's default `max_frame_size`: a forwarder's frame is one entry.
pub const MAX_ENTRY_BYTES: usize = 4 * 1024 * 1024;

/// Stores batches through the cluster's Raft log.
pub struct ClusterIngest {
    shared: Arc<NodeShared>,
    routes: Arc<TagRoutes>,
    unavailable: WarnLimiter,
    /// Propose latency, dedup hits, failures.
    metrics: ClusterMetrics,
}

impl ClusterIngest {
    /// `routes` decides which tags are kept (a tag no `<match>` matches is dropped with a
    /// warning, as on a single node); the uploader of the matching `<match>` uploads them.
    pub(crate) fn new(shared: Arc<NodeShared>, routes: Arc<TagRoutes>) -> Self {
        ClusterIngest {
            shared,
            routes,
            unavailable: WarnLimiter::default(),
            metrics: ClusterMetrics::detached(),
        }
    }

    /// Count into the node's metrics.
    pub(crate) fn with_metrics(mut self, metrics: ClusterMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    async fn store(&self, batch: EventBatch) -> Result<(), EmitError> {
        if self.routes.route_for(&batch.tag).is_none() {
            self.routes.warn_unmatched(&batch.tag, batch.count);
            return Ok(());
        }
        let received_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        if batch.entries.len() <= MAX_ENTRY_BYTES {
            return self
                .append(
                    batch.origin_chunk,
                    batch.tag,
                    batch.entries,
                    batch.count,
                    received_unix_ms,
                )
                .await;
        }
        // Inputs validated the entries, so walking them cannot fail here.
        let parts = entry_runs(&batch.entries, MAX_ENTRY_BYTES)
            .map_err(|e| EmitError::Storage(format!("cannot split a large chunk: {e}")))?;
        let n = parts.len();
        for (i, (range, count)) in parts.into_iter().enumerate() {
            let origin = batch.origin_chunk.as_ref().map(|o| part_origin(o, i, n));
            let entries = batch.entries.slice(range);
            self.append(origin, batch.tag.clone(), entries, count, received_unix_ms)
                .await?;
        }
        Ok(())
    }

    /// Commit one `AppendChunk` entry (a whole chunk or one part of it).
    async fn append(
        &self,
        origin: Option<Bytes>,
        tag: String,
        entries: Bytes,
        count: u32,
        received_unix_ms: u64,
    ) -> Result<(), EmitError> {
        let request = ClusterRequest::AppendChunk {
            origin,
            tag,
            entries,
            count,
            received_unix_ms,
        };
        let started = std::time::Instant::now();
        let answer = node::propose(&self.shared, request).await;
        match &answer {
            Ok(ClusterResponse::Duplicate { .. }) => {
                self.metrics.dedup_hits.inc();
            }
            Err(_) => {
                self.metrics.propose_failures.inc();
            }
            Ok(_) => {}
        }
        if answer.is_ok() {
            self.metrics.propose.observe_duration(started.elapsed());
        }
        match answer {
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

/// The dedup id of part `index` of `parts` of the chunk whose id is `origin`: a SHA-256 over
/// all three (32 bytes, within the state machine's id limit), so it is the same on every node
/// and for every resend, and differs from the ids of other chunks and parts.
fn part_origin(origin: &[u8], index: usize, parts: usize) -> Bytes {
    let mut h = Sha256::new();
    h.update(b"lograft chunk part\0");
    h.update((origin.len() as u64).to_be_bytes());
    h.update(origin);
    h.update((index as u64).to_be_bytes());
    h.update((parts as u64).to_be_bytes());
    Bytes::copy_from_slice(&h.finalize())
}

impl Emit for ClusterIngest {
    fn emit(&self, batch: EventBatch) -> BoxFuture<'_, Result<(), EmitError>> {
        Box::pin(self.store(batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_ids_are_stable_distinct_and_fit_the_dedup_window() {
        let a = part_origin(b"chunk-a", 0, 3);
        assert_eq!(a, part_origin(b"chunk-a", 0, 3));
        assert_ne!(a, part_origin(b"chunk-a", 1, 3));
        assert_ne!(a, part_origin(b"chunk-a", 0, 4));
        assert_ne!(a, part_origin(b"chunk-b", 0, 3));
        assert!(a.len() <= super::super::MAX_ORIGIN_LEN);
    }
}
