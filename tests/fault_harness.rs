//! The fault harness in the test suite (so CI runs it on every change): `jepsen/run` against this
//! build's binary on a 3-node cluster on loopback must end VALID (every acknowledged event in the
//! bucket exactly once, and the cluster recovered) and every nemesis of its schedule must have
//! struck. Two schedules of 30 s, the nemeses taking turns with short faults (with the
//! power-loss harness, about 3 minutes in all):
//! - kill -9, SIGSTOP, partitions, disk loss and poison input (oversized, malformed and too-deep
//!   frames, unsafe tags, idle and slow connections), the bucket a directory;
//! - the object-store faults (`s3`: 5xx, hangs, resets and slowness from a fault proxy in front
//!   of moto's S3 server, the bucket read back through the S3 API) and the compound schedules
//!   (`majority-loss`: no ack while it lasts; `double-fault`: a kill during a disk-loss
//!   replacement; `leader-disk-loss`), one of each.
//!
//! The partition nemesis changes iptables/nft rules and runs each node under its own group id,
//! so the harness needs root; without root the first run leaves partitions out and says so. The
//! power-loss nemesis (with forwarders) is `tests/power_loss_harness.rs`.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

/// The runs use the same addresses and share the machine's two cores: one at a time.
static ONE_RUN: Mutex<()> = Mutex::new(());

/// The nemeses take turns in short faults and pauses, so each strikes within 30 s.
const SHORT_TURNS: [&str; 9] = [
    "--round-robin",
    "--fault-min",
    "2",
    "--fault-max",
    "4",
    "--quiet-min",
    "1",
    "--quiet-max",
    "2",
];

/// Run `jepsen/run ARGS` (and [`SHORT_TURNS`]) against this build; assert it ended VALID with
/// nothing lost or duplicated, and that each of `nemeses` struck at least once.
fn run_valid(args: &[&str], nemeses: &str) {
    let _one = ONE_RUN.lock().unwrap_or_else(|e| e.into_inner());
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(repo.join("jepsen/run"))
        .args(args)
        .args(SHORT_TURNS)
        .arg("--workdir")
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
        "jepsen/run {args:?} did not end VALID:\n{tail}"
    );
    assert!(text.contains("\nVALID"), "{tail}");
    assert!(text.contains("lost:              0"), "{tail}");
    assert!(text.contains("duplicated:        0 "), "{tail}");
    for nemesis in nemeses.split(',') {
        assert!(
            text.contains(&format!("nemesis {nemesis} start")),
            "the {nemesis} nemesis never struck:\n{tail}"
        );
    }
}

#[test]
fn fault_harness_run_ends_valid() {
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
    run_valid(&["--time", "30", "--nemesis", nemesis], nemesis);
}

#[test]
fn object_store_faults_and_compound_schedules_end_valid() {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: the S3 bucket runs moto's server from the test venv (.ci/run makes it)",
        python.display()
    );
    let nemeses = "s3,majority-loss,double-fault,leader-disk-loss";
    run_valid(
        &[
            "--time",
            "30",
            "--nemesis",
            nemeses,
            "--bucket",
            "s3",
            "--s3-python",
            python.to_str().unwrap(),
        ],
        nemeses,
    );
}
