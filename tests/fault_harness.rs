//! The fault harness in the test suite (so CI runs it on every change): `jepsen/run` against this
//! build's binary, a short schedule of kill -9, SIGSTOP, partitions, disk loss and poison input
//! (oversized, malformed and too-deep frames, unsafe tags, idle and slow connections) on a
//! 3-node cluster on loopback, must end VALID (every acknowledged event in the bucket exactly once, and
//! the cluster recovered). The partition nemesis changes iptables/nft rules and runs each node
//! under its own group id, so the harness needs root; without root this test runs the nemeses
//! that do not (kill, pause, disk-loss) and says so.

use std::path::Path;
use std::process::Command;

#[test]
fn fault_harness_run_ends_valid() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let nemesis = if root {
        "kill,pause,partition,disk-loss,poison"
    } else {
        eprintln!("fault_harness: not root, so no partition nemesis (it needs iptables)");
        "kill,pause,disk-loss,poison"
    };
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(repo.join("jepsen/run"))
        .args(["--time", "40", "--nemesis", nemesis, "--workdir"])
        .arg(work.path().join("run"))
        .arg("--bin")
        .arg(env!("CARGO_BIN_EXE_lograft"))
        .output()
        .expect("start jepsen/run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let tail: Vec<&str> = text.lines().rev().take(60).collect();
    let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
    assert_eq!(
        out.status.code(),
        Some(0),
        "jepsen/run did not end VALID:\n{tail}"
    );
    assert!(text.contains("\nVALID"), "{tail}");
    assert!(text.contains("lost:              0"), "{tail}");
}
