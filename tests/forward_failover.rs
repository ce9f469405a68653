//! End-to-end tests of out_forward's primary/standby failover on the real binary (issue
//! "`<match> type forward`", acceptance 1–6). Topology: one forwarder (in_forward + in_http →
//! file buffer → out_forward to a primary and a standby) and two receivers on 127.0.0.1,
//! either real lograft nodes (in_forward → file buffer → out_file) or small in-test receivers
//! built on the crate's codec where the test must see chunk ids or withhold acks.

mod common;
use common::*;
use lograft::forward::{encode_ack, DecoderConfig, Frame, FrameDecoder};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TAG: &str = "test.fwd";

fn forwarder_config(dir: &Path, fwd: u16, http: u16, servers: &str, extra: &str) -> String {
    let sources = ConfigText::new().forward_source(fwd).http_source(http);
    common::forwarder_config(sources, dir, servers, "2s", extra)
}

fn primary_and_standby(p: u16, s: u16) -> String {
    format!(
        r#"<server>
    name primary
    host 127.0.0.1
    port {p}
  </server>
  <server>
    name standby
    host 127.0.0.1
    port {s}
    standby
  </server>"#
    )
}

/// A lograft receiver: in_forward → file buffer → out_file under `dir/out`.
fn receiver_config(dir: &Path, port: u16, source_extra: &str) -> String {
    ConfigText::new()
        .forward_source_with(port, source_extra)
        .out_file(
            "test.**",
            dir.join("out").join("events"),
            BufferText::file(dir.join("buffer"))
                .param("flush_interval", "0.2s")
                .param("chunk_limit_size", "4m"),
        )
        .build()
}

fn start_receiver(dir: &Path, port: u16) -> Node {
    Node::start(dir, &receiver_config(dir, port, ""), &[port])
}

fn addr(port: u16) -> SocketAddr {
    format!("127.0.0.1:{port}").parse().unwrap()
}

fn seqs_in(dirs: &[&Path]) -> HashSet<u64> {
    let mut all = HashSet::new();
    for d in dirs {
        all.extend(seq_counts(&read_out_file_records(d)).into_keys());
    }
    all
}

fn missing(acked: &[u64], have: &HashSet<u64>) -> Vec<u64> {
    acked
        .iter()
        .copied()
        .filter(|s| !have.contains(s))
        .collect()
}

/// Chunk files (`buffer.*.log`) left in a buffer directory.
fn chunk_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.starts_with("buffer.") && n.ends_with(".log")
                })
                .count()
        })
        .unwrap_or(0)
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Acceptance 1, and the case Fluentd 1.15 gets wrong: the primary is SIGKILLed while chunks
/// wait for its ack; the forwarder keeps acking, the standby takes over within seconds, and
/// once the primary restarts on its old data the union of both outputs holds every acked event.
#[test]
fn primary_killed_mid_stream_standby_takes_over_and_nothing_acked_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (p, s, f, h) = (free_port(), free_port(), free_port(), free_port());
    let mut primary = start_receiver(&dir.path().join("primary"), p);
    let _standby = start_receiver(&dir.path().join("standby"), s);
    let fwd_dir = dir.path().join("forwarder");
    let fwd = Node::start(
        &fwd_dir,
        &forwarder_config(&fwd_dir, f, h, &primary_and_standby(p, s), ""),
        &[f, h],
    );
    let (p_out, s_out) = (
        dir.path().join("primary/out"),
        dir.path().join("standby/out"),
    );
    const TOTAL: u64 = 300_000;
    let stream = Stream::start(TAG, f, 4, 250, (0, TOTAL), Some(Duration::from_millis(20)));
    // Kill the primary while chunks are in flight to it (it has received some already).
    let p_buffer = dir.path().join("primary/buffer");
    assert!(
        wait_until(Duration::from_secs(60), || stream.acked_count() >= 60_000
            && (chunk_files(&p_buffer) > 0
                || !read_out_file_records(&p_out).is_empty())),
        "no traffic reached the primary; forwarder log:\n{}",
        fwd.log_text()
    );
    primary.kill9();
    let killed_at = Instant::now();
    let acked_at_kill = stream.acked_count();
    assert!(
        acked_at_kill < TOTAL as usize / 2,
        "the stream is too quick for this test: {acked_at_kill} acked before the kill"
    );
    assert!(
        wait_until(Duration::from_secs(10), || !read_out_file_records(&s_out)
            .is_empty()),
        "standby received nothing after the primary died; forwarder log:\n{}",
        fwd.log_text()
    );
    let takeover = killed_at.elapsed();
    let errors = stream.errors();
    let acked = stream.finish();
    assert_eq!(errors, 0, "the forwarder refused or dropped frames");
    assert_eq!(acked.len() as u64, TOTAL, "the forwarder stopped acking");
    // Everything the forwarder acked reaches the standby, except what the primary had itself
    // acked (it sits in the primary's disk buffer): so once the forwarder's buffer is empty,
    // restart the primary on its old data and check the union.
    assert!(
        wait_until(Duration::from_secs(60), || chunk_files(
            &fwd_dir.join("buffer")
        ) == 0),
        "forwarder buffer did not drain; log:\n{}",
        fwd.log_text()
    );
    let drained_after = killed_at.elapsed();
    primary.spawn();
    let mut have = HashSet::new();
    let complete = wait_until(Duration::from_secs(60), || {
        have = seqs_in(&[&p_out, &s_out]);
        missing(&acked, &have).is_empty()
    });
    let lost = missing(&acked, &have);
    assert!(
        complete,
        "{} acked events missing (first {:?}); forwarder log:\n{}",
        lost.len(),
        &lost[..lost.len().min(10)],
        fwd.log_text()
    );
    let log = fwd.log_text();
    assert!(
        !log.contains("no nodes are available"),
        "standby was not promoted at once:\n{log}"
    );
    assert!(
        log.matches("detached forwarding server").count() <= 2,
        "node state change logged per chunk:\n{log}"
    );
    eprintln!(
        "standby took over {takeover:?} after the primary was killed; forwarder buffer empty after {drained_after:?}"
    );
    for line in log
        .lines()
        .filter(|l| l.contains("detached forwarding server"))
    {
        eprintln!("{line}");
    }
}

/// Acceptance 2: both receivers down for 30 s while events keep arriving. The forwarder keeps
/// acking (events are on disk), its RSS stays within 2× idle, and everything drains when one
/// receiver comes back.
#[test]
fn both_receivers_down_for_30s_then_one_returns_and_everything_drains() {
    let dir = tempfile::tempdir().unwrap();
    let (p, s, f, h) = (free_port(), free_port(), free_port(), free_port());
    let mut primary = start_receiver(&dir.path().join("primary"), p);
    let mut standby = start_receiver(&dir.path().join("standby"), s);
    let fwd_dir = dir.path().join("forwarder");
    let fwd = Node::start(
        &fwd_dir,
        &forwarder_config(&fwd_dir, f, h, &primary_and_standby(p, s), ""),
        &[f, h],
    );
    let (p_out, s_out) = (
        dir.path().join("primary/out"),
        dir.path().join("standby/out"),
    );
    // Warm up, let it all arrive, then measure idle RSS.
    let warm = Stream::start(TAG, f, 2, 500, (0, 20_000), None).finish();
    assert!(wait_until(Duration::from_secs(30), || missing(
        &warm,
        &seqs_in(&[&p_out])
    )
    .is_empty()));
    std::thread::sleep(Duration::from_secs(1));
    let idle = rss_kib(fwd.pid());
    assert!(idle > 0);

    primary.kill9();
    standby.kill9();
    let stream = Stream::start(
        TAG,
        f,
        2,
        500,
        (20_000, u64::MAX),
        Some(Duration::from_millis(50)),
    );
    let outage = Instant::now();
    let mut peak = idle;
    let mut acked_during = 0;
    while outage.elapsed() < Duration::from_secs(30) {
        peak = peak.max(rss_kib(fwd.pid()));
        acked_during = stream.acked_count();
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        acked_during >= 50_000,
        "the forwarder stopped acking during the outage: {acked_during} events"
    );
    assert!(
        peak <= 2 * idle,
        "RSS grew from {idle} KiB idle to {peak} KiB during the outage"
    );
    // The standby returns (on its old data) while events still arrive; then stop sending.
    standby.spawn();
    std::thread::sleep(Duration::from_secs(2));
    let errors = stream.errors();
    let acked = stream.stop();
    assert_eq!(errors, 0, "the forwarder refused or dropped frames");
    let started = Instant::now();
    let mut have = HashSet::new();
    let drained = wait_until(Duration::from_secs(60), || {
        have = seqs_in(&[&p_out, &s_out]);
        missing(&acked, &have).is_empty()
    });
    let lost = missing(&acked, &have);
    assert!(
        drained,
        "{} of {} acked events not delivered after the standby returned; log:\n{}",
        lost.len(),
        acked.len(),
        fwd.log_text()
    );
    eprintln!(
        "idle RSS {idle} KiB, peak during outage {peak} KiB, {} events acked during the outage, drained in {:?}",
        acked_during,
        started.elapsed()
    );
}

/// Acceptance 3: the forwarder is SIGKILLed mid-stream and restarted; every event it had acked
/// is delivered.
#[test]
fn forwarder_sigkilled_mid_stream_delivers_every_acked_event() {
    let dir = tempfile::tempdir().unwrap();
    let (p, s, f, h) = (free_port(), free_port(), free_port(), free_port());
    let _primary = start_receiver(&dir.path().join("primary"), p);
    let _standby = start_receiver(&dir.path().join("standby"), s);
    let fwd_dir = dir.path().join("forwarder");
    let mut fwd = Node::start(
        &fwd_dir,
        &forwarder_config(&fwd_dir, f, h, &primary_and_standby(p, s), ""),
        &[f, h],
    );
    let stream = Stream::start(TAG, f, 3, 500, (0, 150_000), None);
    for round in 0..2 {
        let target = 30_000 * (round + 1);
        assert!(wait_until(Duration::from_secs(60), || stream.acked_count() >= target));
        fwd.kill9();
        assert!(
            stream.acked_count() < 150_000,
            "killed after the stream ended"
        );
        std::thread::sleep(Duration::from_millis(300));
        fwd.spawn();
    }
    let acked = stream.finish();
    let outs = [
        dir.path().join("primary/out"),
        dir.path().join("standby/out"),
    ];
    let mut have = HashSet::new();
    let complete = wait_until(Duration::from_secs(60), || {
        have = seqs_in(&[&outs[0], &outs[1]]);
        missing(&acked, &have).is_empty()
    });
    let lost = missing(&acked, &have);
    assert!(
        complete,
        "{} acked events lost across forwarder crashes (first {:?}); log:\n{}",
        lost.len(),
        &lost[..lost.len().min(10)],
        fwd.log_text()
    );
}

// ---------------------------------------------------------------------------------------------
// In-test receivers: see chunk ids, withhold acks.

#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    chunk: String,
    seqs: Vec<u64>,
}

/// A Forward receiver in the test process that records every chunk; it acks while `acking`.
struct TestReceiver {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    acking: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl TestReceiver {
    fn start(rt: &tokio::runtime::Runtime, port: u16, acking: bool) -> TestReceiver {
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(addr(port)))
            .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let acking = Arc::new(AtomicBool::new(acking));
        let (seen2, acking2) = (seen.clone(), acking.clone());
        let task = rt.spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let (seen, acking) = (seen2.clone(), acking2.clone());
                conns.spawn(async move {
                    let mut decoder = FrameDecoder::new(DecoderConfig::default());
                    let mut buf = bytes::BytesMut::new();
                    loop {
                        while let Ok(Some(frame)) = decoder.decode(&mut buf) {
                            let Frame::Events(ev) = frame else { continue };
                            let chunk = ev.options.chunk.clone().unwrap_or_default();
                            seen.lock().unwrap().push(Seen {
                                at: Instant::now(),
                                chunk: String::from_utf8_lossy(&chunk).into_owned(),
                                seqs: decode_seqs(&ev.entries),
                            });
                            if acking.load(Ordering::SeqCst)
                                && stream.write_all(&encode_ack(&chunk)).await.is_err()
                            {
                                return;
                            }
                        }
                        match stream.read_buf(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                    }
                });
            }
        });
        TestReceiver {
            port,
            seen,
            acking,
            task,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Like a killed process: the listener and every connection go away.
    fn kill(self, rt: &tokio::runtime::Runtime) -> u16 {
        self.task.abort();
        let _ = rt.block_on(self.task);
        self.port
    }
}

fn decode_seqs(entries: &[u8]) -> Vec<u64> {
    let mut cur = std::io::Cursor::new(entries);
    let mut out = Vec::new();
    while (cur.position() as usize) < entries.len() {
        let v = rmpv::decode::read_value(&mut cur).unwrap();
        let seq = v.as_array().and_then(|a| a.get(1)).and_then(|r| {
            r.as_map()?
                .iter()
                .find(|(k, _)| k.as_str() == Some("seq"))
                .and_then(|(_, v)| v.as_u64())
        });
        out.extend(seq);
    }
    out
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Acceptance 3, second half: a chunk retransmitted after a forwarder crash carries its
/// original chunk id (and the same events), so a receiver can recognise it.
#[test]
fn retransmission_after_forwarder_crash_keeps_the_chunk_id() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (r, f, h) = (free_port(), free_port(), free_port());
    let receiver = TestReceiver::start(&rt, r, false);
    let servers = format!("<server>\n    host 127.0.0.1\n    port {r}\n  </server>");
    let fwd_dir = dir.path().join("forwarder");
    let extra = "ack_response_timeout 30s";
    let mut fwd = Node::start(
        &fwd_dir,
        &forwarder_config(&fwd_dir, f, h, &servers, extra),
        &[f, h],
    );
    ForwardClient::connect(addr(f))
        .unwrap()
        .send_acked(TAG, 0..100, 10)
        .unwrap();
    // The receiver gets the chunk but withholds the ack; the forwarder dies waiting.
    assert!(wait_until(Duration::from_secs(10), || !receiver
        .seen()
        .is_empty()));
    fwd.kill9();
    let first = receiver.seen()[0].clone();
    assert_eq!(first.seqs, (0..100).collect::<Vec<_>>());
    receiver.acking.store(true, Ordering::SeqCst);
    fwd.spawn();
    assert!(
        wait_until(Duration::from_secs(15), || receiver.seen().len() >= 2),
        "chunk not retransmitted after restart; log:\n{}",
        fwd.log_text()
    );
    let again = receiver.seen()[1].clone();
    assert_eq!(
        again.chunk, first.chunk,
        "retransmission got a new chunk id"
    );
    assert_eq!(again.seqs, first.seqs);
    // Acked now: it leaves the buffer (so it cannot be sent again) after exactly two sends.
    assert!(
        wait_until(Duration::from_secs(10), || buffered_chunks(
            &fwd_dir.join("buffer")
        ) == 0),
        "the acked chunk stayed in the buffer; log:\n{}",
        fwd.log_text()
    );
    assert_eq!(receiver.seen().len(), 2);
    receiver.kill(&rt);
}

/// Acceptance 4: when the primary comes back, traffic returns to it after `recover_wait` and
/// the standby goes idle.
#[test]
fn traffic_returns_to_the_recovered_primary_and_standby_goes_idle() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (p, s, f, h) = (free_port(), free_port(), free_port(), free_port());
    let primary = TestReceiver::start(&rt, p, true);
    let standby = TestReceiver::start(&rt, s, true);
    let fwd_dir = dir.path().join("forwarder");
    let fwd = Node::start(
        &fwd_dir,
        &forwarder_config(&fwd_dir, f, h, &primary_and_standby(p, s), ""),
        &[f, h],
    );
    let stream = Stream::start(
        TAG,
        f,
        1,
        50,
        (0, u64::MAX),
        Some(Duration::from_millis(20)),
    );
    assert!(wait_until(Duration::from_secs(10), || primary.seen().len() >= 5));
    assert!(
        standby.seen().is_empty(),
        "standby used while primary is up"
    );

    let port = primary.kill(&rt);
    assert!(
        wait_until(Duration::from_secs(10), || standby.seen().len() >= 5),
        "standby not promoted; log:\n{}",
        fwd.log_text()
    );
    std::thread::sleep(Duration::from_secs(1));
    let primary = TestReceiver::start(&rt, port, true);
    let back = Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), || !primary.seen().is_empty()),
        "primary got no traffic after it came back; log:\n{}",
        fwd.log_text()
    );
    let first = primary.seen()[0].at;
    let returned_after = first.duration_since(back);
    // recover_wait 1 s: heartbeats every 0.2 s must succeed for 1 s before it is used.
    assert!(
        returned_after >= Duration::from_secs(1),
        "traffic returned before recover_wait: {returned_after:?}"
    );
    // Chunks already on their way to the standby may still land; after that it is idle.
    assert!(
        wait_quiet(Duration::from_secs(15), Duration::from_secs(1), || standby
            .seen()
            .len()),
        "standby keeps receiving traffic after the primary recovered"
    );
    let standby_before = standby.seen().len();
    let primary_before = primary.seen().len();
    std::thread::sleep(Duration::from_secs(3));
    let acked = stream.stop();
    assert!(!acked.is_empty());
    assert_eq!(
        standby.seen().len(),
        standby_before,
        "standby still receives traffic after the primary recovered"
    );
    assert!(primary.seen().len() > primary_before + 5);
    eprintln!("traffic returned to the primary {returned_after:?} after it came back");
}

/// Acceptance 6: a receiver that reads but never acks makes the forwarder send the chunk to the
/// next node after `ack_response_timeout`, with the same chunk id.
#[test]
fn silent_receiver_makes_the_chunk_move_on_after_ack_response_timeout() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (p, s, f, h) = (free_port(), free_port(), free_port(), free_port());
    let silent = TestReceiver::start(&rt, p, false);
    let standby = TestReceiver::start(&rt, s, true);
    let fwd_dir = dir.path().join("forwarder");
    let fwd = Node::start(
        &fwd_dir,
        &forwarder_config(&fwd_dir, f, h, &primary_and_standby(p, s), ""),
        &[f, h],
    );
    ForwardClient::connect(addr(f))
        .unwrap()
        .send_acked(TAG, 0..10, 10)
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || !standby.seen().is_empty()),
        "chunk never reached the standby; log:\n{}",
        fwd.log_text()
    );
    let (first, moved) = (silent.seen()[0].clone(), standby.seen()[0].clone());
    assert_eq!(moved.chunk, first.chunk);
    assert_eq!(moved.seqs, (0..10).collect::<Vec<_>>());
    let waited = moved.at.duration_since(first.at);
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(6),
        "moved on after {waited:?}, ack_response_timeout is 2s"
    );
    let log = fwd.log_text();
    assert!(log.contains("no response from node"), "{log}");
}

/// Acceptance 5: `<security>` shared_key handshake and TLS (test CA) between a forwarder and a
/// lograft receiver; a wrong key is refused on both sides with a clear log line.
#[test]
fn shared_key_and_tls_work_and_a_wrong_key_is_refused_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "lograft e2e CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let pki = dir.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    std::fs::write(pki.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(pki.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(pki.join("server.key"), key.serialize_pem()).unwrap();

    let r = free_port();
    let recv_dir = dir.path().join("receiver");
    let security = format!(
        r#"<transport tls>
    cert_path {cert}
    private_key_path {key}
  </transport>
  <security>
    self_hostname receiver
    shared_key s3cret
  </security>"#,
        cert = pki.join("server.pem").display(),
        key = pki.join("server.key").display(),
    );
    let receiver = Node::start(&recv_dir, &receiver_config(&recv_dir, r, &security), &[r]);
    let servers = format!("<server>\n    host 127.0.0.1\n    port {r}\n  </server>");
    let client_side = |key: &str| {
        format!(
            "transport tls\n  tls_cert_path {}\n  tls_verify_hostname true\n  <security>\n    self_hostname forwarder\n    shared_key {key}\n  </security>",
            pki.join("ca.pem").display()
        )
    };

    // Right key over TLS: delivered.
    let (f, h) = (free_port(), free_port());
    let good_dir = dir.path().join("good");
    let good = Node::start(
        &good_dir,
        &forwarder_config(&good_dir, f, h, &servers, &client_side("s3cret")),
        &[f, h],
    );
    ForwardClient::connect(addr(f))
        .unwrap()
        .send_acked(TAG, 0..100, 10)
        .unwrap();
    let out = recv_dir.join("out");
    assert!(
        wait_until(Duration::from_secs(15), || seqs_in(&[&out]).len() == 100),
        "events not delivered over TLS with the shared key; forwarder log:\n{}\nreceiver log:\n{}",
        good.log_text(),
        receiver.log_text()
    );

    // Wrong key: refused, logged on both sides, nothing delivered.
    let (f2, h2) = (free_port(), free_port());
    let bad_dir = dir.path().join("bad");
    let bad = Node::start(
        &bad_dir,
        &forwarder_config(&bad_dir, f2, h2, &servers, &client_side("wrong")),
        &[f2, h2],
    );
    ForwardClient::connect(addr(f2))
        .unwrap()
        .send_acked(TAG, 1000..1100, 10)
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || {
            bad.log_text().contains("shared_key mismatch")
                && receiver.log_text().contains("handshake failed")
                && receiver.log_text().contains("shared_key mismatch")
        }),
        "wrong key not reported; forwarder log:\n{}\nreceiver log:\n{}",
        bad.log_text(),
        receiver.log_text()
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(seqs_in(&[&out]).iter().all(|&s| s < 1000));
}

/// The case Fluentd 1.15 gets wrong, made deterministic: the primary has read chunks and not
/// acked them yet when it dies. With a 60 s `ack_response_timeout`, only the broken connection
/// can explain a prompt move: the standby must get the same chunks (same ids) within seconds,
/// and "no nodes are available" must never be logged.
#[test]
fn primary_dying_while_the_forwarder_awaits_its_ack_promotes_the_standby_at_once() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (p, s, f, h) = (free_port(), free_port(), free_port(), free_port());
    let primary = TestReceiver::start(&rt, p, false);
    let standby = TestReceiver::start(&rt, s, true);
    let fwd_dir = dir.path().join("forwarder");
    let fwd = Node::start(
        &fwd_dir,
        &forwarder_config(
            &fwd_dir,
            f,
            h,
            &primary_and_standby(p, s),
            "ack_response_timeout 60s",
        ),
        &[f, h],
    );
    let mut client = ForwardClient::connect(addr(f)).unwrap();
    for i in 0..3 {
        client.send_acked(TAG, i * 100..(i + 1) * 100, 10).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(wait_until(Duration::from_secs(10), || primary.seen().len() >= 3));
    let waiting: HashSet<String> = primary.seen().into_iter().map(|s| s.chunk).collect();
    assert!(standby.seen().is_empty());
    primary.kill(&rt);
    let killed = Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), || {
            let moved: HashSet<String> = standby.seen().into_iter().map(|s| s.chunk).collect();
            waiting.is_subset(&moved)
        }),
        "chunks awaiting the dead primary's ack did not move to the standby; log:\n{}",
        fwd.log_text()
    );
    let moved_after = killed.elapsed();
    let seqs: HashSet<u64> = standby.seen().into_iter().flat_map(|s| s.seqs).collect();
    assert!((0..300).all(|s| seqs.contains(&s)));
    // New events go straight to the standby.
    client.send_acked(TAG, 300..400, 10).unwrap();
    assert!(wait_until(Duration::from_secs(5), || standby
        .seen()
        .iter()
        .any(|s| s.seqs.contains(&300))));
    let log = fwd.log_text();
    assert!(!log.contains("no nodes are available"), "{log}");
    assert_eq!(
        log.matches("detached forwarding server").count(),
        1,
        "{log}"
    );
    eprintln!("chunks moved to the standby {moved_after:?} after the primary died");
}
