//! The file buffer's disk side: the group-commit writer thread, resume (scan, repair,
//! quarantine), reading a chunk back, deleting and quarantining chunk files.
//!
//! Everything here is blocking I/O: it runs on the dedicated writer thread or inside
//! `spawn_blocking`, never directly on the tokio runtime. This module does not decide when a
//! chunk is queued, flushed or purged (that is `buffer::Buffer`'s state machine); it only moves
//! bytes and reports what happened.
//!
//! # Group commit
//!
//! Appenders send [`WriterJob::Append`]s down a channel. The writer thread blocks for the first
//! job, then takes every job already waiting (up to [`MAX_JOBS_PER_ROUND`]) as one *round*. For
//! each chunk file touched in the round it opens the file (creating it with its header when
//! new), writes all the round's appends for it with `writev` (the entries are never copied),
//! and `fdatasync`s it once. If any file was created, the directory is fsynced once. Only then
//! are the round's completions run. While a round is being synced, new appends pile up in the
//! channel and form the next round, so the number of fsyncs follows the disk, not the appends.
//!
//! A failed write or sync fails only the appends of that file in that round: the file is cut
//! back to the length it had before the round (a new file is removed), so everything already
//! acknowledged stays valid.

use super::chunk::{self, ChunkHeader, ScanError};
use super::{BufferError, ChunkId, ResumeReport};
use crate::observe::histogram::AtomicHistogram;
use bytes::Bytes;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use tracing::{debug, error, info, warn};

/// The most jobs the writer takes into one round (bounds the latency of a round).
pub const MAX_JOBS_PER_ROUND: usize = 4096;
/// Slices per `writev` call (Linux's IOV_MAX is 1024).
const MAX_IOVECS: usize = 1024;
/// The sub-directory damaged chunk files are moved to.
pub const QUARANTINE_DIR: &str = "quarantine";

/// A chunk's file: where it lives and the header it starts with. Shared by all appends to it.
#[derive(Debug)]
pub struct ChunkFile {
    pub id: ChunkId,
    pub path: PathBuf,
    pub header: Vec<u8>,
}

impl ChunkFile {
    pub fn new(dir: &Path, header: &ChunkHeader) -> Self {
        ChunkFile {
            id: header.id,
            path: dir.join(chunk::file_name(header.id)),
            header: header.encode(),
        }
    }
}

/// Called on the writer thread once an append is durable (Ok) or has been rolled back (Err).
pub type Completion = Box<dyn FnOnce(io::Result<()>) + Send>;

/// One append for the writer thread.
pub struct AppendJob {
    pub file: Arc<ChunkFile>,
    pub head: [u8; chunk::APPEND_HEADER_LEN],
    pub entries: Bytes,
    /// A marked append's trailer (source position), written right after the entries.
    pub trailer: Option<Vec<u8>>,
    pub done: Completion,
}

/// Work for the writer thread.
pub enum WriterJob {
    Append(AppendJob),
    /// Delete a chunk file that ended up empty (best effort; a missing file is fine).
    Remove(PathBuf),
}

/// Counters kept by the writer thread (read by `Buffer::stats` and the metrics scrape).
#[derive(Debug)]
pub struct WriterCounters {
    /// Appends written and synced successfully.
    pub appends: AtomicU64,
    /// `fdatasync` calls on chunk files (one per touched file per round).
    pub file_syncs: AtomicU64,
    /// Rounds (group commits).
    pub rounds: AtomicU64,
    /// Duration of each chunk file's write + `fdatasync` (one observation per file per round).
    pub fsync_seconds: AtomicHistogram,
    /// Appends made durable by each `fdatasync` (the group-commit size).
    pub appends_per_fsync: AtomicHistogram,
    /// Test hook: the next N file syncs fail as if the disk reported an error.
    #[cfg(test)]
    pub inject_sync_failures: AtomicU64,
}

impl Default for WriterCounters {
    fn default() -> Self {
        WriterCounters {
            appends: AtomicU64::new(0),
            file_syncs: AtomicU64::new(0),
            rounds: AtomicU64::new(0),
            fsync_seconds: AtomicHistogram::durations(),
            appends_per_fsync: AtomicHistogram::counts(),
            #[cfg(test)]
            inject_sync_failures: AtomicU64::new(0),
        }
    }
}

/// Start the writer thread for `dir`. It exits once every sender is dropped and the channel is
/// drained.
pub fn spawn_writer(
    dir: PathBuf,
    name: &str,
    counters: Arc<WriterCounters>,
) -> io::Result<mpsc::Sender<WriterJob>> {
    let (tx, rx) = mpsc::channel::<WriterJob>();
    let buffer_name = name.to_string();
    std::thread::Builder::new()
        .name(format!("buffer-writer-{name}"))
        .spawn(move || writer_loop(rx, dir, buffer_name, counters))?;
    Ok(tx)
}

fn writer_loop(
    rx: mpsc::Receiver<WriterJob>,
    dir: PathBuf,
    name: String,
    counters: Arc<WriterCounters>,
) {
    let mut appends = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut removes = Vec::new();
        let mut take = |job: WriterJob| match job {
            WriterJob::Append(a) => appends.push(a),
            WriterJob::Remove(p) => removes.push(p),
        };
        take(first);
        let mut taken = 1;
        while taken < MAX_JOBS_PER_ROUND {
            match rx.try_recv() {
                Ok(job) => {
                    take(job);
                    taken += 1;
                }
                Err(_) => break,
            }
        }
        if !appends.is_empty() {
            commit_round(&dir, &name, &mut appends, &counters);
        }
        for path in removes {
            if let Err(e) = fs::remove_file(&path) {
                if e.kind() != io::ErrorKind::NotFound {
                    warn!(buffer = %name, path = %path.display(), error = %e, "could not delete empty chunk file");
                }
            }
        }
    }
    debug!(buffer = %name, "buffer writer thread stopped");
}

/// Write, sync and complete one round of appends. Drains `jobs`.
fn commit_round(dir: &Path, name: &str, jobs: &mut Vec<AppendJob>, counters: &WriterCounters) {
    counters.rounds.fetch_add(1, Ordering::Relaxed);
    // Group the round's appends by file, keeping their order within a file.
    let mut groups: Vec<Vec<AppendJob>> = Vec::new();
    let mut index: HashMap<ChunkId, usize> = HashMap::new();
    for job in jobs.drain(..) {
        let slot = *index.entry(job.file.id).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[slot].push(job);
    }
    let mut outcomes: Vec<(Vec<AppendJob>, Result<FileWritten, io::Error>)> =
        Vec::with_capacity(groups.len());
    for group in groups {
        let started = std::time::Instant::now();
        let result = write_group(&group, counters);
        if result.is_ok() {
            counters.fsync_seconds.observe_duration(started.elapsed());
            counters.appends_per_fsync.observe_count(group.len() as u64);
        }
        outcomes.push((group, result));
    }
    // New files are only acknowledged once their directory entry is durable.
    let created_any = outcomes
        .iter()
        .any(|(_, r)| matches!(r, Ok(w) if w.created));
    if created_any {
        if let Err(e) = sync_dir(dir) {
            error!(buffer = %name, dir = %dir.display(), error = %e, "fsync of buffer directory failed");
            for (group, result) in outcomes.iter_mut() {
                if matches!(result, Ok(w) if w.created) {
                    let _ = fs::remove_file(&group[0].file.path);
                    *result = Err(io::Error::new(e.kind(), format!("directory fsync: {e}")));
                }
            }
        }
    }
    for (group, result) in outcomes {
        match result {
            Ok(_) => {
                counters
                    .appends
                    .fetch_add(group.len() as u64, Ordering::Relaxed);
                for job in group {
                    (job.done)(Ok(()));
                }
            }
            Err(e) => {
                error!(
                    buffer = %name,
                    path = %group[0].file.path.display(),
                    appends = group.len(),
                    error = %e,
                    "chunk write failed; its appends are refused and the file is cut back"
                );
                for job in group {
                    (job.done)(Err(io::Error::new(e.kind(), e.to_string())));
                }
            }
        }
    }
}

struct FileWritten {
    created: bool,
}

/// Append a group of jobs (all for the same file) and sync it. On failure the file is restored
/// to its length before the round (or removed if this round created it).
fn write_group(group: &[AppendJob], counters: &WriterCounters) -> io::Result<FileWritten> {
    let file_info = &group[0].file;
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&file_info.path)?;
    let len_before = file.metadata()?.len();
    // A file shorter than its header was never acknowledged: (re)start it.
    let created = len_before < file_info.header.len() as u64;
    if created && len_before > 0 {
        file.set_len(0)?;
    }
    let result = (|| {
        let mut slices = Vec::with_capacity(group.len() * 3 + 1);
        if created {
            slices.push(IoSlice::new(&file_info.header));
        }
        for job in group {
            slices.push(IoSlice::new(&job.head));
            slices.push(IoSlice::new(&job.entries));
            if let Some(t) = &job.trailer {
                slices.push(IoSlice::new(t));
            }
        }
        write_all_vectored(&mut file, &mut slices)?;
        #[cfg(test)]
        if counters
            .inject_sync_failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(io::Error::other("injected sync failure"));
        }
        counters.file_syncs.fetch_add(1, Ordering::Relaxed);
        if crate::fault_injection::skip_fsync("buffer") {
            return Ok(());
        }
        file.sync_data()
    })();
    match result {
        Ok(()) => Ok(FileWritten { created }),
        Err(e) => {
            drop(file);
            if created {
                let _ = fs::remove_file(&file_info.path);
            } else if let Ok(f) = OpenOptions::new().write(true).open(&file_info.path) {
                if f.set_len(len_before).and_then(|_| f.sync_data()).is_err() {
                    warn!(path = %file_info.path.display(), "could not cut chunk back after a failed write; resume will repair its tail");
                }
            }
            Err(e)
        }
    }
}

fn write_all_vectored(file: &mut File, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !slices.is_empty() {
        let n = slices.len().min(MAX_IOVECS);
        match file.write_vectored(&slices[..n]) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(written) => IoSlice::advance_slices(&mut slices, written),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

use crate::durable_fs::sync_dir;

fn io_err(path: &Path, source: io::Error) -> BufferError {
    BufferError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A chunk found on disk by [`resume`], ready to be queued.
#[derive(Debug)]
pub struct ResumedChunk {
    pub header: ChunkHeader,
    pub path: PathBuf,
    pub records: u64,
    pub bytes: u64,
    /// Source positions its marked appends carry.
    pub marks: super::marks::Positions,
}

/// Scan `dir` (creating it if missing): repair torn tails, quarantine damaged files, delete
/// empty chunks. Returns the usable chunks, oldest first.
pub fn resume(dir: &Path, name: &str) -> Result<(Vec<ResumedChunk>, ResumeReport), BufferError> {
    crate::durable_fs::create_dir_all_durably(dir).map_err(|e| io_err(dir, e))?;
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        if chunk::is_chunk_file_name(file_name)
            && entry.file_type().map(|t| t.is_file()).unwrap_or(false)
        {
            paths.push(entry.path());
        }
    }
    paths.sort();
    let mut report = ResumeReport::default();
    let mut chunks = Vec::new();
    for path in paths {
        match resume_one(&path, name) {
            Ok(ResumeOutcome::Chunk(c, repaired)) => {
                report.chunks += 1;
                report.records += c.records;
                if repaired {
                    report.repaired += 1;
                }
                chunks.push(c);
            }
            Ok(ResumeOutcome::Empty) => {}
            Err(reason) => {
                error!(buffer = %name, file = %path.display(), reason = %reason, "damaged buffer chunk; moving it to quarantine");
                match move_to_quarantine(dir, &path) {
                    Ok(q) => report.quarantined.push(q),
                    Err(e) => error!(
                        buffer = %name,
                        file = %path.display(),
                        error = %e,
                        "could not quarantine damaged chunk; leaving it in place and skipping it"
                    ),
                }
            }
        }
    }
    chunks.sort_by(|a, b| {
        a.header
            .created
            .cmp(&b.header.created)
            .then_with(|| a.path.cmp(&b.path))
    });
    if report.chunks > 0 || !report.quarantined.is_empty() {
        info!(
            buffer = %name,
            chunks = report.chunks,
            records = report.records,
            repaired = report.repaired,
            quarantined = report.quarantined.len(),
            "resumed file buffer"
        );
    }
    Ok((chunks, report))
}

enum ResumeOutcome {
    Chunk(ResumedChunk, bool),
    Empty,
}

/// Resume one file. `Err(reason)` means it must be quarantined.
fn resume_one(path: &Path, name: &str) -> Result<ResumeOutcome, String> {
    let buf = fs::read(path).map_err(|e| format!("read failed: {e}"))?;
    if buf.is_empty() {
        // Created but never written: nothing was ever acknowledged from it.
        info!(buffer = %name, file = %path.display(), "deleting empty chunk file");
        let _ = fs::remove_file(path);
        return Ok(ResumeOutcome::Empty);
    }
    let scanned = chunk::scan(&buf).map_err(|e| e.to_string())?;
    let expected_name = chunk::file_name(scanned.header.id);
    if path.file_name().and_then(|n| n.to_str()) != Some(expected_name.as_str()) {
        return Err(format!(
            "header chunk id {} does not match the file name",
            scanned.header.id
        ));
    }
    let mut repaired = false;
    if let Some(torn) = &scanned.torn_tail {
        warn!(
            buffer = %name,
            file = %path.display(),
            valid_len = torn.valid_len,
            cut_bytes = buf.len() as u64 - torn.valid_len,
            reason = %torn.reason,
            "cutting torn tail of buffer chunk"
        );
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| format!("open for repair failed: {e}"))?;
        f.set_len(torn.valid_len)
            .and_then(|_| f.sync_data())
            .map_err(|e| format!("truncating torn tail failed: {e}"))?;
        repaired = true;
    }
    if scanned.appends.is_empty() {
        info!(buffer = %name, file = %path.display(), "deleting chunk file without appends");
        let _ = fs::remove_file(path);
        return Ok(ResumeOutcome::Empty);
    }
    Ok(ResumeOutcome::Chunk(
        ResumedChunk {
            records: scanned.records(),
            bytes: scanned.entries_bytes(),
            marks: {
                let mut m = super::marks::Positions::new();
                super::marks::merge(&mut m, scanned.marks.iter().map(|(k, p)| (k, p)));
                m
            },
            header: scanned.header,
            path: path.to_path_buf(),
        },
        repaired,
    ))
}

/// A chunk read back from its file.
#[derive(Debug)]
pub struct ReadChunk {
    pub records: u64,
    pub entries: Bytes,
    /// The entries' origin segments (empty when no append has an origin).
    pub segments: Vec<crate::origin::Segment>,
}

/// Why a chunk file could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Damaged(#[from] ScanError),
}

/// Read a chunk file and return its entries (checksums verified).
pub fn read_chunk(path: &Path) -> Result<ReadChunk, ReadError> {
    let buf = fs::read(path)?;
    let scanned = chunk::scan(&buf)?;
    if let Some(torn) = &scanned.torn_tail {
        warn!(file = %path.display(), reason = %torn.reason, "chunk has a torn tail; handing out its valid part");
    }
    let records = scanned.records();
    let segments = chunk::segments(&buf, &scanned);
    let entries = chunk::into_entries(buf, &scanned);
    Ok(ReadChunk {
        records,
        entries,
        segments,
    })
}

/// Delete a chunk file (a missing file counts as deleted).
pub fn remove_chunk(path: &Path) -> Result<(), BufferError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path, e)),
    }
}

/// Move a chunk file into `<dir>/quarantine/`, keeping its name (a numeric suffix is added if
/// that name is taken). Returns the new path.
pub fn move_to_quarantine(dir: &Path, path: &Path) -> Result<PathBuf, BufferError> {
    let qdir = dir.join(QUARANTINE_DIR);
    crate::durable_fs::create_dir_all_durably(&qdir).map_err(|e| io_err(&qdir, e))?;
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "chunk".to_string());
    let mut target = qdir.join(&base);
    let mut n = 1;
    while target.exists() {
        target = qdir.join(format!("{base}.{n}"));
        n += 1;
    }
    fs::rename(path, &target).map_err(|e| io_err(path, e))?;
    sync_dir(&qdir).map_err(|e| io_err(&qdir, e))?;
    sync_dir(dir).map_err(|e| io_err(dir, e))?;
    Ok(target)
}
