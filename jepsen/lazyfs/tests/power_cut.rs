//! lazyfs's promise, on a real FUSE mount (needs root and /dev/fuse): after a power cut (lazyfs
//! stopped and started again on the same backing dir) exactly what was fsynced survives —
//! file data by fsync of the file, names by fsync of their directory.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

struct Mount {
    child: Child,
    backing: PathBuf,
    mnt: PathBuf,
}

impl Mount {
    fn start(backing: &Path, mnt: &Path) -> Mount {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lazyfs"))
            .arg(backing)
            .arg(mnt)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn lazyfs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.starts_with("lazyfs: mounted"),
            "lazyfs did not mount: {line:?}"
        );
        Mount {
            child,
            backing: backing.to_path_buf(),
            mnt: mnt.to_path_buf(),
        }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// Cut the power and boot again on what survived.
    fn power_cut(mut self) -> Mount {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        assert!(self.child.wait().unwrap().success());
        let (backing, mnt) = (self.backing.clone(), self.mnt.clone());
        std::mem::forget(self); // its Drop would unmount the new mount at the same path
        Mount::start(&backing, &mnt)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}

/// A fresh mount under a temp dir; None (test skipped, said on stderr) without root or FUSE.
fn mount() -> Option<(tempfile::TempDir, Mount)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !Path::new("/dev/fuse").exists() {
        eprintln!("SKIPPED: lazyfs tests need root and /dev/fuse");
        return None;
    }
    let t = tempfile::tempdir().unwrap();
    let m = Mount::start(&t.path().join("backing"), &t.path().join("mnt"));
    Some((t, m))
}

fn fsync(p: &Path) {
    File::open(p).unwrap().sync_all().unwrap();
}

fn write(p: &Path, data: &[u8]) {
    let mut f = File::create(p).unwrap();
    f.write_all(data).unwrap();
}

fn append(p: &Path, data: &[u8]) {
    OpenOptions::new()
        .append(true)
        .open(p)
        .unwrap()
        .write_all(data)
        .unwrap();
}

fn read(p: &Path) -> Option<Vec<u8>> {
    fs::read(p).ok()
}

/// A file made durable the proper way: data fsynced, then its directory.
fn durable_file(m: &Mount, rel: &str, data: &[u8]) {
    write(&m.p(rel), data);
    fsync(&m.p(rel));
    fsync(m.p(rel).parent().unwrap());
}

#[test]
fn unsynced_writes_are_lost_and_synced_ones_kept() {
    let Some((_t, m)) = mount() else { return };
    durable_file(&m, "log", b"one\n");
    append(&m.p("log"), b"two\n");
    assert_eq!(
        read(&m.p("log")).unwrap(),
        b"one\ntwo\n",
        "before the cut, reads see the page cache"
    );
    fsync(&m.p("log"));
    append(&m.p("log"), b"three\n");
    let m = m.power_cut();
    assert_eq!(read(&m.p("log")).unwrap(), b"one\ntwo\n");
    // Synced state survives a second cut too, and the file works as before.
    append(&m.p("log"), b"four\n");
    let m = m.power_cut();
    assert_eq!(read(&m.p("log")).unwrap(), b"one\ntwo\n");
}

#[test]
fn a_new_file_never_synced_is_gone() {
    let Some((_t, m)) = mount() else { return };
    write(&m.p("volatile"), b"data");
    let m = m.power_cut();
    assert!(read(&m.p("volatile")).is_none());
}

#[test]
fn a_file_fsynced_without_its_directory_is_gone() {
    let Some((_t, m)) = mount() else { return };
    write(&m.p("f"), b"data");
    fsync(&m.p("f"));
    let m = m.power_cut();
    assert!(read(&m.p("f")).is_none(), "the name was never made durable");
}

#[test]
fn a_directory_fsync_without_the_file_fsync_keeps_the_name_not_the_data() {
    let Some((_t, m)) = mount() else { return };
    write(&m.p("f"), b"data");
    fsync(&m.mnt);
    let m = m.power_cut();
    assert_eq!(read(&m.p("f")).unwrap(), b"", "name durable, data not");
}

#[test]
fn rename_needs_the_directory_fsync() {
    let Some((_t, m)) = mount() else { return };
    durable_file(&m, "current", b"v1");
    // The atomic-replace pattern without the final directory fsync: the rename is lost.
    write(&m.p("tmp"), b"v2");
    fsync(&m.p("tmp"));
    fs::rename(m.p("tmp"), m.p("current")).unwrap();
    assert_eq!(read(&m.p("current")).unwrap(), b"v2");
    let m = m.power_cut();
    assert_eq!(read(&m.p("current")).unwrap(), b"v1");
    assert!(read(&m.p("tmp")).is_none());
    // With it, the new content is there under the new name and the old name is gone.
    write(&m.p("tmp"), b"v3");
    fsync(&m.p("tmp"));
    fs::rename(m.p("tmp"), m.p("current")).unwrap();
    fsync(&m.mnt);
    let m = m.power_cut();
    assert_eq!(read(&m.p("current")).unwrap(), b"v3");
    assert!(read(&m.p("tmp")).is_none());
}

#[test]
fn rename_of_a_file_that_was_not_synced_keeps_only_synced_data() {
    let Some((_t, m)) = mount() else { return };
    durable_file(&m, "a", b"synced");
    append(&m.p("a"), b"+unsynced");
    fs::rename(m.p("a"), m.p("b")).unwrap();
    fsync(&m.mnt);
    let m = m.power_cut();
    assert!(read(&m.p("a")).is_none());
    assert_eq!(read(&m.p("b")).unwrap(), b"synced");
}

#[test]
fn unlink_needs_the_directory_fsync() {
    let Some((_t, m)) = mount() else { return };
    durable_file(&m, "x", b"keep");
    fs::remove_file(m.p("x")).unwrap();
    let m = m.power_cut();
    assert_eq!(
        read(&m.p("x")).unwrap(),
        b"keep",
        "an unlink not made durable comes back"
    );
    fs::remove_file(m.p("x")).unwrap();
    fsync(&m.mnt);
    let m = m.power_cut();
    assert!(read(&m.p("x")).is_none());
}

#[test]
fn truncation_is_data_too() {
    let Some((_t, m)) = mount() else { return };
    durable_file(&m, "t", b"hello world");
    OpenOptions::new()
        .write(true)
        .open(m.p("t"))
        .unwrap()
        .set_len(5)
        .unwrap();
    let m = m.power_cut();
    assert_eq!(read(&m.p("t")).unwrap(), b"hello world");
    let f = OpenOptions::new().write(true).open(m.p("t")).unwrap();
    f.set_len(5).unwrap();
    f.sync_data().unwrap();
    drop(f);
    let m = m.power_cut();
    assert_eq!(read(&m.p("t")).unwrap(), b"hello");
    // Shrink then grow: the grown part reads as zeros, not as the old bytes.
    let f = OpenOptions::new().write(true).open(m.p("t")).unwrap();
    f.set_len(2).unwrap();
    f.set_len(4).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let m = m.power_cut();
    assert_eq!(read(&m.p("t")).unwrap(), b"he\0\0");
}

#[test]
fn subdirectories_need_their_parent_fsynced() {
    let Some((_t, m)) = mount() else { return };
    fs::create_dir(m.p("d")).unwrap();
    durable_file(&m, "d/f", b"in d");
    let m = m.power_cut();
    assert!(!m.p("d").exists(), "d itself was never named durably");
    fs::create_dir(m.p("d")).unwrap();
    fsync(&m.mnt);
    durable_file(&m, "d/f", b"in d");
    fs::create_dir(m.p("d/e")).unwrap();
    let m = m.power_cut();
    assert_eq!(read(&m.p("d/f")).unwrap(), b"in d");
    assert!(!m.p("d/e").exists());
}

#[test]
fn hard_links_share_synced_data() {
    let Some((_t, m)) = mount() else { return };
    durable_file(&m, "a", b"1");
    fs::hard_link(m.p("a"), m.p("b")).unwrap();
    fsync(&m.mnt);
    append(&m.p("b"), b"2");
    fsync(&m.p("b"));
    let m = m.power_cut();
    assert_eq!(read(&m.p("a")).unwrap(), b"12");
    assert_eq!(read(&m.p("b")).unwrap(), b"12");
    append(&m.p("a"), b"3");
    assert_eq!(
        read(&m.p("b")).unwrap(),
        b"123",
        "still one file after the cut"
    );
}

#[test]
fn o_dsync_writes_are_synced_at_once() {
    let Some((_t, m)) = mount() else { return };
    durable_file(&m, "s", b"");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_DSYNC)
            .open(m.p("s"))
            .unwrap();
        f.write_all(b"synced by O_DSYNC").unwrap();
    }
    let m = m.power_cut();
    assert_eq!(read(&m.p("s")).unwrap(), b"synced by O_DSYNC");
}
