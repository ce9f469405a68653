//! The FUSE file system: every operation passes through to the live tree (a plain directory),
//! while writes and truncations are recorded per file as unsynced (`dirty`) and fsync /
//! fsyncdir copy the synced state into the durable store (`durable`). Owns the inode table and
//! open handles; must not decide what survives a power cut (that is `durable`'s rebuild).

use crate::dirty::Dirty;
use crate::durable::{Durable, Entry, Kind, Rebuilt};
use fuser::{
    FileAttr, FileType, Filesystem, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
};
use libc::c_int;
use std::collections::{BTreeMap, HashMap};
use std::ffi::{CString, OsStr};
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const TTL: Duration = Duration::from_secs(1);

/// The value of an `Ok`, or answer the request with the errno and return.
macro_rules! or_reply {
    ($result:expr, $reply:ident) => {
        match $result {
            Ok(v) => v,
            Err(e) => return $reply.error(e),
        }
    };
}

struct Node {
    /// Path relative to the live root (one of its names, for a hard-linked file).
    rel: PathBuf,
    /// Durable identity: the file's data id or the directory's namespace id.
    id: u64,
    kind: Kind,
    dirty: Dirty,
}

struct Handle {
    file: File,
    ino: u64,
    /// Opened with O_SYNC / O_DSYNC: every write is synced at once.
    sync: bool,
}

pub struct LazyFs {
    live: PathBuf,
    durable: Durable,
    /// FUSE inode number -> node. FUSE numbers are the live tree's st_ino, except that the live
    /// root's st_ino and FUSE's root number 1 are swapped.
    nodes: HashMap<u64, Node>,
    root_st_ino: u64,
    handles: HashMap<u64, Handle>,
    next_fh: u64,
}

fn errno(e: io::Error) -> c_int {
    e.raw_os_error().unwrap_or(libc::EIO)
}

fn kind_of(m: &Metadata) -> Option<Kind> {
    if m.is_dir() {
        Some(Kind::Dir)
    } else if m.is_file() {
        Some(Kind::File)
    } else {
        None
    }
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs as u32)
    } else {
        UNIX_EPOCH
    }
}

fn cstr(p: &Path) -> Result<CString, c_int> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| libc::EINVAL)
}

impl LazyFs {
    /// A file system over `live`, whose nodes were just rebuilt from `durable`.
    pub fn new(live: PathBuf, durable: Durable, rebuilt: Vec<Rebuilt>) -> io::Result<LazyFs> {
        let root_st_ino = fs::metadata(&live)?.ino();
        let mut me = LazyFs {
            live,
            durable,
            nodes: HashMap::new(),
            root_st_ino,
            handles: HashMap::new(),
            next_fh: 1,
        };
        for r in rebuilt {
            let m = fs::symlink_metadata(me.live.join(&r.rel))?;
            let ino = me.fuse_ino(m.ino());
            me.nodes.insert(
                ino,
                Node {
                    rel: r.rel,
                    id: r.id,
                    kind: r.kind,
                    dirty: Dirty::default(),
                },
            );
        }
        Ok(me)
    }

    fn fuse_ino(&self, st_ino: u64) -> u64 {
        if st_ino == self.root_st_ino {
            fuser::FUSE_ROOT_ID
        } else if st_ino == fuser::FUSE_ROOT_ID {
            self.root_st_ino
        } else {
            st_ino
        }
    }

    fn abs(&self, rel: &Path) -> PathBuf {
        self.live.join(rel)
    }

    fn rel_of(&self, ino: u64) -> Result<PathBuf, c_int> {
        self.nodes
            .get(&ino)
            .map(|n| n.rel.clone())
            .ok_or(libc::ENOENT)
    }

    fn child(&self, parent: u64, name: &OsStr) -> Result<PathBuf, c_int> {
        Ok(self.rel_of(parent)?.join(name))
    }

    fn attr(&self, ino: u64, m: &Metadata) -> FileAttr {
        let kind = if m.is_dir() {
            FileType::Directory
        } else if m.file_type().is_symlink() {
            FileType::Symlink
        } else {
            FileType::RegularFile
        };
        FileAttr {
            ino,
            size: m.len(),
            blocks: m.blocks(),
            atime: time(m.atime(), m.atime_nsec()),
            mtime: time(m.mtime(), m.mtime_nsec()),
            ctime: time(m.ctime(), m.ctime_nsec()),
            crtime: UNIX_EPOCH,
            kind,
            perm: (m.mode() & 0o7777) as u16,
            nlink: m.nlink() as u32,
            uid: m.uid(),
            gid: m.gid(),
            rdev: m.rdev() as u32,
            blksize: m.blksize() as u32,
            flags: 0,
        }
    }

    /// Record the node behind `rel`. `fresh`: it was just created, so any node left under the
    /// same (reused) inode number is stale and gets a new durable id.
    fn register(&mut self, rel: PathBuf, m: &Metadata, fresh: bool) -> Result<u64, c_int> {
        let kind = kind_of(m).ok_or(libc::EOPNOTSUPP)?;
        let ino = self.fuse_ino(m.ino());
        match self.nodes.get_mut(&ino) {
            Some(n) if !fresh && n.kind == kind => n.rel = rel,
            _ => {
                let id = self.durable.new_id();
                self.nodes.insert(
                    ino,
                    Node {
                        rel,
                        id,
                        kind,
                        dirty: Dirty::default(),
                    },
                );
            }
        }
        Ok(ino)
    }

    fn entry_reply(&mut self, rel: PathBuf, fresh: bool, reply: ReplyEntry) {
        match fs::symlink_metadata(self.abs(&rel)) {
            Ok(m) => match self.register(rel, &m, fresh) {
                Ok(ino) => reply.entry(&TTL, &self.attr(ino, &m), 0),
                Err(e) => reply.error(e),
            },
            Err(e) => reply.error(errno(e)),
        }
    }

    /// fsync of a file: its data as of now becomes durable.
    fn sync_file(&mut self, ino: u64, fh: Option<u64>) -> Result<(), c_int> {
        let node = self.nodes.get(&ino).ok_or(libc::ENOENT)?;
        let opened;
        let file = match fh.and_then(|fh| self.handles.get(&fh)) {
            Some(h) => &h.file,
            None => {
                opened = File::open(self.live.join(&node.rel)).map_err(errno)?;
                &opened
            }
        };
        let len = file.metadata().map_err(errno)?.len();
        self.durable
            .sync_file(node.id, file, &node.dirty, len)
            .map_err(errno)?;
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.dirty.clear();
        }
        Ok(())
    }

    /// fsync of a directory: its names as of now become durable.
    fn sync_dir(&mut self, ino: u64) -> Result<(), c_int> {
        let rel = self.rel_of(ino)?;
        let mut entries = BTreeMap::new();
        for e in fs::read_dir(self.abs(&rel)).map_err(errno)? {
            let e = e.map_err(errno)?;
            let m = fs::symlink_metadata(e.path()).map_err(errno)?;
            let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if kind_of(&m).is_none() {
                continue; // symlinks, fifos, ...: not modelled, never durable
            }
            let child = self.register(rel.join(&name), &m, false)?;
            let n = &self.nodes[&child];
            entries.insert(
                name,
                Entry {
                    kind: n.kind,
                    id: n.id,
                    mode: m.mode() & 0o7777,
                },
            );
        }
        let id = self.nodes[&ino].id;
        self.durable.sync_dir(id, entries).map_err(errno)
    }

    /// After a rename, point the moved node (and, for a directory, everything under it) at
    /// its new path.
    fn moved(&mut self, from: &Path, to: &Path) {
        for n in self.nodes.values_mut() {
            if let Ok(rest) = n.rel.strip_prefix(from) {
                n.rel = if rest.as_os_str().is_empty() {
                    to.to_path_buf()
                } else {
                    to.join(rest)
                };
            }
        }
    }

    fn truncate(&mut self, ino: u64, fh: Option<u64>, size: u64) -> Result<(), c_int> {
        match fh.and_then(|fh| self.handles.get(&fh)) {
            Some(h) if h.file.set_len(size).is_ok() => {}
            _ => {
                let rel = self.rel_of(ino)?;
                OpenOptions::new()
                    .write(true)
                    .open(self.abs(&rel))
                    .and_then(|f| f.set_len(size))
                    .map_err(errno)?;
            }
        }
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.dirty.truncate(size);
        }
        Ok(())
    }

    fn add_handle(&mut self, file: File, ino: u64, flags: i32) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        let sync = flags & (libc::O_SYNC | libc::O_DSYNC) != 0;
        self.handles.insert(fh, Handle { file, ino, sync });
        fh
    }
}

/// Open options for a live file from FUSE open flags. Always readable (fsync copies from the
/// handle). O_APPEND is left out: the kernel gives every write its offset. O_CREAT/O_EXCL/
/// O_TRUNC are handled by the caller.
fn open_options(flags: i32) -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true);
    if flags & libc::O_ACCMODE != libc::O_RDONLY {
        o.write(true);
    }
    o.custom_flags(
        flags
            & !(libc::O_ACCMODE
                | libc::O_APPEND
                | libc::O_CREAT
                | libc::O_EXCL
                | libc::O_TRUNC
                | libc::O_NOCTTY),
    );
    o
}

impl Filesystem for LazyFs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        match self.child(parent, name) {
            Ok(rel) => self.entry_reply(rel, false, reply),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, fh: Option<u64>, reply: ReplyAttr) {
        let m = match fh.and_then(|fh| self.handles.get(&fh)) {
            Some(h) => h.file.metadata(),
            None => match self.rel_of(ino) {
                Ok(rel) => fs::symlink_metadata(self.abs(&rel)),
                Err(e) => return reply.error(e),
            },
        };
        match m {
            Ok(m) => reply.attr(&TTL, &self.attr(ino, &m)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let rel = or_reply!(self.rel_of(ino), reply);
        let abs = self.abs(&rel);
        if let Some(mode) = mode {
            if let Err(e) = fs::set_permissions(&abs, fs::Permissions::from_mode(mode & 0o7777)) {
                return reply.error(errno(e));
            }
        }
        if uid.is_some() || gid.is_some() {
            if let Err(e) = std::os::unix::fs::lchown(&abs, uid, gid) {
                return reply.error(errno(e));
            }
        }
        if let Some(size) = size {
            if let Err(e) = self.truncate(ino, fh, size) {
                return reply.error(e);
            }
        }
        match fs::symlink_metadata(&abs) {
            Ok(m) => reply.attr(&TTL, &self.attr(ino, &m)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mknod(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(libc::EOPNOTSUPP);
        }
        let rel = or_reply!(self.child(parent, name), reply);
        let r = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode & !umask & 0o7777)
            .open(self.abs(&rel));
        match r {
            Ok(_) => self.entry_reply(rel, true, reply),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mkdir(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let rel = or_reply!(self.child(parent, name), reply);
        let abs = self.abs(&rel);
        let r = fs::create_dir(&abs).and_then(|_| {
            fs::set_permissions(&abs, fs::Permissions::from_mode(mode & !umask & 0o7777))
        });
        match r {
            Ok(()) => self.entry_reply(rel, true, reply),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        match self.child(parent, name) {
            Ok(rel) => match fs::remove_file(self.abs(&rel)) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            },
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        match self.child(parent, name) {
            Ok(rel) => match fs::remove_dir(self.abs(&rel)) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            },
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        reply: ReplyEmpty,
    ) {
        let (from, to) = match (self.child(parent, name), self.child(newparent, newname)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return reply.error(e),
        };
        let (a, b) = match (cstr(&self.abs(&from)), cstr(&self.abs(&to))) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return reply.error(e),
        };
        // SAFETY: both are valid NUL-terminated paths; AT_FDCWD with absolute paths.
        let r = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                a.as_ptr(),
                libc::AT_FDCWD,
                b.as_ptr(),
                flags,
            )
        };
        if r != 0 {
            return reply.error(errno(io::Error::last_os_error()));
        }
        if flags & libc::RENAME_EXCHANGE != 0 {
            let tmp = PathBuf::from("\0lazyfs-exchange");
            self.moved(&to, &tmp);
            self.moved(&from, &to);
            self.moved(&tmp, &from);
        } else {
            self.moved(&from, &to);
        }
        reply.ok();
    }

    fn link(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        newparent: u64,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let (src, dst) = match (self.rel_of(ino), self.child(newparent, newname)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return reply.error(e),
        };
        match fs::hard_link(self.abs(&src), self.abs(&dst)) {
            Ok(()) => self.entry_reply(dst, false, reply),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        let rel = or_reply!(self.rel_of(ino), reply);
        match open_options(flags).open(self.abs(&rel)) {
            Ok(file) => {
                if flags & libc::O_TRUNC != 0 {
                    if let Err(e) = file.set_len(0) {
                        return reply.error(errno(e));
                    }
                    if let Some(n) = self.nodes.get_mut(&ino) {
                        n.dirty.truncate(0);
                    }
                }
                let fh = self.add_handle(file, ino, flags);
                reply.opened(fh, 0);
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock: Option<u64>,
        reply: ReplyData,
    ) {
        let Some(h) = self.handles.get(&fh) else {
            return reply.error(libc::EBADF);
        };
        let mut buf = vec![0u8; size as usize];
        let mut got = 0;
        while got < buf.len() {
            match h.file.read_at(&mut buf[got..], offset as u64 + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return reply.error(errno(e)),
            }
        }
        reply.data(&buf[..got]);
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        data: &[u8],
        _wflags: u32,
        _flags: i32,
        _lock: Option<u64>,
        reply: ReplyWrite,
    ) {
        let Some(h) = self.handles.get(&fh) else {
            return reply.error(libc::EBADF);
        };
        if let Err(e) = h.file.write_all_at(data, offset as u64) {
            return reply.error(errno(e));
        }
        let sync = h.sync;
        let ino = if self.nodes.contains_key(&ino) {
            ino
        } else {
            h.ino
        };
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.dirty.write(offset as u64, data.len() as u64);
        }
        if sync {
            if let Err(e) = self.sync_file(ino, Some(fh)) {
                return reply.error(e);
            }
        }
        reply.written(data.len() as u32);
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _lock: u64, reply: ReplyEmpty) {
        reply.ok(); // close() is not fsync
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        _lock: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.handles.remove(&fh);
        reply.ok();
    }

    fn fsync(&mut self, _req: &Request<'_>, ino: u64, fh: u64, _datasync: bool, reply: ReplyEmpty) {
        match self.sync_file(ino, Some(fh)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        match self.rel_of(ino) {
            Ok(_) => reply.opened(0, 0),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let rel = or_reply!(self.rel_of(ino), reply);
        let mut list = vec![
            (ino, FileType::Directory, ".".into()),
            (ino, FileType::Directory, "..".into()),
        ];
        let rd = match fs::read_dir(self.abs(&rel)) {
            Ok(rd) => rd,
            Err(e) => return reply.error(errno(e)),
        };
        for e in rd.flatten() {
            let Ok(t) = e.file_type() else { continue };
            let kind = if t.is_dir() {
                FileType::Directory
            } else if t.is_symlink() {
                FileType::Symlink
            } else {
                FileType::RegularFile
            };
            list.push((
                self.fuse_ino(std::os::unix::fs::DirEntryExt::ino(&e)),
                kind,
                e.file_name(),
            ));
        }
        for (i, (ino, kind, name)) in list.into_iter().enumerate().skip(offset as usize) {
            if reply.add(ino, (i + 1) as i64, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.sync_dir(ino) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        let Ok(p) = cstr(&self.live) else {
            return reply.error(libc::EINVAL);
        };
        // SAFETY: statvfs writes into the zeroed struct; p is a valid path.
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(p.as_ptr(), &mut s) } != 0 {
            return reply.error(errno(io::Error::last_os_error()));
        }
        reply.statfs(
            s.f_blocks,
            s.f_bfree,
            s.f_bavail,
            s.f_files,
            s.f_ffree,
            s.f_bsize as u32,
            s.f_namemax as u32,
            s.f_frsize as u32,
        );
    }

    fn access(&mut self, _req: &Request<'_>, _ino: u64, _mask: i32, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let rel = or_reply!(self.child(parent, name), reply);
        let abs = self.abs(&rel);
        let existed = fs::symlink_metadata(&abs).is_ok();
        let mut o = open_options(flags);
        o.create(true).mode(mode & !umask & 0o7777);
        if flags & libc::O_EXCL != 0 {
            o.create_new(true);
        }
        if flags & libc::O_ACCMODE == libc::O_RDONLY {
            o.write(true); // create needs write access; the kernel checks the caller's mode
        }
        let file = match o.open(&abs) {
            Ok(f) => f,
            Err(e) => return reply.error(errno(e)),
        };
        let m = match file.metadata() {
            Ok(m) => m,
            Err(e) => return reply.error(errno(e)),
        };
        let ino = or_reply!(self.register(rel, &m, !existed), reply);
        if existed && flags & libc::O_TRUNC != 0 {
            if let Err(e) = self.truncate(ino, None, 0) {
                return reply.error(e);
            }
        }
        let attr = self.attr(ino, &m);
        let fh = self.add_handle(file, ino, flags);
        reply.created(&TTL, &attr, 0, fh, 0);
    }

    fn fallocate(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        length: i64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let Some(h) = self.handles.get(&fh) else {
            return reply.error(libc::EBADF);
        };
        // SAFETY: a valid open fd.
        if unsafe { libc::fallocate(h.file.as_raw_fd(), mode, offset, length) } != 0 {
            return reply.error(errno(io::Error::last_os_error()));
        }
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.dirty.write(offset as u64, length as u64);
        }
        reply.ok();
    }
}
