//! The Raft log on RocksDB: entries, vote, committed and last-purged log ids.
//!
//! Owns [`LogStore`], openraft's [`RaftLogStorage`] and [`RaftLogReader`]. Every `append`
//! writes all its entries in one `WriteBatch` with `sync = true` — one WAL fsync per call — and
//! reports completion to openraft only after that write returned. Votes are synced too; the
//! committed id is written unsynced (openraft treats it as a hint, and the WAL is ordered).
//! A purge keeps the entries of chunks not yet confirmed, below the purge point, because they
//! hold the payloads ([`PayloadStore::purge_log`]); the log openraft sees starts after the
//! purge point all the same. It must not look inside application requests: that is the state
//! machine's job (and the payload rule's).
//!
//! Reads are served from the [`EntryCache`] of recent entries where it holds them (what
//! replication and apply read is almost always what was just appended), from RocksDB
//! otherwise; an entry enters the cache only after its synced write returned.

use super::db::{
    blocking, cf, decode, decode_index_key, encode, encode_sized, index_key, storage_error, CF_LOG,
    CF_RAFT_META,
};
use super::entry_cache::EntryCache;
use super::payload::PayloadStore;
use crate::cluster::{ClusterError, NodeId, TypeConfig};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageError,
    Vote,
};
use rocksdb::{IteratorMode, ReadOptions, WriteBatch, WriteOptions, DB};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use tracing::debug;

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// The Raft log half of the node's storage. Cheap to clone (it is also its own reader).
#[derive(Clone)]
pub(crate) struct LogStore {
    db: Arc<DB>,
    payloads: Arc<PayloadStore>,
    cache: Arc<EntryCache>,
}

impl LogStore {
    /// `cache_bytes`: the budget of the recent-entries cache (0: none).
    pub(crate) fn new(db: Arc<DB>, payloads: Arc<PayloadStore>, cache_bytes: usize) -> Self {
        LogStore {
            db,
            payloads,
            cache: Arc::new(EntryCache::new(cache_bytes)),
        }
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        db: &DB,
        key: &[u8],
    ) -> Result<Option<T>, ClusterError> {
        match db.get_pinned_cf(cf(db, CF_RAFT_META)?, key)? {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }

    fn write_meta<T: serde::Serialize>(
        db: &DB,
        key: &[u8],
        value: &T,
        sync: bool,
    ) -> Result<(), ClusterError> {
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        db.put_cf_opt(cf(db, CF_RAFT_META)?, key, encode(value)?, &opts)?;
        Ok(())
    }

    /// The last purged index as stored (entries kept below it for their payloads aside).
    pub(crate) fn purged_index_blocking(db: &DB) -> Result<Option<u64>, ClusterError> {
        Ok(Self::read_meta::<LogId<NodeId>>(db, KEY_LAST_PURGED)?.map(|id| id.index))
    }

    fn log_state_blocking(db: &DB) -> Result<LogState<TypeConfig>, ClusterError> {
        let last_purged_log_id: Option<LogId<NodeId>> = Self::read_meta(db, KEY_LAST_PURGED)?;
        let last_in_log = match db.iterator_cf(cf(db, CF_LOG)?, IteratorMode::End).next() {
            Some(item) => {
                let (_, value) = item?;
                let entry: Entry<TypeConfig> = decode(&value)?;
                Some(entry.log_id)
            }
            None => None,
        };
        // An entry at or below the purge point is one kept for its chunk's payload: not part
        // of the log openraft sees.
        let last_in_log = last_in_log
            .filter(|id| last_purged_log_id.is_none_or(|purged| id.index > purged.index));
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last_in_log.or(last_purged_log_id),
        })
    }

    fn entries_blocking(
        db: &DB,
        start: u64,
        end: Option<u64>,
    ) -> Result<Vec<Entry<TypeConfig>>, ClusterError> {
        let mut entries = Vec::new();
        // Entries kept below the purge point for their payloads are not openraft's.
        let start = match Self::purged_index_blocking(db)? {
            Some(purged) => start.max(purged.saturating_add(1)),
            None => start,
        };
        if end.is_some_and(|end| end <= start) {
            return Ok(entries);
        }
        // A raw iterator lends each value (the plain one copies it into a box first), and the
        // upper bound keeps it from loading the entry after the range (often a blob read).
        let mut opts = ReadOptions::default();
        if let Some(end) = end {
            opts.set_iterate_upper_bound(index_key(end));
        }
        let mut iter = db.raw_iterator_cf_opt(cf(db, CF_LOG)?, opts);
        iter.seek(index_key(start));
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            let index = decode_index_key(key)?;
            if end.is_some_and(|end| index >= end) {
                break;
            }
            let entry: Entry<TypeConfig> = decode(value)?;
            if entry.log_id.index != index {
                return Err(ClusterError::Corrupt(format!(
                    "log key {index} holds entry {}",
                    entry.log_id
                )));
            }
            entries.push(entry);
            iter.next();
        }
        iter.status()?;
        Ok(entries)
    }
}

/// `[start, end)` of a range of log indexes; `end = None` is unbounded.
fn index_range<RB: RangeBounds<u64>>(range: &RB) -> (u64, Option<u64>) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.checked_add(1),
        Bound::Excluded(&e) => Some(e),
        Bound::Unbounded => None,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let (start, end) = index_range(&range);
        let cached = match self.cache.tail_of(start, end) {
            // The whole range is in the window (as far as the log holds it).
            Some((from, entries)) if from <= start => return Ok(entries),
            other => other,
        };
        let db = self.db.clone();
        blocking(move || match cached {
            // The range begins before the cache: read that part, then take the cached rest
            // if the two meet (a purge in between may have raised the log's start).
            Some((from, mut tail)) => {
                let mut entries = Self::entries_blocking(&db, start, Some(from))?;
                let meets = entries.last().map(|e| e.log_id.index + 1) == Some(from)
                    || (entries.is_empty()
                        && Self::purged_index_blocking(&db)? == from.checked_sub(1));
                if meets {
                    entries.append(&mut tail);
                    Ok(entries)
                } else {
                    Self::entries_blocking(&db, start, end)
                }
            }
            None => Self::entries_blocking(&db, start, end),
        })
        .await
        .map_err(|e| storage_error(ErrorSubject::Logs, ErrorVerb::Read, e))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let db = self.db.clone();
        blocking(move || Self::log_state_blocking(&db))
            .await
            .map_err(|e| storage_error(ErrorSubject::Logs, ErrorVerb::Read, e))
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let db = self.db.clone();
        let vote = *vote;
        blocking(move || Self::write_meta(&db, KEY_VOTE, &vote, true))
            .await
            .map_err(|e| storage_error(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        let db = self.db.clone();
        blocking(move || Self::read_meta(&db, KEY_VOTE))
            .await
            .map_err(|e| storage_error(ErrorSubject::Vote, ErrorVerb::Read, e))
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        let db = self.db.clone();
        blocking(move || Self::write_meta(&db, KEY_COMMITTED, &committed, false))
            .await
            .map_err(|e| storage_error(ErrorSubject::Store, ErrorVerb::Write, e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        let db = self.db.clone();
        blocking(move || {
            Ok(Self::read_meta::<Option<LogId<NodeId>>>(&db, KEY_COMMITTED)?.flatten())
        })
        .await
        .map_err(|e| storage_error(ErrorSubject::Store, ErrorVerb::Read, e))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let db = self.db.clone();
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let cache = self.cache.clone();
        let result = blocking(move || {
            let log_cf = cf(&db, CF_LOG)?;
            let mut batch = WriteBatch::default();
            for entry in &entries {
                let payload = match &entry.payload {
                    EntryPayload::Normal(request) => request.payload().map_or(0, |p| p.len()),
                    _ => 0,
                };
                let value = encode_sized(entry, payload + 256)?;
                batch.put_cf(log_cf, index_key(entry.log_id.index), value);
            }
            let mut opts = WriteOptions::default();
            opts.set_sync(true);
            let bytes = batch.size_in_bytes();
            db.write_opt(batch, &opts)?;
            debug!(
                entries = entries.len(),
                bytes, "raft log appended and synced"
            );
            // Durable now: readers may have them without reading them back.
            cache.put(&entries);
            Ok(())
        })
        .await;
        match result {
            Ok(()) => {
                // Only now are the entries durable: tell openraft.
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(storage_error(ErrorSubject::Logs, ErrorVerb::Write, e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // Before the delete: from now on no reader gets the truncated entries from the cache
        // (only appends fill it).
        self.cache.truncate(log_id.index);
        let db = self.db.clone();
        blocking(move || {
            let mut batch = WriteBatch::default();
            batch.delete_range_cf(
                cf(&db, CF_LOG)?,
                index_key(log_id.index),
                index_key(u64::MAX),
            );
            batch.delete_cf(cf(&db, CF_LOG)?, index_key(u64::MAX));
            let mut opts = WriteOptions::default();
            opts.set_sync(true);
            db.write_opt(batch, &opts)?;
            debug!(since = log_id.index, "raft log truncated");
            Ok(())
        })
        .await
        .map_err(|e| storage_error(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.cache.purge(log_id.index);
        let db = self.db.clone();
        let payloads = self.payloads.clone();
        blocking(move || {
            // Entries of chunks not yet confirmed stay (they hold the payloads; see `payload`).
            let from = Self::purged_index_blocking(&db)?.map_or(0, |i| i.saturating_add(1));
            payloads.purge_log(from, log_id.index, |mut batch| {
                batch.put_cf(cf(&db, CF_RAFT_META)?, KEY_LAST_PURGED, encode(&log_id)?);
                // Synced: the WAL is shared and ordered, so this also makes every state-machine
                // write applied before it durable — the log behind the state is only gone once
                // the state is on disk.
                let mut opts = WriteOptions::default();
                opts.set_sync(true);
                db.write_opt(batch, &opts)?;
                Ok(())
            })?;
            debug!(upto = log_id.index, "raft log purged");
            Ok(())
        })
        .await
        .map_err(|e| storage_error(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}
