//! One tailed file: its open handle, where reading stands, and turning its new lines into one
//! batch of entries (allocation-light: big `pread`s into one reused buffer, newlines found with
//! `memchr`, entries written straight as msgpack by the parser).
//!
//! Positions: `read_at` is where the next read starts; `commit` is the position that is
//! committed (durable with its data, see the module doc of `input::tail`). A batch says which
//! position it commits ([`Batch::commit_to`]): the end of its last line, except that it never
//! passes the first line of a pending CRI partial group or of an oversized line still being
//! skipped, so that a restart from it reads those lines again whole. A truncated file starts a
//! new *generation*, packed into the position ([`pack`]) so that a position committed after
//! the truncation is larger than any before it. A truncation is noticed when the file is
//! shorter than the position, or when the byte before the position (the end of the last line
//! read) is no longer a newline, or its first bytes changed (it was truncated and grew again
//! between two looks, or while lograft was stopped: see [`TailedFile::expect_head`]).
//!
//! Owns reading and line splitting; it must not emit (that is the tailer) nor find files.

use super::pos_file::Head;
use crate::event::EventTime;
use crate::log_limit::WarnLimiter;
use crate::parse::{LineParser, Outcome, ParseConfig};
use bytes::{Bytes, BytesMut};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::Instant;

/// Bits of a packed position that hold the byte offset (files up to 1 TiB); the rest hold
/// the generation (truncations seen).
pub const OFFSET_BITS: u32 = 40;
const OFFSET_MASK: u64 = (1 << OFFSET_BITS) - 1;

/// Pack (generation, offset) into one position that orders by generation first.
pub fn pack(generation: u32, offset: u64) -> u64 {
    ((generation as u64) << OFFSET_BITS) | (offset & OFFSET_MASK)
}

/// The (generation, offset) of a packed position.
pub fn unpack(position: u64) -> (u32, u64) {
    ((position >> OFFSET_BITS) as u32, position & OFFSET_MASK)
}

/// Bytes read per `pread` at first (grown for longer lines).
const READ_BLOCK: usize = 256 << 10;
/// A batch stops growing at this many entry bytes.
pub const BATCH_BYTES: usize = 1 << 20;

/// How a file is read (from the source's config).
pub struct ReadSettings<'a> {
    /// Longer lines are skipped with a warning.
    pub max_line: u64,
    pub bytes_per_second: Option<u64>,
    /// `path_key`: the field and this file's path.
    pub path_key: Option<&'a str>,
    pub emit_unmatched: bool,
}

/// New lines of one file, ready to emit.
pub struct Batch {
    pub entries: Bytes,
    pub count: u32,
    /// The position (offset, same generation) that is committed once the batch is.
    pub commit_to: u64,
}

pub struct TailedFile {
    pub path: PathBuf,
    path_text: String,
    pub inode: u64,
    pub tag: String,
    file: Option<File>,
    pub generation: u32,
    pub read_at: u64,
    pub commit: u64,
    /// First byte of the pending CRI partial group (its lines are in the parser).
    pending_start: Option<u64>,
    /// First byte of an oversized line being skipped.
    skip_start: Option<u64>,
    parser: LineParser,
    /// Since when this file is no longer at its path (renamed or deleted).
    pub rotated_at: Option<Instant>,
    /// Lines per batch (halved while a batch is too large to commit as one).
    pub lines_limit: usize,
    throttle: (Instant, u64),
    unmatched: WarnLimiter,
    /// Length and crc32c of the file's first bytes (up to [`FINGERPRINT_LEN`]) as last seen.
    fingerprint: Option<(usize, u32)>,
    /// When lines were last consumed (for `multiline_flush_interval`).
    last_read: Instant,
}

/// How many leading bytes of a file are checksummed to notice it was rewritten.
const FINGERPRINT_LEN: usize = 64;

impl TailedFile {
    /// Open `path` to read from `offset` of `generation`.
    pub fn open(
        path: PathBuf,
        inode: u64,
        tag: String,
        parse: &ParseConfig,
        generation: u32,
        offset: u64,
        lines_limit: usize,
    ) -> io::Result<Self> {
        let file = File::open(&path)?;
        Ok(TailedFile {
            path_text: path.to_string_lossy().into_owned(),
            path,
            inode,
            tag,
            file: Some(file),
            generation,
            read_at: offset,
            commit: offset,
            pending_start: None,
            skip_start: None,
            parser: LineParser::new(parse),
            rotated_at: None,
            lines_limit,
            throttle: (Instant::now(), 0),
            unmatched: WarnLimiter::default(),
            fingerprint: None,
            last_read: Instant::now(),
        })
    }

    /// This file's entry of the heads file: its generation, committed position and the
    /// checksum of its first bytes as last seen (of none yet: length 0).
    pub fn head(&self) -> Head {
        let (len, crc) = self.fingerprint.unwrap_or((0, 0)); // 0 is the crc32c of no bytes
        Head {
            generation: self.generation,
            commit: self.commit,
            len,
            crc,
        }
    }

    /// Expect the file's first bytes to be those `head` describes (saved before a restart):
    /// if they are not, the next read notices the file was rewritten and starts it again.
    pub fn expect_head(&mut self, head: Head) {
        self.fingerprint = Some((head.len, head.crc));
    }

    /// Close the handle (`open_on_every_update`); the next read opens the path again.
    pub fn close(&mut self) {
        self.file = None;
    }

    /// Open the path again if closed; false if the path now holds another file (or none).
    pub fn reopen(&mut self) -> bool {
        if self.file.is_some() {
            return true;
        }
        use std::os::unix::fs::MetadataExt;
        match File::open(&self.path) {
            Ok(f) if f.metadata().map(|m| m.ino()).ok() == Some(self.inode) => {
                self.file = Some(f);
                true
            }
            _ => false,
        }
    }

    /// The file's current size (of the open handle: a renamed file keeps being read).
    pub fn size(&self) -> io::Result<u64> {
        match &self.file {
            Some(f) => Ok(f.metadata()?.len()),
            None => Ok(self.read_at),
        }
    }

    /// Whether everything in the file has been read and committed.
    pub fn caught_up(&self) -> bool {
        self.size().map(|s| s <= self.commit).unwrap_or(true) && self.read_at == self.commit
    }

    /// Go back to the committed position (after a batch could not be emitted).
    pub fn rewind(&mut self) {
        self.read_at = self.commit;
        self.pending_start = None;
        self.skip_start = None;
        self.parser.reset();
    }

    /// Emit a pending multiline group once nothing was read for `idle`: the batch commits the
    /// position after the group.
    pub fn flush_idle(
        &mut self,
        idle: std::time::Duration,
        path_key: Option<&str>,
        now: EventTime,
    ) -> Option<Batch> {
        if !self.parser.flushes_on_idle()
            || !self.parser.has_pending()
            || self.last_read.elapsed() < idle
        {
            return None;
        }
        let mut out = BytesMut::new();
        let extra = path_key.map(|k| (k, self.path_text.as_str()));
        let count = match self.parser.flush(now, extra, &mut out) {
            Outcome::Event => 1,
            _ => 0,
        };
        self.pending_start = None;
        Some(Batch {
            entries: out.freeze(),
            count,
            commit_to: self.read_at,
        })
    }

    /// Whether the byte before `read_at`, the end of the last line read, is no longer a
    /// newline: the file was truncated and has grown past the position again since the last
    /// look (copytruncate followed by quick writes).
    ///
    /// Also whether the file's first bytes changed (a [`FINGERPRINT_LEN`]-byte checksum is
    /// kept): a truncated file that grew back to exactly the old length is noticed too.
    fn line_end_overwritten(&mut self) -> io::Result<bool> {
        let Some(file) = &self.file else {
            return Ok(false);
        };
        if self.read_at == 0 {
            return Ok(false);
        }
        // The kept checksum may cover more than `read_at` (taken before a restart from an
        // earlier committed position): compare what it covers.
        if let Some((len, crc)) = self.fingerprint {
            if head_checksum(file, len)? != (len, crc) {
                return Ok(true);
            }
        }
        self.note_head()?;
        let Some(file) = &self.file else {
            return Ok(false);
        };
        if self.skip_start.is_some() {
            return Ok(false);
        }
        let mut b = [0u8; 1];
        let n = read_at_most(file, &mut b, self.read_at - 1)?;
        Ok(n == 1 && b[0] != b'\n')
    }

    /// Read the next batch: up to `lines_limit` entries and about [`BATCH_BYTES`]. None when
    /// there is nothing new (or only a line still being written).
    pub fn read_batch(
        &mut self,
        s: &ReadSettings<'_>,
        buf: &mut Vec<u8>,
        now: EventTime,
    ) -> io::Result<Option<Batch>> {
        let size = self.size()?;
        if size < self.read_at || self.line_end_overwritten()? {
            tracing::warn!(path = %self.path.display(), size, position = self.read_at, "file was truncated; reading it again from the start");
            self.generation += 1;
            self.commit = 0;
            self.fingerprint = None;
            self.rewind();
        }
        if size == self.read_at {
            return Ok(None);
        }
        let Some(file) = &self.file else {
            return Ok(None);
        };
        let mut out = BytesMut::with_capacity(
            ((size - self.read_at) as usize + self.lines_limit * 24).min(BATCH_BYTES + 4096),
        );
        let mut count = 0u32;
        let mut block = READ_BLOCK;
        let extra = s.path_key.map(|k| (k, self.path_text.as_str()));
        'reading: while (count as usize) < self.lines_limit && out.len() < BATCH_BYTES {
            let left = size - self.read_at;
            if left == 0 || !throttle_allows(&mut self.throttle, s.bytes_per_second) {
                break;
            }
            let want = (left as usize).min(block);
            buf.resize(want, 0);
            let n = read_at_most(file, &mut buf[..want], self.read_at)?;
            if n == 0 {
                break;
            }
            let data = &buf[..n];
            let mut consumed = 0usize;
            while let Some(i) = memchr::memchr(b'\n', &data[consumed..]) {
                let line_start = self.read_at + consumed as u64;
                let mut line = &data[consumed..consumed + i];
                consumed += i + 1;
                if let Some(stripped) = line.strip_suffix(b"\r") {
                    line = stripped;
                }
                if let Some(start) = self.skip_start.take() {
                    let len = self.read_at + consumed as u64 - start;
                    tracing::warn!(path = %self.path.display(), offset = start, bytes = len, max_line_size = s.max_line, "line longer than max_line_size skipped");
                    continue;
                }
                if line.len() as u64 > s.max_line {
                    tracing::warn!(path = %self.path.display(), offset = line_start, bytes = line.len(), max_line_size = s.max_line, "line longer than max_line_size skipped");
                    continue;
                }
                let outcome = self.parser.parse(line, now, extra, &mut out);
                if !self.parser.has_pending() {
                    self.pending_start = None;
                } else if self.parser.began_group() {
                    self.pending_start = Some(line_start);
                } else {
                    self.pending_start.get_or_insert(line_start);
                }
                match outcome {
                    Outcome::Event => count += 1,
                    Outcome::Pending => {}
                    Outcome::Unmatched if s.emit_unmatched => {
                        crate::parse::none::write(
                            &crate::parse::none::NoneParams {
                                message_key: "unmatched_line".into(),
                            },
                            line,
                            now,
                            extra,
                            &mut out,
                        );
                        count += 1;
                    }
                    Outcome::Unmatched => {
                        if let Some(held) = self.unmatched.check() {
                            tracing::warn!(path = %self.path.display(), offset = line_start, unmatched_since_last_warning = held + 1, "line does not match the <parse> format; dropped");
                        }
                    }
                }
                if count as usize >= self.lines_limit || out.len() >= BATCH_BYTES {
                    self.read_at += consumed as u64;
                    break 'reading;
                }
            }
            self.throttle.1 += consumed as u64;
            if consumed == 0 {
                if n as u64 == left {
                    // Only an unterminated line: wait until it is complete.
                    break;
                }
                // The line is longer than this block.
                let line_so_far = n as u64;
                if self.skip_start.is_some() || line_so_far > s.max_line {
                    self.skip_start.get_or_insert(self.read_at);
                    self.read_at += n as u64;
                    self.throttle.1 += n as u64;
                } else {
                    block = block.saturating_mul(2);
                }
                continue;
            }
            self.read_at += consumed as u64;
            self.last_read = Instant::now();
        }
        let commit_to = [self.pending_start, self.skip_start]
            .into_iter()
            .flatten()
            .fold(self.read_at, u64::min);
        if count == 0 && commit_to == self.commit {
            return Ok(None);
        }
        self.note_head()?;
        Ok(Some(Batch {
            entries: out.freeze(),
            count,
            commit_to,
        }))
    }

    /// Checksum the file's first bytes now if the kept checksum covers fewer than it could
    /// (called at every look and after every batch read, so that the heads file describes the
    /// content of every batch: a checksum taken only at the next look could miss a pos-file
    /// write).
    fn note_head(&mut self) -> io::Result<()> {
        let covered = self.fingerprint.map_or(0, |(len, _)| len);
        let want = (self.read_at as usize).min(FINGERPRINT_LEN);
        if covered >= want {
            return Ok(());
        }
        if let Some(file) = &self.file {
            self.fingerprint = Some(head_checksum(file, want)?);
        }
        Ok(())
    }
}

/// The crc32c of `file`'s first `want` bytes (at most [`FINGERPRINT_LEN`]): (bytes read, which
/// is fewer if the file is shorter, checksum).
fn head_checksum(file: &File, want: usize) -> io::Result<(usize, u32)> {
    let mut head = [0u8; FINGERPRINT_LEN];
    let n = read_at_most(file, &mut head[..want.min(FINGERPRINT_LEN)], 0)?;
    Ok((n, crc32c::crc32c(&head[..n])))
}

/// Whether the per-second byte budget (window start, bytes read in it) allows more reading.
fn throttle_allows(throttle: &mut (Instant, u64), limit: Option<u64>) -> bool {
    let Some(limit) = limit else { return true };
    if throttle.0.elapsed().as_secs() >= 1 {
        *throttle = (Instant::now(), 0);
    }
    throttle.1 < limit
}

/// `pread` until `buf` is full or the end of the file.
fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
