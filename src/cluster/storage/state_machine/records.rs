//! The state machine's records: what one chunk, one sealed batch, one remembered chunk id and
//! the applied state look like, on disk (msgpack values of the `sm_*` column families) and in
//! the in-memory mirror [`SmState`].
//!
//! Owns those types and nothing else. It must not read or write RocksDB (that is
//! [`super::persist`]) nor decide how a request changes them (that is [`super::apply`]).
//! Changing a field here changes the on-disk format.

use crate::cluster::NodeId;
use bytes::Bytes;
use openraft::{BasicNode, LogId, StoredMembership};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// A stored chunk's metadata (its payload is in `sm_chunk_data` under the same index).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChunkRecord {
    pub(crate) tag: String,
    pub(crate) bytes: u64,
    pub(crate) count: u32,
    pub(crate) received_unix_ms: u64,
    pub(crate) origin: Option<Bytes>,
    /// The batch that sealed it, if any.
    pub(crate) batch: Option<u64>,
}

/// A sealed batch whose upload is not confirmed yet, key = batch id (first chunk index).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BatchRecord {
    pub(crate) tag: String,
    pub(crate) chunks: Vec<u64>,
    pub(crate) object_key: String,
    /// Log index of the `SealBatch` entry.
    pub(crate) sealed_at: u64,
}

/// One chunk id of the dedup window, key = apply-order sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DedupRecord {
    pub(crate) origin: Bytes,
    pub(crate) index: u64,
}

/// Applied state, stored under one key so it changes atomically.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AppliedRecord {
    pub(crate) last_applied: Option<LogId<NodeId>>,
    pub(crate) membership: StoredMembership<NodeId, BasicNode>,
    pub(crate) next_dedup_seq: u64,
}

/// The in-memory mirror of the state-machine column families (payloads excluded).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct SmState {
    pub(crate) applied: AppliedRecord,
    pub(crate) chunks: BTreeMap<u64, ChunkRecord>,
    pub(crate) batches: BTreeMap<u64, BatchRecord>,
    /// origin → (sequence, chunk index).
    pub(crate) dedup_by_origin: HashMap<Bytes, (u64, u64)>,
    /// (sequence, origin), oldest first.
    pub(crate) dedup_order: VecDeque<(u64, Bytes)>,
}
