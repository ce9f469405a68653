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
//!
//! Split by concept: this file holds the public types, the shared state and the buffer's
//! lifecycle (`open`, `shutdown`, `stats`); `error` the error type; `append` the write path
//! (splitting batches into chunks, group-committed writes); `overflow` admission against
//! `total_limit_size`; `queue` the staged → queued → in-flight lifecycle and per-chunk
//! not-before times; `schedule` the flush times and the flush task.

pub mod chunk;
pub mod config;
pub mod file;
pub mod marks;
pub mod memory;

mod append;
mod error;
#[cfg(test)]
mod marks_tests;
#[cfg(test)]
mod origin_tests;
mod overflow;
mod queue;
mod schedule;
#[cfg(test)]
mod tests;

pub use error::BufferError;

use bytes::Bytes;
use config::{BufferConfig, BufferKind, FlushMode, OverflowAction};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
// Names `tests` takes through `use super::*` that the code here no longer needs itself.
#[cfg(test)]
use crate::event::{EntryIter, EventBatch};

/// A chunk's identity: 128 random bits, born when the chunk is created and never changed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 16]);

impl ChunkId {
    pub fn random() -> Self {
        ChunkId(rand::random())
    }

    /// The form used as out_forward's `chunk` option (standard base64, with padding).
    pub fn to_base64(self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    pub fn to_hex(self) -> String {
        hex::encode(self.0)
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
    /// Where the entries came from (see [`crate::origin`]): runs covering `entries` in order,
    /// each with the id of the client chunk it came from. Empty when no entry has an origin.
    pub segments: Vec<crate::origin::Segment>,
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
    /// When the oldest chunk still held (any stage) was created.
    pub oldest_chunk_created: Option<SystemTime>,
    /// Appends waiting for space now (`overflow_action block` with the buffer full).
    pub blocked_appends: usize,
    /// `dequeue` calls waiting now for a chunk to be queued or to leave its backoff.
    pub waiting_dequeues: usize,
}

/// A buffer: file-backed (durable, group-committed) or memory-backed (not durable), chosen by
/// [`BufferConfig::kind`]. Both share the chunking, scheduling and overflow logic of this module.
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
    keep_origins: bool,
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
            keep_origins: cfg.keep_origins,
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
    /// Source positions committed in this chunk (file buffer only), moved to the ledger
    /// before the chunk file is deleted.
    marks: marks::Positions,
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
    /// Appends waiting for space (`overflow_action block`).
    blocked_appends: usize,
    /// `dequeue` calls waiting for a chunk to become due.
    waiting_dequeues: usize,
}

/// Which wait a [`Waiting`] counts.
#[derive(Clone, Copy)]
enum Wait {
    Append,
    Dequeue,
}

/// Counts one waiter in [`State`] while it lives (also when the waiting future is dropped).
struct Waiting<'a> {
    shared: &'a Shared,
    wait: Wait,
}

impl<'a> Waiting<'a> {
    /// Count a waiter; the caller holds the state lock (`st`).
    fn start(shared: &'a Shared, st: &mut State, wait: Wait) -> Self {
        *st.waiters(wait) += 1;
        Waiting { shared, wait }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        *st.waiters(self.wait) -= 1;
    }
}

impl State {
    fn waiters(&mut self, wait: Wait) -> &mut usize {
        match wait {
            Wait::Append => &mut self.blocked_appends,
            Wait::Dequeue => &mut self.waiting_dequeues,
        }
    }
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
    /// Source positions found at open (in resumed chunks and in the ledger).
    recovered_marks: marks::Positions,
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
        let mut recovered_marks = marks::Positions::new();
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
                let ledger = {
                    let ledger_dir = dir.clone();
                    tokio::task::spawn_blocking(move || marks::load_ledger(&ledger_dir))
                        .await
                        .map_err(|e| std::io::Error::other(format!("ledger task failed: {e}")))
                        .and_then(|r| r)
                        .unwrap_or_else(|e| {
                            // Losing the ledger can only make an input read lines again
                            // (at least once); refusing to start would lose more.
                            tracing::error!(buffer = %name, file = %dir.join(marks::LEDGER_FILE).display(), error = %e,
                                "cannot read the source-position ledger; inputs resume from their own position files");
                            marks::Positions::new()
                        })
                };
                marks::merge(&mut recovered_marks, &ledger);
                for c in resumed {
                    marks::merge(&mut recovered_marks, &c.marks);
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
                            marks: c.marks,
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
            recovered_marks,
        });
        let stop_flush = CancellationToken::new();
        tokio::spawn(schedule::flush_loop(shared.clone(), stop_flush.clone()));
        Ok((Arc::new(Buffer { shared, stop_flush }), report))
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

    /// Whether marked appends keep their positions durably (a file buffer).
    pub fn keeps_marks(&self) -> bool {
        self.shared.settings.file
    }

    /// The source positions this buffer held when it was opened: those carried by the chunks
    /// it resumed and those in its ledger (see [`marks`]), the maximum per key.
    pub fn recovered_marks(&self) -> &marks::Positions {
        &self.shared.recovered_marks
    }

    /// Chunk counts and bytes by stage, and the file buffer's commit counters.
    pub fn stats(&self) -> BufferStats {
        let mut stats = BufferStats {
            durable_appends: self.shared.counters.appends.load(Ordering::Relaxed),
            file_syncs: self.shared.counters.file_syncs.load(Ordering::Relaxed),
            ..BufferStats::default()
        };
        let st = self.shared.lock();
        stats.blocked_appends = st.blocked_appends;
        stats.waiting_dequeues = st.waiting_dequeues;
        for c in st.chunks.values() {
            stats.records += c.meta.records;
            let (count, bytes) = match c.stage {
                Stage::Staged => (&mut stats.staged_chunks, &mut stats.staged_bytes),
                Stage::Queued => (&mut stats.queued_chunks, &mut stats.queued_bytes),
                Stage::InFlight => (&mut stats.in_flight_chunks, &mut stats.in_flight_bytes),
            };
            *count += 1;
            *bytes += c.meta.bytes;
            let created = c.meta.created;
            if stats.oldest_chunk_created.is_none_or(|o| created < o) {
                stats.oldest_chunk_created = Some(created);
            }
        }
        stats
    }

    /// The file writer's commit histograms (fsync duration, appends per fsync); they stay
    /// empty for a memory buffer.
    pub(crate) fn writer_counters(&self) -> &Arc<file::WriterCounters> {
        &self.shared.counters
    }

    #[cfg(test)]
    fn counters(&self) -> &file::WriterCounters {
        &self.shared.counters
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a way that is
        // worse than stopping the buffer; keep serving rather than cascade the panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
