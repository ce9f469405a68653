//! out_forward's frames: how one buffer chunk becomes one or more Forward messages that fit
//! the receiver (`max_frame_size`), and the `chunk` id each of them carries.
//!
//! Owns the split and the ids, both pure functions of the chunk (its id and entries) and the
//! settings, so a resend after a crash, a retry or a failover produces the very same frames
//! with the very same ids, and receivers drop repeats:
//! - the split walks the entry stream (entry boundaries only, records are not decoded) and
//!   packs consecutive entries into frames of at most `max_frame_size` bytes, header and
//!   options included; an entry larger than that goes alone into a frame of its own;
//! - a chunk that fits in one frame keeps the chunk id as its frame id; a chunk split into
//!   `n` frames gives frame `i` the first 16 bytes of SHA-256(`lograft-frame`, chunk id,
//!   `i`, `n`), in the chunk id's base64 form.
//!
//! It must not send anything or decide about failures: the output does that.

use crate::buffer::ChunkId;
use crate::config::Compression;
use crate::event::{entry_runs, EntryError};
use sha2::{Digest, Sha256};
use std::ops::Range;

/// One frame of a chunk: a run of whole entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameSpan {
    /// Byte range of the entries in the chunk's entry stream.
    pub range: Range<usize>,
    pub records: u32,
    /// A single entry larger than the entries' budget (it could not be made to fit).
    pub oversized: bool,
}

/// The bytes of entries (uncompressed) one frame may carry when the whole message may be
/// `max_frame_size` bytes and the header and options take `overhead` bytes. `None`: no limit
/// (`max_frame_size 0`). With gzip, room is left for deflate's worst-case growth, so the
/// compressed frame fits too.
pub fn entries_budget(
    max_frame_size: u64,
    overhead: usize,
    compress: Compression,
) -> Option<usize> {
    if max_frame_size == 0 {
        return None;
    }
    let room = usize::try_from(max_frame_size)
        .unwrap_or(usize::MAX)
        .saturating_sub(overhead);
    let room = match compress {
        Compression::Text => room,
        Compression::Gzip => room.saturating_sub(room / 1024 + 128),
    };
    Some(room.max(1))
}

/// Split an entry stream into frames of at most `budget` bytes of entries each (see the
/// module doc). `records` is the chunk's record count, used when the chunk is one frame.
pub fn plan_frames(
    entries: &[u8],
    records: u64,
    budget: Option<usize>,
) -> Result<Vec<FrameSpan>, EntryError> {
    let whole = || FrameSpan {
        range: 0..entries.len(),
        records: u32::try_from(records).unwrap_or(u32::MAX),
        oversized: false,
    };
    let budget = match budget {
        Some(b) if entries.len() > b => b,
        _ => return Ok(vec![whole()]),
    };
    let spans: Vec<FrameSpan> = entry_runs(entries, budget)?
        .into_iter()
        .map(|(range, records)| FrameSpan {
            oversized: range.len() > budget,
            range,
            records,
        })
        .collect();
    if spans.is_empty() {
        return Ok(vec![whole()]);
    }
    Ok(spans)
}

/// The `chunk` option of frame `index` of `count` frames of chunk `chunk` (see the module doc).
pub fn frame_id(chunk: ChunkId, index: usize, count: usize) -> String {
    if count <= 1 {
        return chunk.to_base64();
    }
    let mut h = Sha256::new();
    h.update(b"lograft-frame");
    h.update(chunk.0);
    h.update((index as u64).to_be_bytes());
    h.update((count as u64).to_be_bytes());
    let digest = h.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    ChunkId(id).to_base64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{write_entry, EntryIter, EventTime};
    use bytes::BytesMut;

    /// Entries whose records are `{"v": "x" * size}` for each size.
    fn entries(sizes: &[usize]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for &n in sizes {
            let rec = rmp_serde::to_vec_named(&serde_json::json!({ "v": "x".repeat(n) })).unwrap();
            write_entry(&mut out, EventTime { secs: 1, nanos: 0 }, &rec);
        }
        out.to_vec()
    }

    fn entry_len(size: usize) -> usize {
        entries(&[size]).len()
    }

    #[test]
    fn a_chunk_that_fits_is_one_frame_with_its_own_id() {
        let e = entries(&[10, 20, 30]);
        let whole = vec![FrameSpan {
            range: 0..e.len(),
            records: 3,
            oversized: false,
        }];
        assert_eq!(plan_frames(&e, 3, None).unwrap(), whole);
        assert_eq!(plan_frames(&e, 3, Some(e.len())).unwrap(), whole);
        let id = ChunkId([7; 16]);
        assert_eq!(frame_id(id, 0, 1), id.to_base64());
    }

    #[test]
    fn frames_split_on_entry_boundaries_within_the_budget() {
        let sizes: Vec<usize> = (0..1000).map(|i| 50 + i % 97).collect();
        let e = entries(&sizes);
        let budget = 4096;
        let spans = plan_frames(&e, 1000, Some(budget)).unwrap();
        assert!(spans.len() > 1);
        // Contiguous, complete, each within budget, each made of whole entries.
        assert_eq!(spans[0].range.start, 0);
        assert_eq!(spans.last().unwrap().range.end, e.len());
        for w in spans.windows(2) {
            assert_eq!(w[0].range.end, w[1].range.start);
            // Packed: the next frame's first entry would not have fitted.
            let first_next = EntryIter::new(&e[w[1].range.clone()])
                .next()
                .unwrap()
                .unwrap();
            assert!(w[0].range.len() + first_next.raw.len() > budget);
        }
        let mut total = 0;
        for s in &spans {
            assert!(s.range.len() <= budget && !s.oversized);
            let n = EntryIter::new(&e[s.range.clone()])
                .inspect(|x| assert!(x.is_ok()))
                .count();
            assert_eq!(n as u32, s.records);
            total += n;
        }
        assert_eq!(total, 1000);
    }

    #[test]
    fn an_entry_larger_than_the_budget_travels_alone() {
        let e = entries(&[10, 5000, 10, 10]);
        let spans = plan_frames(&e, 4, Some(1000)).unwrap();
        let lens: Vec<(u32, bool)> = spans.iter().map(|s| (s.records, s.oversized)).collect();
        assert_eq!(lens, vec![(1, false), (1, true), (2, false)]);
        assert_eq!(spans[1].range.len(), entry_len(5000));
    }

    #[test]
    fn frame_ids_are_deterministic_distinct_and_shaped_like_chunk_ids() {
        let a = ChunkId([1; 16]);
        let b = ChunkId([2; 16]);
        let ids: Vec<String> = (0..3).map(|i| frame_id(a, i, 3)).collect();
        assert_eq!(ids, (0..3).map(|i| frame_id(a, i, 3)).collect::<Vec<_>>());
        assert_ne!(ids[0], ids[1]);
        assert_ne!(ids[1], ids[2]);
        assert_ne!(frame_id(a, 0, 3), frame_id(a, 0, 2));
        assert_ne!(frame_id(a, 0, 3), frame_id(b, 0, 3));
        assert_ne!(frame_id(a, 0, 3), a.to_base64());
        assert_eq!(ids[0].len(), a.to_base64().len());
    }

    #[test]
    fn budget_leaves_room_for_options_and_gzip_growth() {
        assert_eq!(entries_budget(0, 50, Compression::Text), None);
        assert_eq!(entries_budget(1000, 50, Compression::Text), Some(950));
        let max = 256 << 10;
        let gz = entries_budget(max, 50, Compression::Gzip).unwrap();
        assert!(gz < max as usize - 50 - 200);
        // Incompressible data of the budget's size still fits once gzipped.
        let noise: Vec<u8> = (0..gz).map(|_| rand::random::<u8>()).collect();
        let zipped = crate::forward::gzip_entries(&noise).unwrap();
        assert!(zipped.len() + 50 <= max as usize, "{}", zipped.len());
        assert_eq!(entries_budget(10, 50, Compression::Text), Some(1));
    }
}
