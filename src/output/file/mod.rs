//! The `file` output (Fluentd's out_file): writes each chunk's events as text lines to files.
//!
//! Owns the file naming, the line layout choice (`out_file`: `TIME<TAB>TAG<TAB>JSON`, or the
//! record `json`), optional gzip, and durability: `write` returns `Ok` only once the data is
//! fsynced, because the output driver then deletes the chunk from the buffer. All file I/O and
//! formatting run on the blocking thread pool. It must not retry (the driver does) and must not
//! delete or rewrite files it did not write for the chunk at hand. Its typed config and builder
//! (with the v0.12 time-slice spellings): [`config`].
//!
//! # File names
//!
//! As in Fluentd, the final path is built from `path`:
//! - `path` may hold strftime placeholders (`%Y%m%d`, …) filled from the chunk's timekey (or,
//!   when time is not a chunk key, the chunk's first event time), in local time unless
//!   [`FileOutput::with_time_slicing`] says UTC, and `${tag}`, `${tag[N]}` or `${tag_parts[N]}`
//!   (N may be negative: counted from the end). Substituted tag text goes through
//!   [`safe_segment`](crate::output::safe_name::safe_segment): anything outside `A-Za-z0-9.-_` becomes `_`, an empty text, `.` or `..` get a
//!   `_` prefix, and text longer than 200 bytes is cut and ends with a hash of the whole tag,
//!   so a tag can neither move a file out of its directory nor make a name the OS refuses.
//! - When the chunk has a timekey and `path` has no time placeholder, `.<timeslice>` is appended;
//!   the slice format comes from the timekey length (`%Y%m%d` for ≥ 1 day, `%Y%m%d%H` for ≥ 1
//!   hour, `%Y%m%d%H%M` for ≥ 1 minute, else `%Y%m%d%H%M%S`; `%Y%m%d` when the length is not
//!   known, Fluentd's default timekey being 1 day).
//! - A `*` in `path` is replaced by `<timeslice><index>` and no suffix is added.
//! - Otherwise `<index>`, then `path_suffix` (`.log`; nothing when `add_path_suffix false`), then
//!   `.gz` with `compress gzip`, are appended.
//! - In append mode `<index>` is empty: every chunk of a time slice goes to the same file.
//!
//! **Deliberate difference from Fluentd**: in non-append mode Fluentd's `<index>` is `_0`, `_1`,
//! … (the first free number); lograft uses `_<chunk-id-hex>` instead, e.g.
//! `/var/log/app.20240101_5f0c…e1.log`. A chunk delivered twice (a crash after the write but
//! before the buffer purged the chunk) then overwrites its own file instead of creating a
//! second copy: delivery is exactly once.
//!
//! # Durability
//!
//! - Non-append mode writes the whole chunk to a temporary file in the target directory
//!   (`.<name>.tmp-<random>`), fsyncs it, renames it into place and fsyncs the directory: the
//!   file is there whole or not at all. A crash mid-write can leave a temporary file behind.
//! - Append mode appends the chunk (with gzip: as one more gzip member, which gzip readers
//!   concatenate), fsyncs, and on a failed write truncates the file back to its previous length.
//!   It is **at-least-once** across crashes: a crash after the fsync and before the buffer purged
//!   the chunk appends the chunk a second time on redelivery. Appends of one output are
//!   serialized so the truncate-back never cuts another chunk's data.
//! - New parent directories are created and their parents fsynced.

pub mod config;

use crate::buffer::Chunk;
use crate::config::Compression;
use crate::event::{EntryIter, EventTime};
use crate::output::format::{FormatError, LineFormatter, TimeFormatter, Zone};
use crate::output::safe_name::safe_segment_noted;
use crate::output::{ChunkOutput, OutputError};
use crate::pipeline::BoxFuture;
use chrono::format::{Item, StrftimeItems};
use config::{FileFormat, FileOutputConfig};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Writes chunks to files, Fluentd out_file style (see the module doc).
#[derive(Debug, Clone)]
pub struct FileOutput {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    append: bool,
    compress: Compression,
    /// `path_suffix` when `add_path_suffix`, else empty.
    suffix: String,
    /// `path` split at `*`, each piece a strftime pattern (tag placeholders are literals to it).
    pieces: Vec<TimeFormatter>,
    path_has_time: bool,
    slice: TimeFormatter,
    lines: LineFormatter,
    /// Serializes appends (the truncate-back on failure must not cut another chunk's data).
    append_lock: Mutex<()>,
}

impl FileOutput {
    /// With the buffer's `timekey` (chooses the appended time-slice format) and the zone of
    /// the path placeholders (`timekey_zone`, `timekey_use_utc`; lines stay in local time).
    pub fn with_time_slicing(
        cfg: &FileOutputConfig,
        timekey: Option<Duration>,
        path_zone: Zone,
    ) -> Result<Self, OutputError> {
        Self::build(cfg, timekey, path_zone, Zone::Local)
    }

    /// Full control, for callers that know the zones (and for tests).
    pub fn build(
        cfg: &FileOutputConfig,
        timekey: Option<Duration>,
        path_zone: Zone,
        line_zone: Zone,
    ) -> Result<Self, OutputError> {
        if cfg.path.trim().is_empty() {
            return Err(OutputError::Unrecoverable(
                "file output: `path` is empty".into(),
            ));
        }
        let bad_pattern =
            |e: FormatError| OutputError::Unrecoverable(format!("file output `path`: {e}"));
        let pieces = cfg
            .path
            .split('*')
            .map(|p| TimeFormatter::new(p, path_zone))
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad_pattern)?;
        let path_has_time = StrftimeItems::new(&cfg.path).any(|item| {
            !matches!(
                item,
                Item::Literal(_) | Item::OwnedLiteral(_) | Item::Space(_) | Item::OwnedSpace(_)
            )
        });
        let slice =
            TimeFormatter::new(timekey_to_format(timekey), path_zone).map_err(bad_pattern)?;
        let lines = match cfg.format {
            FileFormat::OutFile => LineFormatter::out_file(line_zone),
            FileFormat::Json => LineFormatter::json(),
        };
        Ok(FileOutput {
            inner: Arc::new(Inner {
                append: cfg.append,
                compress: cfg.compress,
                suffix: if cfg.add_path_suffix {
                    cfg.path_suffix.clone()
                } else {
                    String::new()
                },
                pieces,
                path_has_time,
                slice,
                lines,
                append_lock: Mutex::new(()),
            }),
        })
    }

    /// The file `chunk` is written to.
    #[cfg(test)]
    pub fn path_for(&self, chunk: &Chunk) -> Result<PathBuf, OutputError> {
        Ok(self.inner.path_for(chunk)?)
    }

    /// Write `chunk`'s events; `Ok` only once they are fsynced to the file.
    async fn write_fsynced(&self, chunk: &Chunk) -> Result<(), OutputError> {
        let inner = self.inner.clone();
        let chunk = chunk.clone();
        tokio::task::spawn_blocking(move || inner.write_blocking(&chunk))
            .await
            .map_err(|e| OutputError::Unrecoverable(format!("file output task failed: {e}")))?
    }
}

impl ChunkOutput for FileOutput {
    fn type_name(&self) -> &'static str {
        config::PLUGIN.name
    }

    fn write<'a>(&'a self, chunk: &'a Chunk) -> BoxFuture<'a, Result<(), OutputError>> {
        Box::pin(self.write_fsynced(chunk))
    }
}

impl Inner {
    fn path_for(&self, chunk: &Chunk) -> Result<PathBuf, FormatError> {
        let time = chunk_time(chunk);
        let tag = &chunk.meta.tag;
        let index = if self.append {
            String::new()
        } else {
            format!("_{}", chunk.meta.id.to_hex())
        };
        let gz = match self.compress {
            Compression::Gzip => ".gz",
            Compression::Text => "",
        };
        let mut expanded = Vec::with_capacity(self.pieces.len());
        for piece in &self.pieces {
            expanded.push(substitute_tag(&piece.format(time)?, tag));
        }
        let path = if expanded.len() > 1 {
            let star = format!("{}{}", self.slice.format(time)?, index);
            format!("{}{gz}", expanded.join(&star))
        } else if chunk.meta.timekey.is_some() && !self.path_has_time {
            format!(
                "{}.{}{index}{}{gz}",
                expanded[0],
                self.slice.format(time)?,
                self.suffix
            )
        } else {
            format!("{}{index}{}{gz}", expanded[0], self.suffix)
        };
        Ok(PathBuf::from(path))
    }

    fn write_blocking(&self, chunk: &Chunk) -> Result<(), OutputError> {
        if chunk.entries.is_empty() {
            return Ok(());
        }
        let path = self.path_for(chunk)?;
        let write = |out: &mut dyn Write| self.write_formatted(chunk, &path, out);
        if self.append {
            let _serial = self
                .append_lock
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            append_durably(&path, write)
        } else {
            replace_durably(&path, write)
        }?;
        tracing::debug!(chunk = %chunk.meta.id, path = %path.display(), "chunk written to file");
        Ok(())
    }

    /// Format the chunk's events into `out` (through gzip when configured).
    fn write_formatted(
        &self,
        chunk: &Chunk,
        path: &Path,
        out: &mut dyn Write,
    ) -> Result<(), OutputError> {
        let io_err = |e| OutputError::io(format!("writing {}", path.display()), e);
        match self.compress {
            Compression::Text => self.stream_lines(chunk, out, &io_err),
            Compression::Gzip => {
                let mut gz = flate2::write::GzEncoder::new(out, crate::output::GZIP_LEVEL);
                self.stream_lines(chunk, &mut gz, &io_err)?;
                gz.finish().map(drop).map_err(io_err)
            }
        }
    }

    /// Format a slice of about [`FORMAT_SLICE`] bytes of entries at a time, so memory stays
    /// bounded whatever the chunk size.
    fn stream_lines(
        &self,
        chunk: &Chunk,
        out: &mut dyn Write,
        io_err: &dyn Fn(io::Error) -> OutputError,
    ) -> Result<(), OutputError> {
        let entries = &chunk.entries[..];
        let mut text = Vec::with_capacity(FORMAT_SLICE * 2);
        let (mut start, mut end) = (0, 0);
        let mut flush = |range: std::ops::Range<usize>, text: &mut Vec<u8>| {
            text.clear();
            self.lines
                .write_entries(text, &chunk.meta.tag, &entries[range])?;
            out.write_all(text).map_err(io_err)
        };
        for entry in EntryIter::new(entries) {
            let entry = entry
                .map_err(|e| OutputError::Unrecoverable(format!("malformed chunk entries: {e}")))?;
            end += entry.raw.len();
            if end - start >= FORMAT_SLICE {
                flush(start..end, &mut text)?;
                start = end;
            }
        }
        if start < end {
            flush(start..end, &mut text)?;
        }
        Ok(())
    }
}

/// How many bytes of entries are formatted before the text is written out.
const FORMAT_SLICE: usize = 256 * 1024;

/// The time that fills path placeholders: the timekey, else the first event's time, else now.
fn chunk_time(chunk: &Chunk) -> EventTime {
    if let Some(key) = chunk.meta.timekey {
        return EventTime {
            secs: key.clamp(0, u32::MAX as i64) as u32,
            nanos: 0,
        };
    }
    match EntryIter::new(&chunk.entries).next() {
        Some(Ok(e)) if !e.time.is_zero() => e.time,
        _ => EventTime::now(),
    }
}

/// Fluentd's time-slice format for a timekey length.
fn timekey_to_format(timekey: Option<Duration>) -> &'static str {
    match timekey.map(|d| d.as_secs()) {
        Some(0..=59) => "%Y%m%d%H%M%S",
        Some(60..=3599) => "%Y%m%d%H%M",
        Some(3600..=86399) => "%Y%m%d%H",
        _ => "%Y%m%d",
    }
}

/// Replace `${tag}`, `${tag[N]}` and `${tag_parts[N]}`; other `${…}` stay as they are.
fn substitute_tag(s: &str, tag: &str) -> String {
    let parts: Vec<&str> = tag.split('.').collect();
    let mut out = String::with_capacity(s.len() + tag.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = &after[..end];
        match placeholder_value(name, tag, &parts) {
            Some(value) => out.push_str(&safe_segment_noted(value, "out_file path")),
            None => out.push_str(&rest[start..start + 2 + end + 1]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

fn placeholder_value<'a>(name: &str, tag: &'a str, parts: &[&'a str]) -> Option<&'a str> {
    if name == "tag" {
        return Some(tag);
    }
    let index = name
        .strip_prefix("tag[")
        .or_else(|| name.strip_prefix("tag_parts["))?
        .strip_suffix(']')?
        .trim()
        .parse::<i64>()
        .ok()?;
    let i = if index < 0 {
        parts.len() as i64 + index
    } else {
        index
    };
    usize::try_from(i).ok().and_then(|i| parts.get(i).copied())
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn sync_dir(dir: &Path) -> Result<(), OutputError> {
    crate::durable_fs::sync_dir(dir)
        .map_err(|e| OutputError::io(format!("syncing directory {}", dir.display()), e))
}

/// `create_dir_all`, then fsync the parent of every directory it created.
fn create_dirs_durably(dir: &Path) -> Result<(), OutputError> {
    crate::durable_fs::create_dir_all_durably(dir)
        .map_err(|e| OutputError::io(format!("creating directory {}", dir.display()), e))
}

/// Make what `write` produces the whole content of `path`, atomically (temp file, fsync,
/// rename, fsync dir).
fn replace_durably(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<(), OutputError>,
) -> Result<(), OutputError> {
    let dir = parent_dir(path);
    create_dirs_durably(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "chunk".into());
    let tmp = dir.join(format!(".{name}.tmp-{:016x}", rand::random::<u64>()));
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| OutputError::io(format!("creating {}", tmp.display()), e))?;
        {
            let mut buffered = io::BufWriter::with_capacity(FORMAT_SLICE, &mut f);
            write(&mut buffered)?;
            buffered
                .flush()
                .map_err(|e| OutputError::io(format!("writing {}", tmp.display()), e))?;
        }
        f.sync_all()
            .map_err(|e| OutputError::io(format!("syncing {}", tmp.display()), e))?;
        drop(f);
        fs::rename(&tmp, path).map_err(|e| {
            OutputError::io(
                format!("renaming {} to {}", tmp.display(), path.display()),
                e,
            )
        })
    })();
    if let Err(e) = written {
        if let Err(rm) = fs::remove_file(&tmp) {
            if rm.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %tmp.display(), error = %rm, "cannot remove temporary file");
            }
        }
        return Err(e);
    }
    sync_dir(dir)
}

/// Append what `write` produces to `path` and fsync; on failure cut the file back to its
/// previous length.
fn append_durably(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<(), OutputError>,
) -> Result<(), OutputError> {
    let dir = parent_dir(path);
    create_dirs_durably(dir)?;
    let existed = path.exists();
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| OutputError::io(format!("opening {}", path.display()), e))?;
    let previous_len = f
        .metadata()
        .map_err(|e| OutputError::io(format!("reading size of {}", path.display()), e))?
        .len();
    let written = {
        let mut buffered = io::BufWriter::with_capacity(FORMAT_SLICE, &mut f);
        write(&mut buffered).and_then(|()| {
            buffered
                .flush()
                .map_err(|e| OutputError::io(format!("appending to {}", path.display()), e))
        })
    }
    .and_then(|()| {
        f.sync_all()
            .map_err(|e| OutputError::io(format!("syncing {}", path.display()), e))
    });
    if let Err(e) = written {
        if let Err(cut) = f.set_len(previous_len).and_then(|_| f.sync_all()) {
            tracing::error!(
                path = %path.display(),
                error = %cut,
                previous_len,
                "cannot truncate file back after a failed append; it may hold a partial chunk"
            );
        }
        return Err(e);
    }
    if !existed {
        sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::{ChunkId, ChunkMeta};
    use crate::event::write_entry;
    use bytes::BytesMut;
    use std::fs::File;
    use std::io::Read;
    use std::time::SystemTime;

    const T0: u32 = 1_704_067_200; // 2024-01-01T00:00:00Z

    fn cfg(path: &Path) -> FileOutputConfig {
        FileOutputConfig {
            path: path.to_string_lossy().into_owned(),
            append: false,
            compress: Compression::Text,
            add_path_suffix: true,
            path_suffix: ".log".into(),
            format: FileFormat::OutFile,
        }
    }

    fn chunk(tag: &str, timekey: Option<i64>, values: &[&str]) -> Chunk {
        let mut entries = BytesMut::new();
        for (i, v) in values.iter().enumerate() {
            let rec = rmp_serde::to_vec_named(&serde_json::json!({"msg": v})).unwrap();
            let t = EventTime {
                secs: T0 + 3600 + i as u32,
                nanos: 0,
            };
            write_entry(&mut entries, t, &rec);
        }
        Chunk {
            meta: ChunkMeta {
                id: ChunkId::random(),
                tag: tag.into(),
                timekey,
                records: values.len() as u64,
                bytes: entries.len() as u64,
                created: SystemTime::now(),
            },
            entries: entries.freeze(),
            segments: Vec::new(),
        }
    }

    #[tokio::test]
    async fn chunk_larger_than_a_format_slice_is_written_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let values: Vec<String> = (0..6000)
            .map(|i| format!("{i:0>6}{}", "y".repeat(90)))
            .collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let c = chunk("big", None, &refs);
        assert!(c.entries.len() > 2 * FORMAT_SLICE);
        for compress in [Compression::Text, Compression::Gzip] {
            let mut conf = cfg(&dir.path().join(format!("{compress:?}")));
            conf.compress = compress;
            let out = utc(&conf, None);
            out.write(&c).await.unwrap();
            let path = out.path_for(&c).unwrap();
            let mut text = String::new();
            match compress {
                Compression::Text => text = fs::read_to_string(&path).unwrap(),
                Compression::Gzip => {
                    flate2::read::MultiGzDecoder::new(File::open(&path).unwrap())
                        .read_to_string(&mut text)
                        .unwrap();
                }
            }
            let got: Vec<String> = text
                .lines()
                .map(|l| {
                    let json = l.splitn(3, '\t').nth(2).unwrap();
                    serde_json::from_str::<serde_json::Value>(json).unwrap()["msg"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect();
            assert_eq!(got, values, "{compress:?}");
        }
    }

    fn utc(cfg: &FileOutputConfig, timekey: Option<Duration>) -> FileOutput {
        FileOutput::build(cfg, timekey, Zone::Utc, Zone::Utc).unwrap()
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn lines_match_fluentd_out_file_and_name_uses_chunk_id() {
        let dir = tempfile::tempdir().unwrap();
        let out = utc(
            &cfg(&dir.path().join("app")),
            Some(Duration::from_secs(86400)),
        );
        let c = chunk("web.access", Some(T0 as i64), &["a", "b"]);
        out.write(&c).await.unwrap();
        let name = format!("app.20240101_{}.log", c.meta.id.to_hex());
        assert_eq!(files_in(dir.path()), vec![name.clone()]);
        let text = fs::read_to_string(dir.path().join(&name)).unwrap();
        assert_eq!(
            text,
            "2024-01-01T01:00:00+0000\tweb.access\t{\"msg\":\"a\"}\n\
             2024-01-01T01:00:01+0000\tweb.access\t{\"msg\":\"b\"}\n"
        );
    }

    #[tokio::test]
    async fn same_chunk_twice_leaves_one_file_with_the_chunk_once() {
        let dir = tempfile::tempdir().unwrap();
        let out = utc(&cfg(&dir.path().join("app")), None);
        let c = chunk("t", Some(T0 as i64), &["x"]);
        out.write(&c).await.unwrap();
        out.write(&c).await.unwrap();
        let other = chunk("t", Some(T0 as i64), &["y"]);
        out.write(&other).await.unwrap();
        let files = files_in(dir.path());
        assert_eq!(files.len(), 2, "{files:?}");
        let first = fs::read_to_string(out.path_for(&c).unwrap()).unwrap();
        assert_eq!(first.lines().count(), 1);
        assert!(first.contains("\"x\""));
    }

    #[tokio::test]
    async fn placeholders_tag_and_hourly_slice() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(&dir.path().join("${tag}/${tag[-1]}.%Y-%m-%d"));
        c.format = FileFormat::Json;
        let out = utc(&c, Some(Duration::from_secs(3600)));
        let ch = chunk("web.access", Some(T0 as i64 + 3600), &["a"]);
        out.write(&ch).await.unwrap();
        let expected = dir.path().join(format!(
            "web.access/access.2024-01-01_{}.log",
            ch.meta.id.to_hex()
        ));
        assert_eq!(out.path_for(&ch).unwrap(), expected);
        assert_eq!(fs::read_to_string(&expected).unwrap(), "{\"msg\":\"a\"}\n");

        // No placeholder in path: the hourly slice is appended. Without a timekey, nothing is.
        let out = utc(
            &cfg(&dir.path().join("plain")),
            Some(Duration::from_secs(3600)),
        );
        let name = out.path_for(&ch).unwrap();
        assert!(name.ends_with(format!("plain.2024010101_{}.log", ch.meta.id.to_hex())));
        let untimed = chunk("t", None, &["a"]);
        let name = out.path_for(&untimed).unwrap();
        assert!(name.ends_with(format!("plain_{}.log", untimed.meta.id.to_hex())));

        // Without a time key, placeholders use the first event's time.
        let out = utc(&cfg(&dir.path().join("d.%Y%m%d%H")), None);
        let name = out.path_for(&untimed).unwrap();
        assert!(name.ends_with(format!("d.2024010101_{}.log", untimed.meta.id.to_hex())));

        // '*' takes the slice and index; no suffix.
        let out = utc(&cfg(&dir.path().join("star.*.txt")), None);
        let name = out.path_for(&ch).unwrap();
        assert!(name.ends_with(format!("star.20240101_{}.txt", ch.meta.id.to_hex())));
    }

    #[tokio::test]
    async fn tag_cannot_escape_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let out = utc(&cfg(&dir.path().join("logs/${tag}/f")), None);
        let ch = chunk("..", None, &["a"]);
        let path = out.path_for(&ch).unwrap();
        assert!(path.starts_with(dir.path().join("logs")));
        assert!(!path
            .components()
            .any(|c| c == std::path::Component::ParentDir));
        let ch = chunk("a/../../b", None, &["a"]);
        let path = out.path_for(&ch).unwrap();
        assert_eq!(path.parent().unwrap(), dir.path().join("logs/a_.._.._b"));
    }

    #[tokio::test]
    async fn hostile_and_long_tags_are_written_under_safe_names_inside_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        let out = utc(&cfg(&logs.join("${tag}/f")), None);
        let long = "x".repeat(300);
        for tag in ["../../etc", "..", "/etc/passwd", "a\nb", long.as_str()] {
            let ch = chunk(tag, None, &["v"]);
            out.write(&ch).await.unwrap();
            let path = out.path_for(&ch).unwrap();
            assert!(path.starts_with(&logs), "{tag:?} → {}", path.display());
            assert!(!path
                .components()
                .any(|c| c == std::path::Component::ParentDir));
            assert!(fs::read_to_string(&path)
                .unwrap()
                .ends_with("\t{\"msg\":\"v\"}\n"));
            for c in path.components() {
                assert!(c.as_os_str().len() <= 255, "{}", path.display());
            }
        }
        // Nothing was written outside `logs`.
        assert_eq!(files_in(dir.path()), vec!["logs".to_string()]);
        // The long tag's directory: cut, with a hash, deterministic.
        let ch = chunk(&long, None, &["v"]);
        let parent = out.path_for(&ch).unwrap().parent().unwrap().to_path_buf();
        assert_eq!(
            parent,
            logs.join(&*crate::output::safe_name::safe_segment(&long))
        );
        assert_eq!(parent.file_name().unwrap().len(), 200);
    }

    #[tokio::test]
    async fn gzip_is_readable_and_append_appends_members() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(&dir.path().join("z"));
        c.compress = Compression::Gzip;
        c.append = true;
        let out = utc(&c, Some(Duration::from_secs(86400)));
        out.write(&chunk("t", Some(T0 as i64), &["one"]))
            .await
            .unwrap();
        out.write(&chunk("t", Some(T0 as i64), &["two", "three"]))
            .await
            .unwrap();
        assert_eq!(files_in(dir.path()), vec!["z.20240101.log.gz".to_string()]);
        let raw = fs::read(dir.path().join("z.20240101.log.gz")).unwrap();
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_string(&mut text)
            .unwrap();
        let msgs: Vec<&str> = text
            .lines()
            .map(|l| l.rsplit('\t').next().unwrap())
            .collect();
        assert_eq!(
            msgs,
            vec![
                "{\"msg\":\"one\"}",
                "{\"msg\":\"two\"}",
                "{\"msg\":\"three\"}"
            ]
        );
    }

    #[tokio::test]
    async fn plain_append_without_suffix() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(&dir.path().join("sub/dir/out.txt"));
        c.append = true;
        c.add_path_suffix = false;
        c.format = FileFormat::Json;
        let out = utc(&c, None);
        out.write(&chunk("t", None, &["1"])).await.unwrap();
        out.write(&chunk("t", None, &["2"])).await.unwrap();
        let text = fs::read_to_string(dir.path().join("sub/dir/out.txt")).unwrap();
        assert_eq!(text, "{\"msg\":\"1\"}\n{\"msg\":\"2\"}\n");
    }

    #[tokio::test]
    async fn unwritable_path_is_io_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not_a_dir");
        fs::write(&blocker, b"x").unwrap();
        for append in [false, true] {
            let mut c = cfg(&blocker.join("sub/out"));
            c.append = append;
            let out = utc(&c, None);
            let err = out.write(&chunk("t", None, &["a"])).await.unwrap_err();
            match err {
                OutputError::Io { context, .. } => {
                    assert!(context.contains("not_a_dir"), "{context}")
                }
                other => panic!("expected Io, got {other:?}"),
            }
        }
        // Nothing but the blocker was left behind.
        assert_eq!(files_in(dir.path()), vec!["not_a_dir".to_string()]);
    }

    #[tokio::test]
    async fn malformed_chunk_is_unrecoverable_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let out = utc(&cfg(&dir.path().join("app")), None);
        let mut c = chunk("t", Some(T0 as i64), &["a"]);
        c.entries = bytes::Bytes::from_static(&[0x92, 0x01, 0x01]);
        assert!(matches!(
            out.write(&c).await,
            Err(OutputError::Unrecoverable(_))
        ));
        assert!(files_in(dir.path()).is_empty());
    }

    #[test]
    fn invalid_path_pattern_is_rejected() {
        let c = FileOutputConfig {
            path: "/tmp/x.%Q".into(),
            ..cfg(Path::new("/tmp/x"))
        };
        assert!(FileOutput::build(&c, None, Zone::Local, Zone::Local).is_err());
    }
}
