//! The fault harness's power-loss nemesis with forwarders in the loop (issue 13, acceptance 1,
//! shortened to 30 s per run): `jepsen/run --nemesis power-loss --forwarders 2` against this
//! build's binary loses no acknowledged event, and the same run with
//! `LOGRAFT_SKIP_FSYNC=buffer` (the `fault-injection` build skipping the file buffer's
//! group-commit fsync) reports lost acknowledged events (exit 1): the harness sees a missing
//! fsync. Needs root and /dev/fuse (each host's data is on a lazyfs FUSE mount, jepsen/lazyfs,
//! built with cargo on first use).
//!
//! The valid run allows no duplicate either: a frame that one forwarder stored but could not
//! ack before it was cut, and that the client then resent to the other forwarder, reaches the
//! cluster under the client's chunk id from both (`src/origin.rs`) and is stored once.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Mutex;

/// The two runs share the machine's two cores: never at the same time.
static ONE_RUN: Mutex<()> = Mutex::new(());

fn can_mount() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root || !Path::new("/dev/fuse").exists() {
        eprintln!("SKIPPED: the power-loss nemesis needs root and /dev/fuse (lazyfs mounts)");
        return false;
    }
    true
}

/// `jepsen/run --nemesis power-loss --forwarders 2 --time 30` with `skip` as
/// LOGRAFT_SKIP_FSYNC (or unset); returns its exit code and the tail of its output.
fn run(skip: Option<&str>, ip_base: u32, extra: &[&str]) -> (Option<i32>, String) {
    let _one = ONE_RUN.lock().unwrap_or_else(|e| e.into_inner());
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(repo.join("jepsen/run"));
    cmd.args([
        "--nemesis",
        "power-loss",
        "--forwarders",
        "2",
        "--time",
        "30",
        // Raft timings that a loaded 2-core machine keeps (FUSE mounts and debug binaries):
        // at 0.1 s / 0.5 s the leader's appends time out and the cluster may not converge.
        "--heartbeat-interval",
        "0.3s",
        "--election-timeout",
        "1.5s",
    ])
    .args(["--ip-base", &ip_base.to_string()])
    .args(["--gid-base", &(47000 + ip_base * 10).to_string()])
    .arg("--workdir")
    .arg(work.path().join("run"))
    .arg("--bin")
    .arg(env!("CARGO_BIN_EXE_lograft"))
    .args(extra)
    .env_remove("LOGRAFT_SKIP_FSYNC");
    if let Some(skip) = skip {
        cmd.env("LOGRAFT_SKIP_FSYNC", skip);
    }
    let out: Output = cmd.output().expect("start jepsen/run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let tail: Vec<&str> = text.lines().rev().take(40).collect();
    (
        out.status.code(),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
    )
}

#[test]
fn power_loss_with_forwarders_ends_valid() {
    if !can_mount() {
        return;
    }
    let (code, tail) = run(None, 50, &[]);
    assert_eq!(code, Some(0), "jepsen/run did not end VALID:\n{tail}");
    assert!(tail.contains("\nVALID"), "{tail}");
    assert!(tail.contains("lost:              0"), "{tail}");
    assert!(tail.contains("duplicated:        0 "), "{tail}");
    assert!(tail.contains("power-loss"), "{tail}");
}

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the LOGRAFT_SKIP_FSYNC hook: cargo test --features fault-injection"
)]
fn power_loss_sees_a_skipped_buffer_fsync() {
    if !can_mount() {
        return;
    }
    let (code, tail) = run(Some("buffer"), 70, &[]);
    assert_eq!(code, Some(1), "a skipped fsync went unnoticed:\n{tail}");
    assert!(tail.contains("INVALID"), "{tail}");
    let lost: u64 = tail
        .lines()
        .find_map(|l| l.strip_prefix("lost:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(lost > 0, "exit 1 but no lost events:\n{tail}");
}
