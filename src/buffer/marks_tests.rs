//! Tests of marked appends: a source position stored in the same append as its batch survives
//! a restart, moves to the ledger when its chunk is purged, and is refused (before anything is
//! written) for a batch that would need splitting.

use super::*;
use crate::buffer::config::{BufferConfig, BufferKind};
use crate::event::{write_entry, EventBatch, EventTime};
use crate::pipeline::SourceMark;
use bytes::BytesMut;
use std::time::Duration;

fn batch(n: usize, pad: usize) -> EventBatch {
    let mut out = BytesMut::new();
    let rec = rmp_serde::to_vec_named(&serde_json::json!({"pad": "x".repeat(pad)})).unwrap();
    for _ in 0..n {
        write_entry(
            &mut out,
            EventTime {
                secs: 1_700_000_000,
                nanos: 0,
            },
            &rec,
        );
    }
    EventBatch {
        tag: "t".into(),
        entries: out.freeze(),
        count: n as u32,
        origin_chunk: None,
        segments: Vec::new(),
    }
}

fn cfg(dir: &std::path::Path) -> BufferConfig {
    let mut cfg = BufferConfig::defaults(BufferKind::File {
        path: Some(dir.to_path_buf()),
    });
    cfg.flush_interval = Duration::from_secs(3600);
    cfg.chunk_limit_size = 4096;
    cfg
}

fn mark(position: u64) -> SourceMark {
    SourceMark {
        key: "src\tfile".into(),
        position,
    }
}

#[tokio::test]
async fn marks_survive_restart_and_purge() {
    let dir = tempfile::tempdir().unwrap();
    let (buf, _) = Buffer::open(&cfg(dir.path()), None, "m").await.unwrap();
    assert!(buf.keeps_marks());
    buf.append_marked(&batch(3, 10), &mark(100)).await.unwrap();
    buf.append(&batch(2, 10)).await.unwrap();
    buf.append_marked(&batch(3, 10), &mark(250)).await.unwrap();
    drop(buf);

    let (buf, report) = Buffer::open(&cfg(dir.path()), None, "m").await.unwrap();
    assert_eq!(report.records, 8);
    assert_eq!(buf.recovered_marks().get("src\tfile"), Some(&250));
    // Delivering the chunk deletes its file; the position moves to the ledger first.
    let c = buf.dequeue().await.unwrap();
    assert_eq!(c.meta.records, 8);
    buf.purge(c.meta.id).await.unwrap();
    drop(buf);
    let (buf, report) = Buffer::open(&cfg(dir.path()), None, "m").await.unwrap();
    assert_eq!(report.chunks, 0);
    assert_eq!(buf.recovered_marks().get("src\tfile"), Some(&250));
}

#[tokio::test]
async fn a_marked_batch_is_never_split() {
    let dir = tempfile::tempdir().unwrap();
    let (buf, _) = Buffer::open(&cfg(dir.path()), None, "m").await.unwrap();
    // Larger than a chunk: refused as a whole, nothing written.
    let err = buf
        .append_marked(&batch(40, 200), &mark(1))
        .await
        .unwrap_err();
    assert!(matches!(err, BufferError::MarkSpansChunks { .. }), "{err}");
    assert_eq!(buf.stats().records, 0);
    // Fits a chunk but not the open one's room: a fresh chunk takes it whole.
    buf.append_marked(&batch(10, 200), &mark(2)).await.unwrap();
    buf.append_marked(&batch(10, 200), &mark(3)).await.unwrap();
    let stats = buf.stats();
    assert_eq!(stats.records, 20);
    assert_eq!(stats.staged_chunks + stats.queued_chunks, 2);
    drop(buf);
    let (buf, _) = Buffer::open(&cfg(dir.path()), None, "m").await.unwrap();
    assert_eq!(buf.recovered_marks().get("src\tfile"), Some(&3));
}
