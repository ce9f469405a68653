//! The on-disk format of one file-buffer chunk: encoding its header and appends, and scanning a
//! chunk file back (for resume and for handing a chunk out).
//!
//! This module only turns bytes into structure and back; it does no I/O, knows nothing about
//! queues or scheduling, and never decides what to do with a damaged file (the caller repairs,
//! quarantines or deletes).
//!
//! # File name
//!
//! One file per chunk, directly in the buffer directory: `buffer.<32 hex digits of the chunk
//! id>.log` (Fluentd-like, so operators recognise it; the id never changes, so neither does the
//! name). Files that were moved aside live in `<dir>/quarantine/` under the same name.
//!
//! # Layout (all integers little-endian)
//!
//! Header, written once when the file is created:
//!
//! ```text
//! offset size  field
//!      0    8  magic "LGRFTBUF"
//!      8    2  format version (1)
//!     10    2  flags: bit 0 = the chunk has a timekey
//!     12   16  chunk id (128 bits)
//!     28    8  created, i64 nanoseconds since the Unix epoch
//!     36    8  timekey bucket start, i64 Unix seconds (0 when flag bit 0 is clear)
//!     44    4  tag length n (u32)
//!     48    n  tag, UTF-8 (for chunks not keyed by tag: the tag of the batch that opened it)
//!   48+n    4  crc32c of bytes [0, 48+n)
//! ```
//!
//! Then zero or more appends, back to back, one per `append` piece that reached this chunk:
//!
//! ```text
//!      0    4  len: entries bytes (u32)
//!      4    4  record count (u32, > 0)
//!      8    4  crc32c over bytes [0, 8) of this append, continued over the entries
//!     12  len  entries: concatenated msgpack `[time, record]` arrays
//! ```
//!
//! A *marked* append (bit 31 of the record count set; the count is the low 31 bits) carries,
//! after its entries and inside the same length and checksum, a source position that commits
//! together with the entries (see [`crate::pipeline::SourceMark`]):
//!
//! ```text
//!      0  len-k-12  entries
//!      .         8  position (u64)
//!      .         k  key, UTF-8
//!  len-4         4  k + 8 (u32)
//! ```
//!
//! Because the position is inside the append's checksum, it is durable exactly when the
//! entries are: a torn append loses both, a whole one keeps both.
//!
//! An append *with an origin* (bit 30 of the record count set) carries the origin id of its
//! entries (see [`crate::origin`]) the same way, after the entries and before a mark if it has
//! both:
//!
//! ```text
//!      .         m  origin id
//!      .         4  m (u32)
//! ```
//!
//! The entries of the chunk are the concatenation of its appends' entries: a PackedForward
//! entry stream. A file is only ever extended by whole appends and, after a failed write, cut
//! back to the end of the last acknowledged append.
//!
//! # Damage
//!
//! [`scan`] classifies a file as follows: a header that is short, has the wrong magic, version
//! or checksum is [`ScanError::BadHeader`]; a last append that is incomplete, or whose checksum
//! fails while it reaches exactly to the end of the file (or everything from it to the end is
//! zero bytes, as a crash can leave behind) is a *torn tail*, reported in
//! [`ScannedChunk::torn_tail`] with the length to cut back to; a checksum failure with valid
//! data after it is [`ScanError::Corrupt`].

use super::ChunkId;
use crate::origin::Segment;
use bytes::Bytes;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// First bytes of every chunk file.
pub const MAGIC: [u8; 8] = *b"LGRFTBUF";
/// The only format version written and read.
pub const VERSION: u16 = 1;
/// Size of the fixed part of the header (before the tag).
const HEADER_FIXED_LEN: usize = 48;
/// Size of an append's header: `[len][record count][crc32c]`.
pub const APPEND_HEADER_LEN: usize = 12;
/// The largest entries payload one append can carry (its length field is a u32).
pub const MAX_APPEND_LEN: u64 = u32::MAX as u64;

const FLAG_TIMEKEY: u16 = 1;
/// Bit 31 of an append's record count: the append carries a source position after its entries.
pub const MARKED_APPEND: u32 = 1 << 31;
/// Bit 30 of an append's record count: the append carries its entries' origin id.
pub const ORIGIN_APPEND: u32 = 1 << 30;
/// The record-count bits of an append's count field.
const RECORDS_MASK: u32 = !(MARKED_APPEND | ORIGIN_APPEND);

/// What a chunk file says about its chunk, besides the entries.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkHeader {
    pub id: ChunkId,
    pub tag: String,
    pub timekey: Option<i64>,
    pub created: SystemTime,
}

impl ChunkHeader {
    /// The header bytes as written at the start of the file.
    pub fn encode(&self) -> Vec<u8> {
        let tag = self.tag.as_bytes();
        let mut out = Vec::with_capacity(HEADER_FIXED_LEN + tag.len() + 4);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        let flags = if self.timekey.is_some() {
            FLAG_TIMEKEY
        } else {
            0
        };
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&self.id.0);
        out.extend_from_slice(&system_time_to_nanos(self.created).to_le_bytes());
        out.extend_from_slice(&self.timekey.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&(tag.len() as u32).to_le_bytes());
        out.extend_from_slice(tag);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decode a header from the start of `buf`; returns it and its length in bytes.
    pub fn decode(buf: &[u8]) -> Result<(ChunkHeader, usize), String> {
        if buf.len() < HEADER_FIXED_LEN {
            return Err(format!("file too short for a header ({} bytes)", buf.len()));
        }
        if buf[0..8] != MAGIC {
            return Err("not a lograft chunk (bad magic)".to_string());
        }
        let version = u16::from_le_bytes([buf[8], buf[9]]);
        if version != VERSION {
            return Err(format!("unsupported chunk format version {version}"));
        }
        let flags = u16::from_le_bytes([buf[10], buf[11]]);
        let id = ChunkId(buf[12..28].try_into().expect("16 bytes"));
        let created = i64::from_le_bytes(buf[28..36].try_into().expect("8 bytes"));
        let timekey = i64::from_le_bytes(buf[36..44].try_into().expect("8 bytes"));
        let tag_len = u32::from_le_bytes(buf[44..48].try_into().expect("4 bytes")) as usize;
        let header_len = HEADER_FIXED_LEN
            .checked_add(tag_len)
            .and_then(|n| n.checked_add(4))
            .ok_or_else(|| "header tag length overflows".to_string())?;
        if buf.len() < header_len {
            return Err(format!(
                "header claims a {tag_len}-byte tag but the file has {} bytes",
                buf.len()
            ));
        }
        let stored_crc =
            u32::from_le_bytes(buf[header_len - 4..header_len].try_into().expect("4 bytes"));
        if crc32c::crc32c(&buf[..header_len - 4]) != stored_crc {
            return Err("header checksum mismatch".to_string());
        }
        let tag = std::str::from_utf8(&buf[HEADER_FIXED_LEN..header_len - 4])
            .map_err(|_| "header tag is not UTF-8".to_string())?
            .to_string();
        Ok((
            ChunkHeader {
                id,
                tag,
                timekey: (flags & FLAG_TIMEKEY != 0).then_some(timekey),
                created: nanos_to_system_time(created),
            },
            header_len,
        ))
    }
}

/// The 12-byte header of one append carrying `entries` with `records` entries.
pub fn append_header(entries: &[u8], records: u32) -> [u8; APPEND_HEADER_LEN] {
    let mut head = [0u8; APPEND_HEADER_LEN];
    head[0..4].copy_from_slice(&(entries.len() as u32).to_le_bytes());
    head[4..8].copy_from_slice(&records.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&head[0..8]), entries);
    head[8..12].copy_from_slice(&crc.to_le_bytes());
    head
}

/// The trailer of a marked append (position, key, their length), placed after the entries.
pub fn mark_trailer(key: &str, position: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 12);
    out.extend_from_slice(&position.to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(&((key.len() + 8) as u32).to_le_bytes());
    out
}

/// The trailer of an append with an origin (see the module doc): the id and its length, then
/// the mark's trailer if the append has one too.
pub fn origin_trailer(origin: &[u8], mark: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(origin.len() + 4 + mark.map_or(0, <[u8]>::len));
    out.extend_from_slice(origin);
    out.extend_from_slice(&(origin.len() as u32).to_le_bytes());
    out.extend_from_slice(mark.unwrap_or_default());
    out
}

/// The 12-byte header of an append with a trailer: `entries` (with `records` entries) then
/// `trailer` (from [`mark_trailer`] and/or [`origin_trailer`], said by `flags`:
/// [`MARKED_APPEND`], [`ORIGIN_APPEND`]), one length and one checksum over both.
pub fn trailed_append_header(
    entries: &[u8],
    trailer: &[u8],
    records: u32,
    flags: u32,
) -> [u8; APPEND_HEADER_LEN] {
    let mut head = [0u8; APPEND_HEADER_LEN];
    head[0..4].copy_from_slice(&((entries.len() + trailer.len()) as u32).to_le_bytes());
    head[4..8].copy_from_slice(&(records | flags).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&head[0..8]), entries);
    let crc = crc32c::crc32c_append(crc, trailer);
    head[8..12].copy_from_slice(&crc.to_le_bytes());
    head
}

/// The 12-byte header of a marked append (see [`trailed_append_header`]).
#[cfg(test)]
pub fn marked_append_header(
    entries: &[u8],
    trailer: &[u8],
    records: u32,
) -> [u8; APPEND_HEADER_LEN] {
    trailed_append_header(entries, trailer, records, MARKED_APPEND)
}

/// Split the origin id off the end of an append's payload: (entries length, id range).
fn split_origin(payload: &[u8]) -> Result<(usize, std::ops::Range<usize>), String> {
    let n = payload.len();
    if n < 4 {
        return Err(format!("append with an origin of {n} bytes is too short"));
    }
    let m = u32::from_le_bytes(payload[n - 4..].try_into().expect("4 bytes")) as usize;
    if m == 0 || m > crate::origin::MAX_ORIGIN_LEN || m + 4 > n {
        return Err(format!("impossible origin length {m} in a {n}-byte append"));
    }
    Ok((n - 4 - m, n - 4 - m..n - 4))
}

/// Split a marked append's payload into (entries length, key, position).
fn split_marked(payload: &[u8]) -> Result<(usize, String, u64), String> {
    let n = payload.len();
    if n < 12 {
        return Err(format!("marked append of {n} bytes is too short"));
    }
    let k = u32::from_le_bytes(payload[n - 4..].try_into().expect("4 bytes")) as usize;
    if k < 8 || k + 4 > n {
        return Err(format!("impossible mark length {k} in a {n}-byte append"));
    }
    let start = n - 4 - k;
    let position = u64::from_le_bytes(payload[start..start + 8].try_into().expect("8 bytes"));
    let key = std::str::from_utf8(&payload[start + 8..n - 4])
        .map_err(|_| "mark key is not UTF-8".to_string())?
        .to_string();
    Ok((start, key, position))
}

/// The file name of a chunk: `buffer.<hex id>.log`.
pub fn file_name(id: ChunkId) -> String {
    format!("buffer.{}.log", id.to_hex())
}

/// True for names that look like chunk files (`buffer.*.log`).
pub fn is_chunk_file_name(name: &str) -> bool {
    name.starts_with("buffer.") && name.ends_with(".log") && name.len() > "buffer..log".len()
}

/// One valid append found in a chunk file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendSpan {
    /// Offset of the entries (after the append header) in the file.
    pub entries_offset: usize,
    pub len: usize,
    pub records: u32,
    /// Where the append's origin id is in the file, if it has one.
    pub origin: Option<(usize, usize)>,
}

/// A torn last append: where the valid part of the file ends and why the rest is not valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub valid_len: u64,
    pub reason: String,
}

/// A chunk file that scanned cleanly (possibly with a torn tail to cut off).
#[derive(Debug, Clone)]
pub struct ScannedChunk {
    pub header: ChunkHeader,
    pub appends: Vec<AppendSpan>,
    /// Source positions carried by marked appends, in file order: (key, position).
    pub marks: Vec<(String, u64)>,
    pub torn_tail: Option<TornTail>,
}

impl ScannedChunk {
    pub fn records(&self) -> u64 {
        self.appends.iter().map(|a| a.records as u64).sum()
    }

    pub fn entries_bytes(&self) -> u64 {
        self.appends.iter().map(|a| a.len as u64).sum()
    }
}

/// Why a chunk file cannot be used as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("bad header: {0}")]
    BadHeader(String),
    #[error("corrupt append at byte {offset}: {reason}")]
    Corrupt { offset: usize, reason: String },
}

/// Check a whole chunk file's bytes: header, then every append's length and checksum.
pub fn scan(buf: &[u8]) -> Result<ScannedChunk, ScanError> {
    let (header, header_len) = ChunkHeader::decode(buf).map_err(ScanError::BadHeader)?;
    let mut appends = Vec::new();
    let mut marks = Vec::new();
    let mut pos = header_len;
    let mut torn_tail = None;
    while pos < buf.len() {
        let torn = |reason: String| TornTail {
            valid_len: pos as u64,
            reason,
        };
        let remaining = buf.len() - pos;
        if remaining < APPEND_HEADER_LEN {
            torn_tail = Some(torn(format!(
                "{remaining} trailing bytes, less than an append header"
            )));
            break;
        }
        let head = &buf[pos..pos + APPEND_HEADER_LEN];
        let len = u32::from_le_bytes(head[0..4].try_into().expect("4 bytes")) as usize;
        let raw_records = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
        let records = raw_records & RECORDS_MASK;
        let stored_crc = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
        let entries_offset = pos + APPEND_HEADER_LEN;
        let end = entries_offset + len;
        if end > buf.len() {
            torn_tail = Some(torn(format!(
                "last append claims {len} bytes but only {} remain",
                buf.len() - entries_offset
            )));
            break;
        }
        let crc = crc32c::crc32c_append(crc32c::crc32c(&head[0..8]), &buf[entries_offset..end]);
        let mut entries_len = len;
        let mut mark = None;
        let mut origin = None;
        let mut problem = if crc != stored_crc {
            Some("checksum mismatch".to_string())
        } else {
            None
        };
        if problem.is_none() && raw_records & MARKED_APPEND != 0 {
            match split_marked(&buf[entries_offset..end]) {
                Ok((n, key, position)) => {
                    entries_len = n;
                    mark = Some((key, position));
                }
                Err(e) => problem = Some(e),
            }
        }
        if problem.is_none() && raw_records & ORIGIN_APPEND != 0 {
            match split_origin(&buf[entries_offset..entries_offset + entries_len]) {
                Ok((n, id)) => {
                    entries_len = n;
                    origin = Some((entries_offset + id.start, id.len()));
                }
                Err(e) => problem = Some(e),
            }
        }
        if problem.is_none() && (records == 0 || records as usize > entries_len) {
            problem = Some(format!(
                "impossible record count {records} for {entries_len} bytes"
            ));
        }
        if let Some(reason) = problem {
            if end == buf.len() || buf[pos..].iter().all(|b| *b == 0) {
                torn_tail = Some(torn(format!("last append: {reason}")));
                break;
            }
            return Err(ScanError::Corrupt {
                offset: pos,
                reason,
            });
        }
        appends.push(AppendSpan {
            entries_offset,
            len: entries_len,
            records,
            origin,
        });
        marks.extend(mark);
        pos = end;
    }
    Ok(ScannedChunk {
        header,
        appends,
        marks,
        torn_tail,
    })
}

/// The chunk's origin segments (see [`crate::origin`]): one per append with an origin,
/// consecutive appends without one merged. Empty when no append has an origin.
pub fn segments(buf: &[u8], scanned: &ScannedChunk) -> Vec<Segment> {
    if scanned.appends.iter().all(|a| a.origin.is_none()) {
        return Vec::new();
    }
    let mut out: Vec<Segment> = Vec::new();
    for a in &scanned.appends {
        let origin = a
            .origin
            .map(|(at, len)| Bytes::copy_from_slice(&buf[at..at + len]));
        crate::origin::push_run(&mut out, origin, a.len, a.records);
    }
    out
}

/// Turn a scanned file's bytes into its entry stream: the appends' entries, concatenated in
/// place (one allocation, the file's own buffer).
pub fn into_entries(mut buf: Vec<u8>, scanned: &ScannedChunk) -> Bytes {
    let mut write = 0usize;
    for span in &scanned.appends {
        buf.copy_within(span.entries_offset..span.entries_offset + span.len, write);
        write += span.len;
    }
    buf.truncate(write);
    Bytes::from(buf)
}

fn system_time_to_nanos(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

fn nanos_to_system_time(n: i64) -> SystemTime {
    if n >= 0 {
        UNIX_EPOCH + Duration::from_nanos(n as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(n.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> ChunkHeader {
        ChunkHeader {
            id: ChunkId([7; 16]),
            tag: "app.web".to_string(),
            timekey: Some(1_700_000_000),
            created: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789),
        }
    }

    fn file_with(appends: &[&[u8]]) -> Vec<u8> {
        let mut f = header().encode();
        for a in appends {
            f.extend_from_slice(&append_header(a, 1));
            f.extend_from_slice(a);
        }
        f
    }

    #[test]
    fn header_round_trips() {
        let h = header();
        let bytes = h.encode();
        let (back, len) = ChunkHeader::decode(&bytes).unwrap();
        assert_eq!(back, h);
        assert_eq!(len, bytes.len());
        let no_tk = ChunkHeader {
            timekey: None,
            ..header()
        };
        assert_eq!(ChunkHeader::decode(&no_tk.encode()).unwrap().0, no_tk);
    }

    #[test]
    fn header_damage_is_detected() {
        let mut bytes = header().encode();
        bytes[30] ^= 1;
        assert!(ChunkHeader::decode(&bytes).is_err());
        assert!(ChunkHeader::decode(&bytes[..20]).is_err());
        let mut wrong_magic = header().encode();
        wrong_magic[0] = b'X';
        assert!(matches!(scan(&wrong_magic), Err(ScanError::BadHeader(_))));
    }

    #[test]
    fn scan_concatenates_appends() {
        let f = file_with(&[b"abc", b"defgh"]);
        let s = scan(&f).unwrap();
        assert_eq!(s.appends.len(), 2);
        assert!(s.torn_tail.is_none());
        assert_eq!(s.records(), 2);
        assert_eq!(&into_entries(f, &s)[..], b"abcdefgh");
    }

    #[test]
    fn torn_tails_are_told_apart_from_corruption() {
        let good = file_with(&[b"abc"]);
        let full = file_with(&[b"abc", b"defgh"]);
        // incomplete last append
        let s = scan(&full[..full.len() - 2]).unwrap();
        assert_eq!(s.torn_tail.unwrap().valid_len, good.len() as u64);
        // half an append header
        let s = scan(&full[..good.len() + 5]).unwrap();
        assert_eq!(s.torn_tail.unwrap().valid_len, good.len() as u64);
        // bad checksum in the last append
        let mut last_bad = full.clone();
        *last_bad.last_mut().unwrap() ^= 0xff;
        let s = scan(&last_bad).unwrap();
        assert_eq!(s.appends.len(), 1);
        assert!(s.torn_tail.is_some());
        // zero-filled tail after the good part
        let mut zeros = good.clone();
        zeros.extend_from_slice(&[0u8; 40]);
        assert_eq!(
            scan(&zeros).unwrap().torn_tail.unwrap().valid_len,
            good.len() as u64
        );
        // bad checksum with a valid append after it
        let three = file_with(&[b"abc", b"defgh", b"ij"]);
        let mut middle_bad = three.clone();
        middle_bad[good.len() + APPEND_HEADER_LEN + 1] ^= 0x10;
        assert!(matches!(scan(&middle_bad), Err(ScanError::Corrupt { .. })));
    }

    #[test]
    fn marked_appends_keep_entries_and_position_under_one_checksum() {
        let mut f = file_with(&[b"abc"]);
        let trailer = mark_trailer("tail\tsrc\t1", 4242);
        f.extend_from_slice(&marked_append_header(b"defgh", &trailer, 1));
        f.extend_from_slice(b"defgh");
        f.extend_from_slice(&trailer);
        let s = scan(&f).unwrap();
        assert_eq!(s.marks, vec![("tail\tsrc\t1".to_string(), 4242)]);
        assert_eq!(s.records(), 2);
        assert_eq!(&into_entries(f.clone(), &s)[..], b"abcdefgh");
        // A torn marked append loses its position along with its entries.
        let s = scan(&f[..f.len() - 3]).unwrap();
        assert!(s.marks.is_empty());
        assert!(s.torn_tail.is_some());
        assert_eq!(s.records(), 1);
    }

    #[test]
    fn origins_travel_with_their_append_alone_or_with_a_mark() {
        let mut f = file_with(&[b"abc"]);
        let t = origin_trailer(b"client-chunk-1", None);
        f.extend_from_slice(&trailed_append_header(b"defgh", &t, 2, ORIGIN_APPEND));
        f.extend_from_slice(b"defgh");
        f.extend_from_slice(&t);
        let mark = mark_trailer("k", 7);
        let t = origin_trailer(b"c2", Some(&mark));
        f.extend_from_slice(&trailed_append_header(
            b"ij",
            &t,
            1,
            ORIGIN_APPEND | MARKED_APPEND,
        ));
        f.extend_from_slice(b"ij");
        f.extend_from_slice(&t);
        f.extend_from_slice(&append_header(b"kl", 1));
        f.extend_from_slice(b"kl");
        f.extend_from_slice(&append_header(b"m", 1));
        f.extend_from_slice(b"m");
        let s = scan(&f).unwrap();
        assert_eq!(s.records(), 6);
        assert_eq!(s.marks, vec![("k".to_string(), 7)]);
        let seg = |o: Option<&'static [u8]>, len, count| Segment {
            origin: o.map(Bytes::from_static),
            len,
            count,
        };
        assert_eq!(
            segments(&f, &s),
            vec![
                seg(None, 3, 1),
                seg(Some(b"client-chunk-1"), 5, 2),
                seg(Some(b"c2"), 2, 1),
                seg(None, 3, 2),
            ]
        );
        assert_eq!(&into_entries(f.clone(), &s)[..], b"abcdefghijklm");
        // No origins: no segments.
        let plain = file_with(&[b"abc", b"de"]);
        assert!(segments(&plain, &scan(&plain).unwrap()).is_empty());
        // An impossible origin length is damage.
        let mut bad = file_with(&[b"abc"]);
        let mut t = origin_trailer(b"id", None);
        let n = t.len();
        t[n - 4] = 200;
        bad.extend_from_slice(&trailed_append_header(b"de", &t, 1, ORIGIN_APPEND));
        bad.extend_from_slice(b"de");
        bad.extend_from_slice(&t);
        bad.extend_from_slice(&append_header(b"x", 1));
        bad.extend_from_slice(b"x");
        assert!(matches!(scan(&bad), Err(ScanError::Corrupt { .. })));
    }

    #[test]
    fn file_names() {
        let id = ChunkId([0xab; 16]);
        let name = file_name(id);
        assert_eq!(name, format!("buffer.{}.log", "ab".repeat(16)));
        assert!(is_chunk_file_name(&name));
        assert!(!is_chunk_file_name("buffer..log"));
        assert!(!is_chunk_file_name("other.log"));
    }
}
