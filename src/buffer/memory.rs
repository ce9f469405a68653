//! The memory buffer's storage: a chunk's entries kept as the appended `Bytes` pieces.
//!
//! NOT durable: a memory buffer's `append` resolves as soon as the entries are stored in
//! process memory, and everything staged, queued or in flight is lost if the process dies
//! (use `flush_at_shutdown` so a clean stop delivers it). This module owns only the piece list;
//! chunking, scheduling and overflow are `buffer::Buffer`'s, shared with the file buffer.

use crate::origin::Segment;
use bytes::{Bytes, BytesMut};

/// The entries of one in-memory chunk, in append order. Pieces are slices of the appended
/// batches: storing them copies nothing.
#[derive(Debug, Default, Clone)]
pub struct MemoryChunk {
    pieces: Vec<Bytes>,
    /// Per piece: its record count and origin id (see [`crate::origin`]).
    labels: Vec<(u32, Option<Bytes>)>,
}

impl MemoryChunk {
    pub fn push(&mut self, entries: Bytes, records: u32, origin: Option<Bytes>) {
        self.pieces.push(entries);
        self.labels.push((records, origin));
    }

    /// The chunk's origin segments, as a file chunk's (`chunk::segments`): empty when no
    /// piece has an origin.
    pub fn segments(&self) -> Vec<Segment> {
        if self.labels.iter().all(|(_, o)| o.is_none()) {
            return Vec::new();
        }
        let mut out: Vec<Segment> = Vec::new();
        for (piece, (records, origin)) in self.pieces.iter().zip(&self.labels) {
            crate::origin::push_run(&mut out, origin.clone(), piece.len(), *records);
        }
        out
    }

    /// The chunk's entry stream: the pieces concatenated (no copy when there is one piece).
    pub fn entries(&self) -> Bytes {
        match self.pieces.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => {
                let total = many.iter().map(|p| p.len()).sum();
                let mut out = BytesMut::with_capacity(total);
                for p in many {
                    out.extend_from_slice(p);
                }
                out.freeze()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concatenates_pieces_in_order() {
        let mut c = MemoryChunk::default();
        assert!(c.entries().is_empty());
        c.push(Bytes::from_static(b"ab"), 1, None);
        assert_eq!(&c.entries()[..], b"ab");
        assert!(c.segments().is_empty());
        c.push(
            Bytes::from_static(b"cde"),
            2,
            Some(Bytes::from_static(b"id")),
        );
        assert_eq!(&c.entries()[..], b"abcde");
        assert_eq!(c.segments().len(), 2);
        assert_eq!(c.segments()[1].origin.as_deref(), Some(&b"id"[..]));
        assert_eq!((c.segments()[1].len, c.segments()[1].count), (3, 2));
    }
}
