//! Crash test of the tail input (acceptance 1 of issue 12): a writer appends uniquely numbered
//! lines to several files and rotates them, by rename + create and by copytruncate, while the
//! forwarder is SIGKILLed at random moments (at least 20 times) and restarted on the same
//! disk. Every line must reach the output exactly once.
//!
//! Two outputs: out_file on the forwarder (it names its files by chunk id, so a chunk
//! delivered again after a kill replaces its earlier copy), and out_forward to a one-node
//! aggregator cluster (which stores a chunk id once, so a chunk sent again after a kill is not
//! stored twice). A duplicate in the output can therefore only come from the tail reading a
//! line twice, and a gap only from a line it never stored.
//!
//! Two things no tailer can do are kept out of the writer's way: it rotates a file only once
//! the forwarder has recorded that file in its pos file (a file created and rotated away
//! while the forwarder is down, never seen, cannot be found), and it copytruncates only when
//! the pos file shows the file read to its end (copytruncate destroys unread lines). After a
//! copytruncate the writer goes on writing, so a file often grows past its old position while
//! the forwarder is down: the restart must notice the rewrite (`<pos file>.heads`, README
//! "Tail"); the CI run of 9246caa lost 332 lines that way before it did.
//!
//! `LOGRAFT_TAIL_CRASH_KILLS` sets the number of kills (default 20).

mod common;
use common::*;
use rand::Rng;
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const FILES: usize = 3;
const LINES_PER_ROTATION: u64 = 300;

/// The pos file's entries: inode → position.
fn pos_entries(pos: &Path) -> HashMap<u64, u64> {
    let text = std::fs::read_to_string(pos).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut p = l.rsplitn(3, '\t');
            let inode = u64::from_str_radix(p.next()?, 16).ok()?;
            let pos = u64::from_str_radix(p.next()?, 16).ok()?;
            Some((inode, pos))
        })
        .collect()
}

/// Wait (while `running`) until the pos file knows `path`'s current file, and, if `to_end`,
/// has it read to its end.
fn wait_recorded(pos: &Path, path: &Path, to_end: bool, running: &AtomicBool) -> bool {
    while running.load(Ordering::Relaxed) {
        if let Ok(m) = std::fs::metadata(path) {
            if let Some(p) = pos_entries(pos).get(&m.ino()) {
                if !to_end || *p == m.len() {
                    return true;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn writer(logs: PathBuf, pos: PathBuf, next: Arc<AtomicU64>, running: Arc<AtomicBool>) -> u64 {
    let mut rng = rand::thread_rng();
    let mut written = [0u64; FILES];
    let mut rotations = 0u64;
    while running.load(Ordering::Relaxed) {
        let i = rng.gen_range(0..FILES);
        let path = logs.join(format!("f{i}.log"));
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let mut text = String::new();
        for _ in 0..rng.gen_range(1..200) {
            let seq = next.fetch_add(1, Ordering::SeqCst);
            text.push_str(&format!(
                "{{\"seq\":{seq},\"file\":{i},\"pad\":\"{}\"}}\n",
                "p".repeat(seq as usize % 50)
            ));
            written[i] += 1;
        }
        f.write_all(text.as_bytes()).unwrap();
        drop(f);
        if written[i] >= LINES_PER_ROTATION {
            written[i] = 0;
            rotations += 1;
            let aside = logs.join(format!("f{i}.log.{rotations}"));
            if rotations.is_multiple_of(2) {
                if !wait_recorded(&pos, &path, false, &running) {
                    break;
                }
                std::fs::rename(&path, &aside).unwrap();
            } else {
                if !wait_recorded(&pos, &path, true, &running) {
                    break;
                }
                std::fs::copy(&path, &aside).unwrap();
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .unwrap()
                    .set_len(0)
                    .unwrap();
            }
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(1..4)));
    }
    rotations
}

/// Run the writer and the kills against `node` (the forwarder, tailing `logs` with `pos`),
/// then check that `out` (out_file lines) ends with every line exactly once.
fn crash_run(node: &mut Node, logs: &Path, pos: &Path, out: &Path) {
    let kills: u32 = std::env::var("LOGRAFT_TAIL_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let next = Arc::new(AtomicU64::new(0));
    let running = Arc::new(AtomicBool::new(true));
    let w = {
        let (logs, pos, next, running) = (
            logs.to_path_buf(),
            pos.to_path_buf(),
            next.clone(),
            running.clone(),
        );
        std::thread::spawn(move || writer(logs, pos, next, running))
    };
    let mut rng = rand::thread_rng();
    let started = Instant::now();
    for _ in 0..kills {
        std::thread::sleep(Duration::from_millis(rng.gen_range(100..1200)));
        node.kill9();
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..400)));
        node.spawn();
    }
    running.store(false, Ordering::Relaxed);
    let rotations = w.join().unwrap();
    let total = next.load(Ordering::SeqCst);
    eprintln!(
        "{kills} kills, {total} lines, {rotations} rotations in {:?}",
        started.elapsed()
    );
    assert!(
        rotations >= 4,
        "too few rotations ({rotations}) to test anything"
    );

    let complete = wait_until(Duration::from_secs(60), || {
        seq_counts(&read_out_file_records(out)).len() as u64 >= total
    });
    std::thread::sleep(Duration::from_secs(1));
    let counts = seq_counts(&read_out_file_records(out));
    let missing: Vec<u64> = (0..total).filter(|s| !counts.contains_key(s)).collect();
    let dups: Vec<(u64, u32)> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(s, n)| (*s, *n))
        .collect();
    assert!(
        complete && missing.is_empty() && dups.is_empty(),
        "{} missing (first {:?}), {} duplicated (first {:?}) of {total}; log tail:\n{}",
        missing.len(),
        &missing[..missing.len().min(10)],
        dups.len(),
        &dups[..dups.len().min(10)],
        node.log_text()
            .lines()
            .rev()
            .take(60)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(counts.len() as u64, total);
}

/// tail → file buffer → out_file on the forwarder itself.
#[test]
fn every_line_exactly_once_across_sigkills_and_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let pos = dir.path().join("tail.pos");
    let out = dir.path().join("out");
    let conf = ConfigText::new()
        .tail_source(
            &format!("{}/*.log", logs.display()),
            "tail.*",
            &pos,
            "  read_from_head true",
        )
        .out_file(
            "tail.**",
            out.join("lines"),
            BufferText::file(dir.path().join("buffer"))
                .param("flush_interval", "0.3s")
                .param("chunk_limit_size", "256k"),
        )
        .build();
    let mut node = Node::start(dir.path(), &conf, &[]);
    crash_run(&mut node, &logs, &pos, &out);
}

/// tail → file buffer → out_forward (acks) → a one-node aggregator cluster (which drops
/// chunks it already stored, by chunk id) → its bucket directory.
#[test]
fn every_line_exactly_once_through_out_forward_to_an_aggregator() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let pos = dir.path().join("tail.pos");
    let bucket = dir.path().join("bucket");
    let (agg_port, raft_port) = (free_port(), free_port());
    let agg_dir = dir.path().join("aggregator");
    let agg_conf = ConfigText::new()
        .forward_source(agg_port)
        .out_file(
            "test.**",
            &bucket,
            BufferText::default_type()
                .param("flush_interval", "0.3s")
                .param("chunk_limit_size", "2m"),
        )
        .raw(&format!(
            "<cluster>\n  node_id 1\n  address 127.0.0.1:{raft_port}\n  data_dir {}\n  heartbeat_interval 0.1s\n  election_timeout 0.5s\n  <member>\n    id 1\n    address 127.0.0.1:{raft_port}\n  </member>\n</cluster>",
            agg_dir.join("raft").display()
        ))
        .build();
    let _aggregator = Node::start(&agg_dir, &agg_conf, &[agg_port]);
    let fwd_dir = dir.path().join("forwarder");
    let servers = format!("<server>\n host 127.0.0.1\n port {agg_port}\n</server>\n");
    let sources = ConfigText::new().tail_source(
        &format!("{}/*.log", logs.display()),
        "test.*",
        &pos,
        "  read_from_head true",
    );
    let conf = forwarder_config(sources, &fwd_dir, &servers, "5s", "");
    let mut node = Node::start(&fwd_dir, &conf, &[]);
    crash_run(&mut node, &logs, &pos, &bucket);
}
