//! The state machine's records in RocksDB: writing the [`Mutation`]s of applied entries as one
//! `WriteBatch`, and reading the column families back into an [`SmState`].
//!
//! Owns the keys of `sm_meta` and the mapping of each mutation to its column family. It must
//! not decide what changes (that is [`super::apply`]) nor sync the write: the applies rely on
//! the shared, ordered WAL being synced by the next log append (see the storage module doc).

use super::apply::Mutation;
use super::records::{AppliedRecord, DedupRecord, SmState, UnconfirmedBatch};
use crate::cluster::storage::db::{
    cf, decode, decode_index_key, encode, index_key, CF_BATCHES, CF_CHUNK_DATA, CF_CHUNK_META,
    CF_DEDUP, CF_LOG, CF_SM_META,
};
#[cfg(doc)]
use crate::cluster::storage::payload::PayloadGuard;
use crate::cluster::ClusterError;
use rocksdb::{IteratorMode, WriteBatch, WriteOptions, DB};

/// `sm_meta` key of the [`AppliedRecord`].
pub(crate) const KEY_APPLIED: &[u8] = b"applied";
/// `sm_meta` key of the snapshot-install marker (the snapshot file's name).
pub(crate) const KEY_INSTALLING: &[u8] = b"installing";

/// Write `mutations` and the new applied record in one `WriteBatch`, unsynced. `log_purged`
/// is the log's purge point ([`PayloadGuard::log_purged`], under that lock): a chunk deleted
/// at or below it takes the log entry kept for its payload along.
pub(crate) fn write_applied(
    db: &DB,
    mutations: &[Mutation],
    applied: &AppliedRecord,
    log_purged: Option<u64>,
) -> Result<(), ClusterError> {
    let log_cf = cf(db, CF_LOG)?;
    let (data_cf, meta_cf) = (cf(db, CF_CHUNK_DATA)?, cf(db, CF_CHUNK_META)?);
    let (batches_cf, dedup_cf) = (cf(db, CF_BATCHES)?, cf(db, CF_DEDUP)?);
    let mut batch = WriteBatch::default();
    for mutation in mutations {
        match mutation {
            Mutation::PutChunkData { index, entries } => {
                batch.put_cf(data_cf, index_key(*index), entries)
            }
            Mutation::PutChunkMeta { index, record } => {
                batch.put_cf(meta_cf, index_key(*index), encode(record)?)
            }
            Mutation::DeleteChunk { index } => {
                batch.delete_cf(data_cf, index_key(*index));
                batch.delete_cf(meta_cf, index_key(*index));
                if log_purged.is_some_and(|purged| *index <= purged) {
                    batch.delete_cf(log_cf, index_key(*index));
                }
            }
            Mutation::PutBatch { first, record } => {
                batch.put_cf(batches_cf, index_key(*first), encode(record)?)
            }
            Mutation::DeleteBatch { first } => batch.delete_cf(batches_cf, index_key(*first)),
            Mutation::PutDedup { seq, record } => {
                batch.put_cf(dedup_cf, index_key(*seq), encode(record)?)
            }
            Mutation::DeleteDedup { seq } => batch.delete_cf(dedup_cf, index_key(*seq)),
        }
    }
    batch.put_cf(cf(db, CF_SM_META)?, KEY_APPLIED, encode(applied)?);
    // Not synced: see the module doc (the log is durable, the WAL is ordered).
    db.write(batch)?;
    Ok(())
}

/// Write the snapshot-install marker naming `file_name`, synced.
pub(crate) fn write_install_marker(db: &DB, file_name: &str) -> Result<(), ClusterError> {
    let mut opts = WriteOptions::default();
    opts.set_sync(true);
    db.put_cf_opt(
        cf(db, CF_SM_META)?,
        KEY_INSTALLING,
        file_name.as_bytes(),
        &opts,
    )?;
    Ok(())
}

/// The snapshot-install marker, if an install was interrupted.
pub(crate) fn read_install_marker(db: &DB) -> Result<Option<Vec<u8>>, ClusterError> {
    Ok(db.get_cf(cf(db, CF_SM_META)?, KEY_INSTALLING)?)
}

/// Read the state-machine column families into memory.
pub(crate) fn load_state(db: &DB) -> Result<SmState, ClusterError> {
    let mut state = SmState::default();
    if let Some(bytes) = db.get_pinned_cf(cf(db, CF_SM_META)?, KEY_APPLIED)? {
        state.applied = decode(&bytes)?;
    }
    for item in db.iterator_cf(cf(db, CF_BATCHES)?, IteratorMode::Start) {
        let (key, value) = item?;
        state.batches.insert(
            decode_index_key(&key)?,
            UnconfirmedBatch::new(decode(&value)?),
        );
    }
    for item in db.iterator_cf(cf(db, CF_CHUNK_META)?, IteratorMode::Start) {
        let (key, value) = item?;
        let index = decode_index_key(&key)?;
        state.add_chunk(index, decode(&value)?)?;
    }
    for item in db.iterator_cf(cf(db, CF_DEDUP)?, IteratorMode::Start) {
        let (key, value) = item?;
        let seq = decode_index_key(&key)?;
        let record: DedupRecord = decode(&value)?;
        state.dedup.remember(seq, &record.origin, record.index);
    }
    Ok(state)
}
