//! End-to-end input limits on the real binary (issue 9, cases 4 and 7): a record over the depth
//! limit is dropped at the input with a counted warning (never quarantined with other clients'
//! events), memory stays within `max_in_flight_bytes` under unfinished frames and gzip bombs,
//! 10,000 idle connections do not stop a new client, `max_connections` closes the excess, and
//! with file descriptors exhausted open connections keep working and in_http answers 503.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn forwarder_config(dir: &Path, port: u16, system: &str, source_extra: &str) -> String {
    format!(
        r#"
<system>
{system}
</system>
<source>
  @type forward
  bind 127.0.0.1
  port {port}
{source_extra}
</source>
<match test.**>
  @type file
  path {out}/events
  <buffer tag>
    @type file
    path {buf}
    flush_interval 1s
  </buffer>
</match>
"#,
        out = dir.join("out").display(),
        buf = dir.join("buffer").display(),
    )
}

fn addr(port: u16) -> SocketAddr {
    format!("127.0.0.1:{port}").parse().unwrap()
}

/// `{"k": {"k": ... 1}}`, `levels` maps deep.
fn deep_record(levels: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for _ in 0..levels {
        v.extend_from_slice(&[0x81, 0xa1, b'k']);
    }
    v.push(0x01);
    v
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn deep_message_mode_record_is_dropped_and_other_clients_events_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut node = Node::start(
        dir.path(),
        &forwarder_config(dir.path(), port, "", ""),
        &[port],
    );
    // Client A: a Message-mode record nested 201 levels deep, with a chunk id.
    let mut a = ForwardClient::connect(addr(port)).unwrap();
    let mut frame = Vec::new();
    rmp::encode::write_array_len(&mut frame, 4).unwrap();
    rmp::encode::write_str(&mut frame, "test.deep").unwrap();
    rmp::encode::write_uint(&mut frame, 1_700_000_000).unwrap();
    frame.extend_from_slice(&deep_record(201));
    rmp::encode::write_map_len(&mut frame, 1).unwrap();
    rmp::encode::write_str(&mut frame, "chunk").unwrap();
    rmp::encode::write_str(&mut frame, "deep-1").unwrap();
    a.send_raw(&frame).unwrap();
    // Acked (nothing to store: the invalid event was dropped before the ack).
    let ack = read_msgpack(a.stream()).unwrap();
    assert_eq!(ack["ack"].as_str(), Some("deep-1"), "{ack:?}");
    // Client B: 100 ordinary events on the same tag, so they would share A's chunk.
    let mut b = ForwardClient::connect(addr(port)).unwrap();
    for s in (0..100).step_by(10) {
        b.send_acked("test.deep", s..s + 10, 20).unwrap();
    }
    let out = dir.path().join("out");
    let all = wait_until(Duration::from_secs(30), || {
        read_out_file_records(&out).len() >= 100
    });
    // Once the buffer holds no chunk, a (wrongly) accepted deep record would have been written
    // or quarantined, or would hold its chunk back in retries (then this wait fails).
    let drained = wait_until(Duration::from_secs(30), || {
        buffered_chunks(&dir.path().join("buffer")) == 0
    });
    assert!(
        drained,
        "the buffer did not drain; log:\n{}",
        node.log_text()
    );
    let records = read_out_file_records(&out);
    let counts = seq_counts(&records);
    assert!(
        all,
        "only {} events written; log:\n{}",
        counts.len(),
        node.log_text()
    );
    assert_eq!(records.len(), 100, "{records:?}");
    assert!((0..100).all(|s| counts.get(&s) == Some(&1)));
    let quarantined: Vec<_> = files_under(&dir.path().join("buffer"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("quarantine"))
        .collect();
    assert!(quarantined.is_empty(), "quarantined: {quarantined:?}");
    let log = node.log_text();
    assert!(
        log.contains("dropped 1 invalid event(s) since the last warning"),
        "no counted warning; log:\n{log}"
    );
    assert!(!log.contains("depth limit exceeded"), "log:\n{log}");
    assert_eq!(node.terminate(), Some(0));
}

#[test]
fn dropped_event_warnings_count_every_event_even_when_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut node = Node::start(
        dir.path(),
        &forwarder_config(dir.path(), port, "", ""),
        &[port],
    );
    // 50 frames, each with one too-deep entry among good ones: one warning line at once,
    // the other 49 drops are reported by the next line (within the 10 s interval + flush).
    let mut c = ForwardClient::connect(addr(port)).unwrap();
    for i in 0..50u64 {
        let (mut e, n) = entries([i], 5);
        rmp::encode::write_array_len(&mut e, 2).unwrap();
        rmp::encode::write_uint(&mut e, 1_700_000_000).unwrap();
        e.extend_from_slice(&deep_record(300));
        let chunk = format!("c{i}");
        c.send_raw(&packed_forward("test.x", &e, n + 1, Some(&chunk)))
            .unwrap();
        let ack = read_msgpack(c.stream()).unwrap();
        assert_eq!(ack["ack"].as_str(), Some(chunk.as_str()));
    }
    let reported = wait_until(Duration::from_secs(30), || {
        node.log_text()
            .contains("dropped 49 invalid event(s) since the last warning")
    });
    assert!(reported, "log:\n{}", node.log_text());
    assert!(node
        .log_text()
        .contains("dropped 1 invalid event(s) since the last warning"));
    let out = dir.path().join("out");
    assert!(wait_until(Duration::from_secs(30), || {
        read_out_file_records(&out).len() >= 50
    }));
    assert_eq!(node.terminate(), Some(0));
}

fn status_kib(pid: i32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// A CompressedPackedForward frame whose entries inflate to `gib` GiB of zeros.
fn gzip_bomb(gib: usize) -> Vec<u8> {
    let member = {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![0u8; 1 << 20]).unwrap();
        enc.finish().unwrap()
    };
    let mut gz = Vec::with_capacity(member.len() * 1024 * gib);
    for _ in 0..1024 * gib {
        gz.extend_from_slice(&member);
    }
    let mut frame = Vec::new();
    rmp::encode::write_array_len(&mut frame, 3).unwrap();
    rmp::encode::write_str(&mut frame, "test.bomb").unwrap();
    rmp::encode::write_bin(&mut frame, &gz).unwrap();
    rmp::encode::write_map_len(&mut frame, 2).unwrap();
    rmp::encode::write_str(&mut frame, "compressed").unwrap();
    rmp::encode::write_str(&mut frame, "gzip").unwrap();
    rmp::encode::write_str(&mut frame, "chunk").unwrap();
    rmp::encode::write_str(&mut frame, "bomb").unwrap();
    frame
}

#[test]
fn memory_stays_within_the_in_flight_budget_under_unfinished_frames_and_gzip_bombs() {
    const BUDGET_MIB: u64 = 32;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut node = Node::start(
        dir.path(),
        &forwarder_config(
            dir.path(),
            port,
            &format!("  max_in_flight_bytes {BUDGET_MIB}m"),
            "  idle_timeout 8s",
        ),
        &[port],
    );
    let pid = node.pid();
    std::thread::sleep(Duration::from_millis(300));
    let baseline = status_kib(pid, "VmRSS:");

    // Two 1 GiB gzip bombs and four senders of unfinished 400 MB Forward-mode frames.
    let bomb = gzip_bomb(1);
    let bombs: Vec<_> = (0..2)
        .map(|_| {
            let bomb = bomb.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr(port)).unwrap();
                s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
                let _ = s.write_all(&bomb);
                s
            })
        })
        .collect();
    let piece = {
        let (e, _) = entries(0..64, 1000);
        e
    };
    let mut streams: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(addr(port)).unwrap();
            s.write_all(&[0x92, 0xa9]).unwrap();
            s.write_all(b"test.slow").unwrap();
            s.write_all(&[0xdd]).unwrap();
            s.write_all(&400_000u32.to_be_bytes()).unwrap();
            s.set_write_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            s
        })
        .collect();
    // Single writes (a timed-out write writes nothing), so every stream stays well-formed.
    let mut sent = [0usize; 4];
    let started = Instant::now();
    loop {
        let mut progressed = false;
        for (i, s) in streams.iter_mut().enumerate() {
            let off = sent[i] % piece.len();
            if let Ok(n) = s.write(&piece[off..]) {
                sent[i] += n;
                progressed |= n > 0;
            }
        }
        if !progressed || started.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    assert!(
        sent.iter().all(|n| *n < 100 << 20),
        "no backpressure: {sent:?}; log:\n{}",
        node.log_text()
    );
    let peak = status_kib(pid, "VmHWM:");
    let growth_mib = peak.saturating_sub(baseline) / 1024;
    eprintln!("baseline {baseline} KiB, peak {peak} KiB, sent {sent:?}");
    assert!(
        growth_mib <= BUDGET_MIB + 100,
        "RSS grew by {growth_mib} MiB (budget {BUDGET_MIB} MiB); log:\n{}",
        node.log_text()
    );
    let log = node.log_text();
    assert!(log.contains("in-flight budget spent"), "log:\n{log}");
    // The idle timeout closes the stalled connections; the bombs are refused; a normal client
    // is served afterwards and the process is healthy.
    drop(streams);
    for b in bombs {
        drop(b.join().unwrap());
    }
    let mut ok = false;
    let deadline = Instant::now() + Duration::from_secs(40);
    while Instant::now() < deadline && !ok {
        if let Ok(mut c) = ForwardClient::connect(addr(port)) {
            ok = c.send_acked("test.after", 0..10, 10).is_ok();
        }
    }
    assert!(ok, "no ack after the attack; log:\n{}", node.log_text());
    let peak = status_kib(pid, "VmHWM:");
    assert!(
        peak.saturating_sub(baseline) / 1024 <= BUDGET_MIB + 100,
        "RSS peak {peak} KiB; baseline {baseline} KiB"
    );
    assert_eq!(node.terminate(), Some(0));
}

#[test]
fn ten_thousand_idle_connections_do_not_stop_a_new_client() {
    let limit = lograft::fd_limit::raise_nofile_limit().unwrap();
    if limit.soft < 10_500 {
        eprintln!("skipped: open file limit {} is below 10,500", limit.soft);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut node = Node::start(
        dir.path(),
        &forwarder_config(dir.path(), port, "", ""),
        &[port],
    );
    let idle: Vec<TcpStream> = (0..10_000)
        .map(|_| TcpStream::connect(addr(port)).unwrap())
        .collect();
    let mut c = ForwardClient::connect(addr(port)).unwrap();
    c.send_acked("test.new", 0..100, 10)
        .unwrap_or_else(|e| panic!("{e}; log:\n{}", node.log_text()));
    // The idle ones are still open (not closed by any limit).
    let mut probe = [0u8; 1];
    let mut open = 0;
    for s in idle.iter().step_by(500) {
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        if matches!((&*s).read(&mut probe), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut)
        {
            open += 1;
        }
    }
    assert_eq!(open, 20, "idle connections were closed");
    assert!(node.log_text().contains("open file limit"));
    drop(idle);
    assert_eq!(node.terminate(), Some(0));
}

#[test]
fn connections_over_max_connections_are_closed_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut node = Node::start(
        dir.path(),
        &forwarder_config(dir.path(), port, "", "  max_connections 5"),
        &[port],
    );
    let mut kept = Vec::new();
    for i in 0..5 {
        let mut c = ForwardClient::connect(addr(port)).unwrap();
        c.send_acked("test.kept", i * 10..i * 10 + 10, 10).unwrap();
        kept.push(c);
    }
    let mut extra = TcpStream::connect(addr(port)).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut b = [0u8; 8];
    assert!(
        matches!(extra.read(&mut b), Ok(0) | Err(_)),
        "the sixth connection was kept"
    );
    // The warning is written as the connection is closed: wait for it to reach the log.
    let warned = wait_until(Duration::from_secs(5), || {
        let log = node.log_text();
        log.contains("connection limit reached") && log.contains("max_connections 5")
    });
    assert!(warned, "log:\n{}", node.log_text());
    // The five keep working.
    for c in &mut kept {
        c.send_acked("test.kept", 100..101, 10).unwrap();
    }
    assert_eq!(node.terminate(), Some(0));
}

/// Start lograft under `ulimit -n nofile` (soft and hard, so raising it is impossible).
fn start_with_fd_limit(dir: &Path, config: &str, nofile: u32, ports: &[u16]) -> Node {
    std::fs::create_dir_all(dir).unwrap();
    let config_path = dir.join("lograft.conf");
    std::fs::write(&config_path, config).unwrap();
    let log = dir.join("lograft.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n {nofile} && exec \"$0\" run -c \"$1\" --data-dir \"$2\""
        ))
        .arg(BIN)
        .arg(&config_path)
        .arg(dir.join("data"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let node = Node {
        child: Some(child),
        config: config_path,
        data_dir: dir.join("data"),
        log,
        wait_ports: ports.to_vec(),
        env: Vec::new(),
    };
    for p in ports {
        assert!(
            wait_until(Duration::from_secs(30), || TcpStream::connect((
                "127.0.0.1",
                *p
            ))
            .is_ok()),
            "not listening on {p}; log:\n{}",
            node.log_text()
        );
    }
    node
}

/// POST one JSON event; the response text (status line first), or None if nothing came back.
fn http_post(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let body = r#"{"msg":"hello"}"#;
    let req = format!(
        "POST /test.http HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    (!out.is_empty()).then(|| String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn out_of_file_descriptors_existing_connections_work_and_http_answers_503() {
    let dir = tempfile::tempdir().unwrap();
    let fwd = free_port();
    let http = free_port();
    let config = format!(
        r#"
<source>
  @type forward
  bind 127.0.0.1
  port {fwd}
</source>
<source>
  @type http
  bind 127.0.0.1
  port {http}
</source>
<match test.**>
  @type null
  <buffer>
    @type memory
  </buffer>
</match>
"#
    );
    let mut node = start_with_fd_limit(dir.path(), &config, 128, &[fwd, http]);
    let mut existing = ForwardClient::connect(addr(fwd)).unwrap();
    existing.send_acked("test.a", 0..10, 10).unwrap();
    assert!(http_post(http)
        .unwrap_or_default()
        .starts_with("HTTP/1.1 200"));

    // Exhaust the descriptors: connections beyond the limit wait in the listen backlog.
    let flood: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect(addr(fwd)).ok())
        .collect();
    let exhausted = wait_until(Duration::from_secs(10), || {
        node.log_text().contains("out of file descriptors")
    });
    assert!(exhausted, "log:\n{}", node.log_text());

    // An open connection keeps getting acks.
    existing.send_acked("test.a", 10..20, 10).unwrap();
    // HTTP answers 503 with the reason rather than nothing.
    let mut answer = None;
    for _ in 0..10 {
        if let Some(a) = http_post(http) {
            answer = Some(a);
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let answer = answer.unwrap_or_else(|| panic!("no HTTP answer; log:\n{}", node.log_text()));
    assert!(
        answer.starts_with("HTTP/1.1 503") && answer.contains("out of file descriptors"),
        "{answer}"
    );
    assert!(node.is_running());

    // Descriptors free up: both inputs serve normally again.
    drop(flood);
    let recovered = wait_until(Duration::from_secs(20), || {
        http_post(http).is_some_and(|a| a.starts_with("HTTP/1.1 200"))
    });
    assert!(recovered, "log:\n{}", node.log_text());
    let mut fresh = ForwardClient::connect(addr(fwd)).unwrap();
    fresh.send_acked("test.b", 0..10, 10).unwrap();
    existing.send_acked("test.a", 20..30, 10).unwrap();
    assert_eq!(node.terminate(), Some(0), "log:\n{}", node.log_text());
}

/// Fluentd's file buffer makes chunks of up to `chunk_limit_size 256m`, and its out_forward
/// sends each as one message: a little over 256 MiB on the wire. With every limit at its default,
/// such a frame is taken and acknowledged, never refused forever (which would stall the sender).
#[test]
fn a_fluentd_default_size_chunk_is_taken_with_default_limits() {
    const FLUENTD_CHUNK_LIMIT: usize = 256 << 20;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut node = Node::start(
        dir.path(),
        &forwarder_config(dir.path(), port, "", ""),
        &[port],
    );
    // Sequence numbers of one width, so every entry has the same size; the last one is padded
    // so that the chunk is exactly 256 MiB.
    let (pad, first) = (4000, 1_000_000);
    let one = entries([first], pad).0.len();
    let count = (FLUENTD_CHUNK_LIMIT / one) as u64;
    let seqs = first..first + count;
    let (mut events, mut n) = entries(first..first + count - 1, pad);
    let last_pad = FLUENTD_CHUNK_LIMIT - events.len() - (one - pad);
    let (last, one_more) = entries([first + count - 1], last_pad);
    events.extend_from_slice(&last);
    n += one_more;
    assert_eq!(events.len(), FLUENTD_CHUNK_LIMIT);
    let frame = packed_forward("test.big", &events, n, Some("fluentd-sized"));
    assert!(frame.len() > FLUENTD_CHUNK_LIMIT);
    drop(events);
    let mut client = ForwardClient::connect(addr(port)).unwrap();
    client
        .stream()
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    client.send_raw(&frame).unwrap();
    drop(frame);
    let ack = read_msgpack(client.stream())
        .unwrap_or_else(|e| panic!("no ack ({e}); log:\n{}", node.log_text()));
    assert_eq!(ack["ack"].as_str(), Some("fluentd-sized"), "{ack:?}");
    let out = dir.path().join("out");
    let all = wait_until(Duration::from_secs(120), || {
        read_out_file_records(&out).len() as u64 >= count
    });
    let records = read_out_file_records(&out);
    assert!(
        all,
        "{} of {count} events written; log:\n{}",
        records.len(),
        node.log_text()
    );
    let counts = seq_counts(&records);
    assert!(seqs.into_iter().all(|s| counts.get(&s) == Some(&1)));
    assert_eq!(node.terminate(), Some(0));
}
