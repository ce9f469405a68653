//! Tests of the http input over real sockets: body formats, encodings, limits, emit errors,
//! shutdown and keep-alive, header fields, routes and CORS.

use super::compression::read_limited;
use super::*;
use crate::event::{EntryIter, EventBatch, EventTime};
use crate::pipeline::BoxFuture;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::HeaderMap;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use tokio::sync::Semaphore;

/// Records batches; can be told to fail, or to hold each emit until released.
#[derive(Default)]
struct MockEmit {
    batches: Mutex<Vec<EventBatch>>,
    fail_with: Mutex<Option<fn() -> EmitError>>,
    hold: Option<Arc<Semaphore>>,
    entered: AtomicUsize,
}

impl Emit for MockEmit {
    fn emit(&self, batch: EventBatch) -> BoxFuture<'_, Result<(), EmitError>> {
        Box::pin(async move {
            self.entered.fetch_add(1, Ordering::SeqCst);
            if let Some(hold) = &self.hold {
                hold.acquire().await.expect("semaphore open").forget();
            }
            if let Some(fail) = *self.fail_with.lock().unwrap() {
                return Err(fail());
            }
            self.batches.lock().unwrap().push(batch);
            Ok(())
        })
    }
}

impl MockEmit {
    fn batches(&self) -> Vec<EventBatch> {
        self.batches.lock().unwrap().clone()
    }
}

fn config() -> HttpInputConfig {
    HttpInputConfig {
        bind: "127.0.0.1".into(),
        port: 0,
        body_size_limit: 32 << 20,
        keepalive_timeout: Duration::from_secs(10),
        add_http_headers: false,
        add_remote_addr: false,
        use_204_response: false,
        respond_with_empty_img: false,
        cors_allow_origins: vec![],
    }
}

struct Server {
    addr: SocketAddr,
    mock: Arc<MockEmit>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn start(cfg: HttpInputConfig, mock: MockEmit) -> Server {
    let mock = Arc::new(mock);
    let input = HttpInput::bind(&cfg, mock.clone()).await.unwrap();
    let addr = input.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(input.run(shutdown.clone()));
    Server {
        addr,
        mock,
        shutdown,
        task,
    }
}

async fn connect(addr: SocketAddr) -> SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "127.0.0.1");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body.into())).unwrap();
    sender.ready().await.unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

async fn post(
    addr: SocketAddr,
    uri: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let mut sender = connect(addr).await;
    send(&mut sender, Method::POST, uri, headers, body).await
}

/// (time, record as JSON) of every entry of a batch.
fn events(batch: &EventBatch) -> Vec<(EventTime, serde_json::Value)> {
    EntryIter::new(&batch.entries)
        .map(|e| {
            let e = e.unwrap();
            let v: serde_json::Value = rmp_serde::from_slice(e.record).unwrap();
            (e.time, v)
        })
        .collect()
}

const JSON: (&str, &str) = ("content-type", "application/json");
const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

#[tokio::test]
async fn json_form_field_becomes_one_event_tagged_by_path() {
    let s = start(config(), MockEmit::default()).await;
    let before = EventTime::now();
    let r = post(
        s.addr,
        "/app/web/",
        &[FORM],
        "json=%7B%22action%22%3A%22login%22%2C%22user%22%3A2%7D",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.is_empty());
    let batches = s.mock.batches();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].tag, "app.web");
    assert_eq!(batches[0].count, 1);
    let ev = events(&batches[0]);
    assert_eq!(ev[0].1, serde_json::json!({"action": "login", "user": 2}));
    assert!(ev[0].0 >= before && ev[0].0.secs <= EventTime::now().secs);
}

#[tokio::test]
async fn msgpack_form_field_with_binary_bytes() {
    let s = start(config(), MockEmit::default()).await;
    let rec = rmp_serde::to_vec_named(&serde_json::json!({"k": "v", "n": 300})).unwrap();
    let encoded: String =
        percent_encoding::percent_encode(&rec, percent_encoding::NON_ALPHANUMERIC).to_string();
    let r = post(
        s.addr,
        "/t?time=1700000000.25",
        &[FORM],
        format!("msgpack={encoded}"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let ev = events(&s.mock.batches()[0]);
    assert_eq!(ev[0].1, serde_json::json!({"k": "v", "n": 300}));
    assert_eq!(
        ev[0].0,
        EventTime {
            secs: 1_700_000_000,
            nanos: 250_000_000
        }
    );
}

#[tokio::test]
async fn json_array_is_a_batch_with_per_record_times() {
    let s = start(config(), MockEmit::default()).await;
    let body = r#"[{"a":1,"time":1600000000},{"a":2,"time":1600000001.5},{"a":3}]"#;
    let r = post(s.addr, "/b?time=1500000000", &[JSON], body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let batches = s.mock.batches();
    assert_eq!(batches.len(), 1, "one batch per request");
    assert_eq!(batches[0].count, 3);
    let ev = events(&batches[0]);
    assert_eq!(
        ev[0],
        (
            EventTime {
                secs: 1_600_000_000,
                nanos: 0
            },
            serde_json::json!({"a": 1})
        )
    );
    assert_eq!(
        ev[1],
        (
            EventTime {
                secs: 1_600_000_001,
                nanos: 500_000_000
            },
            serde_json::json!({"a": 2})
        )
    );
    assert_eq!(
        ev[2],
        (
            EventTime {
                secs: 1_500_000_000,
                nanos: 0
            },
            serde_json::json!({"a": 3})
        )
    );
}

#[tokio::test]
async fn single_json_object_keeps_its_time_key_and_key_order() {
    let s = start(config(), MockEmit::default()).await;
    let r = post(
        s.addr,
        "/b?time=1500000000",
        &[JSON],
        r#"{"z":1,"time":5,"a":2}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let b = &s.mock.batches()[0];
    let e = EntryIter::new(&b.entries).next().unwrap().unwrap();
    assert_eq!(e.time.secs, 1_500_000_000);
    assert_eq!(
        crate::output::format::record_to_json(e.record).unwrap(),
        r#"{"z":1,"time":5,"a":2}"#
    );
}

#[tokio::test]
async fn msgpack_bodies_map_and_array() {
    let s = start(config(), MockEmit::default()).await;
    let map = rmp_serde::to_vec_named(&serde_json::json!({"m": 1})).unwrap();
    let r = post(
        s.addr,
        "/mp",
        &[("content-type", "application/msgpack")],
        map.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // Passed through byte for byte.
    let b = &s.mock.batches()[0];
    assert_eq!(
        EntryIter::new(&b.entries).next().unwrap().unwrap().record,
        &map[..]
    );

    let arr = rmp_serde::to_vec_named(&serde_json::json!([{"m": 2, "time": 1600000000}, {"m": 3}]))
        .unwrap();
    let r = post(
        s.addr,
        "/mp",
        &[("content-type", "application/msgpack")],
        arr,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let ev = events(&s.mock.batches()[1]);
    assert_eq!(ev.len(), 2);
    assert_eq!(
        ev[0],
        (
            EventTime {
                secs: 1_600_000_000,
                nanos: 0
            },
            serde_json::json!({"m": 2})
        )
    );
    assert_eq!(ev[1].1, serde_json::json!({"m": 3}));

    for bad in [
        vec![0x01u8],
        vec![0x81, 0xa1],
        vec![0x80, 0x80],
        vec![0x92, 0x01, 0x80],
    ] {
        let r = post(
            s.addr,
            "/mp",
            &[("content-type", "application/msgpack")],
            bad.clone(),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad:?}");
        assert!(r.text().contains("msgpack"), "{}", r.text());
    }
    assert_eq!(s.mock.batches().len(), 2);
}

#[tokio::test]
async fn ndjson_lines_are_a_batch() {
    let s = start(config(), MockEmit::default()).await;
    let body = "{\"k1\":\"v1\"}\r\n\n{\"k2\":\"v2\",\"time\":1600000000}\n";
    let r = post(
        s.addr,
        "/nd",
        &[("content-type", "application/x-ndjson")],
        body,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let ev = events(&s.mock.batches()[0]);
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0].1, serde_json::json!({"k1": "v1"}));
    assert_eq!(
        ev[1],
        (
            EventTime {
                secs: 1_600_000_000,
                nanos: 0
            },
            serde_json::json!({"k2": "v2"})
        )
    );

    let r = post(
        s.addr,
        "/nd",
        &[FORM],
        "ndjson=%7B%22x%22%3A1%7D%0A%7B%22x%22%3A2%7D",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(s.mock.batches()[1].count, 2);

    let r = post(
        s.addr,
        "/nd",
        &[("content-type", "application/x-ndjson")],
        "{\"a\":1}\n[1]\n",
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("line 2"), "{}", r.text());
}

#[tokio::test]
async fn time_param_zero_is_now_and_garbage_is_400() {
    let s = start(config(), MockEmit::default()).await;
    let before = EventTime::now();
    let r = post(s.addr, "/t?time=0", &[JSON], "{}").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(events(&s.mock.batches()[0])[0].0 >= before);
    let r = post(s.addr, "/t?time=yesterday", &[JSON], "{}").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("time"));
    let r = post(s.addr, "/t", &[JSON], r#"[{"time":"noon"}]"#).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(s.mock.batches().len(), 1);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn gzip_and_deflate_bodies() {
    let s = start(config(), MockEmit::default()).await;
    let r = post(
        s.addr,
        "/z",
        &[JSON, ("content-encoding", "gzip")],
        gzip(br#"{"g":1}"#),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(br#"{"d":1}"#).unwrap();
    let r = post(
        s.addr,
        "/z",
        &[JSON, ("content-encoding", "deflate")],
        z.finish().unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    raw.write_all(br#"{"r":1}"#).unwrap();
    let r = post(
        s.addr,
        "/z",
        &[JSON, ("content-encoding", "deflate")],
        raw.finish().unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    let recs: Vec<_> = s
        .mock
        .batches()
        .iter()
        .map(|b| events(b)[0].1.clone())
        .collect();
    assert_eq!(
        recs,
        vec![
            serde_json::json!({"g":1}),
            serde_json::json!({"d":1}),
            serde_json::json!({"r":1})
        ]
    );

    let r = post(
        s.addr,
        "/z",
        &[JSON, ("content-encoding", "gzip")],
        &b"not gzip"[..],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = post(
        s.addr,
        "/z",
        &[JSON, ("content-encoding", "br")],
        &b"{}"[..],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn bad_json_is_400_and_the_connection_keeps_serving() {
    let s = start(config(), MockEmit::default()).await;
    let mut conn = connect(s.addr).await;
    let r = send(&mut conn, Method::POST, "/t", &[JSON], r#"{"a":"#).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("invalid JSON"), "{}", r.text());
    let r = send(&mut conn, Method::POST, "/t", &[JSON], "42").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = send(&mut conn, Method::POST, "/t", &[], "").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("json"));
    // Same keep-alive connection, next request is fine.
    let r = send(&mut conn, Method::POST, "/t", &[JSON], r#"{"a":1}"#).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(s.mock.batches().len(), 1);
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let mut cfg = config();
    cfg.body_size_limit = 1024;
    let s = start(cfg, MockEmit::default()).await;
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(2000));
    let r = post(s.addr, "/t", &[JSON], big.clone()).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);

    // Chunked (no Content-Length): the limit applies while reading.
    let head = "POST /t HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut chunks = head.as_bytes().to_vec();
    for _ in 0..3 {
        chunks.extend_from_slice(format!("{:x}\r\n{}\r\n", 600, " ".repeat(600)).as_bytes());
    }
    chunks.extend_from_slice(b"0\r\n\r\n");
    assert!(raw_exchange(s.addr, &chunks)
        .await
        .starts_with("HTTP/1.1 413"));

    // The server still answers.
    let r = post(s.addr, "/t", &[JSON], "{}").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(s.mock.batches().len(), 1);
}

#[tokio::test]
async fn gzip_bomb_is_413_without_inflating_it() {
    let mut cfg = config();
    cfg.body_size_limit = 2 << 20;
    let s = start(cfg, MockEmit::default()).await;
    // 1 MiB of zeros gzips to ~1 KiB; 1024 concatenated members inflate to 1 GiB.
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&vec![0u8; 1 << 20]).unwrap();
    let member = e.finish().unwrap();
    let bomb = member.repeat(1024);
    assert!(bomb.len() < 2 << 20);
    let r = post(s.addr, "/t", &[JSON, ("content-encoding", "gzip")], bomb).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.text().contains("decompressed"), "{}", r.text());
    let r = post(s.addr, "/t", &[JSON], "{}").await;
    assert_eq!(r.status, StatusCode::OK);
}

#[test]
fn read_limited_stops_an_endless_stream_within_the_limit() {
    assert!(read_limited(std::io::repeat(0), 1 << 20).unwrap().is_none());
    let data = read_limited(&[7u8; 5000][..], 5000).unwrap().unwrap();
    assert_eq!(data.len(), 5000);
    assert!(data.capacity() <= 5001);
    assert!(read_limited(&[7u8; 5001][..], 5000).unwrap().is_none());
}

#[tokio::test]
async fn emit_errors_map_to_503_413_and_500() {
    let s = start(config(), MockEmit::default()).await;
    *s.mock.fail_with.lock().unwrap() = Some(|| EmitError::Overflow("total_limit_size".into()));
    let r = post(s.addr, "/t", &[JSON], "{}").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.text().contains("buffer is full"), "{}", r.text());
    *s.mock.fail_with.lock().unwrap() = Some(|| EmitError::Storage("disk full".into()));
    let r = post(s.addr, "/t", &[JSON], "{}").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(r.text().contains("disk full"));
    *s.mock.fail_with.lock().unwrap() = Some(|| EmitError::Unavailable("no quorum".into()));
    let r = post(s.addr, "/t", &[JSON], "{}").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    *s.mock.fail_with.lock().unwrap() = Some(|| EmitError::TooLarge("too big".into()));
    let r = post(s.addr, "/t", &[JSON], "{}").await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    *s.mock.fail_with.lock().unwrap() = None;
    let r = post(s.addr, "/t", &[JSON], "{}").await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn response_waits_for_emit_and_shutdown_lets_it_finish() {
    let gate = Arc::new(Semaphore::new(0));
    let s = start(
        config(),
        MockEmit {
            hold: Some(gate.clone()),
            ..MockEmit::default()
        },
    )
    .await;
    let addr = s.addr;
    let request = tokio::spawn(async move { post(addr, "/t", &[JSON], r#"{"a":1}"#).await });
    while s.mock.entered.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!request.is_finished(), "responded before emit completed");

    // Shutdown now: no new connections, but the request in progress completes.
    s.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !s.task.is_finished(),
        "run returned with a request in progress"
    );
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());

    gate.add_permits(1);
    let r = tokio::time::timeout(Duration::from_secs(5), request)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(s.mock.batches().len(), 1);
    tokio::time::timeout(Duration::from_secs(5), s.task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn shutdown_closes_idle_keepalive_connections() {
    let s = start(config(), MockEmit::default()).await;
    let mut conn = connect(s.addr).await;
    let r = send(&mut conn, Method::POST, "/t", &[JSON], "{}").await;
    assert_eq!(r.status, StatusCode::OK);
    s.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), s.task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn headers_and_remote_addr_fields() {
    let mut cfg = config();
    cfg.add_http_headers = true;
    cfg.add_remote_addr = true;
    let s = start(cfg, MockEmit::default()).await;
    let r = post(
        s.addr,
        "/h",
        &[JSON, ("x-request-id", "r-1"), ("user-agent", "probe/1")],
        r#"[{"a":1},{"a":2}]"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let ev = events(&s.mock.batches()[0]);
    for (_, rec) in &ev {
        assert_eq!(rec["HTTP_X_REQUEST_ID"], "r-1");
        assert_eq!(rec["HTTP_USER_AGENT"], "probe/1");
        assert_eq!(rec["HTTP_CONTENT_TYPE"], "application/json");
        assert_eq!(rec["REMOTE_ADDR"], "127.0.0.1");
    }
    let r = post(
        s.addr,
        "/h",
        &[JSON, ("x-forwarded-for", "10.1.2.3, 10.0.0.1")],
        r#"{"a":1}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let ev = events(&s.mock.batches()[1]);
    assert_eq!(ev[0].1["REMOTE_ADDR"], "10.1.2.3");

    // Without the options no field is added (and a msgpack map passes through untouched).
    let s2 = start(config(), MockEmit::default()).await;
    post(
        s2.addr,
        "/h",
        &[JSON, ("x-request-id", "r-1")],
        r#"{"a":1}"#,
    )
    .await;
    assert_eq!(
        events(&s2.mock.batches()[0])[0].1,
        serde_json::json!({"a": 1})
    );
}

#[tokio::test]
async fn routes_methods_and_response_kinds() {
    let s = start(config(), MockEmit::default()).await;
    let mut conn = connect(s.addr).await;
    let r = send(&mut conn, Method::GET, "/t", &[], "").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers[header::ALLOW], "POST");
    let r = send(&mut conn, Method::POST, "/", &[JSON], "{}").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = send(
        &mut conn,
        Method::POST,
        "/t",
        &[("content-type", "multipart/form-data; boundary=x")],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = send(&mut conn, Method::POST, "/t", &[JSON], "[]").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(s.mock.batches().is_empty(), "an empty batch is not emitted");

    let mut cfg = config();
    cfg.use_204_response = true;
    let s = start(cfg, MockEmit::default()).await;
    assert_eq!(
        post(s.addr, "/t", &[JSON], "{}").await.status,
        StatusCode::NO_CONTENT
    );

    let mut cfg = config();
    cfg.respond_with_empty_img = true;
    let s = start(cfg, MockEmit::default()).await;
    let r = post(s.addr, "/t", &[JSON], "{}").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers[header::CONTENT_TYPE], "image/gif");
    assert!(r.body.starts_with(b"GIF89a\x01\x00\x01\x00"));
}

#[tokio::test]
async fn cors_allow_origins() {
    let mut cfg = config();
    cfg.cors_allow_origins = vec!["http://ok.example".into(), "https://*.example.org".into()];
    let s = start(cfg, MockEmit::default()).await;
    let r = post(s.addr, "/t", &[JSON, ("origin", "http://ok.example")], "{}").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "http://ok.example"
    );
    let r = post(
        s.addr,
        "/t",
        &[JSON, ("origin", "https://a.example.org")],
        "{}",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = post(
        s.addr,
        "/t",
        &[JSON, ("origin", "http://evil.example")],
        "{}",
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = post(s.addr, "/t", &[JSON], "{}").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let mut conn = connect(s.addr).await;
    let r = send(
        &mut conn,
        Method::OPTIONS,
        "/t",
        &[
            ("origin", "http://ok.example"),
            ("access-control-request-headers", "content-type"),
        ],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers[header::ACCESS_CONTROL_ALLOW_METHODS], "POST");
    assert_eq!(s.mock.batches().len(), 2);
}

#[tokio::test]
async fn idle_keepalive_connection_is_closed_after_keepalive_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut cfg = config();
    cfg.keepalive_timeout = Duration::from_millis(200);
    let s = start(cfg, MockEmit::default()).await;
    let mut stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let req = "POST /t HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // Kept alive for a while, then closed by the server.
    let closed = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
}

/// Send raw bytes (ignoring a write cut short by the server) and read the whole reply.
async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(request).await;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                reply.extend_from_slice(&buf[..n]);
                if reply.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(_) => panic!("no reply within 5 s"),
        }
    }
    String::from_utf8_lossy(&reply).into_owned()
}
