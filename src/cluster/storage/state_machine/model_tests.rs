//! Property tests of the state machine's rules against a simple in-memory model: dedup of chunk
//! ids within the window (of whole chunks and of a forwarder frame's segments), seals of pending chunks of one tag (and period) only, confirms of
//! sealed batches only, dead-letters of sealed, unconfirmed batches only (with the dead-letter
//! key derived by the state machine, never proposed), object keys derived from the batch
//! whatever key a proposer sends, refusals that name no chunk's tag. They drive
//! [`apply_entry`], the function the RocksDB store applies with, and check that the
//! [`Mutation`]s it returns rebuild exactly the state it keeps in memory; a smaller run does
//! the same through a real store and a reopen.

use super::apply::{apply_entry, Mutation};
use super::records::{BatchRecord, ChunkRecord, DedupRecord, SmState, UnconfirmedBatch};
use super::StateMachineStore;
use crate::cluster::shared_bytes::lies_within;
use crate::cluster::storage::{open_storage_blocking, StoreOptions};
use crate::cluster::{ClusterRequest, ClusterResponse, TypeConfig, MAX_ORIGIN_LEN};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use proptest::prelude::*;
use std::collections::{BTreeMap, VecDeque};

/// Every tag starts with `tag-`, so a refusal that names a chunk's tag is easy to spot.
const TAGS: [&str; 3] = ["tag-app", "tag-web", "tag-db"];
const DAY_MS: u64 = 86_400_000;

/// What a test step asks for; turned into a request against the model's current state.
#[derive(Debug, Clone)]
enum Step {
    /// Append a chunk; `origin` picks a chunk id from a small pool (so repeats happen), `long`
    /// makes it one byte over the limit.
    Append {
        origin: Option<u8>,
        long: bool,
        tag: usize,
        len: u8,
        day: u8,
        /// Proposed as the leader does by default: LZ4-compressed (`AppendCompressed`).
        compressed: bool,
    },
    /// Append a forwarder frame of segments: each `(origin, len)` picks an id from the same
    /// pool (or none); `long` makes the first id one byte over the limit; `miscover` makes the
    /// segments cover one byte less than the entries.
    AppendSegments {
        segments: Vec<(Option<u8>, u8)>,
        long: bool,
        miscover: bool,
        tag: usize,
        day: u8,
        compressed: bool,
    },
    /// Seal up to `take` pending chunks of a tag, with a one-day period if `daily` (refused
    /// when they arrived on different days), as plain text if `plain`.
    SealPending {
        tag: usize,
        take: usize,
        skip: usize,
        daily: bool,
        plain: bool,
    },
    /// Seal an arbitrary index list (mostly refused), sending a key of the proposer's choice
    /// (which must be ignored) when `evil_key`.
    SealArbitrary {
        tag: usize,
        chunks: Vec<u64>,
        evil_key: bool,
    },
    /// Confirm the `pick`-th unconfirmed batch, or an arbitrary id.
    Confirm { pick: usize, arbitrary: Option<u64> },
    /// Dead-letter the `pick`-th unconfirmed batch, or an arbitrary id; `long` gives a reason
    /// longer than the state machine keeps (with multi-byte characters).
    DeadLetter {
        pick: usize,
        arbitrary: Option<u64>,
        long: bool,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (
            proptest::option::weighted(0.8, 0u8..12),
            proptest::bool::weighted(0.05),
            0..TAGS.len(),
            0u8..40,
            0u8..3,
            proptest::bool::ANY
        )
            .prop_map(|(origin, long, tag, len, day, compressed)| Step::Append {
                origin,
                long,
                tag,
                len,
                day,
                compressed
            }),
        3 => (
            proptest::collection::vec(
                (proptest::option::weighted(0.9, 0u8..12), 1u8..20),
                0..5
            ),
            proptest::bool::weighted(0.05),
            proptest::bool::weighted(0.05),
            0..TAGS.len(),
            0u8..3,
            proptest::bool::ANY
        )
            .prop_map(|(segments, long, miscover, tag, day, compressed)| Step::AppendSegments {
                segments,
                long,
                miscover,
                tag,
                day,
                compressed
            }),
        2 => (
            0..TAGS.len(),
            1usize..5,
            0usize..3,
            proptest::bool::weighted(0.3),
            proptest::bool::weighted(0.3)
        )
            .prop_map(|(tag, take, skip, daily, plain)| Step::SealPending {
                tag,
                take,
                skip,
                daily,
                plain
            }),
        1 => (
            0..TAGS.len(),
            proptest::collection::vec(0u64..40, 0..4),
            proptest::bool::weighted(0.5)
        )
            .prop_map(|(tag, chunks, evil_key)| Step::SealArbitrary {
                tag,
                chunks,
                evil_key
            }),
        2 => (0usize..4, proptest::option::weighted(0.2, 0u64..40))
            .prop_map(|(pick, arbitrary)| Step::Confirm { pick, arbitrary }),
        1 => (
            0usize..4,
            proptest::option::weighted(0.2, 0u64..40),
            proptest::bool::weighted(0.3)
        )
            .prop_map(|(pick, arbitrary, long)| Step::DeadLetter {
                pick,
                arbitrary,
                long
            }),
    ]
}

#[derive(Debug, Clone, PartialEq)]
struct ModelChunk {
    tag: String,
    bytes: u64,
    count: u64,
    received_unix_ms: u64,
    origin: Option<Bytes>,
    batch: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
struct ModelBatch {
    tag: String,
    chunks: Vec<u64>,
    object_key: String,
    sealed_at: u64,
    /// (reason, dead-letter key) once dead-lettered.
    dead_letter: Option<(String, String)>,
}

/// The rules, written as plainly as possible.
#[derive(Debug, Default)]
struct Model {
    window: usize,
    chunks: BTreeMap<u64, ModelChunk>,
    batches: BTreeMap<u64, ModelBatch>,
    /// Remembered chunk ids, oldest first, at most `window`.
    remembered: VecDeque<(Bytes, u64)>,
    /// Batches dead-lettered so far.
    dead_lettered: u64,
}

impl Model {
    fn pending_of(&self, tag: &str) -> Vec<u64> {
        self.chunks
            .iter()
            .filter(|(_, c)| c.tag == tag && c.batch.is_none())
            .map(|(&i, _)| i)
            .collect()
    }

    /// Remember a chunk id, forgetting the oldest beyond the window.
    fn remember(&mut self, origin: &Bytes, index: u64) {
        self.remembered.push_back((origin.clone(), index));
        while self.remembered.len() > self.window {
            self.remembered.pop_front();
        }
    }

    fn apply(&mut self, index: u64, request: &ClusterRequest) -> ClusterResponse {
        // A compressed append means what its plain `AppendSegments` means.
        let plain;
        let request = match request {
            ClusterRequest::AppendCompressed {
                tag,
                segments,
                received_unix_ms,
                ..
            } => {
                plain = ClusterRequest::AppendSegments {
                    tag: tag.clone(),
                    entries: request.events().expect("decompresses").expect("an append"),
                    segments: segments.clone(),
                    received_unix_ms: *received_unix_ms,
                };
                &plain
            }
            other => other,
        };
        match request {
            ClusterRequest::AppendChunk {
                origin,
                tag,
                entries,
                received_unix_ms,
                ..
            } => {
                if let Some(o) = origin {
                    if o.len() > MAX_ORIGIN_LEN {
                        return ClusterResponse::Rejected(String::new());
                    }
                    if let Some((_, first)) = self.remembered.iter().find(|(r, _)| r == o) {
                        return ClusterResponse::Duplicate { index: *first };
                    }
                    self.remember(o, index);
                }
                self.chunks.insert(
                    index,
                    ModelChunk {
                        tag: tag.clone(),
                        bytes: entries.len() as u64,
                        count: 1,
                        received_unix_ms: *received_unix_ms,
                        origin: origin.clone(),
                        batch: None,
                    },
                );
                ClusterResponse::Appended { index }
            }
            ClusterRequest::AppendSegments {
                tag,
                entries,
                segments,
                received_unix_ms,
            } => {
                let covered: usize = segments.iter().map(|s| s.len).sum();
                if segments.is_empty() || covered != entries.len() {
                    return ClusterResponse::Rejected(String::new());
                }
                if segments
                    .iter()
                    .any(|s| s.origin.as_ref().is_some_and(|o| o.len() > MAX_ORIGIN_LEN))
                {
                    return ClusterResponse::Rejected(String::new());
                }
                // Keep each segment whose id is new, in the window and in this request.
                let mut kept = Vec::new();
                let mut first_duplicate = None;
                for s in segments {
                    if let Some(o) = &s.origin {
                        if let Some((_, first)) = self.remembered.iter().find(|(r, _)| r == o) {
                            first_duplicate.get_or_insert(*first);
                            continue;
                        }
                        if kept
                            .iter()
                            .any(|k: &&crate::origin::Segment| k.origin.as_ref() == Some(o))
                        {
                            first_duplicate.get_or_insert(index);
                            continue;
                        }
                    }
                    kept.push(s);
                }
                if kept.is_empty() {
                    return ClusterResponse::Duplicate {
                        index: first_duplicate.expect("segments are not empty"),
                    };
                }
                for o in kept.iter().filter_map(|s| s.origin.as_ref()) {
                    self.remember(o, index);
                }
                self.chunks.insert(
                    index,
                    ModelChunk {
                        tag: tag.clone(),
                        bytes: kept.iter().map(|s| s.len as u64).sum(),
                        count: kept.iter().map(|s| u64::from(s.count)).sum(),
                        received_unix_ms: *received_unix_ms,
                        // One sender's chunk kept alone shows its id.
                        origin: match kept.as_slice() {
                            [only] => only.origin.clone(),
                            _ => None,
                        },
                        batch: None,
                    },
                );
                ClusterResponse::Appended { index }
            }
            ClusterRequest::SealBatch {
                tag,
                chunks,
                period_ms,
                uncompressed,
                ..
            } => {
                let pending = self.pending_of(tag);
                let period = |c: &u64| match period_ms {
                    Some(p) if *p > 0 => Some(self.chunks[c].received_unix_ms / p),
                    _ => None,
                };
                let valid = !chunks.is_empty()
                    && chunks.windows(2).all(|w| w[0] < w[1])
                    && chunks.iter().all(|c| pending.contains(c))
                    && chunks.iter().all(|c| period(c) == period(&chunks[0]));
                if !valid {
                    return ClusterResponse::Rejected(String::new());
                }
                let first = chunks[0];
                let last = chunks[chunks.len() - 1];
                // The tags are safe names: the key is the tag, the first chunk's UTC day, the
                // range. Whatever key the proposer sent plays no part.
                let day = DateTime::<Utc>::from_timestamp_millis(
                    self.chunks[&first].received_unix_ms as i64,
                )
                .expect("valid time")
                .format("%Y/%m/%d");
                let suffix = if *uncompressed { ".log" } else { ".log.gz" };
                let object_key = format!("{tag}/{day}/{first:020}-{last:020}{suffix}");
                for c in chunks {
                    self.chunks.get_mut(c).expect("pending").batch = Some(first);
                }
                self.batches.insert(
                    first,
                    ModelBatch {
                        tag: tag.clone(),
                        chunks: chunks.clone(),
                        object_key,
                        sealed_at: index,
                        dead_letter: None,
                    },
                );
                ClusterResponse::Sealed { first }
            }
            ClusterRequest::ConfirmUpload { first } => {
                let Some(batch) = self.batches.remove(first) else {
                    return ClusterResponse::Rejected(String::new());
                };
                for c in &batch.chunks {
                    self.chunks.remove(c);
                }
                ClusterResponse::Confirmed { first: *first }
            }
            ClusterRequest::DeadLetterBatch { first, reason } => {
                let Some(batch) = self.batches.get_mut(first) else {
                    return ClusterResponse::Rejected(String::new());
                };
                if batch.dead_letter.is_some() {
                    return ClusterResponse::Rejected(String::new());
                }
                let last = *batch.chunks.last().expect("batches are not empty");
                // Stored like the batch: gzip if its key says so.
                let suffix = if batch.object_key.ends_with(".gz") {
                    ".log.gz"
                } else {
                    ".log"
                };
                let key = format!("dead-letter/{first:020}-{last:020}{suffix}");
                // Keep whole characters up to 512 bytes.
                let mut kept = String::new();
                for c in reason.chars() {
                    if kept.len() + c.len_utf8() > 512 {
                        break;
                    }
                    kept.push(c);
                }
                batch.dead_letter = Some((kept, key.clone()));
                self.dead_lettered += 1;
                ClusterResponse::DeadLettered {
                    first: *first,
                    object_key: key,
                }
            }
            ClusterRequest::AppendCompressed { .. } => unreachable!("made plain above"),
        }
    }
}

/// The request a step stands for, given the model's state.
fn request(step: &Step, model: &Model) -> ClusterRequest {
    match step {
        Step::Append {
            origin,
            long,
            tag,
            len,
            day,
            compressed,
        } => compressed_if(
            *compressed,
            ClusterRequest::AppendChunk {
                origin: origin.map(|o| {
                    let n = if *long { MAX_ORIGIN_LEN + 1 } else { 16 };
                    Bytes::from(vec![o; n])
                }),
                tag: TAGS[*tag].to_string(),
                entries: Bytes::from(vec![0x90; *len as usize]),
                count: 1,
                received_unix_ms: 1_795_568_523_000 + u64::from(*day) * DAY_MS,
            },
        ),
        Step::AppendSegments {
            segments,
            long,
            miscover,
            tag,
            day,
            compressed,
        } => {
            let segments: Vec<crate::origin::Segment> = segments
                .iter()
                .enumerate()
                .map(|(i, (origin, len))| crate::origin::Segment {
                    origin: origin.map(|o| {
                        let n = if *long && i == 0 {
                            MAX_ORIGIN_LEN + 1
                        } else {
                            16
                        };
                        Bytes::from(vec![o; n])
                    }),
                    len: *len as usize,
                    count: u32::from(*len % 3 + 1),
                })
                .collect();
            let covered: usize = segments.iter().map(|s| s.len).sum();
            let len = if *miscover { covered + 1 } else { covered };
            compressed_if(
                *compressed,
                ClusterRequest::AppendSegments {
                    tag: TAGS[*tag].to_string(),
                    entries: Bytes::from(vec![0x90; len]),
                    segments,
                    received_unix_ms: 1_795_568_523_000 + u64::from(*day) * DAY_MS,
                },
            )
        }
        Step::SealPending {
            tag,
            take,
            skip,
            daily,
            plain,
        } => {
            let tag = TAGS[*tag];
            let chunks: Vec<u64> = model
                .pending_of(tag)
                .into_iter()
                .skip(*skip)
                .take(*take)
                .collect();
            ClusterRequest::SealBatch {
                tag: tag.to_string(),
                chunks,
                ignored_key: String::new(),
                period_ms: daily.then_some(DAY_MS),
                uncompressed: *plain,
            }
        }
        Step::SealArbitrary {
            tag,
            chunks,
            evil_key,
        } => ClusterRequest::SealBatch {
            tag: TAGS[*tag].to_string(),
            chunks: chunks.clone(),
            ignored_key: if *evil_key {
                // An existing object's key, or one outside the tag's area.
                format!("{}/../tag-web/2026/11/26/1.log.gz", TAGS[*tag])
            } else {
                String::new()
            },
            period_ms: None,
            uncompressed: false,
        },
        Step::Confirm { pick, arbitrary } => {
            let first = match arbitrary {
                Some(id) => *id,
                None => {
                    let ids: Vec<u64> = model.batches.keys().copied().collect();
                    if ids.is_empty() {
                        0
                    } else {
                        ids[pick % ids.len()]
                    }
                }
            };
            ClusterRequest::ConfirmUpload { first }
        }
        Step::DeadLetter {
            pick,
            arbitrary,
            long,
        } => {
            let first = match arbitrary {
                Some(id) => *id,
                None => {
                    let ids: Vec<u64> = model.batches.keys().copied().collect();
                    if ids.is_empty() {
                        0
                    } else {
                        ids[pick % ids.len()]
                    }
                }
            };
            let reason = if *long {
                format!("x{}", "\u{e9}".repeat(300))
            } else {
                "object store: 400 KeyTooLong".to_string()
            };
            ClusterRequest::DeadLetterBatch { first, reason }
        }
    }
}

fn entry(index: u64, request: ClusterRequest) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(request),
    }
}

/// Column families as plain maps: what the mutations leave behind.
#[derive(Debug, Default)]
struct Columns {
    chunk_data: BTreeMap<u64, Bytes>,
    chunk_meta: BTreeMap<u64, ChunkRecord>,
    batches: BTreeMap<u64, BatchRecord>,
    dedup: BTreeMap<u64, DedupRecord>,
}

impl Columns {
    fn write(&mut self, mutations: &[Mutation]) {
        for m in mutations {
            match m.clone() {
                Mutation::PutChunkData { index, entries } => {
                    self.chunk_data.insert(index, entries);
                }
                Mutation::PutChunkMeta { index, record } => {
                    self.chunk_meta.insert(index, record);
                }
                Mutation::DeleteChunk { index } => {
                    self.chunk_data.remove(&index);
                    self.chunk_meta.remove(&index);
                }
                Mutation::PutBatch { first, record } => {
                    self.batches.insert(first, record);
                }
                Mutation::DeleteBatch { first } => {
                    self.batches.remove(&first);
                }
                Mutation::PutDedup { seq, record } => {
                    self.dedup.insert(seq, record);
                }
                Mutation::DeleteDedup { seq } => {
                    self.dedup.remove(&seq);
                }
            }
        }
    }

    /// The state a reopen would load from these columns (as `persist::load_state` does).
    fn load(&self, applied: &SmState) -> SmState {
        // Pending chunks keep their records; a sealed chunk's record is summed into its batch.
        let mut state = SmState {
            applied: applied.applied.clone(),
            pending: self
                .chunk_meta
                .iter()
                .filter(|(_, r)| r.batch.is_none())
                .map(|(&i, r)| (i, r.clone()))
                .collect(),
            ..SmState::default()
        };
        for (&first, record) in &self.batches {
            let chunks: Vec<&ChunkRecord> = self
                .chunk_meta
                .values()
                .filter(|r| r.batch == Some(first))
                .collect();
            state.batches.insert(
                first,
                UnconfirmedBatch {
                    record: record.clone(),
                    bytes: chunks.iter().map(|r| r.bytes).sum(),
                    count: chunks.iter().map(|r| u64::from(r.count)).sum(),
                    first_received_unix_ms: self.chunk_meta[&first].received_unix_ms,
                },
            );
        }
        for (&seq, record) in &self.dedup {
            state.dedup.remember(seq, &record.origin, record.index);
        }
        state
    }
}

/// Responses agree; refusals agree on being refusals (their texts are the store's own).
fn same_response(real: &ClusterResponse, model: &ClusterResponse) -> bool {
    match (real, model) {
        (ClusterResponse::Rejected(_), ClusterResponse::Rejected(_)) => true,
        _ => real == model,
    }
}

/// The state's query views equal the model's.
fn check_views(state: &SmState, model: &Model, columns: &Columns) -> Result<(), TestCaseError> {
    let pending: Vec<(u64, String, u64, u64, Option<Bytes>)> = state
        .pending(None)
        .into_iter()
        .map(|p| (p.index, p.tag, p.bytes, p.received_unix_ms, p.origin))
        .collect();
    let model_pending: Vec<(u64, String, u64, u64, Option<Bytes>)> = model
        .chunks
        .iter()
        .filter(|(_, c)| c.batch.is_none())
        .map(|(&i, c)| {
            (
                i,
                c.tag.clone(),
                c.bytes,
                c.received_unix_ms,
                c.origin.clone(),
            )
        })
        .collect();
    prop_assert_eq!(pending, model_pending);
    for tag in TAGS {
        let of_tag: Vec<u64> = state.pending(Some(tag)).iter().map(|p| p.index).collect();
        prop_assert_eq!(of_tag, model.pending_of(tag));
    }

    let batches = state.unconfirmed_batches();
    prop_assert_eq!(batches.len(), model.batches.len());
    for (batch, (first, m)) in batches.iter().zip(&model.batches) {
        prop_assert_eq!(batch.first, *first);
        prop_assert_eq!(&batch.tag, &m.tag);
        prop_assert_eq!(&batch.chunks, &m.chunks);
        prop_assert_eq!(&batch.object_key, &m.object_key);
        prop_assert!(batch.key_relative);
        prop_assert_eq!(batch.sealed_at, m.sealed_at);
        let dead = batch
            .dead_letter
            .as_ref()
            .map(|d| (d.reason.clone(), d.object_key.clone()));
        prop_assert_eq!(&dead, &m.dead_letter);
        if let Some((_, key)) = &dead {
            // Derived: short, safe, without the tag, unique per batch.
            prop_assert!(key.starts_with("dead-letter/") && !key.contains(&batch.tag));
            prop_assert!(key.len() < 100 && !key.contains(".."));
        }
        let bytes: u64 = m.chunks.iter().map(|c| model.chunks[c].bytes).sum();
        prop_assert_eq!(batch.bytes, bytes);
        let count: u64 = m.chunks.iter().map(|c| model.chunks[c].count).sum();
        prop_assert_eq!(batch.count, count);
        // A sealed batch holds only stored chunks of its own tag, all marked with its id.
        for c in &batch.chunks {
            let chunk = &columns.chunk_meta[c];
            prop_assert_eq!(&chunk.tag, &batch.tag);
            prop_assert_eq!(chunk.batch, Some(batch.first));
        }
    }

    // The upload lag starts at the lowest unconfirmed chunk, pending or sealed.
    prop_assert_eq!(
        state.oldest_unconfirmed_received_unix_ms(),
        model.chunks.values().next().map(|c| c.received_unix_ms)
    );

    let stats = state.upload_stats();
    prop_assert_eq!(stats.remembered_ids, model.remembered.len() as u64);
    prop_assert_eq!(stats.unconfirmed_batches, model.batches.len() as u64);
    prop_assert_eq!(stats.dead_lettered_batches, model.dead_lettered);
    let (sealed, pending): (Vec<&ModelChunk>, Vec<&ModelChunk>) =
        model.chunks.values().partition(|c| c.batch.is_some());
    prop_assert_eq!(stats.pending_chunks, pending.len() as u64);
    prop_assert_eq!(
        stats.pending_bytes,
        pending.iter().map(|c| c.bytes).sum::<u64>()
    );
    prop_assert_eq!(stats.sealed_chunks, sealed.len() as u64);
    prop_assert_eq!(
        stats.sealed_bytes,
        sealed.iter().map(|c| c.bytes).sum::<u64>()
    );
    for o in 0u8..12 {
        let origin = vec![o; 16];
        let model_index = model
            .remembered
            .iter()
            .find(|(r, _)| r[..] == origin[..])
            .map(|(_, i)| *i);
        prop_assert_eq!(state.remembered_origin(&origin), model_index);
    }
    Ok(())
}

/// Run `steps` through the pure rules, the model and the columns, checking after each step.
/// Returns the requests, so they can be replayed elsewhere, and the final state.
fn run_pure(
    steps: &[Step],
    window: usize,
) -> Result<(Vec<ClusterRequest>, Vec<ClusterResponse>, SmState), TestCaseError> {
    let mut model = Model {
        window,
        ..Model::default()
    };
    let mut state = SmState::default();
    let mut columns = Columns::default();
    let mut requests = Vec::new();
    let mut responses = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let index = i as u64 + 1;
        let req = request(step, &model);
        let expected = model.apply(index, &req);
        let mut mutations = Vec::new();
        let before = state.clone();
        let got = apply_entry(
            &mut state,
            entry(index, req.clone()),
            window,
            &mut mutations,
        );
        prop_assert!(
            same_response(&got, &expected),
            "step {index} {req:?}: state machine answered {got:?}, model {expected:?}"
        );
        if let ClusterResponse::Rejected(reason) = &got {
            // A refusal names indexes, never what a chunk holds (not even its tag).
            prop_assert!(!reason.contains("tag-"), "refusal names a tag: {reason}");
        }
        prop_assert_eq!(state.applied.last_applied.map(|id| id.index), Some(index));
        if matches!(
            got,
            ClusterResponse::Duplicate { .. } | ClusterResponse::Rejected(_)
        ) {
            // Nothing changes but the applied log id.
            prop_assert!(mutations.is_empty(), "{got:?} wrote {mutations:?}");
            let mut unchanged = before.clone();
            unchanged.applied.last_applied = state.applied.last_applied;
            prop_assert_eq!(&unchanged, &state);
        }
        columns.write(&mutations);
        prop_assert_eq!(columns.load(&state), state.clone());
        requests.push(req.clone());
        // Every stored chunk has its payload: apart in `sm_chunk_data`, else its log entry's.
        for (index, record) in &columns.chunk_meta {
            let payload = match columns.chunk_data.get(index) {
                Some(apart) => Some(apart.clone()),
                None => requests[*index as usize - 1]
                    .events()
                    .expect("decompresses"),
            };
            prop_assert_eq!(payload.map(|p| p.len() as u64), Some(record.bytes));
        }
        prop_assert!(columns
            .chunk_data
            .keys()
            .all(|index| columns.chunk_meta.contains_key(index)));
        check_views(&state, &model, &columns)?;
        responses.push(got);
    }
    Ok((requests, responses, state))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_rules_match_the_model(
        steps in proptest::collection::vec(step(), 1..80),
        window in 1usize..8,
    ) {
        run_pure(&steps, window)?;
    }
}

proptest! {
    // Each case opens RocksDB twice: keep the count small.
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// The RocksDB store answers as the pure rules do, and a reopen loads the same state.
    #[test]
    fn the_store_applies_the_pure_rules(
        steps in proptest::collection::vec(step(), 1..60),
        window in 1usize..6,
    ) {
        let (requests, responses, state) = run_pure(&steps, window)?;
        let dir = tempfile::tempdir().expect("tempdir");
        let options = StoreOptions {
            dedup_window: window,
            ..StoreOptions::default()
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let stored: Vec<ClusterResponse> = runtime.block_on(async {
            let (_log, mut sm): (_, StateMachineStore) =
                open_storage_blocking(dir.path(), options.clone()).expect("open");
            // Apply in a few calls of several entries, as openraft does.
            let mut answers = Vec::new();
            let entries: Vec<Entry<TypeConfig>> = requests
                .iter()
                .enumerate()
                .map(|(i, r)| entry(i as u64 + 1, r.clone()))
                .collect();
            for group in entries.chunks(7) {
                answers.extend(sm.apply(group.to_vec()).await.expect("apply"));
            }
            answers
        });
        prop_assert_eq!(&stored, &responses);
        let (_log, reopened) = open_storage_blocking(dir.path(), options).expect("reopen");
        let loaded = reopened.shared.read_state().clone();
        prop_assert_eq!(loaded, state);
    }
}

/// A pending chunk's record holds its own copy of the chunk id: on a leader the id it applies
/// is a slice of the frame the chunk arrived in, which the record would otherwise keep alive
/// until the chunk is sealed (a frame per pending chunk: tens of MB under load).
#[test]
fn a_pending_record_does_not_keep_the_frame_alive() {
    let frame = Bytes::from(vec![b'x'; 64 * 1024]);
    let request = ClusterRequest::AppendChunk {
        origin: Some(frame.slice(8..24)),
        tag: TAGS[0].to_string(),
        entries: frame.slice(100..),
        count: 1,
        received_unix_ms: 0,
    };
    let mut state = SmState::default();
    let mut mutations = Vec::new();
    let response = apply_entry(&mut state, entry(1, request), 10, &mut mutations);
    assert!(matches!(response, ClusterResponse::Appended { index: 1 }));
    drop(mutations);
    let origin = state.pending[&1]
        .origin
        .clone()
        .expect("the record keeps its id");
    assert_eq!(&origin[..], &frame[8..24]);
    assert!(
        !lies_within(&origin, &frame),
        "the pending record pins the frame"
    );
}

/// `request` as the leader proposes it with `log_compression lz4` when `compressed`.
fn compressed_if(compressed: bool, request: ClusterRequest) -> ClusterRequest {
    if compressed {
        crate::cluster::compression::LogCompression::Lz4.compress(request)
    } else {
        request
    }
}
