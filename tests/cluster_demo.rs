//! The README's cluster demo under a burst (issue 9, acceptance 1): `cluster/local up` exactly
//! as documented (its configs, ports and /tmp/lograft/cluster), 300,000 numbered events at
//! about 100,000/s into its forwarder with acks, the leader SIGKILLed mid-stream; the bucket
//! must hold every acknowledged event exactly once within 60 s of the last ack.
//!
//! The forwarder's file buffer builds chunks far larger than one Forward message should be
//! (`flush_interval 1s`, default `chunk_limit_size`), so this is also the test that chunks are
//! sent in frames the aggregators accept. Uses the fixed ports of the demo (24224, 8888,
//! 24231–24233, 7101–7103): it stops a demo that is running and starts from an empty
//! /tmp/lograft/cluster.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const ROOT: &str = "/tmp/lograft/cluster";

/// `cluster/local ARGS…` with this test build's binary; panics with its output on failure.
fn local(args: &[&str]) -> String {
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/cluster/local"))
        .args(args)
        .env("LOGRAFT_BIN", BIN)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "cluster/local {args:?} failed:\n{text}"
    );
    text
}

/// What makes `lograft cluster` act as the demo's operator (cluster/local makes the
/// certificates under ROOT/certs and uses mutual TLS).
fn operator_env() -> [(&'static str, String); 3] {
    [
        ("LOGRAFT_CLUSTER_CA", format!("{ROOT}/certs/ca.pem")),
        ("LOGRAFT_CLUSTER_CERT", format!("{ROOT}/certs/operator.pem")),
        ("LOGRAFT_CLUSTER_KEY", format!("{ROOT}/certs/operator.key")),
    ]
}

/// Stops the demo however the test ends.
struct Demo;

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/cluster/local"))
            .arg("down")
            .env("LOGRAFT_BIN", BIN)
            .output();
    }
}

/// The leader's node id as any live node reports it.
fn leader(nodes: &[u64]) -> Option<u64> {
    nodes.iter().find_map(|id| {
        let out = Command::new(BIN)
            .envs(operator_env())
            .args(["cluster", "status", "--json", "--node"])
            .arg(format!("127.0.0.1:710{id}"))
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["leader_id"].as_u64()
    })
}

/// The leader has no pending chunks and no unconfirmed batches.
fn idle(nodes: &[u64]) -> bool {
    let Some(id) = leader(nodes) else {
        return false;
    };
    let Ok(out) = Command::new(BIN)
        .envs(operator_env())
        .args(["cluster", "status", "--json", "--node"])
        .arg(format!("127.0.0.1:710{id}"))
        .output()
    else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .is_ok_and(|v| v["pending_chunks"] == 0 && v["unconfirmed_batches"] == 0)
}

#[test]
fn readme_demo_survives_a_burst_and_a_leader_kill() {
    const TOTAL: u64 = 300_000;
    let _ = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/cluster/local"))
        .arg("down")
        .env("LOGRAFT_BIN", BIN)
        .output();
    let _ = std::fs::remove_dir_all(ROOT);
    let _demo = Demo;
    local(&["up"]);

    // 4 clients × 1,000 events per acked chunk, each pausing 40 ms: at most ~100,000 events/s.
    let stream = Stream::start(
        "mytag.burst",
        24224,
        4,
        1000,
        (0, TOTAL),
        Some(Duration::from_millis(40)),
    );
    assert!(
        wait_until(Duration::from_secs(120), || stream.acked_count() >= 100_000),
        "the forwarder did not ack 100,000 events within 120 s"
    );
    let old = leader(&[1, 2, 3]).expect("no leader known");
    local(&["kill", &format!("node{old}")]);

    let acked = stream.finish();
    let last_ack = Instant::now();
    assert_eq!(acked.len() as u64, TOTAL, "the forwarder acks every event");

    let bucket = Path::new(ROOT).join("bucket");
    let live: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != old).collect();
    let mut counts = Default::default();
    let arrived = wait_until(Duration::from_secs(60), || {
        counts = seq_counts(&read_out_file_records(&bucket));
        counts.len() >= acked.len()
    });
    // Let the cluster go idle (nothing pending or unconfirmed), then count once more, so a
    // late duplicate upload would show.
    wait_until(Duration::from_secs(30), || idle(&live));
    let counts = seq_counts(&read_out_file_records(&bucket));
    let dups: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(10).collect();
    assert!(dups.is_empty(), "duplicated events in the bucket: {dups:?}");
    let missing = acked.iter().filter(|s| !counts.contains_key(s)).count();
    assert!(
        arrived && missing == 0,
        "{missing} of {} acknowledged events not in the bucket {:.0} s after the last ack \
         (new leader: {:?}); see {ROOT}/*.log",
        acked.len(),
        last_ack.elapsed().as_secs_f64(),
        leader(&live),
    );
    eprintln!(
        "all {} events in the bucket {:.1} s after the last ack",
        acked.len(),
        last_ack.elapsed().as_secs_f64()
    );
}
