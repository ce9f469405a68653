//! Load generator for benchmarks: sends PackedForward chunks over many connections, with acks,
//! and measures throughput and ack latency.
//!
//! Owns nothing the node uses: it is a client built on the shared [`crate::forward`] codec,
//! driven by `lograft bench-load`. Every chunk carries a fresh chunk id and is counted only
//! when its `{"ack"}` comes back, so a run measures committed events, not bytes written.

use crate::buffer::ChunkId;
use crate::config::Compression;
use crate::event::{write_entry, EventTime};
use crate::forward::{decode_ack, encode_packed_forward};
use bytes::{Bytes, BytesMut};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, Semaphore};

/// What to send.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub addr: SocketAddr,
    pub tag: String,
    pub total_events: u64,
    pub events_per_chunk: u32,
    /// Approximate msgpack size of one record.
    pub record_size: usize,
    pub connections: usize,
    /// Chunks in flight per connection (waiting for their ack).
    pub pipeline: usize,
    /// What the records' `msg` holds.
    pub content: RecordContent,
}

/// What a record's `msg` field holds: it decides how well chunks compress, which changes what
/// a node that compresses (the cluster's log) spends per event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RecordContent {
    /// Access-log lines: fixed words around random client addresses, paths, ids, statuses,
    /// sizes, latencies and request ids (LZ4 shrinks them ~2–3×, like real logs).
    #[default]
    Logs,
    /// One repeated letter (what every benchmark before session 16 sent; LZ4 shrinks it
    /// ~8×: flatters anything that compresses).
    Padded,
    /// Random alphanumerics: incompressible, the worst case for compression.
    Random,
}

/// Distinct chunks a run cycles through (so consecutive chunks differ).
const CHUNK_VARIANTS: u64 = 16;

/// What a run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub events: u64,
    pub chunks: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    pub ack_p50: Duration,
    pub ack_p99: Duration,
    pub ack_max: Duration,
}

impl LoadReport {
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

/// One chunk's entries: `n` records of about `record_size` bytes, numbered from 0, their
/// `msg` of `content` (`variant` seeds the random parts: the same variant, the same chunk).
pub fn chunk_entries(n: u32, record_size: usize, content: RecordContent, variant: u64) -> Bytes {
    let base = rmp_serde::to_vec_named(&serde_json::json!({
        "seq": 0u64, "host": "bench-host-01", "level": "info", "msg": ""
    }))
    .expect("msgpack");
    let pad = record_size.saturating_sub(base.len() + 8);
    let mut rng = StdRng::seed_from_u64(variant);
    let mut out = BytesMut::with_capacity(n as usize * (record_size + 16));
    let now = EventTime::now();
    for i in 0..n {
        let msg = message(content, pad, &mut rng);
        let rec = rmp_serde::to_vec_named(&serde_json::json!({
            "seq": i as u64 + 1_000_000_000, "host": "bench-host-01", "level": "info", "msg": msg
        }))
        .expect("msgpack");
        write_entry(&mut out, now, &rec);
    }
    out.freeze()
}

/// A `msg` of `len` bytes (ASCII) of `content`.
fn message(content: RecordContent, len: usize, rng: &mut StdRng) -> String {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut msg = match content {
        RecordContent::Padded => return "x".repeat(len),
        RecordContent::Random => (0..len)
            .map(|_| ALNUM[rng.gen_range(0..ALNUM.len())] as char)
            .collect(),
        RecordContent::Logs => {
            const METHODS: [&str; 4] = ["GET", "GET", "POST", "PUT"];
            const PATHS: [&str; 6] = ["users", "orders", "items", "search", "cart", "health"];
            const STATUS: [u16; 6] = [200, 200, 200, 201, 404, 500];
            format!(
                "10.{}.{}.{} - - \"{} /api/v1/{}/{} HTTP/1.1\" {} {} rt={}.{:03} req={:016x}",
                rng.gen_range(0..255),
                rng.gen_range(0..255),
                rng.gen_range(1..255),
                METHODS[rng.gen_range(0..METHODS.len())],
                PATHS[rng.gen_range(0..PATHS.len())],
                rng.gen_range(1..1_000_000),
                STATUS[rng.gen_range(0..STATUS.len())],
                rng.gen_range(100..100_000),
                rng.gen_range(0..3),
                rng.gen_range(0..1000),
                rng.gen::<u64>(),
            )
        }
    };
    // Fill or cut to `len` (more fields of the same kind; ASCII, so any cut is a boundary).
    while msg.len() < len {
        msg.push_str(&format!(
            " user_agent=\"client/{}.{}\"",
            rng.gen_range(1..9),
            rng.gen_range(0..30)
        ));
    }
    msg.truncate(len);
    msg
}

/// Run the load; returns when every chunk was acknowledged.
pub async fn run(spec: LoadSpec) -> std::io::Result<LoadReport> {
    let variants: Arc<Vec<Bytes>> = Arc::new(
        (0..CHUNK_VARIANTS)
            .map(|v| chunk_entries(spec.events_per_chunk, spec.record_size, spec.content, v))
            .collect(),
    );
    let bytes = Arc::new(AtomicU64::new(0));
    let total_chunks = spec.total_events.div_ceil(spec.events_per_chunk as u64);
    let next = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(total_chunks as usize)));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..spec.connections.max(1) {
        let (spec, variants, next, latencies, bytes) = (
            spec.clone(),
            variants.clone(),
            next.clone(),
            latencies.clone(),
            bytes.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let load = Load {
                variants,
                next,
                total: total_chunks,
                bytes,
            };
            connection(&spec, load, latencies).await
        }));
    }
    for t in tasks {
        t.await.map_err(std::io::Error::other)??;
    }
    let elapsed = start.elapsed();
    let mut lat = latencies.lock().await.clone();
    lat.sort();
    let pick = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Ok(LoadReport {
        events: total_chunks * spec.events_per_chunk as u64,
        chunks: total_chunks,
        bytes: bytes.load(Ordering::Relaxed),
        elapsed,
        ack_p50: pick(0.50),
        ack_p99: pick(0.99),
        ack_max: lat.last().copied().unwrap_or_default(),
    })
}

/// What the connections share: the chunks to send, the next chunk's number, how many, and
/// the bytes of entries sent.
struct Load {
    variants: Arc<Vec<Bytes>>,
    next: Arc<AtomicU64>,
    total: u64,
    bytes: Arc<AtomicU64>,
}

async fn connection(
    spec: &LoadSpec,
    load: Load,
    latencies: Arc<Mutex<Vec<Duration>>>,
) -> std::io::Result<()> {
    let stream = TcpStream::connect(spec.addr).await?;
    stream.set_nodelay(true)?;
    let (mut rd, mut wr) = stream.into_split();
    let slots = Arc::new(Semaphore::new(spec.pipeline.max(1)));
    let sent: Arc<std::sync::Mutex<VecDeque<(Bytes, Instant)>>> = Default::default();
    let done_sending = Arc::new(AtomicU64::new(u64::MAX));
    let finished = Arc::new(tokio::sync::Notify::new());

    let reader = {
        let (slots, sent, done_sending, latencies, finished) = (
            slots.clone(),
            sent.clone(),
            done_sending.clone(),
            latencies.clone(),
            finished.clone(),
        );
        tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(4096);
            let mut acked = 0u64;
            let mut lat = Vec::new();
            loop {
                while let Some(ack) = decode_ack(&mut buf).map_err(std::io::Error::other)? {
                    let (chunk, at) = sent.lock().expect("sent").pop_front().ok_or_else(|| {
                        std::io::Error::other("ack for a chunk that was not sent")
                    })?;
                    if ack != chunk {
                        return Err(std::io::Error::other("ack does not match the chunk id"));
                    }
                    lat.push(at.elapsed());
                    acked += 1;
                    slots.add_permits(1);
                }
                if acked == done_sending.load(Ordering::Acquire) {
                    break;
                }
                tokio::select! {
                    n = rd.read_buf(&mut buf) => {
                        if n? == 0 {
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                "server closed the connection",
                            ));
                        }
                    }
                    _ = finished.notified() => {}
                }
            }
            latencies.lock().await.extend(lat);
            Ok::<_, std::io::Error>(())
        })
    };

    let mut count = 0u64;
    loop {
        let permit = slots.acquire().await.map_err(std::io::Error::other)?;
        permit.forget();
        let number = load.next.fetch_add(1, Ordering::Relaxed);
        if number >= load.total {
            break;
        }
        let entries = &load.variants[(number % CHUNK_VARIANTS) as usize];
        load.bytes
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        let id = Bytes::from(ChunkId::random().to_base64());
        let parts = encode_packed_forward(
            &spec.tag,
            entries,
            spec.events_per_chunk,
            Some(&id),
            Compression::Text,
        )
        .map_err(std::io::Error::other)?;
        sent.lock().expect("sent").push_back((id, Instant::now()));
        wr.write_all(&parts.header).await?;
        wr.write_all(entries).await?;
        wr.write_all(&parts.trailer).await?;
        count += 1;
    }
    done_sending.store(count, Ordering::Release);
    // Wake the reader in case every ack has already arrived.
    finished.notify_one();
    reader.await.map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lz4_ratio(content: RecordContent) -> f64 {
        let entries = chunk_entries(1000, 170, content, 3);
        entries.len() as f64 / lz4_flex::block::compress(&entries).len() as f64
    }

    #[test]
    fn record_contents_compress_as_documented() {
        let (logs, padded, random) = (
            lz4_ratio(RecordContent::Logs),
            lz4_ratio(RecordContent::Padded),
            lz4_ratio(RecordContent::Random),
        );
        assert!((1.5..3.5).contains(&logs), "logs {logs:.2}");
        assert!(padded > 6.0, "padded {padded:.2}");
        assert!(random < 1.6, "random {random:.2}");
    }

    #[test]
    fn a_variant_is_the_same_chunk_and_variants_differ() {
        // (Chunks carry the time they were made: compare the messages.)
        let messages = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..50)
                .map(|_| message(RecordContent::Logs, 140, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(messages(1), messages(1));
        assert_ne!(messages(1), messages(2));
        assert!(messages(1).iter().all(|m| m.len() == 140));
        // About the size asked for, whatever the content.
        for content in [
            RecordContent::Logs,
            RecordContent::Padded,
            RecordContent::Random,
        ] {
            let len = chunk_entries(100, 170, content, 0).len();
            assert!((160 * 100..=185 * 100).contains(&len), "{content:?}: {len}");
        }
    }
}
