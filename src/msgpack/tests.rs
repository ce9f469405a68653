//! The primitives against `rmp`'s encodings: every marker family read back by the cursor,
//! written by our writers byte-for-byte as `rmp` writes it, skipped by [`skip_value`], and
//! scanned by [`ValueScanner`] whatever byte boundaries the stream arrives in.

use super::*;
use proptest::prelude::*;

/// One msgpack value of a given family, as `rmp` encodes it.
#[derive(Debug, Clone)]
enum Item {
    Nil,
    Bool(bool),
    /// Smallest encoding.
    Uint(u64),
    /// uint 8/16/32/64 markers whatever the value.
    UintFixed(u64, u8),
    Sint(i64),
    /// int 8/16/32/64 markers whatever the value.
    SintFixed(i64, u8),
    F32(f32),
    F64(f64),
    Str(String),
    Bin(Vec<u8>),
    /// Header only.
    Array(u32),
    /// Header only.
    Map(u32),
    Ext(i8, Vec<u8>),
}

/// Lengths on both sides of every encoding boundary, and some in between.
fn raw_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        prop::sample::select(vec![0, 1, 15, 16, 31, 32, 255, 256, 65_535, 65_536]),
        0usize..300,
    ]
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        Just(Item::Nil),
        any::<bool>().prop_map(Item::Bool),
        any::<u64>().prop_map(Item::Uint),
        (0u64..300).prop_map(Item::Uint),
        (any::<u64>(), 0u8..4).prop_map(|(v, w)| Item::UintFixed(v, w)),
        any::<i64>().prop_map(Item::Sint),
        (-300i64..300).prop_map(Item::Sint),
        (any::<i64>(), 0u8..4).prop_map(|(v, w)| Item::SintFixed(v, w)),
        any::<f32>().prop_map(Item::F32),
        any::<f64>().prop_map(Item::F64),
        raw_len().prop_map(|n| Item::Str("é".repeat(n / 2) + &"x".repeat(n % 2))),
        (raw_len(), any::<u8>()).prop_map(|(n, b)| Item::Bin(vec![b; n])),
        prop_oneof![0u32..40, any::<u32>()].prop_map(Item::Array),
        prop_oneof![0u32..40, any::<u32>()].prop_map(Item::Map),
        (
            any::<i8>(),
            prop_oneof![
                prop::sample::select(vec![1usize, 2, 4, 8, 16]),
                0usize..300,
                Just(65_536usize)
            ]
        )
            .prop_map(|(t, n)| Item::Ext(t, vec![7; n])),
    ]
}

fn encode(item: &Item) -> Vec<u8> {
    use rmp::encode as e;
    let mut out = Vec::new();
    let w = &mut out;
    match item {
        Item::Nil => e::write_nil(w).unwrap(),
        Item::Bool(v) => e::write_bool(w, *v).unwrap(),
        Item::Uint(v) => drop(e::write_uint(w, *v).unwrap()),
        Item::UintFixed(v, 0) => e::write_u8(w, *v as u8).unwrap(),
        Item::UintFixed(v, 1) => e::write_u16(w, *v as u16).unwrap(),
        Item::UintFixed(v, 2) => e::write_u32(w, *v as u32).unwrap(),
        Item::UintFixed(v, _) => e::write_u64(w, *v).unwrap(),
        Item::Sint(v) => drop(e::write_sint(w, *v).unwrap()),
        Item::SintFixed(v, 0) => e::write_i8(w, *v as i8).unwrap(),
        Item::SintFixed(v, 1) => e::write_i16(w, *v as i16).unwrap(),
        Item::SintFixed(v, 2) => e::write_i32(w, *v as i32).unwrap(),
        Item::SintFixed(v, _) => e::write_i64(w, *v).unwrap(),
        Item::F32(v) => e::write_f32(w, *v).unwrap(),
        Item::F64(v) => e::write_f64(w, *v).unwrap(),
        Item::Str(s) => e::write_str(w, s).unwrap(),
        Item::Bin(b) => e::write_bin(w, b).unwrap(),
        Item::Array(n) => drop(e::write_array_len(w, *n).unwrap()),
        Item::Map(n) => drop(e::write_map_len(w, *n).unwrap()),
        Item::Ext(t, data) => {
            e::write_ext_meta(w, data.len() as u32, *t).unwrap();
            w.extend_from_slice(data);
        }
    }
    out
}

/// The value a fixed-width encoding actually carries.
fn fixed_uint(v: u64, w: u8) -> u64 {
    match w {
        0 => v as u8 as u64,
        1 => v as u16 as u64,
        2 => v as u32 as u64,
        _ => v,
    }
}

fn fixed_sint(v: i64, w: u8) -> i64 {
    match w {
        0 => v as i8 as i64,
        1 => v as i16 as i64,
        2 => v as i32 as i64,
        _ => v,
    }
}

/// Read `item` back with the cursor and check it consumed exactly `bytes`.
fn read_back(item: &Item, bytes: &[u8]) -> Result<(), TestCaseError> {
    let mut c = Cursor::new(bytes);
    match item {
        Item::Nil => prop_assert!(c.nil().unwrap()),
        Item::Bool(v) => prop_assert_eq!(c.bool().unwrap(), Some(*v)),
        Item::Uint(v) => prop_assert_eq!(c.uint().unwrap(), Some(*v)),
        Item::UintFixed(v, w) => prop_assert_eq!(c.uint().unwrap(), Some(fixed_uint(*v, *w))),
        Item::Sint(v) | Item::SintFixed(v, _) => {
            let v = match item {
                Item::SintFixed(_, w) => fixed_sint(*v, *w),
                _ => *v,
            };
            let got = c.uint().unwrap();
            if v >= 0 {
                prop_assert_eq!(got, Some(v as u64));
            } else {
                // A negative int is not a uint and is left in place.
                prop_assert_eq!(got, None);
                prop_assert_eq!(c.pos(), 0);
                c.skip().unwrap();
            }
        }
        Item::F32(v) => {
            let got = c.float().unwrap().unwrap();
            prop_assert!(got.to_bits() == (*v as f64).to_bits() || (v.is_nan() && got.is_nan()));
        }
        Item::F64(v) => {
            let got = c.float().unwrap().unwrap();
            prop_assert!(got.to_bits() == v.to_bits() || (v.is_nan() && got.is_nan()));
        }
        Item::Str(s) => {
            let (r, kind) = c.raw().unwrap().unwrap();
            prop_assert_eq!(kind, RawKind::Str);
            prop_assert_eq!(&bytes[r], s.as_bytes());
        }
        Item::Bin(b) => {
            let (r, kind) = c.raw().unwrap().unwrap();
            prop_assert_eq!(kind, RawKind::Bin);
            prop_assert_eq!(&bytes[r], &b[..]);
        }
        Item::Array(n) => {
            prop_assert!(is_array(bytes[0]));
            prop_assert_eq!(c.array_len().unwrap(), Some(*n));
        }
        Item::Map(n) => {
            prop_assert!(is_map(bytes[0]));
            prop_assert_eq!(c.map_len().unwrap(), Some(*n));
        }
        Item::Ext(t, data) => {
            prop_assert_eq!(c.ext_header().unwrap(), Some((*t, data.len() as u32)));
            prop_assert_eq!(c.bytes(data.len()).unwrap(), &data[..]);
        }
    }
    prop_assert!(c.at_end(), "{item:?} left {} bytes", bytes.len() - c.pos());
    Ok(())
}

/// Our writers produce exactly `rmp`'s (smallest) encoding, where we have a writer.
fn written_by_us(item: &Item) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match item {
        Item::Bool(v) => write_bool(&mut out, *v),
        Item::UintFixed(v, 2) => write_u32(&mut out, *v as u32),
        Item::Str(s) => write_str(&mut out, s),
        Item::Bin(b) => write_bin(&mut out, b),
        Item::Array(n) => write_array_header(&mut out, *n),
        Item::Map(n) => write_map_header(&mut out, *n),
        _ => return None,
    }
    Some(out)
}

/// A tree of values, for skipping and scanning nested data. Bodies are cut to 300 bytes (the
/// large ones are covered value by value): every split of a tree is scanned.
fn value() -> impl Strategy<Value = rmpv::Value> {
    use rmpv::Value;
    let leaf = item().prop_filter_map("scalar", |i| match i {
        Item::Array(_) | Item::Map(_) => None,
        Item::Nil => Some(Value::Nil),
        Item::Bool(v) => Some(Value::from(v)),
        Item::Uint(v) | Item::UintFixed(v, _) => Some(Value::from(v)),
        Item::Sint(v) | Item::SintFixed(v, _) => Some(Value::from(v)),
        Item::F32(v) => Some(Value::F32(v)),
        Item::F64(v) => Some(Value::F64(v)),
        Item::Str(s) => Some(Value::from(s.chars().take(150).collect::<String>())),
        Item::Bin(b) => Some(Value::Binary(b.into_iter().take(300).collect())),
        Item::Ext(t, d) => Some(Value::Ext(t, d.into_iter().take(300).collect())),
    });
    leaf.prop_recursive(4, 40, 20, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..20).prop_map(rmpv::Value::Array),
            prop::collection::vec((inner.clone(), inner), 0..18).prop_map(rmpv::Value::Map),
        ]
    })
}

/// Feed `buf` to a fresh scanner in two calls, split at `cut`; the first definite answer.
fn scan_split(buf: &[u8], cut: usize, limit: u64) -> Result<Option<usize>, ScanError> {
    let mut s = ValueScanner::default();
    match s.scan(&buf[..cut], limit)? {
        Some(end) => Ok(Some(end)),
        None => s.scan(buf, limit),
    }
}

proptest! {
    #[test]
    fn every_marker_family_round_trips(item in item()) {
        let bytes = encode(&item);
        read_back(&item, &bytes)?;
        let h = head(&bytes).unwrap();
        if let Some(ours) = written_by_us(&item) {
            prop_assert_eq!(&ours, &bytes, "{:?}", item);
        }
        match item {
            Item::Array(_) | Item::Map(_) => prop_assert_eq!(h.header + h.body, bytes.len() as u64),
            _ => {
                prop_assert_eq!(h.children, 0);
                prop_assert_eq!(h.header + h.body, bytes.len() as u64);
                prop_assert_eq!(skip_value(&bytes, 0), Ok(bytes.len()));
                prop_assert_eq!(ValueScanner::default().scan(&bytes, u64::MAX), Ok(Some(bytes.len())));
                // Cut anywhere, the value is incomplete.
                for cut in 0..bytes.len() {
                    prop_assert!(matches!(skip_value(&bytes[..cut], 0), Err(MsgpackError::Truncated(_))));
                    prop_assert_eq!(ValueScanner::default().scan(&bytes[..cut], u64::MAX), Ok(None));
                }
            }
        }
    }

    #[test]
    fn nested_values_skip_and_scan_at_every_split(v in value(), trailing in prop::collection::vec(any::<u8>(), 0..3)) {
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &v).unwrap();
        let len = bytes.len();
        bytes.extend(&trailing);
        prop_assert_eq!(skip_value(&bytes, 0), Ok(len));
        let mut c = Cursor::new(&bytes);
        prop_assert_eq!(c.skip().unwrap(), 0..len);
        let whole = ValueScanner::default().scan(&bytes, u64::MAX);
        prop_assert_eq!(whole.clone(), Ok(Some(len)));
        for cut in 0..=bytes.len() {
            prop_assert_eq!(scan_split(&bytes, cut, u64::MAX), whole.clone(), "cut at {}", cut);
        }
        // One scanner fed one more byte at a time.
        let mut s = ValueScanner::default();
        for n in 0..len {
            prop_assert_eq!(s.scan(&bytes[..n], u64::MAX), Ok(None), "prefix {}", n);
        }
        prop_assert_eq!(s.scan(&bytes[..len], u64::MAX), Ok(Some(len)));
        // Just under the size limit is refused, at the size is accepted.
        let limit = len as u64;
        prop_assert_eq!(ValueScanner::default().scan(&bytes, limit), Ok(Some(len)));
        let refused = ValueScanner::default().scan(&bytes, limit - 1);
        prop_assert!(matches!(refused, Err(ScanError::TooLarge(n)) if n >= limit), "{:?}", refused);
        for cut in 0..=bytes.len() {
            prop_assert_eq!(scan_split(&bytes, cut, limit - 1), refused.clone(), "cut at {}", cut);
        }
    }

    #[test]
    fn any_bytes_scan_the_same_at_every_split(data in prop::collection::vec(any::<u8>(), 0..64), limit in 1u64..80) {
        let whole = ValueScanner::default().scan(&data, limit);
        for cut in 0..=data.len() {
            prop_assert_eq!(scan_split(&data, cut, limit), whole.clone(), "cut at {}", cut);
        }
        // The scanner and the skipper agree on every complete value.
        match (ValueScanner::default().scan(&data, u64::MAX), skip_value(&data, 0)) {
            (Ok(Some(a)), b) => prop_assert_eq!(Ok(a), b),
            (_, Ok(b)) => prop_assert!(false, "skip_value found an end at {} the scanner did not", b),
            _ => {}
        }
    }
}

#[test]
fn scanner_resumes_and_jumps_bodies() {
    let mut v = vec![0x93, 0xa1, b't', 0xdb, 0, 0, 0, 5, 1, 2, 3, 4, 5, 0x80];
    let mut s = ValueScanner::default();
    for cut in 0..v.len() {
        assert_eq!(s.scan(&v[..cut], 1000).unwrap(), None, "cut {cut}");
    }
    assert_eq!(s.scan(&v, 1000).unwrap(), Some(v.len()));
    v.push(0xff);
    s.reset();
    assert_eq!(s.scan(&v, 1000).unwrap(), Some(v.len() - 1));
}

#[test]
fn scanner_rejects_declared_oversize_from_header() {
    let v = [0x93, 0xa1, b't', 0xdb, 0x10, 0, 0, 0];
    let mut s = ValueScanner::default();
    assert!(matches!(s.scan(&v, 1 << 20), Err(ScanError::TooLarge(_))));
    let v = [0xdd, 0xff, 0xff, 0xff, 0xff];
    s.reset();
    assert!(matches!(s.scan(&v, 1 << 20), Err(ScanError::TooLarge(_))));
}

#[test]
fn cursor_reads_headers() {
    let v = [0x92, 0xd0, 0xff, 0xcd, 0x01, 0x00, 0xc4, 0x02, 9, 9, 0xc3];
    let mut c = Cursor::new(&v);
    assert_eq!(c.array_len().unwrap(), Some(2));
    assert_eq!(c.uint().unwrap(), None);
    c.skip().unwrap();
    assert_eq!(c.uint().unwrap(), Some(256));
    let (r, k) = c.raw().unwrap().unwrap();
    assert_eq!((r, k), (8..10, RawKind::Bin));
    assert_eq!(c.bool().unwrap(), Some(true));
    assert!(c.at_end());
}

#[test]
fn bad_marker_and_truncation_are_located() {
    assert_eq!(
        skip_value(&[0x92, 0x01, 0xc1], 0),
        Err(MsgpackError::BadMarker {
            marker: 0xc1,
            offset: 2
        })
    );
    assert_eq!(
        ValueScanner::default().scan(&[0x92, 0x01, 0xc1], 100),
        Err(ScanError::BadMarker {
            marker: 0xc1,
            offset: 2
        })
    );
    // The length field of a str 16 is cut: reported at the field.
    assert_eq!(
        skip_value(&[0x91, 0xda, 0x00], 0),
        Err(MsgpackError::Truncated(2))
    );
    // A map claiming 2^32-1 pairs in a tiny buffer is refused before walking.
    assert_eq!(
        skip_value(&[0xdf, 0xff, 0xff, 0xff, 0xff, 0x01], 0),
        Err(MsgpackError::Truncated(5))
    );
}
