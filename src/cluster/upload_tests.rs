//! Tests of the uploader's isolation against a real single-node cluster (real Raft, RocksDB
//! and a local-directory bucket): one batch that fails transiently waits alone with its own
//! backoff, one that fails permanently is dead-lettered through the log, and the others are
//! uploaded meanwhile. Also: an S3-compatible server's 4xx answers are classified.

use super::server::{ClusterNode, ClusterNodeConfig};
use super::upload::{BatchPolicy, UploadError, UploadTarget, Uploader};
use super::{ClusterRequest, ClusterResponse};
use crate::output::s3::config::S3OutputConfig;
use crate::retry::RetryConfig;
use crate::router::{MatchPattern, TagRoutes};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One `[time, record]` entry: `[1, {"k": "v"}]`.
const ENTRY: &[u8] = &[0x92, 0x01, 0x81, 0xa1, b'k', 0xa1, b'v'];

async fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn single_node(dir: &Path) -> ClusterNode {
    let mut config = ClusterNodeConfig::new(
        1,
        "127.0.0.1:0".parse().expect("loopback address"),
        dir.join("node-1"),
    );
    config.propose_timeout = Duration::from_secs(5);
    let node = ClusterNode::start(config).await.expect("node starts");
    node.init(BTreeMap::new()).await.expect("init");
    wait_until("the node leads", Duration::from_secs(10), || {
        node.raft().metrics().borrow().current_leader == Some(1)
    })
    .await;
    node
}

async fn append(node: &ClusterNode, tag: &str, received_unix_ms: u64) -> u64 {
    append_entries(node, tag, received_unix_ms, ENTRY).await
}

/// Stored chunk content no renderer accepts.
const BAD_ENTRY: &[u8] = b"\xc1\xc1 not msgpack";

async fn append_entries(
    node: &ClusterNode,
    tag: &str,
    received_unix_ms: u64,
    entries: &'static [u8],
) -> u64 {
    let request = ClusterRequest::AppendChunk {
        origin: None,
        tag: tag.to_string(),
        entries: Bytes::from_static(entries),
        count: 1,
        received_unix_ms,
    };
    match node.propose(request).await.expect("append") {
        ClusterResponse::Appended { index } => index,
        other => panic!("expected Appended, got {other:?}"),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

fn gunzip_bytes(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_end(&mut out)
        .expect("gzip");
    out
}

fn gunzip(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .expect("gzip");
    text
}

/// The uploader of a match `**` to `target` (spooling in `$TMPDIR`): seals after 100 ms,
/// retries every 100–300 ms.
fn uploader(node: &ClusterNode, target: &UploadTarget) -> Uploader {
    Uploader {
        metrics: crate::observe::ClusterMetrics::detached(),
        shared: node.shared().clone(),
        match_index: 0,
        routes: Arc::new(TagRoutes::new(vec![vec![
            MatchPattern::parse("**").expect("pattern")
        ]])),
        target: target.clone(),
        spool_dir: std::env::temp_dir(),
        policy: BatchPolicy {
            flush_interval: Duration::from_millis(100),
            batch_bytes: 1 << 20,
            timekey: None,
            retry: RetryConfig {
                wait: Duration::from_millis(100),
                max_interval: Some(Duration::from_millis(300)),
                randomize: false,
                ..RetryConfig::default()
            },
        },
        name: "**".into(),
    }
}

fn unconfirmed_tags(node: &ClusterNode) -> Vec<String> {
    node.reader()
        .unconfirmed_batches()
        .into_iter()
        .map(|b| b.tag)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_batch_waits_alone_and_a_permanent_failure_is_dead_lettered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bucket = dir.path().join("bucket");
    let node = single_node(dir.path()).await;
    let target = UploadTarget::local_dir(bucket.clone()).expect("target");
    let ms = now_ms();

    // "stuck": a directory sits where its object goes, so its upload fails (transiently: an
    // operator can remove it).
    let stuck = append(&node, "stuck", ms).await;
    let stuck_key = target.object_key("stuck", ms, &[stuck]);
    std::fs::create_dir_all(bucket.join(&stuck_key)).expect("blocking directory");
    // "bad": content that cannot be rendered (0xc1 is never valid msgpack): permanent.
    let bad = append_entries(&node, "bad", ms, BAD_ENTRY).await;
    let good = append(&node, "good", ms).await;

    let stop = CancellationToken::new();
    let running = tokio::spawn(uploader(&node, &target).run(stop.clone()));

    // "good" is uploaded and "bad" dead-lettered while "stuck" keeps failing.
    let good_key = target.object_key("good", ms, &[good]);
    let dead_key = format!("dead-letter/{bad:020}-{bad:020}.log.gz");
    wait_until(
        "good uploaded, bad dead-lettered and uploaded",
        Duration::from_secs(20),
        || {
            bucket.join(&good_key).is_file()
                && bucket.join(&dead_key).is_file()
                && unconfirmed_tags(&node) == ["stuck"]
        },
    )
    .await;
    // Set aside as stored, byte for byte.
    assert_eq!(gunzip_bytes(&bucket.join(&dead_key)), BAD_ENTRY);
    assert_eq!(node.reader().upload_stats().dead_lettered_batches, 1);
    let stuck_batch = &node.reader().unconfirmed_batches()[0];
    assert_eq!(stuck_batch.first, stuck);
    assert!(
        stuck_batch.dead_letter.is_none(),
        "a transient failure is retried"
    );

    // Newer events of another tag still go through while "stuck" waits.
    let ms2 = now_ms();
    let good2 = append(&node, "good", ms2).await;
    let good2_key = target.object_key("good", ms2, &[good2]);
    wait_until("a later batch uploaded", Duration::from_secs(20), || {
        bucket.join(&good2_key).is_file() && unconfirmed_tags(&node) == ["stuck"]
    })
    .await;

    // Once the obstacle is gone, the waiting batch is uploaded under its own key.
    std::fs::remove_dir_all(bucket.join(&stuck_key)).expect("remove");
    wait_until(
        "stuck uploaded after recovery",
        Duration::from_secs(20),
        || bucket.join(&stuck_key).is_file() && unconfirmed_tags(&node).is_empty(),
    )
    .await;
    assert!(gunzip(&bucket.join(&stuck_key)).contains("\tstuck\t"));
    assert_eq!(node.reader().upload_stats().dead_lettered_batches, 1);

    stop.cancel();
    running.await.expect("uploader stops");
    node.shutdown().await;
}

/// An output that does not compress (`@type file` without `compress gzip`, Fluentd's default;
/// `store_as text` for s3) gets plain out_file lines under `.log` keys, and a batch that cannot
/// be rendered is set aside as stored, not compressed either.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_output_without_compression_gets_plain_objects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bucket = dir.path().join("bucket");
    let node = single_node(dir.path()).await;
    let target = UploadTarget::local_dir(bucket.clone())
        .expect("target")
        .with_gzip(false);
    let ms = now_ms();
    let good = append(&node, "good", ms).await;
    let bad = append_entries(&node, "bad", ms, BAD_ENTRY).await;
    let stop = CancellationToken::new();
    let running = tokio::spawn(uploader(&node, &target).run(stop.clone()));

    let good_key = target.object_key("good", ms, &[good]);
    assert!(good_key.ends_with(&format!("{good:020}-{good:020}.log")));
    let dead_key = format!("dead-letter/{bad:020}-{bad:020}.log");
    wait_until("both uploaded", Duration::from_secs(20), || {
        bucket.join(&dead_key).is_file() && unconfirmed_tags(&node).is_empty()
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(bucket.join(&good_key)).expect("plain object"),
        "1970-01-01T00:00:01+0000\tgood\t{\"k\":\"v\"}\n"
    );
    assert_eq!(
        std::fs::read(bucket.join(&dead_key)).expect("dead"),
        BAD_ENTRY
    );

    stop.cancel();
    running.await.expect("uploader stops");
    node.shutdown().await;
}

/// A minimal S3-compatible server on loopback answering every request with `status`.
async fn fake_s3(status: &'static str, body: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                // Read the head, then the body it announces, then answer.
                let mut request = Vec::new();
                let mut buf = [0u8; 8192];
                let head_end = loop {
                    let Ok(n) = socket.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        break at + 4;
                    }
                };
                let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while request.len() < head_end + length {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

async fn put_to_fake_s3(status: &'static str, body: &'static str) -> UploadError {
    let endpoint = fake_s3(status, body).await;
    let target = UploadTarget::s3(&S3OutputConfig {
        bucket: "logs".into(),
        region: Some("us-east-1".into()),
        endpoint: Some(endpoint),
        prefix: "p".into(),
        access_key_id: Some("key".into()),
        secret_access_key: Some("secret".into()),
        force_path_style: true,
        request_timeout: crate::output::s3::config::DEFAULT_REQUEST_TIMEOUT,
        connect_timeout: crate::output::s3::config::DEFAULT_CONNECT_TIMEOUT,
        store_as_gzip: true,
    })
    .expect("s3 target");
    assert_eq!(
        target.full_key("dead-letter/1-1.log.gz"),
        "p/dead-letter/1-1.log.gz"
    );
    tokio::time::timeout(
        Duration::from_secs(30),
        target.put("p/app/2026/11/26/1-1.log.gz", Bytes::from_static(b"x")),
    )
    .await
    .expect("answered in time")
    .expect_err("refused")
}

/// An S3 server that accepts connections and reads requests but never answers: a put gives
/// up after `request_timeout` (and the client's few retries) instead of holding its upload
/// slot for minutes.
#[tokio::test]
async fn a_hung_object_store_request_gives_up_after_request_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let target = UploadTarget::s3(&S3OutputConfig {
        bucket: "logs".into(),
        region: Some("us-east-1".into()),
        endpoint: Some(format!("http://{addr}")),
        prefix: String::new(),
        access_key_id: Some("key".into()),
        secret_access_key: Some("secret".into()),
        force_path_style: true,
        request_timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_secs(1),
        store_as_gzip: true,
    })
    .expect("s3 target");
    let started = std::time::Instant::now();
    let put = tokio::time::timeout(
        Duration::from_secs(20),
        target.put("app/1-1.log.gz", Bytes::from_static(b"x")),
    )
    .await
    .expect("gave up within 20 s");
    assert!(put.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn object_store_4xx_answers_are_permanent_except_credentials_and_throttling() {
    let key_too_long = "<?xml version=\"1.0\"?><Error><Code>KeyTooLong</Code><Message>Your key is too long</Message></Error>";
    let e = put_to_fake_s3("400 Bad Request", key_too_long).await;
    assert!(e.is_permanent(), "{e}");
    let e = put_to_fake_s3(
        "413 Payload Too Large",
        "<Error><Code>EntityTooLarge</Code></Error>",
    )
    .await;
    assert!(e.is_permanent(), "{e}");
    let e = put_to_fake_s3("403 Forbidden", "<Error><Code>AccessDenied</Code></Error>").await;
    assert!(!e.is_permanent(), "{e}");
}
