//! The queue: a chunk's way from staged to queued, in flight, and out of the buffer.
//!
//! Owns sealing staged chunks and queueing them oldest first, handing queued chunks out
//! (`dequeue`, skipping those whose not-before time has not come), putting failed ones back
//! (`release`, `release_after`, `retry_now`), and removing delivered or undeliverable ones
//! (`purge`, `quarantine`). It must not decide when a chunk is retried (the output driver
//! gives the not-before time) nor when a staged chunk is due (that is `schedule`).

use super::{
    file, Buffer, BufferError, Chunk, ChunkId, ChunkMeta, ChunkState, ChunkStorage, Shared, Stage,
    State, Wait, Waiting,
};
use bytes::Bytes;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::SystemTime;
use tracing::{debug, error, warn};

/// What `dequeue` took out of the queue, before reading it.
enum Taken {
    File(PathBuf),
    Memory(Bytes, Vec<crate::origin::Segment>),
}

impl Buffer {
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
                Taken::Memory(entries, segments) => {
                    guard.disarm();
                    return Some(Chunk {
                        meta,
                        entries,
                        segments,
                    });
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
                                segments: read.segments,
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
                let (dir, marks) = (self.shared.dir.clone(), removed.marks);
                // The positions it carried go to the ledger before the file goes away.
                tokio::task::spawn_blocking(move || {
                    keep_marks(dir.as_deref(), &marks, &path)?;
                    file::remove_chunk(&path)
                })
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
        let marks = removed.marks;
        match removed.storage {
            ChunkStorage::File(f) => {
                let dir = self.shared.dir.clone().unwrap_or_default();
                let path = f.path.clone();
                let moved = tokio::task::spawn_blocking(move || {
                    keep_marks(Some(&dir), &marks, &path)?;
                    file::move_to_quarantine(&dir, &path)
                })
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
    /// Stop a staged chunk from taking appends; queue it once its writes are done.
    pub(super) fn seal(&self, st: &mut State, id: ChunkId) {
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

    pub(super) fn seal_all_staged(&self, st: &mut State) {
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
    pub(super) fn enqueue(&self, st: &mut State, id: ChunkId) {
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

    /// Wait for the oldest queued chunk whose not-before time has come and mark it in
    /// flight; None when dequeue must stop.
    async fn take_next(&self) -> Option<(ChunkId, ChunkMeta, Taken)> {
        loop {
            let notified = self.queue_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (wake_at, _waiting) = {
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
                        ChunkStorage::Memory(m) => Taken::Memory(m.entries(), m.segments()),
                    };
                    let meta = c.meta.clone();
                    st.queue.remove(index);
                    return Some((id, meta, taken));
                }
                if st.closed && st.chunks.is_empty() {
                    return None;
                }
                (wake_at, Waiting::start(self, &mut st, Wait::Dequeue))
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
}

/// Merge a leaving chunk's source positions into the buffer's ledger (see `marks`).
fn keep_marks(
    dir: Option<&std::path::Path>,
    marks: &super::marks::Positions,
    chunk_path: &std::path::Path,
) -> Result<(), BufferError> {
    match dir {
        Some(dir) if !marks.is_empty() => {
            super::marks::record(dir, marks).map_err(|source| BufferError::Io {
                path: chunk_path.to_path_buf(),
                source: std::io::Error::new(
                    source.kind(),
                    format!("writing the source-position ledger: {source}"),
                ),
            })
        }
        _ => Ok(()),
    }
}

fn insert_by_age(
    queue: &mut VecDeque<(SystemTime, u64, ChunkId)>,
    entry: (SystemTime, u64, ChunkId),
) {
    let at = queue.partition_point(|q| (q.0, q.1) < (entry.0, entry.1));
    queue.insert(at, entry);
}
