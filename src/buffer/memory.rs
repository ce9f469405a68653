//! The memory buffer's storage: a chunk's entries kept as the appended `Bytes` pieces.
//!
//! NOT durable: a memory buffer's `append` resolves as soon as the entries are stored in
//! process memory, and everything staged, queued or in flight is lost if the process dies
//! (use `flush_at_shutdown` so a clean stop delivers it). This module owns only the piece list;
//! chunking, scheduling and overflow are `buffer::Buffer`'s, shared with the file buffer.

use bytes::{Bytes, BytesMut};

/// The entries of one in-memory chunk, in append order. Pieces are slices of the appended
/// batches: storing them copies nothing.
#[derive(Debug, Default, Clone)]
pub struct MemoryChunk {
    pieces: Vec<Bytes>,
}

impl MemoryChunk {
    pub fn push(&mut self, entries: Bytes) {
        self.pieces.push(entries);
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
        c.push(Bytes::from_static(b"ab"));
        assert_eq!(&c.entries()[..], b"ab");
        c.push(Bytes::from_static(b"cde"));
        assert_eq!(&c.entries()[..], b"abcde");
    }
}
