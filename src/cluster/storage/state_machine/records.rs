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

/// A stored chunk's metadata (its payload: see [`crate::cluster::storage::payload`]).
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
    /// Relative to the upload target's prefix when `key_relative`, else (records written
    /// before the state machine derived keys) the full key the proposer chose.
    pub(crate) object_key: String,
    /// Log index of the `SealBatch` entry.
    pub(crate) sealed_at: u64,
    /// Set by `DeadLetterBatch`: the batch goes to the dead-letter area instead of
    /// `object_key`. Absent in records written before dead-lettering existed.
    #[serde(default)]
    pub(crate) dead_letter: Option<DeadLetter>,
    /// Whether `object_key` was derived by the state machine (relative to the prefix). Last
    /// field: records are msgpack arrays, so older records still decode (as `false`).
    #[serde(default)]
    pub(crate) key_relative: bool,
}

/// Why and where a batch was set aside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Why its upload failed (as proposed, truncated to [`MAX_DEAD_LETTER_REASON`] bytes).
    pub reason: String,
    /// Its key in the dead-letter area, relative to the upload target's prefix (the state
    /// machine does not know the prefix): `dead-letter/<first>-<last>.log.gz`.
    pub object_key: String,
}

/// Longest dead-letter reason kept, in bytes.
pub(crate) const MAX_DEAD_LETTER_REASON: usize = 512;

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
    /// Batches dead-lettered since the cluster began (a counter for `cluster status`).
    #[serde(default)]
    pub(crate) dead_lettered_batches: u64,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::storage::db::{decode, encode};

    /// Records written before dead-lettering existed (no `dead_letter`, no counter) still
    /// decode, with nothing dead-lettered.
    #[test]
    fn records_written_before_dead_letters_still_decode() {
        #[derive(Serialize)]
        struct OldBatch {
            tag: String,
            chunks: Vec<u64>,
            object_key: String,
            sealed_at: u64,
        }
        let old = encode(&OldBatch {
            tag: "app".into(),
            chunks: vec![3, 4],
            object_key: "app/k.log.gz".into(),
            sealed_at: 9,
        })
        .unwrap();
        let record: BatchRecord = decode(&old).unwrap();
        assert_eq!(record.chunks, vec![3, 4]);
        assert_eq!(record.sealed_at, 9);
        assert_eq!(record.dead_letter, None);
        assert!(
            !record.key_relative,
            "an old record holds the proposer's full key"
        );

        #[derive(Serialize)]
        struct OldApplied {
            last_applied: Option<LogId<NodeId>>,
            membership: StoredMembership<NodeId, BasicNode>,
            next_dedup_seq: u64,
        }
        let old = encode(&OldApplied {
            last_applied: None,
            membership: StoredMembership::default(),
            next_dedup_seq: 7,
        })
        .unwrap();
        let applied: AppliedRecord = decode(&old).unwrap();
        assert_eq!(applied.next_dedup_seq, 7);
        assert_eq!(applied.dead_lettered_batches, 0);

        // And the new fields round-trip.
        let new = BatchRecord {
            dead_letter: Some(DeadLetter {
                reason: "400".into(),
                object_key: "dead-letter/1-2.log.gz".into(),
            }),
            ..record
        };
        assert_eq!(decode::<BatchRecord>(&encode(&new).unwrap()).unwrap(), new);
    }
}
