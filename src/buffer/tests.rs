//! Tests of `Buffer` against real files in temporary directories (and of the memory buffer).
//! They only exercise the public API plus the writer's test counters and failure hook.

use super::*;
use crate::buffer::config::{BufferConfig, BufferKind, FlushMode, OverflowAction};
use crate::event::{write_entry, EventTime};
use bytes::BytesMut;
use std::path::Path;
use std::time::{Duration, Instant, UNIX_EPOCH};

/// A batch whose entries carry records `{"n": id, "pad": ...}` for every id in `ids`.
fn batch_at(tag: &str, ids: std::ops::Range<u64>, secs: u32, pad: usize) -> EventBatch {
    let mut out = BytesMut::new();
    let padding = "x".repeat(pad);
    for n in ids.clone() {
        let rec = rmp_serde::to_vec_named(&serde_json::json!({"n": n, "pad": padding})).unwrap();
        write_entry(&mut out, EventTime { secs, nanos: 0 }, &rec);
    }
    EventBatch {
        tag: tag.to_string(),
        entries: out.freeze(),
        count: (ids.end - ids.start) as u32,
        origin_chunk: None,
        segments: Vec::new(),
    }
}

fn batch(tag: &str, ids: std::ops::Range<u64>) -> EventBatch {
    batch_at(tag, ids, 1_700_000_000, 8)
}

fn record_ids(entries: &[u8]) -> Vec<u64> {
    EntryIter::new(entries)
        .map(|e| {
            let v: serde_json::Value = rmp_serde::from_slice(e.unwrap().record).unwrap();
            v["n"].as_u64().unwrap()
        })
        .collect()
}

fn file_cfg(dir: &Path) -> BufferConfig {
    let mut cfg = BufferConfig::defaults(BufferKind::File {
        path: Some(dir.to_path_buf()),
    });
    // Tests decide when chunks are queued unless they test the schedule.
    cfg.flush_interval = Duration::from_secs(3600);
    cfg
}

fn mem_cfg() -> BufferConfig {
    let mut cfg = BufferConfig::defaults(BufferKind::Memory);
    cfg.flush_interval = Duration::from_secs(3600);
    cfg
}

async fn open(cfg: &BufferConfig, dir: &Path) -> (Arc<Buffer>, ResumeReport) {
    Buffer::open(cfg, Some(dir.to_path_buf()), "test")
        .await
        .unwrap()
}

fn chunk_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(chunk::is_chunk_file_name)
        })
        .collect();
    v.sort();
    v
}

/// Take every chunk out (after `shutdown(true)`), purging each; returns (meta, record ids).
async fn drain_all(buf: &Buffer) -> Vec<(ChunkMeta, Vec<u64>)> {
    buf.shutdown(true);
    let mut out = Vec::new();
    while let Some(c) = tokio::time::timeout(Duration::from_secs(5), buf.dequeue())
        .await
        .expect("dequeue hung")
    {
        let ids = record_ids(&c.entries);
        assert_eq!(ids.len() as u64, c.meta.records);
        assert_eq!(c.entries.len() as u64, c.meta.bytes);
        buf.purge(c.meta.id).await.unwrap();
        out.push((c.meta, ids));
    }
    out
}

async fn wait_until(mut cond: impl FnMut() -> bool, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cond()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_land_exactly_once_and_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = file_cfg(dir.path());
    cfg.chunk_limit_size = 64 * 1024;
    let (buf, _) = open(&cfg, dir.path()).await;
    let tasks = 32u64;
    let appends = 200u64;
    let per = 5u64;
    let mut handles = Vec::new();
    for t in 0..tasks {
        let buf = buf.clone();
        handles.push(tokio::spawn(async move {
            for a in 0..appends {
                let first = (t * appends + a) * per;
                let tag = if t % 2 == 0 { "even" } else { "odd" };
                buf.append(&batch(tag, first..first + per)).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let stats = buf.stats();
    assert_eq!(stats.durable_appends, tasks * appends);
    assert_eq!(stats.records, tasks * appends * per);
    assert!(
        stats.file_syncs < stats.durable_appends / 2,
        "group commit should batch: {} syncs for {} appends",
        stats.file_syncs,
        stats.durable_appends
    );
    assert!(buf.counters().rounds.load(Ordering::Relaxed) < tasks * appends);
    let chunks = drain_all(&buf).await;
    assert!(chunks.len() > 2, "64 KiB chunks must roll over");
    let mut ids: Vec<u64> = chunks.iter().flat_map(|(_, ids)| ids.clone()).collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..tasks * appends * per).collect::<Vec<_>>());
    for (meta, _) in &chunks {
        assert!(meta.bytes <= cfg.chunk_limit_size);
    }
    assert!(chunk_files(dir.path()).is_empty(), "purge deletes files");
    assert_eq!(
        buf.stats(),
        BufferStats {
            durable_appends: stats.durable_appends,
            file_syncs: stats.file_syncs,
            ..Default::default()
        }
    );
}

#[tokio::test]
async fn resume_after_drop_keeps_chunk_ids_and_data() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = file_cfg(dir.path());
    let (buf, report) = open(&cfg, dir.path()).await;
    assert_eq!(report.chunks, 0);
    buf.append(&batch("a", 0..10)).await.unwrap();
    buf.append(&batch("b", 10..15)).await.unwrap();
    buf.append(&batch("a", 15..20)).await.unwrap();
    // Learn the ids: queue, take both out, hand them back.
    buf.enqueue_all();
    let first = buf.dequeue().await.unwrap();
    let second = buf.dequeue().await.unwrap();
    buf.release(second.meta.id);
    buf.release(first.meta.id);
    drop(buf); // no shutdown: as if the process died

    let (buf, report) = open(&cfg, dir.path()).await;
    assert_eq!(report.chunks, 2);
    assert_eq!(report.records, 20);
    assert_eq!(report.repaired, 0);
    assert!(report.quarantined.is_empty());
    let a = buf.dequeue().await.unwrap();
    let b = buf.dequeue().await.unwrap();
    assert_eq!(a.meta.id, first.meta.id);
    assert_eq!(b.meta.id, second.meta.id);
    assert_eq!(a.meta.created, first.meta.created);
    let mut all = record_ids(&a.entries);
    all.extend(record_ids(&b.entries));
    all.sort_unstable();
    assert_eq!(all, (0..20).collect::<Vec<_>>());
    assert_eq!(a.meta.tag, first.meta.tag);
}

#[tokio::test]
async fn torn_tail_is_cut_back_and_earlier_appends_survive() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = file_cfg(dir.path());
    let (buf, _) = open(&cfg, dir.path()).await;
    for i in 0..3 {
        buf.append(&batch("t", i * 4..i * 4 + 4)).await.unwrap();
    }
    drop(buf);
    let files = chunk_files(dir.path());
    assert_eq!(files.len(), 1);
    let good_len = std::fs::metadata(&files[0]).unwrap().len();
    // Half an append: a header claiming more bytes than follow.
    let extra = batch("t", 100..104);
    let mut torn = chunk::append_header(&extra.entries, 4).to_vec();
    torn.extend_from_slice(&extra.entries[..extra.entries.len() / 2]);
    let mut bytes = std::fs::read(&files[0]).unwrap();
    bytes.extend_from_slice(&torn);
    std::fs::write(&files[0], &bytes).unwrap();

    let (buf, report) = open(&cfg, dir.path()).await;
    assert_eq!(report.repaired, 1);
    assert_eq!(report.records, 12);
    assert_eq!(std::fs::metadata(&files[0]).unwrap().len(), good_len);
    let c = buf.dequeue().await.unwrap();
    assert_eq!(record_ids(&c.entries), (0..12).collect::<Vec<_>>());
    buf.release(c.meta.id);
    drop(buf);

    // Garbage after the good part is cut the same way.
    let mut bytes = std::fs::read(&files[0]).unwrap();
    bytes.extend_from_slice(b"\x05\x00\x00\x00garbage!");
    std::fs::write(&files[0], &bytes).unwrap();
    let (_buf, report) = open(&cfg, dir.path()).await;
    assert_eq!(report.repaired, 1);
    assert_eq!(report.records, 12);
    assert_eq!(std::fs::metadata(&files[0]).unwrap().len(), good_len);
}

#[tokio::test]
async fn corrupt_middle_append_and_bad_header_are_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = file_cfg(dir.path());
    let (buf, _) = open(&cfg, dir.path()).await;
    buf.append(&batch("bad", 0..3)).await.unwrap();
    buf.append(&batch("bad", 3..6)).await.unwrap();
    buf.append(&batch("badhead", 6..8)).await.unwrap();
    buf.append(&batch("good", 10..13)).await.unwrap();
    buf.enqueue_all();
    let mut by_tag = HashMap::new();
    for _ in 0..3 {
        let c = buf.dequeue().await.unwrap();
        by_tag.insert(c.meta.tag.clone(), c.meta.id);
    }
    for id in by_tag.values() {
        buf.release(*id);
    }
    drop(buf);
    let path_of = |tag: &str| dir.path().join(chunk::file_name(by_tag[tag]));
    // Flip a byte inside the first append's entries.
    let bad = path_of("bad");
    let mut bytes = std::fs::read(&bad).unwrap();
    let (_, header_len) = chunk::ChunkHeader::decode(&bytes).unwrap();
    bytes[header_len + chunk::APPEND_HEADER_LEN + 2] ^= 0x40;
    std::fs::write(&bad, &bytes).unwrap();
    // Break the other one's header.
    let badhead = path_of("badhead");
    let mut bytes = std::fs::read(&badhead).unwrap();
    bytes[20] ^= 0xff;
    std::fs::write(&badhead, &bytes).unwrap();

    let (buf, report) = open(&cfg, dir.path()).await;
    assert_eq!(report.chunks, 1);
    assert_eq!(report.records, 3);
    assert_eq!(report.quarantined.len(), 2);
    for q in &report.quarantined {
        assert!(q.exists());
        assert_eq!(q.parent().unwrap(), dir.path().join("quarantine"));
    }
    assert!(!bad.exists() && !badhead.exists());
    let c = buf.dequeue().await.unwrap();
    assert_eq!(c.meta.id, by_tag["good"]);
    assert_eq!(record_ids(&c.entries), vec![10, 11, 12]);
}

#[tokio::test]
async fn empty_chunk_files_are_deleted_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let header = chunk::ChunkHeader {
        id: ChunkId::random(),
        tag: "x".into(),
        timekey: None,
        created: SystemTime::now(),
    };
    let only_header = dir.path().join(chunk::file_name(header.id));
    std::fs::write(&only_header, header.encode()).unwrap();
    let zero = dir.path().join(chunk::file_name(ChunkId::random()));
    std::fs::write(&zero, b"").unwrap();
    let (buf, report) = open(&file_cfg(dir.path()), dir.path()).await;
    assert_eq!(report.chunks, 0);
    assert!(report.quarantined.is_empty());
    assert!(!only_header.exists() && !zero.exists());
    assert_eq!(buf.stats().queued_chunks, 0);
}

#[tokio::test]
async fn chunk_damaged_after_queueing_is_quarantined_at_dequeue() {
    let dir = tempfile::tempdir().unwrap();
    let (buf, _) = open(&file_cfg(dir.path()), dir.path()).await;
    buf.append(&batch("first", 0..2)).await.unwrap();
    buf.append(&batch("first", 2..4)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    buf.append(&batch("second", 4..6)).await.unwrap();
    buf.enqueue_all();
    let files = chunk_files(dir.path());
    assert_eq!(files.len(), 2);
    for f in &files {
        let mut bytes = std::fs::read(f).unwrap();
        if chunk::ChunkHeader::decode(&bytes).unwrap().0.tag == "first" {
            let (_, hl) = chunk::ChunkHeader::decode(&bytes).unwrap();
            bytes[hl + chunk::APPEND_HEADER_LEN] ^= 1;
            std::fs::write(f, &bytes).unwrap();
        }
    }
    let c = buf.dequeue().await.unwrap();
    assert_eq!(c.meta.tag, "second");
    assert_eq!(chunk_files(&dir.path().join("quarantine")).len(), 1);
    assert_eq!(buf.stats().in_flight_chunks, 1);
    assert_eq!(buf.stats().queued_chunks, 0);
}

#[tokio::test]
async fn failed_sync_refuses_the_append_and_keeps_acknowledged_data() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = file_cfg(dir.path());
    let (buf, _) = open(&cfg, dir.path()).await;
    buf.append(&batch("t", 0..5)).await.unwrap();
    let files = chunk_files(dir.path());
    let good_len = std::fs::metadata(&files[0]).unwrap().len();
    buf.counters()
        .inject_sync_failures
        .store(1, Ordering::SeqCst);
    let err = buf.append(&batch("t", 5..10)).await.unwrap_err();
    assert!(matches!(err, BufferError::Io { .. }), "{err:?}");
    assert_eq!(std::fs::metadata(&files[0]).unwrap().len(), good_len);
    assert_eq!(buf.stats().records, 5);
    // The buffer keeps working (into a fresh chunk, the failed one is sealed and queued).
    buf.append(&batch("t", 10..15)).await.unwrap();
    assert_eq!(buf.stats().queued_chunks, 1);
    drop(buf);
    let (buf, report) = open(&cfg, dir.path()).await;
    assert_eq!(report.records, 10);
    assert_eq!(report.repaired, 0);
    let mut ids: Vec<u64> = drain_all(&buf)
        .await
        .into_iter()
        .flat_map(|(_, ids)| ids)
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..5).chain(10..15).collect::<Vec<_>>());
}

#[tokio::test]
async fn interval_flush_queues_after_flush_interval() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = file_cfg(dir.path());
    cfg.flush_mode = FlushMode::Interval;
    cfg.flush_interval = Duration::from_millis(300);
    let (buf, _) = open(&cfg, dir.path()).await;
    let start = Instant::now();
    buf.append(&batch("t", 0..3)).await.unwrap();
    // Not queued before the interval. The buffer schedules by the wall clock, so instead of
    // sleeping part of the interval (which a loaded machine can overshoot), look now and
    // note when we looked: queued is an error only if we looked before the interval ran out.
    let stats = buf.stats();
    let looked = start.elapsed();
    assert!(
        looked >= Duration::from_millis(290)
            || (stats.queued_chunks, stats.staged_chunks) == (0, 1),
        "queued after {looked:?} with a 300 ms flush_interval: {stats:?}"
    );
    let c = tokio::time::timeout(Duration::from_secs(3), buf.dequeue())
        .await
        .unwrap()
        .unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(290),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(record_ids(&c.entries), vec![0, 1, 2]);
}

#[tokio::test]
async fn immediate_flush_queues_as_soon_as_append_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = file_cfg(dir.path());
    cfg.flush_mode = FlushMode::Immediate;
    let (buf, _) = open(&cfg, dir.path()).await;
    buf.append(&batch("t", 0..3)).await.unwrap();
    assert_eq!(buf.stats().queued_chunks, 1);
    buf.append(&batch("t", 3..5)).await.unwrap();
    assert_eq!(buf.stats().queued_chunks, 2);
    let c = buf.dequeue().await.unwrap();
    assert_eq!(record_ids(&c.entries), vec![0, 1, 2]);

    let mut mcfg = mem_cfg();
    mcfg.flush_mode = FlushMode::Immediate;
    let (mem, _) = Buffer::open(&mcfg, None, "mem").await.unwrap();
    mem.append(&batch("t", 0..3)).await.unwrap();
    assert_eq!(mem.stats().queued_chunks, 1);
}

#[tokio::test]
async fn lazy_flush_waits_for_timekey_end_plus_wait() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = file_cfg(dir.path());
    cfg.flush_mode = FlushMode::Lazy;
    cfg.timekey = Some(Duration::from_secs(1));
    cfg.timekey_wait = Duration::from_millis(300);
    let (buf, _) = open(&cfg, dir.path()).await;
    // An old time bucket is long over: queued at once.
    buf.append(&batch_at("t", 0..2, 1_000_000_000, 8))
        .await
        .unwrap();
    assert!(wait_until(|| buf.stats().queued_chunks == 1, Duration::from_secs(1)).await);
    // The current bucket ends within a second, plus 300 ms.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    buf.append(&batch_at("t", 2..4, now.as_secs() as u32, 8))
        .await
        .unwrap();
    let due = Duration::from_secs(now.as_secs() + 1) + Duration::from_millis(300);
    // Not queued before it is due (looking now rather than after a sleep a loaded machine can
    // overshoot: staged is required only if we looked before the due time).
    let staged = buf.stats().staged_chunks;
    let looked = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    assert!(
        looked + Duration::from_millis(10) >= due || staged == 1,
        "not due before timekey_wait: queued at {looked:?}, due {due:?}"
    );
    assert!(wait_until(|| buf.stats().queued_chunks == 2, Duration::from_secs(3)).await);
    let queued_at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    assert!(
        queued_at + Duration::from_millis(10) >= due,
        "{queued_at:?} < {due:?}"
    );
}

#[tokio::test]
async fn timekey_splits_a_batch_into_buckets() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = file_cfg(dir.path());
    cfg.timekey = Some(Duration::from_secs(60));
    let (buf, _) = open(&cfg, dir.path()).await;
    // Interleaved times: buckets 600, 660, 600, 720.
    let mut entries = BytesMut::new();
    let times = [600u32, 610, 665, 619, 720, 700];
    for (n, t) in times.iter().enumerate() {
        let rec = rmp_serde::to_vec_named(&serde_json::json!({"n": n})).unwrap();
        write_entry(&mut entries, EventTime { secs: *t, nanos: 0 }, &rec);
    }
    let b = EventBatch {
        tag: "tk".into(),
        entries: entries.freeze(),
        count: times.len() as u32,
        origin_chunk: None,
        segments: Vec::new(),
    };
    buf.append(&b).await.unwrap();
    assert_eq!(buf.stats().staged_chunks, 3);
    let mut chunks = drain_all(&buf).await;
    chunks.sort_by_key(|(m, _)| m.timekey);
    let got: Vec<(Option<i64>, Vec<u64>)> = chunks
        .into_iter()
        .map(|(m, ids)| (m.timekey, ids))
        .collect();
    assert_eq!(
        got,
        vec![
            (Some(600), vec![0, 1, 3]),
            (Some(660), vec![2, 5]),
            (Some(720), vec![4]),
        ]
    );
}

#[tokio::test]
async fn chunk_limit_records_rolls_over() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = file_cfg(dir.path());
    cfg.chunk_limit_records = Some(10);
    let (buf, _) = open(&cfg, dir.path()).await;
    for i in 0..5 {
        buf.append(&batch("t", i * 5..i * 5 + 5)).await.unwrap();
    }
    // 7 more in one batch: split into 5 (fills the third chunk) + 2.
    buf.append(&batch("t", 25..32)).await.unwrap();
    let s = buf.stats();
    assert_eq!(s.queued_chunks, 3);
    assert_eq!(s.staged_chunks, 1);
    let chunks = drain_all(&buf).await;
    let sizes: Vec<u64> = chunks.iter().map(|(m, _)| m.records).collect();
    assert_eq!(sizes, vec![10, 10, 10, 2]);
    let ids: Vec<u64> = chunks.into_iter().flat_map(|(_, ids)| ids).collect();
    assert_eq!(ids, (0..32).collect::<Vec<_>>());
}

#[tokio::test]
async fn chunk_limit_size_rolls_over_at_95_percent() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = file_cfg(dir.path());
    let entry_len = batch("t", 0..1).entries.len() as u64;
    cfg.chunk_limit_size = entry_len * 20;
    let (buf, _) = open(&cfg, dir.path()).await;
    // 19 entries = 95 %: full, queued.
    buf.append(&batch("t", 0..19)).await.unwrap();
    assert_eq!(buf.stats().queued_chunks, 1);
    buf.append(&batch("t", 19..30)).await.unwrap();
    buf.append(&batch("t", 30..45)).await.unwrap();
    // 11 staged + 15 does not fit 20: 9 fill it (full), 6 start the next.
    let s = buf.stats();
    assert_eq!(s.queued_chunks, 2);
    assert_eq!(s.staged_chunks, 1);
    let chunks = drain_all(&buf).await;
    let sizes: Vec<u64> = chunks.iter().map(|(m, _)| m.records).collect();
    assert_eq!(sizes, vec![19, 20, 6]);
    for (m, _) in &chunks {
        assert!(m.bytes <= cfg.chunk_limit_size);
    }
    let ids: Vec<u64> = chunks.into_iter().flat_map(|(_, ids)| ids).collect();
    assert_eq!(ids, (0..45).collect::<Vec<_>>());
}

#[tokio::test]
async fn oversized_batch_is_split_and_oversized_entry_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = file_cfg(dir.path());
    cfg.chunk_limit_size = 1000;
    let (buf, _) = open(&cfg, dir.path()).await;
    let big = batch_at("t", 0..100, 1_700_000_000, 40);
    assert!(big.entries.len() > 5000);
    buf.append(&big).await.unwrap();
    let chunks = drain_all(&buf).await;
    assert!(chunks.len() >= 6, "{} chunks", chunks.len());
    for (m, _) in &chunks {
        assert!(m.bytes <= 1000);
    }
    let ids: Vec<u64> = chunks.into_iter().flat_map(|(_, ids)| ids).collect();
    assert_eq!(ids, (0..100).collect::<Vec<_>>());

    let dir = tempfile::tempdir().unwrap();
    let (buf, _) = open(&cfg, dir.path()).await;
    let huge_entry = batch_at("t", 0..1, 1_700_000_000, 2000);
    assert!(matches!(
        buf.append(&huge_entry).await,
        Err(BufferError::TooLarge { .. })
    ));
    assert_eq!(buf.stats(), BufferStats::default());
}

#[tokio::test]
async fn overflow_throw_exception_refuses() {
    let mut cfg = mem_cfg();
    let one = batch("t", 0..10);
    cfg.total_limit_size = one.entries.len() as u64 * 2;
    cfg.overflow_action = OverflowAction::ThrowException;
    let (buf, _) = Buffer::open(&cfg, None, "mem").await.unwrap();
    buf.append(&one).await.unwrap();
    buf.append(&batch("t", 10..20)).await.unwrap();
    assert!(matches!(
        buf.append(&batch("t", 20..30)).await,
        Err(BufferError::Overflow { .. })
    ));
    assert_eq!(buf.stats().records, 20);
}

#[tokio::test]
async fn overflow_block_waits_for_purge_and_gives_up_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = file_cfg(dir.path());
    let one = batch("t", 0..10);
    cfg.total_limit_size = one.entries.len() as u64 * 2;
    cfg.overflow_action = OverflowAction::Block;
    let (buf, _) = open(&cfg, dir.path()).await;
    buf.append(&one).await.unwrap();
    buf.append(&batch("t", 10..20)).await.unwrap();
    buf.enqueue_all();
    let blocked = {
        let buf = buf.clone();
        tokio::spawn(async move { buf.append(&batch("t", 20..30)).await })
    };
    // Blocked, not merely not yet run: the buffer counts it as waiting for space.
    assert!(wait_until(|| buf.stats().blocked_appends == 1, Duration::from_secs(5)).await);
    assert!(!blocked.is_finished());
    let c = buf.dequeue().await.unwrap();
    buf.purge(c.meta.id).await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), blocked)
        .await
        .expect("append unblocked by purge")
        .unwrap()
        .unwrap();
    assert_eq!(buf.stats().blocked_appends, 0);
    assert_eq!(buf.stats().records, 10);

    // Full again: a blocked append gives up when the buffer shuts down.
    buf.append(&batch("t", 30..40)).await.unwrap();
    let blocked = {
        let buf = buf.clone();
        tokio::spawn(async move { buf.append(&batch("t", 40..50)).await })
    };
    assert!(wait_until(|| buf.stats().blocked_appends == 1, Duration::from_secs(5)).await);
    buf.shutdown(false);
    let r = tokio::time::timeout(Duration::from_secs(2), blocked)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(r, Err(BufferError::Closed)));
}

#[tokio::test]
async fn overflow_drop_oldest_deletes_the_oldest_queued_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = file_cfg(dir.path());
    let one = batch("t", 0..10);
    cfg.total_limit_size = one.entries.len() as u64 * 2;
    cfg.overflow_action = OverflowAction::DropOldestChunk;
    cfg.chunk_limit_records = Some(10);
    let (buf, _) = open(&cfg, dir.path()).await;
    buf.append(&one).await.unwrap();
    buf.append(&batch("t", 10..20)).await.unwrap();
    assert_eq!(buf.stats().queued_chunks, 2);
    assert_eq!(chunk_files(dir.path()).len(), 2);
    buf.append(&batch("t", 20..30)).await.unwrap();
    assert_eq!(chunk_files(dir.path()).len(), 2);
    let chunks = drain_all(&buf).await;
    let ids: Vec<u64> = chunks.into_iter().flat_map(|(_, ids)| ids).collect();
    assert_eq!(ids, (10..30).collect::<Vec<_>>());

    // Nothing queued to drop (all in flight): refused.
    let dir = tempfile::tempdir().unwrap();
    let (buf, _) = open(&cfg, dir.path()).await;
    buf.append(&batch("t", 0..10)).await.unwrap();
    buf.append(&batch("t", 10..20)).await.unwrap();
    let _a = buf.dequeue().await.unwrap();
    let _b = buf.dequeue().await.unwrap();
    assert!(matches!(
        buf.append(&batch("t", 20..30)).await,
        Err(BufferError::Overflow { .. })
    ));
}

#[tokio::test]
async fn release_puts_chunks_back_in_age_order() {
    let (buf, _) = Buffer::open(&mem_cfg(), None, "mem").await.unwrap();
    for (i, tag) in ["a", "b", "c"].iter().enumerate() {
        let i = i as u64;
        buf.append(&batch(tag, i * 2..i * 2 + 2)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    buf.enqueue_all();
    let a = buf.dequeue().await.unwrap();
    let b = buf.dequeue().await.unwrap();
    assert_eq!((a.meta.tag.as_str(), b.meta.tag.as_str()), ("a", "b"));
    buf.release(b.meta.id);
    buf.release(a.meta.id);
    let order: Vec<String> = [
        buf.dequeue().await.unwrap(),
        buf.dequeue().await.unwrap(),
        buf.dequeue().await.unwrap(),
    ]
    .into_iter()
    .map(|c| c.meta.tag)
    .collect();
    assert_eq!(order, vec!["a", "b", "c"]);
    let s = buf.stats();
    assert_eq!((s.in_flight_chunks, s.queued_chunks), (3, 0));
}

#[tokio::test]
async fn shutdown_with_drain_hands_out_everything_then_none() {
    let (buf, _) = Buffer::open(&mem_cfg(), None, "mem").await.unwrap();
    buf.append(&batch("a", 0..3)).await.unwrap();
    buf.append(&batch("b", 3..6)).await.unwrap();
    let held = {
        buf.enqueue_all();
        buf.dequeue().await.unwrap()
    };
    buf.append(&batch("c", 6..9)).await.unwrap();
    buf.shutdown(true);
    assert!(matches!(
        buf.append(&batch("a", 9..10)).await,
        Err(BufferError::Closed)
    ));
    let next = buf.dequeue().await.unwrap();
    let last = buf.dequeue().await.unwrap();
    // A chunk released during the drain is handed out again.
    buf.release(held.meta.id);
    let again = buf.dequeue().await.unwrap();
    assert_eq!(again.meta.id, held.meta.id);
    // While chunks are in flight, dequeue waits (they may come back).
    let waiting = {
        let buf = buf.clone();
        tokio::spawn(async move { buf.dequeue().await.map(|c| c.meta.id) })
    };
    assert!(wait_until(|| buf.stats().waiting_dequeues == 1, Duration::from_secs(5)).await);
    assert!(!waiting.is_finished());
    for c in [next, last, again] {
        buf.purge(c.meta.id).await.unwrap();
    }
    let r = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r, None);
}

#[tokio::test]
async fn shutdown_without_drain_stops_dequeue_and_keeps_files() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = file_cfg(dir.path());
    let (buf, _) = open(&cfg, dir.path()).await;
    buf.append(&batch("a", 0..3)).await.unwrap();
    buf.append(&batch("b", 3..5)).await.unwrap();
    buf.enqueue_all();
    buf.shutdown(false);
    assert!(buf.dequeue().await.is_none());
    assert!(matches!(
        buf.append(&batch("a", 9..10)).await,
        Err(BufferError::Closed)
    ));
    drop(buf);
    assert_eq!(chunk_files(dir.path()).len(), 2);
    let (_buf, report) = open(&cfg, dir.path()).await;
    assert_eq!((report.chunks, report.records), (2, 5));
}

#[tokio::test]
async fn memory_buffer_round_trip_and_quarantine() {
    let (buf, report) = Buffer::open(&mem_cfg(), None, "mem").await.unwrap();
    assert_eq!(report.chunks, 0);
    buf.append(&batch("t", 0..4)).await.unwrap();
    buf.append(&batch("t", 4..8)).await.unwrap();
    buf.enqueue_all();
    let c = buf.dequeue().await.unwrap();
    assert_eq!(record_ids(&c.entries), (0..8).collect::<Vec<_>>());
    assert_eq!(buf.quarantine(c.meta.id, "test").await.unwrap(), None);
    assert_eq!(buf.stats(), BufferStats::default());
}

#[tokio::test]
async fn file_quarantine_moves_the_in_flight_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let (buf, _) = open(&file_cfg(dir.path()), dir.path()).await;
    buf.append(&batch("t", 0..4)).await.unwrap();
    buf.enqueue_all();
    let c = buf.dequeue().await.unwrap();
    let moved = buf
        .quarantine(c.meta.id, "receiver rejected it")
        .await
        .unwrap()
        .unwrap();
    assert!(moved.starts_with(dir.path().join("quarantine")));
    assert!(moved.exists());
    assert!(chunk_files(dir.path()).is_empty());
    assert_eq!(buf.stats().records, 0);
}

#[tokio::test]
async fn dequeue_cancelled_while_reading_keeps_the_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let (buf, _) = open(&file_cfg(dir.path()), dir.path()).await;
    buf.append(&batch("t", 0..4)).await.unwrap();
    buf.enqueue_all();
    // Poll dequeue once (it takes the chunk and starts reading), then drop it.
    {
        let fut = buf.dequeue();
        tokio::pin!(fut);
        if let Some(Some(c)) = futures_poll_once(fut.as_mut()).await {
            buf.release(c.meta.id);
        }
    }
    let s = buf.stats();
    assert_eq!(s.queued_chunks + s.in_flight_chunks, 1);
    let c = tokio::time::timeout(Duration::from_secs(2), buf.dequeue())
        .await
        .unwrap();
    if let Some(c) = c {
        assert_eq!(record_ids(&c.entries), vec![0, 1, 2, 3]);
    } else {
        panic!("chunk lost after a cancelled dequeue");
    }
}

/// Poll a future exactly once.
async fn futures_poll_once<F: std::future::Future + Unpin>(mut fut: F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut fut).poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

#[tokio::test]
async fn a_chunk_released_with_a_not_before_time_lets_younger_chunks_pass() {
    let dir = tempfile::tempdir().unwrap();
    for cfg in [file_cfg(dir.path()), mem_cfg()] {
        let (buf, _) = open(&cfg, dir.path()).await;
        buf.append(&batch("old", 0..3)).await.unwrap();
        buf.enqueue_all();
        buf.append(&batch("young", 3..5)).await.unwrap();
        buf.enqueue_all();
        let old = buf.dequeue().await.unwrap();
        assert_eq!(old.meta.tag, "old");
        let not_before = tokio::time::Instant::now() + Duration::from_millis(400);
        buf.release_after(old.meta.id, not_before);
        assert_eq!(buf.stats().queued_chunks, 2);
        // The younger chunk is handed out at once although it is behind the old one.
        let young = tokio::time::timeout(Duration::from_millis(200), buf.dequeue())
            .await
            .expect("younger chunk must not wait behind the one in backoff")
            .unwrap();
        assert_eq!(young.meta.tag, "young");
        buf.purge(young.meta.id).await.unwrap();
        // The old one comes back once its time has come, not before.
        let started = tokio::time::Instant::now();
        let again = buf.dequeue().await.unwrap();
        assert_eq!(again.meta.id, old.meta.id);
        assert!(tokio::time::Instant::now() >= not_before);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(record_ids(&again.entries), vec![0, 1, 2]);
        // retry_now ends a long wait early.
        buf.release_after(
            again.meta.id,
            tokio::time::Instant::now() + Duration::from_secs(3600),
        );
        let waiter = {
            let buf = buf.clone();
            tokio::spawn(async move { buf.dequeue().await })
        };
        assert!(wait_until(|| buf.stats().waiting_dequeues == 1, Duration::from_secs(5)).await);
        assert!(!waiter.is_finished());
        assert!(buf.holds(again.meta.id));
        buf.retry_now();
        let back = tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(back.meta.id, old.meta.id);
        buf.purge(back.meta.id).await.unwrap();
        assert!(!buf.holds(back.meta.id));
        buf.shutdown(false);
    }
}
