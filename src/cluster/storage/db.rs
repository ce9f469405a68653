//! The node's one RocksDB instance: opening it, its column families and their tuning, key
//! encodings, the blocking-call helper and the mapping of storage errors to openraft's
//! [`StorageError`]. A leaf: it uses nothing else of the storage.
//!
//! It must not interpret log entries or state-machine records: that is [`super::log_store`]
//! and [`super::state_machine`].
//!
//! All column families share one WAL. That matters for durability: RocksDB recovers a prefix
//! of the WAL, so one synced write (an `append`, a `purge`, `flush_wal(true)`) also makes every
//! earlier write durable — the state machine applies without syncing and relies on that.

use crate::cluster::{ClusterError, NodeId};
use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageError, StorageIOError};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, Options,
    WriteBufferManager, DB,
};
use std::path::Path;

/// Raft log entries, key = index (u64 big-endian), value = msgpack `Entry`.
pub(crate) const CF_LOG: &str = "raft_log";
/// Vote, committed and last-purged log ids.
pub(crate) const CF_RAFT_META: &str = "raft_meta";
/// Chunk payloads (entries bytes) not read from their log entry (see `payload`), key = log index.
pub(crate) const CF_CHUNK_DATA: &str = "sm_chunk_data";
/// Chunk metadata (tag, sizes, origin, batch), key = log index.
pub(crate) const CF_CHUNK_META: &str = "sm_chunk_meta";
/// Sealed, unconfirmed batches, key = batch id (first chunk index).
pub(crate) const CF_BATCHES: &str = "sm_batches";
/// Dedup window, key = apply-order sequence number, value = (origin, index).
pub(crate) const CF_DEDUP: &str = "sm_dedup";
/// Applied log id, membership, dedup sequence, snapshot-install marker.
pub(crate) const CF_SM_META: &str = "sm_meta";

/// The state-machine column families, in snapshot order (their position is their tag in a
/// snapshot file, starting at 1). `sm_meta` is not dumped: its content travels in the
/// snapshot's header.
pub(crate) const SM_DATA_CFS: [&str; 4] = [CF_CHUNK_DATA, CF_CHUNK_META, CF_BATCHES, CF_DEDUP];

/// Every column family, created at open.
const ALL_CFS: [&str; 7] = [
    CF_LOG,
    CF_RAFT_META,
    CF_CHUNK_DATA,
    CF_CHUNK_META,
    CF_BATCHES,
    CF_DEDUP,
    CF_SM_META,
];

/// Files (SST and blob) RocksDB keeps open at once; see [`open_db`].
const MAX_OPEN_FILES: i32 = 256;

/// Values at least this large go to blob files (kept out of LSM compaction).
const MIN_BLOB_SIZE: u64 = 4 * 1024;

/// Tuning of the cluster store.
#[derive(Debug, Clone)]
pub(crate) struct StoreOptions {
    /// How many recent chunk ids the state machine remembers to answer retransmissions. Must be
    /// the same on every node of a cluster: it decides which repeats are duplicates.
    pub(crate) dedup_window: usize,
    /// Bytes all column families' memtables may hold together (`<cluster> memtable_limit`).
    /// Past it RocksDB flushes the largest memtable, and writes wait while the flush runs.
    pub(crate) memtable_limit: usize,
    /// Bytes of the one block cache all column families share (`<cluster> block_cache_size`).
    pub(crate) block_cache: usize,
    /// Bytes of recent log entries kept in memory (`<cluster> log_cache_size`; see
    /// `entry_cache`). Not RocksDB's, but the store's all the same.
    pub(crate) log_cache: usize,
    /// LZ4-compress the Raft log's blob files. Off when the leader already compresses chunk
    /// payloads in the entries (`<cluster> log_compression lz4`, the default): compressing
    /// LZ4 again costs every node CPU (7 % of a follower's) and saves nothing.
    pub(crate) compress_log_blobs: bool,
}

/// Default of [`StoreOptions::memtable_limit`].
pub const DEFAULT_MEMTABLE_LIMIT: usize = 16 << 20;
/// Default of [`StoreOptions::block_cache`].
pub const DEFAULT_BLOCK_CACHE: usize = 4 << 20;

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            dedup_window: 100_000,
            memtable_limit: DEFAULT_MEMTABLE_LIMIT,
            block_cache: DEFAULT_BLOCK_CACHE,
            log_cache: super::entry_cache::DEFAULT_LOG_CACHE,
            compress_log_blobs: false,
        }
    }
}

/// Open (or create) the RocksDB instance at `path` with every column family. Blocking.
///
/// Memory is bounded by `options`: RocksDB's defaults (64 MiB memtables, two per column
/// family, and a 32 MiB block cache per column family) would let one node grow past 1 GiB.
/// Chunk payloads sit in a memtable until its flush moves them to a blob file, so the
/// memtables are what a write burst fills: one write buffer manager caps them together.
pub(crate) fn open_db(path: &Path, options: &StoreOptions) -> Result<DB, ClusterError> {
    let mut db_opts = Options::default();
    db_opts.create_if_missing(true);
    db_opts.create_missing_column_families(true);
    db_opts.set_max_background_jobs(2);
    // Every open SST and blob file keeps a reader in memory (tens of KB each); a backlog of
    // gigabytes is a thousand blob files. Bound the open files (LRU; a closed one is reopened
    // when read) so memory does not grow with the backlog.
    db_opts.set_max_open_files(MAX_OPEN_FILES);
    let memtables = WriteBufferManager::new_write_buffer_manager(options.memtable_limit, true);
    db_opts.set_write_buffer_manager(&memtables);
    let cache = Cache::new_lru_cache(options.block_cache);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&cache);
    table.set_cache_index_and_filter_blocks(true);
    // The WAL is shared by all CFs and kept until every CF holding data in it is flushed; the
    // small CFs rarely fill a memtable, so bound the WAL to force their flushes.
    db_opts.set_max_total_wal_size(256 * 1024 * 1024);

    let cfs = ALL_CFS.into_iter().map(|name| {
        let mut opts = Options::default();
        opts.set_block_based_table_factory(&table);
        // A chunk's payload is one memtable entry: a quarter of the limit per data memtable
        // keeps two of them (one flushing) per data column family inside it.
        let data = name == CF_LOG || name == CF_CHUNK_DATA;
        opts.set_write_buffer_size(if data {
            options.memtable_limit / 4
        } else {
            (options.memtable_limit / 16).max(1 << 20)
        });
        opts.set_max_write_buffer_number(2);
        if data {
            // Chunks are 100 KB–1 MB: keep them in blob files so compaction never rewrites them.
            opts.set_enable_blob_files(true);
            opts.set_min_blob_size(MIN_BLOB_SIZE);
            // Snapshot-installed payloads (chunk data) are plain; log entries are compressed
            // already unless the leader does not compress them.
            opts.set_blob_compression_type(if name == CF_LOG && !options.compress_log_blobs {
                DBCompressionType::None
            } else {
                DBCompressionType::Lz4
            });
            opts.set_enable_blob_gc(true);
        }
        ColumnFamilyDescriptor::new(name, opts)
    });
    Ok(DB::open_cf_descriptors(&db_opts, path, cfs)?)
}

/// What the node's RocksDB holds in memory now, in bytes, from RocksDB's own estimates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageMemory {
    /// Memtables of every column family: active, being flushed and pinned.
    pub memtables: u64,
    /// Readers of open SST files outside the block cache (index and filter blocks are in it).
    pub table_readers: u64,
    /// The shared block cache's content.
    pub block_cache: u64,
    /// The part of the block cache in use by readers now (cannot be evicted).
    pub block_cache_pinned: u64,
}

/// Read [`StorageMemory`] from RocksDB's properties. Reads memory only; never blocks on I/O.
pub(crate) fn memory_usage(db: &DB) -> StorageMemory {
    let mut usage = StorageMemory::default();
    let int = |cf: &rocksdb::ColumnFamily, name: &str| {
        db.property_int_value_cf(cf, name)
            .ok()
            .flatten()
            .unwrap_or(0)
    };
    for cf in ALL_CFS.iter().filter_map(|name| db.cf_handle(name)) {
        usage.memtables += int(cf, "rocksdb.size-all-mem-tables");
        usage.table_readers += int(cf, "rocksdb.estimate-table-readers-mem");
    }
    // One cache shared by every column family: read it through any of them.
    if let Some(cf) = db.cf_handle(CF_LOG) {
        usage.block_cache = int(cf, "rocksdb.block-cache-usage");
        usage.block_cache_pinned = int(cf, "rocksdb.block-cache-pinned-usage");
    }
    usage
}

/// A column family handle; every CF is created at open, so a missing one is corruption.
pub(crate) fn cf<'a>(db: &'a DB, name: &str) -> Result<&'a rocksdb::ColumnFamily, ClusterError> {
    db.cf_handle(name)
        .ok_or_else(|| ClusterError::Corrupt(format!("column family {name} missing")))
}

/// Index keys sort numerically.
pub(crate) fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

pub(crate) fn decode_index_key(key: &[u8]) -> Result<u64, ClusterError> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| ClusterError::Corrupt(format!("index key of {} bytes", key.len())))?;
    Ok(u64::from_be_bytes(bytes))
}

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, ClusterError> {
    Ok(rmp_serde::to_vec(value)?)
}

/// [`encode`] into a buffer of `capacity` bytes to begin with (see
/// [`crate::cluster::to_msgpack_sized`]).
pub(crate) fn encode_sized<T: serde::Serialize>(
    value: &T,
    capacity: usize,
) -> Result<Vec<u8>, ClusterError> {
    Ok(crate::cluster::to_msgpack_sized(value, capacity)?)
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ClusterError> {
    Ok(rmp_serde::from_slice(bytes)?)
}

/// Run blocking storage work off the async runtime.
pub(crate) async fn blocking<T, F>(work: F) -> Result<T, ClusterError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ClusterError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ClusterError::TaskFailed(e.to_string()))?
}

/// Map a storage failure to openraft's error, naming what was being done.
pub(crate) fn storage_error(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    error: ClusterError,
) -> StorageError<NodeId> {
    tracing::error!(?subject, ?verb, %error, "cluster storage failed");
    StorageIOError::new(subject, verb, AnyError::new(&error)).into()
}
