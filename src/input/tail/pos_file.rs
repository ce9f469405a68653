//! Position files in Fluentd's format: one line per file, `path\t<16 hex pos>\t<16 hex inode>`.
//! A host moving from Fluentd keeps its pos file and continues where Fluentd stopped; lograft
//! writes the same format, so a move back works too.
//!
//! Owns reading (tolerant: a bad line is skipped with a warning; Fluentd's "unwatched" position
//! `ffffffffffffffff` is skipped; for a repeated inode the last line wins) and writing
//! (atomically: a temporary file, fsync, rename, directory fsync). It must not decide what a
//! position means for reading (that is the tailer's, which also consults the buffer's marks).
//!
//! Beside the pos file, lograft keeps `<pos file>.heads` (Fluentd never reads it): per inode,
//! the generation and a checksum of the file's first bytes ([`Head`]), so that after a restart
//! a file that was copytruncated and written past its old position while lograft was stopped
//! is recognized as rewritten. A missing or unreadable heads file only turns that check off.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Fluentd's marker for an entry no longer watched.
const UNWATCHED: u64 = u64::MAX;

/// One pos-file line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PosEntry {
    pub path: PathBuf,
    pub pos: u64,
    pub inode: u64,
}

/// Positions by inode.
pub type PosTable = HashMap<u64, PosEntry>;

/// Read a pos file (a missing file is an empty table).
pub fn read(path: &Path) -> io::Result<PosTable> {
    let text = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(PosTable::new()),
        Err(e) => return Err(e),
    };
    let mut table = PosTable::new();
    for (n, line) in text.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        match parse_line(line) {
            Some(e) if e.pos == UNWATCHED => {}
            Some(e) => {
                table.insert(e.inode, e);
            }
            None => {
                tracing::warn!(pos_file = %path.display(), line = n + 1, "unreadable pos file line; skipped")
            }
        }
    }
    Ok(table)
}

fn parse_line(line: &[u8]) -> Option<PosEntry> {
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.rsplitn(3, '\t');
    let inode = u64::from_str_radix(parts.next()?.trim(), 16).ok()?;
    let pos = u64::from_str_radix(parts.next()?.trim(), 16).ok()?;
    let path = PathBuf::from(parts.next()?);
    Some(PosEntry { path, pos, inode })
}

/// Write the entries as the pos file at `path` and `heads` as its heads file, each atomically
/// (a temporary file, fsync, rename; the pos file first), then fsync the directory once. A
/// stop between the two renames leaves heads whose positions do not match the pos file's,
/// which the tailer then ignores.
pub fn write(path: &Path, entries: &[PosEntry], heads: &[(u64, Head)]) -> io::Result<()> {
    let mut text = String::with_capacity(entries.len() * 64);
    for e in entries {
        text.push_str(&format!(
            "{}\t{:016x}\t{:016x}\n",
            e.path.display(),
            e.pos,
            e.inode
        ));
    }
    let mut heads_text = String::with_capacity(heads.len() * 40);
    for (inode, h) in heads {
        heads_text.push_str(&format!(
            "{inode:x}\t{:x}\t{:x}\t{:x}\t{:x}\n",
            h.generation, h.commit, h.len, h.crc
        ));
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = dir {
        crate::durable_fs::create_dir_all_durably(dir)?;
    }
    replace_file(path, &text)?;
    replace_file(&heads_path(path), &heads_text)?;
    crate::durable_fs::sync_dir(dir.unwrap_or(Path::new(".")))
}

/// Replace `path` by a file holding `text`: written to a temporary file, fsynced, renamed.
fn replace_file(path: &Path, text: &str) -> io::Result<()> {
    let tmp = path.with_extension("lograft-tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)
}

/// What the tailer last saw at the start of a file: in generation `generation` (truncations
/// seen), when its committed position was `commit`, the crc32c of its first `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub generation: u32,
    pub commit: u64,
    pub len: usize,
    pub crc: u32,
}

/// The heads file kept beside the pos file at `pos_path`.
pub fn heads_path(pos_path: &Path) -> PathBuf {
    let mut name = pos_path.as_os_str().to_owned();
    name.push(".heads");
    PathBuf::from(name)
}

/// Read a heads file (missing: empty; bad lines are skipped).
pub fn read_heads(path: &Path) -> io::Result<HashMap<u64, Head>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(e),
    };
    let mut heads = HashMap::new();
    for line in text.lines() {
        let mut p = line.split('\t');
        let mut field = || p.next().and_then(|v| u64::from_str_radix(v, 16).ok());
        if let (Some(inode), Some(generation), Some(commit), Some(len), Some(crc)) =
            (field(), field(), field(), field(), field())
        {
            heads.insert(
                inode,
                Head {
                    generation: generation as u32,
                    commit,
                    len: len as usize,
                    crc: crc as u32,
                },
            );
        }
    }
    Ok(heads)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fluentd_lines_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("app.pos");
        // As Fluentd writes it: fixed-width hex, an unwatched entry, a repeated inode.
        fs::write(
            &p,
            "/var/log/a.log\t0000000000000010\t0000000000abcdef\n\
             /var/log/old.log\tffffffffffffffff\t0000000000000002\n\
             /var/log/a.log\t0000000000000020\t0000000000abcdef\n\
             garbage\n",
        )
        .unwrap();
        let t = read(&p).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[&0xabcdef].pos, 0x20);
        assert_eq!(t[&0xabcdef].path, PathBuf::from("/var/log/a.log"));
        let entries = vec![t[&0xabcdef].clone()];
        write(&p, &entries, &[]).unwrap();
        assert_eq!(
            fs::read_to_string(&p).unwrap(),
            "/var/log/a.log\t0000000000000020\t0000000000abcdef\n"
        );
        assert!(read(&dir.path().join("missing")).unwrap().is_empty());
    }

    #[test]
    fn heads_round_trip_beside_the_pos_file() {
        let dir = tempfile::tempdir().unwrap();
        let hp = heads_path(&dir.path().join("app.pos"));
        assert_eq!(hp, dir.path().join("app.pos.heads"));
        assert!(read_heads(&hp).unwrap().is_empty());
        let h = Head {
            generation: 3,
            commit: 4096,
            len: 64,
            crc: 0xdead_beef,
        };
        write(&dir.path().join("app.pos"), &[], &[(0xabcdef, h)]).unwrap();
        fs::write(
            &hp,
            format!("{}garbage\n", fs::read_to_string(&hp).unwrap()),
        )
        .unwrap();
        let read = read_heads(&hp).unwrap();
        // A file's head before any checksum (`TailedFile::head`) is length 0, checksum 0.
        assert_eq!(crc32c::crc32c(&[]), 0);
        assert_eq!(read.len(), 1);
        assert_eq!(read[&0xabcdef], h);
    }
}
