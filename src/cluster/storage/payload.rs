//! Where a stored chunk's payload (its msgpack entries) lives, and which Raft log entries a
//! purge must keep.
//!
//! A chunk's payload is written once per node: in the Raft log entry that carried it. The state
//! machine stores only the chunk's metadata (`sm_chunk_meta`) and refers to the log entry at the
//! chunk's index. A payload is in `sm_chunk_data` instead when the stored chunk is not the whole
//! request (an `AppendSegments` whose duplicate segments were left out) or when it came with an
//! installed snapshot.
//!
//! So a purge must not delete the entry of a chunk that is not confirmed yet:
//! [`PayloadStore::purge_log`] deletes the purged range except those entries, which stay
//! below openraft's purge point (openraft never reads there; the log store reports the purge
//! point, not them) until the chunk is confirmed: then its `DeleteChunk` deletes the entry
//! too ([`PayloadGuard::log_purged`] tells the state machine's write whether the entry is its
//! to delete). Installing a snapshot deletes the entries kept for the chunks it replaces
//! ([`PayloadGuard::forget_kept_into`]). Nothing is copied: a backlog (chunks waiting for an
//! unreachable bucket) simply keeps its entries, and a purge reads only chunk ids.
//!
//! Reading is [`PayloadStore::read`]: `sm_chunk_data`, else the log entry. Purges, the state
//! machine's writes and snapshot installs hold [`PayloadStore::lock`], so a chunk confirmed
//! while a purge decides what to keep never leaves its entry behind.
//!
//! Owns that rule and nothing else: it must not decide which chunks exist (the state machine
//! does) nor when the log is purged (openraft does, through the log store).

use super::db::{cf, decode, decode_index_key, index_key, CF_CHUNK_DATA, CF_CHUNK_META, CF_LOG};
use crate::cluster::{ClusterError, ClusterRequest, TypeConfig};
use bytes::Bytes;
use openraft::{Entry, EntryPayload};
use rocksdb::{Direction, IteratorMode, ReadOptions, SnapshotWithThreadMode, WriteBatch, DB};
use std::sync::{Arc, Mutex, MutexGuard};
use tracing::debug;

/// The payload rule over the node's database (see the module doc). Cheap to share.
pub(crate) struct PayloadStore {
    db: Arc<DB>,
    /// The log's purge point (last purged index), changed only under this lock.
    purged: Mutex<Option<u64>>,
}

/// [`PayloadStore::lock`]: while held, no purge runs and the purge point stands still.
pub(crate) struct PayloadGuard<'a> {
    store: &'a PayloadStore,
    purged: MutexGuard<'a, Option<u64>>,
}

impl PayloadGuard<'_> {
    /// The log's purge point: a chunk at or below it has its entry kept only for it, so
    /// deleting the chunk deletes that entry too.
    pub(crate) fn log_purged(&self) -> Option<u64> {
        *self.purged
    }

    /// For a snapshot install that replaces every chunk: delete the entries kept below the
    /// purge point for the chunks stored now (the snapshot brings its chunks' payloads).
    pub(crate) fn forget_kept_into(&self, batch: &mut WriteBatch) -> Result<(), ClusterError> {
        let Some(purged) = self.log_purged() else {
            return Ok(());
        };
        let db = &*self.store.db;
        let log_cf = cf(db, CF_LOG)?;
        let mut bounds = ReadOptions::default();
        bounds.set_iterate_upper_bound(index_key(purged.saturating_add(1)));
        for item in db.iterator_cf_opt(cf(db, CF_CHUNK_META)?, bounds, IteratorMode::Start) {
            let (key, _) = item?;
            batch.delete_cf(log_cf, key);
        }
        Ok(())
    }
}

impl PayloadStore {
    /// `purged`: the log's purge point as stored.
    pub(crate) fn new(db: Arc<DB>, purged: Option<u64>) -> Arc<Self> {
        Arc::new(PayloadStore {
            db,
            purged: Mutex::new(purged),
        })
    }

    /// Held by whoever writes chunk records, installs a snapshot or purges the log.
    pub(crate) fn lock(&self) -> PayloadGuard<'_> {
        PayloadGuard {
            store: self,
            purged: self.purged.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// [`PayloadStore::read_into`] into a new buffer: `None` if there is no such chunk.
    /// Blocking.
    pub(crate) fn read(&self, index: u64) -> Result<Option<Bytes>, ClusterError> {
        let mut out = Vec::new();
        Ok(self.read_into(index, &mut out)?.then(|| Bytes::from(out)))
    }

    /// The payload of the chunk stored at `index` into `out` (replacing what it held, reusing
    /// its allocation); `false` if there is none (unknown or confirmed). Blocking.
    pub(crate) fn read_into(&self, index: u64, out: &mut Vec<u8>) -> Result<bool, ClusterError> {
        let db = &*self.db;
        let key = index_key(index);
        if let Some(data) = db.get_pinned_cf(cf(db, CF_CHUNK_DATA)?, key)? {
            out.clear();
            out.extend_from_slice(&data);
            return Ok(true);
        }
        if db.get_pinned_cf(cf(db, CF_CHUNK_META)?, key)?.is_none() {
            return Ok(false);
        }
        match db.get_pinned_cf(cf(db, CF_LOG)?, key)? {
            Some(entry) => payload_of_entry_into(&entry, index, out).map(|()| true),
            None => Ok(false),
        }
    }

    /// [`PayloadStore::read`] in a consistent view of the database (the snapshot builder's),
    /// for a chunk the view holds.
    pub(crate) fn read_at(
        &self,
        view: &SnapshotWithThreadMode<'_, DB>,
        index: u64,
    ) -> Result<Option<Bytes>, ClusterError> {
        let db = &*self.db;
        let key = index_key(index);
        if let Some(data) = view.get_cf(cf(db, CF_CHUNK_DATA)?, key)? {
            return Ok(Some(Bytes::from(data)));
        }
        match view.get_cf(cf(db, CF_LOG)?, key)? {
            Some(entry) => payload_of_entry(&entry, index).map(Some),
            None => Ok(None),
        }
    }

    /// Purge the log entries `from..=upto` but those of chunks stored at one of those indexes
    /// (see the module doc): their deletes go into a batch that `write` completes (with the
    /// new purge point) and writes; then the purge point is `upto`. Blocking.
    pub(crate) fn purge_log(
        &self,
        from: u64,
        upto: u64,
        write: impl FnOnce(WriteBatch) -> Result<(), ClusterError>,
    ) -> Result<(), ClusterError> {
        let db = &*self.db;
        let mut guard = self.lock();
        let mut batch = WriteBatch::default();
        let log_cf = cf(db, CF_LOG)?;
        let mut next = from;
        let mut kept = 0usize;
        if from <= upto {
            let mut bounds = ReadOptions::default();
            bounds.set_iterate_upper_bound(index_key(upto.saturating_add(1)));
            let start = index_key(from);
            for item in db.iterator_cf_opt(
                cf(db, CF_CHUNK_META)?,
                bounds,
                IteratorMode::From(&start, Direction::Forward),
            ) {
                let (key, _) = item?;
                let index = decode_index_key(&key)?;
                delete_log_range(&mut batch, log_cf, next, index);
                next = index + 1;
                kept += 1;
            }
            delete_log_range(&mut batch, log_cf, next, upto.saturating_add(1));
        }
        write(batch)?;
        *guard.purged = Some(upto);
        if kept > 0 {
            debug!(
                from,
                upto, kept, "log purged; entries of unconfirmed chunks kept"
            );
        }
        Ok(())
    }
}

/// Delete log entries `start..end` (nothing if empty): one point delete for a short run, one
/// range tombstone for a longer one.
fn delete_log_range(batch: &mut WriteBatch, log_cf: &rocksdb::ColumnFamily, start: u64, end: u64) {
    if end <= start {
        return;
    }
    if end - start <= 4 {
        for index in start..end {
            batch.delete_cf(log_cf, index_key(index));
        }
    } else {
        batch.delete_range_cf(log_cf, index_key(start), index_key(end));
    }
}

/// The payload a log entry carries: the entries of its `AppendChunk`, `AppendSegments` or
/// `AppendCompressed` (decompressed).
fn payload_of_entry(stored_entry: &[u8], index: u64) -> Result<Bytes, ClusterError> {
    append_of_entry(stored_entry, index)?
        .events()?
        .ok_or_else(|| no_chunk_in_entry(index))
}

/// [`payload_of_entry`] into `out` (replacing what it held, reusing its allocation).
fn payload_of_entry_into(
    stored_entry: &[u8],
    index: u64,
    out: &mut Vec<u8>,
) -> Result<(), ClusterError> {
    append_of_entry(stored_entry, index)?
        .events_into(out)
        .map(drop)
}

/// The append request a stored log entry carries (the chunk stored at `index`).
fn append_of_entry(stored_entry: &[u8], index: u64) -> Result<ClusterRequest, ClusterError> {
    let entry: Entry<TypeConfig> = decode(stored_entry)?;
    match entry.payload {
        EntryPayload::Normal(request) if request.payload().is_some() => Ok(request),
        _ => Err(no_chunk_in_entry(index)),
    }
}

fn no_chunk_in_entry(index: u64) -> ClusterError {
    ClusterError::Corrupt(format!("chunk {index}: its log entry carries no chunk"))
}
