//! Which files a tail source reads: expanding the `path` globs (minus `exclude_path`,
//! `limit_recently_modified`), identifying files by inode, the directories to search for a
//! rotated file by its inode, and the tag of a file (`*` in `tag` replaced by its path).
//!
//! Owns only discovery (blocking `stat`s and directory reads, run on the tail thread); it must
//! not open files for reading nor keep positions.

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A file found by the globs.
#[derive(Debug, Clone)]
pub struct Found {
    pub path: PathBuf,
    pub inode: u64,
    pub size: u64,
}

/// Why a path could not be looked at.
#[derive(Debug)]
pub struct Unreadable {
    pub path: PathBuf,
    pub error: std::io::Error,
}

/// Expand the globs: regular files (symlinks followed), not excluded, recently modified
/// enough; by inode (a file matched twice, e.g. through a symlink, is kept once).
pub fn expand(
    paths: &[String],
    exclude: &[glob::Pattern],
    recently_modified: Option<Duration>,
    unreadable: &mut Vec<Unreadable>,
) -> HashMap<u64, Found> {
    let mut out = HashMap::new();
    let now = SystemTime::now();
    for pattern in paths {
        let Ok(entries) = glob::glob(pattern) else {
            continue;
        };
        for entry in entries {
            let path = match entry {
                Ok(p) => p,
                Err(e) => {
                    unreadable.push(Unreadable {
                        path: e.path().to_path_buf(),
                        error: e.into(),
                    });
                    continue;
                }
            };
            if exclude.iter().any(|x| x.matches_path(&path)) {
                continue;
            }
            let meta = match std::fs::metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => {
                    unreadable.push(Unreadable { path, error });
                    continue;
                }
            };
            if !meta.is_file() {
                continue;
            }
            if let (Some(limit), Ok(mtime)) = (recently_modified, meta.modified()) {
                if now.duration_since(mtime).unwrap_or_default() > limit {
                    continue;
                }
            }
            out.entry(meta.ino()).or_insert(Found {
                path,
                inode: meta.ino(),
                size: meta.size(),
            });
        }
    }
    out
}

/// Directories where a rotated file may be found: those of the files found, and the longest
/// wildcard-free directory prefix of each pattern.
pub fn search_dirs<'a>(paths: &[String], found: impl Iterator<Item = &'a Found>) -> Vec<PathBuf> {
    let mut dirs = BTreeSet::new();
    for f in found {
        if let Some(d) = f.path.parent() {
            dirs.insert(d.to_path_buf());
        }
    }
    for p in paths {
        let literal: PathBuf = Path::new(p)
            .components()
            .take_while(|c| !c.as_os_str().to_string_lossy().contains(['*', '?', '[']))
            .collect();
        let dir = if literal.as_os_str() == p.as_str() {
            literal.parent().map(Path::to_path_buf)
        } else {
            Some(literal)
        };
        if let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(d);
        }
    }
    dirs.into_iter().collect()
}

/// Find regular files with any of `inodes` in `dirs` (not recursive).
pub fn find_inodes(dirs: &[PathBuf], inodes: &BTreeSet<u64>) -> HashMap<u64, Found> {
    let mut out = HashMap::new();
    if inodes.is_empty() {
        return out;
    }
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(d) else {
            continue;
        };
        for entry in rd.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_file() && inodes.contains(&meta.ino()) {
                out.entry(meta.ino()).or_insert(Found {
                    path: entry.path(),
                    inode: meta.ino(),
                    size: meta.size(),
                });
            }
        }
    }
    out
}

/// The tag of a file: a `*` in `tag` is replaced by the path with `/` turned into `.`
/// (repeated dots squeezed, no leading dot), as Fluentd does.
pub fn tag_for(tag: &str, path: &Path) -> String {
    let Some((prefix, suffix)) = tag.split_once('*') else {
        return tag.to_string();
    };
    let mut expanded = String::new();
    for c in path.to_string_lossy().chars() {
        let c = if c == '/' { '.' } else { c };
        if c == '.' && (expanded.is_empty() || expanded.ends_with('.')) {
            continue;
        }
        expanded.push(c);
    }
    format!("{prefix}{expanded}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_expand_like_fluentd() {
        assert_eq!(tag_for("app", Path::new("/var/log/a.log")), "app");
        assert_eq!(
            tag_for("kube.*", Path::new("/var/log/containers/x_y.log")),
            "kube.var.log.containers.x_y.log"
        );
        assert_eq!(tag_for("a.*.b", Path::new("/x/y")), "a.x.y.b");
    }

    #[test]
    fn globs_with_double_star_and_excludes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        for f in ["x.log", "a/y.log", "a/b/z.log", "a/b/skip.log", "a/b/z.txt"] {
            std::fs::write(root.join(f), "1\n").unwrap();
        }
        let patterns = vec![format!("{}/**/*.log", root.display())];
        let exclude = vec![glob::Pattern::new("**/skip.log").unwrap()];
        let mut bad = Vec::new();
        let found = expand(&patterns, &exclude, None, &mut bad);
        let mut names: Vec<_> = found
            .values()
            .map(|f| f.path.strip_prefix(root).unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(names, vec!["a/b/z.log", "a/y.log", "x.log"]);
        let dirs = search_dirs(&patterns, found.values());
        assert!(dirs.contains(&root.to_path_buf()));
    }
}
