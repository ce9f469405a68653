//! End-to-end forwarder pipeline on the real binary: in_forward → file buffer → out_file.
//! Acceptance 2 (200,000 events, every chunk acked, output exactly once), 4 (quarantine of a
//! corrupt chunk), 6 (malformed input does not hurt other connections), and SIGTERM exit 0.

mod common;
use common::*;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

fn config(dir: &std::path::Path, port: u16, flush: &str) -> String {
    format!(
        r#"
<source>
  @type forward
  bind 127.0.0.1
  port {port}
</source>
<match test.**>
  @type file
  path {out}/events
  <buffer tag>
    @type file
    path {buf}
    flush_interval {flush}
    chunk_limit_size 4m
  </buffer>
</match>
"#,
        out = dir.join("out").display(),
        buf = dir.join("buffer").display(),
    )
}

#[test]
fn two_hundred_thousand_events_acked_and_written_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut node = Node::start(dir.path(), &config(dir.path(), port, "1s"), &[port]);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    const TOTAL: u64 = 200_000;
    const PER_CHUNK: u64 = 1_000;
    const CONNS: u64 = 4;
    let threads: Vec<_> = (0..CONNS)
        .map(|c| {
            std::thread::spawn(move || {
                let mut client = ForwardClient::connect(addr).unwrap();
                let mut start = c * PER_CHUNK;
                while start < TOTAL {
                    client
                        .send_acked("test.load", start..start + PER_CHUNK, 150)
                        .unwrap();
                    start += CONNS * PER_CHUNK;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let out = dir.path().join("out");
    let done = wait_until(Duration::from_secs(60), || {
        read_out_file_records(&out).len() as u64 >= TOTAL
    });
    let counts = seq_counts(&read_out_file_records(&out));
    assert!(
        done,
        "only {} of {TOTAL} events written; log:\n{}",
        counts.len(),
        node.log_text()
    );
    assert_eq!(counts.len() as u64, TOTAL);
    assert!(counts.values().all(|&n| n == 1), "duplicates in output");
    assert!((0..TOTAL).all(|s| counts.contains_key(&s)));
    assert_eq!(
        node.terminate(),
        Some(0),
        "SIGTERM exit code; log:\n{}",
        node.log_text()
    );
}

#[test]
fn corrupt_chunk_is_quarantined_and_the_rest_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // A long flush interval keeps chunks in the buffer until we corrupt one.
    let mut node = Node::start(dir.path(), &config(dir.path(), port, "1h"), &[port]);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut client = ForwardClient::connect(addr).unwrap();
    for i in 0..8 {
        client
            .send_acked("test.bad", i * 10..i * 10 + 10, 50)
            .unwrap();
    }
    for i in 0..8 {
        client
            .send_acked("test.good", 1000 + i * 10..1000 + i * 10 + 10, 50)
            .unwrap();
    }
    drop(client);
    assert_eq!(node.terminate(), Some(0));

    // Find the chunk file holding test.bad and flip a byte in its first quarter.
    let buf = dir.path().join("buffer");
    let mut corrupted = None;
    for e in std::fs::read_dir(&buf).unwrap().flatten() {
        let p = e.path();
        if !p.is_file() {
            continue;
        }
        let mut bytes = std::fs::read(&p).unwrap();
        if bytes.windows(8).any(|w| w == b"test.bad") {
            let at = bytes.len() / 4 + 40;
            bytes[at] ^= 0xff;
            std::fs::write(&p, &bytes).unwrap();
            corrupted = Some(p.file_name().unwrap().to_owned());
        }
    }
    let corrupted = corrupted.expect("a chunk file holding test.bad");

    std::fs::write(&node.config, config(dir.path(), port, "1s")).unwrap();
    node.spawn();
    let out = dir.path().join("out");
    let good = wait_until(Duration::from_secs(30), || {
        let c = seq_counts(&read_out_file_records(&out));
        (1000..1080).all(|s| c.contains_key(&s))
    });
    assert!(good, "good chunk not delivered; log:\n{}", node.log_text());
    let c = seq_counts(&read_out_file_records(&out));
    assert!(
        (0..80).all(|s| !c.contains_key(&s)),
        "corrupt chunk's events delivered"
    );
    let log = node.log_text();
    assert!(log.contains("quarantine"), "no quarantine log line:\n{log}");
    let qdir = buf.join("quarantine");
    let quarantined: Vec<_> = std::fs::read_dir(&qdir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        quarantined
            .iter()
            .any(|n| n.to_string_lossy().contains(&*corrupted.to_string_lossy())),
        "{corrupted:?} not in {quarantined:?}"
    );
    assert!(node.is_running());
}

#[test]
fn malformed_input_closes_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut node = Node::start(dir.path(), &config(dir.path(), port, "1s"), &[port]);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut good = ForwardClient::connect(addr).unwrap();
    good.send_acked("test.ok", 0..10, 10).unwrap();

    let garbage: Vec<Vec<u8>> = vec![
        vec![0xc1, 0xc1, 0xc1], // never-used marker
        vec![
            0x93, 0xa4, b't', b'e', b's', b't', 0xc4, 0x02, 0x01, 0x02, 0x80,
        ], // entries not [time, record]
        vec![0x93, 0xa1, b't', 0xc6, 0x7f, 0xff, 0xff, 0xff], // 2 GiB chunk claim
        vec![0x92, 0x01, 0x02], // wrong top-level shape
    ];
    for g in garbage {
        let mut bad = ForwardClient::connect(addr).unwrap();
        bad.send_raw(&g).unwrap();
        let _ = bad.stream().flush();
        let r = read_msgpack(bad.stream());
        assert!(r.is_err(), "got a reply to garbage: {r:?}");
        good.send_acked("test.ok", 10..20, 10).unwrap();
    }
    assert!(node.is_running());
    let out = dir.path().join("out");
    assert!(wait_until(Duration::from_secs(20), || {
        let c = seq_counts(&read_out_file_records(&out));
        (0..20).all(|s| c.contains_key(&s))
    }));
}
