//! Tests of out_forward against in-test receivers built on the crate's codec (failover, acks,
//! handshake, keepalive, gzip, recovery) and against the real in_forward (TLS, UDP heartbeat).

use super::config::{ClientSecurityConfig, ClientTlsConfig, HealthParams, ServerConfig};
use super::*;
use crate::buffer::{ChunkId, ChunkMeta};
use crate::event::{write_entry, EventBatch, EventTime};
use crate::forward::{
    encode_ack, DecoderConfig, EventMode, Frame as WireFrame, FrameDecoder, ServerHandshake,
    ServerSecurity,
};
use crate::input::forward::config::{ForwardInputConfig, ServerSecurityConfig, ServerTlsConfig};
use crate::input::forward::ForwardInput;
use crate::pipeline::{BoxFuture, Emit, EmitError};
use bytes::{Bytes, BytesMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

const WAIT: Duration = Duration::from_secs(10);

/// How an in-test receiver answers a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    Ack,
    WrongAck,
    /// Reads the frame, never answers, keeps the connection open.
    Silent,
    /// Reads the frame and closes the connection without an ack.
    Close,
    /// Acks this many frames (over the receiver's life), then behaves like `Close`.
    CloseAfter(usize),
}

#[derive(Debug, Clone)]
struct Received {
    chunk: Option<String>,
    count: u32,
    mode: EventMode,
    entries: Bytes,
}

/// A Forward receiver on 127.0.0.1 that records every frame.
struct Receiver {
    addr: SocketAddr,
    frames: Arc<Mutex<Vec<Received>>>,
    /// Connections that carried at least one frame.
    data_connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Receiver {
    async fn start(reply: Reply, security: Option<ServerSecurity>) -> Receiver {
        Self::start_on("127.0.0.1:0".parse().unwrap(), reply, security).await
    }

    async fn start_on(
        addr: SocketAddr,
        reply: Reply,
        security: Option<ServerSecurity>,
    ) -> Receiver {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let frames = Arc::new(Mutex::new(Vec::new()));
        let data_connections = Arc::new(AtomicUsize::new(0));
        let (f, dc) = (frames.clone(), data_connections.clone());
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let (stream, peer) = listener.accept().await.unwrap();
                let (f, dc, sec) = (f.clone(), dc.clone(), security.clone());
                conns.spawn(async move {
                    let (mut r, mut w) = stream.into_split();
                    let mut buf = BytesMut::new();
                    if let Some(sec) = &sec {
                        let hs = ServerHandshake::new(sec, true);
                        w.write_all(&hs.helo()).await.unwrap();
                        let ping = loop {
                            if let Some(m) = take_message(&mut buf) {
                                break m;
                            }
                            if r.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                                return;
                            }
                        };
                        let outcome = hs.check_ping(sec, &ping, peer.ip());
                        let _ = w.write_all(&outcome.pong).await;
                        if outcome.result.is_err() {
                            return;
                        }
                    }
                    let mut decoder = FrameDecoder::new(DecoderConfig::default());
                    let mut counted = false;
                    loop {
                        while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                            let WireFrame::Events(ev) = frame else {
                                continue;
                            };
                            if !counted {
                                dc.fetch_add(1, Ordering::SeqCst);
                                counted = true;
                            }
                            let chunk = ev.options.chunk.clone();
                            let seen = {
                                let mut frames = f.lock().unwrap();
                                frames.push(Received {
                                    chunk: chunk
                                        .as_ref()
                                        .map(|c| String::from_utf8(c.to_vec()).unwrap()),
                                    count: ev.count,
                                    mode: ev.mode,
                                    entries: ev.entries.clone(),
                                });
                                frames.len()
                            };
                            match (reply, chunk) {
                                (Reply::CloseAfter(k), _) if seen > k => return,
                                (Reply::CloseAfter(_), Some(c)) => {
                                    w.write_all(&encode_ack(&c)).await.unwrap();
                                }
                                (Reply::Ack, Some(c)) => {
                                    w.write_all(&encode_ack(&c)).await.unwrap();
                                }
                                (Reply::WrongAck, Some(_)) => {
                                    w.write_all(&encode_ack(b"someone-else")).await.unwrap();
                                }
                                (Reply::Close, _) => return,
                                _ => {}
                            }
                        }
                        if r.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                            // Keep a silent receiver's half of the connection open.
                            if reply == Reply::Silent {
                                std::future::pending::<()>().await;
                            }
                            return;
                        }
                    }
                });
            }
        });
        Receiver {
            addr,
            frames,
            data_connections,
            task,
        }
    }

    fn frames(&self) -> Vec<Received> {
        self.frames.lock().unwrap().clone()
    }

    /// Stop accepting and drop every connection (like a killed process).
    async fn kill(self) -> SocketAddr {
        self.task.abort();
        let _ = self.task.await;
        self.addr
    }
}

fn take_message(buf: &mut BytesMut) -> Option<Bytes> {
    crate::forward::take_message(buf, 1 << 20).unwrap()
}

/// A port nobody listens on (bound, then released).
async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

fn server(addr: SocketAddr, standby: bool) -> ServerConfig {
    ServerConfig {
        host: addr.ip().to_string(),
        port: addr.port(),
        name: Some(if standby { "standby" } else { "primary" }.into()),
        weight: 60,
        standby,
        shared_key: None,
        username: None,
        password: None,
        location: Default::default(),
    }
}

fn config(servers: Vec<ServerConfig>) -> ForwardOutputConfig {
    ForwardOutputConfig {
        servers,
        transport: Transport::Tcp,
        send_timeout: Duration::from_secs(5),
        connect_timeout: Some(Duration::from_secs(2)),
        health: HealthParams {
            heartbeat_type: HeartbeatType::Transport,
            heartbeat_interval: Duration::from_millis(100),
            recover_wait: Duration::from_millis(500),
            hard_timeout: Duration::from_secs(60),
            phi_failure_detector: true,
            phi_threshold: 16.0,
        },
        require_ack_response: true,
        ack_response_timeout: Duration::from_secs(2),
        expire_dns_cache: None,
        dns_round_robin: false,
        compress: Compression::Text,
        keepalive: false,
        keepalive_timeout: None,
        verify_connection_at_startup: false,
        max_frame_size: DEFAULT_MAX_FRAME_SIZE,
        tls: ClientTlsConfig::default(),
        security: None,
    }
}

fn chunk(records: u32) -> Chunk {
    let mut entries = BytesMut::new();
    for i in 0..records {
        let mut rec = BytesMut::new();
        crate::msgpack::write_map_header(&mut rec, 1);
        crate::msgpack::write_str(&mut rec, "seq");
        crate::msgpack::write_str(&mut rec, &i.to_string());
        write_entry(
            &mut entries,
            EventTime {
                secs: 1_700_000_000,
                nanos: i,
            },
            &rec,
        );
    }
    let entries = entries.freeze();
    Chunk {
        meta: ChunkMeta {
            id: ChunkId::random(),
            tag: "test.fwd".into(),
            timekey: None,
            records: records as u64,
            bytes: entries.len() as u64,
            created: SystemTime::now(),
        },
        entries,
        segments: Vec::new(),
    }
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn primary_takes_traffic_and_standby_stays_idle() {
    let primary = Receiver::start(Reply::Ack, None).await;
    let standby = Receiver::start(Reply::Ack, None).await;
    let out = ForwardOutput::new(&config(vec![
        server(primary.addr, false),
        server(standby.addr, true),
    ]))
    .unwrap();
    let c = chunk(3);
    for _ in 0..5 {
        out.write(&c).await.unwrap();
    }
    let got = primary.frames();
    assert_eq!(got.len(), 5);
    assert!(standby.frames().is_empty());
    // PackedForward with the buffer's entries untouched and {size, chunk} options.
    assert_eq!(got[0].mode, EventMode::PackedForward);
    assert_eq!(got[0].count, 3);
    assert_eq!(got[0].entries, c.entries);
    assert_eq!(
        got[0].chunk.as_deref(),
        Some(c.meta.id.to_base64().as_str())
    );
}

#[tokio::test]
async fn refused_primary_fails_over_to_standby_in_the_same_write() {
    let primary = closed_port().await;
    let standby = Receiver::start(Reply::Ack, None).await;
    let mut cfg = config(vec![server(primary, false), server(standby.addr, true)]);
    cfg.health.heartbeat_type = HeartbeatType::None;
    let out = ForwardOutput::new(&cfg).unwrap();
    assert_eq!(out.availability(), vec![true, true]);
    let c = chunk(2);
    out.write(&c).await.unwrap();
    assert_eq!(out.availability(), vec![false, true]);
    let got = standby.frames();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].chunk.as_deref(),
        Some(c.meta.id.to_base64().as_str())
    );
}

/// The case Fluentd 1.15 gets wrong: the primary dies while the forwarder waits for its ack.
/// The standby must take the chunk at once (long before ack_response_timeout), same chunk id.
#[tokio::test]
async fn primary_closing_before_ack_promotes_standby_with_same_chunk_id() {
    let primary = Receiver::start(Reply::Close, None).await;
    let standby = Receiver::start(Reply::Ack, None).await;
    let mut cfg = config(vec![
        server(primary.addr, false),
        server(standby.addr, true),
    ]);
    cfg.ack_response_timeout = Duration::from_secs(30);
    let out = ForwardOutput::new(&cfg).unwrap();
    let c = chunk(4);
    let started = Instant::now();
    out.write(&c).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    let id = c.meta.id.to_base64();
    assert_eq!(primary.frames()[0].chunk.as_deref(), Some(id.as_str()));
    assert_eq!(standby.frames()[0].chunk.as_deref(), Some(id.as_str()));
    assert!(!out.availability()[0]);
}

#[tokio::test]
async fn primary_killed_while_waiting_for_ack_promotes_standby() {
    let primary = Receiver::start(Reply::Silent, None).await;
    let standby = Receiver::start(Reply::Ack, None).await;
    let mut cfg = config(vec![
        server(primary.addr, false),
        server(standby.addr, true),
    ]);
    cfg.ack_response_timeout = Duration::from_secs(30);
    let out = Arc::new(ForwardOutput::new(&cfg).unwrap());
    let c = chunk(4);
    let write = tokio::spawn({
        let (out, c) = (out.clone(), c.clone());
        async move { out.write(&c).await }
    });
    let frames = primary.frames.clone();
    eventually("the primary to read the chunk", || {
        !frames.lock().unwrap().is_empty()
    })
    .await;
    let started = Instant::now();
    primary.kill().await;
    tokio::time::timeout(Duration::from_secs(5), write)
        .await
        .expect("write did not fail over promptly")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        standby.frames()[0].chunk.as_deref(),
        Some(c.meta.id.to_base64().as_str())
    );
}

#[tokio::test]
async fn mismatched_ack_and_ack_timeout_move_the_chunk_on() {
    let wrong = Receiver::start(Reply::WrongAck, None).await;
    let silent = Receiver::start(Reply::Silent, None).await;
    let good = Receiver::start(Reply::Ack, None).await;
    // One active server and two standbys: each failure brings in the next standby.
    let mut cfg = config(vec![
        server(wrong.addr, false),
        server(silent.addr, true),
        server(good.addr, true),
    ]);
    cfg.ack_response_timeout = Duration::from_secs(1);
    cfg.health.heartbeat_type = HeartbeatType::None;
    cfg.health.recover_wait = Duration::from_secs(600);
    let out = ForwardOutput::new(&cfg).unwrap();
    let c = chunk(1);
    let started = Instant::now();
    out.write(&c).await.unwrap();
    // wrong ack → first standby (silent: 1 s ack timeout) → second standby.
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert_eq!(out.availability(), vec![false, false, true]);
    let id = c.meta.id.to_base64();
    for r in [&wrong, &silent, &good] {
        assert_eq!(r.frames()[0].chunk.as_deref(), Some(id.as_str()));
    }
}

#[tokio::test]
async fn a_slow_server_holds_only_a_few_workers_and_the_rest_go_elsewhere() {
    use super::balance::SLOW_SLACK;
    let slow = Receiver::start(Reply::Silent, None).await;
    let fast = Receiver::start(Reply::Ack, None).await;
    let mut cfg = config(vec![server(slow.addr, false), server(fast.addr, false)]);
    cfg.ack_response_timeout = Duration::from_secs(60);
    cfg.health.heartbeat_type = HeartbeatType::None;
    let out = Arc::new(ForwardOutput::new(&cfg).unwrap());
    // Four flush workers take chunks one after another, as the output driver's do.
    let remaining = Arc::new(AtomicUsize::new(20));
    let delivered = Arc::new(AtomicUsize::new(0));
    for _ in 0..4 {
        let (out, remaining, delivered) = (out.clone(), remaining.clone(), delivered.clone());
        tokio::spawn(async move {
            while remaining
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                if out.write(&chunk(1)).await.is_ok() {
                    delivered.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
    }
    // Every chunk but the few stuck on the silent server arrives long before its ack timeout.
    eventually("chunks delivered by the fast server", || {
        delivered.load(Ordering::SeqCst) >= 20 - SLOW_SLACK
    })
    .await;
    assert!(slow.frames().len() <= SLOW_SLACK, "{}", slow.frames().len());
    assert_eq!(fast.frames().len(), delivered.load(Ordering::SeqCst));
}

#[tokio::test]
async fn no_server_left_is_a_retryable_error_naming_each_failure() {
    let a = closed_port().await;
    let b = closed_port().await;
    let mut cfg = config(vec![server(a, false), server(b, true)]);
    cfg.health.heartbeat_type = HeartbeatType::None;
    cfg.health.recover_wait = Duration::from_secs(600);
    let out = ForwardOutput::new(&cfg).unwrap();
    let err = out.write(&chunk(1)).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, OutputError::Retryable(_)), "{text}");
    assert!(text.contains("no nodes are available"), "{text}");
    assert!(
        text.contains("primary") && text.contains("standby"),
        "{text}"
    );
    // Later writes fail fast without touching the network.
    let err = out.write(&chunk(1)).await.unwrap_err().to_string();
    assert!(err.contains("down: "), "{err}");
}

#[tokio::test]
async fn recovered_primary_takes_traffic_back_after_recover_wait() {
    let primary_addr = closed_port().await;
    let standby = Receiver::start(Reply::Ack, None).await;
    let out = ForwardOutput::new(&config(vec![
        server(primary_addr, false),
        server(standby.addr, true),
    ]))
    .unwrap();
    // Heartbeats find the primary down without any chunk.
    eventually("primary marked down", || !out.availability()[0]).await;
    out.write(&chunk(1)).await.unwrap();
    assert_eq!(standby.frames().len(), 1);

    let notified = out.recovered().unwrap().notified();
    let primary = Receiver::start_on(primary_addr, Reply::Ack, None).await;
    let back = Instant::now();
    tokio::time::timeout(WAIT, notified)
        .await
        .expect("no recovery signal");
    // recover_wait 0.5 s at 0.1 s heartbeats: six successful heartbeats, 0.5 s apart.
    assert!(
        back.elapsed() >= Duration::from_millis(500),
        "{:?}",
        back.elapsed()
    );
    assert!(out.availability()[0]);
    for _ in 0..3 {
        out.write(&chunk(1)).await.unwrap();
    }
    assert_eq!(primary.frames().len(), 3);
    assert_eq!(standby.frames().len(), 1);
}

#[tokio::test]
async fn without_ack_a_written_chunk_counts_as_delivered() {
    let silent = Receiver::start(Reply::Silent, None).await;
    let mut cfg = config(vec![server(silent.addr, false)]);
    cfg.require_ack_response = false;
    let out = ForwardOutput::new(&cfg).unwrap();
    let started = Instant::now();
    out.write(&chunk(2)).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    let frames = silent.frames.clone();
    eventually("frame", || !frames.lock().unwrap().is_empty()).await;
    // At-most-once, as Fluentd: no chunk option, no ack expected.
    assert_eq!(silent.frames()[0].chunk, None);
}

#[tokio::test]
async fn keepalive_reuses_one_connection_and_gzip_sends_compressed_packed_forward() {
    let r = Receiver::start(Reply::Ack, None).await;
    let mut cfg = config(vec![server(r.addr, false)]);
    cfg.keepalive = true;
    cfg.compress = Compression::Gzip;
    cfg.health.heartbeat_type = HeartbeatType::None;
    let out = ForwardOutput::new(&cfg).unwrap();
    let c = chunk(50);
    for _ in 0..4 {
        out.write(&c).await.unwrap();
    }
    assert_eq!(r.data_connections.load(Ordering::SeqCst), 1);
    let got = r.frames();
    assert_eq!(got.len(), 4);
    assert_eq!(got[0].mode, EventMode::CompressedPackedForward);
    assert_eq!(got[0].entries, c.entries, "decompressed entries differ");
    assert_eq!(got[0].count, 50);

    // Without keepalive every chunk has its own connection.
    cfg.keepalive = false;
    let r2 = Receiver::start(Reply::Ack, None).await;
    cfg.servers = vec![server(r2.addr, false)];
    let out = ForwardOutput::new(&cfg).unwrap();
    for _ in 0..3 {
        out.write(&c).await.unwrap();
    }
    assert_eq!(r2.data_connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn kept_alive_connection_closed_by_the_server_is_replaced_without_marking_it_down() {
    // A receiver that closes after each acked frame (like deny_keepalive) but says
    // nothing about it: the second send on the stale connection fails and is redone.
    let closing = Receiver::start(Reply::Ack, None).await;
    let mut cfg = config(vec![server(closing.addr, false)]);
    cfg.keepalive = true;
    cfg.health.heartbeat_type = HeartbeatType::None;
    let out = ForwardOutput::new(&cfg).unwrap();
    out.write(&chunk(1)).await.unwrap();
    let addr = closing.kill().await;
    let reopened = Receiver::start_on(addr, Reply::Ack, None).await;
    out.write(&chunk(1)).await.unwrap();
    assert_eq!(reopened.frames().len(), 1);
    assert_eq!(out.availability(), vec![true]);
}

fn server_security(key: &str) -> ServerSecurity {
    ServerSecurity::from_config(&ServerSecurityConfig {
        self_hostname: "aggregator".into(),
        shared_key: key.into(),
        user_auth: false,
        allow_anonymous_source: true,
        users: vec![],
        clients: vec![],
    })
    .unwrap()
}

#[tokio::test]
async fn shared_key_handshake_client_side() {
    let r = Receiver::start(Reply::Ack, Some(server_security("s3cret"))).await;
    let mut cfg = config(vec![server(r.addr, false)]);
    cfg.health.heartbeat_type = HeartbeatType::None;
    cfg.security = Some(ClientSecurityConfig {
        self_hostname: "forwarder".into(),
        shared_key: "s3cret".into(),
    });
    let out = ForwardOutput::new(&cfg).unwrap();
    out.write(&chunk(1)).await.unwrap();
    assert_eq!(r.frames().len(), 1);

    // A per-server shared_key overrides <security>'s.
    cfg.servers[0].shared_key = Some("wrong".into());
    let out = ForwardOutput::new(&cfg).unwrap();
    let err = out.write(&chunk(1)).await.unwrap_err().to_string();
    assert!(err.contains("shared_key mismatch"), "{err}");
    assert_eq!(out.availability(), vec![false]);
    assert_eq!(r.frames().len(), 1);

    // No <security> here, but the server sent HELO: say so.
    cfg.security = None;
    cfg.servers[0].shared_key = None;
    let out = ForwardOutput::new(&cfg).unwrap();
    let err = out.write(&chunk(1)).await.unwrap_err().to_string();
    assert!(err.contains("sent HELO"), "{err}");
}

#[tokio::test]
async fn transport_heartbeat_runs_the_handshake_so_a_wrong_key_keeps_the_server_down() {
    let r = Receiver::start(Reply::Ack, Some(server_security("s3cret"))).await;
    let mut cfg = config(vec![server(r.addr, false)]);
    cfg.security = Some(ClientSecurityConfig {
        self_hostname: "forwarder".into(),
        shared_key: "nope".into(),
    });
    let out = ForwardOutput::new(&cfg).unwrap();
    eventually("server marked down by heartbeat", || !out.availability()[0]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!out.availability()[0]);
}

/// Collects committed batches for the real in_forward.
struct Collect(Mutex<Vec<EventBatch>>);

impl Emit for Collect {
    fn emit(&self, batch: EventBatch) -> BoxFuture<'_, Result<(), EmitError>> {
        self.0.lock().unwrap().push(batch);
        Box::pin(async { Ok(()) })
    }
}

fn input_config() -> ForwardInputConfig {
    ForwardInputConfig {
        bind: "127.0.0.1".into(),
        port: 0,
        ..ForwardInputConfig::default()
    }
}

fn start_input(cfg: ForwardInputConfig) -> (SocketAddr, Arc<Collect>, CancellationToken) {
    let emit = Arc::new(Collect(Mutex::new(Vec::new())));
    let input = ForwardInput::bind(&cfg, emit.clone()).unwrap();
    let addr = input.local_addr();
    let stop = CancellationToken::new();
    tokio::spawn(input.run(stop.clone()));
    (addr, emit, stop)
}

#[tokio::test]
async fn tls_and_shared_key_against_in_forward_with_a_test_ca() {
    let dir = tempfile::tempdir().unwrap();
    let crate::tls::test_pki::TestPki {
        ca_path,
        cert_path,
        key_path,
    } = crate::tls::test_pki::write(dir.path(), "127.0.0.1");

    let mut icfg = input_config();
    icfg.tls = Some(ServerTlsConfig {
        cert_path,
        private_key_path: key_path,
        ..ServerTlsConfig::default()
    });
    icfg.security = Some(ServerSecurityConfig {
        self_hostname: "aggregator".into(),
        shared_key: "s3cret".into(),
        user_auth: false,
        allow_anonymous_source: true,
        users: vec![],
        clients: vec![],
    });
    let (addr, emit, stop) = start_input(icfg);

    let mut cfg = config(vec![server(addr, false)]);
    cfg.transport = Transport::Tls;
    cfg.tls = ClientTlsConfig {
        ca_cert_path: Some(ca_path),
        verify_hostname: true,
        ..ClientTlsConfig::default()
    };
    cfg.security = Some(ClientSecurityConfig {
        self_hostname: "forwarder".into(),
        shared_key: "s3cret".into(),
    });
    cfg.keepalive = true;
    let out = ForwardOutput::new(&cfg).unwrap();
    let c = chunk(7);
    out.write(&c).await.unwrap();
    out.write(&c).await.unwrap();
    let batches = emit.0.lock().unwrap().clone();
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[0].entries, c.entries);
    assert_eq!(
        batches[0].origin_chunk.as_deref(),
        Some(c.meta.id.to_base64().as_bytes())
    );

    // A forwarder that does not trust the server's CA refuses it.
    let other_key = rcgen::KeyPair::generate().unwrap();
    let other = rcgen::CertificateParams::new(vec!["other".to_string()])
        .unwrap()
        .self_signed(&other_key)
        .unwrap();
    let other_path = dir.path().join("other.pem");
    std::fs::write(&other_path, other.pem()).unwrap();
    cfg.tls.ca_cert_path = Some(other_path);
    cfg.health.heartbeat_type = HeartbeatType::None;
    let out = ForwardOutput::new(&cfg).unwrap();
    let err = out.write(&c).await.unwrap_err().to_string();
    assert!(err.contains("TLS handshake"), "{err}");
    stop.cancel();
}

#[tokio::test]
async fn udp_heartbeats_against_in_forward_bring_a_server_back() {
    let (addr, _emit, stop) = start_input(input_config());
    let mut cfg = config(vec![server(addr, false)]);
    cfg.health.heartbeat_type = HeartbeatType::Udp;
    let out = ForwardOutput::new(&cfg).unwrap();
    // Mark it down by hand (as a failed send would), then let UDP heartbeats recover it.
    let notified = out.recovered().unwrap().notified();
    out.shared.nodes[0].failed("test", &out.shared.recovered);
    assert_eq!(out.availability(), vec![false]);
    tokio::time::timeout(WAIT, notified)
        .await
        .expect("UDP heartbeats did not bring the server back");
    assert_eq!(out.availability(), vec![true]);
    stop.cancel();
}

#[tokio::test]
async fn verify_connection_at_startup_fails_for_an_unreachable_server() {
    let mut cfg = config(vec![server(closed_port().await, false)]);
    cfg.verify_connection_at_startup = true;
    let out = ForwardOutput::new(&cfg).unwrap();
    let err = out.start().await.unwrap_err().to_string();
    assert!(err.contains("unreachable"), "{err}");
    let r = Receiver::start(Reply::Ack, None).await;
    cfg.servers = vec![server(r.addr, false)];
    ForwardOutput::new(&cfg).unwrap().start().await.unwrap();
}

/// A chunk of `records` entries with `pad`-byte values.
fn padded_chunk(records: u32, pad: usize) -> Chunk {
    let mut entries = BytesMut::new();
    let padding = "p".repeat(pad);
    for i in 0..records {
        let rec =
            rmp_serde::to_vec_named(&serde_json::json!({ "seq": i, "pad": padding })).unwrap();
        write_entry(
            &mut entries,
            EventTime {
                secs: 1_700_000_000,
                nanos: 0,
            },
            &rec,
        );
    }
    let entries = entries.freeze();
    Chunk {
        meta: ChunkMeta {
            id: ChunkId::random(),
            tag: "test.frames".into(),
            timekey: None,
            records: records as u64,
            bytes: entries.len() as u64,
            created: SystemTime::now(),
        },
        entries,
        segments: Vec::new(),
    }
}

fn seqs(entries: &[u8]) -> Vec<u64> {
    crate::event::EntryIter::new(entries)
        .map(|e| {
            let v: serde_json::Value = rmp_serde::from_slice(e.unwrap().record).unwrap();
            v["seq"].as_u64().unwrap()
        })
        .collect()
}

#[tokio::test]
async fn a_chunk_larger_than_max_frame_size_goes_as_frames_a_limited_in_forward_accepts() {
    // The real in_forward refuses messages over 64 KiB.
    let mut icfg = input_config();
    icfg.chunk_size_limit = Some(64 * 1024);
    let (addr, got, stop) = start_input(icfg);
    let c = padded_chunk(2000, 200); // ~440 KB
    for compress in [Compression::Text, Compression::Gzip] {
        got.0.lock().unwrap().clear();
        let mut cfg = config(vec![server(addr, false)]);
        cfg.max_frame_size = 64 * 1024;
        cfg.compress = compress;
        let out = ForwardOutput::new(&cfg).unwrap();
        out.write(&c).await.unwrap();
        let batches = got.0.lock().unwrap().clone();
        assert!(batches.len() >= 7, "{compress:?}: {} frames", batches.len());
        let all: Vec<u64> = batches.iter().flat_map(|b| seqs(&b.entries)).collect();
        assert_eq!(all, (0..2000).collect::<Vec<_>>(), "{compress:?}");
        // Frame ids: derived from the chunk id and index, all distinct, none the chunk id.
        let ids: Vec<String> = batches
            .iter()
            .map(|b| String::from_utf8(b.origin_chunk.clone().unwrap().to_vec()).unwrap())
            .collect();
        let n = ids.len();
        let expected: Vec<String> = (0..n).map(|i| frames::frame_id(c.meta.id, i, n)).collect();
        assert_eq!(ids, expected);
        // The same chunk sent again produces the very same frames and ids.
        got.0.lock().unwrap().clear();
        out.write(&c).await.unwrap();
        let again: Vec<String> = got
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|b| String::from_utf8(b.origin_chunk.clone().unwrap().to_vec()).unwrap())
            .collect();
        assert_eq!(again, ids);
    }
    // max_frame_size 0: the whole chunk in one message (refused by this receiver).
    let mut cfg = config(vec![server(addr, false)]);
    cfg.max_frame_size = 0;
    cfg.health.heartbeat_type = HeartbeatType::None;
    got.0.lock().unwrap().clear();
    let out = ForwardOutput::new(&cfg).unwrap();
    assert!(out.write(&c).await.is_err());
    assert!(got.0.lock().unwrap().is_empty());
    stop.cancel();
}

#[tokio::test]
async fn when_the_primary_fails_mid_chunk_the_standby_takes_only_the_remaining_frames() {
    let primary = Receiver::start(Reply::CloseAfter(3), None).await;
    let standby = Receiver::start(Reply::Ack, None).await;
    let mut cfg = config(vec![
        server(primary.addr, false),
        server(standby.addr, true),
    ]);
    cfg.max_frame_size = 16 * 1024;
    cfg.health.heartbeat_type = HeartbeatType::None;
    let c = padded_chunk(500, 200); // ~110 KB: 7+ frames
    let out = ForwardOutput::new(&cfg).unwrap();
    out.write(&c).await.unwrap();
    let (p, s) = (primary.frames(), standby.frames());
    let n = p.len() - 1 + s.len();
    assert!(n >= 7, "{n} frames");
    assert_eq!(p.len(), 4, "3 acked + the one it dropped");
    let expected: Vec<String> = (0..n).map(|i| frames::frame_id(c.meta.id, i, n)).collect();
    let ids = |v: &[Received]| {
        v.iter()
            .map(|f| f.chunk.clone().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&p), expected[..4].to_vec());
    assert_eq!(ids(&s), expected[3..].to_vec());
    // Every event acknowledged exactly once: the primary's 3 acked frames + the standby's.
    let acked: Vec<u64> = p[..3]
        .iter()
        .chain(s.iter())
        .flat_map(|f| seqs(&f.entries))
        .collect();
    assert_eq!(acked, (0..500).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_chunk_is_not_delivered_until_every_frame_is_acked() {
    let primary = Receiver::start(Reply::CloseAfter(2), None).await;
    let mut cfg = config(vec![server(primary.addr, false)]);
    cfg.max_frame_size = 16 * 1024;
    cfg.health.heartbeat_type = HeartbeatType::None;
    let out = ForwardOutput::new(&cfg).unwrap();
    let err = out.write(&padded_chunk(500, 200)).await.unwrap_err();
    assert!(!err.is_permanent());
    assert!(err.to_string().contains("2 of "), "{err}");
}

#[tokio::test]
async fn an_entry_larger_than_max_frame_size_refused_by_the_receiver_is_a_permanent_error() {
    let mut icfg = input_config();
    icfg.chunk_size_limit = Some(8 * 1024);
    let (addr, got, stop) = start_input(icfg);
    let mut cfg = config(vec![server(addr, false)]);
    cfg.max_frame_size = 8 * 1024;
    cfg.health.heartbeat_type = HeartbeatType::None;
    let out = ForwardOutput::new(&cfg).unwrap();
    // One 20 KB entry: alone in its frame, which the receiver refuses.
    let c = padded_chunk(1, 20_000);
    let err = out.write(&c).await.unwrap_err();
    assert!(err.is_permanent(), "{err}");
    assert!(
        err.to_string().contains("larger than max_frame_size"),
        "{err}"
    );
    assert!(got.0.lock().unwrap().is_empty());
    stop.cancel();
}
