//! End-to-end tests of poison-proof delivery (issue 9) on the real binary, loopback only:
//! - case 2: a forwarder whose buffer chunks (8 MB) are larger than the receiver accepts per
//!   message (`chunk_size_limit 6m`) still delivers every event exactly once, because
//!   out_forward sends each chunk as frames of at most `max_frame_size` (default 4 MiB);
//! - case 5: out_file with `path …/${tag}/file` and one 300-character tag among ordinary tags:
//!   the other tags are delivered within seconds, and the long tag under a safe name.

mod common;
use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[test]
fn a_chunk_bigger_than_the_receivers_limit_is_delivered_in_frames_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (fwd_port, recv_port) = (free_port(), free_port());
    let receiver = Node::start(
        &dir.path().join("receiver"),
        &format!(
            r#"
<source>
  @type forward
  bind 127.0.0.1
  port {recv_port}
  chunk_size_limit 6m
</source>
<match test.**>
  @type file
  path {out}/events
  <buffer tag>
    @type file
    path {buf}
    flush_interval 1s
    chunk_limit_size 4m
  </buffer>
</match>
"#,
            out = dir.path().join("out").display(),
            buf = dir.path().join("receiver-buffer").display(),
        ),
        &[recv_port],
    );
    let forwarder = Node::start(
        &dir.path().join("forwarder"),
        &format!(
            r#"
<source>
  @type forward
  bind 127.0.0.1
  port {fwd_port}
</source>
<match test.**>
  @type forward
  heartbeat_type none
  <server>
    host 127.0.0.1
    port {recv_port}
  </server>
  <buffer tag>
    @type file
    path {buf}
    flush_interval 3s
    chunk_limit_size 8m
    retry_wait 1s
    retry_max_interval 2s
  </buffer>
</match>
"#,
            buf = dir.path().join("forwarder-buffer").display(),
        ),
        &[fwd_port],
    );
    // 100,000 events of ~150 bytes: ~15 MB, so the forwarder's buffer fills an 8 MB chunk
    // (sealed at 95 %) that no single 6 MB message can carry.
    const TOTAL: u64 = 100_000;
    const PER_BATCH: u64 = 1_000;
    let addr: SocketAddr = format!("127.0.0.1:{fwd_port}").parse().unwrap();
    let mut client = ForwardClient::connect(addr).unwrap();
    let mut start = 0;
    while start < TOTAL {
        client
            .send_acked("test.frames", start..start + PER_BATCH, 110)
            .unwrap();
        start += PER_BATCH;
    }
    let out = dir.path().join("out");
    let delivered = wait_until(Duration::from_secs(90), || {
        read_out_file_records(&out).len() as u64 >= TOTAL
    });
    let records = read_out_file_records(&out);
    assert!(
        delivered,
        "{} of {TOTAL} events delivered; forwarder log:\n{}",
        records.len(),
        forwarder.log_text()
    );
    // Once the forwarder's buffer is empty nothing can be sent again: then check exactly once.
    assert!(
        wait_until(Duration::from_secs(30), || buffered_chunks(
            &dir.path().join("forwarder-buffer")
        ) == 0),
        "the forwarder's buffer did not drain; log:\n{}",
        forwarder.log_text()
    );
    let counts = seq_counts(&read_out_file_records(&out));
    assert_eq!(counts.len() as u64, TOTAL);
    let dups: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        dups.is_empty(),
        "duplicated: {:?}",
        &dups[..dups.len().min(10)]
    );
    // The receiver never had to refuse a message.
    let log = receiver.log_text();
    assert!(
        !log.contains("exceeds the limit"),
        "receiver refused a frame:\n{log}"
    );
    drop(forwarder);
    drop(receiver);
}

#[test]
fn a_300_character_tag_does_not_hold_back_other_tags_and_is_written_under_a_safe_name() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = dir.path().join("out");
    let node = Node::start(
        &dir.path().join("node"),
        &format!(
            r#"
<source>
  @type forward
  bind 127.0.0.1
  port {port}
</source>
<match **>
  @type file
  path {out}/${{tag}}/file
  <buffer tag>
    @type file
    path {buf}
    flush_interval 1s
  </buffer>
</match>
"#,
            out = out.display(),
            buf = dir.path().join("buffer").display(),
        ),
        &[port],
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut client = ForwardClient::connect(addr).unwrap();
    let long = format!("app.{}", "l".repeat(296));
    assert_eq!(long.len(), 300);
    let started = Instant::now();
    client.send_acked(&long, 0..10, 20).unwrap();
    for (i, tag) in ["app.web", "app.db", "../../etc"].iter().enumerate() {
        let base = 100 * (i as u64 + 1);
        client.send_acked(tag, base..base + 10, 20).unwrap();
    }
    let ok = wait_until(Duration::from_secs(10), || {
        let counts = seq_counts(&read_out_file_records(&out));
        (100..110)
            .chain(200..210)
            .chain(300..310)
            .all(|s| counts.get(&s) == Some(&1))
    });
    assert!(
        ok,
        "other tags not delivered in time; log:\n{}",
        node.log_text()
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // The long tag is delivered too, under a cut name that ends with a hash, inside `out`.
    assert!(wait_until(Duration::from_secs(10), || {
        let counts = seq_counts(&read_out_file_records(&out));
        (0..10).all(|s| counts.get(&s) == Some(&1))
    }));
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let cut = names
        .iter()
        .find(|n| n.starts_with("app.lll"))
        .expect("directory of the long tag");
    assert_eq!(cut.len(), 200, "{cut}");
    assert!(cut.contains('~'));
    // `../../etc` stayed inside the output directory.
    assert!(names.contains(&".._.._etc".to_string()), "{names:?}");
    assert!(!dir.path().join("etc").exists());
    let log = node.log_text();
    assert!(!log.contains("will retry"), "{log}");
    // A log line says which tag was written under which name.
    assert!(
        log.contains("written under a safe name")
            && (log.contains(cut.as_str()) || log.contains(".._.._etc")),
        "{log}"
    );
}

/// Issue case 6: the wait between retries is capped by `retry_max_interval` and by what remains
/// of `retry_timeout`, and the `retry_in_secs` a warning prints is that real wait (it printed
/// 31536000.0, a year, before). The next hop is a port nobody listens on.
#[test]
fn retry_waits_are_capped_and_logged_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let dead = free_port();
    let config = ConfigText::new()
        .forward_source(port)
        .raw(&format!(
            r#"
<match capped.**>
  @type forward
  connect_timeout 0.2s
  heartbeat_type none
  <server>
    host 127.0.0.1
    port {dead}
  </server>
  <buffer tag>
    @type file
    path {buf}
    flush_interval 0.1s
    retry_wait 0.5s
    retry_exponential_backoff_base 100
    retry_max_interval 1.5s
    retry_forever true
  </buffer>
</match>
"#,
            buf = dir.path().join("buffer").display()
        ))
        .build();
    let node = Node::start(&dir.path().join("node"), &config, &[port]);
    ForwardClient::connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .unwrap()
        .send_acked("capped.a", 0..10, 10)
        .unwrap();
    let waits = |log: &str| -> Vec<f64> {
        log.lines()
            .filter_map(|l| l.split("retry_in_secs=").nth(1))
            .filter_map(|v| v.split_whitespace().next()?.parse().ok())
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(25), || waits(&node.log_text()).len()
            >= 2),
        "no retry warnings: {}",
        node.log_text()
    );
    // Warnings are rate-limited; every logged wait is within the cap.
    let logged = waits(&node.log_text());
    assert!(
        logged.iter().all(|w| *w > 0.0 && *w <= 1.5),
        "waits beyond retry_max_interval 1.5s: {logged:?}"
    );
}
