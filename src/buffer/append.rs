//! The write path: `Buffer::append`, from a batch to durable bytes in staged chunks.
//!
//! Owns splitting a batch by chunk key (tag, timekey bucket) and at entry boundaries, placing
//! the pieces into staged chunks (opening new chunks and sealing full ones), and handing file
//! writes to the group-commit writer thread ([`super::file`]) and accounting for their outcome.
//! It must not queue or hand out chunks itself (that is `queue`), decide about overflow (that is
//! `overflow`), nor acknowledge anything before the writer reports the bytes durable.

use super::config::FlushMode;
use super::{
    chunk, file, memory, Buffer, BufferError, ChunkId, ChunkKey, ChunkMeta, ChunkState,
    ChunkStorage, Shared, Stage, State, Wait, Waiting,
};
use crate::event::{EntryIter, EventBatch};
use crate::pipeline::SourceMark;
use bytes::Bytes;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::oneshot;
use tracing::{error, warn};

/// One slice of a batch bound for one chunk key.
struct Piece {
    key: ChunkKey,
    entries: Bytes,
    records: u32,
    /// The origin id of a labelled piece (see [`crate::origin`]): such a piece is stored whole,
    /// in one append, with its id.
    origin: Option<Bytes>,
}

/// What a piece of an append became once placed in a chunk: a write for the writer thread.
struct PlannedWrite {
    chunk: ChunkId,
    file: Arc<file::ChunkFile>,
    entries: Bytes,
    records: u32,
    /// A marked append's source position (key, position).
    mark: Option<(String, u64)>,
    /// The entries' origin id.
    origin: Option<Bytes>,
}

impl Buffer {
    /// Store a batch; returns Ok only when it is durable (file: written + fsynced; memory: at
    /// once, and NOT durable). A batch larger than a chunk is split at entry boundaries into
    /// several chunks; all of it is durable before Ok. On `Err(Io)` some pieces of a split
    /// batch may still have been stored (the sender retries: at-least-once).
    pub async fn append(&self, batch: &EventBatch) -> Result<(), BufferError> {
        self.append_inner(batch, None).await
    }

    /// Store a batch together with a source position, in ONE append of ONE chunk (so both
    /// are durable at the same instant, see [`super::marks`]); Ok when both are durable. A
    /// batch that would have to be split (larger than a chunk, or spanning timekey buckets) is
    /// refused with [`BufferError::MarkSpansChunks`] before anything is written: the caller
    /// sends it in smaller parts. A memory buffer stores the batch and ignores the position.
    pub async fn append_marked(
        &self,
        batch: &EventBatch,
        mark: &SourceMark,
    ) -> Result<(), BufferError> {
        self.append_inner(batch, Some(mark)).await
    }

    async fn append_inner(
        &self,
        batch: &EventBatch,
        mark: Option<&SourceMark>,
    ) -> Result<(), BufferError> {
        if batch.entries.is_empty() {
            return Ok(());
        }
        let shared = &self.shared;
        let pieces = shared.split_batch(batch)?;
        if mark.is_some() {
            let limit = shared.settings.chunk_limit_size.min(chunk::MAX_APPEND_LEN);
            if pieces.len() != 1 || batch.entries.len() as u64 > limit {
                return Err(BufferError::MarkSpansChunks {
                    size: batch.entries.len() as u64,
                    limit,
                });
            }
        }
        let mark = mark.map(|m| (m.key.clone(), m.position));
        let size = batch.entries.len() as u64;
        let (writes, dropped) = loop {
            let notified = shared.space_freed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let _waiting = {
                let mut st = shared.lock();
                if st.closed {
                    return Err(BufferError::Closed);
                }
                if let Some(dropped) = shared.admit(&mut st, size)? {
                    let writes = shared.assign(&mut st, pieces, &batch.tag, mark.clone());
                    break (writes, dropped);
                }
                Waiting::start(shared, &mut st, Wait::Append)
            };
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
}

impl Shared {
    /// Split a batch into pieces: by origin segment (see [`crate::origin`]), then by chunk key
    /// (timekey buckets when `time` is a chunk key); refuse entries that can never fit in a
    /// chunk. A labelled segment's pieces are also cut to fit an empty chunk, at places that
    /// depend only on the segment, and labelled with the segment's id (or part ids when cut).
    fn split_batch(&self, batch: &EventBatch) -> Result<Vec<Piece>, BufferError> {
        let labelled = !batch.segments.is_empty() || batch.origin_chunk.is_some();
        if !labelled || !self.settings.keep_origins {
            return self.split_entries(&batch.tag, &batch.entries, batch.count);
        }
        let mut pieces = Vec::new();
        let mut at = 0usize;
        for segment in batch.origin_segments() {
            let entries = batch.entries.slice(at..at + segment.len);
            at += segment.len;
            let mut mine = self.split_entries(&batch.tag, &entries, segment.count)?;
            if let Some(origin) = segment.origin {
                mine = self.cut_to_fit(mine);
                let ids = crate::origin::part_ids(&origin, mine.len());
                for (piece, id) in mine.iter_mut().zip(ids) {
                    piece.origin = Some(id);
                }
            }
            pieces.extend(mine);
        }
        Ok(pieces)
    }

    /// Cut pieces larger than an empty chunk takes (bytes or records) into runs of whole
    /// entries that fit, each run as long as it can be.
    fn cut_to_fit(&self, pieces: Vec<Piece>) -> Vec<Piece> {
        let s = &self.settings;
        let max_bytes = s.chunk_limit_size.min(chunk::MAX_APPEND_LEN);
        let max_records = s.chunk_limit_records.max(1);
        let mut out = Vec::with_capacity(pieces.len());
        for piece in pieces {
            if piece.entries.len() as u64 <= max_bytes && piece.records as u64 <= max_records {
                out.push(piece);
                continue;
            }
            let mut rest = piece.entries.clone();
            while !rest.is_empty() {
                let (bytes, records) = prefix_fitting(&rest, max_bytes, max_records);
                // Entries were size-checked; a malformed tail stays whole.
                let (bytes, records) = if records == 0 {
                    (rest.len(), 1)
                } else {
                    (bytes, records)
                };
                out.push(Piece {
                    key: piece.key.clone(),
                    entries: rest.split_to(bytes),
                    records,
                    origin: None,
                });
            }
        }
        out
    }

    /// Split entries by chunk key (timekey buckets when `time` is a chunk key), and refuse
    /// entries that can never fit in a chunk.
    fn split_entries(
        &self,
        tag: &str,
        batch_entries: &Bytes,
        count: u32,
    ) -> Result<Vec<Piece>, BufferError> {
        let s = &self.settings;
        let tag_key = if s.chunk_by_tag {
            tag.to_string()
        } else {
            String::new()
        };
        let limit = s.chunk_limit_size.min(chunk::MAX_APPEND_LEN);
        let oversized = batch_entries.len() as u64 > limit;
        let Some(tk) = s.timekey else {
            if oversized {
                for e in EntryIter::new(batch_entries) {
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
                entries: batch_entries.clone(),
                records: count.max(1),
                origin: None,
            }]);
        };
        // Runs of consecutive entries in the same bucket: (bucket, start, end, records).
        let mut runs: Vec<(i64, usize, usize, u32)> = Vec::new();
        let mut pos = 0usize;
        for e in EntryIter::new(batch_entries) {
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
                batch_entries.slice(one.1..one.2)
            } else {
                let mut joined =
                    bytes::BytesMut::with_capacity(mine.iter().map(|r| r.2 - r.1).sum());
                for r in &mine {
                    joined.extend_from_slice(&batch_entries[r.1..r.2]);
                }
                joined.freeze()
            };
            pieces.push(Piece {
                key: (tag_key.clone(), Some(bucket)),
                entries,
                records,
                origin: None,
            });
        }
        Ok(pieces)
    }

    /// Place the pieces into staged chunks (opening and sealing chunks as they fill). Memory
    /// chunks take the entries at once; file chunks get writes to submit.
    ///
    /// With a `mark` (one piece, checked by the caller) the piece is kept whole: if the open
    /// chunk has no room for it, that chunk is sealed and a fresh one takes it. So is a piece
    /// with an origin (cut to fit an empty chunk by `split_batch`).
    fn assign(
        &self,
        st: &mut State,
        pieces: Vec<Piece>,
        batch_tag: &str,
        mark: Option<(String, u64)>,
    ) -> Vec<PlannedWrite> {
        let s = &self.settings;
        let limit = s.chunk_limit_size.min(chunk::MAX_APPEND_LEN);
        let mut writes = Vec::new();
        let mut touched = Vec::new();
        for piece in pieces {
            let whole = mark.is_some() || piece.origin.is_some();
            let mut rest = piece.entries;
            let mut rest_records = piece.records;
            while !rest.is_empty() {
                let id = self.open_chunk(st, &piece.key, batch_tag);
                let Some(c) = st.chunks.get(&id) else {
                    break;
                };
                let room_bytes = limit.saturating_sub(c.meta.bytes);
                let room_records = s.chunk_limit_records.saturating_sub(c.meta.records);
                let fits = rest.len() as u64 <= room_bytes && rest_records as u64 <= room_records;
                if whole && !fits && c.meta.records > 0 {
                    self.seal(st, id);
                    continue;
                }
                // A marked batch or labelled piece is never split (the chunk was sealed above
                // unless it fits or the chunk is empty).
                let (take_bytes, take_records) = if whole || fits {
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
                            mark: mark.clone(),
                            origin: piece.origin.clone(),
                        });
                    }
                    ChunkStorage::Memory(m) => m.push(part, records, piece.origin.clone()),
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
                marks: Default::default(),
            },
        );
        st.open.insert(key.clone(), id);
        if flush_at.is_some() {
            self.schedule_changed.notify_one();
        }
        id
    }

    /// Hand a planned write to the writer thread; the receiver resolves when it is durable.
    fn submit(self: &Arc<Self>, w: PlannedWrite) -> oneshot::Receiver<std::io::Result<()>> {
        let (tx, rx) = oneshot::channel();
        let mark_trailer = w.mark.as_ref().map(|(k, p)| chunk::mark_trailer(k, *p));
        let (head, trailer) = match (&w.origin, mark_trailer) {
            (None, None) => (chunk::append_header(&w.entries, w.records), None),
            (None, Some(t)) => (
                chunk::trailed_append_header(&w.entries, &t, w.records, chunk::MARKED_APPEND),
                Some(t),
            ),
            (Some(origin), mark) => {
                debug_assert!(!origin.is_empty() && origin.len() <= crate::origin::MAX_ORIGIN_LEN);
                let flags = chunk::ORIGIN_APPEND
                    | if mark.is_some() {
                        chunk::MARKED_APPEND
                    } else {
                        0
                    };
                let t = chunk::origin_trailer(origin, mark.as_deref());
                (
                    chunk::trailed_append_header(&w.entries, &t, w.records, flags),
                    Some(t),
                )
            }
        };
        let shared = self.clone();
        let (id, bytes, records) = (w.chunk, w.entries.len() as u64, w.records as u64);
        let mark = w.mark;
        let job = file::AppendJob {
            file: w.file,
            head,
            entries: w.entries,
            trailer,
            done: Box::new(move |result| {
                if result.is_ok() {
                    if let Some((k, p)) = &mark {
                        shared.keep_mark(id, k, *p);
                    }
                }
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

    /// A marked append is durable: remember its position with its chunk (for the ledger).
    fn keep_mark(&self, id: ChunkId, key: &str, position: u64) {
        let mut st = self.lock();
        if let Some(c) = st.chunks.get_mut(&id) {
            let slot = c.marks.entry(key.to_string()).or_insert(position);
            if *slot < position {
                *slot = position;
            }
        }
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
