//! The tail input against the real binary: files on disk in, out_file lines out (through a
//! file buffer). Covers reading, tags, Fluentd pos files, rotation (rename + create,
//! copytruncate, truncation, deletion, a reappearing file), glob refresh, 1,000 files,
//! oversized lines, permission errors, CRI partial lines and multiline groups.

mod common;

use common::*;
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    logs: PathBuf,
    out: PathBuf,
    pos: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let logs = root.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    Setup {
        out: root.join("out"),
        pos: root.join("tail.pos"),
        logs,
        root,
        _dir: dir,
    }
}

impl Setup {
    fn config(&self, path: &str, tag: &str, extra: &str) -> String {
        ConfigText::new()
            .tail_source(path, tag, &self.pos, extra)
            .out_file(
                "**",
                self.out.join("out"),
                BufferText::file(self.root.join("buffer")).param("flush_interval", "0.2s"),
            )
            .build()
    }

    /// Start the node and wait until its tail source did its first scan.
    fn start(&self, path: &str, tag: &str, extra: &str) -> Node {
        let node = Node::start(&self.root.join("node"), &self.config(path, tag, extra), &[]);
        wait_started(&node, 1);
        node
    }

    fn records(&self) -> Vec<(String, serde_json::Value)> {
        read_out_file_records(&self.out)
    }

    /// Wait until every seq in `want` arrived; then check each arrived exactly once and
    /// nothing else did.
    fn expect_exactly(&self, node: &Node, want: impl IntoIterator<Item = u64>) {
        let want: Vec<u64> = want.into_iter().collect();
        let ok = wait_until(Duration::from_secs(30), || {
            let c = seq_counts(&self.records());
            want.iter().all(|s| c.contains_key(s))
        });
        // Give stragglers (duplicates) a moment to show up.
        std::thread::sleep(Duration::from_millis(600));
        let counts = seq_counts(&self.records());
        let missing: Vec<_> = want.iter().filter(|s| !counts.contains_key(s)).collect();
        assert!(
            ok && missing.is_empty(),
            "missing {} seqs (first {:?}); log:\n{}",
            missing.len(),
            missing.iter().take(5).collect::<Vec<_>>(),
            node.log_text()
        );
        let dup: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            dup.is_empty(),
            "duplicated: {:?}",
            dup.iter().take(5).collect::<Vec<_>>()
        );
        let extra: Vec<_> = counts.keys().filter(|s| !want.contains(s)).collect();
        assert!(
            extra.is_empty(),
            "unexpected seqs: {:?}",
            extra.iter().take(5).collect::<Vec<_>>()
        );
    }
}

fn append(path: &Path, seqs: impl IntoIterator<Item = u64>) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut text = String::new();
    for s in seqs {
        text.push_str(&format!("{{\"seq\":{s},\"pad\":\"abcdefgh\"}}\n"));
    }
    f.write_all(text.as_bytes()).unwrap();
}

/// Wait until the node (its `n`-th run) has started and its tail source did its first scan.
fn wait_started(node: &Node, n: usize) {
    assert!(
        wait_until(Duration::from_secs(20), || node
            .log_text()
            .matches("tail input watching")
            .count()
            >= n),
        "not started; log:\n{}",
        node.log_text()
    );
}

/// Wait until the node follows `path` (its log says so).
fn wait_following(node: &Node, n: usize) {
    assert!(
        wait_until(Duration::from_secs(20), || node
            .log_text()
            .matches("following file")
            .count()
            >= n),
        "not following {n} files; log:\n{}",
        node.log_text()
    );
}

#[test]
fn reads_new_lines_with_tag_expansion_and_path_key() {
    let s = setup();
    let a = s.logs.join("a.log");
    append(&a, 0..5); // present at first start, no read_from_head: skipped
    let mut node = s.start(
        &format!("{}/*.log", s.logs.display()),
        "app.*",
        "  path_key file",
    );
    wait_following(&node, 1);
    append(&a, 5..105);
    s.expect_exactly(&node, 5..105);
    let recs = s.records();
    // `/` becomes `.`, repeated dots are squeezed (`/tmp/.tmpX` → `tmp.tmpX`).
    let mut expected_tag = format!("app.{}", a.display()).replace('/', ".");
    while expected_tag.contains("..") {
        expected_tag = expected_tag.replace("..", ".");
    }
    assert!(
        recs.iter().all(|(t, _)| *t == expected_tag),
        "{:?}",
        recs[0]
    );
    assert_eq!(recs[0].1["file"], a.display().to_string());
    assert_eq!(node.terminate(), Some(0));
    // The pos file is Fluentd's format and points at the end.
    let text = std::fs::read_to_string(&s.pos).unwrap();
    let size = std::fs::metadata(&a).unwrap().len();
    let ino = std::fs::metadata(&a).unwrap().ino();
    assert_eq!(text, format!("{}\t{size:016x}\t{ino:016x}\n", a.display()));
}

#[test]
fn a_fluentd_pos_file_is_honoured() {
    let s = setup();
    let a = s.logs.join("a.log");
    append(&a, 0..10);
    let line_len = std::fs::read_to_string(&a)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .len()
        + 1;
    let ino = std::fs::metadata(&a).unwrap().ino();
    // What Fluentd leaves behind after reading 4 lines (plus an unwatched entry).
    std::fs::write(
        &s.pos,
        format!(
            "{}\t{:016x}\t{ino:016x}\n/gone.log\tffffffffffffffff\t0000000000000001\n",
            a.display(),
            4 * line_len
        ),
    )
    .unwrap();
    let node = s.start(&a.display().to_string(), "app", "");
    wait_following(&node, 1);
    append(&a, 10..20);
    s.expect_exactly(&node, 4..20);
}

#[test]
fn read_from_head_and_restart_continue_exactly() {
    let s = setup();
    let a = s.logs.join("a.log");
    append(&a, 0..50);
    let mut node = s.start(&a.display().to_string(), "app", "  read_from_head true");
    s.expect_exactly(&node, 0..50);
    assert_eq!(node.terminate(), Some(0));
    append(&a, 50..80);
    node.spawn();
    s.expect_exactly(&node, 0..80);
    node.kill9();
    append(&a, 80..90);
    node.spawn();
    s.expect_exactly(&node, 0..90);
}

#[test]
fn rename_and_create_rotation_loses_nothing() {
    let s = setup();
    let a = s.logs.join("a.log");
    append(&a, 0..0);
    let node = s.start(&a.display().to_string(), "app", "");
    wait_following(&node, 1);
    let mut next = 0;
    for round in 0..5 {
        append(&a, next..next + 100);
        next += 100;
        std::fs::rename(&a, s.logs.join(format!("a.log.{round}"))).unwrap();
        // Written to the old file after the rename: still read through the open handle.
        append(&s.logs.join(format!("a.log.{round}")), next..next + 10);
        next += 10;
        append(&a, next..next + 50);
        next += 50;
        // The next round renames only once the new file is followed.
        let followed = format!("following file path={} inode", a.display());
        assert!(
            wait_until(Duration::from_secs(20), || node
                .log_text()
                .matches(&followed)
                .count()
                >= round + 2),
            "new a.log of round {round} not followed; log:\n{}",
            node.log_text()
        );
    }
    s.expect_exactly(&node, 0..next);
}

/// Start tailing a new `a.log` and deliver seqs 100..200 from it: lines of one length, so that
/// the position after them falls on a line boundary of any later content of seqs 200..350.
/// Returns the node, the file, its inode and the heads file beside the pos file.
fn hundred_lines_tailed(s: &Setup) -> (Node, PathBuf, u64, PathBuf) {
    let a = s.logs.join("a.log");
    append(&a, 0..0);
    let node = s.start(&a.display().to_string(), "app", "");
    wait_following(&node, 1);
    append(&a, 100..200);
    s.expect_exactly(&node, 100..200);
    let inode = std::fs::metadata(&a).unwrap().ino();
    let heads = PathBuf::from(format!("{}.heads", s.pos.display()));
    (node, a, inode, heads)
}

/// Wait until the heads file has a line starting with `prefix`.
fn wait_heads_line(heads: &Path, prefix: &str, node: &Node) {
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string(heads)
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with(prefix))),
        "no heads line {prefix:?}; log:\n{}",
        node.log_text()
    );
}

fn truncate(path: &Path) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(0).unwrap();
}

/// A file copytruncated and written past its old position while lograft is stopped: only the
/// saved checksum of the file's first bytes (`<pos file>.heads`) shows it was rewritten.
#[test]
fn a_file_copytruncated_and_regrown_while_stopped_is_read_again() {
    let s = setup();
    let (mut node, a, inode, heads) = hundred_lines_tailed(&s);
    wait_heads_line(&heads, &format!("{inode:x}\t"), &node);
    node.kill9();
    truncate(&a);
    append(&a, 200..350);
    assert_eq!(std::fs::metadata(&a).unwrap().ino(), inode);
    node.spawn();
    wait_started(&node, 2);
    s.expect_exactly(&node, 100..350);
}

/// A truncation seen just before a stop, with nothing of the new content committed yet: the
/// buffer still holds the old position, the pos file and its heads the new generation (so the
/// old checksum is gone); the file then grows past the old position while lograft is stopped.
#[test]
fn a_truncation_seen_just_before_a_stop_is_not_forgotten() {
    let s = setup();
    let (mut node, a, inode, heads) = hundred_lines_tailed(&s);
    truncate(&a);
    wait_heads_line(&heads, &format!("{inode:x}\t1\t0\t"), &node);
    node.kill9();
    append(&a, 200..350);
    node.spawn();
    wait_started(&node, 2);
    s.expect_exactly(&node, 100..350);
}

#[test]
fn copytruncate_and_truncation_are_read_again_from_the_start() {
    let s = setup();
    let a = s.logs.join("a.log");
    append(&a, 0..0);
    let node = s.start(&a.display().to_string(), "app", "");
    wait_following(&node, 1);
    let mut next = 0;
    for _ in 0..4 {
        append(&a, next..next + 100);
        next += 100;
        s.expect_exactly(&node, 0..next);
        // copytruncate: copy aside (not in the glob), truncate in place.
        std::fs::copy(&a, s.logs.join("a.log.copy")).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&a)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&a, next..next + 20);
        next += 20;
    }
    s.expect_exactly(&node, 0..next);
}

#[test]
fn deleted_and_reappearing_files_and_glob_refresh() {
    let s = setup();
    let glob = format!("{}/**/*.log", s.logs.display());
    let node = s.start(&glob, "app.*", "");
    // Files appearing while running are read from their start.
    let b = s.logs.join("sub/deeper/b.log");
    std::fs::create_dir_all(b.parent().unwrap()).unwrap();
    append(&b, 0..30);
    let c = s.logs.join("c.log");
    append(&c, 30..60);
    s.expect_exactly(&node, 0..60);
    // Deleted, then a new file under the same name (whether the tailer notices the deletion
    // before the new file appears or only then, the new file is a new inode: the old one is
    // held open until it is let go).
    std::fs::remove_file(&c).unwrap();
    append(&c, 60..90);
    append(&b, 90..100);
    s.expect_exactly(&node, 0..100);
    assert!(!node.log_text().contains("panicked"));
}

#[test]
fn a_thousand_files() {
    let s = setup();
    let glob = format!("{}/*.log", s.logs.display());
    let node = s.start(&glob, "many", "  open_on_every_update false");
    for i in 0..1000u64 {
        append(&s.logs.join(format!("f{i:04}.log")), [i * 3, i * 3 + 1]);
    }
    s.expect_exactly(&node, (0..1000u64).flat_map(|i| [i * 3, i * 3 + 1]));
    for i in 0..1000u64 {
        append(&s.logs.join(format!("f{i:04}.log")), [i * 3 + 2]);
    }
    s.expect_exactly(&node, 0..3000);
}

#[test]
fn oversized_lines_and_garbage_are_skipped_with_warnings() {
    let s = setup();
    let a = s.logs.join("a.log");
    append(&a, 0..0);
    let node = s.start(&a.display().to_string(), "app", "  max_line_size 1k");
    wait_following(&node, 1);
    append(&a, 0..5);
    let mut f = std::fs::OpenOptions::new().append(true).open(&a).unwrap();
    // A 1 MB line (longer than one read block), binary garbage, invalid UTF-8.
    f.write_all(&vec![b'x'; 1 << 20]).unwrap();
    f.write_all(b"\n\x00\x01\xff\xfe garbage\n").unwrap();
    drop(f);
    append(&a, 5..10);
    s.expect_exactly(&node, 0..10);
    let log = node.log_text();
    assert!(
        log.contains("line longer than max_line_size skipped"),
        "{log}"
    );
    assert!(log.contains("does not match the <parse> format"), "{log}");
}

#[test]
fn unreadable_files_warn_and_the_rest_keep_flowing() {
    if unsafe { libc_geteuid() } == 0 {
        eprintln!("running as root: permissions are not enforced; skipping");
        return;
    }
    let s = setup();
    let locked = s.logs.join("locked.log");
    append(&locked, 0..3);
    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    let node = s.start(&format!("{}/*.log", s.logs.display()), "app", "");
    let ok = s.logs.join("ok.log");
    append(&ok, 10..20);
    s.expect_exactly(&node, 10..20);
    assert!(node.log_text().contains("cannot read file"));
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

#[allow(dead_code)]
fn counts_by_tag(recs: &[(String, serde_json::Value)]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for (t, _) in recs {
        *m.entry(t.clone()).or_insert(0) += 1;
    }
    m
}

/// CRI partial lines are joined, also when the pieces arrive in different reads and the
/// forwarder is killed between them: the position stays at the first piece until the group is
/// complete, so the restarted node reads the whole group again, once.
#[test]
fn cri_partial_lines_join_across_reads_and_a_kill() {
    let s = setup();
    let a = s.logs.join("pod.log");
    let write = |text: &str| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&a)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    };
    write("");
    let mut node = s.start(
        &a.display().to_string(),
        "kube.*",
        "  <parse>\n    @type cri\n  </parse>",
    );
    wait_following(&node, 1);
    write("2023-11-14T22:13:20.1Z stdout F {\"seq\": 1}\n");
    write("2023-11-14T22:13:20.2Z stdout P part-one \n");
    std::thread::sleep(Duration::from_millis(800));
    write("2023-11-14T22:13:20.3Z stdout P part-two \n");
    std::thread::sleep(Duration::from_millis(800));
    node.kill9();
    node.spawn();
    wait_started(&node, 2);
    write("2023-11-14T22:13:20.4Z stdout F end\n");
    write("2023-11-14T22:13:21Z stderr F last\n");
    assert!(
        wait_until(Duration::from_secs(20), || s.records().len() >= 3),
        "{}",
        node.log_text()
    );
    std::thread::sleep(Duration::from_millis(800));
    let mut messages: Vec<String> = s
        .records()
        .iter()
        .map(|(_, r)| r["message"].as_str().unwrap().to_string())
        .collect();
    messages.sort();
    assert_eq!(
        messages,
        vec!["last", "part-one part-two end", "{\"seq\": 1}"],
        "{}",
        node.log_text()
    );
}

/// `<parse> @type multiline`: a stack trace is one event; the last group is emitted after
/// `multiline_flush_interval` without new lines.
#[test]
fn multiline_groups_and_flushes_the_last_group() {
    let s = setup();
    let a = s.logs.join("app.log");
    append(&a, 0..0);
    let node = s.start(
        &a.display().to_string(),
        "app",
        "  multiline_flush_interval 1s\n  <parse>\n    @type multiline\n    format_firstline /^\\d{4}-/\n    format1 /^(?<time>\\S+ \\S+) (?<level>\\w+) (?<message>.*)/\n    time_format %Y-%m-%d %H:%M:%S\n  </parse>",
    );
    wait_following(&node, 1);
    let mut f = std::fs::OpenOptions::new().append(true).open(&a).unwrap();
    f.write_all(b"2023-11-14 22:13:20 ERROR boom\n  at a\n  at b\n2023-11-14 22:13:21 INFO done\n")
        .unwrap();
    drop(f);
    assert!(
        wait_until(Duration::from_secs(20), || s.records().len() >= 2),
        "{}",
        node.log_text()
    );
    std::thread::sleep(Duration::from_millis(500));
    // The last group comes in a later chunk (after the flush interval): sort.
    let mut messages: Vec<String> = s
        .records()
        .iter()
        .map(|(_, r)| r["message"].as_str().unwrap().to_string())
        .collect();
    messages.sort();
    assert_eq!(messages, vec!["boom\n  at a\n  at b", "done"]);
}
