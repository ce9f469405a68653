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
//! A chunk with origin segments (see [`crate::origin`]) is planned so that every labelled
//! segment travels whole in one frame, listed in the frame's `lograft_origins` option; a
//! labelled segment larger than a frame is cut into runs from its own start (so the cut is the
//! same whichever chunk or forwarder holds it) and each run carries a part id of the segment.
//! Unlabelled entries fill the frames around them.
//!
//! It must not send anything or decide about failures: the output does that.

use crate::buffer::ChunkId;
use crate::config::Compression;
use crate::event::{entry_runs, EntryError, EntryIter};
use crate::origin::{self, Segment};
use bytes::Bytes;
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
    /// The frame's origin segments (covering `range`), or empty when none of its entries has
    /// an origin.
    pub segments: Vec<Segment>,
}

/// Option bytes a frame's `lograft_origins` costs at most: the key and array header, and per
/// segment a pair header, an id of up to [`origin::MAX_ORIGIN_LEN`] bytes and a u32.
const ORIGINS_FIXED_COST: usize = 24;
const ORIGINS_SEGMENT_COST: usize = 8 + origin::MAX_ORIGIN_LEN;

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
        segments: Vec::new(),
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
            segments: Vec::new(),
        })
        .collect();
    if spans.is_empty() {
        return Ok(vec![whole()]);
    }
    Ok(spans)
}

/// Split an entry stream with origin `segments` (covering it in order) into frames of at most
/// `budget` bytes of entries and `lograft_origins` option each (see the module doc).
pub fn plan_frames_with_origins(
    entries: &[u8],
    segments: &[Segment],
    budget: Option<usize>,
) -> Result<Vec<FrameSpan>, EntryError> {
    let budget = budget.unwrap_or(usize::MAX);
    let mut plan = Planner {
        budget,
        frames: Vec::new(),
        open: None,
    };
    let mut at = 0usize;
    for segment in segments {
        let range = at..at + segment.len;
        at = range.end;
        match &segment.origin {
            Some(id) if plan.fits_alone(segment.len, true) => {
                plan.add(range, segment.count, Some(id.clone()));
            }
            Some(id) => {
                plan.close();
                let room = budget
                    .saturating_sub(ORIGINS_FIXED_COST + ORIGINS_SEGMENT_COST)
                    .max(1);
                let runs = entry_runs(&entries[range.clone()], room)?;
                let ids = origin::part_ids(id, runs.len());
                for ((run, count), part) in runs.into_iter().zip(ids) {
                    let oversized = run.len() > room;
                    let run = range.start + run.start..range.start + run.end;
                    plan.add(run, count, Some(part));
                    if let Some(open) = plan.open.as_mut() {
                        open.oversized = oversized;
                    }
                    plan.close();
                }
            }
            None if plan.fits_open(segment.len, false) => plan.add(range, segment.count, None),
            None => {
                let mut start = range.start;
                for e in EntryIter::new(&entries[range.clone()]) {
                    let len = e?.raw.len();
                    if plan.fits_alone(len, false) {
                        plan.add(start..start + len, 1, None);
                    } else {
                        // One entry larger than a frame: alone, and oversized.
                        plan.close();
                        plan.add(start..start + len, 1, None);
                        if let Some(open) = plan.open.as_mut() {
                            open.oversized = true;
                        }
                        plan.close();
                    }
                    start += len;
                }
            }
        }
    }
    plan.close();
    Ok(plan.frames)
}

/// The frame being filled by [`plan_frames_with_origins`] and the frames already closed.
struct Planner {
    budget: usize,
    frames: Vec<FrameSpan>,
    open: Option<FrameSpan>,
}

impl Planner {
    /// What a frame costs against the budget: its entries and its origins option.
    #[cfg(test)]
    fn cost(span: &FrameSpan) -> usize {
        Self::cost_of(
            span.range.len(),
            span.segments.len(),
            span.segments.iter().any(|s| s.origin.is_some()),
        )
    }

    fn cost_of(bytes: usize, segments: usize, labelled: bool) -> usize {
        bytes
            + if labelled {
                ORIGINS_FIXED_COST + ORIGINS_SEGMENT_COST * segments
            } else {
                0
            }
    }

    /// What `frame` (or a fresh one) would cost with a run of `len` bytes added.
    fn cost_with(frame: Option<&FrameSpan>, len: usize, labelled: bool) -> usize {
        let Some(f) = frame else {
            return Self::cost_of(len, 1, labelled);
        };
        let merges = !labelled && f.segments.last().is_some_and(|l| l.origin.is_none());
        Self::cost_of(
            f.range.len() + len,
            f.segments.len() + usize::from(!merges),
            labelled || f.segments.iter().any(|s| s.origin.is_some()),
        )
    }

    /// Whether a run of `len` bytes fits a frame of its own.
    fn fits_alone(&self, len: usize, labelled: bool) -> bool {
        Self::cost_with(None, len, labelled) <= self.budget
    }

    /// Whether a run of `len` bytes fits the open frame (or a fresh one).
    fn fits_open(&self, len: usize, labelled: bool) -> bool {
        Self::cost_with(self.open.as_ref(), len, labelled) <= self.budget
    }

    /// Append a run to the open frame (closing it first when the run does not fit).
    fn add(&mut self, range: std::ops::Range<usize>, count: u32, origin: Option<Bytes>) {
        if !self.fits_open(range.len(), origin.is_some()) {
            self.close();
        }
        let open = self.open.get_or_insert_with(|| FrameSpan {
            range: range.start..range.start,
            records: 0,
            oversized: false,
            segments: Vec::new(),
        });
        debug_assert_eq!(open.range.end, range.start);
        open.range.end = range.end;
        open.records += count;
        origin::push_run(&mut open.segments, origin, range.len(), count);
    }

    fn close(&mut self) {
        if let Some(mut open) = self.open.take() {
            if open.segments.iter().all(|s| s.origin.is_none()) {
                open.segments.clear();
            }
            self.frames.push(open);
        }
    }
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
            segments: Vec::new(),
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

    fn seg(origin: Option<&'static str>, len: usize, count: u32) -> Segment {
        Segment {
            origin: origin.map(|o| Bytes::from_static(o.as_bytes())),
            len,
            count,
        }
    }

    /// Frames cover the stream contiguously, each within budget once its origins are counted,
    /// each segment's records matching its bytes.
    fn check_plan(e: &[u8], spans: &[FrameSpan], budget: usize) {
        let mut at = 0;
        for s in spans {
            assert_eq!(s.range.start, at);
            at = s.range.end;
            if !s.oversized {
                assert!(Planner::cost(s) <= budget, "{s:?}");
            }
            let n = EntryIter::new(&e[s.range.clone()]).count();
            assert_eq!(n as u32, s.records);
            let mut sat = s.range.start;
            for g in &s.segments {
                assert_eq!(EntryIter::new(&e[sat..sat + g.len]).count() as u32, g.count);
                sat += g.len;
            }
            assert!(s.segments.is_empty() || sat == s.range.end);
        }
        assert_eq!(at, e.len());
    }

    #[test]
    fn labelled_segments_travel_whole_and_unlabelled_entries_fill_around_them() {
        let one = entry_len(20);
        let e = entries(&[20; 30]);
        // a: 4 entries, unlabelled: 3, b: 5, unlabelled: 18.
        let segments = [
            seg(Some("a"), 4 * one, 4),
            seg(None, 3 * one, 3),
            seg(Some("b"), 5 * one, 5),
            seg(None, 18 * one, 18),
        ];
        // Room for 10 entries and two segments' option cost.
        let budget = 10 * one + ORIGINS_FIXED_COST + 2 * ORIGINS_SEGMENT_COST;
        let spans = plan_frames_with_origins(&e, &segments, Some(budget)).unwrap();
        check_plan(&e, &spans, budget);
        type Shape<'a> = Vec<Vec<(Option<&'a [u8]>, u32)>>;
        let shape: Shape = spans
            .iter()
            .map(|s| {
                s.segments
                    .iter()
                    .map(|g| (g.origin.as_deref(), g.count))
                    .collect()
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                vec![(Some(&b"a"[..]), 4), (None, 3)],
                vec![(Some(&b"b"[..]), 5), (None, 5)],
                vec![],
            ]
        );
        assert_eq!(spans[2].records, 13);
    }

    #[test]
    fn a_labelled_segment_larger_than_a_frame_is_cut_the_same_wherever_it_sits() {
        let one = entry_len(20);
        let budget = 4 * one + ORIGINS_FIXED_COST + ORIGINS_SEGMENT_COST;
        let plan = |before: usize| {
            let e = entries(&vec![20; before + 10]);
            let mut segments = vec![];
            if before > 0 {
                segments.push(seg(None, before * one, before as u32));
            }
            segments.push(seg(Some("big"), 10 * one, 10));
            let spans = plan_frames_with_origins(&e, &segments, Some(budget)).unwrap();
            check_plan(&e, &spans, budget);
            spans
                .into_iter()
                .flat_map(|s| s.segments)
                .filter(|g| g.origin.is_some())
                .collect::<Vec<_>>()
        };
        let alone = plan(0);
        assert_eq!(alone, plan(3));
        let big = Bytes::from_static(b"big");
        assert_eq!(
            alone,
            vec![
                Segment {
                    origin: Some(origin::part_id(&big, 0, 3)),
                    len: 4 * one,
                    count: 4
                },
                Segment {
                    origin: Some(origin::part_id(&big, 1, 3)),
                    len: 4 * one,
                    count: 4
                },
                Segment {
                    origin: Some(origin::part_id(&big, 2, 3)),
                    len: 2 * one,
                    count: 2
                },
            ]
        );
        // An entry larger than a frame goes alone, flagged.
        let e = entries(&[20, 5000, 20]);
        let l = entry_len(5000);
        let segments = [seg(None, one, 1), seg(Some("x"), l, 1), seg(None, one, 1)];
        let spans = plan_frames_with_origins(&e, &segments, Some(1000)).unwrap();
        let flags: Vec<(u32, bool)> = spans.iter().map(|s| (s.records, s.oversized)).collect();
        assert_eq!(flags, vec![(1, false), (1, true), (1, false)]);
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
