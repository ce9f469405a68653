//! The durable side of lazyfs: what survives a power cut. A namespace (which names each
//! directory held at its last fsync, as ids) kept in `namespace.json`, and the data of every
//! file as of its last fsync in `data/<id>`. Rebuilding the live tree from it after a cut is
//! here too. Must not know about FUSE or about unsynced state (see `fs` and `dirty`).

use crate::dirty::Dirty;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The id of the root directory.
pub const ROOT_ID: u64 = 0;

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

/// One name in a durable directory.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub id: u64,
    pub mode: u32,
}

#[derive(Serialize, Deserialize, Debug)]
struct Namespace {
    next_id: u64,
    /// Directory id -> its names as of its last fsync.
    dirs: BTreeMap<u64, BTreeMap<String, Entry>>,
}

impl Default for Namespace {
    fn default() -> Self {
        Namespace {
            next_id: ROOT_ID + 1,
            dirs: BTreeMap::from([(ROOT_ID, BTreeMap::new())]),
        }
    }
}

/// One node of the rebuilt live tree: its path relative to the live root, its id and kind.
pub struct Rebuilt {
    pub rel: PathBuf,
    pub id: u64,
    pub kind: Kind,
}

pub struct Durable {
    dir: PathBuf,
    ns: Namespace,
}

impl Durable {
    /// Open (or create) the durable store in `dir`.
    pub fn open(dir: &Path) -> io::Result<Durable> {
        fs::create_dir_all(dir.join("data"))?;
        let ns = match fs::read(dir.join("namespace.json")) {
            Ok(b) => serde_json::from_slice(&b).map_err(io::Error::other)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Namespace::default(),
            Err(e) => return Err(e),
        };
        Ok(Durable {
            dir: dir.to_path_buf(),
            ns,
        })
    }

    pub fn new_id(&mut self) -> u64 {
        let id = self.ns.next_id;
        self.ns.next_id += 1;
        id
    }

    fn data_path(&self, id: u64) -> PathBuf {
        self.dir.join("data").join(id.to_string())
    }

    /// fsync of a file: make its durable data equal to the live file `live` (length `len`),
    /// copying only what `dirty` says changed since the last sync.
    pub fn sync_file(&self, id: u64, live: &File, dirty: &Dirty, len: u64) -> io::Result<()> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.data_path(id))?;
        let keep = dirty.trunc_min().map_or(len, |t| t.min(len));
        if f.metadata()?.len() > keep {
            f.set_len(keep)?;
        }
        f.set_len(len)?;
        let mut buf = vec![0u8; 1 << 20];
        for (start, end) in dirty.ranges() {
            let end = end.min(len);
            let mut off = start;
            while off < end {
                let n = ((end - off) as usize).min(buf.len());
                let got = live.read_at(&mut buf[..n], off)?;
                if got == 0 {
                    break;
                }
                f.write_all_at(&buf[..got], off)?;
                off += got as u64;
            }
        }
        f.sync_data()
    }

    /// fsync of a directory: its durable names become `entries`. A directory named here for
    /// the first time starts out empty (its own names become durable when it is fsynced).
    pub fn sync_dir(&mut self, dir_id: u64, entries: BTreeMap<String, Entry>) -> io::Result<()> {
        for e in entries.values() {
            if e.kind == Kind::Dir {
                self.ns.dirs.entry(e.id).or_default();
            }
        }
        self.ns.dirs.insert(dir_id, entries);
        self.save()
    }

    fn save(&self) -> io::Result<()> {
        let tmp = self.dir.join("namespace.json.tmp");
        let bytes = serde_json::to_vec(&self.ns).map_err(io::Error::other)?;
        {
            let mut f = File::create(&tmp)?;
            io::Write::write_all(&mut f, &bytes)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, self.dir.join("namespace.json"))?;
        File::open(&self.dir)?.sync_all()
    }

    /// After a power cut (that is, at every start): replace the live tree `live` with what is
    /// durable, and drop data and directories no durable name reaches. Returns every node
    /// created (the root first).
    pub fn rebuild(&mut self, live: &Path) -> io::Result<Vec<Rebuilt>> {
        if live.exists() {
            fs::remove_dir_all(live)?;
        }
        fs::create_dir_all(live)?;
        let mut out = vec![Rebuilt {
            rel: PathBuf::new(),
            id: ROOT_ID,
            kind: Kind::Dir,
        }];
        let mut first_link: HashMap<u64, PathBuf> = HashMap::new();
        let mut dirs_seen = BTreeSet::from([ROOT_ID]);
        let mut stack = vec![(ROOT_ID, PathBuf::new())];
        while let Some((dir_id, rel)) = stack.pop() {
            let entries = self.ns.dirs.get(&dir_id).cloned().unwrap_or_default();
            for (name, e) in entries {
                let child = rel.join(&name);
                let abs = live.join(&child);
                match e.kind {
                    Kind::Dir => {
                        if !dirs_seen.insert(e.id) {
                            continue; // a directory can have one name only
                        }
                        fs::create_dir(&abs)?;
                        stack.push((e.id, child.clone()));
                    }
                    Kind::File => {
                        if let Some(first) = first_link.get(&e.id) {
                            fs::hard_link(live.join(first), &abs)?;
                        } else {
                            match fs::copy(self.data_path(e.id), &abs) {
                                Ok(_) => {}
                                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                                    File::create(&abs)?;
                                }
                                Err(err) => return Err(err),
                            }
                            first_link.insert(e.id, child.clone());
                        }
                    }
                }
                fs::set_permissions(&abs, fs::Permissions::from_mode(e.mode & 0o7777))?;
                out.push(Rebuilt {
                    rel: child,
                    id: e.id,
                    kind: e.kind,
                });
            }
        }
        // Forget what no durable name reaches: such ids are never named again.
        self.ns.dirs.retain(|id, _| dirs_seen.contains(id));
        for f in fs::read_dir(self.dir.join("data"))? {
            let f = f?;
            let keep = f
                .file_name()
                .to_str()
                .and_then(|n| n.parse().ok())
                .is_some_and(|id: u64| first_link.contains_key(&id));
            if !keep {
                fs::remove_file(f.path())?;
            }
        }
        self.save()?;
        Ok(out)
    }
}
