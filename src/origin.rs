//! Origin ids: the dedup identity of a sender's chunk as it travels through forwarders.
//!
//! A Forward client attaches a `chunk` id to each frame and resends the very same frame, with
//! the same id, when it gets no ack. A receiver that stored the frame but could not answer (it
//! crashed, or the ack was lost) therefore sees the events again — possibly on another
//! forwarder. The cluster's state machine drops a repeated id; for that to work through a
//! forwarder, the id must survive the forwarder's buffer and reach the cluster with the very
//! events it named, whatever chunk of the forwarder they end up in:
//!
//! - the forward input labels its batch with the frame's id ([`label`]);
//! - the buffer keeps a labelled run of entries whole, in one append that stores the label
//!   with the entries (`buffer::chunk`); a run that must be cut (larger than a chunk, or
//!   spanning timekey buckets) is cut at places that depend only on the run itself, and each
//!   part gets a derived id ([`part_id`]);
//! - out_forward sends a chunk's labelled runs ([`Segment`]s) in the frame's
//!   `lograft_origins` option (`forward::frame`); the receiving input reads them back;
//! - the cluster commits a frame's segments in one entry (`AppendSegments`), leaving out each
//!   segment whose id it already holds (`cluster::ingest`, the state machine's rules).
//!
//! This module owns the [`Segment`] type and the id rules. It must not do I/O nor know the wire
//! or file formats.

use bytes::Bytes;
use sha2::{Digest, Sha256};

/// Longest origin id carried as it is; longer sender ids are replaced by their SHA-256
/// ([`label`]). Equal to the cluster's dedup-key limit (`cluster::MAX_ORIGIN_LEN`).
pub const MAX_ORIGIN_LEN: usize = 64;

/// A run of a batch's (or chunk's, or frame's) entries that came from one sender's chunk.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Segment {
    /// The dedup id of the run; `None` for entries no sender labelled (HTTP, tail, or a
    /// Forward client that sent no `chunk` option).
    pub origin: Option<Bytes>,
    /// Bytes of entries in the run.
    pub len: usize,
    /// Entries in the run.
    pub count: u32,
}

/// Append a run of `len` bytes and `count` entries to `runs`, merged into the last run when
/// both are unlabelled (labelled runs stay apart: each is one sender's chunk).
pub fn push_run(runs: &mut Vec<Segment>, origin: Option<Bytes>, len: usize, count: u32) {
    match runs.last_mut() {
        Some(last) if origin.is_none() && last.origin.is_none() => {
            last.len += len;
            last.count += count;
        }
        _ => runs.push(Segment { origin, len, count }),
    }
}

/// The label a receiver gives the events of a frame whose `chunk` option is `chunk`: the id as
/// it is, or its SHA-256 when it is longer than [`MAX_ORIGIN_LEN`] (so any id fits the
/// cluster's dedup window, and the same id always gives the same label).
pub fn label(chunk: &Bytes) -> Bytes {
    if chunk.len() <= MAX_ORIGIN_LEN {
        return chunk.clone();
    }
    let mut h = Sha256::new();
    h.update(b"lograft long origin\0");
    h.update(chunk);
    Bytes::copy_from_slice(&h.finalize())
}

/// The id of part `index` of `parts` of the run whose id is `origin`: a SHA-256 over all
/// three (32 bytes), the same on every node and for every resend, distinct from the ids of
/// other runs and parts. A run that is one part keeps its own id (callers check `parts > 1`).
pub fn part_id(origin: &[u8], index: usize, parts: usize) -> Bytes {
    let mut h = Sha256::new();
    h.update(b"lograft chunk part\0");
    h.update((origin.len() as u64).to_be_bytes());
    h.update(origin);
    h.update((index as u64).to_be_bytes());
    h.update((parts as u64).to_be_bytes());
    Bytes::copy_from_slice(&h.finalize())
}

/// Label `n` parts cut from the run `origin`: the run's own id when it was not cut.
pub fn part_ids(origin: &Bytes, n: usize) -> Vec<Bytes> {
    if n <= 1 {
        return vec![origin.clone(); n];
    }
    (0..n).map(|i| part_id(origin, i, n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_ids_are_stable_distinct_and_fit_the_dedup_window() {
        let a = part_id(b"chunk-a", 0, 3);
        assert_eq!(a, part_id(b"chunk-a", 0, 3));
        assert_ne!(a, part_id(b"chunk-a", 1, 3));
        assert_ne!(a, part_id(b"chunk-a", 0, 4));
        assert_ne!(a, part_id(b"chunk-b", 0, 3));
        assert!(a.len() <= MAX_ORIGIN_LEN);
        let origin = Bytes::from_static(b"x");
        assert_eq!(part_ids(&origin, 1), vec![origin.clone()]);
        assert_eq!(part_ids(&origin, 2)[1], part_id(b"x", 1, 2));
    }

    #[test]
    fn long_ids_are_hashed_short_ids_kept() {
        let short = Bytes::from(vec![b'a'; MAX_ORIGIN_LEN]);
        assert_eq!(label(&short), short);
        let long = Bytes::from(vec![b'a'; MAX_ORIGIN_LEN + 1]);
        let l = label(&long);
        assert_eq!(l.len(), 32);
        assert_eq!(l, label(&long));
        assert_ne!(l, label(&Bytes::from(vec![b'b'; MAX_ORIGIN_LEN + 1])));
    }
}
