//! The chunk state machine on RocksDB, its file-backed snapshots, and the query handle.
//!
//! Owns [`StateMachineStore`] (openraft's [`RaftStateMachine`] and [`RaftSnapshotBuilder`]) and
//! [`ChunkReader`], the read-only view the uploader and admin API use. `apply` is deterministic:
//! its answers depend only on the log and [`StoreOptions::dedup_window`], which must be equal on
//! every node. It must not decide when to seal or upload, nor talk to the network.
//!
//! # Storage
//!
//! RocksDB is the authority; small metadata (chunk records, batches, the dedup window, applied
//! state) is mirrored in memory for queries and loaded at open. Chunk payloads stay on disk
//! (blob files). One `apply` call is one `WriteBatch` holding every change plus the new
//! applied state and membership. It is written without fsync: the entries are durable in the
//! Raft log, openraft re-applies committed entries after a crash, and the shared, ordered WAL
//! is synced by the next log append, by `build_snapshot` (`flush_wal(true)` before the snapshot
//! is reported) and by `purge` (so the log behind the state goes only after the state is durable).
//!
//! # Snapshots
//!
//! `build_snapshot` streams a consistent RocksDB snapshot of the state-machine column families
//! into `snapshots/tmp-build-*`, syncs it and renames it to `snapshots/snap-*.bin`.
//! `install_snapshot` validates the received file completely (checksums, record count,
//! metadata), renames it to `snap-*.bin`, then writes a synced *install marker* naming it, clears
//! the state-machine column families and loads the file in bounded write batches; the last
//! batch sets the applied state and removes the marker, synced. A crash before the marker leaves
//! the old state (a `snap-*` newer than the applied state is discarded at open); a crash after
//! it is rolled forward at open by installing the marked file again — so a reopened store holds
//! either the old or the new state, never a mix.

use super::snapshot::{SnapshotHeader, SnapshotReader, SnapshotWriter};
use super::store::{
    blocking, cf, decode, decode_index_key, encode, index_key, storage_error, StoreOptions,
    CF_BATCHES, CF_CHUNK_DATA, CF_CHUNK_META, CF_DEDUP, CF_SM_META, SM_DATA_CFS,
};
use super::{ClusterError, ClusterRequest, ClusterResponse, NodeId, TypeConfig, MAX_ORIGIN_LEN};
use bytes::Bytes;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend,
    RaftSnapshotBuilder, SnapshotMeta, StorageError, StoredMembership,
};
use rocksdb::{IteratorMode, WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::AsyncWriteExt;
use tracing::{debug, info, warn};

const KEY_APPLIED: &[u8] = b"applied";
const KEY_INSTALLING: &[u8] = b"installing";
/// Write batch size while loading a snapshot.
const INSTALL_BATCH_BYTES: usize = 32 * 1024 * 1024;

/// A stored chunk's metadata (its payload is in `sm_chunk_data` under the same index).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ChunkRecord {
    tag: String,
    bytes: u64,
    count: u32,
    received_unix_ms: u64,
    origin: Option<Bytes>,
    /// The batch that sealed it, if any.
    batch: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct BatchRecord {
    tag: String,
    chunks: Vec<u64>,
    object_key: String,
    /// Log index of the `SealBatch` entry.
    sealed_at: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DedupRecord {
    origin: Bytes,
    index: u64,
}

/// Applied state, stored under one key so it changes atomically.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AppliedRecord {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    next_dedup_seq: u64,
}

/// The in-memory mirror of the state-machine column families (payloads excluded).
#[derive(Debug, Default)]
struct SmState {
    applied: AppliedRecord,
    chunks: BTreeMap<u64, ChunkRecord>,
    batches: BTreeMap<u64, BatchRecord>,
    /// origin → (sequence, chunk index).
    dedup_by_origin: HashMap<Bytes, (u64, u64)>,
    /// (sequence, origin), oldest first.
    dedup_order: VecDeque<(u64, Bytes)>,
}

/// A stored chunk not yet sealed into a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingChunk {
    /// Log index of its `AppendChunk` entry: the chunk's id in the cluster.
    pub index: u64,
    pub tag: String,
    /// Payload size (entries bytes).
    pub bytes: u64,
    pub count: u32,
    pub received_unix_ms: u64,
    pub origin: Option<Bytes>,
}

/// A sealed batch whose upload is not confirmed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedBatch {
    /// Batch id: its first chunk's index.
    pub first: u64,
    pub tag: String,
    pub chunks: Vec<u64>,
    pub object_key: String,
    /// Sum of its chunks' payload sizes.
    pub bytes: u64,
    /// Log index of the `SealBatch` entry.
    pub sealed_at: u64,
}

/// Totals of what waits for upload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadStats {
    /// Chunks not sealed yet, and their payload bytes.
    pub pending_chunks: u64,
    pub pending_bytes: u64,
    /// Chunks sealed in unconfirmed batches, and their payload bytes.
    pub sealed_chunks: u64,
    pub sealed_bytes: u64,
    pub unconfirmed_batches: u64,
    /// Chunk ids in the dedup window.
    pub remembered_ids: u64,
}

/// Pending (unsealed) chunks of one tag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TagPending {
    pub chunks: u64,
    pub bytes: u64,
}

/// The current snapshot: its metadata and file.
#[derive(Debug, Clone)]
struct CurrentSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    path: PathBuf,
}

struct Shared {
    db: Arc<DB>,
    options: StoreOptions,
    snapshot_dir: PathBuf,
    state: RwLock<SmState>,
    current_snapshot: Mutex<Option<CurrentSnapshot>>,
    /// Files handed out by `begin_receiving_snapshot`, by (device, inode), so installing one
    /// renames it instead of copying it.
    receiving: Mutex<HashMap<(u64, u64), PathBuf>>,
    file_counter: AtomicU64,
}

/// The state-machine half of the node's storage. Cheap to clone; a clone is also its
/// snapshot builder.
#[derive(Clone)]
pub struct StateMachineStore {
    shared: Arc<Shared>,
}

/// Read-only queries on the state machine, for the uploader and the admin API. Cheap to clone.
/// Metadata queries read memory and never block on I/O; payload reads go to RocksDB.
#[derive(Clone)]
pub struct ChunkReader {
    shared: Arc<Shared>,
}

impl Shared {
    fn read_state(&self) -> RwLockReadGuard<'_, SmState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, SmState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn current(&self) -> MutexGuard<'_, Option<CurrentSnapshot>> {
        self.current_snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn unique_name(&self, prefix: &str) -> PathBuf {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let n = self.file_counter.fetch_add(1, Ordering::Relaxed);
        self.snapshot_dir.join(format!("{prefix}-{nanos}-{n}"))
    }

    fn snapshot_file_name(&self, meta: &SnapshotMeta<NodeId, BasicNode>) -> PathBuf {
        let index = meta.last_log_id.map_or(0, |id| id.index);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let n = self.file_counter.fetch_add(1, Ordering::Relaxed);
        self.snapshot_dir
            .join(format!("snap-{index:020}-{nanos}-{n}.bin"))
    }
}

impl StateMachineStore {
    /// Load the state machine from `db`, finishing an interrupted snapshot install and picking
    /// the current snapshot file. Blocking.
    pub(crate) fn open(
        db: Arc<DB>,
        snapshot_dir: PathBuf,
        options: StoreOptions,
    ) -> Result<Self, ClusterError> {
        fs::create_dir_all(&snapshot_dir)?;
        if let Some(name) = db.get_cf(cf(&db, CF_SM_META)?, KEY_INSTALLING)? {
            let path = snapshot_dir.join(String::from_utf8_lossy(&name).as_ref());
            warn!(path = %path.display(), "finishing an interrupted snapshot install");
            load_snapshot_into_db(&db, &path)?;
        }
        let state = load_state(&db)?;
        let current = pick_current_snapshot(&snapshot_dir, state.applied.last_applied)?;
        info!(
            last_applied = ?state.applied.last_applied,
            chunks = state.chunks.len(),
            batches = state.batches.len(),
            remembered_ids = state.dedup_order.len(),
            snapshot = ?current.as_ref().map(|c| c.meta.snapshot_id.clone()),
            "cluster state machine opened"
        );
        Ok(StateMachineStore {
            shared: Arc::new(Shared {
                db,
                options,
                snapshot_dir,
                state: RwLock::new(state),
                current_snapshot: Mutex::new(current),
                receiving: Mutex::new(HashMap::new()),
                file_counter: AtomicU64::new(0),
            }),
        })
    }

    /// A query handle that outlives moves of the store into openraft.
    pub fn reader(&self) -> ChunkReader {
        ChunkReader {
            shared: self.shared.clone(),
        }
    }

    /// Write the install marker as `install_snapshot` does before loading a file, to test the
    /// roll-forward at open.
    #[cfg(test)]
    pub(crate) fn write_install_marker_for_test(&self, name: &str) -> Result<(), ClusterError> {
        let db = &self.shared.db;
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        db.put_cf_opt(cf(db, CF_SM_META)?, KEY_INSTALLING, name.as_bytes(), &opts)?;
        Ok(())
    }

    fn apply_blocking(
        shared: &Shared,
        entries: Vec<Entry<TypeConfig>>,
    ) -> Result<Vec<ClusterResponse>, ClusterError> {
        let db = &shared.db;
        let mut state = shared.write_state();
        let result = (|| {
            let mut batch = WriteBatch::default();
            let mut responses = Vec::with_capacity(entries.len());
            for entry in entries {
                let log_id = entry.log_id;
                let response = match entry.payload {
                    EntryPayload::Blank => ClusterResponse::NoOp,
                    EntryPayload::Normal(request) => apply_request(
                        &mut state,
                        &mut batch,
                        db,
                        log_id.index,
                        request,
                        shared.options.dedup_window,
                    )?,
                    EntryPayload::Membership(membership) => {
                        state.applied.membership = StoredMembership::new(Some(log_id), membership);
                        ClusterResponse::NoOp
                    }
                };
                state.applied.last_applied = Some(log_id);
                responses.push(response);
            }
            batch.put_cf(cf(db, CF_SM_META)?, KEY_APPLIED, encode(&state.applied)?);
            // Not synced: see the module doc (the log is durable, the WAL is ordered).
            db.write(batch)?;
            Ok(responses)
        })();
        if result.is_err() {
            // Memory may be ahead of the disk now: reload what is really stored.
            match load_state(db) {
                Ok(reloaded) => *state = reloaded,
                Err(e) => warn!(error = %e, "reloading state machine after a failed apply"),
            }
        }
        result
    }

    fn build_snapshot_blocking(shared: &Shared) -> Result<Snapshot<TypeConfig>, ClusterError> {
        let db = &shared.db;
        // Applies hold the write lock while they write, so the memory and the RocksDB snapshot
        // taken under the read lock describe the same applied state.
        let (db_snapshot, header) = {
            let state = shared.read_state();
            let db_snapshot = db.snapshot();
            let applied = &state.applied;
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            let snapshot_id = match applied.last_applied {
                Some(id) => format!("{}-{}-{nanos}", id.leader_id, id.index),
                None => format!("none-{nanos}"),
            };
            let header = SnapshotHeader {
                meta: SnapshotMeta {
                    last_log_id: applied.last_applied,
                    last_membership: applied.membership.clone(),
                    snapshot_id,
                },
                next_dedup_seq: applied.next_dedup_seq,
            };
            (db_snapshot, header)
        };
        // Everything this snapshot reflects becomes durable before it is reported.
        db.flush_wal(true)?;

        let tmp = shared.unique_name("tmp-build");
        let file = File::create(&tmp)?;
        let mut writer = SnapshotWriter::new(file, &header)?;
        let mut records = 0u64;
        for (position, name) in SM_DATA_CFS.iter().enumerate() {
            for item in db_snapshot.iterator_cf(cf(db, name)?, IteratorMode::Start) {
                let (key, value) = item?;
                writer.record(position as u8 + 1, &key, &value)?;
                records += 1;
            }
        }
        drop(db_snapshot);
        let file = writer.finish()?;
        file.sync_all()?;
        drop(file);
        let path = shared.snapshot_file_name(&header.meta);
        fs::rename(&tmp, &path)?;
        sync_dir(&shared.snapshot_dir)?;
        let bytes = fs::metadata(&path)?.len();
        info!(
            snapshot_id = %header.meta.snapshot_id,
            last_log_id = ?header.meta.last_log_id,
            records,
            bytes,
            "snapshot built"
        );

        let mut current = shared.current();
        let read = File::open(&path)?;
        replace_current(
            &mut current,
            CurrentSnapshot {
                meta: header.meta.clone(),
                path,
            },
        );
        Ok(Snapshot {
            meta: header.meta,
            snapshot: Box::new(tokio::fs::File::from_std(read)),
        })
    }

    fn install_snapshot_blocking(
        shared: &Shared,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        mut received: File,
    ) -> Result<(), ClusterError> {
        let identity = received.metadata().map(|m| (m.dev(), m.ino()))?;
        let ours = shared
            .receiving
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&identity);
        let staged = match ours {
            Some(path) => {
                received.sync_all()?;
                path
            }
            None => {
                // Not a file we handed out (e.g. another store's snapshot): copy it in.
                let path = shared.unique_name("tmp-install");
                let mut copy = File::create(&path)?;
                received.seek(SeekFrom::Start(0))?;
                std::io::copy(&mut received, &mut copy)?;
                copy.sync_all()?;
                path
            }
        };
        drop(received);

        if let Err(e) = validate_snapshot_file(&staged, meta) {
            let _ = fs::remove_file(&staged);
            return Err(e);
        }
        let path = shared.snapshot_file_name(meta);
        fs::rename(&staged, &path)?;
        sync_dir(&shared.snapshot_dir)?;

        let db = &shared.db;
        let mut state = shared.write_state();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| ClusterError::Corrupt("snapshot file name".into()))?;
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        db.put_cf_opt(cf(db, CF_SM_META)?, KEY_INSTALLING, name.as_bytes(), &opts)?;
        let loaded = load_snapshot_into_db(db, &path).and_then(|()| load_state(db));
        match loaded {
            Ok(reloaded) => *state = reloaded,
            Err(e) => {
                // The marker stays: the next open rolls the install forward.
                if let Ok(reloaded) = load_state(db) {
                    *state = reloaded;
                }
                return Err(e);
            }
        }
        drop(state);
        info!(
            snapshot_id = %meta.snapshot_id,
            last_log_id = ?meta.last_log_id,
            "snapshot installed"
        );
        let mut current = shared.current();
        replace_current(
            &mut current,
            CurrentSnapshot {
                meta: meta.clone(),
                path,
            },
        );
        Ok(())
    }
}

/// Make `next` the current snapshot and delete the previous file (open readers keep theirs).
fn replace_current(current: &mut Option<CurrentSnapshot>, next: CurrentSnapshot) {
    if let Some(previous) = current.replace(next) {
        if let Err(e) = fs::remove_file(&previous.path) {
            warn!(path = %previous.path.display(), error = %e, "removing old snapshot");
        }
    }
}

/// Apply one application request at log index `index`, staging its writes in `batch`.
fn apply_request(
    state: &mut SmState,
    batch: &mut WriteBatch,
    db: &DB,
    index: u64,
    request: ClusterRequest,
    dedup_window: usize,
) -> Result<ClusterResponse, ClusterError> {
    match request {
        ClusterRequest::AppendChunk {
            origin,
            tag,
            entries,
            count,
            received_unix_ms,
        } => {
            if let Some(origin) = &origin {
                if origin.len() > MAX_ORIGIN_LEN {
                    return Ok(ClusterResponse::Rejected(format!(
                        "chunk id of {} bytes (at most {MAX_ORIGIN_LEN})",
                        origin.len()
                    )));
                }
                if let Some(&(_, first)) = state.dedup_by_origin.get(origin) {
                    debug!(index, first, "duplicate chunk");
                    return Ok(ClusterResponse::Duplicate { index: first });
                }
            }
            let record = ChunkRecord {
                tag,
                bytes: entries.len() as u64,
                count,
                received_unix_ms,
                origin: origin.clone(),
                batch: None,
            };
            batch.put_cf(cf(db, CF_CHUNK_DATA)?, index_key(index), &entries);
            batch.put_cf(cf(db, CF_CHUNK_META)?, index_key(index), encode(&record)?);
            state.chunks.insert(index, record);
            if let Some(origin) = origin {
                remember_origin(state, batch, db, origin, index, dedup_window)?;
            }
            Ok(ClusterResponse::Appended { index })
        }
        ClusterRequest::SealBatch {
            tag,
            chunks,
            object_key,
        } => {
            if let Some(reason) = seal_refusal(state, &tag, &chunks, &object_key) {
                debug!(index, %reason, "seal rejected");
                return Ok(ClusterResponse::Rejected(reason));
            }
            let first = chunks[0];
            let meta_cf = cf(db, CF_CHUNK_META)?;
            for chunk in &chunks {
                if let Some(record) = state.chunks.get_mut(chunk) {
                    record.batch = Some(first);
                    batch.put_cf(meta_cf, index_key(*chunk), encode(record)?);
                }
            }
            let record = BatchRecord {
                tag,
                chunks,
                object_key,
                sealed_at: index,
            };
            batch.put_cf(cf(db, CF_BATCHES)?, index_key(first), encode(&record)?);
            state.batches.insert(first, record);
            Ok(ClusterResponse::Sealed { first })
        }
        ClusterRequest::ConfirmUpload { first } => {
            if let Some(record) = state.batches.remove(&first) {
                let (data_cf, meta_cf) = (cf(db, CF_CHUNK_DATA)?, cf(db, CF_CHUNK_META)?);
                for chunk in &record.chunks {
                    state.chunks.remove(chunk);
                    batch.delete_cf(data_cf, index_key(*chunk));
                    batch.delete_cf(meta_cf, index_key(*chunk));
                }
                batch.delete_cf(cf(db, CF_BATCHES)?, index_key(first));
                debug!(
                    index,
                    first,
                    chunks = record.chunks.len(),
                    "upload confirmed"
                );
            }
            Ok(ClusterResponse::Confirmed { first })
        }
    }
}

/// Why a seal must be refused, or `None` if it is valid. Depends only on the state.
fn seal_refusal(state: &SmState, tag: &str, chunks: &[u64], object_key: &str) -> Option<String> {
    if chunks.is_empty() {
        return Some("empty batch".into());
    }
    if object_key.is_empty() {
        return Some("empty object key".into());
    }
    if chunks.windows(2).any(|w| w[0] >= w[1]) {
        return Some("chunk indexes are not strictly ascending".into());
    }
    for chunk in chunks {
        match state.chunks.get(chunk) {
            None => return Some(format!("chunk {chunk} is unknown or already confirmed")),
            Some(record) if record.tag != tag => {
                return Some(format!(
                    "chunk {chunk} has tag {:?}, batch has {tag:?}",
                    record.tag
                ))
            }
            Some(ChunkRecord {
                batch: Some(first), ..
            }) => return Some(format!("chunk {chunk} is already sealed in batch {first}")),
            Some(_) => {}
        }
    }
    None
}

/// Add `origin` to the dedup window, evicting the oldest ids beyond `window`.
fn remember_origin(
    state: &mut SmState,
    batch: &mut WriteBatch,
    db: &DB,
    origin: Bytes,
    index: u64,
    window: usize,
) -> Result<(), ClusterError> {
    let dedup_cf = cf(db, CF_DEDUP)?;
    let seq = state.applied.next_dedup_seq;
    state.applied.next_dedup_seq += 1;
    let record = DedupRecord {
        origin: origin.clone(),
        index,
    };
    batch.put_cf(dedup_cf, index_key(seq), encode(&record)?);
    state.dedup_by_origin.insert(origin.clone(), (seq, index));
    state.dedup_order.push_back((seq, origin));
    while state.dedup_order.len() > window {
        let Some((old_seq, old_origin)) = state.dedup_order.pop_front() else {
            break;
        };
        if state
            .dedup_by_origin
            .get(&old_origin)
            .is_some_and(|&(s, _)| s == old_seq)
        {
            state.dedup_by_origin.remove(&old_origin);
        }
        batch.delete_cf(dedup_cf, index_key(old_seq));
    }
    Ok(())
}

/// Read the state-machine column families into memory.
fn load_state(db: &DB) -> Result<SmState, ClusterError> {
    let mut state = SmState::default();
    if let Some(bytes) = db.get_pinned_cf(cf(db, CF_SM_META)?, KEY_APPLIED)? {
        state.applied = decode(&bytes)?;
    }
    for item in db.iterator_cf(cf(db, CF_CHUNK_META)?, IteratorMode::Start) {
        let (key, value) = item?;
        state
            .chunks
            .insert(decode_index_key(&key)?, decode(&value)?);
    }
    for item in db.iterator_cf(cf(db, CF_BATCHES)?, IteratorMode::Start) {
        let (key, value) = item?;
        state
            .batches
            .insert(decode_index_key(&key)?, decode(&value)?);
    }
    for item in db.iterator_cf(cf(db, CF_DEDUP)?, IteratorMode::Start) {
        let (key, value) = item?;
        let seq = decode_index_key(&key)?;
        let record: DedupRecord = decode(&value)?;
        state
            .dedup_by_origin
            .insert(record.origin.clone(), (seq, record.index));
        state.dedup_order.push_back((seq, record.origin));
    }
    Ok(state)
}

/// Check a snapshot file end to end and that it describes `meta`.
fn validate_snapshot_file(
    path: &Path,
    meta: &SnapshotMeta<NodeId, BasicNode>,
) -> Result<(), ClusterError> {
    let (mut reader, header) = SnapshotReader::open(File::open(path)?)?;
    if header.meta.last_log_id != meta.last_log_id
        || header.meta.last_membership != meta.last_membership
    {
        return Err(ClusterError::SnapshotMismatch(format!(
            "file holds {:?} / {:?}, metadata says {:?} / {:?}",
            header.meta.last_log_id,
            header.meta.last_membership,
            meta.last_log_id,
            meta.last_membership
        )));
    }
    while let Some(record) = reader.next_record()? {
        if record.cf == 0 || record.cf as usize > SM_DATA_CFS.len() {
            return Err(ClusterError::CorruptSnapshot(format!(
                "unknown column family tag {}",
                record.cf
            )));
        }
    }
    Ok(())
}

/// Replace the state-machine column families with a (validated) snapshot file's content.
/// The caller has written the install marker; the final, synced batch removes it.
fn load_snapshot_into_db(db: &DB, path: &Path) -> Result<(), ClusterError> {
    let (mut reader, header) = SnapshotReader::open(File::open(path)?)?;
    let mut batch = WriteBatch::default();
    for name in SM_DATA_CFS {
        // Every key of these CFs is an 8-byte index or sequence number.
        batch.delete_range_cf(cf(db, name)?, &[][..], &[0xffu8; 9][..]);
    }
    db.write(batch)?;
    let handles = SM_DATA_CFS
        .iter()
        .map(|name| cf(db, name))
        .collect::<Result<Vec<_>, _>>()?;
    let mut batch = WriteBatch::default();
    while let Some(record) = reader.next_record()? {
        let handle = handles
            .get((record.cf as usize).wrapping_sub(1))
            .ok_or_else(|| {
                ClusterError::CorruptSnapshot(format!("unknown column family tag {}", record.cf))
            })?;
        batch.put_cf(*handle, &record.key, &record.value);
        if batch.size_in_bytes() >= INSTALL_BATCH_BYTES {
            db.write(std::mem::take(&mut batch))?;
        }
    }
    let applied = AppliedRecord {
        last_applied: header.meta.last_log_id,
        membership: header.meta.last_membership,
        next_dedup_seq: header.next_dedup_seq,
    };
    let meta_cf = cf(db, CF_SM_META)?;
    batch.put_cf(meta_cf, KEY_APPLIED, encode(&applied)?);
    batch.delete_cf(meta_cf, KEY_INSTALLING);
    let mut opts = WriteOptions::default();
    opts.set_sync(true);
    db.write_opt(batch, &opts)?;
    Ok(())
}

/// At open: keep the newest complete snapshot file not ahead of the applied state; delete
/// temporary files and the others.
fn pick_current_snapshot(
    dir: &Path,
    applied: Option<LogId<NodeId>>,
) -> Result<Option<CurrentSnapshot>, ClusterError> {
    let mut best: Option<CurrentSnapshot> = None;
    let mut discard = Vec::new();
    for dirent in fs::read_dir(dir)? {
        let path = dirent?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if !(name.starts_with("snap-") && name.ends_with(".bin")) {
            discard.push(path);
            continue;
        }
        let header = File::open(&path)
            .map_err(ClusterError::from)
            .and_then(|f| SnapshotReader::open(f).map(|(_, h)| h));
        match header {
            Ok(h) if h.meta.last_log_id <= applied => {
                let newer = best
                    .as_ref()
                    .is_none_or(|b| h.meta.last_log_id > b.meta.last_log_id);
                if newer {
                    if let Some(previous) = best.take() {
                        discard.push(previous.path);
                    }
                    best = Some(CurrentSnapshot { meta: h.meta, path });
                } else {
                    discard.push(path);
                }
            }
            Ok(_) => discard.push(path),
            Err(e) => {
                warn!(path = %path.display(), error = %e, "discarding unreadable snapshot");
                discard.push(path);
            }
        }
    }
    for path in discard {
        debug!(path = %path.display(), "removing stale snapshot file");
        if let Err(e) = fs::remove_file(&path) {
            warn!(path = %path.display(), error = %e, "removing stale snapshot file");
        }
    }
    Ok(best)
}

fn sync_dir(dir: &Path) -> Result<(), ClusterError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let shared = self.shared.clone();
        blocking(move || Self::build_snapshot_blocking(&shared))
            .await
            .map_err(|e| storage_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
    {
        let state = self.shared.read_state();
        Ok((state.applied.last_applied, state.applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ClusterResponse>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let shared = self.shared.clone();
        blocking(move || Self::apply_blocking(&shared, entries))
            .await
            .map_err(|e| storage_error(ErrorSubject::StateMachine, ErrorVerb::Write, e))
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<tokio::fs::File>, StorageError<NodeId>> {
        let shared = self.shared.clone();
        blocking(move || {
            let path = shared.unique_name("tmp-recv");
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)?;
            let meta = file.metadata()?;
            shared
                .receiving
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert((meta.dev(), meta.ino()), path);
            Ok(Box::new(tokio::fs::File::from_std(file)))
        })
        .await
        .map_err(|e| storage_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        mut snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError<NodeId>> {
        let signature = Some(meta.signature());
        let flushed = snapshot.flush().await;
        let received = match flushed {
            Ok(()) => (*snapshot).into_std().await,
            Err(e) => {
                return Err(storage_error(
                    ErrorSubject::Snapshot(signature),
                    ErrorVerb::Write,
                    e.into(),
                ))
            }
        };
        let shared = self.shared.clone();
        let meta_owned = meta.clone();
        blocking(move || Self::install_snapshot_blocking(&shared, &meta_owned, received))
            .await
            .map_err(|e| storage_error(ErrorSubject::Snapshot(signature), ErrorVerb::Write, e))
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let shared = self.shared.clone();
        blocking(move || {
            let current = shared.current();
            match &*current {
                Some(c) => Ok(Some(Snapshot {
                    meta: c.meta.clone(),
                    snapshot: Box::new(tokio::fs::File::from_std(File::open(&c.path)?)),
                })),
                None => Ok(None),
            }
        })
        .await
        .map_err(|e| storage_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))
    }
}

impl ChunkReader {
    /// Unsealed chunks, ascending by index; only those of `tag` if given.
    pub fn pending(&self, tag: Option<&str>) -> Vec<PendingChunk> {
        let state = self.shared.read_state();
        state
            .chunks
            .iter()
            .filter(|(_, r)| r.batch.is_none() && tag.is_none_or(|t| r.tag == t))
            .map(|(&index, r)| PendingChunk {
                index,
                tag: r.tag.clone(),
                bytes: r.bytes,
                count: r.count,
                received_unix_ms: r.received_unix_ms,
                origin: r.origin.clone(),
            })
            .collect()
    }

    /// Unsealed chunks and bytes per tag.
    pub fn pending_by_tag(&self) -> BTreeMap<String, TagPending> {
        let state = self.shared.read_state();
        let mut tags: BTreeMap<String, TagPending> = BTreeMap::new();
        for record in state.chunks.values().filter(|r| r.batch.is_none()) {
            let entry = tags.entry(record.tag.clone()).or_default();
            entry.chunks += 1;
            entry.bytes += record.bytes;
        }
        tags
    }

    /// Sealed batches whose upload is not confirmed, ascending by id.
    pub fn unconfirmed_batches(&self) -> Vec<SealedBatch> {
        let state = self.shared.read_state();
        state
            .batches
            .iter()
            .map(|(&first, b)| SealedBatch {
                first,
                tag: b.tag.clone(),
                chunks: b.chunks.clone(),
                object_key: b.object_key.clone(),
                bytes: b
                    .chunks
                    .iter()
                    .filter_map(|c| state.chunks.get(c))
                    .map(|r| r.bytes)
                    .sum(),
                sealed_at: b.sealed_at,
            })
            .collect()
    }

    /// Totals of what waits for upload.
    pub fn upload_stats(&self) -> UploadStats {
        let state = self.shared.read_state();
        let mut stats = UploadStats {
            unconfirmed_batches: state.batches.len() as u64,
            remembered_ids: state.dedup_order.len() as u64,
            ..UploadStats::default()
        };
        for record in state.chunks.values() {
            if record.batch.is_some() {
                stats.sealed_chunks += 1;
                stats.sealed_bytes += record.bytes;
            } else {
                stats.pending_chunks += 1;
                stats.pending_bytes += record.bytes;
            }
        }
        stats
    }

    /// The index a chunk id was first stored at, if it is in the dedup window. A hint only:
    /// the answer that counts is the state machine's, through the log.
    pub fn remembered_origin(&self, origin: &[u8]) -> Option<u64> {
        let state = self.shared.read_state();
        state.dedup_by_origin.get(origin).map(|&(_, index)| index)
    }

    /// Last applied log id and membership.
    pub fn applied_state(&self) -> (Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>) {
        let state = self.shared.read_state();
        (state.applied.last_applied, state.applied.membership.clone())
    }

    /// A stored chunk's entries (msgpack `[time, record]` stream), `None` if it is unknown or
    /// confirmed.
    pub async fn chunk_entries(&self, index: u64) -> Result<Option<Bytes>, ClusterError> {
        let reader = self.clone();
        blocking(move || reader.chunk_entries_blocking(index)).await
    }

    /// [`ChunkReader::chunk_entries`] for callers already on a blocking thread.
    pub fn chunk_entries_blocking(&self, index: u64) -> Result<Option<Bytes>, ClusterError> {
        let db = &self.shared.db;
        Ok(db
            .get_cf(cf(db, CF_CHUNK_DATA)?, index_key(index))?
            .map(Bytes::from))
    }
}
