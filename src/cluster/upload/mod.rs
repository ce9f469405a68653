//! Upload: the leader moves committed chunks of one `<match>` to object storage, exactly once.
//!
//! The protocol, all through the Raft log so any leader continues where the last one stopped:
//! 1. group pending chunks of one tag (and timekey period of arrival, when `time` is a chunk
//!    key; oldest first, up to the match's `chunk_limit_size`), when the oldest waited
//!    `flush_interval` or the group is full;
//! 2. **seal** the batch: commit `SealBatch` with its exact chunk list; the state machine
//!    derives the object key (`<path>/<tag>/<YYYY>/<MM>/<DD>/<first>-<last>.log.gz`, date of the
//!    first chunk's arrival, UTC; `.log` when the output stores plain text: `compress` of
//!    `@type file`, default text as in Fluentd, `store_as` of `@type s3`, default gzip — the
//!    seal carries the choice), so every node agrees what the object holds and where;
//! 3. upload the object (out_file lines, times in UTC, gzip if its key ends in `.gz`: the same
//!    bytes whoever renders it), rendered into a temporary spool file under the node's data
//!    directory and sent in parts of [`UPLOAD_PART_BYTES`] (one put when smaller; a local
//!    directory on the same file system hard-links the file), so the leader's memory does not
//!    depend on the batch size or how well its events compress;
//! 4. **confirm**: commit `ConfirmUpload`, which drops the chunks.
//!
//! A new leader first re-uploads every sealed, unconfirmed batch under its recorded key — an
//! overwrite with identical content if the old leader got that far — so a crash anywhere
//! between 2 and 4 neither loses nor duplicates.
//!
//! Isolation: each batch whose upload fails keeps its own [`Backoff`] (keyed by batch id) and
//! waits alone; uploads run concurrently (at most [`MAX_CONCURRENT_UPLOADS`]), and sealing goes
//! on meanwhile, so one failing batch never holds back other batches or tags. Transient
//! failures retry with the match's backoff forever (the chunks stay replicated meanwhile). A
//! failure retrying cannot fix ([`UploadError::is_permanent`]: an invalid key, a 4xx from the
//! object store other than 401/403/404/408/409/429, a name the file system refuses,
//! undecodable content) sets the batch aside: `DeadLetterBatch` is committed (so every leader
//! agrees), the state machine derives its dead-letter key
//! (`<prefix>/dead-letter/<first>-<last>.log.gz`, `.log` for plain batches), an error line
//! names the batch, its tag, the reason and its event count, and the batch is uploaded there
//! and confirmed like any other.
//!
//! Owns batching, the seal/upload/confirm cycle and its retries. The upload target
//! ([`UploadTarget`]: a local directory or an S3-compatible bucket through `object_store`),
//! object keys, rendering and error classification live in `target`. It must not decide what
//! is committed (the state machine does) nor run on a follower.

use super::node::{self, NodeShared};
use super::storage::{PendingChunk, SealedBatch};
use super::{ClusterRequest, ClusterResponse, NodeId};
use crate::buffer::config::BufferConfig;
use crate::retry::RetryConfig;
use crate::retry::{Backoff, RetryDecision};
use crate::router::TagRoutes;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

mod target;
pub use target::{clear_spool, SpooledBody, UploadError, UploadTarget, UPLOAD_PART_BYTES};

/// Largest batch, whatever `chunk_limit_size` says.
pub const MAX_BATCH_BYTES: u64 = 64 * 1024 * 1024;

/// Uploads of one `<match>` in flight at once (each holds a part of its spooled batch in
/// memory).
pub const MAX_CONCURRENT_UPLOADS: usize = 2;

/// Test hook, only in builds with the `fault-injection` feature: `LOGRAFT_FAULT_POINT=after-seal`
/// (or `after-upload`) makes the leader exit at once after committing a seal (or after the
/// upload, before the confirm), as if killed; `stop-raft-core` stops the node's Raft core a
/// second after start (the process must then exit non-zero).
#[cfg(feature = "fault-injection")]
pub const FAULT_POINT_ENV: &str = "LOGRAFT_FAULT_POINT";

/// When the leader seals a batch.
#[derive(Debug, Clone)]
pub struct BatchPolicy {
    /// Seal when the oldest pending chunk of a tag waited this long.
    pub flush_interval: Duration,
    /// Seal when a tag's pending chunks reach this many bytes; a batch holds at most this much.
    pub batch_bytes: u64,
    /// With `time` among the buffer's chunk keys: a batch never mixes chunks that arrived in
    /// different timekey periods (by arrival time, UTC).
    pub timekey: Option<Duration>,
    /// Retry of failed uploads (never gives up: the chunks stay replicated).
    pub retry: RetryConfig,
}

impl BatchPolicy {
    /// From a `<match>`'s `<buffer>`: `flush_interval`, `chunk_limit_size` (capped at
    /// [`MAX_BATCH_BYTES`]) and its retry settings.
    pub fn from_buffer(buffer: &BufferConfig) -> Self {
        BatchPolicy {
            flush_interval: buffer.flush_interval,
            batch_bytes: buffer.chunk_limit_size.clamp(1, MAX_BATCH_BYTES),
            timekey: buffer.timekey.filter(|t| !t.is_zero()),
            retry: buffer.retry.clone(),
        }
    }
}

/// The uploader of one `<match>`: runs on every node, works only while the node leads.
pub struct Uploader {
    pub(crate) shared: Arc<NodeShared>,
    /// Which `<match>` this is (its index), and the table deciding each tag's match.
    pub(crate) match_index: usize,
    pub(crate) routes: Arc<TagRoutes>,
    pub(crate) target: UploadTarget,
    /// Where rendered batches wait for their upload (see [`SpooledBody`]; cleared at start by
    /// [`clear_spool`]).
    pub(crate) spool_dir: PathBuf,
    pub(crate) policy: BatchPolicy,
    /// For logs: the match's patterns.
    pub(crate) name: String,
    /// Uploaded objects/bytes, failed attempts, batches in backoff.
    pub(crate) metrics: crate::observe::ClusterMetrics,
}

/// Retry state of one batch whose last upload failed.
struct BatchRetry {
    backoff: Backoff,
    /// Not tried again before this.
    not_before: Instant,
}

/// How an upload task ended: its task id and outcome, or how it failed to finish.
type Joined = Result<(tokio::task::Id, Result<(), UploadError>), tokio::task::JoinError>;

/// The uploader's bookkeeping between rounds: uploads in flight (task → batch id and tag) and
/// the backoff of each batch whose last upload failed.
#[derive(Default)]
struct Schedule {
    running: JoinSet<Result<(), UploadError>>,
    in_flight: HashMap<tokio::task::Id, (u64, String)>,
    retries: HashMap<u64, BatchRetry>,
    /// `retries.len()` as last added to the shared "failing batches" gauge.
    reported_failing: i64,
}

impl Schedule {
    /// Bring the shared gauge of batches in backoff up to date with this uploader's share.
    fn report_failing(&mut self, gauge: &prometheus_client::metrics::gauge::Gauge) {
        let now = self.retries.len() as i64;
        gauge.inc_by(now - self.reported_failing);
        self.reported_failing = now;
    }
}

impl Uploader {
    pub async fn run(self, stop: CancellationToken) {
        let this = Arc::new(self);
        let mut schedule = Schedule::default();
        let mut metrics = this.shared.raft.metrics();
        let tick = (this.policy.flush_interval / 4)
            .clamp(Duration::from_millis(50), Duration::from_millis(500));
        loop {
            while let Some(joined) = schedule.running.try_join_next_with_id() {
                this.finished(&mut schedule, joined);
            }
            let leading = {
                let m = metrics.borrow_and_update();
                m.current_leader == Some(this.shared.id)
            };
            if leading {
                if let Err(error) = this.seal_due().await {
                    warn!(r#match = %this.name, %error, "sealing failed; will retry");
                }
                this.start_uploads(&mut schedule);
            }
            let wait = if leading {
                tick
            } else {
                Duration::from_secs(1)
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = metrics.changed(), if !leading => {}
                Some(joined) = schedule.running.join_next_with_id(), if !schedule.running.is_empty() => {
                    this.finished(&mut schedule, joined);
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
        // An interrupted upload is repeated under the same key by whoever leads next.
        schedule.running.shutdown().await;
        schedule.retries.clear();
        schedule.report_failing(&this.metrics.upload_failing);
    }

    fn is_mine(&self, tag: &str) -> bool {
        self.routes.route_for(tag) == Some(self.match_index)
    }

    /// Start uploading every unconfirmed batch of this match that is not in flight and not
    /// waiting out a backoff, oldest first, up to [`MAX_CONCURRENT_UPLOADS`] at once.
    fn start_uploads(self: &Arc<Self>, schedule: &mut Schedule) {
        let batches: Vec<SealedBatch> = self
            .shared
            .reader
            .unconfirmed_batches()
            .into_iter()
            .filter(|b| self.is_mine(&b.tag))
            .collect();
        // Forget the backoffs of batches confirmed meanwhile (by this or another leader).
        let known: HashSet<u64> = batches.iter().map(|b| b.first).collect();
        schedule.retries.retain(|first, _| known.contains(first));
        schedule.report_failing(&self.metrics.upload_failing);
        let now = Instant::now();
        for batch in batches {
            if schedule.in_flight.len() >= MAX_CONCURRENT_UPLOADS || !self.still_leading() {
                break;
            }
            let waiting = schedule
                .retries
                .get(&batch.first)
                .is_some_and(|r| r.not_before > now);
            let running = schedule.in_flight.values().any(|(f, _)| *f == batch.first);
            if waiting || running {
                continue;
            }
            let (first, tag) = (batch.first, batch.tag.clone());
            let this = self.clone();
            let task = schedule
                .running
                .spawn(async move { this.upload_and_confirm(&batch).await });
            schedule.in_flight.insert(task.id(), (first, tag));
        }
    }

    /// An upload task ended: forget the batch's backoff, or schedule its next attempt.
    fn finished(&self, schedule: &mut Schedule, joined: Joined) {
        let (id, result) = match joined {
            Ok((id, result)) => (id, result),
            Err(e) => (e.id(), Err(UploadError::Task(e.to_string()))),
        };
        let Some((first, tag)) = schedule.in_flight.remove(&id) else {
            return;
        };
        let error = match result {
            Ok(()) => {
                schedule.retries.remove(&first);
                schedule.report_failing(&self.metrics.upload_failing);
                return;
            }
            Err(error) => error,
        };
        self.metrics.upload_retries.inc();
        let now = Instant::now();
        let retry = schedule.retries.entry(first).or_insert_with(|| BatchRetry {
            backoff: Backoff::new(self.policy.retry.clone()),
            not_before: now,
        });
        let wait = match retry.backoff.on_failure(now) {
            RetryDecision::RetryIn(wait) => wait,
            // Never drop: keep trying at the longest interval.
            RetryDecision::GiveUp => self
                .policy
                .retry
                .max_interval
                .unwrap_or(Duration::from_secs(60)),
        };
        retry.not_before = now + wait;
        let failures = retry.backoff.failures();
        schedule.report_failing(&self.metrics.upload_failing);
        warn!(r#match = %self.name, target = %self.target, batch = first, %tag, %error,
            failures, retry_in_ms = wait.as_millis() as u64,
            "batch upload failed; its chunks stay replicated, will retry (other batches go on)");
    }

    /// Seal what is due: each tag's (and timekey period's) pending chunks, oldest first, when
    /// the oldest waited `flush_interval` or they fill a batch.
    async fn seal_due(&self) -> Result<(), UploadError> {
        let reader = &self.shared.reader;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let period_ms = self.policy.timekey.map(|t| t.as_millis().max(1) as u64);
        let mut groups: BTreeMap<(String, u64), Vec<PendingChunk>> = BTreeMap::new();
        for chunk in reader.pending(None) {
            if self.is_mine(&chunk.tag) {
                let period = period_ms.map_or(0, |p| chunk.received_unix_ms / p);
                groups
                    .entry((chunk.tag.clone(), period))
                    .or_default()
                    .push(chunk);
            }
        }
        for ((tag, _period), chunks) in groups {
            let mut rest = chunks.as_slice();
            while let Some(oldest) = rest.first() {
                let total: u64 = rest.iter().map(|c| c.bytes).sum();
                let waited = now_ms.saturating_sub(oldest.received_unix_ms);
                let due = total >= self.policy.batch_bytes
                    || waited >= self.policy.flush_interval.as_millis() as u64;
                if !due || !self.still_leading() {
                    break;
                }
                let take = batch_len(rest, self.policy.batch_bytes);
                let (batch, remaining) = rest.split_at(take);
                rest = remaining;
                let indexes: Vec<u64> = batch.iter().map(|c| c.index).collect();
                crate::output::safe_name::safe_segment_noted(&tag, "object key");
                let key = self
                    .target
                    .object_key(&tag, oldest.received_unix_ms, &indexes);
                if self.seal(&tag, indexes, period_ms).await? {
                    fault_point("after-seal", self.shared.id, &key);
                }
            }
        }
        Ok(())
    }

    fn still_leading(&self) -> bool {
        self.shared.raft.metrics().borrow().current_leader == Some(self.shared.id)
    }

    /// Commit the seal (the state machine derives the batch's key); `false` when the state
    /// machine refused it (e.g. another leader sealed these chunks first) — the next round sees
    /// the new state.
    async fn seal(
        &self,
        tag: &str,
        chunks: Vec<u64>,
        period_ms: Option<u64>,
    ) -> Result<bool, UploadError> {
        let request = ClusterRequest::SealBatch {
            tag: tag.to_string(),
            chunks,
            ignored_key: String::new(),
            period_ms,
            uncompressed: !self.target.gzip(),
        };
        match node::propose(&self.shared, request).await {
            Ok(ClusterResponse::Sealed { .. }) => Ok(true),
            Ok(other) => {
                debug!(r#match = %self.name, ?other, "seal not applied");
                Ok(false)
            }
            Err(source) => Err(UploadError::Propose {
                what: "sealing a batch",
                source,
            }),
        }
    }

    /// Render the batch, upload it (under its dead-letter key once dead-lettered) and confirm.
    /// A permanent failure under the batch's own key dead-letters it and uploads it there.
    async fn upload_and_confirm(&self, batch: &SealedBatch) -> Result<(), UploadError> {
        let reader = self.shared.reader.clone();
        let (tag, chunks, gzip) = (batch.tag.clone(), batch.chunks.clone(), batch.gzip());
        let spool = self.spool_dir.clone();
        let body = tokio::task::spawn_blocking(move || {
            SpooledBody::render(&spool, &reader, &tag, &chunks, gzip)
        })
        .await
        .map_err(|e| UploadError::Task(format!("rendering batch {}: {e}", batch.first)))?;
        let body = match body {
            Ok(body) => Some(body),
            Err(e) if e.is_permanent() => {
                // Content that cannot be rendered goes to the dead-letter area as stored.
                let key = match &batch.dead_letter {
                    Some(dead) => self.target.full_key(&dead.object_key),
                    None => self.dead_letter(batch, &e).await?,
                };
                return self.put_and_confirm(batch, &key, None).await;
            }
            Err(e) => return Err(e),
        };
        let key = match &batch.dead_letter {
            Some(dead) => self.target.full_key(&dead.object_key),
            None => self.target.batch_object_key(batch),
        };
        match self.put_and_confirm(batch, &key, body.clone()).await {
            Err(e) if e.is_permanent() && batch.dead_letter.is_none() => {
                let key = self.dead_letter(batch, &e).await?;
                self.put_and_confirm(batch, &key, body).await
            }
            other => other,
        }
    }

    /// Commit `DeadLetterBatch` for a permanent failure; the full dead-letter key.
    async fn dead_letter(
        &self,
        batch: &SealedBatch,
        failure: &UploadError,
    ) -> Result<String, UploadError> {
        let reason = failure.to_string();
        let request = ClusterRequest::DeadLetterBatch {
            first: batch.first,
            reason: reason.clone(),
        };
        match node::propose(&self.shared, request).await {
            Ok(ClusterResponse::DeadLettered { object_key, .. }) => {
                let key = self.target.full_key(&object_key);
                error!(r#match = %self.name, target = %self.target, batch = batch.first,
                    tag = %batch.tag, events = batch.count, chunks = batch.chunks.len(),
                    %reason, object_key = %self.target.batch_object_key(batch), dead_letter_key = %key,
                    "batch cannot be uploaded (permanent error, not retried): moved to the dead-letter area");
                Ok(key)
            }
            Ok(other) => Err(UploadError::DeadLetterNotApplied {
                first: batch.first,
                answer: format!("{other:?}"),
            }),
            Err(source) => Err(UploadError::Propose {
                what: "dead-lettering a batch",
                source,
            }),
        }
    }

    /// Upload `body` (if `None`, the content cannot be rendered and is uploaded as it is
    /// stored: [`SpooledBody::raw`]) under `key`, then confirm.
    async fn put_and_confirm(
        &self,
        batch: &SealedBatch,
        key: &str,
        body: Option<SpooledBody>,
    ) -> Result<(), UploadError> {
        let body = match body {
            Some(body) => body,
            None => self.raw_batch(batch).await?,
        };
        self.target.put_spooled(key, &body).await?;
        let size = body.len();
        fault_point("after-upload", self.shared.id, key);
        match node::propose(
            &self.shared,
            ClusterRequest::ConfirmUpload { first: batch.first },
        )
        .await
        {
            Ok(_) => {
                self.metrics.uploaded_objects.inc();
                self.metrics.uploaded_bytes.inc_by(size);
                self.metrics.uploaded_events.inc_by(batch.count);
                info!(r#match = %self.name, key = %key, batch = batch.first, chunks = batch.chunks.len(),
                    bytes = size, dead_letter = key != self.target.batch_object_key(batch),
                    "batch uploaded");
                Ok(())
            }
            // Uploaded but not confirmed: whoever leads next uploads it again under the same key.
            Err(source) => Err(UploadError::Propose {
                what: "confirming an upload",
                source,
            }),
        }
    }

    /// A batch whose content cannot be rendered, for the dead-letter area: its chunks' stored
    /// msgpack entries, in index order, gzip if the batch is (nothing is lost; tools can
    /// decode what is valid). Spooled like a rendered batch.
    async fn raw_batch(&self, batch: &SealedBatch) -> Result<SpooledBody, UploadError> {
        let reader = self.shared.reader.clone();
        let (chunks, gzip) = (batch.chunks.clone(), batch.gzip());
        let spool = self.spool_dir.clone();
        tokio::task::spawn_blocking(move || SpooledBody::raw(&spool, &reader, &chunks, gzip))
            .await
            .map_err(|e| UploadError::Task(format!("raw batch {}: {e}", batch.first)))?
    }
}

/// How many of `chunks` (oldest first) form one batch: up to `limit` bytes, at least one.
fn batch_len(chunks: &[PendingChunk], limit: u64) -> usize {
    let mut total = 0u64;
    let mut n = 0;
    for chunk in chunks {
        if n > 0 && total + chunk.bytes > limit {
            break;
        }
        total += chunk.bytes;
        n += 1;
    }
    n
}

#[cfg(feature = "fault-injection")]
fn fault_point(name: &str, node: NodeId, key: &str) {
    if std::env::var(FAULT_POINT_ENV).is_ok_and(|v| v == name) {
        // stderr directly: the process ends before a log writer could flush.
        eprintln!("lograft node {node}: fault point {name} reached (object key {key}); exiting now as if killed");
        std::process::exit(86);
    }
}

/// Default builds have no fault points.
#[cfg(not(feature = "fault-injection"))]
fn fault_point(_name: &str, _node: NodeId, _key: &str) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(index: u64, bytes: u64) -> PendingChunk {
        PendingChunk {
            index,
            tag: "t".into(),
            bytes,
            count: 1,
            received_unix_ms: 0,
            origin: None,
        }
    }

    #[test]
    fn batches_respect_the_byte_limit_but_take_at_least_one_chunk() {
        let chunks = [pending(1, 40), pending(2, 40), pending(3, 40)];
        assert_eq!(batch_len(&chunks, 100), 2);
        assert_eq!(batch_len(&chunks, 10), 1);
        assert_eq!(batch_len(&chunks, 1000), 3);
    }
}
