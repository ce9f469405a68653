//! The upload target and what goes to it: [`UploadTarget`] (a local directory, fsynced with
//! its parents, or an S3-compatible bucket through `object_store`; whether its objects are
//! gzip, from the output's `compress` / `store_as`), [`render_batch`] (a sealed batch as
//! out_file lines in UTC, gzip or plain as its key says, the same bytes whoever renders them),
//! [`SpooledBody`] (a rendered batch in a spool file, uploaded in parts — or, for a directory
//! on the same file system, hard-linked into place — so a batch of any size and content costs
//! the leader a bounded amount of memory) and [`UploadError`] with its permanent/transient
//! classification.
//!
//! It must not decide what to upload or when (the [`super::Uploader`] does) nor touch the Raft
//! log.

use crate::cluster::node::ProposeError;
use crate::cluster::storage::{ChunkReader, SealedBatch};
use crate::config::OutputConfig;
use crate::output::format::{LineFormatter, Zone};
use crate::output::s3::config::S3OutputConfig;
use bytes::Bytes;
use flate2::write::GzEncoder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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
    Storage(#[from] crate::cluster::ClusterError),
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
    #[error("writing a rendered batch: {0}")]
    RenderOutput(std::io::Error),
    #[error("spool file of a rendered batch in {dir}: {source}")]
    Spool {
        dir: PathBuf,
        source: std::io::Error,
    },
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
            // Where the rendered batch is written (a full disk): retrying can fix it.
            | UploadError::RenderOutput(_)
            | UploadError::Spool { .. }
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
    /// The same directory's store, to map keys to file paths (for hard-linking a spool file).
    local_store: Option<Arc<object_store::local::LocalFileSystem>>,
    /// New batches are stored as gzip (`.log.gz`), else as plain lines (`.log`).
    gzip: bool,
    describe: String,
}

impl UploadTarget {
    /// From a `<match>` output: `file` (its `path` is a local bucket directory) or `s3`.
    pub fn from_output(cfg: &OutputConfig) -> Result<Self, UploadError> {
        Self::check_output(cfg)?;
        match cfg {
            OutputConfig::S3(s3) => Self::s3(s3),
            OutputConfig::File(f) => Ok(Self::local_dir(PathBuf::from(&f.path))?
                .with_gzip(f.compress == crate::config::Compression::Gzip)),
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

    /// Whether new batches are stored as gzip (the default of [`Self::local_dir`]).
    pub fn with_gzip(mut self, gzip: bool) -> Self {
        self.gzip = gzip;
        self
    }

    /// Whether new batches are stored as gzip (`.log.gz`) rather than plain lines (`.log`).
    pub fn gzip(&self) -> bool {
        self.gzip
    }

    /// A directory on this machine used as a bucket (created if missing).
    pub fn local_dir(root: PathBuf) -> Result<Self, UploadError> {
        std::fs::create_dir_all(&root).map_err(|source| UploadError::LocalDir {
            path: root.clone(),
            source,
        })?;
        let store = Arc::new(object_store::local::LocalFileSystem::new_with_prefix(
            &root,
        )?);
        Ok(UploadTarget {
            store: store.clone(),
            prefix: String::new(),
            describe: format!("directory {}", root.display()),
            local_root: Some(root),
            local_store: Some(store),
            gzip: true,
        })
    }

    pub(crate) fn s3(cfg: &S3OutputConfig) -> Result<Self, UploadError> {
        let client = object_store::ClientOptions::new()
            .with_timeout(cfg.request_timeout)
            .with_connect_timeout(cfg.connect_timeout);
        // A few quick retries inside one put; the uploader's own per-batch backoff does the
        // rest (object_store's default, 10 retries over up to 3 minutes, would hold an upload
        // slot that long on a hung server).
        let retry = object_store::RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(60),
            ..Default::default()
        };
        let mut builder = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(&cfg.bucket)
            .with_virtual_hosted_style_request(false)
            .with_client_options(client)
            .with_retry(retry);
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
            local_store: None,
            gzip: cfg.store_as_gzip,
        })
    }

    /// The full object key of a new batch: `<prefix>/` + the state machine's key
    /// ([`batch_key`](crate::cluster::storage::batch_key): `<tag>/<YYYY>/<MM>/<DD>/<first>-<last>.log.gz`,
    /// `.log` without gzip).
    pub fn object_key(&self, tag: &str, first_received_unix_ms: u64, chunks: &[u64]) -> String {
        let first = chunks.first().copied().unwrap_or(0);
        let last = chunks.last().copied().unwrap_or(0);
        self.full_key(&crate::cluster::storage::batch_key(
            tag,
            first_received_unix_ms,
            first,
            last,
            self.gzip,
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
        self.sync_local(key).await
    }

    /// Store a spooled body under `key`, durably: one put when it is at most one part
    /// ([`UPLOAD_PART_BYTES`]), else a multipart upload of such parts, one after the other
    /// (the object appears only when complete; a failed one is aborted). Memory: about one
    /// part, whatever the body's size. A local directory on the spool's file system gets a
    /// hard link to the spool file instead (no copy; the object appears complete at once).
    pub async fn put_spooled(&self, key: &str, body: &SpooledBody) -> Result<(), UploadError> {
        if self.link_spooled(key, body).await {
            return self.sync_local(key).await;
        }
        if body.len <= UPLOAD_PART_BYTES as u64 {
            let bytes = body.read_part(0, body.len as usize).await?;
            return self.put(key, bytes).await;
        }
        let path = ObjectPath::parse(key).map_err(object_store::Error::from)?;
        let upload = self.store.put_multipart(&path).await?;
        let mut writer =
            object_store::WriteMultipart::new_with_chunk_size(upload, UPLOAD_PART_BYTES);
        let mut at = 0u64;
        let sent: Result<(), UploadError> = async {
            while at < body.len {
                let n = (body.len - at).min(UPLOAD_PART_BYTES as u64) as usize;
                // The previous part is sent before the next is read: one part in memory.
                writer.wait_for_capacity(1).await?;
                let part = body.read_part(at, n).await?;
                writer.put(part);
                at += n as u64;
            }
            Ok(())
        }
        .await;
        if let Err(e) = sent {
            // Best effort: the parts of an unfinished upload are only storage until cleaned up.
            let _ = writer.abort().await;
            return Err(e);
        }
        writer.finish().await?;
        self.sync_local(key).await
    }

    /// For a local directory target: hard-link the spool file as `key`; whether it was. Not
    /// when the object exists (a repeated upload: the copy path replaces it atomically), the
    /// spool is on another file system or the file system has no hard links; then, and for
    /// any other failure (whose error the copy path reports and classifies), `false`.
    async fn link_spooled(&self, key: &str, body: &SpooledBody) -> bool {
        let Some(store) = &self.local_store else {
            return false;
        };
        let Ok(dest) = ObjectPath::parse(key)
            .map_err(object_store::Error::from)
            .and_then(|path| store.path_to_filesystem(&path))
        else {
            return false;
        };
        let file = body.file.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(parent) = dest.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            std::fs::hard_link(file.path(), &dest).is_ok()
        })
        .await
        .unwrap_or(false)
    }

    /// For a local directory target: fsync the file `key` and its directories.
    async fn sync_local(&self, key: &str) -> Result<(), UploadError> {
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

/// Parts of a multipart upload (and the largest body sent in one put): S3's smallest part.
pub const UPLOAD_PART_BYTES: usize = 5 * 1024 * 1024;

/// A rendered batch in a temporary file of the spool directory (`batch-*`, deleted when the
/// last clone is dropped; [`clear_spool`] removes what a crash left). A named file, not an
/// unlinked one: FUSE and network file systems need not support reading an unlinked file (the
/// jepsen lazyfs disks do not), and a local bucket directory can hard-link it. Read back part
/// by part for the upload. Created readable by all (less the umask), like object_store's
/// files: a hard link makes it the object.
#[derive(Debug, Clone)]
pub struct SpooledBody {
    file: Arc<tempfile::NamedTempFile>,
    len: u64,
    dir: PathBuf,
}

/// Remove the spool files a stopped process left in `dir` (creating `dir` if missing). Call
/// before any uploader of this node runs. Blocking.
pub fn clear_spool(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(SPOOL_PREFIX)
        {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Name prefix of spool files.
const SPOOL_PREFIX: &str = "batch-";

type SpoolWriter = std::io::BufWriter<tempfile::NamedTempFile>;

impl SpooledBody {
    /// Render `chunks` of `tag` (out_file lines in UTC, gzip if `gzip`) into a new file in
    /// `dir`. Blocking.
    pub fn render(
        dir: &Path,
        reader: &ChunkReader,
        tag: &str,
        chunks: &[u64],
        gzip: bool,
    ) -> Result<Self, UploadError> {
        Self::write(dir, |out| render_batch(reader, tag, chunks, out, gzip))
    }

    /// Content that cannot be rendered, for the dead-letter area: its chunks' stored msgpack
    /// entries one after the other, in index order (gzip if `gzip`), into a new file in `dir`.
    /// Blocking.
    pub fn raw(
        dir: &Path,
        reader: &ChunkReader,
        chunks: &[u64],
        gzip: bool,
    ) -> Result<Self, UploadError> {
        Self::write(dir, |out| {
            let mut out = ObjectWriter::new(out, gzip);
            for_each_chunk(reader, chunks, |_, entries| {
                out.write_all(entries).map_err(UploadError::RenderOutput)
            })?;
            out.finish()
        })
    }

    /// A new spool file in `dir`, filled by `fill`. Blocking.
    fn write(
        dir: &Path,
        fill: impl FnOnce(SpoolWriter) -> Result<SpoolWriter, UploadError>,
    ) -> Result<Self, UploadError> {
        use std::os::unix::fs::PermissionsExt;
        let spool_err = |source| UploadError::Spool {
            dir: dir.to_path_buf(),
            source,
        };
        let file = tempfile::Builder::new()
            .prefix(SPOOL_PREFIX)
            .permissions(std::fs::Permissions::from_mode(0o666))
            .tempfile_in(dir)
            .map_err(spool_err)?;
        let out = fill(std::io::BufWriter::with_capacity(256 * 1024, file))?;
        let file = out.into_inner().map_err(|e| spool_err(e.into_error()))?;
        let len = file.as_file().metadata().map_err(spool_err)?.len();
        Ok(SpooledBody {
            file: Arc::new(file),
            len,
            dir: dir.to_path_buf(),
        })
    }

    /// Bytes of the rendered batch.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was rendered.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `n` bytes from offset `at`, read on a blocking thread.
    async fn read_part(&self, at: u64, n: usize) -> Result<Bytes, UploadError> {
        let (file, dir) = (self.file.clone(), self.dir.clone());
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            let mut part = vec![0u8; n];
            file.as_file()
                .read_exact_at(&mut part, at)
                .map(|()| Bytes::from(part))
                .map_err(|source| UploadError::Spool { dir, source })
        })
        .await
        .map_err(|e| UploadError::Task(format!("reading a spooled batch: {e}")))?
    }
}

/// What an object's bytes go through on their way to `W`: gzip, or nothing.
enum ObjectWriter<W: Write> {
    Gzip(GzEncoder<W>),
    Plain(W),
}

impl<W: Write> ObjectWriter<W> {
    fn new(out: W, gzip: bool) -> Self {
        if gzip {
            ObjectWriter::Gzip(GzEncoder::new(out, crate::output::GZIP_LEVEL))
        } else {
            ObjectWriter::Plain(out)
        }
    }

    /// End the gzip stream (if any) and flush: the finished object's writer.
    fn finish(self) -> Result<W, UploadError> {
        let mut out = match self {
            ObjectWriter::Gzip(gz) => gz.finish().map_err(UploadError::RenderOutput)?,
            ObjectWriter::Plain(out) => out,
        };
        out.flush().map_err(UploadError::RenderOutput)?;
        Ok(out)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            ObjectWriter::Gzip(gz) => gz.write_all(buf),
            ObjectWriter::Plain(out) => out.write_all(buf),
        }
    }
}

/// Render a batch into `out`, returned once the object is finished: out_file lines
/// (`time<TAB>tag<TAB>json`, UTC), chunk by chunk in index order, gzip if `gzip`.
/// Deterministic: any node renders the same bytes from the same chunks.
fn render_batch<W: Write>(
    reader: &ChunkReader,
    tag: &str,
    chunks: &[u64],
    out: W,
    gzip: bool,
) -> Result<W, UploadError> {
    let formatter = LineFormatter::out_file(Zone::Utc);
    let mut out = ObjectWriter::new(out, gzip);
    let mut lines = Vec::new();
    for_each_chunk(reader, chunks, |index, entries| {
        lines.clear();
        formatter
            .write_entries(&mut lines, tag, entries)
            .map_err(|e| UploadError::Render {
                index,
                reason: e.to_string(),
            })?;
        out.write_all(&lines).map_err(UploadError::RenderOutput)
    })?;
    out.finish()
}

/// Call `f` with each of `chunks`' index and stored events, in order, read into one buffer
/// reused from chunk to chunk (so a batch touches no fresh memory per chunk).
fn for_each_chunk(
    reader: &ChunkReader,
    chunks: &[u64],
    mut f: impl FnMut(u64, &[u8]) -> Result<(), UploadError>,
) -> Result<(), UploadError> {
    let mut entries = Vec::new();
    for &index in chunks {
        if !reader.chunk_entries_into_blocking(index, &mut entries)? {
            return Err(UploadError::MissingChunk(index));
        }
        f(index, &entries)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// A spool file holding `content`, as `SpooledBody::render` leaves one.
    fn spooled(dir: &Path, content: &[u8]) -> SpooledBody {
        SpooledBody::write(dir, |mut out| {
            out.write_all(content).unwrap();
            Ok(out)
        })
        .unwrap()
    }

    /// A `@type file` bucket stores plain objects unless `compress gzip` (out_file's default is
    /// text); `@type s3` stores gzip unless `store_as text`.
    #[test]
    fn objects_are_gzip_as_the_output_config_says() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().display();
        for (lines, gzip) in [
            (format!("@type file\n  path {path}"), false),
            (format!("@type file\n  path {path}\n  compress gzip"), true),
            ("@type s3\n  s3_bucket b".to_string(), true),
            (
                "@type s3\n  s3_bucket b\n  store_as text".to_string(),
                false,
            ),
        ] {
            let loaded =
                crate::config::test_support::ok(&format!("<match **>\n  {lines}\n</match>\n"));
            let target = UploadTarget::from_output(&loaded.config.matches[0].output).unwrap();
            assert_eq!(target.gzip(), gzip, "{lines}");
            let key = target.object_key("t", 0, &[1]);
            assert_eq!(key.ends_with(".log.gz"), gzip, "{key}");
            assert!(key.ends_with(".log") || key.ends_with(".log.gz"), "{key}");
        }
    }

    /// The file system's identity of a file: (device, inode).
    fn file_id(path: &Path) -> (u64, u64) {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).unwrap();
        (meta.dev(), meta.ino())
    }

    /// A local directory on the spool's file system gets the spool file itself (a hard link,
    /// no copy), readable like any object; an object that exists already (a repeated upload)
    /// is replaced through the copy path; dropping the body leaves the object.
    #[tokio::test]
    async fn a_spooled_body_is_hard_linked_into_a_local_directory() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        std::fs::create_dir_all(&spool).unwrap();
        let bucket = dir.path().join("bucket");
        let target = UploadTarget::local_dir(bucket.clone()).unwrap();
        let key = "t/2026/11/29/1-2.log";
        let body = spooled(&spool, b"first\n");
        target.put_spooled(key, &body).await.unwrap();
        let object = bucket.join(key);
        assert_eq!(std::fs::read(&object).unwrap(), b"first\n");
        assert_eq!(file_id(&object), file_id(body.file.path()), "hard-linked");
        let mode = std::fs::metadata(&object).unwrap().permissions().mode();
        assert_eq!(mode & 0o600, 0o600, "{mode:o}");
        drop(body);
        assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0);
        assert_eq!(std::fs::read(&object).unwrap(), b"first\n");

        let again = spooled(&spool, b"second\n");
        target.put_spooled(key, &again).await.unwrap();
        assert_eq!(std::fs::read(&object).unwrap(), b"second\n");
        assert_ne!(file_id(&object), file_id(again.file.path()), "copied");
        let names: Vec<_> = std::fs::read_dir(object.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["1-2.log"]);
    }

    #[tokio::test]
    async fn a_spooled_body_uploads_whole_in_one_put_or_in_parts() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        std::fs::create_dir_all(&spool).unwrap();
        let mut target = UploadTarget::local_dir(dir.path().join("bucket")).unwrap();
        // The copy path, as for S3 or a spool on another file system: no hard link.
        target.local_store = None;
        // Not a multiple of the part size, and every part different.
        let large: Vec<u8> = (0..2 * UPLOAD_PART_BYTES + 12_345)
            .map(|i| (i / 997 % 251) as u8)
            .collect();
        for (key, content) in [
            ("t/small.log.gz", &b"small body"[..]),
            ("t/large.log.gz", &large),
        ] {
            let body = spooled(&spool, content);
            target.put_spooled(key, &body).await.unwrap();
            assert_eq!(
                std::fs::read(dir.path().join("bucket").join(key)).unwrap(),
                content
            );
            // The same body uploads again (a retry reads the spool file from its start).
            target.put_spooled(key, &body).await.unwrap();
            assert_eq!(
                std::fs::read(dir.path().join("bucket").join(key)).unwrap(),
                content
            );
        }
        // Nothing but the two objects in the bucket (no staging files left by the parts).
        let mut names: Vec<_> = std::fs::read_dir(dir.path().join("bucket/t"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["large.log.gz", "small.log.gz"]);
        // The spool files are gone once their bodies are dropped.
        assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0);
        // What a crash leaves behind is removed at start; nothing else is touched.
        std::fs::write(spool.join("batch-leftover"), b"x").unwrap();
        std::fs::write(spool.join("operator-notes"), b"x").unwrap();
        clear_spool(&spool).unwrap();
        let left: Vec<_> = std::fs::read_dir(&spool)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, ["operator-notes"]);
        clear_spool(&dir.path().join("new-spool")).unwrap();
        assert!(dir.path().join("new-spool").is_dir());
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
