//! The rules of the state machine, as a pure function: one log entry and the current
//! [`SmState`] give the answer, the new state, and the list of storage [`Mutation`]s that make
//! the column families match it.
//!
//! Owns the meaning of `AppendChunk` (size limit of chunk ids, dedup within the window),
//! `AppendSegments` and `AppendCompressed` (the same per segment; duplicate segments left out of
//! the stored chunk; the only rule that reads compressed events, so a follower rarely
//! decompresses),
//! `SealBatch` (only pending chunks of the batch's tag and, with a period, of the first chunk's
//! period, strictly ascending; the object key is derived here from the batch by [`batch_key`],
//! never taken from the request), `ConfirmUpload` (drops a sealed batch's chunks; anything else
//! is refused) and `DeadLetterBatch` (only a sealed, unconfirmed batch not yet dead-lettered;
//! the dead-letter key is derived from the batch's chunk range, never taken from the request).
//! Refusals name only what the request itself named (indexes, its own tag), never another
//! chunk's tag or data. It must not touch RocksDB, files, clocks or the network:
//! [`super::persist`] writes the mutations, and the answers depend only on the log and the
//! dedup window size, so every node agrees.

use super::records::{
    BatchRecord, ChunkRecord, DeadLetter, DedupRecord, SmState, UnconfirmedBatch,
    MAX_DEAD_LETTER_REASON,
};
use crate::cluster::compression;
use crate::cluster::{ClusterRequest, ClusterResponse, TypeConfig, MAX_ORIGIN_LEN};
use crate::origin::Segment;
use bytes::Bytes;
use chrono::{DateTime, Datelike, Utc};
use openraft::{Entry, EntryPayload, StoredMembership};
use std::collections::HashSet;
use std::time::{Duration, UNIX_EPOCH};
use tracing::debug;

/// One change to the state-machine column families, in the order it must be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mutation {
    /// `sm_chunk_data[index] = entries`: a stored chunk that is not its log entry's whole
    /// payload (see `storage::payload`).
    PutChunkData { index: u64, entries: Bytes },
    /// `sm_chunk_meta[index] = record`.
    PutChunkMeta { index: u64, record: ChunkRecord },
    /// Delete `sm_chunk_data[index]` and `sm_chunk_meta[index]`.
    DeleteChunk { index: u64 },
    /// `sm_batches[first] = record`.
    PutBatch { first: u64, record: BatchRecord },
    /// Delete `sm_batches[first]`.
    DeleteBatch { first: u64 },
    /// `sm_dedup[seq] = record`.
    PutDedup { seq: u64, record: DedupRecord },
    /// Delete `sm_dedup[seq]`.
    DeleteDedup { seq: u64 },
}

/// Apply one log entry: update `state` (including the applied log id and membership), append
/// the storage changes to `mutations` and return the answer. The applied record itself is
/// written by the caller once per batch of entries.
pub(crate) fn apply_entry(
    state: &mut SmState,
    entry: Entry<TypeConfig>,
    dedup_window: usize,
    mutations: &mut Vec<Mutation>,
) -> ClusterResponse {
    let log_id = entry.log_id;
    let response = match entry.payload {
        EntryPayload::Blank => ClusterResponse::NoOp,
        EntryPayload::Normal(request) => {
            apply_request(state, log_id.index, request, dedup_window, mutations)
        }
        EntryPayload::Membership(membership) => {
            state.applied.membership = StoredMembership::new(Some(log_id), membership);
            ClusterResponse::NoOp
        }
    };
    state.applied.last_applied = Some(log_id);
    response
}

/// Apply one application request at log index `index` (see the module doc).
pub(crate) fn apply_request(
    state: &mut SmState,
    index: u64,
    request: ClusterRequest,
    dedup_window: usize,
    mutations: &mut Vec<Mutation>,
) -> ClusterResponse {
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
                    return ClusterResponse::Rejected(format!(
                        "chunk id of {} bytes (at most {MAX_ORIGIN_LEN})",
                        origin.len()
                    ));
                }
                if let Some(first) = state.dedup.get(origin) {
                    debug!(index, first, "duplicate chunk");
                    return ClusterResponse::Duplicate { index: first };
                }
            }
            let record = ChunkRecord {
                tag,
                bytes: entries.len() as u64,
                count,
                received_unix_ms,
                // Its own copy: the id may be a slice of the buffer the chunk arrived in (a
                // leader applying the entry it proposed), which a pending record would keep
                // alive whole until the chunk is sealed — measured: ~50 MB on a leader
                // loading a backlog with the log cache on (docs/benchmarks.md, session 15).
                origin: origin.as_deref().map(Bytes::copy_from_slice),
                batch: None,
            };
            // The payload stays in this log entry (see `storage::payload`).
            mutations.push(Mutation::PutChunkMeta {
                index,
                record: record.clone(),
            });
            state.pending.insert(index, record);
            if let Some(origin) = origin {
                remember_origin(state, origin, index, dedup_window, mutations);
            }
            ClusterResponse::Appended { index }
        }
        ClusterRequest::AppendSegments {
            tag,
            entries,
            segments,
            received_unix_ms,
        } => append_segments(
            state,
            index,
            Segments {
                tag,
                events: Events::Plain(entries),
                segments,
                received_unix_ms,
            },
            dedup_window,
            mutations,
        ),
        ClusterRequest::AppendCompressed {
            tag,
            lz4,
            len,
            segments,
            received_unix_ms,
        } => append_segments(
            state,
            index,
            Segments {
                tag,
                events: Events::Lz4 { lz4, len },
                segments,
                received_unix_ms,
            },
            dedup_window,
            mutations,
        ),
        ClusterRequest::SealBatch {
            tag,
            chunks,
            period_ms,
            uncompressed,
            ..
        } => {
            if let Some(reason) = seal_refusal(state, &tag, &chunks, period_ms) {
                debug!(index, %reason, "seal rejected");
                return ClusterResponse::Rejected(reason);
            }
            let first = chunks[0];
            let last = chunks[chunks.len() - 1];
            let first_received = state.pending.get(&first).map_or(0, |c| c.received_unix_ms);
            let object_key = batch_key(&tag, first_received, first, last, !uncompressed);
            let mut batch = UnconfirmedBatch::new(BatchRecord {
                tag,
                chunks: chunks.clone(),
                object_key,
                key_relative: true,
                sealed_at: index,
                dead_letter: None,
            });
            // Each chunk's record leaves memory: on disk it names the batch, in memory the
            // batch's totals stand for it.
            for chunk in chunks {
                if let Some(mut record) = state.pending.remove(&chunk) {
                    record.batch = Some(first);
                    batch.add(chunk, &record);
                    mutations.push(Mutation::PutChunkMeta {
                        index: chunk,
                        record,
                    });
                }
            }
            mutations.push(Mutation::PutBatch {
                first,
                record: batch.record.clone(),
            });
            state.batches.insert(first, batch);
            ClusterResponse::Sealed { first }
        }
        ClusterRequest::ConfirmUpload { first } => {
            let Some(UnconfirmedBatch { record, .. }) = state.batches.remove(&first) else {
                return ClusterResponse::Rejected(format!(
                    "batch {first} is not sealed or already confirmed"
                ));
            };
            for chunk in &record.chunks {
                mutations.push(Mutation::DeleteChunk { index: *chunk });
            }
            mutations.push(Mutation::DeleteBatch { first });
            debug!(
                index,
                first,
                chunks = record.chunks.len(),
                "upload confirmed"
            );
            ClusterResponse::Confirmed { first }
        }
        ClusterRequest::DeadLetterBatch { first, reason } => {
            let Some(UnconfirmedBatch { record, .. }) = state.batches.get_mut(&first) else {
                return ClusterResponse::Rejected(format!(
                    "batch {first} is not sealed or already confirmed"
                ));
            };
            if record.dead_letter.is_some() {
                return ClusterResponse::Rejected(format!(
                    "batch {first} is already dead-lettered"
                ));
            }
            let last = record.chunks.last().copied().unwrap_or(first);
            let object_key = dead_letter_key(first, last, key_is_gzip(&record.object_key));
            record.dead_letter = Some(DeadLetter {
                reason: truncate_reason(reason),
                object_key: object_key.clone(),
            });
            mutations.push(Mutation::PutBatch {
                first,
                record: record.clone(),
            });
            state.applied.dead_lettered_batches += 1;
            debug!(index, first, %object_key, "batch dead-lettered");
            ClusterResponse::DeadLettered { first, object_key }
        }
    }
}

/// The object key of the batch `first..=last` of `tag` whose first chunk arrived at
/// `first_received_unix_ms`, relative to the upload target's prefix:
/// `<tag>/<YYYY>/<MM>/<DD>/<first>-<last>.log.gz` (`.log` when not `gzip`; UTC date, the tag
/// made one safe segment of at most 200 bytes by
/// [`safe_segment`](crate::output::safe_name::safe_segment)). Unique because batch ids are log
/// indexes and a chunk is sealed once. The suffix is how every leader knows how to render the
/// batch ([`key_is_gzip`]).
pub(crate) fn batch_key(
    tag: &str,
    first_received_unix_ms: u64,
    first: u64,
    last: u64,
    gzip: bool,
) -> String {
    let day = DateTime::<Utc>::from(UNIX_EPOCH + Duration::from_millis(first_received_unix_ms));
    format!(
        "{}/{:04}/{:02}/{:02}/{first:020}-{last:020}{}",
        crate::output::safe_name::safe_segment(tag),
        day.year(),
        day.month(),
        day.day(),
        key_suffix(gzip)
    )
}

/// The dead-letter key of the batch `first..=last`, relative to the upload target's prefix:
/// short and safe whatever the tag (no tag in it), unique because batch ids are log indexes.
/// Compressed like the batch's own object (`gzip`).
pub(crate) fn dead_letter_key(first: u64, last: u64, gzip: bool) -> String {
    format!("dead-letter/{first:020}-{last:020}{}", key_suffix(gzip))
}

fn key_suffix(gzip: bool) -> &'static str {
    if gzip {
        ".log.gz"
    } else {
        ".log"
    }
}

/// Whether the object under `key` (a batch's or dead-letter key, also one recorded by an older
/// version) holds gzip: its name ends in `.gz`.
pub(crate) fn key_is_gzip(key: &str) -> bool {
    key.ends_with(".gz")
}

/// At most [`MAX_DEAD_LETTER_REASON`] bytes, cut at a character boundary.
fn truncate_reason(mut reason: String) -> String {
    if reason.len() > MAX_DEAD_LETTER_REASON {
        let mut end = MAX_DEAD_LETTER_REASON;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

/// Why a seal must be refused, or `None` if it is valid. Depends only on the state. Every
/// chunk must be pending, of the batch's tag and (with `period_ms`) of the first chunk's
/// period; the answer names only the offending index, never what that chunk holds.
fn seal_refusal(
    state: &SmState,
    tag: &str,
    chunks: &[u64],
    period_ms: Option<u64>,
) -> Option<String> {
    if chunks.is_empty() {
        return Some("empty batch".into());
    }
    if chunks.windows(2).any(|w| w[0] >= w[1]) {
        return Some("chunk indexes are not strictly ascending".into());
    }
    let period_of = |ms: u64| period_ms.filter(|&p| p > 0).map(|p| ms / p);
    let mut first_period = None;
    for (i, chunk) in chunks.iter().enumerate() {
        let record = match state.pending.get(chunk) {
            Some(record @ ChunkRecord { batch: None, .. }) if record.tag == tag => record,
            _ => return Some(format!("chunk {chunk} is not a pending chunk of this tag")),
        };
        let period = period_of(record.received_unix_ms);
        if i == 0 {
            first_period = period;
        } else if period != first_period {
            return Some(format!(
                "chunk {chunk} arrived in another period than chunk {}",
                chunks[0]
            ));
        }
    }
    None
}

/// The fields of an `AppendSegments` or `AppendCompressed` request.
struct Segments {
    tag: String,
    events: Events,
    segments: Vec<Segment>,
    received_unix_ms: u64,
}

/// An append's events as its log entry carries them.
enum Events {
    Plain(Bytes),
    Lz4 { lz4: Bytes, len: u64 },
}

impl Events {
    /// Bytes of the events uncompressed.
    fn len(&self) -> u64 {
        match self {
            Events::Plain(entries) => entries.len() as u64,
            Events::Lz4 { len, .. } => *len,
        }
    }

    /// The events, decompressed if need be; the error says why they cannot be read.
    fn bytes(&self) -> Result<Bytes, String> {
        match self {
            Events::Plain(entries) => Ok(entries.clone()),
            Events::Lz4 { lz4, len } => {
                compression::decompress(lz4, *len).map_err(|e| e.to_string())
            }
        }
    }
}

/// `AppendSegments` and `AppendCompressed` (see [`ClusterRequest::AppendSegments`]).
fn append_segments(
    state: &mut SmState,
    index: u64,
    request: Segments,
    dedup_window: usize,
    mutations: &mut Vec<Mutation>,
) -> ClusterResponse {
    let Segments {
        tag,
        events,
        segments,
        received_unix_ms,
    } = request;
    let covered: u64 = segments.iter().map(|s| s.len as u64).sum();
    if segments.is_empty() || covered != events.len() {
        return ClusterResponse::Rejected(format!(
            "{} segments cover {covered} of {} bytes",
            segments.len(),
            events.len()
        ));
    }
    if let Some(long) = segments
        .iter()
        .filter_map(|s| s.origin.as_ref())
        .find(|o| o.len() > MAX_ORIGIN_LEN)
    {
        return ClusterResponse::Rejected(format!(
            "chunk id of {} bytes (at most {MAX_ORIGIN_LEN})",
            long.len()
        ));
    }
    let mut kept: Vec<(std::ops::Range<usize>, &Segment)> = Vec::with_capacity(segments.len());
    let mut in_request: HashSet<&Bytes> = HashSet::new();
    let mut first_duplicate = None;
    let mut at = 0usize;
    for segment in &segments {
        let range = at..at + segment.len;
        at = range.end;
        if let Some(origin) = &segment.origin {
            if let Some(first) = state.dedup.get(origin) {
                first_duplicate.get_or_insert(first);
                continue;
            }
            if !in_request.insert(origin) {
                first_duplicate.get_or_insert(index);
                continue;
            }
        }
        kept.push((range, segment));
    }
    if kept.is_empty() {
        let first = first_duplicate.unwrap_or(index);
        debug!(index, first, "duplicate segments");
        return ClusterResponse::Duplicate { index: first };
    }
    let count = kept.iter().map(|(_, s)| s.count).sum();
    // The whole request's entries are read from its log entry; only a subset is stored apart.
    let apart = kept.len() != segments.len();
    let stored = if !apart {
        None
    } else {
        let entries = match events.bytes() {
            Ok(entries) => entries,
            Err(reason) => return ClusterResponse::Rejected(reason),
        };
        let mut joined = bytes::BytesMut::with_capacity(kept.iter().map(|(r, _)| r.len()).sum());
        for (range, _) in &kept {
            joined.extend_from_slice(&entries[range.clone()]);
        }
        Some(joined.freeze())
    };
    let origins: Vec<Bytes> = kept.iter().filter_map(|(_, s)| s.origin.clone()).collect();
    let record = ChunkRecord {
        tag,
        bytes: stored.as_ref().map_or(events.len(), |s| s.len() as u64),
        count,
        received_unix_ms,
        // A chunk of one sender's chunk shows its id (like `AppendChunk`); its own copy, as
        // there (the id may be a slice of a frame).
        origin: match kept.as_slice() {
            [(_, only)] => only.origin.as_deref().map(Bytes::copy_from_slice),
            _ => None,
        },
        batch: None,
    };
    if let Some(entries) = stored {
        mutations.push(Mutation::PutChunkData { index, entries });
    }
    mutations.push(Mutation::PutChunkMeta {
        index,
        record: record.clone(),
    });
    state.pending.insert(index, record);
    for origin in origins {
        remember_origin(state, origin, index, dedup_window, mutations);
    }
    ClusterResponse::Appended { index }
}

/// Add `origin` to the dedup window, evicting the oldest ids beyond `window`.
fn remember_origin(
    state: &mut SmState,
    origin: Bytes,
    index: u64,
    window: usize,
    mutations: &mut Vec<Mutation>,
) {
    let seq = state.applied.next_dedup_seq;
    state.applied.next_dedup_seq += 1;
    state.dedup.remember(seq, &origin, index);
    mutations.push(Mutation::PutDedup {
        seq,
        record: DedupRecord { origin, index },
    });
    while state.dedup.len() > window {
        let Some(old_seq) = state.dedup.forget_oldest() else {
            break;
        };
        mutations.push(Mutation::DeleteDedup { seq: old_seq });
    }
}
