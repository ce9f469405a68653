//! Upload: the leader moves committed chunks of one `<match>` to object storage, exactly once.
//!
//! The protocol, all through the Raft log so any leader continues where the last one stopped:
//! 1. group pending chunks of one tag (and timekey period of arrival, when `time` is a chunk
//!    key; oldest first, up to the match's `chunk_limit_size`), when the oldest waited
//!    `flush_interval` or the group is full;
//! 2. **seal** the batch: commit `SealBatch` with its exact chunk list; the state machine
//!    derives the object key (`<path>/<tag>/<YYYY>/<MM>/<DD>/<first>-<last>.log.gz`, date of the
//!    first chunk's arrival, UTC), so every node agrees what the object holds and where;
//! 3. upload the object (gzip out_file lines, times in UTC: the same bytes whoever renders it);
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
//! (`<prefix>/dead-letter/<first>-<last>.log.gz`), an error line names the batch, its tag, the
//! reason and its event count, and the batch is uploaded there and confirmed like any other.
//!
//! Owns batching, object keys, rendering and the upload target ([`UploadTarget`]: a local
//! directory or an S3-compatible bucket through `object_store`). It must not decide what is
//! committed (the state machine does) nor run on a follower.

use super::node::{self, NodeShared, ProposeError};
use super::storage::{ChunkReader, PendingChunk, SealedBatch};
use super::{ClusterRequest, ClusterResponse, NodeId};
use crate::buffer::config::BufferConfig;
use crate::config::OutputConfig;
use crate::output::format::{LineFormatter, Zone};
use crate::output::retry::RetryConfig;
use crate::output::retry::{Backoff, RetryDecision};
use crate::output::s3::config::S3OutputConfig;
use crate::router::TagRoutes;
use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// Largest batch, whatever `chunk_limit_size` says: a batch is rendered in memory.
pub const MAX_BATCH_BYTES: u64 = 64 * 1024 * 1024;

/// Uploads of one `<match>` in flight at once (each holds its rendered batch in memory).
pub const MAX_CONCURRENT_UPLOADS: usize = 2;

/// Test hook, only in builds with the `fault-injection` feature: `LOGRAFT_FAULT_POINT=after-seal`
/// (or `after-upload`) makes the leader exit at once after committing a seal (or after the
/// upload, before the confirm), as if killed; `stop-raft-core` stops the node's Raft core a
/// second after start (the process must then exit non-zero).
#[cfg(feature = "fault-injection")]
pub const FAULT_POINT_ENV: &str = "LOGRAFT_FAULT_POINT";

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(
        "<match> output @type {0} cannot be an upload target in cluster mode (use file or s3)"
    )]
    Unsupported(&'static str),
    #[error("file output path {0:?}: in cluster mode 'path' is the bucket directory and must not contain placeholders (%, ${{...}})")]
    PathPlaceholders(String),
    #[error("bucket directory {path}: {source}")]
    LocalDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("chunk {0} is no longer stored (confirmed by another leader?)")]
    MissingChunk(u64),
    #[error("rendering chunk {index}: {reason}")]
    Render { index: u64, reason: String },
    #[error("reading chunks: {0}")]
    Storage(#[from] super::ClusterError),
    #[error("{what}: {source}")]
    Propose {
        what: &'static str,
        source: ProposeError,
    },
    #[error("fsync of {path}: {source}")]
    Sync {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("upload task: {0}")]
    Task(String),
    #[error("dead-lettering batch {first} was not applied: {answer}")]
    DeadLetterNotApplied { first: u64, answer: String },
}

impl UploadError {
    /// Whether retrying cannot fix this failure, so the batch is set aside at once: content
    /// that cannot be rendered, an invalid object key, a name or request the local file system
    /// refuses (ENAMETOOLONG, EINVAL, EILSEQ), or a 4xx answer of the object store other than
    /// 408 (timeout), 429 (throttled), 409 (conflicting operation in progress) and 401/403/404
    /// (credentials, permissions or a missing bucket: a configuration problem every batch
    /// shares, which an operator fixes; then the batch uploads where it belongs).
    pub fn is_permanent(&self) -> bool {
        match self {
            UploadError::Render { .. } => true,
            UploadError::LocalDir { source, .. } => crate::output::io_error_is_permanent(source),
            UploadError::Store(e) => store_error_is_permanent(e),
            UploadError::Unsupported(_)
            | UploadError::PathPlaceholders(_)
            | UploadError::MissingChunk(_)
            | UploadError::Storage(_)
            // The object is stored by then: setting the batch aside would store it twice.
            | UploadError::Sync { .. }
            | UploadError::Propose { .. }
            | UploadError::Task(_)
            | UploadError::DeadLetterNotApplied { .. } => false,
        }
    }
}

/// See [`UploadError::is_permanent`]. object_store 0.12 does not export its HTTP error type,
/// so the status of a refused request is read from the error text it always carries
/// ("... non-2xx status code: 400 Bad Request: ..."); I/O errors of the local store are found
/// in the error's source chain.
fn store_error_is_permanent(e: &object_store::Error) -> bool {
    use object_store::Error as E;
    match e {
        E::InvalidPath { .. } => true,
        E::NotFound { .. } | E::PermissionDenied { .. } | E::Unauthenticated { .. } => false,
        _ => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
            while let Some(err) = source {
                if let Some(io) = err.downcast_ref::<std::io::Error>() {
                    if crate::output::io_error_is_permanent(io) {
                        return true;
                    }
                }
                source = err.source();
            }
            http_status_in(&e.to_string()).is_some_and(http_status_is_permanent)
        }
    }
}

/// The HTTP status an object_store error message reports, if any.
fn http_status_in(message: &str) -> Option<u16> {
    const MARKER: &str = "non-2xx status code: ";
    let at = message.find(MARKER)? + MARKER.len();
    let digits = message.get(at..at + 3)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A 4xx the same request will get again (see [`UploadError::is_permanent`]).
fn http_status_is_permanent(status: u16) -> bool {
    (400..500).contains(&status) && ![401, 403, 404, 408, 409, 429].contains(&status)
}

/// Where a `<match>`'s batches go.
#[derive(Clone)]
pub struct UploadTarget {
    store: Arc<dyn ObjectStore>,
    /// Key prefix inside the store (S3 `path`); empty for a local directory.
    prefix: String,
    /// A local directory target: files are fsynced after the upload.
    local_root: Option<PathBuf>,
    describe: String,
}

impl UploadTarget {
    /// From a `<match>` output: `file` (its `path` is a local bucket directory) or `s3`.
    pub fn from_output(cfg: &OutputConfig) -> Result<Self, UploadError> {
        Self::check_output(cfg)?;
        match cfg {
            OutputConfig::S3(s3) => Self::s3(s3),
            OutputConfig::File(f) => Self::local_dir(PathBuf::from(&f.path)),
            other => Err(UploadError::Unsupported(other.type_name())),
        }
    }

    /// Whether `cfg` can be an upload target, without creating anything (for `check-config`).
    pub fn check_output(cfg: &OutputConfig) -> Result<(), UploadError> {
        match cfg {
            OutputConfig::File(f) if f.path.contains('%') || f.path.contains("${") => {
                Err(UploadError::PathPlaceholders(f.path.clone()))
            }
            OutputConfig::File(_) | OutputConfig::S3(_) => Ok(()),
            other => Err(UploadError::Unsupported(other.type_name())),
        }
    }

    /// A directory on this machine used as a bucket (created if missing).
    pub fn local_dir(root: PathBuf) -> Result<Self, UploadError> {
        std::fs::create_dir_all(&root).map_err(|source| UploadError::LocalDir {
            path: root.clone(),
            source,
        })?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(&root)?;
        Ok(UploadTarget {
            store: Arc::new(store),
            prefix: String::new(),
            describe: format!("directory {}", root.display()),
            local_root: Some(root),
        })
    }

    pub(crate) fn s3(cfg: &S3OutputConfig) -> Result<Self, UploadError> {
        let mut builder = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(&cfg.bucket)
            .with_virtual_hosted_style_request(false);
        if let Some(region) = &cfg.region {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = &cfg.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(key) = &cfg.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &cfg.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        Ok(UploadTarget {
            store: Arc::new(builder.build()?),
            prefix: cfg.prefix.trim_matches('/').to_string(),
            describe: format!("s3 bucket {}", cfg.bucket),
            local_root: None,
        })
    }

    /// The full object key of a batch: `<prefix>/` + the state machine's key
    /// ([`batch_key`](super::storage::batch_key): `<tag>/<YYYY>/<MM>/<DD>/<first>-<last>.log.gz`).
    pub fn object_key(&self, tag: &str, first_received_unix_ms: u64, chunks: &[u64]) -> String {
        let first = chunks.first().copied().unwrap_or(0);
        let last = chunks.last().copied().unwrap_or(0);
        self.full_key(&super::storage::batch_key(
            tag,
            first_received_unix_ms,
            first,
            last,
        ))
    }

    /// A key the state machine derived (relative, e.g. `<tag>/...` or
    /// `dead-letter/<first>-<last>.log.gz`) under this target's prefix.
    pub fn full_key(&self, relative: &str) -> String {
        if self.prefix.is_empty() {
            relative.to_string()
        } else {
            format!("{}/{relative}", self.prefix)
        }
    }

    /// Where `batch` is uploaded unless it is dead-lettered: its recorded key under the prefix
    /// (a batch sealed by an older version recorded the full key).
    pub(crate) fn batch_object_key(&self, batch: &SealedBatch) -> String {
        if batch.key_relative {
            self.full_key(&batch.object_key)
        } else {
            batch.object_key.clone()
        }
    }

    /// Store `body` under `key`, durably (a local file is fsynced with its directories).
    pub async fn put(&self, key: &str, body: Bytes) -> Result<(), UploadError> {
        let path = ObjectPath::parse(key).map_err(object_store::Error::from)?;
        self.store.put(&path, PutPayload::from(body)).await?;
        if let Some(root) = &self.local_root {
            let (file, root) = (root.join(key), root.clone());
            tokio::task::spawn_blocking(move || sync_with_parents(&file, &root))
                .await
                .map_err(|e| UploadError::Sync {
                    path: PathBuf::from(e.to_string()),
                    source: std::io::Error::other("fsync task failed"),
                })??;
        }
        Ok(())
    }
}

impl std::fmt::Display for UploadTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe)
    }
}

fn sync_with_parents(file: &std::path::Path, root: &std::path::Path) -> Result<(), UploadError> {
    let sync = |p: &std::path::Path| {
        std::fs::File::open(p)
            .and_then(|f| f.sync_all())
            .map_err(|source| UploadError::Sync {
                path: p.to_path_buf(),
                source,
            })
    };
    sync(file)?;
    // The file's directory and the ones created for it (tag/YYYY/MM/DD or dead-letter), up to
    // the bucket directory itself.
    for dir in file.ancestors().skip(1).take(5) {
        sync(dir)?;
        if dir == root {
            break;
        }
    }
    Ok(())
}

/// Render a batch: gzip of out_file lines (`time<TAB>tag<TAB>json`, UTC), chunk by chunk in
/// index order. Deterministic: any node renders the same bytes from the same chunks.
pub fn render_batch(reader: &ChunkReader, tag: &str, chunks: &[u64]) -> Result<Bytes, UploadError> {
    let formatter = LineFormatter::out_file(Zone::Utc);
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    let mut lines = Vec::new();
    for &index in chunks {
        let entries = reader
            .chunk_entries_blocking(index)?
            .ok_or(UploadError::MissingChunk(index))?;
        lines.clear();
        formatter
            .write_entries(&mut lines, tag, &entries)
            .map_err(|e| UploadError::Render {
                index,
                reason: e.to_string(),
            })?;
        gz.write_all(&lines).map_err(|e| UploadError::Render {
            index,
            reason: e.to_string(),
        })?;
    }
    let body = gz.finish().map_err(|e| UploadError::Render {
        index: chunks.first().copied().unwrap_or(0),
        reason: e.to_string(),
    })?;
    Ok(Bytes::from(body))
}

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
        let (tag, chunks) = (batch.tag.clone(), batch.chunks.clone());
        let body = tokio::task::spawn_blocking(move || render_batch(&reader, &tag, &chunks))
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

    /// Upload `body` (rendered again if `None`: content that cannot be rendered is uploaded
    /// as it is stored, one chunk's raw msgpack after the other) under `key`, then confirm.
    async fn put_and_confirm(
        &self,
        batch: &SealedBatch,
        key: &str,
        body: Option<Bytes>,
    ) -> Result<(), UploadError> {
        let body = match body {
            Some(body) => body,
            None => self.raw_batch(batch).await?,
        };
        let size = body.len();
        self.target.put(key, body).await?;
        fault_point("after-upload", self.shared.id, key);
        match node::propose(
            &self.shared,
            ClusterRequest::ConfirmUpload { first: batch.first },
        )
        .await
        {
            Ok(_) => {
                self.metrics.uploaded_objects.inc();
                self.metrics.uploaded_bytes.inc_by(size as u64);
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

    /// A batch whose content cannot be rendered, for the dead-letter area: gzip of its chunks'
    /// stored msgpack entries, in index order (nothing is lost; tools can decode what is valid).
    async fn raw_batch(&self, batch: &SealedBatch) -> Result<Bytes, UploadError> {
        let reader = self.shared.reader.clone();
        let chunks = batch.chunks.clone();
        tokio::task::spawn_blocking(move || -> Result<Bytes, UploadError> {
            let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
            for &index in &chunks {
                let entries = reader
                    .chunk_entries_blocking(index)?
                    .ok_or(UploadError::MissingChunk(index))?;
                gz.write_all(&entries)
                    .map_err(|e| UploadError::Task(format!("compressing chunk {index}: {e}")))?;
            }
            let body = gz
                .finish()
                .map_err(|e| UploadError::Task(format!("compressing a batch: {e}")))?;
            Ok(Bytes::from(body))
        })
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

    #[test]
    fn object_keys_are_derived_from_tag_day_and_range() {
        let dir = tempfile::tempdir().unwrap();
        let target = UploadTarget::local_dir(dir.path().to_path_buf()).unwrap();
        // 2026-11-25T01:02:03Z
        let ms = 1_795_568_523_000;
        assert_eq!(
            target.object_key("mytag.app", ms, &[7, 9, 12]),
            "mytag.app/2026/11/25/00000000000000000007-00000000000000000012.log.gz"
        );
        assert_eq!(
            target
                .object_key("../x y", ms, &[1])
                .split('/')
                .next()
                .unwrap(),
            ".._x_y"
        );
    }

    #[tokio::test]
    async fn a_300_byte_tag_gives_a_short_deterministic_key_segment_that_uploads() {
        let dir = tempfile::tempdir().unwrap();
        let target = UploadTarget::local_dir(dir.path().to_path_buf()).unwrap();
        let ms = 1_795_568_523_000;
        let long = format!("app.{}", "t".repeat(296));
        let key = target.object_key(&long, ms, &[1, 2]);
        let segment = key.split('/').next().unwrap();
        assert!(segment.len() <= 200, "{} bytes", segment.len());
        assert!(key.split('/').all(|s| s.len() <= 255 && !s.is_empty()));
        assert!(segment.starts_with("app.ttt"));
        assert_eq!(target.object_key(&long, ms, &[1, 2]), key);
        let other = format!("app.{}u", "t".repeat(295));
        assert_ne!(target.object_key(&other, ms, &[1, 2]), key);
        // The local store accepts it (a 300-byte segment was refused by the file system).
        target.put(&key, Bytes::from_static(b"x")).await.unwrap();
        assert_eq!(std::fs::read(dir.path().join(&key)).unwrap(), b"x");
    }

    #[test]
    fn http_statuses_retrying_cannot_fix_are_permanent() {
        for status in [400, 405, 411, 413, 414, 422] {
            assert!(http_status_is_permanent(status), "{status}");
        }
        // Timeouts, throttling, conflicts in progress, server errors, and configuration
        // problems every batch shares (credentials, permissions, a missing bucket).
        for status in [401, 403, 404, 408, 409, 429, 500, 503, 200, 301] {
            assert!(!http_status_is_permanent(status), "{status}");
        }
    }

    #[test]
    fn the_http_status_is_read_from_object_store_error_text() {
        let text = "Generic S3 error: Error performing PUT http://127.0.0.1:9000/b/k in 2ms - \
                    Server returned non-2xx status code: 400 Bad Request: <Error><Code>KeyTooLong</Code></Error>";
        assert_eq!(http_status_in(text), Some(400));
        assert_eq!(
            http_status_in("non-2xx status code: 413 Payload Too Large"),
            Some(413)
        );
        assert_eq!(http_status_in("Generic S3 error: connection refused"), None);
        assert_eq!(http_status_in("non-2xx status code: 4"), None);
        assert_eq!(http_status_in("non-2xx status code: abc"), None);
    }

    #[test]
    fn upload_errors_are_classified() {
        let io = |errno| std::io::Error::from_raw_os_error(errno);
        let local = |errno| UploadError::LocalDir {
            path: PathBuf::from("/b"),
            source: io(errno),
        };
        // ENAMETOOLONG, EINVAL, EILSEQ: the same name is refused every time.
        for errno in [36, 22, 84] {
            assert!(local(errno).is_permanent(), "{errno}");
        }
        // EIO, ENOSPC, EACCES, EISDIR, ENOTDIR, EROFS: the disk or an operator can fix these.
        for errno in [5, 28, 13, 21, 20, 30] {
            assert!(!local(errno).is_permanent(), "{errno}");
        }
        assert!(UploadError::Render {
            index: 1,
            reason: "bad msgpack".into()
        }
        .is_permanent());
        assert!(!UploadError::MissingChunk(1).is_permanent());
        assert!(!UploadError::Task("panicked".into()).is_permanent());
        let invalid = object_store::Error::from(ObjectPath::parse("a//b").unwrap_err());
        assert!(UploadError::Store(invalid).is_permanent());
        let generic = |status: &str| {
            UploadError::Store(object_store::Error::Generic {
                store: "S3",
                source: format!("Error performing PUT http://h/b/k in 1ms - Server returned non-2xx status code: {status}: ").into(),
            })
        };
        assert!(generic("400 Bad Request").is_permanent());
        assert!(generic("413 Payload Too Large").is_permanent());
        assert!(!generic("429 Too Many Requests").is_permanent());
        assert!(!generic("408 Request Timeout").is_permanent());
        assert!(!generic("503 Service Unavailable").is_permanent());
        let denied = object_store::Error::PermissionDenied {
            path: "k".into(),
            source: "non-2xx status code: 403 Forbidden".into(),
        };
        assert!(!UploadError::Store(denied).is_permanent());
    }

    #[tokio::test]
    async fn local_store_refusals_are_classified() {
        let dir = tempfile::tempdir().unwrap();
        let target = UploadTarget::local_dir(dir.path().to_path_buf()).unwrap();
        let body = || Bytes::from_static(b"x");
        // A segment longer than the file system allows (a key sealed by an older version).
        let long = format!("{}/2026/11/25/1-1.log.gz", "t".repeat(300));
        let e = target.put(&long, body()).await.unwrap_err();
        assert!(e.is_permanent(), "{e}");
        // An invalid key.
        let e = target.put("a//b.log.gz", body()).await.unwrap_err();
        assert!(e.is_permanent(), "{e}");
        // A directory where the object goes: an operator can remove it, so retry.
        std::fs::create_dir_all(dir.path().join("t/2026/x.log.gz")).unwrap();
        let e = target.put("t/2026/x.log.gz", body()).await.unwrap_err();
        assert!(!e.is_permanent(), "{e}");
        // Dead-letter keys sit under the target's prefix.
        assert_eq!(
            target.full_key("dead-letter/a.log.gz"),
            "dead-letter/a.log.gz"
        );
        target.put("dead-letter/a.log.gz", body()).await.unwrap();
    }
}
