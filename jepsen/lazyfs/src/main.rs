//! lazyfs: a LazyFS-style FUSE file system for lograft's fault harness (jepsen/README.md,
//! "power-loss"). `lazyfs BACKING MOUNTPOINT` mounts a view of BACKING/live at MOUNTPOINT in
//! which only what was fsynced is durable: file data not fsync'ed/fdatasync'ed, and names
//! created, renamed or removed in a directory that was not fsynced afterwards, live only in
//! the live tree. Stopping lazyfs (SIGTERM, SIGINT, SIGHUP, or SIGKILL) is the power cut: at
//! its next start the live tree is rebuilt from BACKING/durable, so everything unsynced is
//! gone. This file owns the command line, the mount and the signals only.

mod dirty;
mod durable;
mod fs;

use fuser::MountOption;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

fn detach(mnt: &std::path::Path) {
    if let Ok(c) = CString::new(mnt.as_os_str().as_bytes()) {
        // SAFETY: a valid NUL-terminated path. Errors (not mounted) are expected and ignored.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

fn run(backing: PathBuf, mnt: PathBuf) -> std::io::Result<()> {
    // A lazyfs that was SIGKILLed leaves a dead mount behind: detach it first.
    detach(&mnt);
    std::fs::create_dir_all(&mnt)?;
    let mut durable = durable::Durable::open(&backing.join("durable"))?;
    let live = backing.join("live");
    let rebuilt = durable.rebuild(&live)?;
    let files = rebuilt.len();
    let fs = fs::LazyFs::new(live, durable, rebuilt)?;
    let opts = [
        MountOption::FSName("lazyfs".into()),
        MountOption::AllowOther,
        MountOption::DefaultPermissions,
    ];
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let session = fuser::spawn_mount2(fs, &mnt, &opts)?;
    println!(
        "lazyfs: mounted {} (backing {}, {} durable names)",
        mnt.display(),
        backing.display(),
        files
    );
    std::io::stdout().flush()?;
    let sig = signals.forever().next();
    // The power cut: detach the mount and exit without writing anything more. Unsynced state
    // only ever lived in this process and in BACKING/live, which the next start replaces.
    detach(&mnt);
    eprintln!("lazyfs: {} power cut (signal {:?})", mnt.display(), sig);
    std::mem::forget(session);
    std::process::exit(0);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 || args[1].starts_with('-') {
        eprintln!("usage: lazyfs BACKING MOUNTPOINT\n  stop it (SIGTERM) to cut power: only fsynced state survives into the next mount");
        std::process::exit(2);
    }
    if let Err(e) = run(PathBuf::from(&args[1]), PathBuf::from(&args[2])) {
        eprintln!("lazyfs: {e}");
        std::process::exit(1);
    }
}
