//! Upload: the leader moves committed chunks of one `<match>` to object storage, exactly once.
//!
//! The protocol, all through the Raft log so any leader continues where the last one stopped:
//! 1. group pending chunks of one tag (and timekey period of arrival, when `time` is a chunk
//!    key; oldest first, up to the match's `chunk_limit_size`), when the oldest waited
//!    `flush_interval` or the group is full;
//! 2. **seal** the batch: commit `SealBatch` with its exact chunk list and object key
//!    (`<path>/<tag>/<YYYY>/<MM>/<DD>/<first>-<last>.log.gz`, date of the first chunk's arrival,
//!    UTC), so every node agrees what the object holds;
//! 3. upload the object (gzip out_file lines, times in UTC: the same bytes whoever renders it);
//! 4. **confirm**: commit `ConfirmUpload`, which drops the chunks.
//!
//! A new leader first re-uploads every sealed, unconfirmed batch under its recorded key — an
//! overwrite with identical content if the old leader got that far — so a crash anywhere
//! between 2 and 4 neither loses nor duplicates. Upload failures retry with the match's backoff
//! forever (the chunks stay replicated meanwhile).
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
use chrono::{DateTime, Datelike, Utc};
use flate2::write::GzEncoder;
use flate2::Compression;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Largest batch, whatever `chunk_limit_size` says: a batch is rendered in memory.
pub const MAX_BATCH_BYTES: u64 = 64 * 1024 * 1024;

/// Test hook, only in builds with the `fault-injection` feature: `LOGRAFT_FAULT_POINT=after-seal`
/// (or `after-upload`) makes the leader exit at once after committing a seal (or after the
/// upload, before the confirm), as if killed.
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

    fn s3(cfg: &S3OutputConfig) -> Result<Self, UploadError> {
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

    /// The object key of a batch: `<prefix>/<tag>/<YYYY>/<MM>/<DD>/<first>-<last>.log.gz`, the
    /// tag made one safe segment of at most 200 bytes by
    /// [`safe_segment`](crate::output::safe_name::safe_segment).
    pub fn object_key(&self, tag: &str, first_received_unix_ms: u64, chunks: &[u64]) -> String {
        let day = DateTime::<Utc>::from(UNIX_EPOCH + Duration::from_millis(first_received_unix_ms));
        let first = chunks.first().copied().unwrap_or(0);
        let last = chunks.last().copied().unwrap_or(0);
        let name = format!(
            "{}/{:04}/{:02}/{:02}/{first:020}-{last:020}.log.gz",
            crate::output::safe_name::safe_segment(tag),
            day.year(),
            day.month(),
            day.day()
        );
        if self.prefix.is_empty() {
            name
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// Store `body` under `key`, durably (a local file is fsynced with its directories).
    pub async fn put(&self, key: &str, body: Bytes) -> Result<(), UploadError> {
        let path = ObjectPath::parse(key).map_err(object_store::Error::from)?;
        self.store.put(&path, PutPayload::from(body)).await?;
        if let Some(root) = &self.local_root {
            let file = root.join(key);
            tokio::task::spawn_blocking(move || sync_with_parents(&file))
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

fn sync_with_parents(file: &std::path::Path) -> Result<(), UploadError> {
    let sync = |p: &std::path::Path| {
        std::fs::File::open(p)
            .and_then(|f| f.sync_all())
            .map_err(|source| UploadError::Sync {
                path: p.to_path_buf(),
                source,
            })
    };
    sync(file)?;
    // The file's directory and the ones created for it (tag/YYYY/MM/DD).
    for dir in file.ancestors().skip(1).take(5) {
        sync(dir)?;
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
}

impl Uploader {
    pub async fn run(self, stop: CancellationToken) {
        let mut backoff = Backoff::new(self.policy.retry.clone());
        let mut metrics = self.shared.raft.metrics();
        let tick = (self.policy.flush_interval / 4)
            .clamp(Duration::from_millis(50), Duration::from_millis(500));
        loop {
            let leading = {
                let m = metrics.borrow_and_update();
                m.current_leader == Some(self.shared.id)
            };
            if leading {
                match self.round().await {
                    Ok(()) => backoff.reset(),
                    Err(error) => {
                        let wait = match backoff.on_failure(std::time::Instant::now()) {
                            RetryDecision::RetryIn(wait) => wait,
                            // Never drop: keep trying at the longest interval.
                            RetryDecision::GiveUp => self
                                .policy
                                .retry
                                .max_interval
                                .unwrap_or(Duration::from_secs(60)),
                        };
                        warn!(r#match = %self.name, target = %self.target, %error,
                            retry_in_ms = wait.as_millis() as u64,
                            "upload failed; chunks stay replicated, will retry");
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(wait) => {}
                        }
                        continue;
                    }
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(tick) => {}
                }
            } else {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = metrics.changed() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }

    fn is_mine(&self, tag: &str) -> bool {
        self.routes.route_for(tag) == Some(self.match_index)
    }

    /// One pass: finish unconfirmed batches, then seal and upload what is due.
    async fn round(&self) -> Result<(), UploadError> {
        let reader = &self.shared.reader;
        for batch in reader.unconfirmed_batches() {
            if self.is_mine(&batch.tag) {
                if !self.still_leading() {
                    return Ok(());
                }
                self.upload_and_confirm(&batch).await?;
            }
        }
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
                let key = self
                    .target
                    .object_key(&tag, oldest.received_unix_ms, &indexes);
                let sealed = self.seal(&tag, indexes, key).await?;
                if let Some(batch) = sealed {
                    fault_point("after-seal", self.shared.id, &batch.object_key);
                    self.upload_and_confirm(&batch).await?;
                }
            }
        }
        Ok(())
    }

    fn still_leading(&self) -> bool {
        self.shared.raft.metrics().borrow().current_leader == Some(self.shared.id)
    }

    /// Commit the seal; `None` when the state machine refused it (e.g. another leader sealed
    /// these chunks first) — the next round sees the new state.
    async fn seal(
        &self,
        tag: &str,
        chunks: Vec<u64>,
        object_key: String,
    ) -> Result<Option<SealedBatch>, UploadError> {
        let request = ClusterRequest::SealBatch {
            tag: tag.to_string(),
            chunks: chunks.clone(),
            object_key: object_key.clone(),
        };
        match node::propose(&self.shared, request).await {
            Ok(ClusterResponse::Sealed { first }) => Ok(Some(SealedBatch {
                first,
                tag: tag.to_string(),
                chunks,
                object_key,
                bytes: 0,
                sealed_at: 0,
            })),
            Ok(other) => {
                debug!(r#match = %self.name, ?other, "seal not applied");
                Ok(None)
            }
            Err(source) => Err(UploadError::Propose {
                what: "sealing a batch",
                source,
            }),
        }
    }

    async fn upload_and_confirm(&self, batch: &SealedBatch) -> Result<(), UploadError> {
        let reader = self.shared.reader.clone();
        let (tag, chunks) = (batch.tag.clone(), batch.chunks.clone());
        let body = tokio::task::spawn_blocking(move || render_batch(&reader, &tag, &chunks))
            .await
            .map_err(|e| UploadError::Render {
                index: batch.first,
                reason: format!("render task: {e}"),
            })??;
        let size = body.len();
        self.target.put(&batch.object_key, body).await?;
        fault_point("after-upload", self.shared.id, &batch.object_key);
        match node::propose(
            &self.shared,
            ClusterRequest::ConfirmUpload { first: batch.first },
        )
        .await
        {
            Ok(_) => {
                info!(r#match = %self.name, key = %batch.object_key, chunks = batch.chunks.len(),
                    bytes = size, "batch uploaded");
                Ok(())
            }
            // Uploaded but not confirmed: whoever leads next uploads it again under the same key.
            Err(source) => Err(UploadError::Propose {
                what: "confirming an upload",
                source,
            }),
        }
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
}
