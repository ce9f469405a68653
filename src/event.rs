//! Events as they travel through lograft: a tag plus entries kept as msgpack bytes.
//!
//! Owns [`EventTime`], [`EventBatch`] and the zero-copy walk over a PackedForward entry stream
//! ([`EntryIter`]). Entries are never decoded into records on the hot path: the walker only
//! checks structure and finds boundaries. This module must not do I/O or know about protocols
//! beyond the msgpack shape of one entry (`[time, record]`).

use bytes::{BufMut, Bytes, BytesMut};
use std::time::{SystemTime, UNIX_EPOCH};

/// Fluentd's EventTime: seconds and nanoseconds since the Unix epoch (msgpack ext type 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventTime {
    pub secs: u32,
    pub nanos: u32,
}

impl EventTime {
    pub fn now() -> Self {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        EventTime {
            secs: d.as_secs() as u32,
            nanos: d.subsec_nanos(),
        }
    }

    pub fn from_f64(t: f64) -> Self {
        if !t.is_finite() || t <= 0.0 {
            return EventTime::default();
        }
        let secs = t.trunc();
        EventTime {
            secs: secs.min(u32::MAX as f64) as u32,
            nanos: ((t - secs) * 1e9).round().min(999_999_999.0) as u32,
        }
    }

    pub fn as_f64(self) -> f64 {
        self.secs as f64 + self.nanos as f64 / 1e9
    }

    /// True for the "unset" time (0 or nil on the wire), which receivers replace by "now".
    pub fn is_zero(self) -> bool {
        self.secs == 0 && self.nanos == 0
    }

    /// Append the msgpack fixext8 encoding (`D7 00 sec nsec`).
    pub fn write_msgpack(self, out: &mut impl BufMut) {
        out.put_u8(0xd7);
        out.put_u8(0x00);
        out.put_u32(self.secs);
        out.put_u32(self.nanos);
    }
}

/// Events for one tag, as a concatenated msgpack stream of `[time, record]` entries.
///
/// This is the unit every input hands to the router and every buffer stores: the
/// PackedForward form, so an output can send `entries` as they are.
#[derive(Debug, Clone)]
pub struct EventBatch {
    pub tag: String,
    /// Concatenated msgpack `[time, record]` arrays, already validated.
    pub entries: Bytes,
    /// Number of entries in `entries`.
    pub count: u32,
    /// The `chunk` option the sender attached, exactly as received (dedup key for receivers).
    pub origin_chunk: Option<Bytes>,
}

/// Why an entry stream was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("truncated msgpack at byte {0}")]
    Truncated(usize),
    #[error("invalid msgpack marker 0x{marker:02x} at byte {offset}")]
    BadMarker { marker: u8, offset: usize },
    #[error("entry at byte {0} is not a [time, record] array")]
    NotAnEntry(usize),
    #[error("entry at byte {0} has an invalid time")]
    BadTime(usize),
    #[error("entry at byte {0} has a record that is not a map")]
    RecordNotMap(usize),
    #[error("entry at byte {0} has a record nested deeper than the depth limit ({limit})", limit = crate::record_depth::MAX_RECORD_DEPTH)]
    TooDeep(usize),
}

/// One entry found by [`EntryIter`]: borrowed slices into the stream.
#[derive(Debug, Clone, Copy)]
pub struct EntryRef<'a> {
    /// Event time; zero when the wire carried 0 or nil (the caller decides to replace it).
    pub time: EventTime,
    /// The whole `[time, record]` entry as it stands in the stream.
    pub raw: &'a [u8],
    /// The record map's msgpack bytes.
    pub record: &'a [u8],
}

/// Walks a PackedForward entry stream without decoding records.
pub struct EntryIter<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> EntryIter<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        EntryIter {
            buf,
            pos: 0,
            failed: false,
        }
    }
}

impl<'a> Iterator for EntryIter<'a> {
    type Item = Result<EntryRef<'a>, EntryError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let start = self.pos;
        match parse_entry(self.buf, start) {
            Ok((entry, end)) => {
                self.pos = end;
                Some(Ok(entry))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// One item of [`LenientEntryIter`]: a valid entry, or a well-formed msgpack value that is not
/// a valid `[time, record]` entry (the caller may drop it and keep going).
#[derive(Debug, Clone)]
pub enum LenientEntry<'a> {
    Valid(EntryRef<'a>),
    /// A complete msgpack value at `offset` that is not a valid entry (bad time, record not a
    /// map, wrong array length).
    Invalid {
        offset: usize,
        error: EntryError,
    },
}

/// Walks an entry stream like [`EntryIter`], but steps over entries that are well-formed
/// msgpack of the wrong shape instead of stopping. Structurally broken msgpack (truncated,
/// invalid marker) still ends the walk with an `Err`.
pub struct LenientEntryIter<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> LenientEntryIter<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        LenientEntryIter {
            buf,
            pos: 0,
            failed: false,
        }
    }
}

impl<'a> Iterator for LenientEntryIter<'a> {
    type Item = Result<LenientEntry<'a>, EntryError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let start = self.pos;
        let end = match skip_value(self.buf, start) {
            Ok(end) => end,
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        };
        self.pos = end;
        // Parse within the value's own extent: any error now is a shape error.
        match parse_entry(&self.buf[..end], start) {
            Ok((entry, entry_end)) if entry_end == end => Some(Ok(LenientEntry::Valid(entry))),
            Ok(_) => Some(Ok(LenientEntry::Invalid {
                offset: start,
                error: EntryError::NotAnEntry(start),
            })),
            Err(error) => Some(Ok(LenientEntry::Invalid {
                offset: start,
                error,
            })),
        }
    }
}

/// Append `key: value` (both strings) to the record of every entry, rewriting only each
/// record's map header and appending the pair; times and record bodies are copied as they are.
pub fn append_field_to_records(buf: &[u8], key: &str, value: &str) -> Result<Bytes, EntryError> {
    let mut out = BytesMut::with_capacity(buf.len() + 16 + 8 * (key.len() + value.len()));
    for e in EntryIter::new(buf) {
        let e = e?;
        let record_offset = e.raw.len() - e.record.len();
        out.extend_from_slice(&e.raw[..record_offset]);
        let (pairs, header_len) = map_header(e.record)?;
        write_map_header(&mut out, pairs + 1);
        out.extend_from_slice(&e.record[header_len..]);
        write_str(&mut out, key);
        write_str(&mut out, value);
    }
    Ok(out.freeze())
}

/// Number of pairs and header length of the map at the start of `record`.
fn map_header(record: &[u8]) -> Result<(u32, usize), EntryError> {
    let m = *record.first().ok_or(EntryError::Truncated(0))?;
    match m {
        0x80..=0x8f => Ok(((m & 0x0f) as u32, 1)),
        0xde => Ok((be(record, 1, 2)? as u32, 3)),
        0xdf => Ok((be(record, 1, 4)? as u32, 5)),
        _ => Err(EntryError::RecordNotMap(0)),
    }
}

/// Append a msgpack map header for `pairs` pairs (smallest encoding).
pub fn write_map_header(out: &mut BytesMut, pairs: u32) {
    if pairs < 16 {
        out.put_u8(0x80 | pairs as u8);
    } else if pairs <= u16::MAX as u32 {
        out.put_u8(0xde);
        out.put_u16(pairs as u16);
    } else {
        out.put_u8(0xdf);
        out.put_u32(pairs);
    }
}

/// Append a msgpack str (smallest encoding).
pub fn write_str(out: &mut BytesMut, s: &str) {
    write_str_bytes(out, s.as_bytes());
}

/// Append bytes as a msgpack str (smallest encoding); the bytes are not checked for UTF-8.
pub fn write_str_bytes(out: &mut BytesMut, s: &[u8]) {
    let n = s.len();
    if n < 32 {
        out.put_u8(0xa0 | n as u8);
    } else if n <= u8::MAX as usize {
        out.put_u8(0xd9);
        out.put_u8(n as u8);
    } else if n <= u16::MAX as usize {
        out.put_u8(0xda);
        out.put_u16(n as u16);
    } else {
        out.put_u8(0xdb);
        out.put_u32(n as u32);
    }
    out.extend_from_slice(s);
}

/// Summary of a validated entry stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntriesInfo {
    pub count: u32,
    /// True when at least one entry has time 0/nil and must be rewritten with "now".
    pub has_zero_time: bool,
}

/// Validate a whole entry stream: every entry is `[time, map]`; returns the count.
pub fn validate_entries(buf: &[u8]) -> Result<EntriesInfo, EntryError> {
    let mut info = EntriesInfo {
        count: 0,
        has_zero_time: false,
    };
    for e in EntryIter::new(buf) {
        let e = e?;
        info.count += 1;
        info.has_zero_time |= e.time.is_zero();
    }
    Ok(info)
}

/// Rebuild an entry stream, replacing zero/nil times with `now` (the rare slow path).
pub fn fill_zero_times(buf: &[u8], now: EventTime) -> Result<Bytes, EntryError> {
    let mut out = BytesMut::with_capacity(buf.len() + 64);
    for e in EntryIter::new(buf) {
        let e = e?;
        let t = if e.time.is_zero() { now } else { e.time };
        write_entry(&mut out, t, e.record);
    }
    Ok(out.freeze())
}

/// Append one `[time, record]` entry whose record is already msgpack-encoded.
pub fn write_entry(out: &mut BytesMut, time: EventTime, record: &[u8]) {
    out.reserve(11 + record.len());
    out.put_u8(0x92);
    time.write_msgpack(out);
    out.extend_from_slice(record);
}

fn parse_entry(buf: &[u8], start: usize) -> Result<(EntryRef<'_>, usize), EntryError> {
    let mut pos = start;
    let (n, p) = array_len(buf, pos)?.ok_or(EntryError::NotAnEntry(start))?;
    if n != 2 {
        return Err(EntryError::NotAnEntry(start));
    }
    pos = p;
    // Fluent Bit 2.x may send `[[time, metadata], record]`: take the time from the inner array.
    let (time, p) = match array_len(buf, pos)? {
        Some((2, inner)) => {
            let (t, after_time) = parse_time(buf, inner, start)?;
            let after_meta = skip_value(buf, after_time)?;
            (t, after_meta)
        }
        Some(_) => return Err(EntryError::BadTime(start)),
        None => parse_time(buf, pos, start)?,
    };
    pos = p;
    let record_start = pos;
    if !is_map_marker(*buf.get(pos).ok_or(EntryError::Truncated(pos))?) {
        return Err(EntryError::RecordNotMap(start));
    }
    let end = skip_value(buf, pos)?;
    Ok((
        EntryRef {
            time,
            raw: &buf[start..end],
            record: &buf[record_start..end],
        },
        end,
    ))
}

fn is_map_marker(m: u8) -> bool {
    (0x80..=0x8f).contains(&m) || m == 0xde || m == 0xdf
}

/// If the value at `pos` is an array, its length and the position of its first element.
fn array_len(buf: &[u8], pos: usize) -> Result<Option<(u32, usize)>, EntryError> {
    let m = *buf.get(pos).ok_or(EntryError::Truncated(pos))?;
    Ok(match m {
        0x90..=0x9f => Some(((m & 0x0f) as u32, pos + 1)),
        0xdc => Some((be(buf, pos + 1, 2)? as u32, pos + 3)),
        0xdd => Some((be(buf, pos + 1, 4)? as u32, pos + 5)),
        _ => None,
    })
}

fn parse_time(buf: &[u8], pos: usize, entry: usize) -> Result<(EventTime, usize), EntryError> {
    let m = *buf.get(pos).ok_or(EntryError::Truncated(pos))?;
    let int_time = |v: i128| -> Result<EventTime, EntryError> {
        if !(0..=u32::MAX as i128).contains(&v) {
            return Err(EntryError::BadTime(entry));
        }
        Ok(EventTime {
            secs: v as u32,
            nanos: 0,
        })
    };
    match m {
        0xc0 => Ok((EventTime::default(), pos + 1)),
        0x00..=0x7f => Ok((int_time(m as i128)?, pos + 1)),
        0xe0..=0xff => Err(EntryError::BadTime(entry)),
        0xcc => Ok((int_time(be(buf, pos + 1, 1)? as i128)?, pos + 2)),
        0xcd => Ok((int_time(be(buf, pos + 1, 2)? as i128)?, pos + 3)),
        0xce => Ok((int_time(be(buf, pos + 1, 4)? as i128)?, pos + 5)),
        0xcf => Ok((int_time(be(buf, pos + 1, 8)? as i128)?, pos + 9)),
        0xd0 => Ok((int_time(be(buf, pos + 1, 1)? as i8 as i128)?, pos + 2)),
        0xd1 => Ok((int_time(be(buf, pos + 1, 2)? as i16 as i128)?, pos + 3)),
        0xd2 => Ok((int_time(be(buf, pos + 1, 4)? as i32 as i128)?, pos + 5)),
        0xd3 => Ok((int_time(be(buf, pos + 1, 8)? as i64 as i128)?, pos + 9)),
        0xca => {
            let f = f32::from_bits(be(buf, pos + 1, 4)? as u32) as f64;
            Ok((float_time(f, entry)?, pos + 5))
        }
        0xcb => {
            let f = f64::from_bits(be(buf, pos + 1, 8)?);
            Ok((float_time(f, entry)?, pos + 9))
        }
        // fixext8 type 0
        0xd7 => {
            if *buf.get(pos + 1).ok_or(EntryError::Truncated(pos + 1))? != 0 {
                return Err(EntryError::BadTime(entry));
            }
            Ok((ext_time(buf, pos + 2)?, pos + 10))
        }
        // ext8 len 8 type 0
        0xc7 => {
            if be(buf, pos + 1, 1)? != 8 || be(buf, pos + 2, 1)? != 0 {
                return Err(EntryError::BadTime(entry));
            }
            Ok((ext_time(buf, pos + 3)?, pos + 11))
        }
        _ => Err(EntryError::BadTime(entry)),
    }
}

fn float_time(f: f64, entry: usize) -> Result<EventTime, EntryError> {
    if !f.is_finite() || f < 0.0 || f > u32::MAX as f64 {
        return Err(EntryError::BadTime(entry));
    }
    Ok(EventTime::from_f64(f))
}

fn ext_time(buf: &[u8], pos: usize) -> Result<EventTime, EntryError> {
    let secs = be(buf, pos, 4)? as u32;
    let nanos = be(buf, pos + 4, 4)? as u32;
    Ok(EventTime { secs, nanos })
}

/// Read `n` (1..=8) big-endian bytes at `pos`.
fn be(buf: &[u8], pos: usize, n: usize) -> Result<u64, EntryError> {
    let end = pos.checked_add(n).ok_or(EntryError::Truncated(pos))?;
    let s = buf.get(pos..end).ok_or(EntryError::Truncated(pos))?;
    Ok(s.iter().fold(0u64, |acc, b| (acc << 8) | *b as u64))
}

/// Skip one complete msgpack value starting at `pos`; returns the position after it.
///
/// Iterative (no recursion), so deeply nested input cannot overflow the stack.
pub fn skip_value(buf: &[u8], mut pos: usize) -> Result<usize, EntryError> {
    let mut pending: u64 = 1;
    while pending > 0 {
        pending -= 1;
        let m = *buf.get(pos).ok_or(EntryError::Truncated(pos))?;
        let (header, body, children): (usize, u64, u64) = match m {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (1, 0, 0),
            0x80..=0x8f => (1, 0, 2 * (m & 0x0f) as u64),
            0x90..=0x9f => (1, 0, (m & 0x0f) as u64),
            0xa0..=0xbf => (1, (m & 0x1f) as u64, 0),
            0xc4 | 0xd9 => (2, be(buf, pos + 1, 1)?, 0),
            0xc5 | 0xda => (3, be(buf, pos + 1, 2)?, 0),
            0xc6 | 0xdb => (5, be(buf, pos + 1, 4)?, 0),
            0xc7 => (3, be(buf, pos + 1, 1)?, 0),
            0xc8 => (4, be(buf, pos + 1, 2)?, 0),
            0xc9 => (6, be(buf, pos + 1, 4)?, 0),
            0xca => (5, 0, 0),
            0xcb => (9, 0, 0),
            0xcc | 0xd0 => (2, 0, 0),
            0xcd | 0xd1 => (3, 0, 0),
            0xce | 0xd2 => (5, 0, 0),
            0xcf | 0xd3 => (9, 0, 0),
            0xd4 => (3, 0, 0),
            0xd5 => (4, 0, 0),
            0xd6 => (6, 0, 0),
            0xd7 => (10, 0, 0),
            0xd8 => (18, 0, 0),
            0xdc => (3, 0, be(buf, pos + 1, 2)?),
            0xdd => (5, 0, be(buf, pos + 1, 4)?),
            0xde => (3, 0, 2 * be(buf, pos + 1, 2)?),
            0xdf => (5, 0, 2 * be(buf, pos + 1, 4)?),
            0xc1 => {
                return Err(EntryError::BadMarker {
                    marker: m,
                    offset: pos,
                })
            }
        };
        let next = (pos as u64)
            .checked_add(header as u64 + body)
            .ok_or(EntryError::Truncated(pos))?;
        if next > buf.len() as u64 {
            return Err(EntryError::Truncated(pos));
        }
        pos = next as usize;
        pending += children;
        // Every pending value needs at least one byte: reject absurd counts early.
        if pending > (buf.len() - pos) as u64 {
            return Err(EntryError::Truncated(pos));
        }
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(t: EventTime, rec: &serde_json::Value) -> Vec<u8> {
        let mut b = BytesMut::new();
        write_entry(&mut b, t, &rmp_serde::to_vec_named(rec).unwrap());
        b.to_vec()
    }

    #[test]
    fn walks_entries_and_counts() {
        let t = EventTime {
            secs: 1_700_000_000,
            nanos: 5,
        };
        let mut s = entry(t, &serde_json::json!({"a": 1, "b": [1, 2, {"c": "x"}]}));
        s.extend(entry(t, &serde_json::json!({})));
        let info = validate_entries(&s).unwrap();
        assert_eq!(info.count, 2);
        assert!(!info.has_zero_time);
        let first = EntryIter::new(&s).next().unwrap().unwrap();
        assert_eq!(first.time, t);
    }

    #[test]
    fn accepts_int_float_ext8_and_nested_times() {
        let rec = rmp_serde::to_vec_named(&serde_json::json!({"k": "v"})).unwrap();
        let mut s = vec![0x92, 0xce, 0x65, 0x53, 0xf1, 0x00];
        s.extend(&rec);
        s.extend([0x92, 0xcb]);
        s.extend(1.5f64.to_bits().to_be_bytes());
        s.extend(&rec);
        s.extend([0x92, 0xc7, 8, 0, 0, 0, 0, 9, 0, 0, 0, 1]);
        s.extend(&rec);
        s.extend([0x92, 0x92, 0xd7, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0x80]);
        s.extend(&rec);
        let times: Vec<_> = EntryIter::new(&s).map(|e| e.unwrap().time).collect();
        assert_eq!(times[0].secs, 0x6553f100);
        assert_eq!(
            times[1],
            EventTime {
                secs: 1,
                nanos: 500_000_000
            }
        );
        assert_eq!(times[2], EventTime { secs: 9, nanos: 1 });
        assert_eq!(times[3].secs, 7);
    }

    #[test]
    fn zero_time_is_flagged_and_filled() {
        let s = entry(EventTime::default(), &serde_json::json!({"a": 1}));
        assert!(validate_entries(&s).unwrap().has_zero_time);
        let now = EventTime { secs: 42, nanos: 0 };
        let filled = fill_zero_times(&s, now).unwrap();
        assert_eq!(EntryIter::new(&filled).next().unwrap().unwrap().time, now);
    }

    #[test]
    fn rejects_bad_shapes() {
        assert!(validate_entries(&[0x92, 0x01]).is_err());
        assert!(validate_entries(&[0x91, 0x01]).is_err());
        assert!(validate_entries(&[0x92, 0x01, 0x01]).is_err());
        assert!(validate_entries(&[0x92, 0xc1, 0x80]).is_err());
        // map claiming 2^32-1 pairs in a tiny buffer
        assert!(validate_entries(&[0x92, 0x01, 0xdf, 0xff, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn lenient_walk_steps_over_bad_shapes() {
        let t = EventTime { secs: 7, nanos: 0 };
        let mut s = entry(t, &serde_json::json!({"a": 1}));
        s.extend([0x92, 0xa1, b'x', 0x80]); // time is a string
        s.extend([0x92, 0x01, 0x02]); // record is not a map
        s.extend([0x93, 0x01, 0x80, 0x80]); // three elements
        s.extend(entry(t, &serde_json::json!({"b": 2})));
        let items: Vec<_> = LenientEntryIter::new(&s).map(|i| i.unwrap()).collect();
        assert_eq!(items.len(), 5);
        assert!(matches!(items[0], LenientEntry::Valid(_)));
        assert!(matches!(
            items[1],
            LenientEntry::Invalid {
                error: EntryError::BadTime(_),
                ..
            }
        ));
        assert!(matches!(
            items[2],
            LenientEntry::Invalid {
                error: EntryError::RecordNotMap(_),
                ..
            }
        ));
        assert!(matches!(
            items[3],
            LenientEntry::Invalid {
                error: EntryError::NotAnEntry(_),
                ..
            }
        ));
        assert!(matches!(items[4], LenientEntry::Valid(_)));
        // structurally broken: truncated map
        let broken = [0x92, 0x01, 0x81, 0xa1];
        let last = LenientEntryIter::new(&broken).last().unwrap();
        assert!(last.is_err());
    }

    #[test]
    fn appends_field_to_every_record() {
        let t = EventTime { secs: 9, nanos: 3 };
        let mut big = serde_json::Map::new();
        for i in 0..20 {
            big.insert(format!("k{i}"), serde_json::json!(i));
        }
        let mut s = entry(t, &serde_json::json!({"a": 1}));
        s.extend(entry(t, &serde_json::Value::Object(big)));
        let out = append_field_to_records(&s, "host", "10.0.0.1").unwrap();
        let recs: Vec<serde_json::Value> = EntryIter::new(&out)
            .map(|e| {
                let e = e.unwrap();
                assert_eq!(e.time, t);
                rmp_serde::from_slice(e.record).unwrap()
            })
            .collect();
        assert_eq!(recs[0], serde_json::json!({"a": 1, "host": "10.0.0.1"}));
        assert_eq!(recs[1]["host"], "10.0.0.1");
        assert_eq!(recs[1]["k19"], 19);
        assert_eq!(recs[1].as_object().unwrap().len(), 21);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_garbage(data in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = validate_entries(&data);
        }
    }
}
