//! Cluster ingest: the [`Emit`] of an aggregator in a cluster. Each batch an input accepted
//! becomes one `AppendChunk` entry in the Raft log — or, when it is larger than one entry
//! should carry ([`MAX_ENTRY_BYTES`]), several, split on event boundaries; the input
//! acknowledges only after every entry is committed on a majority and applied (so it is on disk
//! on a majority of nodes). The parts of a split chunk carry ids derived from the chunk's id
//! and the part's position, the same on every node, so a resent chunk is stored once.
//!
//! A batch from a lograft forwarder carries origin segments (see [`crate::origin`]): each
//! client chunk in it is committed as its own entry under the client's id, all of them
//! proposed at once, so a client chunk that reached the cluster through two forwarders (or
//! twice through one) is stored once.
//!
//! Owns the mapping of proposal outcomes to [`EmitError`]s and the rate-limited "cluster
//! unavailable" warning (one line per interval, not one per chunk). It must not store data
//! itself nor talk to peers directly: `node::propose` does both.

use super::node::{self, NodeShared, ProposeError};
use super::{ClusterRequest, ClusterResponse};
use crate::event::{entry_runs, EventBatch};
use crate::log_limit::WarnLimiter;
use crate::observe::ClusterMetrics;
use crate::origin::part_id;
use crate::pipeline::{BoxFuture, Emit, EmitError};
use crate::router::TagRoutes;
use bytes::Bytes;
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
        if batch.segments.is_empty() {
            return self
                .store_run(
                    batch.origin_chunk,
                    &batch.tag,
                    batch.entries,
                    batch.count,
                    received_unix_ms,
                )
                .await;
        }
        let mut at = 0usize;
        let runs = batch.segments.iter().map(|segment| {
            let entries = batch.entries.slice(at..at + segment.len);
            at += segment.len;
            self.store_run(
                segment.origin.clone(),
                &batch.tag,
                entries,
                segment.count,
                received_unix_ms,
            )
        });
        futures_util::future::try_join_all(runs).await?;
        Ok(())
    }

    /// Commit one run of entries with one dedup id: one entry, or several parts when it is
    /// larger than [`MAX_ENTRY_BYTES`].
    async fn store_run(
        &self,
        origin: Option<Bytes>,
        tag: &str,
        entries: Bytes,
        count: u32,
        received_unix_ms: u64,
    ) -> Result<(), EmitError> {
        if entries.len() <= MAX_ENTRY_BYTES {
            return self
                .append(origin, tag.to_string(), entries, count, received_unix_ms)
                .await;
        }
        // Inputs validated the entries, so walking them cannot fail here.
        let parts = entry_runs(&entries, MAX_ENTRY_BYTES)
            .map_err(|e| EmitError::Storage(format!("cannot split a large chunk: {e}")))?;
        let n = parts.len();
        for (i, (range, count)) in parts.into_iter().enumerate() {
            let origin = origin.as_ref().map(|o| part_id(o, i, n));
            self.append(
                origin,
                tag.to_string(),
                entries.slice(range),
                count,
                received_unix_ms,
            )
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

impl Emit for ClusterIngest {
    fn emit(&self, batch: EventBatch) -> BoxFuture<'_, Result<(), EmitError>> {
        Box::pin(self.store(batch))
    }
}
