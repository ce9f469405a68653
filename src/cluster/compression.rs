//! Chunk payloads LZ4-compressed in the Raft log (`<cluster> log_compression`).
//!
//! The leader compresses an append's events once, just before it proposes it
//! ([`LogCompression::compress`] turns an `AppendChunk` or `AppendSegments` into an
//! `AppendCompressed`). From then on every copy is the compressed one: the leader's log entry,
//! every AppendEntries, every follower's log, the log cache. Those copies (WAL, memtable, blob
//! file, gRPC, page cache) cost CPU per byte on every node, so writing ~3× fewer bytes pays
//! more than the one compression costs (measured: docs/benchmarks.md, session 16). Nothing
//! decompresses on the way in: the state machine needs only the segments' sizes and counts,
//! unless some segments are duplicates and the rest is stored apart. Events are decompressed
//! where they are read: the upload and the snapshot builder ([`decompress`] via
//! `ClusterRequest::events`).
//!
//! LZ4 block format (`lz4_flex`, pure Rust; decoding with its bounds-checked decoder, since a
//! log entry comes from another node). Owns the format and the choice; it must not decide what
//! an append holds (that is `ingest`) or when it is proposed (`coalesce`, `node::propose`).

use super::{ClusterError, ClusterRequest};
use crate::origin::Segment;
use bytes::Bytes;

/// How the leader writes chunk payloads into the Raft log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogCompression {
    /// LZ4 (block format): the default.
    #[default]
    Lz4,
    /// As received. For a cluster that still has nodes of a version before `AppendCompressed`
    /// (they cannot read it), during a rolling upgrade.
    None,
}

impl LogCompression {
    /// `log_compression`'s values.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "lz4" => Some(LogCompression::Lz4),
            "none" => Some(LogCompression::None),
            _ => None,
        }
    }

    /// The request to propose for `request`: an append with its events compressed, or
    /// `request` itself (not an append, compression off, or nothing to gain).
    pub(crate) fn compress(self, request: ClusterRequest) -> ClusterRequest {
        if self == LogCompression::None {
            return request;
        }
        let (tag, entries, segments, received_unix_ms) = match request {
            ClusterRequest::AppendChunk {
                origin,
                tag,
                entries,
                count,
                received_unix_ms,
            } => {
                let segment = Segment {
                    origin,
                    len: entries.len(),
                    count,
                };
                (tag, entries, vec![segment], received_unix_ms)
            }
            ClusterRequest::AppendSegments {
                tag,
                entries,
                segments,
                received_unix_ms,
            } => (tag, entries, segments, received_unix_ms),
            other => return other,
        };
        let lz4 = lz4_flex::block::compress(&entries);
        ClusterRequest::AppendCompressed {
            tag,
            lz4: Bytes::from(lz4),
            len: entries.len() as u64,
            segments,
            received_unix_ms,
        }
    }
}

/// The events of an `AppendCompressed`: `lz4` decompressed, exactly `len` bytes.
pub(crate) fn decompress(lz4: &[u8], len: u64) -> Result<Bytes, ClusterError> {
    let mut events = Vec::new();
    decompress_into(lz4, len, &mut events)?;
    Ok(Bytes::from(events))
}

/// [`decompress`] into `events` (replacing what it held), reusing its allocation: a caller
/// that decompresses one payload after another (the upload's renderer) touches no fresh memory.
pub(crate) fn decompress_into(
    lz4: &[u8],
    len: u64,
    events: &mut Vec<u8>,
) -> Result<(), ClusterError> {
    let corrupt = |why: String| ClusterError::Corrupt(format!("compressed chunk payload: {why}"));
    let len = usize::try_from(len).map_err(|_| corrupt(format!("length {len}")))?;
    // A block of LZ4 expands at most ~255×; a larger claim is not a real payload (and must not
    // make us allocate it).
    if len > lz4.len().saturating_mul(255).saturating_add(16) {
        return Err(corrupt(format!("{len} bytes claimed from {}", lz4.len())));
    }
    events.clear();
    events.resize(len, 0);
    let written =
        lz4_flex::block::decompress_into(lz4, events).map_err(|e| corrupt(e.to_string()))?;
    if written != len {
        return Err(corrupt(format!("{written} bytes, {len} expected")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` Forward entries `[1, {"message": "line <i> ..."}]`, repetitive like real logs.
    fn events(n: usize) -> Bytes {
        let mut out = Vec::new();
        for i in 0..n {
            let record = format!("line {i} of the same service, status=200 path=/api/items");
            out.extend_from_slice(&[0x92, 0x01, 0x81, 0xa7]);
            out.extend_from_slice(b"message");
            out.push(0xd9);
            out.push(record.len() as u8);
            out.extend_from_slice(record.as_bytes());
        }
        Bytes::from(out)
    }

    #[test]
    fn an_append_round_trips_smaller() {
        let entries = events(1000);
        let request = ClusterRequest::AppendChunk {
            origin: Some(Bytes::from_static(b"id-1")),
            tag: "app".into(),
            entries: entries.clone(),
            count: 1000,
            received_unix_ms: 7,
        };
        let compressed = LogCompression::Lz4.compress(request);
        let ClusterRequest::AppendCompressed {
            tag,
            lz4,
            len,
            segments,
            received_unix_ms,
        } = &compressed
        else {
            panic!("not compressed: {compressed:?}");
        };
        assert_eq!(
            (tag.as_str(), *len, *received_unix_ms),
            ("app", entries.len() as u64, 7)
        );
        assert_eq!(segments.len(), 1);
        assert_eq!(segments[0].origin.as_deref(), Some(&b"id-1"[..]));
        assert_eq!((segments[0].len, segments[0].count), (entries.len(), 1000));
        assert!(
            lz4.len() * 3 < entries.len(),
            "{} of {}",
            lz4.len(),
            entries.len()
        );
        assert_eq!(compressed.events().unwrap().unwrap(), entries);
    }

    #[test]
    fn off_or_not_an_append_stays_as_it_is() {
        let append = ClusterRequest::AppendSegments {
            tag: "app".into(),
            entries: events(3),
            segments: vec![],
            received_unix_ms: 1,
        };
        assert_eq!(LogCompression::None.compress(append.clone()), append);
        let confirm = ClusterRequest::ConfirmUpload { first: 3 };
        assert_eq!(LogCompression::Lz4.compress(confirm.clone()), confirm);
        assert_eq!(LogCompression::parse("lz4"), Some(LogCompression::Lz4));
        assert_eq!(LogCompression::parse("none"), Some(LogCompression::None));
        assert_eq!(LogCompression::parse("zstd"), None);
    }

    #[test]
    fn a_damaged_or_lying_block_is_an_error_not_a_panic() {
        let entries = events(100);
        let lz4 = lz4_flex::block::compress(&entries);
        let len = entries.len() as u64;
        assert_eq!(decompress(&lz4, len).unwrap(), entries);
        // Wrong length either way.
        assert!(decompress(&lz4, len - 1).is_err());
        assert!(decompress(&lz4, len + 1).is_err());
        // A huge claim is refused before allocating it.
        assert!(decompress(&lz4, u64::MAX).is_err());
        assert!(decompress(&lz4, 1 << 40).is_err());
        // Truncated and garbled blocks.
        assert!(decompress(&lz4[..lz4.len() / 2], len).is_err());
        let mut garbled = lz4.clone();
        for b in garbled.iter_mut().step_by(7) {
            *b ^= 0xa5;
        }
        let _ = decompress(&garbled, len);
    }
}
