//! The tail loop of one `<source> @type tail`, on its own thread: discover files, notice
//! rotation, read batches, emit them with their positions, keep the pos file.
//!
//! Owns the per-source state (the files being read, by inode) and the order of a round; it
//! must not do I/O on the tokio runtime (it only waits there for emits, from its own thread),
//! and never moves a file's committed position before the emit of the data up to it returned
//! Ok.

use super::config::{TailInputConfig, MAX_LINE_CAP};
use super::pos_file::{self, Head, PosEntry, PosTable};
use super::reader::{pack, unpack, ReadSettings, TailedFile};
use super::watch::{self, Found};
use crate::event::{EventBatch, EventTime};
use crate::log_limit::WarnLimiter;
use crate::pipeline::{Emit, EmitError, SourceMark};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The pos file is rewritten at most this often (and at shutdown).
pub const POS_WRITE_INTERVAL: Duration = Duration::from_millis(200);
/// A round stops reading further files once its batches hold this many bytes (bounds the
/// memory of a round over many files; the next round starts with the files left out).
pub const ROUND_BYTES: usize = 8 << 20;
/// Wait after an emit failed for another reason than size (buffer full, storage error).
const RETRY_AFTER: Duration = Duration::from_secs(1);

pub(super) struct Tailer {
    pub(super) cfg: TailInputConfig,
    pub(super) emit: Arc<dyn Emit>,
    /// Prefix of this source's mark keys (`<source id>\t`).
    pub(super) key_prefix: String,
    pub(super) handle: tokio::runtime::Handle,
    pub(super) stop: CancellationToken,
}

struct State {
    files: HashMap<u64, TailedFile>,
    /// Positions known at start: the buffer's marks (packed) and the pos file's, by inode.
    recovered: HashMap<u64, u64>,
    saved: PosTable,
    /// The heads file's entries at start, by inode (see `pos_file`).
    heads: HashMap<u64, Head>,
    /// Whether this source ever saved a position (else files present at the first start
    /// are read from their end unless `read_from_head`).
    has_state: bool,
    exclude: Vec<glob::Pattern>,
    warned: HashSet<PathBuf>,
    pos_dirty: bool,
    last_pos_write: Instant,
    emit_failures: WarnLimiter,
    /// Round robin: where the next round starts among the files (by inode order).
    next_first: usize,
}

impl Tailer {
    pub(super) fn run(self) {
        let mut st = self.load_state();
        let mut next_refresh = if self.cfg.skip_refresh_on_startup {
            Instant::now() + self.cfg.refresh_interval
        } else {
            self.refresh(&mut st, true);
            Instant::now() + self.cfg.refresh_interval
        };
        // From here on, a file that appears under the globs is found by the next scan.
        tracing::info!(paths = %self.cfg.paths.join(","), following = st.files.len(), "tail input watching");
        let mut buf = Vec::new();
        while !self.stop.is_cancelled() {
            if Instant::now() >= next_refresh {
                self.refresh(&mut st, false);
                next_refresh = Instant::now() + self.cfg.refresh_interval;
            }
            self.check_rotation(&mut st);
            let progress = self.round(&mut st, &mut buf);
            self.drop_finished(&mut st);
            if st.pos_dirty && st.last_pos_write.elapsed() >= POS_WRITE_INTERVAL {
                self.write_pos(&mut st);
            }
            match progress {
                Round::Progress => {}
                Round::Idle => self.sleep(self.cfg.poll_interval),
                Round::Failed => self.sleep(RETRY_AFTER),
            }
        }
        self.write_pos(&mut st);
    }

    fn sleep(&self, d: Duration) {
        let stop = self.stop.clone();
        self.handle.block_on(async move {
            let _ = tokio::time::timeout(d, stop.cancelled()).await;
        });
    }

    fn load_state(&self) -> State {
        let saved = match &self.cfg.pos_file {
            Some(p) => pos_file::read(p).unwrap_or_else(|e| {
                tracing::warn!(pos_file = %p.display(), error = %e, "cannot read pos file; starting without it");
                PosTable::new()
            }),
            None => PosTable::new(),
        };
        let heads = match &self.cfg.pos_file {
            Some(p) => pos_file::read_heads(&pos_file::heads_path(p)).unwrap_or_else(|e| {
                tracing::warn!(pos_file = %p.display(), error = %e, "cannot read the pos file's heads; rewritten files are noticed only while running");
                HashMap::new()
            }),
            None => HashMap::new(),
        };
        let mut recovered = HashMap::new();
        for (key, position) in self.emit.recovered_marks() {
            if let Some(inode) = key
                .strip_prefix(&self.key_prefix)
                .and_then(|h| u64::from_str_radix(h, 16).ok())
            {
                recovered.insert(inode, position);
            }
        }
        let exclude = self
            .cfg
            .exclude_paths
            .iter()
            .filter_map(|p| match glob::Pattern::new(p) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(exclude_path = %p, error = %e, "invalid exclude_path pattern; ignored");
                    None
                }
            })
            .collect();
        State {
            has_state: !saved.is_empty() || !recovered.is_empty(),
            files: HashMap::new(),
            recovered,
            saved,
            heads,
            exclude,
            warned: HashSet::new(),
            pos_dirty: false,
            // The first positions are written at once.
            last_pos_write: Instant::now()
                .checked_sub(POS_WRITE_INTERVAL)
                .unwrap_or_else(Instant::now),
            emit_failures: WarnLimiter::default(),
            next_first: 0,
        }
    }

    /// Where to start reading a file not yet watched: (generation, offset).
    fn start_of(&self, st: &State, f: &Found, startup: bool) -> (u32, u64) {
        let marked = st.recovered.get(&f.inode).map(|p| unpack(*p));
        // The pos file has no generation; the heads file, written with it, does.
        let saved = st
            .saved
            .get(&f.inode)
            .map(|e| match st.heads.get(&f.inode) {
                Some(h) if h.commit == e.pos => (h.generation, e.pos),
                _ => (0, e.pos),
            });
        // The buffer's marks are newer, except after a truncation seen just before a stop:
        // then the pos file already says "read again from the start" in a newer generation.
        let known = match (marked, saved) {
            (Some(m), Some(s)) if s.0 > m.0 => Some(s),
            (Some(m), _) => Some(m),
            (None, s) => s,
        };
        match known {
            // Shorter than the position: truncated while we were away.
            Some((generation, offset)) if offset > f.size => (generation + 1, 0),
            Some(known) => known,
            None if startup && !self.cfg.read_from_head && !st.has_state => (0, f.size),
            None => (0, 0),
        }
    }

    fn watch(&self, st: &mut State, f: &Found, startup: bool, rotated: bool) {
        let (generation, offset) = self.start_of(st, f, startup);
        let tag = watch::tag_for(&self.cfg.tag, &f.path);
        match TailedFile::open(
            f.path.clone(),
            f.inode,
            tag,
            &self.cfg.parse,
            generation,
            offset,
            self.cfg.read_lines_limit,
        ) {
            Ok(mut t) => {
                if let Some(head) = self.saved_head(st, f.inode, generation, offset) {
                    t.expect_head(head);
                }
                tracing::info!(path = %f.path.display(), inode = f.inode, offset, rotated, "following file");
                if rotated {
                    t.rotated_at = Some(Instant::now());
                }
                st.warned.remove(&f.path);
                st.files.insert(f.inode, t);
                st.pos_dirty = true;
            }
            Err(e) => self.warn_unreadable(st, &f.path, &e),
        }
    }

    /// The saved head that describes the content a restart continues in at (`generation`,
    /// `offset`), if one does (and has a checksum): a position from the buffer's marks is
    /// newer than the heads file and is in the same content only in the same generation; one
    /// from the pos file only if the heads file was written with it (same position).
    fn saved_head(&self, st: &State, inode: u64, generation: u32, offset: u64) -> Option<Head> {
        let head = *st.heads.get(&inode)?;
        let same_content = match st.recovered.get(&inode).map(|p| unpack(*p)) {
            Some((g, o)) if (g, o) == (generation, offset) => head.generation == generation,
            _ => head.commit == offset && head.generation == generation,
        };
        (offset > 0 && head.len > 0 && same_content).then_some(head)
    }

    fn warn_unreadable(&self, st: &mut State, path: &std::path::Path, e: &std::io::Error) {
        if e.kind() == std::io::ErrorKind::NotFound {
            return;
        }
        // Warned at every refresh, or only the first time with
        // ignore_repeated_permission_error (the flag clears once the file could be opened).
        let first = st.warned.insert(path.to_path_buf());
        if first || !self.cfg.ignore_repeated_permission_error {
            tracing::warn!(path = %path.display(), error = %e, "cannot read file; skipped");
        }
    }

    /// Expand the globs: follow new files; files gone from the globs are rotated.
    fn refresh(&self, st: &mut State, startup: bool) {
        let mut unreadable = Vec::new();
        let found = watch::expand(
            &self.cfg.paths,
            &st.exclude,
            self.cfg.limit_recently_modified,
            &mut unreadable,
        );
        for u in unreadable {
            self.warn_unreadable(st, &u.path, &u.error);
        }
        for f in found.values() {
            match st.files.get_mut(&f.inode) {
                Some(t) => {
                    if t.path != f.path || t.rotated_at.is_some() {
                        t.path = f.path.clone();
                        t.rotated_at = None;
                    }
                }
                None => self.watch(st, f, startup, false),
            }
        }
        for t in st.files.values_mut() {
            if t.rotated_at.is_none() && !found.contains_key(&t.inode) {
                t.rotated_at = Some(Instant::now());
            }
        }
        if startup {
            // Files rotated away while we were stopped, with lines not yet read.
            let missing: BTreeSet<u64> = st
                .recovered
                .keys()
                .chain(st.saved.keys())
                .copied()
                .filter(|i| !found.contains_key(i))
                .collect();
            let dirs = watch::search_dirs(&self.cfg.paths, found.values());
            for f in watch::find_inodes(&dirs, &missing).into_values() {
                let (_, offset) = self.start_of(st, &f, true);
                if f.size > offset {
                    self.watch(st, &f, true, true);
                }
            }
        }
    }

    /// A watched path that now holds another file (or none): the old one is rotated, a new
    /// one there is followed from its start.
    fn check_rotation(&self, st: &mut State) {
        let mut new_files = Vec::new();
        for t in st.files.values_mut() {
            if t.rotated_at.is_some() {
                continue;
            }
            match std::fs::metadata(&t.path) {
                Ok(m) if m.ino() == t.inode => {}
                Ok(m) => {
                    t.rotated_at = Some(Instant::now());
                    if m.is_file() {
                        new_files.push(Found {
                            path: t.path.clone(),
                            inode: m.ino(),
                            size: m.len(),
                        });
                    }
                }
                Err(_) => t.rotated_at = Some(Instant::now()),
            }
        }
        for f in new_files {
            if !st.files.contains_key(&f.inode)
                && !st.exclude.iter().any(|x| x.matches_path(&f.path))
            {
                self.watch(st, &f, false, false);
            }
        }
    }

    fn drop_finished(&self, st: &mut State) {
        let wait = self.cfg.rotate_wait;
        let before = st.files.len();
        st.files.retain(|_, t| match t.rotated_at {
            Some(at) if at.elapsed() >= wait && t.caught_up() => {
                tracing::info!(path = %t.path.display(), inode = t.inode, "stopped following rotated file");
                false
            }
            _ => true,
        });
        if st.files.len() != before {
            st.pos_dirty = true;
        }
    }

    /// Read one batch from every file with new lines and emit them together (one in flight
    /// per file, so their group commit shares fsyncs).
    fn round(&self, st: &mut State, buf: &mut Vec<u8>) -> Round {
        let now = EventTime::now();
        let settings = ReadSettings {
            max_line: self
                .cfg
                .max_line_size
                .unwrap_or(MAX_LINE_CAP)
                .min(MAX_LINE_CAP),
            bytes_per_second: self.cfg.read_bytes_limit_per_second,
            path_key: self.cfg.path_key.as_deref(),
            emit_unmatched: self.cfg.emit_unmatched_lines,
        };
        let mut jobs = Vec::new();
        let mut round_bytes = 0usize;
        let mut order: Vec<u64> = st.files.keys().copied().collect();
        order.sort_unstable();
        if !order.is_empty() {
            let start = st.next_first % order.len();
            order.rotate_left(start);
        }
        for inode in order {
            if round_bytes >= ROUND_BYTES {
                break;
            }
            st.next_first = st.next_first.wrapping_add(1);
            let Some(t) = st.files.get_mut(&inode) else {
                continue;
            };
            if !t.reopen() {
                t.rotated_at.get_or_insert_with(Instant::now);
                continue;
            }
            let head = t.head();
            let read = t.read_batch(&settings, buf, now);
            if t.head() != head {
                st.pos_dirty = true; // the heads file changes
            }
            match read {
                Ok(Some(b)) if b.count == 0 => {
                    t.commit = b.commit_to;
                    st.pos_dirty = true;
                }
                Ok(Some(b)) => {
                    round_bytes += b.entries.len();
                    jobs.push((inode, b));
                }
                Ok(None) => {
                    let flushed = self
                        .cfg
                        .multiline_flush_interval
                        .and_then(|idle| t.flush_idle(idle, self.cfg.path_key.as_deref(), now));
                    match flushed {
                        Some(b) if b.count == 0 => {
                            t.commit = b.commit_to;
                            st.pos_dirty = true;
                        }
                        Some(b) => {
                            round_bytes += b.entries.len();
                            jobs.push((inode, b));
                        }
                        None => {
                            if self.cfg.open_on_every_update {
                                t.close();
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(path = %t.path.display(), error = %e, "read failed; will retry");
                    t.rewind();
                }
            }
        }
        if jobs.is_empty() {
            return Round::Idle;
        }
        let mut pending = Vec::with_capacity(jobs.len());
        for (inode, b) in jobs {
            let t = &st.files[&inode];
            let batch = EventBatch {
                tag: t.tag.clone(),
                entries: b.entries,
                count: b.count,
                origin_chunk: None,
                segments: Vec::new(),
            };
            let mark = SourceMark {
                key: format!("{}{inode:016x}", self.key_prefix),
                position: pack(t.generation, b.commit_to),
            };
            let emit = self.emit.clone();
            let task = self
                .handle
                .spawn(async move { emit.emit_marked(batch, mark).await });
            pending.push((inode, b.commit_to, task));
        }
        let mut outcome = Round::Progress;
        for (inode, commit_to, task) in pending {
            let result = self
                .handle
                .block_on(task)
                .unwrap_or_else(|e| Err(EmitError::Storage(format!("emit task failed: {e}"))));
            let Some(t) = st.files.get_mut(&inode) else {
                continue;
            };
            match result {
                Ok(()) => {
                    t.commit = commit_to;
                    t.lines_limit = (t.lines_limit * 2).min(self.cfg.read_lines_limit);
                    st.pos_dirty = true;
                }
                Err(EmitError::TooLarge(reason)) if t.lines_limit > 1 => {
                    t.lines_limit /= 2;
                    tracing::debug!(path = %t.path.display(), lines = t.lines_limit, %reason, "batch too large to commit as one; reading fewer lines");
                    t.rewind();
                }
                Err(EmitError::TooLarge(reason)) => {
                    tracing::error!(path = %t.path.display(), offset = t.commit, %reason, "a single line is too large for the buffer; skipped");
                    t.commit = commit_to;
                    t.rewind();
                    st.pos_dirty = true;
                }
                Err(EmitError::ShuttingDown) => {
                    t.rewind();
                }
                Err(e) => {
                    if let Some(held) = st.emit_failures.check() {
                        tracing::warn!(path = %t.path.display(), error = %e, failures_since_last_warning = held + 1, "could not store lines; retrying from the committed position");
                    }
                    t.rewind();
                    outcome = Round::Failed;
                }
            }
        }
        outcome
    }

    fn write_pos(&self, st: &mut State) {
        st.last_pos_write = Instant::now();
        let Some(path) = &self.cfg.pos_file else {
            st.pos_dirty = false;
            return;
        };
        let mut entries: Vec<PosEntry> = st
            .files
            .values()
            .map(|t| PosEntry {
                path: t.path.clone(),
                pos: t.commit,
                inode: t.inode,
            })
            .collect();
        entries.sort_by(|a, b| a.path.cmp(&b.path).then(a.inode.cmp(&b.inode)));
        let mut heads: Vec<(u64, Head)> = st.files.values().map(|t| (t.inode, t.head())).collect();
        heads.sort_by_key(|(inode, _)| *inode);
        match pos_file::write(path, &entries, &heads) {
            Ok(()) => st.pos_dirty = false,
            Err(e) => {
                tracing::warn!(pos_file = %path.display(), error = %e, "cannot write pos file; positions stay committed in the buffer")
            }
        }
    }
}

enum Round {
    Progress,
    Idle,
    Failed,
}
