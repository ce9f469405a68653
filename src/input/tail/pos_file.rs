//! Position files in Fluentd's format: one line per file, `path\t<16 hex pos>\t<16 hex inode>`.
//! A host moving from Fluentd keeps its pos file and continues where Fluentd stopped; lograft
//! writes the same format, so a move back works too.
//!
//! Owns reading (tolerant: a bad line is skipped with a warning; Fluentd's "unwatched" position
//! `ffffffffffffffff` is skipped; for a repeated inode the last line wins) and writing
//! (atomically: a temporary file, fsync, rename, directory fsync). It must not decide what a
//! position means for reading (that is the tailer's, which also consults the buffer's marks).

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

/// Write the entries as a pos file, atomically and durably.
pub fn write(path: &Path, entries: &[PosEntry]) -> io::Result<()> {
    let mut text = String::with_capacity(entries.len() * 64);
    for e in entries {
        text.push_str(&format!(
            "{}\t{:016x}\t{:016x}\n",
            e.path.display(),
            e.pos,
            e.inode
        ));
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = dir {
        crate::durable_fs::create_dir_all_durably(dir)?;
    }
    let tmp = path.with_extension("lograft-tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    crate::durable_fs::sync_dir(dir.unwrap_or(Path::new(".")))
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
        write(&p, &entries).unwrap();
        assert_eq!(
            fs::read_to_string(&p).unwrap(),
            "/var/log/a.log\t0000000000000020\t0000000000abcdef\n"
        );
        assert!(read(&dir.path().join("missing")).unwrap().is_empty());
    }
}
