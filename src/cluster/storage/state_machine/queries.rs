//! Read-only queries on the state machine, for the uploader and the admin API: pending
//! chunks, unconfirmed batches, upload totals, remembered chunk ids, chunk payloads.
//!
//! Owns [`ChunkReader`] and the views it returns. Metadata queries are pure functions of an
//! [`SmState`] (so model tests check them too) and never block on I/O; only payload reads go
//! to RocksDB. It must not change the state: only the log does, through `apply`.

use super::handle::SmShared;
use super::records::{DeadLetter, SmState};
use crate::cluster::storage::db::{blocking, memory_usage, StorageMemory};
use crate::cluster::{ClusterError, NodeId};
use bytes::Bytes;
use openraft::{BasicNode, LogId, StoredMembership};
use std::collections::BTreeMap;
use std::sync::Arc;

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
    /// The object key: relative to the upload target's prefix when `key_relative` (derived by
    /// the state machine), else a full key recorded by an older version.
    pub object_key: String,
    pub key_relative: bool,
    /// Sum of its chunks' payload sizes.
    pub bytes: u64,
    /// Log index of the `SealBatch` entry.
    pub sealed_at: u64,
    /// Sum of its chunks' event counts.
    pub count: u64,
    /// Set once the batch is dead-lettered: upload it under this key instead of `object_key`.
    pub dead_letter: Option<DeadLetter>,
}

impl SealedBatch {
    /// Whether the batch's object (and its dead-letter object) is gzip, as its key says.
    pub fn gzip(&self) -> bool {
        super::apply::key_is_gzip(&self.object_key)
    }
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
    /// Batches dead-lettered since the cluster began (uploaded to the dead-letter area or
    /// waiting for it).
    pub dead_lettered_batches: u64,
}

/// Pending (unsealed) chunks of one tag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TagPending {
    pub chunks: u64,
    pub bytes: u64,
}

impl SmState {
    /// Unsealed chunks, ascending by index; only those of `tag` if given.
    pub(crate) fn pending(&self, tag: Option<&str>) -> Vec<PendingChunk> {
        self.pending
            .iter()
            .filter(|(_, r)| tag.is_none_or(|t| r.tag == t))
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
    pub(crate) fn pending_by_tag(&self) -> BTreeMap<String, TagPending> {
        let mut tags: BTreeMap<String, TagPending> = BTreeMap::new();
        for record in self.pending.values() {
            let entry = tags.entry(record.tag.clone()).or_default();
            entry.chunks += 1;
            entry.bytes += record.bytes;
        }
        tags
    }

    /// Sealed batches whose upload is not confirmed, ascending by id.
    pub(crate) fn unconfirmed_batches(&self) -> Vec<SealedBatch> {
        self.batches
            .iter()
            .map(|(&first, b)| SealedBatch {
                first,
                tag: b.record.tag.clone(),
                chunks: b.record.chunks.clone(),
                object_key: b.record.object_key.clone(),
                key_relative: b.record.key_relative,
                bytes: b.bytes,
                sealed_at: b.record.sealed_at,
                count: b.count,
                dead_letter: b.record.dead_letter.clone(),
            })
            .collect()
    }

    /// Totals of what waits for upload.
    pub(crate) fn upload_stats(&self) -> UploadStats {
        let mut stats = UploadStats {
            unconfirmed_batches: self.batches.len() as u64,
            remembered_ids: self.dedup.len() as u64,
            dead_lettered_batches: self.applied.dead_lettered_batches,
            ..UploadStats::default()
        };
        for record in self.pending.values() {
            stats.pending_chunks += 1;
            stats.pending_bytes += record.bytes;
        }
        for batch in self.batches.values() {
            stats.sealed_chunks += batch.record.chunks.len() as u64;
            stats.sealed_bytes += batch.bytes;
        }
        stats
    }

    /// When the chunk with the lowest index that is not confirmed uploaded yet was received;
    /// `None` when every chunk is confirmed. (A batch's id is its lowest chunk index.)
    pub(crate) fn oldest_unconfirmed_received_unix_ms(&self) -> Option<u64> {
        let pending = self.pending.first_key_value();
        let sealed = self.batches.first_key_value();
        match (pending, sealed) {
            (Some((p, r)), Some((b, _))) if p < b => Some(r.received_unix_ms),
            (_, Some((_, batch))) => Some(batch.first_received_unix_ms),
            (Some((_, r)), None) => Some(r.received_unix_ms),
            (None, None) => None,
        }
    }

    /// The index a chunk id was first stored at, if it is in the dedup window.
    pub(crate) fn remembered_origin(&self, origin: &[u8]) -> Option<u64> {
        self.dedup.get(origin)
    }
}

/// Read-only queries on the state machine, for the uploader and the admin API. Cheap to clone.
/// Metadata queries read memory and never block on I/O; payload reads go to RocksDB.
#[derive(Clone)]
pub struct ChunkReader {
    shared: Arc<SmShared>,
}

impl ChunkReader {
    pub(crate) fn new(shared: Arc<SmShared>) -> Self {
        ChunkReader { shared }
    }

    /// Unsealed chunks, ascending by index; only those of `tag` if given.
    pub fn pending(&self, tag: Option<&str>) -> Vec<PendingChunk> {
        self.shared.read_state().pending(tag)
    }

    /// Unsealed chunks and bytes per tag.
    pub fn pending_by_tag(&self) -> BTreeMap<String, TagPending> {
        self.shared.read_state().pending_by_tag()
    }

    /// Sealed batches whose upload is not confirmed, ascending by id.
    pub fn unconfirmed_batches(&self) -> Vec<SealedBatch> {
        self.shared.read_state().unconfirmed_batches()
    }

    /// Totals of what waits for upload.
    pub fn upload_stats(&self) -> UploadStats {
        self.shared.read_state().upload_stats()
    }

    /// When the chunk with the lowest index that is not confirmed uploaded yet was received
    /// (the upload lag's start); `None` when every chunk is confirmed.
    pub fn oldest_unconfirmed_received_unix_ms(&self) -> Option<u64> {
        self.shared
            .read_state()
            .oldest_unconfirmed_received_unix_ms()
    }

    /// The index a chunk id was first stored at, if it is in the dedup window. A hint only:
    /// the answer that counts is the state machine's, through the log.
    pub fn remembered_origin(&self, origin: &[u8]) -> Option<u64> {
        self.shared.read_state().remembered_origin(origin)
    }

    /// Last applied log id and membership.
    pub fn applied_state(&self) -> (Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>) {
        let state = self.shared.read_state();
        (state.applied.last_applied, state.applied.membership.clone())
    }

    /// What the node's RocksDB holds in memory now.
    pub fn storage_memory(&self) -> StorageMemory {
        memory_usage(&self.shared.db)
    }

    /// A stored chunk's entries (msgpack `[time, record]` stream), `None` if it is unknown or
    /// confirmed.
    pub async fn chunk_entries(&self, index: u64) -> Result<Option<Bytes>, ClusterError> {
        let reader = self.clone();
        blocking(move || reader.chunk_entries_blocking(index)).await
    }

    /// [`ChunkReader::chunk_entries`] for callers already on a blocking thread.
    pub fn chunk_entries_blocking(&self, index: u64) -> Result<Option<Bytes>, ClusterError> {
        self.shared.payloads.read(index)
    }

    /// [`ChunkReader::chunk_entries_blocking`] into `out` (replacing what it held, reusing its
    /// allocation: for a caller reading chunk after chunk); `false` if there is no such chunk.
    pub fn chunk_entries_into_blocking(
        &self,
        index: u64,
        out: &mut Vec<u8>,
    ) -> Result<bool, ClusterError> {
        self.shared.payloads.read_into(index, out)
    }
}
