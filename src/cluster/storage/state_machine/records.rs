//! The state machine's records: what one chunk, one sealed batch, one remembered chunk id and
//! the applied state look like, on disk (msgpack values of the `sm_*` column families), and the
//! part of them kept in memory, [`SmState`]: pending chunks, sealed batches with their chunks'
//! totals, the dedup window's keys.
//!
//! Owns those types and nothing else. It must not read or write RocksDB (that is
//! [`super::persist`]) nor decide how a request changes them (that is [`super::apply`]).
//! Changing a field here changes the on-disk format.

use crate::cluster::{ClusterError, NodeId};
use bytes::Bytes;
use openraft::{BasicNode, LogId, StoredMembership};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
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

/// What the state machine keeps in memory of its column families (payloads excluded): all it
/// needs to apply entries and answer queries without reading RocksDB.
///
/// A chunk's record is held while the chunk is pending; sealing it into a batch moves its
/// size and count into the batch's totals and leaves its record on disk only, so memory does
/// not grow with the chunks that wait for an unreachable bucket (8 bytes each, the batch's
/// chunk list).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct SmState {
    pub(crate) applied: AppliedRecord,
    /// Chunks not sealed into a batch yet (`sm_chunk_meta` records whose `batch` is `None`).
    pub(crate) pending: BTreeMap<u64, ChunkRecord>,
    /// Sealed batches whose upload is not confirmed (`sm_batches`), with their chunks' totals.
    pub(crate) batches: BTreeMap<u64, UnconfirmedBatch>,
    /// The chunk ids remembered to answer retransmissions (`sm_dedup`).
    pub(crate) dedup: DedupWindow,
}

impl SmState {
    /// Take a chunk record read from `sm_chunk_meta` (at open, after the batches): a pending
    /// one is kept, a sealed one counted into its batch. A sealed chunk whose batch is not
    /// there is corrupt state (a confirm deletes the chunks with their batch, in one write).
    pub(crate) fn add_chunk(
        &mut self,
        index: u64,
        record: ChunkRecord,
    ) -> Result<(), ClusterError> {
        match record.batch {
            None => {
                self.pending.insert(index, record);
            }
            Some(first) => match self.batches.get_mut(&first) {
                Some(batch) => batch.add(index, &record),
                None => {
                    return Err(ClusterError::Corrupt(format!(
                        "chunk {index} is sealed in batch {first}, which is not stored"
                    )))
                }
            },
        }
        Ok(())
    }
}

/// A sealed batch in memory: its record and the totals of its chunks' records (which are then
/// on disk only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnconfirmedBatch {
    pub(crate) record: BatchRecord,
    /// Sum of its chunks' payload sizes.
    pub(crate) bytes: u64,
    /// Sum of its chunks' event counts.
    pub(crate) count: u64,
    /// When its first (lowest-index) chunk was received.
    pub(crate) first_received_unix_ms: u64,
}

impl UnconfirmedBatch {
    /// A batch of no chunks yet, for [`UnconfirmedBatch::add`].
    pub(crate) fn new(record: BatchRecord) -> Self {
        UnconfirmedBatch {
            record,
            bytes: 0,
            count: 0,
            first_received_unix_ms: 0,
        }
    }

    /// Count the record of chunk `index`, one of this batch's, into the totals.
    pub(crate) fn add(&mut self, index: u64, chunk: &ChunkRecord) {
        if self.record.chunks.first() == Some(&index) {
            self.first_received_unix_ms = chunk.received_unix_ms;
        }
        self.bytes += chunk.bytes;
        self.count += u64::from(chunk.count);
    }
}

/// The in-memory form of a remembered chunk id: the first 16 bytes of its SHA-256.
///
/// Chunk ids are up to [`crate::origin::MAX_ORIGIN_LEN`] bytes; the window holds up to
/// `dedup_window` of them (100,000 by default), so a fixed-size digest instead of the id itself
/// keeps an entry free of heap allocations (about 60 instead of 200 bytes). Two ids with the
/// same key would need a 128-bit SHA-256 collision. `sm_dedup` on disk keeps the full ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct DedupKey([u8; 16]);

impl DedupKey {
    pub(crate) fn of(origin: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(b"lograft dedup key\0");
        h.update(origin);
        let digest = h.finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        DedupKey(key)
    }
}

/// The dedup window in memory: which chunk ids are remembered, at which sequence number, and
/// the chunk index each was first stored at. Mirrors `sm_dedup` (`seq → DedupRecord`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DedupWindow {
    /// key → (sequence, chunk index).
    by_key: HashMap<DedupKey, (u64, u64)>,
    /// (sequence, key), oldest first.
    order: VecDeque<(u64, DedupKey)>,
}

impl DedupWindow {
    /// The chunk index `origin` was first stored at, if it is remembered.
    pub(crate) fn get(&self, origin: &[u8]) -> Option<u64> {
        self.by_key
            .get(&DedupKey::of(origin))
            .map(|&(_, index)| index)
    }

    /// Remember `origin` (stored at `index`) under sequence number `seq`, the newest.
    pub(crate) fn remember(&mut self, seq: u64, origin: &[u8], index: u64) {
        let key = DedupKey::of(origin);
        self.by_key.insert(key, (seq, index));
        self.order.push_back((seq, key));
    }

    /// Forget the oldest id; its sequence number (to delete from `sm_dedup`).
    pub(crate) fn forget_oldest(&mut self) -> Option<u64> {
        let (seq, key) = self.order.pop_front()?;
        // The key may have been remembered again later under a newer sequence number.
        if self.by_key.get(&key).is_some_and(|&(s, _)| s == seq) {
            self.by_key.remove(&key);
        }
        Some(seq)
    }

    /// Ids remembered.
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::storage::db::{decode, encode};

    /// The window answers by id, forgets oldest first, and an id remembered again under a
    /// newer sequence number survives the eviction of its older entry.
    #[test]
    fn dedup_window_forgets_oldest_and_keeps_a_newer_repeat() {
        let mut window = DedupWindow::default();
        window.remember(1, b"a", 10);
        window.remember(2, b"b", 20);
        window.remember(3, b"a", 30);
        assert_eq!(window.get(b"a"), Some(30));
        assert_eq!(window.get(b"b"), Some(20));
        assert_eq!(window.get(b"c"), None);
        assert_eq!(window.forget_oldest(), Some(1));
        assert_eq!(window.get(b"a"), Some(30), "the newer entry of a stays");
        assert_eq!(window.forget_oldest(), Some(2));
        assert_eq!(window.get(b"b"), None);
        assert_eq!(window.len(), 1);
        assert_ne!(DedupKey::of(b"a"), DedupKey::of(b"b"));
        assert_eq!(DedupKey::of(b"a"), DedupKey::of(b"a"));
    }

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
