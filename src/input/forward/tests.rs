use super::config::{ServerSecurityConfig, ServerTlsConfig};
use super::*;
use crate::config::Compression;
use crate::event::{write_entry, EntryIter};
use crate::forward::{decode_ack, encode_packed_forward, ClientHandshake};
use crate::output::forward::config::ClientTlsConfig;
use crate::pipeline::BoxFuture;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::Semaphore;

const T: EventTime = EventTime {
    secs: 1_700_000_000,
    nanos: 1,
};
const WAIT: Duration = Duration::from_secs(5);

/// Records batches; can hold emits until released, or fail them.
struct MockEmit {
    batches: Mutex<Vec<EventBatch>>,
    started: AtomicUsize,
    fail: AtomicBool,
    held: AtomicBool,
    gate: Semaphore,
}

impl MockEmit {
    fn new() -> Arc<Self> {
        Arc::new(MockEmit {
            batches: Mutex::new(Vec::new()),
            started: AtomicUsize::new(0),
            fail: AtomicBool::new(false),
            held: AtomicBool::new(false),
            gate: Semaphore::new(0),
        })
    }

    fn batches(&self) -> Vec<EventBatch> {
        self.batches.lock().unwrap().clone()
    }

    async fn wait_started(&self, n: usize) {
        let deadline = Instant::now() + WAIT;
        while self.started.load(Ordering::SeqCst) < n {
            assert!(Instant::now() < deadline, "emit was not called {n} times");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Emit for MockEmit {
    fn emit(&self, batch: EventBatch) -> BoxFuture<'_, Result<(), EmitError>> {
        Box::pin(async move {
            self.started.fetch_add(1, Ordering::SeqCst);
            if self.held.load(Ordering::SeqCst) {
                self.gate.acquire().await.unwrap().forget();
            }
            if self.fail.load(Ordering::SeqCst) {
                return Err(EmitError::Storage("disk full".into()));
            }
            self.batches.lock().unwrap().push(batch);
            Ok(())
        })
    }
}

fn config() -> ForwardInputConfig {
    ForwardInputConfig {
        bind: "127.0.0.1".into(),
        port: 0,
        ..ForwardInputConfig::default()
    }
}

struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

async fn start(cfg: ForwardInputConfig, emit: Arc<MockEmit>) -> Server {
    let input = ForwardInput::bind(&cfg, emit).unwrap();
    let addr = input.local_addr();
    assert_ne!(addr.port(), 0);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(input.run(shutdown.clone()));
    Server {
        addr,
        shutdown,
        task,
    }
}

impl Server {
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("server did not stop")
            .unwrap();
    }
}

fn entries(n: usize) -> Vec<u8> {
    let mut b = BytesMut::new();
    for i in 0..n {
        write_entry(
            &mut b,
            T,
            &rmp_serde::to_vec_named(&json!({"i": i, "msg": "hello"})).unwrap(),
        );
    }
    b.to_vec()
}

fn chunk_frame(tag: &str, entries: &[u8], count: u32, chunk: Option<&[u8]>) -> Vec<u8> {
    let parts = encode_packed_forward(tag, entries, count, chunk, Compression::Text).unwrap();
    let mut v = parts.header.to_vec();
    v.extend_from_slice(entries);
    v.extend_from_slice(&parts.trailer);
    v
}

/// The next ack, or None when the connection closed (or nothing arrived within `within`).
async fn read_ack<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
    within: Duration,
) -> Option<Bytes> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(a) = decode_ack(buf).unwrap() {
            return Some(a);
        }
        match tokio::time::timeout_at(deadline, s.read_buf(buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(_)) => {}
        }
    }
}

/// True when the peer closed the connection (EOF or reset) without sending anything.
async fn closed_without_reply(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 64];
    match tokio::time::timeout(WAIT, s.read(&mut b)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => false,
        Err(_) => panic!("connection was not closed"),
    }
}

fn records(entries: &[u8]) -> Vec<Value> {
    EntryIter::new(entries)
        .map(|e| rmp_serde::from_slice(e.unwrap().record).unwrap())
        .collect()
}

#[tokio::test]
async fn acks_only_after_emit_resolves() {
    let emit = MockEmit::new();
    emit.held.store(true, Ordering::SeqCst);
    let server = start(config(), emit.clone()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let e = entries(3);
    s.write_all(&chunk_frame("app.a", &e, 3, Some(b"chunk-1=\n")))
        .await
        .unwrap();
    emit.wait_started(1).await;
    let mut buf = BytesMut::new();
    assert!(
        read_ack(&mut s, &mut buf, Duration::from_millis(300))
            .await
            .is_none(),
        "ack arrived before emit resolved"
    );
    emit.gate.add_permits(1);
    let ack = read_ack(&mut s, &mut buf, WAIT).await.unwrap();
    assert_eq!(&ack[..], b"chunk-1=\n");
    let batches = emit.batches();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].tag, "app.a");
    assert_eq!(batches[0].count, 3);
    assert_eq!(&batches[0].entries[..], &e[..]);
    assert_eq!(batches[0].origin_chunk.as_deref(), Some(&b"chunk-1=\n"[..]));
    server.stop().await;
}

#[tokio::test]
async fn no_ack_and_close_when_emit_fails() {
    let emit = MockEmit::new();
    emit.fail.store(true, Ordering::SeqCst);
    let server = start(config(), emit.clone()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    for i in 0..3 {
        let c = format!("c{i}");
        s.write_all(&chunk_frame("t", &entries(1), 1, Some(c.as_bytes())))
            .await
            .unwrap();
    }
    assert!(closed_without_reply(&mut s).await);
    assert!(emit.batches().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn no_reply_without_chunk_option() {
    let emit = MockEmit::new();
    let server = start(config(), emit.clone()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(&chunk_frame("t", &entries(1), 1, None))
        .await
        .unwrap();
    s.write_all(&chunk_frame("t", &entries(2), 2, Some(b"second")))
        .await
        .unwrap();
    let mut buf = BytesMut::new();
    // The first reply is the second frame's ack: the first frame got none.
    assert_eq!(
        &read_ack(&mut s, &mut buf, WAIT).await.unwrap()[..],
        b"second"
    );
    assert!(buf.is_empty());
    assert_eq!(emit.batches().len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn pipelined_chunks_are_acked_in_order() {
    let emit = MockEmit::new();
    emit.held.store(true, Ordering::SeqCst);
    let server = start(config(), emit.clone()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let mut wire = Vec::new();
    for i in 0..40 {
        wire.extend(chunk_frame(
            "t",
            &entries(2),
            2,
            Some(format!("c{i}").as_bytes()),
        ));
        wire.push(0xc0); // client heartbeats in between are ignored
    }
    s.write_all(&wire).await.unwrap();
    // Several frames are read ahead while the first awaits its commit, but bounded.
    emit.wait_started(MAX_IN_FLIGHT).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(emit.started.load(Ordering::SeqCst) <= MAX_IN_FLIGHT + 1);
    emit.gate.add_permits(1000);
    let mut buf = BytesMut::new();
    for i in 0..40 {
        let ack = read_ack(&mut s, &mut buf, WAIT).await.unwrap();
        assert_eq!(ack, format!("c{i}").into_bytes());
    }
    assert_eq!(emit.batches().len(), 40);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_connections() {
    let emit = MockEmit::new();
    let server = start(config(), emit.clone()).await;
    let addr = server.addr;
    let mut clients = JoinSet::new();
    for i in 0..1000u32 {
        clients.spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let chunk = format!("conn-{i}");
            s.write_all(&chunk_frame("many", &entries(1), 1, Some(chunk.as_bytes())))
                .await
                .unwrap();
            let mut buf = BytesMut::new();
            let ack = read_ack(&mut s, &mut buf, Duration::from_secs(20))
                .await
                .expect("no ack");
            assert_eq!(ack, chunk.into_bytes());
            s
        });
    }
    let mut open = Vec::new();
    while let Some(r) = clients.join_next().await {
        open.push(r.unwrap());
    }
    assert_eq!(emit.batches().len(), 1000);
    drop(open);
    server.stop().await;
}

#[tokio::test]
async fn malformed_frame_closes_only_that_connection() {
    let emit = MockEmit::new();
    let mut cfg = config();
    cfg.chunk_size_limit = Some(64 * 1024);
    let server = start(cfg, emit.clone()).await;
    let mut good = TcpStream::connect(server.addr).await.unwrap();
    let bad_inputs: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0x93, 0xa1, b't', 0xc1],
        // oversized: header declares 1 MiB of entries, only the header is sent
        vec![0x93, 0xa1, b't', 0xdb, 0x00, 0x10, 0x00, 0x00],
        // gzip flag on non-gzip entries
        {
            let p = encode_packed_forward("t", b"nope", 1, Some(b"x"), Compression::Gzip).unwrap();
            let mut v = p.header.to_vec();
            v.extend_from_slice(b"nope");
            v.extend_from_slice(&p.trailer);
            v
        },
        // entries whose msgpack is broken
        chunk_frame("t", &[0x92, 0x01, 0x81, 0xa1], 1, Some(b"y")),
    ];
    for bad in bad_inputs {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(&bad).await.unwrap();
        assert!(closed_without_reply(&mut s).await, "input {bad:02x?}");
    }
    good.write_all(&chunk_frame("t", &entries(1), 1, Some(b"ok")))
        .await
        .unwrap();
    let mut buf = BytesMut::new();
    assert_eq!(
        &read_ack(&mut good, &mut buf, WAIT).await.unwrap()[..],
        b"ok"
    );
    assert_eq!(emit.batches().len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn invalid_events_are_skipped_and_the_chunk_acked() {
    let emit = MockEmit::new();
    let server = start(config(), emit.clone()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    // Forward mode: [tag, [[t, {..}], [t, 5]], {"chunk": "fw"}]
    let mut wire = vec![0x93, 0xa1, b't', 0x92];
    wire.extend(entries(1));
    wire.extend([0x92, 0x01, 0x05]);
    wire.extend([0x81, 0xa5]);
    wire.extend(b"chunk");
    wire.extend([0xa2, b'f', b'w']);
    s.write_all(&wire).await.unwrap();
    let mut buf = BytesMut::new();
    assert_eq!(&read_ack(&mut s, &mut buf, WAIT).await.unwrap()[..], b"fw");
    assert_eq!(emit.batches()[0].count, 1);
    server.stop().await;
}

#[tokio::test]
async fn udp_heartbeat_is_answered() {
    let server = start(config(), MockEmit::new()).await;
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp.send_to(&[0u8], server.addr).await.unwrap();
    let mut b = [0xffu8; 8];
    let (n, from) = tokio::time::timeout(WAIT, udp.recv_from(&mut b))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((n, b[0]), (1, 0));
    assert_eq!(from, server.addr);
    server.stop().await;
}

#[tokio::test]
async fn tag_prefix_source_address_and_hostname_keys() {
    let emit = MockEmit::new();
    let mut cfg = config();
    cfg.add_tag_prefix = Some("in".into());
    cfg.source_address_key = Some("source_ip".into());
    cfg.source_hostname_key = Some("source_host".into());
    let server = start(cfg, emit.clone()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(&chunk_frame("app", &entries(2), 2, Some(b"k")))
        .await
        .unwrap();
    let mut buf = BytesMut::new();
    read_ack(&mut s, &mut buf, WAIT).await.unwrap();
    let local: IpAddr = "127.0.0.1".parse().unwrap();
    let expected_host = tokio::task::spawn_blocking(move || dns_lookup::lookup_addr(&local))
        .await
        .unwrap()
        .unwrap_or_else(|_| "127.0.0.1".to_string());
    let b = &emit.batches()[0];
    assert_eq!(b.tag, "in.app");
    let recs = records(&b.entries);
    assert_eq!(recs.len(), 2);
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(
            r,
            &json!({"i": i, "msg": "hello", "source_ip": "127.0.0.1", "source_host": expected_host})
        );
    }
    server.stop().await;

    // `tag` overrides the sender's tag.
    let emit = MockEmit::new();
    let mut cfg = config();
    cfg.tag = Some("fixed".into());
    let server = start(cfg, emit.clone()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(&chunk_frame("app", &entries(1), 1, Some(b"k")))
        .await
        .unwrap();
    let mut buf = BytesMut::new();
    read_ack(&mut s, &mut buf, WAIT).await.unwrap();
    assert_eq!(emit.batches()[0].tag, "fixed");
    server.stop().await;
}

#[tokio::test]
async fn deny_keepalive_closes_after_one_frame() {
    let emit = MockEmit::new();
    let mut cfg = config();
    cfg.deny_keepalive = true;
    let server = start(cfg, emit.clone()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let mut wire = chunk_frame("t", &entries(1), 1, Some(b"one"));
    wire.extend(chunk_frame("t", &entries(1), 1, Some(b"two")));
    s.write_all(&wire).await.unwrap();
    let mut buf = BytesMut::new();
    assert_eq!(&read_ack(&mut s, &mut buf, WAIT).await.unwrap()[..], b"one");
    assert!(read_ack(&mut s, &mut buf, WAIT).await.is_none());
    assert_eq!(emit.batches().len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_lets_in_flight_frames_finish_and_ack() {
    let emit = MockEmit::new();
    emit.held.store(true, Ordering::SeqCst);
    let server = start(config(), emit.clone()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(&chunk_frame("t", &entries(1), 1, Some(b"last")))
        .await
        .unwrap();
    emit.wait_started(1).await;
    server.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !server.task.is_finished(),
        "run returned before the emit finished"
    );
    emit.gate.add_permits(1);
    let mut buf = BytesMut::new();
    assert_eq!(
        &read_ack(&mut s, &mut buf, WAIT).await.unwrap()[..],
        b"last"
    );
    tokio::time::timeout(WAIT, server.task)
        .await
        .unwrap()
        .unwrap();
    // no longer accepting
    assert!(TcpStream::connect(server.addr).await.is_err());
}

fn security_config() -> ServerSecurityConfig {
    ServerSecurityConfig {
        self_hostname: "aggregator".into(),
        shared_key: "s3cret".into(),
        user_auth: false,
        allow_anonymous_source: true,
        users: vec![],
        clients: vec![],
    }
}

/// Client side of the handshake over a real connection; returns the PONG check result.
async fn client_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    key: &str,
) -> Result<String, crate::forward::HandshakeError> {
    let mut buf = BytesMut::new();
    let helo = loop {
        if let Some(m) = take_message(&mut buf, MAX_CONTROL_MESSAGE_SIZE).unwrap() {
            break m;
        }
        assert!(
            s.read_buf(&mut buf).await.unwrap() > 0,
            "closed before HELO"
        );
    };
    let mut client = ClientHandshake::new("edge-1", key, "", "");
    let (_, ping) = client.ping(&helo).unwrap();
    s.write_all(&ping).await.unwrap();
    let pong = loop {
        if let Some(m) = take_message(&mut buf, MAX_CONTROL_MESSAGE_SIZE).unwrap() {
            break m;
        }
        assert!(
            s.read_buf(&mut buf).await.unwrap() > 0,
            "closed before PONG"
        );
    };
    client.check_pong(&pong)
}

#[tokio::test]
async fn handshake_success_then_data() {
    let emit = MockEmit::new();
    let mut cfg = config();
    cfg.security = Some(security_config());
    let server = start(cfg, emit.clone()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(
        client_handshake(&mut s, "s3cret").await.unwrap(),
        "aggregator"
    );
    s.write_all(&chunk_frame("t", &entries(1), 1, Some(b"after-hs")))
        .await
        .unwrap();
    let mut buf = BytesMut::new();
    assert_eq!(
        &read_ack(&mut s, &mut buf, WAIT).await.unwrap()[..],
        b"after-hs"
    );
    server.stop().await;
}

#[tokio::test]
async fn handshake_shared_key_mismatch_closes() {
    let emit = MockEmit::new();
    let mut cfg = config();
    cfg.security = Some(security_config());
    let server = start(cfg, emit.clone()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(
        client_handshake(&mut s, "wrong").await.unwrap_err(),
        crate::forward::HandshakeError::Refused("shared_key mismatch".into())
    );
    // Data sent anyway is never accepted: the server closed.
    let _ = s
        .write_all(&chunk_frame("t", &entries(1), 1, Some(b"x")))
        .await;
    assert!(closed_without_reply(&mut s).await);
    assert!(emit.batches().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn tls_transport_with_test_ca() {
    let dir = tempfile::tempdir().unwrap();
    let crate::tls::test_pki::TestPki {
        ca_path,
        cert_path,
        key_path,
    } = crate::tls::test_pki::write(dir.path(), "localhost");

    let emit = MockEmit::new();
    let mut cfg = config();
    cfg.tls = Some(ServerTlsConfig {
        cert_path,
        private_key_path: key_path,
        ..ServerTlsConfig::default()
    });
    cfg.security = Some(security_config());
    let server = start(cfg, emit.clone()).await;

    let client_cfg = crate::tls::client_config(&ClientTlsConfig {
        ca_cert_path: Some(ca_path),
        verify_hostname: true,
        ..ClientTlsConfig::default()
    })
    .unwrap();
    let connector = tokio_rustls::TlsConnector::from(client_cfg);
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut s = connector.connect(name, tcp).await.unwrap();
    client_handshake(&mut s, "s3cret").await.unwrap();
    s.write_all(&chunk_frame("t", &entries(2), 2, Some(b"tls")))
        .await
        .unwrap();
    s.flush().await.unwrap();
    let mut buf = BytesMut::new();
    assert_eq!(&read_ack(&mut s, &mut buf, WAIT).await.unwrap()[..], b"tls");
    assert_eq!(emit.batches()[0].count, 2);

    // A client that does not trust the CA fails the TLS handshake.
    let other_key = rcgen::KeyPair::generate().unwrap();
    let other = rcgen::CertificateParams::new(vec!["other".to_string()])
        .unwrap()
        .self_signed(&other_key)
        .unwrap();
    let other_path = dir.path().join("other.pem");
    std::fs::write(&other_path, other.pem()).unwrap();
    let untrusting = crate::tls::client_config(&ClientTlsConfig {
        ca_cert_path: Some(other_path),
        verify_hostname: true,
        ..ClientTlsConfig::default()
    })
    .unwrap();
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    assert!(tokio_rustls::TlsConnector::from(untrusting)
        .connect(name, tcp)
        .await
        .is_err());
    server.stop().await;
}

#[tokio::test]
async fn connections_over_max_connections_are_closed_at_once() {
    let emit = MockEmit::new();
    let server = start(
        ForwardInputConfig {
            max_connections: 2,
            ..config()
        },
        emit.clone(),
    )
    .await;
    let mut a = TcpStream::connect(server.addr).await.unwrap();
    let mut b = TcpStream::connect(server.addr).await.unwrap();
    // Both are served (so both are counted) before the third arrives.
    let mut buf = BytesMut::new();
    for (s, c) in [(&mut a, b"a".as_slice()), (&mut b, b"b".as_slice())] {
        s.write_all(&chunk_frame("t", &entries(1), 1, Some(c)))
            .await
            .unwrap();
        assert_eq!(&read_ack(s, &mut buf, WAIT).await.unwrap()[..], c);
    }
    let mut c = TcpStream::connect(server.addr).await.unwrap();
    assert!(closed_without_reply(&mut c).await, "third connection kept");
    // The first two still work; once one closes, a new connection is served again.
    a.write_all(&chunk_frame("t", &entries(1), 1, Some(b"a2")))
        .await
        .unwrap();
    assert_eq!(&read_ack(&mut a, &mut buf, WAIT).await.unwrap()[..], b"a2");
    drop(a);
    let mut served = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut d = TcpStream::connect(server.addr).await.unwrap();
        if d.write_all(&chunk_frame("t", &entries(1), 1, Some(b"d")))
            .await
            .is_ok()
        {
            if let Some(ack) = read_ack(&mut d, &mut buf, Duration::from_millis(500)).await {
                assert_eq!(&ack[..], b"d");
                served = true;
                break;
            }
        }
    }
    assert!(served, "no connection served after one closed");
    server.stop().await;
}

#[tokio::test]
async fn idle_connections_are_closed_but_not_while_an_ack_is_pending() {
    let emit = MockEmit::new();
    let server = start(
        ForwardInputConfig {
            idle_timeout: Duration::from_millis(300),
            ..config()
        },
        emit.clone(),
    )
    .await;
    // Idle from the start: closed after the timeout.
    let started = Instant::now();
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    assert!(closed_without_reply(&mut idle).await);
    assert!(started.elapsed() >= Duration::from_millis(250));
    // A partial frame does not count as activity.
    let mut partial = TcpStream::connect(server.addr).await.unwrap();
    let f = chunk_frame("t", &entries(2), 2, Some(b"p"));
    partial.write_all(&f[..f.len() / 2]).await.unwrap();
    assert!(closed_without_reply(&mut partial).await);
    // A frame whose commit takes longer than the timeout is still acked.
    emit.held.store(true, Ordering::SeqCst);
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(&chunk_frame("t", &entries(1), 1, Some(b"slow")))
        .await
        .unwrap();
    emit.wait_started(1).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    emit.gate.add_permits(1);
    let mut buf = BytesMut::new();
    assert_eq!(
        &read_ack(&mut slow, &mut buf, WAIT).await.unwrap()[..],
        b"slow"
    );
    server.stop().await;
}

#[tokio::test]
async fn reading_pauses_when_the_in_flight_budget_is_spent() {
    let emit = MockEmit::new();
    emit.held.store(true, Ordering::SeqCst);
    let input = ForwardInput::bind(&config(), emit.clone())
        .unwrap()
        .with_in_flight_budget(InFlightBudget::new(2 << 20));
    let budget = input.shared.budget.clone();
    let addr = input.local_addr();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(input.run(shutdown.clone()));

    // 60 frames of ~200 KB (more than socket buffers hold) whose commits do not finish: the 2 MiB budget holds about ten.
    let (mut rd, mut wr) = TcpStream::connect(addr).await.unwrap().into_split();
    let e = {
        let mut b = BytesMut::new();
        let rec = rmp_serde::to_vec_named(&json!({"msg": "x".repeat(1000)})).unwrap();
        for _ in 0..200 {
            write_entry(&mut b, T, &rec);
        }
        b.to_vec()
    };
    let writer = tokio::spawn(async move {
        for i in 0..60 {
            let c = format!("c{i}");
            wr.write_all(&chunk_frame("t", &e, 200, Some(c.as_bytes())))
                .await
                .unwrap();
        }
        wr
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let started = emit.started.load(Ordering::SeqCst);
    assert!(
        (5..=11).contains(&started),
        "{started} frames taken in with a 2 MiB budget"
    );
    assert!(
        budget.available_bytes() < 256 << 10,
        "budget not used: {} bytes left",
        budget.available_bytes()
    );
    assert!(!writer.is_finished(), "the sender was not paused");
    // Commits finish: budget frees, reading resumes, every frame is acked in order.
    emit.gate.add_permits(60);
    let _wr = tokio::time::timeout(WAIT, writer).await.unwrap().unwrap();
    let mut buf = BytesMut::new();
    for i in 0..60 {
        let ack = read_ack(&mut rd, &mut buf, WAIT).await.unwrap();
        assert_eq!(ack, format!("c{i}").as_bytes());
    }
    let deadline = Instant::now() + WAIT;
    while budget.available_bytes() < budget.total_bytes() {
        assert!(Instant::now() < deadline, "budget not released");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
}

#[tokio::test]
async fn frames_hold_budget_until_acked_and_gzip_output_counts() {
    let emit = MockEmit::new();
    emit.held.store(true, Ordering::SeqCst);
    let input = ForwardInput::bind(&config(), emit.clone())
        .unwrap()
        .with_in_flight_budget(InFlightBudget::new(8 << 20));
    let budget = input.shared.budget.clone();
    let addr = input.local_addr();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(input.run(shutdown.clone()));
    // 4 MB of entries, gzip-compressed to a few KB: the decompressed batch holds the budget.
    let mut big = BytesMut::new();
    let rec = rmp_serde::to_vec_named(&json!({"msg": "y".repeat(4000)})).unwrap();
    for _ in 0..1000 {
        write_entry(&mut big, T, &rec);
    }
    let gz = crate::forward::gzip_entries(&big).unwrap();
    let parts = encode_packed_forward("t", &gz, 1000, Some(b"gz"), Compression::Gzip).unwrap();
    let mut frame = parts.header.to_vec();
    frame.extend_from_slice(&gz);
    frame.extend_from_slice(&parts.trailer);
    assert!(frame.len() < 256 << 10);
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&frame).await.unwrap();
    emit.wait_started(1).await;
    let held = budget.total_bytes() - budget.available_bytes();
    assert!(
        held >= big.len() as u64,
        "a committing batch of {} bytes holds only {held} bytes of budget",
        big.len()
    );
    emit.gate.add_permits(1);
    let mut buf = BytesMut::new();
    assert_eq!(&read_ack(&mut s, &mut buf, WAIT).await.unwrap()[..], b"gz");
    // A bomb beyond decompression_size_limit (and beyond the budget) is refused, not inflated.
    let bomb_entries = vec![0u8; 64 << 20];
    let bomb = crate::forward::gzip_entries(&bomb_entries).unwrap();
    let parts = encode_packed_forward("t", &bomb, 1, Some(b"bomb"), Compression::Gzip).unwrap();
    let mut frame = parts.header.to_vec();
    frame.extend_from_slice(&bomb);
    frame.extend_from_slice(&parts.trailer);
    let mut b = TcpStream::connect(addr).await.unwrap();
    b.write_all(&frame).await.unwrap();
    assert!(closed_without_reply(&mut b).await);
    shutdown.cancel();
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
}
