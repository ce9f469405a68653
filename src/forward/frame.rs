//! Forward frames: incremental framing, the four event modes, options, ack, and encoding.
//!
//! Owns turning received bytes into [`Frame`]s and building the bytes a sender writes. Must not
//! do I/O; records are never decoded (Message/Forward records are copied as bytes,
//! PackedForward entries pass through as a slice of the received buffer).

use super::ForwardError;
use crate::config::Compression;
use crate::event::{
    fill_zero_times, write_entry, EntriesInfo, EntryError, EntryIter, EventBatch, EventTime,
    LenientEntry, LenientEntryIter,
};
use crate::msgpack::{
    self, write_array_header, write_map_header, write_str, write_str32_header, write_str_bytes,
    write_u32, Cursor, MsgpackError, RawKind, ScanError, ValueScanner,
};
use crate::origin::{self, Segment};
use bytes::{BufMut, Bytes, BytesMut};
use std::io::{Read, Write};

/// Cap on any frame, even when no `chunk_size_limit` is configured.
pub const HARD_MAX_FRAME_SIZE: u64 = 512 * 1024 * 1024;
/// Fluentd's default `decompression_size_limit` (256 MiB).
pub const DEFAULT_DECOMPRESSION_SIZE_LIMIT: u64 = 256 * 1024 * 1024;
/// Cap on a control message (HELO, PING, PONG, ack).
pub const MAX_CONTROL_MESSAGE_SIZE: usize = 64 * 1024;

/// Limits and policy for decoding frames.
#[derive(Debug, Clone)]
pub struct DecoderConfig {
    /// Frames larger than this (bytes on the wire) are refused; capped by [`HARD_MAX_FRAME_SIZE`].
    pub max_frame_size: u64,
    /// Decompressed size limit of CompressedPackedForward entries.
    pub decompression_size_limit: u64,
    /// Drop well-formed entries with an invalid time or record instead of refusing the frame.
    pub skip_invalid_event: bool,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        DecoderConfig {
            max_frame_size: HARD_MAX_FRAME_SIZE,
            decompression_size_limit: DEFAULT_DECOMPRESSION_SIZE_LIMIT,
            skip_invalid_event: true,
        }
    }
}

impl DecoderConfig {
    fn frame_limit(&self) -> u64 {
        self.max_frame_size.min(HARD_MAX_FRAME_SIZE)
    }
}

/// Which of the four Forward event modes a frame used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventMode {
    Message,
    Forward,
    PackedForward,
    CompressedPackedForward,
}

/// The option map of a frame (unknown keys are ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameOptions {
    /// The `chunk` value's bytes exactly as received (str or bin content; no trimming).
    pub chunk: Option<Bytes>,
    /// The `size` option (number of events the sender claims).
    pub size: Option<u64>,
    /// `compressed`: `"gzip"`, or text when absent or `"text"`.
    pub compressed: Option<Compression>,
    /// `lograft_origins` (sent by lograft's out_forward): `[[id or nil, entry bytes], ...]`,
    /// the origin ids of consecutive runs of the entries (see [`crate::origin`]), as received;
    /// checked against the entries by [`decode_frame`].
    pub origins: Option<Vec<(Option<Bytes>, u64)>>,
}

/// The option key carrying a frame's origin segments.
pub const ORIGINS_OPTION: &str = "lograft_origins";

/// One decoded event frame, normalized to a PackedForward entry stream.
#[derive(Debug, Clone)]
pub struct EventFrame {
    pub tag: String,
    pub mode: EventMode,
    /// Concatenated `[time, record]` entries, validated, zero times already replaced by now.
    /// For PackedForward without zero times or dropped entries, a slice of the received bytes.
    pub entries: Bytes,
    pub count: u32,
    /// True when the sender's stream had zero/nil times (they were replaced by now).
    pub has_zero_time: bool,
    pub options: FrameOptions,
    /// Bytes the frame took on the wire.
    pub wire_size: usize,
    /// Entries dropped by `skip_invalid_event`, and the first reason.
    pub skipped: u32,
    pub first_skip_error: Option<EntryError>,
    /// The entries' origin segments from `lograft_origins`, every run labelled (a run the
    /// sender left unlabelled gets an id derived from the frame's `chunk`); empty when the
    /// frame had none or its entries were rewritten (see [`decode_frame`]).
    pub segments: Vec<Segment>,
}

impl EventFrame {
    /// The batch to hand to [`crate::pipeline::Emit`], with the given tag.
    pub fn into_batch(self, tag: String) -> EventBatch {
        EventBatch {
            tag,
            entries: self.entries,
            count: self.count,
            origin_chunk: self.options.chunk,
            segments: self.segments,
        }
    }
}

/// One top-level message on a Forward connection.
#[derive(Debug, Clone)]
pub enum Frame {
    /// A msgpack nil: a client heartbeat, to be ignored.
    Heartbeat,
    Events(EventFrame),
}

/// Splits a TCP byte stream into frames. Keeps scanning state between calls: the caller must
/// only append to the buffer between calls (the decoder removes complete frames itself).
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    config: DecoderConfig,
    scanner: ValueScanner,
    checked_head: bool,
}

impl FrameDecoder {
    pub fn new(config: DecoderConfig) -> Self {
        FrameDecoder {
            config,
            scanner: ValueScanner::default(),
            checked_head: false,
        }
    }

    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// Split the next complete top-level message off `buf`, without decoding it.
    /// `Ok(None)` when more bytes are needed. Errors (oversize, not a frame) are final for the
    /// stream: the connection should be closed.
    pub fn next_frame(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, ForwardError> {
        if buf.is_empty() {
            return Ok(None);
        }
        if !self.checked_head {
            let first = buf[0];
            let arity = match Cursor::new(buf).array_len() {
                _ if first == 0xc0 => None,
                Ok(Some(n)) => Some(n),
                Ok(None) => return Err(ForwardError::NotAFrame(first)),
                // The array header is not complete yet.
                Err(_) => return Ok(None),
            };
            if let Some(n) = arity {
                if !(2..=4).contains(&n) {
                    return Err(ForwardError::BadArity(n));
                }
            }
            self.checked_head = true;
        }
        let limit = self.config.frame_limit();
        match self.scanner.scan(buf, limit) {
            Ok(None) => Ok(None),
            Ok(Some(end)) => {
                self.scanner.reset();
                self.checked_head = false;
                Ok(Some(buf.split_to(end).freeze()))
            }
            Err(ScanError::TooLarge(size)) => Err(ForwardError::FrameTooLarge { size, limit }),
            Err(ScanError::BadMarker { marker, offset }) => {
                Err(ForwardError::from(MsgpackError::BadMarker {
                    marker,
                    offset: offset as usize,
                }))
            }
        }
    }

    /// [`FrameDecoder::next_frame`] followed by [`decode_frame`] with the current time.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, ForwardError> {
        match self.next_frame(buf)? {
            None => Ok(None),
            Some(raw) => decode_frame(raw, &self.config, EventTime::now()).map(Some),
        }
    }
}

/// Decode one complete top-level message (as split by [`FrameDecoder::next_frame`]).
/// `now` replaces zero/nil event times.
pub fn decode_frame(
    raw: Bytes,
    config: &DecoderConfig,
    now: EventTime,
) -> Result<Frame, ForwardError> {
    let wire_size = raw.len();
    let mut c = Cursor::new(&raw);
    if c.nil()? {
        if !c.at_end() {
            return Err(ForwardError::NotAFrame(0xc0));
        }
        return Ok(Frame::Heartbeat);
    }
    let first = c.peek()?;
    let n = c.array_len()?.ok_or(ForwardError::NotAFrame(first))?;
    if !(2..=4).contains(&n) {
        return Err(ForwardError::BadArity(n));
    }
    let tag_bytes = match c.raw()? {
        Some((r, RawKind::Str)) => &raw[r],
        _ => return Err(ForwardError::BadTag),
    };
    let tag = std::str::from_utf8(tag_bytes)
        .map_err(|_| ForwardError::BadTag)?
        .to_string();

    let second = c.peek()?;
    let (mode, stream, must_rewrite, option_index) = match second {
        // Forward: [tag, [[time, record], ...], option?]
        m if msgpack::is_array(m) => {
            if n > 3 {
                return Err(ForwardError::BadArity(n));
            }
            let arr = c.skip()?;
            let mut header = Cursor::new(&raw[arr.start..]);
            header.array_len()?;
            // The array's elements are exactly a concatenated entry stream.
            let body_start = arr.start + header.pos();
            (EventMode::Forward, raw.slice(body_start..arr.end), true, 2)
        }
        // PackedForward: [tag, entries(bin|str), option?]
        m if msgpack::is_raw(m) => {
            if n > 3 {
                return Err(ForwardError::BadArity(n));
            }
            let (r, _) = c
                .raw()?
                .ok_or(ForwardError::UnknownMode("entries".into()))?;
            (EventMode::PackedForward, raw.slice(r), false, 2)
        }
        // Message: [tag, time, record, option?]
        _ => {
            if n < 3 {
                return Err(ForwardError::UnknownMode(format!(
                    "second element (marker 0x{second:02x}) is neither entries nor an event time, and there is no record"
                )));
            }
            let t = c.skip()?;
            let rec = c.skip()?;
            let mut one = BytesMut::with_capacity(1 + rec.end - t.start);
            write_array_header(&mut one, 2);
            one.extend_from_slice(&raw[t.start..rec.end]);
            (EventMode::Message, one.freeze(), true, 3)
        }
    };

    let mut options = if n > option_index {
        let opts = parse_options(&raw, &mut c)?;
        if !c.at_end() {
            return Err(ForwardError::UnknownMode(
                "trailing data after the option".into(),
            ));
        }
        opts
    } else {
        FrameOptions::default()
    };

    let (mode, stream) = match (mode, options.compressed) {
        (EventMode::PackedForward, Some(Compression::Gzip)) => (
            EventMode::CompressedPackedForward,
            gunzip_limited(&stream, config.decompression_size_limit)?,
        ),
        (m, _) => (m, stream),
    };

    // Where the sender's origin runs end, checked in the validation walk.
    let run_ends: Vec<usize> = match &options.origins {
        Some(list) if !must_rewrite => list
            .iter()
            .scan(0usize, |at, (_, len)| {
                *at = at.saturating_add(usize::try_from(*len).unwrap_or(usize::MAX));
                Some(*at)
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut normalized = normalize_entries(
        stream,
        must_rewrite,
        config.skip_invalid_event,
        now,
        &run_ends,
    )?;
    // Origins describe the bytes the sender sent: they hold only if the entries were passed
    // through as they are (lograft's out_forward sends nothing else). Otherwise the frame's
    // `chunk` stays its only dedup id.
    let rewritten = must_rewrite || normalized.skipped > 0 || normalized.has_zero_time;
    let segments = match options.origins.take() {
        Some(list) if !rewritten => resolve_origins(
            list,
            &normalized.entries,
            std::mem::replace(&mut normalized.run_counts, Ok(Vec::new())),
            options.chunk.as_ref(),
        )?,
        _ => Vec::new(),
    };
    Ok(Frame::Events(EventFrame {
        tag,
        mode,
        entries: normalized.entries,
        count: normalized.count,
        has_zero_time: normalized.has_zero_time,
        options,
        wire_size,
        skipped: normalized.skipped,
        first_skip_error: normalized.first_skip_error,
        segments,
    }))
}

/// Check a frame's `lograft_origins` against its entries and turn it into segments: the runs
/// must be non-empty, end on entry boundaries (`run_counts`, from the validation walk) and
/// cover the entries exactly; ids are at most [`origin::MAX_ORIGIN_LEN`] bytes. A run without
/// an id gets part `i` of `n` of the frame's `chunk` label (none without a `chunk`).
fn resolve_origins(
    list: Vec<(Option<Bytes>, u64)>,
    entries: &Bytes,
    run_counts: Result<Vec<u32>, String>,
    chunk: Option<&Bytes>,
) -> Result<Vec<Segment>, ForwardError> {
    let bad = |why: String| ForwardError::BadOption(format!("\"{ORIGINS_OPTION}\": {why}"));
    let total: u64 = list.iter().map(|(_, len)| *len).sum();
    if total != entries.len() as u64 {
        return Err(bad(format!(
            "the runs cover {total} bytes but the entries are {} bytes",
            entries.len()
        )));
    }
    let counts = run_counts.map_err(bad)?;
    let n = list.len();
    let frame_label = chunk.map(origin::label);
    let mut segments = Vec::with_capacity(n);
    for (i, ((id, len), count)) in list.into_iter().zip(counts).enumerate() {
        if let Some(id) = &id {
            if id.is_empty() || id.len() > origin::MAX_ORIGIN_LEN {
                return Err(bad(format!(
                    "an id of {} bytes (1 to {} allowed)",
                    id.len(),
                    origin::MAX_ORIGIN_LEN
                )));
            }
        }
        if count == 0 {
            return Err(bad(format!("run {i} is empty")));
        }
        let origin = id.or_else(|| {
            frame_label
                .as_ref()
                .map(|label| origin::part_id(label, i, n))
        });
        segments.push(Segment {
            origin,
            len: len as usize,
            count,
        });
    }
    Ok(segments)
}

/// True when a complete frame (as split by [`FrameDecoder::next_frame`]) is a
/// CompressedPackedForward message: its entries will be gunzipped by [`decode_frame`]. Reads
/// only headers and the option map, so a receiver can reserve memory before decoding.
pub fn frame_is_gzip(raw: &Bytes) -> bool {
    let mut c = Cursor::new(raw);
    let mut is_gzip = || -> Result<bool, ForwardError> {
        let Some(3) = c.array_len()? else {
            return Ok(false);
        };
        if c.raw()?.is_none() {
            return Ok(false);
        }
        if c.raw()?.is_none() {
            return Ok(false);
        }
        Ok(parse_options(raw, &mut c)?.compressed == Some(Compression::Gzip))
    };
    is_gzip().unwrap_or(false)
}

fn parse_options(raw: &Bytes, c: &mut Cursor<'_>) -> Result<FrameOptions, ForwardError> {
    let mut opts = FrameOptions::default();
    if c.nil()? {
        return Ok(opts);
    }
    let pairs = c
        .map_len()?
        .ok_or_else(|| ForwardError::BadOption("the option is not a map".into()))?;
    for _ in 0..pairs {
        let key = match c.raw()? {
            Some((r, _)) => &raw[r],
            None => {
                // Non-string keys are not ours: skip key and value.
                c.skip()?;
                c.skip()?;
                continue;
            }
        };
        match key {
            b"chunk" => match c.raw()? {
                Some((r, _)) => opts.chunk = Some(raw.slice(r)),
                None => return Err(ForwardError::BadOption("\"chunk\" is not a string".into())),
            },
            b"size" => match c.uint()? {
                Some(v) => opts.size = Some(v),
                None => {
                    // Tolerate odd senders: an unusable size is only a hint.
                    c.skip()?;
                }
            },
            b"lograft_origins" => opts.origins = Some(parse_origins(raw, c)?),
            b"compressed" => match c.raw_bytes()? {
                Some(b"gzip") => opts.compressed = Some(Compression::Gzip),
                Some(b"text") => opts.compressed = Some(Compression::Text),
                Some(other) => {
                    return Err(ForwardError::UnsupportedCompression(
                        String::from_utf8_lossy(other).into_owned(),
                    ))
                }
                None => {
                    if !c.nil()? {
                        return Err(ForwardError::BadOption(
                            "\"compressed\" is not a string".into(),
                        ));
                    }
                }
            },
            _ => {
                c.skip()?;
            }
        }
    }
    Ok(opts)
}

/// `[[id (str or bin) or nil, entry bytes (uint)], ...]`.
fn parse_origins(
    raw: &Bytes,
    c: &mut Cursor<'_>,
) -> Result<Vec<(Option<Bytes>, u64)>, ForwardError> {
    let bad = || {
        ForwardError::BadOption(format!(
            "\"{ORIGINS_OPTION}\" is not an array of [id, length] pairs"
        ))
    };
    let n = c.array_len()?.ok_or_else(bad)?;
    // Each pair takes at least 3 bytes, so the frame's size bounds `n`.
    let mut list = Vec::with_capacity((n as usize).min(raw.len() / 3));
    for _ in 0..n {
        if c.array_len()? != Some(2) {
            return Err(bad());
        }
        let id = if c.nil()? {
            None
        } else {
            let (r, _) = c.raw()?.ok_or_else(bad)?;
            Some(raw.slice(r))
        };
        let len = c.uint()?.ok_or_else(bad)?;
        list.push((id, len));
    }
    Ok(list)
}

struct Normalized {
    entries: Bytes,
    count: u32,
    has_zero_time: bool,
    skipped: u32,
    first_skip_error: Option<EntryError>,
    /// Entries per origin run (see [`validate_entries_and_depth`]) when the entries passed
    /// through unchanged; empty otherwise.
    run_counts: Result<Vec<u32>, String>,
}

/// Validate (and when needed rebuild) a frame's entries; `run_ends` are the ends of its origin
/// runs, checked in the same walk (empty: none).
fn normalize_entries(
    stream: Bytes,
    must_rewrite: bool,
    skip_invalid: bool,
    now: EventTime,
    run_ends: &[usize],
) -> Result<Normalized, ForwardError> {
    if !must_rewrite {
        match validate_entries_and_depth(&stream, run_ends) {
            Ok((info, run_counts)) if !info.has_zero_time => {
                return Ok(Normalized {
                    entries: stream,
                    count: info.count,
                    has_zero_time: false,
                    skipped: 0,
                    first_skip_error: None,
                    run_counts,
                })
            }
            Ok((info, _)) => {
                let filled = fill_zero_times(&stream, now).map_err(ForwardError::BadEntries)?;
                return Ok(Normalized {
                    entries: filled,
                    count: info.count,
                    has_zero_time: true,
                    skipped: 0,
                    first_skip_error: None,
                    run_counts: Ok(Vec::new()),
                });
            }
            Err(e) if !skip_invalid => return Err(ForwardError::BadEntries(e)),
            Err(_) => {}
        }
    }
    // Slow path: rebuild every entry (Message/Forward modes, or invalid entries to drop).
    let mut out = BytesMut::with_capacity(stream.len() + 16);
    let mut n = Normalized {
        entries: Bytes::new(),
        count: 0,
        has_zero_time: false,
        skipped: 0,
        first_skip_error: None,
        run_counts: Ok(Vec::new()),
    };
    for item in LenientEntryIter::new(&stream) {
        match item.map_err(ForwardError::BadEntries)? {
            LenientEntry::Valid(e) if e.too_deep() => {
                let error = EntryError::TooDeep(e.raw.as_ptr() as usize - stream.as_ptr() as usize);
                if !skip_invalid {
                    return Err(ForwardError::BadEntries(error));
                }
                n.skipped += 1;
                n.first_skip_error.get_or_insert(error);
            }
            LenientEntry::Valid(e) => {
                let t = if e.time.is_zero() {
                    n.has_zero_time = true;
                    now
                } else {
                    e.time
                };
                write_entry(&mut out, t, e.record);
                n.count += 1;
            }
            LenientEntry::Invalid { error, .. } => {
                if !skip_invalid {
                    return Err(ForwardError::BadEntries(error));
                }
                n.skipped += 1;
                n.first_skip_error.get_or_insert(error);
            }
        }
    }
    n.entries = out.freeze();
    Ok(n)
}

/// Validate an entry stream (every entry `[time, map]`) in one walk, refusing the first record
/// nested deeper than [`crate::record_depth::MAX_RECORD_DEPTH`]: what an output could not decode
/// must not be acknowledged. In the same walk, count the entries of each origin run ending at
/// `run_ends` (ascending byte offsets): `Err` names the first run that does not end on an entry
/// boundary.
fn validate_entries_and_depth(
    stream: &[u8],
    run_ends: &[usize],
) -> Result<(EntriesInfo, Result<Vec<u32>, String>), EntryError> {
    let mut info = EntriesInfo {
        count: 0,
        has_zero_time: false,
    };
    let mut counts = Vec::with_capacity(run_ends.len());
    let (mut at, mut in_run) = (0usize, 0u32);
    let mut misaligned = None;
    for e in EntryIter::new(stream) {
        let e = e?;
        if e.too_deep() {
            return Err(EntryError::TooDeep(
                e.raw.as_ptr() as usize - stream.as_ptr() as usize,
            ));
        }
        info.count += 1;
        info.has_zero_time |= e.time.is_zero();
        if misaligned.is_none() && counts.len() < run_ends.len() {
            at += e.raw.len();
            in_run += 1;
            while counts.len() < run_ends.len() && run_ends[counts.len()] == at {
                counts.push(in_run);
                in_run = 0;
            }
            if counts.len() < run_ends.len() && run_ends[counts.len()] < at {
                misaligned = Some(counts.len());
            }
        }
    }
    let runs = match misaligned {
        None if counts.len() == run_ends.len() => Ok(counts),
        None => Err(format!("run {} runs past the entries", counts.len())),
        Some(i) => Err(format!("run {i} does not end on an entry boundary")),
    };
    Ok((info, runs))
}

/// Decompress gzip (possibly several concatenated members), refusing output over `limit` bytes
/// without ever allocating past it.
fn gunzip_limited(data: &[u8], limit: u64) -> Result<Bytes, ForwardError> {
    let mut decoder = flate2::read::MultiGzDecoder::new(data);
    let cap_limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut out: Vec<u8> = Vec::with_capacity(data.len().saturating_mul(4).min(cap_limit));
    let mut block = vec![0u8; 64 * 1024];
    loop {
        let n = match decoder.read(&mut block) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ForwardError::Gzip(e)),
        };
        if (out.len() + n) as u64 > limit {
            return Err(ForwardError::DecompressionLimit { limit });
        }
        if out.len() + n > out.capacity() {
            let wanted = (out.capacity().max(64 * 1024) * 2).min(cap_limit);
            out.reserve_exact(wanted.max(out.len() + n) - out.len());
        }
        out.extend_from_slice(&block[..n]);
    }
    Ok(Bytes::from(out))
}

/// Gzip an entry stream for CompressedPackedForward (one member).
pub fn gzip_entries(entries: &[u8]) -> std::io::Result<Bytes> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(entries.len() / 4 + 64),
        flate2::Compression::default(),
    );
    enc.write_all(entries)?;
    Ok(Bytes::from(enc.finish()?))
}

/// The bytes around an entry stream: the frame is `header ‖ entries ‖ trailer`, so a sender
/// can write the entries from its buffer without copying them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFrameParts {
    /// `0x93`, the tag, `0xdb` and the entries' u32 length.
    pub header: Bytes,
    /// The option map.
    pub trailer: Bytes,
}

/// Frame a PackedForward (or, with `Compression::Gzip`, CompressedPackedForward: `entries` must
/// already be gzip, see [`gzip_entries`]) message the way out_forward does: entries as str32,
/// options `{"size": count, "chunk": chunk?, "compressed": "gzip"?}`.
pub fn encode_packed_forward(
    tag: &str,
    entries: &[u8],
    count: u32,
    chunk: Option<&[u8]>,
    compressed: Compression,
) -> Result<EncodedFrameParts, ForwardError> {
    encode_packed_forward_with_origins(tag, entries, count, chunk, compressed, &[])
}

/// [`encode_packed_forward`] with the entries' origin segments in `lograft_origins` (written
/// only with a `chunk` and when some segment has an id; lengths are of the uncompressed
/// entries). Receivers that are not lograft ignore the key.
pub fn encode_packed_forward_with_origins(
    tag: &str,
    entries: &[u8],
    count: u32,
    chunk: Option<&[u8]>,
    compressed: Compression,
    origins: &[Segment],
) -> Result<EncodedFrameParts, ForwardError> {
    let origins = if chunk.is_some() && origins.iter().any(|s| s.origin.is_some()) {
        origins
    } else {
        &[]
    };
    let len =
        u32::try_from(entries.len()).map_err(|_| ForwardError::EntriesTooLarge(entries.len()))?;
    let mut header = BytesMut::with_capacity(tag.len() + 16);
    write_array_header(&mut header, 3);
    write_str(&mut header, tag);
    write_str32_header(&mut header, len);

    let mut trailer = BytesMut::with_capacity(64 + origins.len() * 80);
    let pairs = 1
        + chunk.is_some() as u8
        + (compressed == Compression::Gzip) as u8
        + !origins.is_empty() as u8;
    write_map_header(&mut trailer, pairs as u32);
    write_str(&mut trailer, "size");
    write_u32(&mut trailer, count);
    if let Some(chunk) = chunk {
        write_str(&mut trailer, "chunk");
        write_str_bytes(&mut trailer, chunk);
    }
    if compressed == Compression::Gzip {
        write_str(&mut trailer, "compressed");
        write_str(&mut trailer, "gzip");
    }
    if !origins.is_empty() {
        write_str(&mut trailer, ORIGINS_OPTION);
        write_array_header(&mut trailer, origins.len() as u32);
        for s in origins {
            write_array_header(&mut trailer, 2);
            match &s.origin {
                Some(id) => write_str_bytes(&mut trailer, id),
                None => trailer.put_u8(0xc0),
            }
            write_u32(&mut trailer, s.len as u32);
        }
    }
    Ok(EncodedFrameParts {
        header: header.freeze(),
        trailer: trailer.freeze(),
    })
}

/// `{"ack": chunk}`, echoing the chunk bytes exactly as received (as a msgpack str).
pub fn encode_ack(chunk: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(chunk.len() + 10);
    write_map_header(&mut out, 1);
    write_str(&mut out, "ack");
    write_str_bytes(&mut out, chunk);
    out.freeze()
}

/// Split one complete msgpack value (at most `max` bytes) off the front of `buf`.
/// `Ok(None)` when more bytes are needed.
pub fn take_message(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, ForwardError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let mut scanner = ValueScanner::default();
    match scanner.scan(buf, max as u64) {
        Ok(None) => Ok(None),
        Ok(Some(end)) => Ok(Some(buf.split_to(end).freeze())),
        Err(ScanError::TooLarge(size)) => Err(ForwardError::FrameTooLarge {
            size,
            limit: max as u64,
        }),
        Err(ScanError::BadMarker { marker, offset }) => {
            Err(ForwardError::Msgpack(EntryError::BadMarker {
                marker,
                offset: offset as usize,
            }))
        }
    }
}

/// Read the server's `{"ack": chunk}` reply off the front of `buf`: the chunk bytes, or
/// `Ok(None)` when more bytes are needed.
pub fn decode_ack(buf: &mut BytesMut) -> Result<Option<Bytes>, ForwardError> {
    let Some(msg) = take_message(buf, MAX_CONTROL_MESSAGE_SIZE)? else {
        return Ok(None);
    };
    let mut c = Cursor::new(&msg);
    let pairs = c
        .map_len()?
        .ok_or_else(|| ForwardError::BadAck("the response is not a map".into()))?;
    let mut ack = None;
    for _ in 0..pairs {
        let key = c.raw_bytes()?;
        if key == Some(b"ack") {
            match c.raw()? {
                Some((r, _)) => ack = Some(msg.slice(r)),
                None => return Err(ForwardError::BadAck("\"ack\" is not a string".into())),
            }
        } else {
            if key.is_none() {
                c.skip()?;
            }
            c.skip()?;
        }
    }
    ack.map(Some)
        .ok_or_else(|| ForwardError::BadAck("no \"ack\" key in the response".into()))
}

#[cfg(test)]
mod tests;
