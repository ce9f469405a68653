//! Source positions committed with the data (the buffer's side of
//! [`crate::pipeline::SourceMark`]): collecting them from chunk files on resume, keeping them
//! per chunk, and the *ledger* that keeps them after their chunk left the buffer.
//!
//! A position lives in the marked append that carried its data (see [`super::chunk`]), so it is
//! durable exactly when the data is. When a chunk is purged (delivered) or quarantined, the
//! positions it carried would vanish with its file; so before the file is deleted they are
//! merged into the ledger, `<dir>/source-positions.json`, written to a temporary file, fsynced
//! and renamed over the old one (then the directory is fsynced). A crash between the ledger
//! write and the delete leaves the position in both places, which is harmless: positions
//! only ever merge by maximum.
//!
//! Ledger entries not raised for [`LEDGER_KEEP`] are dropped at the next rewrite: by then the
//! source has long written the position to its own position file.
//!
//! Rewrites are serialized within the process (one lock for all ledgers).
//!
//! This module does blocking I/O; callers run it in `spawn_blocking` or at resume. It must not
//! interpret keys (they belong to the input that made them).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The ledger's file name inside a buffer directory.
pub const LEDGER_FILE: &str = "source-positions.json";
/// How long a ledger entry is kept after it was last raised.
pub const LEDGER_KEEP: Duration = Duration::from_secs(24 * 3600);

/// Positions by key; merging keeps the larger position.
pub type Positions = HashMap<String, u64>;

/// Merge `(key, position)` pairs into `into`, keeping the maximum per key.
pub fn merge<'a>(into: &mut Positions, marks: impl IntoIterator<Item = (&'a String, &'a u64)>) {
    for (k, p) in marks {
        let slot = into.entry(k.clone()).or_insert(*p);
        if *slot < *p {
            *slot = *p;
        }
    }
}

fn ledger_path(dir: &Path) -> PathBuf {
    dir.join(LEDGER_FILE)
}

/// `{key: [position, unix seconds last raised]}`.
type LedgerFile = HashMap<String, (u64, u64)>;

fn read_ledger(dir: &Path) -> io::Result<LedgerFile> {
    match fs::read(ledger_path(dir)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(HashMap::new()),
        Err(e) => Err(e),
    }
}

/// The positions in the ledger of `dir` (empty when there is none).
pub fn load_ledger(dir: &Path) -> io::Result<Positions> {
    Ok(read_ledger(dir)?
        .into_iter()
        .map(|(k, (p, _))| (k, p))
        .collect())
}

/// Serializes ledger rewrites: several output workers purge chunks at the same time, and
/// each rewrite reads, merges and replaces the whole file (through one temporary name).
static LEDGER_LOCK: Mutex<()> = Mutex::new(());

/// Merge `marks` into the ledger of `dir`, durably (temp file, fsync, rename, directory fsync).
pub fn record(dir: &Path, marks: &Positions) -> io::Result<()> {
    if marks.is_empty() {
        return Ok(());
    }
    let _serial = LEDGER_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut ledger = read_ledger(dir).unwrap_or_default();
    for (k, p) in marks {
        let slot = ledger.entry(k.clone()).or_insert((*p, now));
        if slot.0 <= *p {
            *slot = (*p, now);
        }
    }
    let keep_after = now.saturating_sub(LEDGER_KEEP.as_secs());
    ledger.retain(|_, (_, raised)| *raised >= keep_after);
    let bytes = serde_json::to_vec(&ledger).map_err(io::Error::other)?;
    let tmp = dir.join(format!("{LEDGER_FILE}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, ledger_path(dir))?;
    crate::durable_fs::sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_records_keep_the_ledger_whole() {
        let dir = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let dir = dir.path().to_path_buf();
                std::thread::spawn(move || {
                    for i in 0..20u64 {
                        let m: Positions =
                            [(format!("k{t}"), i), ("shared".to_string(), t * 100 + i)].into();
                        record(&dir, &m).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let got = load_ledger(dir.path()).unwrap();
        assert_eq!(got.len(), 9);
        assert_eq!(got["shared"], 719);
        assert_eq!(got["k3"], 19);
    }

    #[test]
    fn ledger_keeps_the_maximum_per_key() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_ledger(dir.path()).unwrap().is_empty());
        let a: Positions = [("a".to_string(), 10), ("b".to_string(), 5)].into();
        record(dir.path(), &a).unwrap();
        let lower: Positions = [("a".to_string(), 3)].into();
        record(dir.path(), &lower).unwrap();
        let got = load_ledger(dir.path()).unwrap();
        assert_eq!(got.get("a"), Some(&10));
        assert_eq!(got.get("b"), Some(&5));
        let mut merged: Positions = [("a".to_string(), 20)].into();
        merge(&mut merged, &got);
        assert_eq!(merged.get("a"), Some(&20));
        assert_eq!(merged.get("b"), Some(&5));
    }
}
