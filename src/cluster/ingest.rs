//! Cluster ingest: the [`Emit`] of an aggregator in a cluster. Each batch an input accepted
//! becomes one `AppendChunk` entry in the Raft log — or, when it is larger than one entry
//! should carry ([`MAX_ENTRY_BYTES`]), several, split on event boundaries; the input
//! acknowledges only after every entry is committed on a majority and applied (so it is on disk
//! on a majority of nodes). The parts of a split chunk carry ids derived from the chunk's id
//! and the part's position, the same on every node, so a resent chunk is stored once.
//!
//! A batch from a lograft forwarder carries origin segments (see [`crate::origin`]): it is
//! committed as one `AppendSegments` entry (or several, split between segments, when larger
//! than an entry), and the state machine leaves out each client chunk whose id it already
//! holds, so a client chunk that reached the cluster through two forwarders (or twice through
//! one) is stored once. A single segment larger than an entry is committed as the parts of a
//! plain chunk, under part ids of its own id.
//!
//! A resend whose chunk ids this node's state machine already holds is acknowledged at once
//! ([`stored_already`]); every other append goes through [`super::coalesce`], which may commit
//! it in one entry with others.
//!
//! Owns the mapping of proposal outcomes to [`EmitError`]s and the rate-limited "cluster
//! unavailable" warning (one line per interval, not one per chunk). It must not store data
//! itself nor talk to peers directly: `node::propose` does both.

use super::coalesce::Coalescer;
use super::node::{NodeShared, ProposeError};
use super::storage::ChunkReader;
use super::{ClusterRequest, ClusterResponse};
use crate::event::{entry_runs, EventBatch};
use crate::log_limit::WarnLimiter;
use crate::observe::ClusterMetrics;
use crate::origin::{part_id, Segment};
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
    /// Appends go through it: those waiting while others are in flight share a log entry.
    coalescer: Coalescer,
    routes: Arc<TagRoutes>,
    unavailable: WarnLimiter,
    /// Propose latency, dedup hits, failures.
    metrics: ClusterMetrics,
}

impl ClusterIngest {
    /// `routes` decides which tags are kept (a tag no `<match>` matches is dropped with a
    /// warning, as on a single node); the uploader of the matching `<match>` uploads them.
    pub(crate) fn new(shared: Arc<NodeShared>, routes: Arc<TagRoutes>) -> Self {
        let coalescer = Coalescer::start(shared.clone(), shared.proposals_in_flight);
        ClusterIngest {
            shared,
            coalescer,
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
        // Runs of whole segments of at most one entry each; a larger segment alone.
        let mut groups: Vec<(std::ops::Range<usize>, Vec<Segment>)> = Vec::new();
        let mut at = 0usize;
        for segment in batch.segments {
            let range = at..at + segment.len;
            at = range.end;
            match groups.last_mut() {
                Some((r, g))
                    if r.len() + segment.len <= MAX_ENTRY_BYTES
                        && segment.len <= MAX_ENTRY_BYTES =>
                {
                    r.end = range.end;
                    g.push(segment);
                }
                _ => groups.push((range, vec![segment])),
            }
        }
        let commits = groups.into_iter().map(|(range, segments)| {
            let entries = batch.entries.slice(range);
            if entries.len() > MAX_ENTRY_BYTES {
                let one = &segments[0];
                return futures_util::future::Either::Left(self.store_run(
                    one.origin.clone(),
                    &batch.tag,
                    entries,
                    one.count,
                    received_unix_ms,
                ));
            }
            let request = ClusterRequest::AppendSegments {
                tag: batch.tag.clone(),
                entries,
                segments,
                received_unix_ms,
            };
            futures_util::future::Either::Right(self.commit(request))
        });
        futures_util::future::try_join_all(commits).await?;
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
        self.commit(ClusterRequest::AppendChunk {
            origin,
            tag,
            entries,
            count,
            received_unix_ms,
        })
        .await
    }

    /// Commit one `AppendChunk` or `AppendSegments` entry and map the answer.
    async fn commit(&self, request: ClusterRequest) -> Result<(), EmitError> {
        let started = std::time::Instant::now();
        let answer = match stored_already(&self.shared.reader, &request) {
            Some(index) => Ok(ClusterResponse::Duplicate { index }),
            None => self.coalescer.propose(&self.shared, request).await,
        };
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

/// The index of an earlier entry that holds every chunk of an append, when this node's state
/// machine already remembers all their ids. It holds only applied — hence committed — entries,
/// so such a resend is acknowledged at once, without a Raft round trip, and counted as a dedup
/// hit (merged into an entry with new chunks, it would be left out silently).
pub(crate) fn stored_already(reader: &ChunkReader, request: &ClusterRequest) -> Option<u64> {
    match request {
        ClusterRequest::AppendChunk {
            origin: Some(origin),
            ..
        } => reader.remembered_origin(origin),
        ClusterRequest::AppendSegments { segments, .. } => {
            let mut first: Option<u64> = None;
            for segment in segments {
                let index = reader.remembered_origin(segment.origin.as_ref()?)?;
                first = Some(first.map_or(index, |f| f.min(index)));
            }
            first
        }
        _ => None,
    }
}

impl Emit for ClusterIngest {
    fn emit(&self, batch: EventBatch) -> BoxFuture<'_, Result<(), EmitError>> {
        Box::pin(self.store(batch))
    }
}
