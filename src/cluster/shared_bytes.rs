//! Decoding msgpack so that chunk payloads stay slices of the received buffer.
//!
//! An AppendEntries arrives as one `Bytes` (the gRPC message, not copied by prost); decoding
//! it with rmp-serde would copy every entry's payload out of it (`Bytes`' own `Deserialize`
//! copies). [`decode_sharing`] decodes with the source buffer known to the payload fields
//! (those marked `#[serde(deserialize_with = "shared_bytes::deserialize")]`), which then take
//! a reference-counted slice of it instead of a copy.
//!
//! The source is handed over in a thread-local for the duration of one synchronous decode
//! (serde offers no other way to reach a deserializer's input from a field). Outside
//! [`decode_sharing`], or for bytes not inside its source, the field copies as before, so a
//! value decodes the same either way. Owns only that; it must not know which messages exist.

use bytes::Bytes;
use serde::de::{DeserializeOwned, Deserializer, Error, Visitor};
use std::cell::RefCell;
use std::fmt;

thread_local! {
    /// The buffer [`decode_sharing`] is decoding on this thread, if any.
    static SOURCE: RefCell<Option<Bytes>> = const { RefCell::new(None) };
}

/// Clears [`SOURCE`] when the decode ends, also by a panic.
struct SourceGuard(Option<Bytes>);

impl Drop for SourceGuard {
    fn drop(&mut self) {
        SOURCE.with(|s| *s.borrow_mut() = self.0.take());
    }
}

/// `rmp_serde::from_slice(source)`, whose payload fields are slices of `source`.
pub(crate) fn decode_sharing<T: DeserializeOwned>(
    source: &Bytes,
) -> Result<T, rmp_serde::decode::Error> {
    let outer = SOURCE.with(|s| s.borrow_mut().replace(source.clone()));
    let _restore = SourceGuard(outer);
    rmp_serde::from_slice(source)
}

/// `deserialize_with` for a `Bytes` payload field: a slice of [`decode_sharing`]'s source when
/// the decoder lends bytes inside it, a copy otherwise.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
    deserializer.deserialize_bytes(SharedBytesVisitor)
}

struct SharedBytesVisitor;

impl<'de> Visitor<'de> for SharedBytesVisitor {
    type Value = Bytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_borrowed_bytes<E: Error>(self, v: &'de [u8]) -> Result<Bytes, E> {
        Ok(slice_of_source(v).unwrap_or_else(|| Bytes::copy_from_slice(v)))
    }

    fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Bytes, E> {
        Ok(Bytes::copy_from_slice(v))
    }

    fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
        Ok(Bytes::from(v))
    }

    // Older encoders (and serde's own `Bytes` impl) accept a sequence of u8 as well.
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(byte) = seq.next_element::<u8>()? {
            out.push(byte);
        }
        Ok(Bytes::from(out))
    }
}

/// `v` as a slice of the current source, if it lies inside it.
fn slice_of_source(v: &[u8]) -> Option<Bytes> {
    SOURCE.with(|s| {
        let source = s.borrow();
        let source = source.as_ref()?;
        // `slice_ref` panics for bytes outside; checked first.
        lies_within(v, source).then(|| source.slice_ref(v))
    })
}

/// Whether `v` is part of `buffer`'s memory (a slice of it, not a copy): then whatever holds
/// `v` as a `Bytes` keeps all of `buffer` alive.
pub(crate) fn lies_within(v: &[u8], buffer: &[u8]) -> bool {
    let (start, base) = (v.as_ptr() as usize, buffer.as_ptr() as usize);
    start >= base && start + v.len() <= base + buffer.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Carrier {
        name: String,
        #[serde(deserialize_with = "deserialize")]
        payload: Bytes,
    }

    fn encoded(payload: &[u8]) -> Bytes {
        let value = Carrier {
            name: "t".into(),
            payload: Bytes::copy_from_slice(payload),
        };
        Bytes::from(rmp_serde::to_vec(&value).unwrap())
    }

    #[test]
    fn payload_is_a_slice_of_the_source() {
        let source = encoded(b"0123456789");
        let value: Carrier = decode_sharing(&source).unwrap();
        assert_eq!(&value.payload[..], b"0123456789");
        assert!(
            lies_within(&value.payload, &source),
            "not a slice of the source"
        );
        // The source is forgotten after the decode: a plain decode copies.
        let plain: Carrier = rmp_serde::from_slice(&source).unwrap();
        assert_eq!(plain, value);
        assert!(
            !lies_within(&plain.payload, &source),
            "a plain decode shared the buffer"
        );
    }

    #[test]
    fn nested_decodes_restore_the_outer_source() {
        let outer = encoded(b"outer");
        let inner = encoded(b"inner");
        SOURCE.with(|s| *s.borrow_mut() = Some(outer.clone()));
        let _: Carrier = decode_sharing(&inner).unwrap();
        let restored = SOURCE.with(|s| s.borrow().clone());
        assert_eq!(restored, Some(outer));
        SOURCE.with(|s| *s.borrow_mut() = None);
    }

    #[test]
    fn a_sequence_of_bytes_decodes_too() {
        #[derive(Serialize)]
        struct AsSeq {
            name: String,
            payload: Vec<u8>,
        }
        let source = Bytes::from(
            rmp_serde::to_vec(&AsSeq {
                name: "t".into(),
                payload: vec![1, 2, 3],
            })
            .unwrap(),
        );
        let value: Carrier = decode_sharing(&source).unwrap();
        assert_eq!(&value.payload[..], &[1, 2, 3]);
    }
}
