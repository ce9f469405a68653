//! The node's durable storage: one RocksDB instance shared by the Raft log and the chunk state
//! machine, plus the snapshot files.
//!
//! Owns [`open_storage`], which opens (or creates) the database and returns the two halves
//! openraft wants. Like openraft's `raft-kv-rocksdb` example, the storage is a leaf of the
//! cluster: it must not know about the network, the admin API or the uploader.
//!
//! - [`db`]: opening RocksDB, column families, key encodings, error mapping (a leaf).
//! - [`entry_cache`]: the log's most recent entries in memory, for replication and apply.
//! - [`log_store`]: the Raft log, vote, committed and last-purged ids
//!   ([`openraft::storage::RaftLogStorage`]); each `append` is one synced `WriteBatch`.
//! - [`state_machine`]: the chunk state machine ([`openraft::storage::RaftStateMachine`]):
//!   its records, pure rules, persistence, snapshots and the read-only [`ChunkReader`].
//! - [`payload`]: where a chunk's payload lives (its log entry, or `sm_chunk_data`) and which
//!   log entries a purge keeps for it.
//! - [`snapshot_file`]: the snapshot file format (checksummed records, streamed, never one
//!   `Vec`).
//!
//! All column families share one WAL. That matters for durability: RocksDB recovers a prefix
//! of the WAL, so one synced write (an `append`, a `purge`, `flush_wal(true)`) also makes every
//! earlier write durable — the state machine applies without syncing and relies on that.

pub(crate) mod db;
pub(crate) mod entry_cache;
pub(crate) mod log_store;
pub(crate) mod payload;
pub(crate) mod snapshot_file;
pub(crate) mod state_machine;

pub(crate) use self::db::{StoreOptions, DEFAULT_BLOCK_CACHE, DEFAULT_MEMTABLE_LIMIT};
pub(crate) use self::entry_cache::DEFAULT_LOG_CACHE;
pub(crate) use self::log_store::LogStore;
pub(crate) use self::state_machine::apply::batch_key;
pub(crate) use self::state_machine::queries::{ChunkReader, PendingChunk, SealedBatch};
pub(crate) use self::state_machine::StateMachineStore;

use self::db::{blocking, open_db};
use self::payload::PayloadStore;
use crate::cluster::ClusterError;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Open (or create) the storage under `dir` and return its two halves, as openraft wants them.
///
/// Layout: `<dir>/db` (RocksDB) and `<dir>/snapshots`. Runs on a blocking thread.
pub(crate) async fn open_storage(
    dir: impl AsRef<Path>,
    options: StoreOptions,
) -> Result<(LogStore, StateMachineStore), ClusterError> {
    let dir = dir.as_ref().to_path_buf();
    blocking(move || open_storage_blocking(&dir, options)).await
}

/// [`open_storage`] for callers already on a blocking thread.
pub(crate) fn open_storage_blocking(
    dir: &Path,
    options: StoreOptions,
) -> Result<(LogStore, StateMachineStore), ClusterError> {
    // RocksDB creates `db` but never fsyncs its parent: create the path durably first.
    crate::durable_fs::create_dir_all_durably(&dir.join("db"))?;
    let db = Arc::new(open_db(&dir.join("db"), &options)?);
    let payloads = PayloadStore::new(db.clone(), LogStore::purged_index_blocking(&db)?);
    let log = LogStore::new(db.clone(), payloads.clone(), options.log_cache);
    let sm = StateMachineStore::open(db, payloads, snapshot_dir(dir), options)?;
    Ok((log, sm))
}

fn snapshot_dir(dir: &Path) -> PathBuf {
    dir.join("snapshots")
}
