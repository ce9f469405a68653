//! Events as they travel through lograft: a tag plus entries kept as msgpack bytes.
//!
//! Owns [`EventTime`], [`EventBatch`] and the zero-copy walk over a PackedForward entry stream
//! ([`EntryIter`]). Entries are never decoded into records on the hot path: the walker only
//! checks structure and finds boundaries. This module must not do I/O or know about protocols
//! beyond the msgpack shape of one entry (`[time, record]`).

use crate::msgpack::{self, Cursor, MsgpackError};
use crate::origin::Segment;
use bytes::{BufMut, Bytes, BytesMut};
use std::ops::Range;
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

    /// Seconds since the epoch as a float, if finite and within `0..=u32::MAX` (unlike
    /// [`EventTime::from_f64`], which clamps).
    pub fn try_from_f64(t: f64) -> Option<Self> {
        (t.is_finite() && (0.0..=u32::MAX as f64).contains(&t)).then(|| EventTime::from_f64(t))
    }

    /// The EventTime ext's 8 data bytes (big-endian seconds, then nanoseconds).
    pub fn from_ext_data(data: &[u8]) -> Option<Self> {
        let data: &[u8; 8] = data.try_into().ok()?;
        Some(EventTime {
            secs: u32::from_be_bytes([data[0], data[1], data[2], data[3]]),
            nanos: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
        })
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
    /// Where the entries came from, when a forwarder sent them: runs of entries, each with the
    /// id of the client chunk it came from (see [`crate::origin`]), covering all entries in
    /// order. Empty: the whole batch is one run, labelled with `origin_chunk` if there is one.
    pub segments: Vec<Segment>,
}

impl EventBatch {
    /// The batch's runs with their origin ids: `segments`, or one run labelled with
    /// [`crate::origin::label`] of `origin_chunk`. Always covers every entry.
    pub fn origin_segments(&self) -> Vec<Segment> {
        if !self.segments.is_empty() {
            return self.segments.clone();
        }
        vec![Segment {
            origin: self.origin_chunk.as_ref().map(crate::origin::label),
            len: self.entries.len(),
            count: self.count,
        }]
    }
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

impl From<MsgpackError> for EntryError {
    fn from(e: MsgpackError) -> Self {
        match e {
            MsgpackError::Truncated(at) => EntryError::Truncated(at),
            MsgpackError::BadMarker { marker, offset } => EntryError::BadMarker { marker, offset },
        }
    }
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
    /// Non-empty maps and arrays in the record (the record included): a bound on its nesting.
    pub containers: u64,
}

impl EntryRef<'_> {
    /// Whether the record is nested deeper than [`crate::record_depth::MAX_RECORD_DEPTH`]
    /// allows; exact, but walks the record only when its container count makes it possible.
    pub fn too_deep(&self) -> bool {
        crate::record_depth::could_be_too_deep(self.containers)
            && crate::record_depth::record_too_deep(self.record)
    }
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
    /// A complete msgpack value that is not a valid entry (bad time, record not a map, wrong
    /// array length); the error names its offset.
    Invalid {
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
        let end = match msgpack::skip_value(self.buf, start) {
            Ok(end) => end,
            Err(e) => {
                self.failed = true;
                return Some(Err(e.into()));
            }
        };
        self.pos = end;
        // Parse within the value's own extent: any error now is a shape error.
        match parse_entry(&self.buf[..end], start) {
            Ok((entry, entry_end)) if entry_end == end => Some(Ok(LenientEntry::Valid(entry))),
            Ok(_) => Some(Ok(LenientEntry::Invalid {
                error: EntryError::NotAnEntry(start),
            })),
            Err(error) => Some(Ok(LenientEntry::Invalid { error })),
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
        let mut record = Cursor::new(e.record);
        let pairs = record.map_len()?.ok_or(EntryError::RecordNotMap(0))?;
        msgpack::write_map_header(&mut out, pairs + 1);
        out.extend_from_slice(&e.record[record.pos()..]);
        msgpack::write_str(&mut out, key);
        msgpack::write_str(&mut out, value);
    }
    Ok(out.freeze())
}

/// Summary of a validated entry stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntriesInfo {
    pub count: u32,
    /// True when at least one entry has time 0/nil and must be rewritten with "now".
    pub has_zero_time: bool,
}

/// Validate a whole entry stream: every entry is `[time, map]`; returns the count. (The
/// inputs validate with `forward::frame`'s walk, which also checks record depth.)
#[cfg(test)]
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

/// Cut an entry stream into consecutive runs of whole entries of at most `max_bytes` each
/// (an entry larger than `max_bytes` is a run of its own), without copying: each run is a
/// byte range of `entries` with its entry count. The cut depends only on the bytes and the
/// limit, so every node that cuts the same chunk gets the same runs (out_forward's frames, the
/// cluster's log entries).
pub fn entry_runs(
    entries: &[u8],
    max_bytes: usize,
) -> Result<Vec<(Range<usize>, u32)>, EntryError> {
    let mut runs = Vec::new();
    let (mut run, mut count) = (0..0, 0u32);
    for e in EntryIter::new(entries) {
        let len = e?.raw.len();
        if count > 0 && run.len() + len > max_bytes {
            runs.push((run.clone(), count));
            (run, count) = (run.end..run.end, 0);
        }
        run.end += len;
        count += 1;
    }
    if count > 0 {
        runs.push((run, count));
    }
    Ok(runs)
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
    msgpack::write_array_header(out, 2);
    time.write_msgpack(out);
    out.extend_from_slice(record);
}

fn parse_entry(buf: &[u8], start: usize) -> Result<(EntryRef<'_>, usize), EntryError> {
    let mut c = Cursor::at(buf, start);
    if c.array_len()? != Some(2) {
        return Err(EntryError::NotAnEntry(start));
    }
    // Fluent Bit 2.x may send `[[time, metadata], record]`: take the time from the inner array.
    let time = match c.array_len()? {
        Some(2) => {
            let t = parse_time(&mut c, start)?;
            c.skip()?;
            t
        }
        Some(_) => return Err(EntryError::BadTime(start)),
        None => parse_time(&mut c, start)?,
    };
    let record_start = c.pos();
    if !msgpack::is_map(c.peek()?) {
        return Err(EntryError::RecordNotMap(start));
    }
    let (end, containers) = msgpack::skip_value_counting(buf, record_start)?;
    Ok((
        EntryRef {
            time,
            raw: &buf[start..end],
            record: &buf[record_start..end],
            containers,
        },
        end,
    ))
}

/// The event time at the cursor: nil, a non-negative int, a float, or the EventTime ext
/// (fixext 8 or ext 8 with 8 bytes, type 0). `entry` is the entry's offset, for errors.
fn parse_time(c: &mut Cursor<'_>, entry: usize) -> Result<EventTime, EntryError> {
    let bad = EntryError::BadTime(entry);
    if c.nil()? {
        return Ok(EventTime::default());
    }
    if let Some(v) = c.uint()? {
        let secs = u32::try_from(v).map_err(|_| bad.clone())?;
        return Ok(EventTime { secs, nanos: 0 });
    }
    if let Some(f) = c.float()? {
        return EventTime::try_from_f64(f).ok_or(bad);
    }
    if !matches!(c.peek()?, 0xd7 | 0xc7) {
        return Err(bad);
    }
    match c.ext_header()? {
        Some((0, 8)) => {
            let secs = c.bytes(4)?;
            let nanos = c.bytes(4)?;
            Ok(EventTime {
                secs: u32::from_be_bytes(secs.try_into().expect("4 bytes")),
                nanos: u32::from_be_bytes(nanos.try_into().expect("4 bytes")),
            })
        }
        _ => Err(bad),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn entry_runs_cut_on_entry_boundaries_within_the_limit() {
        let mut buf = BytesMut::new();
        for n in 0..10u32 {
            let mut rec = BytesMut::new();
            crate::msgpack::write_map_header(&mut rec, 1);
            crate::msgpack::write_str(&mut rec, "n");
            crate::msgpack::write_str(&mut rec, &"x".repeat(n as usize * 10));
            write_entry(&mut buf, EventTime::from_f64(1.0), &rec);
        }
        let all = buf.freeze();
        for limit in [1, 50, 100, 333, all.len(), usize::MAX] {
            let parts: Vec<_> = entry_runs(&all, limit)
                .unwrap()
                .into_iter()
                .map(|(r, c)| (all.slice(r), c))
                .collect();
            let joined: Vec<u8> = parts.iter().flat_map(|(p, _)| p.to_vec()).collect();
            assert_eq!(joined, all.to_vec(), "limit {limit}");
            assert_eq!(parts.iter().map(|(_, c)| c).sum::<u32>(), 10);
            for (p, c) in &parts {
                assert_eq!(validate_entries(p).unwrap().count, *c);
                assert!(
                    p.len() <= limit || *c == 1,
                    "limit {limit}: {} bytes",
                    p.len()
                );
            }
        }
        assert_eq!(entry_runs(&all, usize::MAX).unwrap().len(), 1);
        assert!(entry_runs(&[], 10).unwrap().is_empty());
    }
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
