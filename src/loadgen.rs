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
}

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

/// One chunk's entries: `n` records of about `record_size` bytes, numbered from 0.
pub fn chunk_entries(n: u32, record_size: usize) -> Bytes {
    let base = rmp_serde::to_vec_named(&serde_json::json!({
        "seq": 0u64, "host": "bench-host-01", "level": "info", "msg": ""
    }))
    .expect("msgpack");
    let pad = record_size.saturating_sub(base.len() + 8);
    let msg = "x".repeat(pad);
    let mut out = BytesMut::with_capacity(n as usize * (record_size + 16));
    let now = EventTime::now();
    for i in 0..n {
        let rec = rmp_serde::to_vec_named(&serde_json::json!({
            "seq": i as u64 + 1_000_000_000, "host": "bench-host-01", "level": "info", "msg": msg
        }))
        .expect("msgpack");
        write_entry(&mut out, now, &rec);
    }
    out.freeze()
}

/// Run the load; returns when every chunk was acknowledged.
pub async fn run(spec: LoadSpec) -> std::io::Result<LoadReport> {
    let entries = chunk_entries(spec.events_per_chunk, spec.record_size);
    let total_chunks = spec.total_events.div_ceil(spec.events_per_chunk as u64);
    let next = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(total_chunks as usize)));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..spec.connections.max(1) {
        let (spec, entries, next, latencies) = (
            spec.clone(),
            entries.clone(),
            next.clone(),
            latencies.clone(),
        );
        tasks.push(tokio::spawn(async move {
            connection(&spec, entries, next, total_chunks, latencies).await
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
        bytes: total_chunks * entries.len() as u64,
        elapsed,
        ack_p50: pick(0.50),
        ack_p99: pick(0.99),
        ack_max: lat.last().copied().unwrap_or_default(),
    })
}

async fn connection(
    spec: &LoadSpec,
    entries: Bytes,
    next: Arc<AtomicU64>,
    total: u64,
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
        if next.fetch_add(1, Ordering::Relaxed) >= total {
            break;
        }
        let id = Bytes::from(ChunkId::random().to_base64());
        let parts = encode_packed_forward(
            &spec.tag,
            &entries,
            spec.events_per_chunk,
            Some(&id),
            Compression::Text,
        )
        .map_err(std::io::Error::other)?;
        sent.lock().expect("sent").push_back((id, Instant::now()));
        wr.write_all(&parts.header).await?;
        wr.write_all(&entries).await?;
        wr.write_all(&parts.trailer).await?;
        count += 1;
    }
    done_sending.store(count, Ordering::Release);
    // Wake the reader in case every ack has already arrived.
    finished.notify_one();
    reader.await.map_err(std::io::Error::other)?
}
