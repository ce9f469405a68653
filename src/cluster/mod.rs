//! The aggregator cluster: Forward chunks replicated with Raft (openraft 0.9, storage v2) and
//! uploaded to object storage by the leader.
//!
//! Owns the openraft type configuration ([`TypeConfig`]), the application requests and
//! responses that travel through the Raft log ([`ClusterRequest`], [`ClusterResponse`]) and the
//! node's durable storage. It must not speak the Forward protocol (that is `input`), nor decide
//! *when* to seal or upload (that is the uploader's policy): the state machine only records what
//! the log says, deterministically, so every node reaches the same state.
//!
//! # Layout
//!
//! Like openraft's `raft-kv-rocksdb` example (storage and app state as leaves), split by role;
//! dependencies point down this list, never back up:
//!
//! - [`storage`]: the node's one RocksDB instance and its two halves, the Raft log
//!   ([`storage::LogStore`]) and the chunk state machine ([`storage::StateMachineStore`], whose
//!   rules are a pure function, and the read-only [`storage::ChunkReader`]), plus the snapshot
//!   file format. Knows nothing of the network.
//! - [`network`] and [`proto`]: the Raft RPCs over tonic gRPC; [`raft_guard`]: what Raft input
//!   is refused before openraft sees it (unreachable terms, malformed appends, non-members);
//!   [`shared_bytes`]: decoding an AppendEntries whose payloads stay slices of the message.
//! - [`node`]: what a running node's parts share ([`node::NodeShared`]) and
//!   [`node::propose`], which commits a request from any node.
//! - [`admin`]: the admin operations, their gRPC service, the client (the `lograft cluster`
//!   CLI) and the CLI's output.
//! - [`tls`]: mutual TLS on the cluster port: certificate roles (node, operator), the per-call
//!   checks, reloading the files, the TLS streams, and `lograft cluster certs`.
//! - [`server`]: a running node ([`server::ClusterNode`]: storage + Raft + gRPC).
//! - [`bootstrap`]: forming or joining a cluster, and refusing to rejoin after a disk loss.
//! - [`ingest`]: the inputs' [`crate::pipeline::Emit`] on an aggregator: a batch is acked once its
//!   `AppendChunk` is committed and applied; [`coalesce`]: appends that wait while earlier
//!   proposals are in flight go to the log together, as one entry; [`compression`]: the
//!   leader LZ4-compresses an append's events once, before proposing it.
//! - [`upload`]: the leader's uploader (seal → upload → confirm) and the object-store target.
//!
//! On disk, under the node's data directory:
//!
//! ```text
//! <dir>/db/          RocksDB: CFs raft_log, raft_meta, sm_chunk_data, sm_chunk_meta,
//!                    sm_batches, sm_dedup, sm_meta (one WAL shared by all of them)
//! <dir>/snapshots/   snap-<index>-<nanos>-<n>.bin (the current snapshot), tmp-* (being
//!                    written or received; removed at open)
//! <dir>/upload-spool/ batch-* : the leader's rendered batches while they upload (deleted
//!                    once sent; leftovers of a crash removed at start)
//! ```
//!
//! # Life of a chunk
//!
//! `AppendChunk` (proposed by `emit`, acked once applied) → pending → `SealBatch` (the leader
//! agrees a batch's exact chunk set; the state machine derives its object key) → upload → `ConfirmUpload` (the chunks are
//! dropped). A batch that cannot be uploaded for a reason retrying cannot fix is set aside by
//! `DeadLetterBatch` (the state machine derives its key under `dead-letter/`) and then uploaded
//! and confirmed like any batch. A new leader finds sealed-but-unconfirmed batches with
//! [`storage::ChunkReader::unconfirmed_batches`] and uploads them again under the same key.

pub mod admin;
pub(crate) mod bootstrap;
pub(crate) mod coalesce;
pub mod compression;
pub mod config;
pub(crate) mod ingest;
#[cfg(test)]
mod net_tests;
pub(crate) mod network;
pub(crate) mod node;
pub mod proto;
pub(crate) mod raft_guard;
pub(crate) mod server;
pub(crate) mod shared_bytes;
pub(crate) mod storage;
#[cfg(test)]
mod tests;
pub mod tls;
pub mod upload;
#[cfg(test)]
mod upload_tests;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Raft node id.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// openraft types of the aggregator cluster. Nodes are [`openraft::BasicNode`] whose `addr`
    /// is the node's gRPC address; snapshots are files, so a large state is never one `Vec<u8>`.
    pub TypeConfig:
        D = ClusterRequest,
        R = ClusterResponse,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The openraft handle of this cluster.
pub type ClusterRaft = openraft::Raft<TypeConfig>;

/// Longest chunk id the state machine accepts (`EventBatch::origin_chunk`, the raw `chunk`
/// option bytes). Longer ids are rejected so the dedup window's memory stays bounded.
pub const MAX_ORIGIN_LEN: usize = crate::origin::MAX_ORIGIN_LEN;

/// An application command in the Raft log.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterRequest {
    /// Store one Forward chunk. Its log index becomes its id in the cluster.
    AppendChunk {
        /// The sender's chunk id (dedup key); `None` when the sender did not attach one.
        origin: Option<Bytes>,
        tag: String,
        /// Concatenated msgpack `[time, record]` entries, as received.
        #[serde(deserialize_with = "shared_bytes::deserialize")]
        entries: Bytes,
        count: u32,
        /// When the proposing node received the chunk (in the log, so deterministic).
        received_unix_ms: u64,
    },
    /// Agree on an upload batch: its exact chunks. The state machine derives the object key
    /// from the batch (tag, first chunk's arrival day, chunk range); no proposer chooses it.
    SealBatch {
        tag: String,
        /// Log indexes of pending `AppendChunk` entries of `tag`, strictly ascending. The batch
        /// id is the first.
        chunks: Vec<u64>,
        /// Ignored. Entries written before the state machine derived object keys carried the
        /// proposer's key here; new proposers leave it empty. Kept so those entries decode.
        #[serde(default)]
        ignored_key: String,
        /// The match's timekey in ms, if `time` is a chunk key: every chunk must have arrived
        /// in the first chunk's period (`received_unix_ms / period_ms`). `None`: no check.
        #[serde(default)]
        period_ms: Option<u64>,
        /// Store the object as plain out_file lines (`.log`) instead of gzip (`.log.gz`): the
        /// proposer's output config (`compress` of `@type file`, `store_as` of `@type s3`).
        /// Recorded in the object key, so every leader renders the batch the same way. Absent
        /// (gzip) in entries written before it existed, and not written when false.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        uncompressed: bool,
    },
    /// The batch was uploaded: drop its chunks. Refused for anything but a sealed batch.
    ConfirmUpload {
        /// Batch id (the first chunk's index).
        first: u64,
    },
    /// The batch cannot be uploaded under its object key for a reason retrying cannot fix: set
    /// it aside. Accepted only for a sealed, unconfirmed batch not yet dead-lettered; the state
    /// machine records the reason and derives the dead-letter key from the batch (never from
    /// the request). The batch is then uploaded under that key and confirmed as usual.
    DeadLetterBatch {
        /// Batch id (the first chunk's index).
        first: u64,
        /// Why the upload failed (truncated by the state machine).
        reason: String,
    },
    /// Store the client chunks a forwarder sent in one frame (see [`crate::origin`]) as one
    /// chunk: a segment whose id the dedup window holds, or that an earlier segment of the
    /// same request carries, is left out; the rest is stored under this entry's index and
    /// their ids are remembered. Answers `Duplicate` when every segment was left out.
    /// (New variants go after the existing ones, so older log entries still decode.)
    AppendSegments {
        tag: String,
        /// Concatenated msgpack `[time, record]` entries, as received.
        #[serde(deserialize_with = "shared_bytes::deserialize")]
        entries: Bytes,
        /// Consecutive runs covering `entries`, each with its client chunk's id.
        segments: Vec<crate::origin::Segment>,
        /// When the proposing node received the frame (in the log, so deterministic).
        received_unix_ms: u64,
    },
    /// An `AppendSegments` whose events are LZ4-compressed: how the leader proposes every
    /// append unless `log_compression none` (see [`compression`]). Applied like
    /// `AppendSegments`. (Last variant: older log entries still decode.)
    AppendCompressed {
        tag: String,
        /// The concatenated msgpack `[time, record]` entries, LZ4 block format.
        #[serde(deserialize_with = "shared_bytes::deserialize")]
        lz4: Bytes,
        /// Bytes of the entries uncompressed (what the segments cover).
        len: u64,
        /// Consecutive runs covering the uncompressed entries, each with its client chunk's id.
        segments: Vec<crate::origin::Segment>,
        /// When the proposing node received the frame (in the log, so deterministic).
        received_unix_ms: u64,
    },
}

impl ClusterRequest {
    /// The chunk payload it carries as it is in the log (the entries of an append; compressed
    /// for `AppendCompressed`), if any: what a copy of the entry costs.
    pub(crate) fn payload(&self) -> Option<&Bytes> {
        match self {
            ClusterRequest::AppendChunk { entries, .. }
            | ClusterRequest::AppendSegments { entries, .. }
            | ClusterRequest::AppendCompressed { lz4: entries, .. } => Some(entries),
            _ => None,
        }
    }

    /// [`ClusterRequest::payload`], to replace it.
    pub(crate) fn payload_mut(&mut self) -> Option<&mut Bytes> {
        match self {
            ClusterRequest::AppendChunk { entries, .. }
            | ClusterRequest::AppendSegments { entries, .. }
            | ClusterRequest::AppendCompressed { lz4: entries, .. } => Some(entries),
            _ => None,
        }
    }

    /// The events an append carries (decompressed), if it is one.
    pub(crate) fn events(&self) -> Result<Option<Bytes>, ClusterError> {
        match self {
            ClusterRequest::AppendCompressed { lz4, len, .. } => {
                compression::decompress(lz4, *len).map(Some)
            }
            other => Ok(other.payload().cloned()),
        }
    }

    /// [`ClusterRequest::events`] into `out` (replacing what it held, reusing its
    /// allocation); `false` when this is not an append.
    pub(crate) fn events_into(&self, out: &mut Vec<u8>) -> Result<bool, ClusterError> {
        match self {
            ClusterRequest::AppendCompressed { lz4, len, .. } => {
                compression::decompress_into(lz4, *len, out).map(|()| true)
            }
            other => Ok(other.payload().is_some_and(|payload| {
                out.clear();
                out.extend_from_slice(payload);
                true
            })),
        }
    }

    /// Put every byte field (payload, chunk ids) into an allocation of its own. A request's
    /// fields are often slices of a larger buffer (the frame a chunk arrived in, an
    /// AppendEntries message); whatever keeps the request for long must not keep that
    /// buffer alive with it. Costs one copy of the payload.
    pub(crate) fn detach(&mut self) {
        let own = |bytes: &mut Bytes| *bytes = Bytes::copy_from_slice(bytes);
        match self {
            ClusterRequest::AppendChunk {
                entries, origin, ..
            } => {
                own(entries);
                origin.iter_mut().for_each(own);
            }
            ClusterRequest::AppendSegments {
                entries, segments, ..
            }
            | ClusterRequest::AppendCompressed {
                lz4: entries,
                segments,
                ..
            } => {
                own(entries);
                segments
                    .iter_mut()
                    .filter_map(|segment| segment.origin.as_mut())
                    .for_each(own);
            }
            _ => {}
        }
    }
}

/// msgpack of `value` (the cluster's records, entries and RPC bodies), written into a buffer of
/// `capacity` bytes to begin with: a log entry or AppendEntries is mostly its payloads, and a
/// buffer sized for them is never grown and copied (several MB each).
pub(crate) fn to_msgpack_sized<T: serde::Serialize>(
    value: &T,
    capacity: usize,
) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    let mut buf = Vec::with_capacity(capacity);
    value.serialize(&mut rmp_serde::Serializer::new(&mut buf))?;
    Ok(buf)
}

impl fmt::Debug for ClusterRequest {
    // Never dump payloads into logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterRequest::AppendChunk {
                origin,
                tag,
                entries,
                count,
                received_unix_ms,
            } => f
                .debug_struct("AppendChunk")
                .field("origin", &origin.as_ref().map(hex::encode))
                .field("tag", tag)
                .field("bytes", &entries.len())
                .field("count", count)
                .field("received_unix_ms", received_unix_ms)
                .finish(),
            ClusterRequest::SealBatch {
                tag,
                chunks,
                period_ms,
                uncompressed,
                ..
            } => f
                .debug_struct("SealBatch")
                .field("tag", tag)
                .field("chunks", chunks)
                .field("period_ms", period_ms)
                .field("uncompressed", uncompressed)
                .finish(),
            ClusterRequest::ConfirmUpload { first } => f
                .debug_struct("ConfirmUpload")
                .field("first", first)
                .finish(),
            ClusterRequest::DeadLetterBatch { first, reason } => f
                .debug_struct("DeadLetterBatch")
                .field("first", first)
                .field("reason", reason)
                .finish(),
            ClusterRequest::AppendSegments {
                tag,
                entries,
                segments,
                received_unix_ms,
            } => f
                .debug_struct("AppendSegments")
                .field("tag", tag)
                .field("bytes", &entries.len())
                .field("segments", &segments.len())
                .field("received_unix_ms", received_unix_ms)
                .finish(),
            ClusterRequest::AppendCompressed {
                tag,
                lz4,
                len,
                segments,
                received_unix_ms,
            } => f
                .debug_struct("AppendCompressed")
                .field("tag", tag)
                .field("bytes", len)
                .field("compressed", &lz4.len())
                .field("segments", &segments.len())
                .field("received_unix_ms", received_unix_ms)
                .finish(),
        }
    }
}

impl fmt::Display for ClusterRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What the state machine answered to one log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterResponse {
    /// The chunk was stored at this log index.
    Appended { index: u64 },
    /// The chunk id was already stored (or uploaded) at this earlier index; nothing stored.
    Duplicate { index: u64 },
    /// The batch is sealed; its id is its first chunk's index.
    Sealed { first: u64 },
    /// The batch's chunks are dropped (or the batch was already unknown).
    Confirmed { first: u64 },
    /// The request was refused, identically on every node.
    Rejected(String),
    /// Answer to entries that carry no request (blank and membership entries).
    NoOp,
    /// The batch is dead-lettered: upload it under `object_key` (relative to the upload
    /// target's prefix). (Last variant: older answers still decode.)
    DeadLettered { first: u64, object_key: String },
}

/// Errors of the cluster's storage.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("encoding: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("decoding: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    #[error("corrupt store: {0}")]
    Corrupt(String),
    #[error("corrupt snapshot: {0}")]
    CorruptSnapshot(String),
    #[error("snapshot does not match its metadata: {0}")]
    SnapshotMismatch(String),
    #[error("storage task failed: {0}")]
    TaskFailed(String),
}
