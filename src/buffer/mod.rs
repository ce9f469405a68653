//! Buffers: where a `<match>` keeps its chunks between input and output.
//!
//! Owns chunking (by tag and timekey, up to `chunk_limit_size`/`chunk_limit_records`), the
//! staged → queued lifecycle and flush scheduling (`flush_mode`, `flush_interval`,
//! `timekey_wait`), overflow handling (`total_limit_size`, `overflow_action`), and for the file
//! buffer durability: checksummed appends, group commit (one fsync for many appends), resume
//! after a crash, torn-tail repair and quarantine. It must not know what an output does with a
//! chunk, nor decide about retries: that is `output::driver`'s job (the buffer only honours the
//! not-before time the driver gives a released chunk).
//!
//! Life of a chunk: `append` puts entries into a *staged* chunk and returns once they are
//! durable; when the chunk is full or its flush time comes it is *queued*; an output worker
//! `dequeue`s it (it is then *in flight*), and either `purge`s it after the next hop
//! acknowledged it or `release`s it back to the queue to be retried — at once, or with
//! `release_after` not before a given time; `dequeue` meanwhile hands out the other chunks.
//!
//! [`Buffer`] is the one type the rest of the node uses. Its state machine (chunking, the
//! queue, the flush task, overflow) lives here and is shared by both storages: [`file`] (one
//! checksummed file per chunk, format in [`chunk`], appends group-committed by a dedicated
//! writer thread) and [`memory`] (entries kept in process memory: NOT durable). Chunk sizes are
//! counted in entry bytes (file framing not included). Known limits: timekey buckets are
//! aligned to UTC (`timekey_use_utc` is not consulted), and `flush_mode lazy` without a
//! timekey only queues chunks when they are full, on `enqueue_all` or at shutdown.
//!
//! The typed `<buffer>` config, its builder and Fluentd's flat-parameter compatibility layer:
//! [`config`].

pub mod chunk;
pub mod config;
pub mod file;
pub mod memory;
#[cfg(test)]
mod tests;

use crate::event::{EntryIter, EventBatch};
use crate::pipeline::EmitError;
use bytes::Bytes;
use config::{BufferConfig, BufferKind, FlushMode, OverflowAction};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

/// A chunk's identity: 128 random bits, born when the chunk is created and never changed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 16]);

impl ChunkId {
    pub fn random() -> Self {
        ChunkId(rand::random())
    }

    /// The form used as out_forward's `chunk` option (standard base64, with padding).
    pub fn to_base64(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let v = hex::decode(s).ok()?;
        Some(ChunkId(v.try_into().ok()?))
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", self.to_hex())
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// What a chunk is, without its entries.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkMeta {
    pub id: ChunkId,
    pub tag: String,
    /// Start of the time bucket (Unix seconds) when `time` is a chunk key.
    pub timekey: Option<i64>,
    pub records: u64,
    pub bytes: u64,
    pub created: SystemTime,
}

/// A queued chunk handed to an output: its metadata and all its entries, as one
/// PackedForward entry stream (concatenated `[time, record]` msgpack arrays).
#[derive(Debug, Clone)]
pub struct Chunk {
    pub meta: ChunkMeta,
    pub entries: Bytes,
}

/// Errors from a buffer.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    #[error("buffer total_limit_size reached ({limit} bytes)")]
    Overflow { limit: u64 },
    #[error("batch of {size} bytes exceeds chunk_limit_size {limit}")]
    TooLarge { size: u64, limit: u64 },
    #[error("buffer I/O error on {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("buffer is closed")]
    Closed,
    /// The batch's entry stream could not be walked (inputs validate entries, so this means a
    /// caller broke that contract).
    #[error("invalid entry stream: {0}")]
    InvalidEntries(String),
}

impl From<BufferError> for EmitError {
    fn from(e: BufferError) -> Self {
        match e {
            BufferError::Overflow { .. } => EmitError::Overflow(e.to_string()),
            BufferError::TooLarge { .. } => EmitError::TooLarge(e.to_string()),
            BufferError::Io { .. } => EmitError::Storage(e.to_string()),
            BufferError::Closed => EmitError::ShuttingDown,
            BufferError::InvalidEntries(_) => EmitError::Storage(e.to_string()),
        }
    }
}

/// What resuming a file buffer found on disk.
#[derive(Debug, Default, Clone)]
pub struct ResumeReport {
    pub chunks: usize,
    pub records: u64,
    /// Chunks whose torn tail (a half-written last append) was cut off.
    pub repaired: usize,
    /// Chunks moved to `quarantine/` (failed checksum or unreadable header).
    pub quarantined: Vec<std::path::PathBuf>,
}

/// Chunk counts and sizes by lifecycle stage, plus the file buffer's commit counters.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BufferStats {
    pub staged_chunks: usize,
    pub staged_bytes: u64,
    pub queued_chunks: usize,
    pub queued_bytes: u64,
    pub in_flight_chunks: usize,
    pub in_flight_bytes: u64,
    /// Records in all chunks (staged, queued and in flight).
    pub records: u64,
    /// File buffer: appends written and fsynced so far (0 for a memory buffer).
    pub durable_appends: u64,
    /// File buffer: `fdatasync` calls on chunk files so far (one per file per group commit).
    pub file_syncs: u64,
}

/// A buffer: file-backed (durable, group-committed) or memory-backed (not durable), chosen by
/// [`BufferConfig::kind`]. Both share the chunking, scheduling and overflow logic below.
///
/// Dropping the last `Arc<Buffer>` without [`Buffer::shutdown`] stops its flush task; appends
/// already handed to the writer thread are still written, and a file buffer's chunks stay on
/// disk for the next [`Buffer::open`].
pub struct Buffer {
    shared: Arc<Shared>,
    stop_flush: CancellationToken,
}

impl Drop for Buffer {
    fn drop(&mut self) {
        self.stop_flush.cancel();
    }
}

/// Chunks are keyed by (tag or "" when not chunked by tag, timekey bucket start).
type ChunkKey = (String, Option<i64>);

/// The buffer parameters, resolved once.
#[derive(Debug, Clone)]
struct Settings {
    file: bool,
    chunk_by_tag: bool,
    /// Timekey in whole seconds (≥ 1) when `time` is a chunk key.
    timekey: Option<i64>,
    timekey_wait: Duration,
    chunk_limit_size: u64,
    /// `chunk_limit_size` × 0.95: a chunk this big is full.
    chunk_full_bytes: u64,
    chunk_limit_records: u64,
    total_limit_size: u64,
    flush_mode: FlushMode,
    flush_interval: Duration,
    overflow_action: OverflowAction,
}

impl Settings {
    fn new(cfg: &BufferConfig) -> Self {
        let chunk_limit_size = cfg.chunk_limit_size.max(1);
        Settings {
            file: matches!(cfg.kind, BufferKind::File { .. }),
            chunk_by_tag: cfg.chunk_by_tag,
            timekey: cfg
                .timekey
                .map(|d| d.as_secs().clamp(1, i64::MAX as u64) as i64),
            timekey_wait: cfg.timekey_wait,
            chunk_limit_size,
            chunk_full_bytes: ((chunk_limit_size as f64) * 0.95) as u64,
            chunk_limit_records: cfg.chunk_limit_records.unwrap_or(u64::MAX).max(1),
            total_limit_size: cfg.total_limit_size,
            flush_mode: cfg.flush_mode,
            flush_interval: cfg.flush_interval,
            overflow_action: cfg.overflow_action,
        }
    }

    /// When a chunk created at `created` for `timekey` is due to be queued (None: only when
    /// full, on `enqueue_all` or at shutdown; `Immediate` is handled when appends complete).
    fn flush_at(&self, created: SystemTime, timekey: Option<i64>) -> Option<SystemTime> {
        match self.flush_mode {
            FlushMode::Interval => Some(created + self.flush_interval),
            FlushMode::Immediate => None,
            FlushMode::Lazy => {
                let (start, tk) = (timekey?, self.timekey?);
                let end = start.checked_add(tk)?;
                let end = std::time::UNIX_EPOCH + Duration::from_secs(end.max(0) as u64);
                Some(end + self.timekey_wait)
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Staged,
    Queued,
    InFlight,
}

enum ChunkStorage {
    File(Arc<file::ChunkFile>),
    Memory(memory::MemoryChunk),
}

struct ChunkState {
    meta: ChunkMeta,
    /// Creation order, to break ties between chunks created in the same instant.
    seq: u64,
    key: ChunkKey,
    stage: Stage,
    /// Appends assigned to this chunk that the writer has not completed yet.
    pending_writes: u32,
    /// Takes no more appends; queued as soon as `pending_writes` is 0.
    sealed: bool,
    flush_at: Option<SystemTime>,
    /// Queued but not to be handed out before this time (a failed chunk in backoff).
    not_before: Option<tokio::time::Instant>,
    storage: ChunkStorage,
}

#[derive(Default)]
struct State {
    chunks: HashMap<ChunkId, ChunkState>,
    /// The staged chunk currently taking appends, per key.
    open: HashMap<ChunkKey, ChunkId>,
    /// Queued chunks, oldest first, by (created, seq).
    queue: VecDeque<(SystemTime, u64, ChunkId)>,
    /// Entry bytes of all chunks (staged, queued, in flight), counted when assigned.
    total_bytes: u64,
    next_seq: u64,
    closed: bool,
    drain: bool,
}

struct Shared {
    name: String,
    settings: Settings,
    dir: Option<PathBuf>,
    state: Mutex<State>,
    /// Something was queued, or the end of a drain may have come (dequeue waiters).
    queue_changed: Notify,
    /// Bytes were freed or the buffer closed (appenders blocked on overflow).
    space_freed: Notify,
    /// A chunk was created or the buffer closed (the flush task).
    schedule_changed: Notify,
    writer: Option<mpsc::Sender<file::WriterJob>>,
    counters: Arc<file::WriterCounters>,
}

/// One slice of a batch bound for one chunk key.
struct Piece {
    key: ChunkKey,
    entries: Bytes,
    records: u32,
}

/// What a piece of an append became once placed in a chunk: a write for the writer thread.
struct PlannedWrite {
    chunk: ChunkId,
    file: Arc<file::ChunkFile>,
    entries: Bytes,
    records: u32,
}

/// What `dequeue` took out of the queue, before reading it.
enum Taken {
    File(PathBuf),
    Memory(Bytes),
}

impl Buffer {
    /// Open or resume. `dir` is the resolved directory (required for file buffers; when `None`
    /// the `path` of the config is used); `name` is used in logs.
    ///
    /// A file buffer's existing chunks are scanned (torn tails repaired, damaged files moved to
    /// `dir/quarantine/`, empty ones deleted) and queued oldest first with their original ids.
    pub async fn open(
        cfg: &BufferConfig,
        dir: Option<PathBuf>,
        name: &str,
    ) -> Result<(Arc<Buffer>, ResumeReport), BufferError> {
        let settings = Settings::new(cfg);
        let counters = Arc::new(file::WriterCounters::default());
        let mut state = State::default();
        let mut report = ResumeReport::default();
        let (dir, writer) = match &cfg.kind {
            BufferKind::File { path } => {
                let dir = dir
                    .or_else(|| path.clone())
                    .ok_or_else(|| BufferError::Io {
                        path: PathBuf::new(),
                        source: std::io::Error::new(
                            std::io::ErrorKind::InvalidInput,
                            "a file buffer needs a directory",
                        ),
                    })?;
                let (resumed, found) = {
                    let dir = dir.clone();
                    let name = name.to_string();
                    tokio::task::spawn_blocking(move || file::resume(&dir, &name))
                        .await
                        .map_err(|e| BufferError::Io {
                            path: PathBuf::new(),
                            source: std::io::Error::other(format!("resume task failed: {e}")),
                        })??
                };
                report = found;
                for c in resumed {
                    let seq = state.next_seq;
                    state.next_seq += 1;
                    let meta = ChunkMeta {
                        id: c.header.id,
                        tag: c.header.tag.clone(),
                        timekey: c.header.timekey,
                        records: c.records,
                        bytes: c.bytes,
                        created: c.header.created,
                    };
                    state.total_bytes += c.bytes;
                    state.queue.push_back((meta.created, seq, meta.id));
                    state.chunks.insert(
                        meta.id,
                        ChunkState {
                            key: (meta.tag.clone(), meta.timekey),
                            meta,
                            seq,
                            stage: Stage::Queued,
                            pending_writes: 0,
                            sealed: true,
                            flush_at: None,
                            not_before: None,
                            storage: ChunkStorage::File(Arc::new(file::ChunkFile {
                                id: c.header.id,
                                path: c.path,
                                header: c.header.encode(),
                            })),
                        },
                    );
                }
                let writer =
                    file::spawn_writer(dir.clone(), name, counters.clone()).map_err(|e| {
                        BufferError::Io {
                            path: dir.clone(),
                            source: e,
                        }
                    })?;
                (Some(dir), Some(writer))
            }
            BufferKind::Memory => (None, None),
        };
        let shared = Arc::new(Shared {
            name: name.to_string(),
            settings,
            dir,
            state: Mutex::new(state),
            queue_changed: Notify::new(),
            space_freed: Notify::new(),
            schedule_changed: Notify::new(),
            writer,
            counters,
        });
        let stop_flush = CancellationToken::new();
        tokio::spawn(flush_loop(shared.clone(), stop_flush.clone()));
        Ok((Arc::new(Buffer { shared, stop_flush }), report))
    }

    /// Store a batch; returns Ok only when it is durable (file: written + fsynced; memory: at
    /// once, and NOT durable). A batch larger than a chunk is split at entry boundaries into
    /// several chunks; all of it is durable before Ok. On `Err(Io)` some pieces of a split
    /// batch may still have been stored (the sender retries: at-least-once).
    pub async fn append(&self, batch: &EventBatch) -> Result<(), BufferError> {
        if batch.entries.is_empty() {
            return Ok(());
        }
        let shared = &self.shared;
        let pieces = shared.split_batch(batch)?;
        let size = batch.entries.len() as u64;
        let (writes, dropped) = loop {
            let notified = shared.space_freed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = shared.lock();
                if st.closed {
                    return Err(BufferError::Closed);
                }
                if let Some(dropped) = shared.admit(&mut st, size)? {
                    let writes = shared.assign(&mut st, pieces, &batch.tag);
                    break (writes, dropped);
                }
            }
            notified.await;
        };
        for (id, path) in dropped {
            if let Some(path) = path {
                let removed = tokio::task::spawn_blocking(move || file::remove_chunk(&path)).await;
                if let Ok(Err(e)) = removed {
                    error!(buffer = %shared.name, chunk = %id, error = %e, "could not delete dropped chunk file");
                }
            }
        }
        if writes.is_empty() {
            return Ok(());
        }
        let mut waits = Vec::with_capacity(writes.len());
        for w in writes {
            waits.push((w.file.path.clone(), shared.submit(w)));
        }
        let mut first_error = None;
        for (path, wait) in waits {
            let result = match wait.await {
                Ok(r) => r,
                Err(_) => Err(std::io::Error::other("buffer writer stopped")),
            };
            if let Err(source) = result {
                first_error.get_or_insert(BufferError::Io { path, source });
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Wait for the oldest queued chunk and mark it in flight.
    ///
    /// Returns `None` after `shutdown(false)` at once; after `shutdown(true)` once every chunk
    /// has left the buffer (queue empty, nothing staged, nothing in flight: a chunk released
    /// during the drain is handed out again). A file chunk that cannot be read back is
    /// quarantined (with an `error!`) and the next one is tried.
    pub async fn dequeue(&self) -> Option<Chunk> {
        loop {
            let (id, meta, taken) = self.shared.take_next().await?;
            let guard = InFlightGuard {
                shared: &self.shared,
                id,
                armed: true,
            };
            match taken {
                Taken::Memory(entries) => {
                    guard.disarm();
                    return Some(Chunk { meta, entries });
                }
                Taken::File(path) => {
                    let read_path = path.clone();
                    let read =
                        tokio::task::spawn_blocking(move || file::read_chunk(&read_path)).await;
                    guard.disarm();
                    let reason = match read {
                        Ok(Ok(read)) => {
                            let mut meta = meta;
                            meta.records = read.records;
                            meta.bytes = read.entries.len() as u64;
                            return Some(Chunk {
                                meta,
                                entries: read.entries,
                            });
                        }
                        Ok(Err(e)) => e.to_string(),
                        Err(e) => format!("read task failed: {e}"),
                    };
                    error!(buffer = %self.shared.name, chunk = %id, file = %path.display(), reason = %reason, "cannot read queued chunk");
                    if let Err(e) = self.quarantine(id, &reason).await {
                        error!(buffer = %self.shared.name, chunk = %id, error = %e, "could not quarantine unreadable chunk; it stays on disk for the next start");
                    }
                }
            }
        }
    }

    /// The next hop acknowledged the chunk: delete it for good. Purging an id the buffer does
    /// not hold (already purged) is Ok.
    pub async fn purge(&self, id: ChunkId) -> Result<(), BufferError> {
        let Some(removed) = self.shared.remove_handed_out(id, "purge") else {
            return Ok(());
        };
        match removed.storage {
            ChunkStorage::File(f) => {
                let path = f.path.clone();
                tokio::task::spawn_blocking(move || file::remove_chunk(&path))
                    .await
                    .map_err(|e| BufferError::Io {
                        path: f.path.clone(),
                        source: std::io::Error::other(format!("delete task failed: {e}")),
                    })?
            }
            ChunkStorage::Memory(_) => Ok(()),
        }
    }

    /// Delivery failed: put the in-flight chunk back in the queue, in age order (so normally
    /// at its head).
    pub fn release(&self, id: ChunkId) {
        self.shared.release(id, None);
    }

    /// Delivery failed and should be retried at `not_before`: put the in-flight chunk back in
    /// the queue, where `dequeue` skips it until then (handing out younger chunks meanwhile).
    pub fn release_after(&self, id: ChunkId, not_before: tokio::time::Instant) {
        self.shared.release(id, Some(not_before));
    }

    /// Make every queued chunk that waits for a not-before time available now (the
    /// destination came back).
    pub fn retry_now(&self) {
        let mut st = self.shared.lock();
        let mut any = false;
        for c in st.chunks.values_mut() {
            any |= c.not_before.take().is_some();
        }
        drop(st);
        if any {
            self.shared.queue_changed.notify_waiters();
        }
    }

    /// Whether the buffer still holds the chunk (staged, queued or in flight).
    pub fn holds(&self, id: ChunkId) -> bool {
        self.shared.lock().chunks.contains_key(&id)
    }

    /// Take an in-flight (or queued) chunk out of the buffer for good because it cannot be
    /// delivered: a file chunk is moved to `<dir>/quarantine/` (its new path is returned); a
    /// memory chunk is discarded (`None`). Logged with `error!` either way.
    pub async fn quarantine(
        &self,
        id: ChunkId,
        reason: &str,
    ) -> Result<Option<PathBuf>, BufferError> {
        let Some(removed) = self.shared.remove_handed_out(id, "quarantine") else {
            return Ok(None);
        };
        let meta = removed.meta;
        match removed.storage {
            ChunkStorage::File(f) => {
                let dir = self.shared.dir.clone().unwrap_or_default();
                let path = f.path.clone();
                let moved =
                    tokio::task::spawn_blocking(move || file::move_to_quarantine(&dir, &path))
                        .await
                        .map_err(|e| BufferError::Io {
                            path: f.path.clone(),
                            source: std::io::Error::other(format!("quarantine task failed: {e}")),
                        })??;
                error!(
                    buffer = %self.shared.name,
                    chunk = %id,
                    tag = %meta.tag,
                    records = meta.records,
                    file = %moved.display(),
                    reason = %reason,
                    "chunk quarantined"
                );
                Ok(Some(moved))
            }
            ChunkStorage::Memory(_) => {
                error!(
                    buffer = %self.shared.name,
                    chunk = %id,
                    tag = %meta.tag,
                    records = meta.records,
                    reason = %reason,
                    "memory chunk discarded (memory buffers have no quarantine)"
                );
                Ok(None)
            }
        }
    }

    /// Enqueue every staged chunk now (manual flush). Chunks with appends still being written
    /// are queued as soon as those complete.
    pub fn enqueue_all(&self) {
        let mut st = self.shared.lock();
        self.shared.seal_all_staged(&mut st);
    }

    /// Stop accepting appends (append → `Err(Closed)`, blocked appends give up with `Closed`).
    /// `drain = true`: enqueue all staged chunks and let `dequeue` hand out everything, then
    /// `None`; `drain = false`: `dequeue` returns `None` at once and chunks stay where they are
    /// (on disk for a file buffer, for the next start).
    pub fn shutdown(&self, drain: bool) {
        {
            let mut st = self.shared.lock();
            st.closed = true;
            st.drain = drain;
            if drain {
                self.shared.seal_all_staged(&mut st);
            }
        }
        self.shared.queue_changed.notify_waiters();
        self.shared.space_freed.notify_waiters();
        self.shared.schedule_changed.notify_one();
    }

    /// Chunk counts and bytes by stage, and the file buffer's commit counters.
    pub fn stats(&self) -> BufferStats {
        let mut stats = BufferStats {
            durable_appends: self.shared.counters.appends.load(Ordering::Relaxed),
            file_syncs: self.shared.counters.file_syncs.load(Ordering::Relaxed),
            ..BufferStats::default()
        };
        let st = self.shared.lock();
        for c in st.chunks.values() {
            stats.records += c.meta.records;
            let (count, bytes) = match c.stage {
                Stage::Staged => (&mut stats.staged_chunks, &mut stats.staged_bytes),
                Stage::Queued => (&mut stats.queued_chunks, &mut stats.queued_bytes),
                Stage::InFlight => (&mut stats.in_flight_chunks, &mut stats.in_flight_bytes),
            };
            *count += 1;
            *bytes += c.meta.bytes;
        }
        stats
    }

    #[cfg(test)]
    fn counters(&self) -> &file::WriterCounters {
        &self.shared.counters
    }
}

/// Puts a chunk back in the queue if `dequeue` is cancelled while reading it.
struct InFlightGuard<'a> {
    shared: &'a Shared,
    id: ChunkId,
    armed: bool,
}

impl InFlightGuard<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.release(self.id, None);
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a way that is
        // worse than stopping the buffer; keep serving rather than cascade the panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Split a batch by chunk key (timekey buckets when `time` is a chunk key), and refuse
    /// entries that can never fit in a chunk.
    fn split_batch(&self, batch: &EventBatch) -> Result<Vec<Piece>, BufferError> {
        let s = &self.settings;
        let tag_key = if s.chunk_by_tag {
            batch.tag.clone()
        } else {
            String::new()
        };
        let limit = s.chunk_limit_size.min(chunk::MAX_APPEND_LEN);
        let oversized = batch.entries.len() as u64 > limit;
        let Some(tk) = s.timekey else {
            if oversized {
                for e in EntryIter::new(&batch.entries) {
                    let e = e.map_err(|e| BufferError::InvalidEntries(e.to_string()))?;
                    if e.raw.len() as u64 > limit {
                        return Err(BufferError::TooLarge {
                            size: e.raw.len() as u64,
                            limit,
                        });
                    }
                }
            }
            return Ok(vec![Piece {
                key: (tag_key, None),
                entries: batch.entries.clone(),
                records: batch.count.max(1),
            }]);
        };
        // Runs of consecutive entries in the same bucket: (bucket, start, end, records).
        let mut runs: Vec<(i64, usize, usize, u32)> = Vec::new();
        let mut pos = 0usize;
        for e in EntryIter::new(&batch.entries) {
            let e = e.map_err(|e| BufferError::InvalidEntries(e.to_string()))?;
            let len = e.raw.len();
            if len as u64 > limit {
                return Err(BufferError::TooLarge {
                    size: len as u64,
                    limit,
                });
            }
            let bucket = (e.time.secs as i64).div_euclid(tk) * tk;
            match runs.last_mut() {
                Some(run) if run.0 == bucket => {
                    run.2 = pos + len;
                    run.3 += 1;
                }
                _ => runs.push((bucket, pos, pos + len, 1)),
            }
            pos += len;
        }
        let mut buckets: Vec<i64> = Vec::new();
        for run in &runs {
            if !buckets.contains(&run.0) {
                buckets.push(run.0);
            }
        }
        let mut pieces = Vec::with_capacity(buckets.len());
        for bucket in buckets {
            let mine: Vec<_> = runs.iter().filter(|r| r.0 == bucket).collect();
            let records = mine.iter().map(|r| r.3).sum();
            let entries = if let [one] = mine.as_slice() {
                batch.entries.slice(one.1..one.2)
            } else {
                let mut joined =
                    bytes::BytesMut::with_capacity(mine.iter().map(|r| r.2 - r.1).sum());
                for r in &mine {
                    joined.extend_from_slice(&batch.entries[r.1..r.2]);
                }
                joined.freeze()
            };
            pieces.push(Piece {
                key: (tag_key.clone(), Some(bucket)),
                entries,
                records,
            });
        }
        Ok(pieces)
    }

    /// Decide whether `size` more bytes may enter: `Ok(Some(dropped chunks))` to go ahead,
    /// `Ok(None)` to wait (block), `Err` to refuse.
    #[allow(clippy::type_complexity)]
    fn admit(
        &self,
        st: &mut State,
        size: u64,
    ) -> Result<Option<Vec<(ChunkId, Option<PathBuf>)>>, BufferError> {
        let limit = self.settings.total_limit_size;
        if st.total_bytes.saturating_add(size) <= limit {
            return Ok(Some(Vec::new()));
        }
        let overflow = BufferError::Overflow { limit };
        match self.settings.overflow_action {
            OverflowAction::ThrowException => Err(overflow),
            OverflowAction::Block if size > limit => Err(overflow),
            OverflowAction::Block => Ok(None),
            OverflowAction::DropOldestChunk => {
                let droppable: u64 = st
                    .queue
                    .iter()
                    .filter_map(|(_, _, id)| st.chunks.get(id))
                    .map(|c| c.meta.bytes)
                    .sum();
                if st.total_bytes - droppable.min(st.total_bytes) + size > limit {
                    return Err(overflow);
                }
                let mut dropped = Vec::new();
                while st.total_bytes + size > limit {
                    let Some((_, _, id)) = st.queue.pop_front() else {
                        break;
                    };
                    let Some(c) = st.chunks.remove(&id) else {
                        continue;
                    };
                    st.total_bytes -= c.meta.bytes;
                    warn!(
                        buffer = %self.name,
                        chunk = %id,
                        tag = %c.meta.tag,
                        records = c.meta.records,
                        bytes = c.meta.bytes,
                        "buffer full: dropping oldest queued chunk"
                    );
                    let path = match c.storage {
                        ChunkStorage::File(f) => Some(f.path.clone()),
                        ChunkStorage::Memory(_) => None,
                    };
                    dropped.push((id, path));
                }
                Ok(Some(dropped))
            }
        }
    }

    /// Place the pieces into staged chunks (opening and sealing chunks as they fill). Memory
    /// chunks take the entries at once; file chunks get writes to submit.
    fn assign(&self, st: &mut State, pieces: Vec<Piece>, batch_tag: &str) -> Vec<PlannedWrite> {
        let s = &self.settings;
        let limit = s.chunk_limit_size.min(chunk::MAX_APPEND_LEN);
        let mut writes = Vec::new();
        let mut touched = Vec::new();
        for piece in pieces {
            let mut rest = piece.entries;
            let mut rest_records = piece.records;
            while !rest.is_empty() {
                let id = self.open_chunk(st, &piece.key, batch_tag);
                let Some(c) = st.chunks.get(&id) else {
                    break;
                };
                let room_bytes = limit.saturating_sub(c.meta.bytes);
                let room_records = s.chunk_limit_records.saturating_sub(c.meta.records);
                let (take_bytes, take_records) =
                    if rest.len() as u64 <= room_bytes && rest_records as u64 <= room_records {
                        (rest.len(), rest_records)
                    } else {
                        let (b, r) = prefix_fitting(&rest, room_bytes, room_records);
                        if r > 0 {
                            (b, r)
                        } else if c.meta.records > 0 {
                            // Nothing more fits here: this chunk is full, start the next one.
                            self.seal(st, id);
                            continue;
                        } else {
                            // A fresh chunk that cannot take the next entry: entries were
                            // size-checked, so only a malformed tail gets here. Keep it whole.
                            match prefix_fitting(&rest, u64::MAX, 1) {
                                (b, 1) => (b, 1),
                                _ => (rest.len(), rest_records.max(1)),
                            }
                        }
                    };
                let part = rest.split_to(take_bytes);
                rest_records = rest_records.saturating_sub(take_records);
                if !rest.is_empty() && rest_records == 0 {
                    rest_records = 1;
                }
                let records = take_records.max(1);
                let Some(c) = st.chunks.get_mut(&id) else {
                    break;
                };
                c.meta.bytes += part.len() as u64;
                c.meta.records += records as u64;
                let full =
                    c.meta.bytes >= s.chunk_full_bytes || c.meta.records >= s.chunk_limit_records;
                let part_len = part.len() as u64;
                match &mut c.storage {
                    ChunkStorage::File(f) => {
                        c.pending_writes += 1;
                        writes.push(PlannedWrite {
                            chunk: id,
                            file: f.clone(),
                            entries: part,
                            records,
                        });
                    }
                    ChunkStorage::Memory(m) => m.push(part),
                }
                st.total_bytes += part_len;
                if !touched.contains(&id) {
                    touched.push(id);
                }
                if full {
                    self.seal(st, id);
                }
            }
        }
        if !s.file && s.flush_mode == FlushMode::Immediate {
            for id in touched {
                self.seal(st, id);
            }
        }
        writes
    }

    /// The staged chunk taking appends for `key`, created if there is none.
    fn open_chunk(&self, st: &mut State, key: &ChunkKey, batch_tag: &str) -> ChunkId {
        if let Some(id) = st.open.get(key) {
            return *id;
        }
        let id = ChunkId::random();
        let created = SystemTime::now();
        let seq = st.next_seq;
        st.next_seq += 1;
        let tag = if self.settings.chunk_by_tag {
            key.0.clone()
        } else {
            batch_tag.to_string()
        };
        let meta = ChunkMeta {
            id,
            tag,
            timekey: key.1,
            records: 0,
            bytes: 0,
            created,
        };
        let storage = match &self.dir {
            Some(dir) if self.settings.file => {
                let header = chunk::ChunkHeader {
                    id,
                    tag: meta.tag.clone(),
                    timekey: meta.timekey,
                    created,
                };
                ChunkStorage::File(Arc::new(file::ChunkFile::new(dir, &header)))
            }
            _ => ChunkStorage::Memory(memory::MemoryChunk::default()),
        };
        let flush_at = self.settings.flush_at(created, key.1);
        st.chunks.insert(
            id,
            ChunkState {
                meta,
                seq,
                key: key.clone(),
                stage: Stage::Staged,
                pending_writes: 0,
                sealed: false,
                flush_at,
                not_before: None,
                storage,
            },
        );
        st.open.insert(key.clone(), id);
        if flush_at.is_some() {
            self.schedule_changed.notify_one();
        }
        id
    }

    /// Stop a staged chunk from taking appends; queue it once its writes are done.
    fn seal(&self, st: &mut State, id: ChunkId) {
        let Some(c) = st.chunks.get_mut(&id) else {
            return;
        };
        if c.stage != Stage::Staged {
            return;
        }
        c.sealed = true;
        let ready = c.pending_writes == 0;
        if st.open.get(&c.key) == Some(&id) {
            let key = c.key.clone();
            st.open.remove(&key);
        }
        if ready {
            self.enqueue(st, id);
        }
    }

    fn seal_all_staged(&self, st: &mut State) {
        let staged: Vec<ChunkId> = st
            .chunks
            .iter()
            .filter(|(_, c)| c.stage == Stage::Staged)
            .map(|(id, _)| *id)
            .collect();
        for id in staged {
            self.seal(st, id);
        }
    }

    /// Move a sealed, fully written chunk into the queue (an empty one is discarded).
    fn enqueue(&self, st: &mut State, id: ChunkId) {
        let Some(c) = st.chunks.get_mut(&id) else {
            return;
        };
        if c.stage != Stage::Staged {
            return;
        }
        if c.meta.records == 0 {
            // Every append to it failed: nothing to deliver.
            if let Some(c) = st.chunks.remove(&id) {
                if let (ChunkStorage::File(f), Some(writer)) = (&c.storage, &self.writer) {
                    let _ = writer.send(file::WriterJob::Remove(f.path.clone()));
                }
            }
            self.queue_changed.notify_waiters();
            return;
        }
        c.stage = Stage::Queued;
        let entry = (c.meta.created, c.seq, id);
        insert_by_age(&mut st.queue, entry);
        debug!(buffer = %self.name, chunk = %id, "chunk queued");
        self.queue_changed.notify_waiters();
    }

    /// Hand a planned write to the writer thread; the receiver resolves when it is durable.
    fn submit(self: &Arc<Self>, w: PlannedWrite) -> oneshot::Receiver<std::io::Result<()>> {
        let (tx, rx) = oneshot::channel();
        let head = chunk::append_header(&w.entries, w.records);
        let shared = self.clone();
        let (id, bytes, records) = (w.chunk, w.entries.len() as u64, w.records as u64);
        let job = file::AppendJob {
            file: w.file,
            head,
            entries: w.entries,
            done: Box::new(move |result| {
                shared.complete_write(id, bytes, records, result.as_ref().err());
                let _ = tx.send(result);
            }),
        };
        let sent = match &self.writer {
            Some(writer) => writer.send(file::WriterJob::Append(job)).map_err(|e| e.0),
            None => Err(file::WriterJob::Append(job)),
        };
        if let Err(file::WriterJob::Append(job)) = sent {
            (job.done)(Err(std::io::Error::other("buffer writer thread is gone")));
        }
        rx
    }

    /// Called by the writer thread when one append is durable or was rolled back.
    fn complete_write(&self, id: ChunkId, bytes: u64, records: u64, err: Option<&std::io::Error>) {
        let mut st = self.lock();
        let Some(c) = st.chunks.get_mut(&id) else {
            return;
        };
        c.pending_writes = c.pending_writes.saturating_sub(1);
        let mut seal = self.settings.flush_mode == FlushMode::Immediate;
        if let Some(e) = err {
            c.meta.bytes = c.meta.bytes.saturating_sub(bytes);
            c.meta.records = c.meta.records.saturating_sub(records);
            warn!(buffer = %self.name, chunk = %id, error = %e, "append failed; sealing the chunk so new appends start a fresh file");
            seal = true;
        }
        let ready = c.sealed && c.pending_writes == 0;
        if err.is_some() {
            st.total_bytes = st.total_bytes.saturating_sub(bytes);
        }
        if seal {
            self.seal(&mut st, id);
        } else if ready {
            self.enqueue(&mut st, id);
        }
        drop(st);
        if err.is_some() {
            self.space_freed.notify_waiters();
        }
    }

    /// Wait for the oldest queued chunk whose not-before time has come and mark it in
    /// flight; None when dequeue must stop.
    async fn take_next(&self) -> Option<(ChunkId, ChunkMeta, Taken)> {
        loop {
            let notified = self.queue_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wake_at = {
                let mut st = self.lock();
                if st.closed && !st.drain {
                    return None;
                }
                let now = tokio::time::Instant::now();
                let mut wake_at: Option<tokio::time::Instant> = None;
                let mut index = 0;
                while index < st.queue.len() {
                    let id = st.queue[index].2;
                    let Some(c) = st.chunks.get_mut(&id) else {
                        st.queue.remove(index);
                        continue;
                    };
                    if let Some(at) = c.not_before.filter(|at| *at > now) {
                        wake_at = Some(wake_at.map_or(at, |w| w.min(at)));
                        index += 1;
                        continue;
                    }
                    c.not_before = None;
                    c.stage = Stage::InFlight;
                    let taken = match &c.storage {
                        ChunkStorage::File(f) => Taken::File(f.path.clone()),
                        ChunkStorage::Memory(m) => Taken::Memory(m.entries()),
                    };
                    let meta = c.meta.clone();
                    st.queue.remove(index);
                    return Some((id, meta, taken));
                }
                if st.closed && st.chunks.is_empty() {
                    return None;
                }
                wake_at
            };
            match wake_at {
                Some(at) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Remove a queued or in-flight chunk from the state (purge, quarantine).
    fn remove_handed_out(&self, id: ChunkId, what: &str) -> Option<ChunkState> {
        let removed = {
            let mut st = self.lock();
            match st.chunks.get(&id).map(|c| c.stage) {
                Some(Stage::InFlight) => {}
                Some(Stage::Queued) => st.queue.retain(|(_, _, q)| *q != id),
                Some(Stage::Staged) => {
                    warn!(buffer = %self.name, chunk = %id, action = what, "chunk is still staged; ignored");
                    return None;
                }
                None => {
                    debug!(buffer = %self.name, chunk = %id, action = what, "chunk not in buffer; ignored");
                    return None;
                }
            }
            let c = st.chunks.remove(&id)?;
            st.total_bytes = st.total_bytes.saturating_sub(c.meta.bytes);
            c
        };
        self.space_freed.notify_waiters();
        self.queue_changed.notify_waiters();
        Some(removed)
    }

    fn release(&self, id: ChunkId, not_before: Option<tokio::time::Instant>) {
        let mut st = self.lock();
        let Some(c) = st.chunks.get_mut(&id) else {
            debug!(buffer = %self.name, chunk = %id, "release of a chunk not in buffer; ignored");
            return;
        };
        if c.stage != Stage::InFlight {
            return;
        }
        c.stage = Stage::Queued;
        c.not_before = not_before;
        let entry = (c.meta.created, c.seq, id);
        insert_by_age(&mut st.queue, entry);
        drop(st);
        self.queue_changed.notify_waiters();
    }

    /// Seal every staged chunk whose flush time has come; returns the next flush time.
    fn flush_due(&self, st: &mut State, now: SystemTime) -> Option<SystemTime> {
        let mut due = Vec::new();
        let mut next: Option<SystemTime> = None;
        for (id, c) in &st.chunks {
            if c.stage != Stage::Staged || c.sealed {
                continue;
            }
            if let Some(at) = c.flush_at {
                if at <= now {
                    due.push(*id);
                } else {
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
            }
        }
        for id in due {
            self.seal(st, id);
        }
        next
    }
}

/// The longest prefix of whole entries within `max_bytes` and `max_records`.
fn prefix_fitting(entries: &[u8], max_bytes: u64, max_records: u64) -> (usize, u32) {
    let mut end = 0usize;
    let mut records = 0u32;
    for e in EntryIter::new(entries) {
        let Ok(e) = e else { break };
        let next = end + e.raw.len();
        if next as u64 > max_bytes || records as u64 >= max_records {
            break;
        }
        end = next;
        records += 1;
    }
    (end, records)
}

fn insert_by_age(
    queue: &mut VecDeque<(SystemTime, u64, ChunkId)>,
    entry: (SystemTime, u64, ChunkId),
) {
    let at = queue.partition_point(|q| (q.0, q.1) < (entry.0, entry.1));
    queue.insert(at, entry);
}

/// The background task that queues staged chunks when their flush time comes.
async fn flush_loop(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let now = SystemTime::now();
        let next = {
            let mut st = shared.lock();
            if st.closed {
                return;
            }
            shared.flush_due(&mut st, now)
        };
        let wait = next
            .map(|at| at.duration_since(now).unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = shared.schedule_changed.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
