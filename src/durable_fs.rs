//! Directory durability: creating directories so that they survive a power cut (each new
//! directory's parent fsynced, as POSIX requires for the new name to be durable) and fsyncing
//! a directory. Owns only these two helpers; callers wrap the errors in their own types.

use std::fs::{self, File};
use std::io;
use std::path::Path;

/// fsync a directory (makes the names created, renamed or removed in it durable).
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// `create_dir_all`, then fsync the parent of every directory it created, so the whole path
/// survives a power cut. A no-op for an existing directory.
pub(crate) fn create_dir_all_durably(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut cur = dir;
    while !cur.exists() {
        missing.push(cur.to_path_buf());
        match cur.parent() {
            Some(p) if !p.as_os_str().is_empty() => cur = p,
            _ => break,
        }
    }
    fs::create_dir_all(dir)?;
    for created in missing.iter().rev() {
        let parent = match created.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        sync_dir(parent)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_every_missing_level_and_accepts_an_existing_dir() {
        let t = tempfile::tempdir().unwrap();
        let deep = t.path().join("a/b/c");
        create_dir_all_durably(&deep).unwrap();
        assert!(deep.is_dir());
        create_dir_all_durably(&deep).unwrap();
        let file = t.path().join("f");
        fs::write(&file, b"x").unwrap();
        assert!(create_dir_all_durably(&file.join("sub")).is_err());
    }
}
