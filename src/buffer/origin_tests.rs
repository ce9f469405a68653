//! Tests of origin ids in the buffer (see [`crate::origin`]): a labelled batch is stored whole
//! in one append with its id, survives the chunk file round trip, is cut only when larger than
//! a chunk (at places that depend on the batch alone, with part ids), and unlabelled appends
//! around it stay unlabelled.

use super::*;
use crate::buffer::config::{BufferConfig, BufferKind};
use crate::event::{write_entry, EntryIter, EventBatch, EventTime};
use crate::origin::{part_id, Segment};
use bytes::BytesMut;
use std::time::Duration;

/// Records `{"n": id}` for `ids`, at `secs`.
fn entries(ids: std::ops::Range<u64>, secs: u32) -> BytesMut {
    let mut out = BytesMut::new();
    for n in ids {
        let rec = rmp_serde::to_vec_named(&serde_json::json!({ "n": n })).unwrap();
        write_entry(&mut out, EventTime { secs, nanos: 0 }, &rec);
    }
    out
}

fn batch(ids: std::ops::Range<u64>, origin: Option<&'static str>) -> EventBatch {
    EventBatch {
        tag: "t".into(),
        count: (ids.end - ids.start) as u32,
        entries: entries(ids, 1_700_000_000).freeze(),
        origin_chunk: origin.map(|o| Bytes::from_static(o.as_bytes())),
        segments: Vec::new(),
    }
}

fn ids_of(entries: &[u8]) -> Vec<u64> {
    EntryIter::new(entries)
        .map(|e| {
            let v: serde_json::Value = rmp_serde::from_slice(e.unwrap().record).unwrap();
            v["n"].as_u64().unwrap()
        })
        .collect()
}

/// Every chunk's segments as (origin, record ids), in chunk order.
async fn drain_segments(buf: &Buffer) -> Vec<Vec<(Option<Bytes>, Vec<u64>)>> {
    buf.shutdown(true);
    let mut out = Vec::new();
    while let Some(c) = tokio::time::timeout(Duration::from_secs(5), buf.dequeue())
        .await
        .expect("dequeue hung")
    {
        let segments = if c.segments.is_empty() {
            vec![Segment {
                origin: None,
                len: c.entries.len(),
                count: c.meta.records as u32,
            }]
        } else {
            c.segments.clone()
        };
        let mut at = 0;
        let mut chunk = Vec::new();
        for s in segments {
            let ids = ids_of(&c.entries[at..at + s.len]);
            assert_eq!(ids.len() as u32, s.count);
            at += s.len;
            chunk.push((s.origin, ids));
        }
        assert_eq!(at, c.entries.len());
        buf.purge(c.meta.id).await.unwrap();
        out.push(chunk);
    }
    out
}

fn cfg(kind: BufferKind) -> BufferConfig {
    let mut cfg = BufferConfig::defaults(kind);
    cfg.flush_interval = Duration::from_secs(3600);
    cfg.chunk_limit_records = Some(10);
    cfg
}

fn some(id: &'static str) -> Option<Bytes> {
    Some(Bytes::from_static(id.as_bytes()))
}

#[tokio::test]
async fn labelled_batches_stay_whole_with_their_ids_in_file_and_memory_buffers() {
    let dir = tempfile::tempdir().unwrap();
    for kind in [
        BufferKind::File {
            path: Some(dir.path().to_path_buf()),
        },
        BufferKind::Memory,
    ] {
        let (buf, _) = Buffer::open(&cfg(kind), Some(dir.path().to_path_buf()), "test")
            .await
            .unwrap();
        buf.append(&batch(0..4, Some("a"))).await.unwrap();
        buf.append(&batch(4..6, None)).await.unwrap();
        buf.append(&batch(6..7, None)).await.unwrap();
        // 8 records do not fit the 4 left: the chunk is sealed, not the batch split.
        buf.append(&batch(7..15, Some("b"))).await.unwrap();
        // 25 records are more than a chunk takes: cut into 10, 10, 5 with part ids.
        buf.append(&batch(15..40, Some("c"))).await.unwrap();
        let c = Bytes::from_static(b"c");
        let part = |i| Some(part_id(&c, i, 3));
        assert_eq!(
            drain_segments(&buf).await,
            vec![
                vec![(some("a"), (0..4).collect()), (None, (4..7).collect())],
                vec![(some("b"), (7..15).collect())],
                vec![(part(0), (15..25).collect())],
                vec![(part(1), (25..35).collect())],
                vec![(part(2), (35..40).collect())],
            ]
        );
    }
}

#[tokio::test]
async fn labelled_segments_of_a_forwarded_batch_and_timekey_cuts() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = cfg(BufferKind::File {
        path: Some(dir.path().to_path_buf()),
    });
    cfg.timekey = Some(Duration::from_secs(3600));
    cfg.chunk_limit_records = None;
    let (buf, _) = Buffer::open(&cfg, Some(dir.path().to_path_buf()), "test")
        .await
        .unwrap();
    // A batch from another forwarder: segment "x" (2 events in one hour, 1 in the next),
    // then "y" (2 events in the first hour).
    let mut e = entries(0..2, 1_700_000_000);
    e.extend_from_slice(&entries(2..3, 1_700_003_600));
    let x_len = e.len();
    e.extend_from_slice(&entries(3..5, 1_700_000_000));
    let b = EventBatch {
        tag: "t".into(),
        count: 5,
        segments: vec![
            Segment {
                origin: some("x"),
                len: x_len,
                count: 3,
            },
            Segment {
                origin: some("y"),
                len: e.len() - x_len,
                count: 2,
            },
        ],
        entries: e.freeze(),
        origin_chunk: some("frame"),
    };
    buf.append(&b).await.unwrap();
    let x = Bytes::from_static(b"x");
    let mut chunks = drain_segments(&buf).await;
    chunks.sort_by_key(|c| c[0].1[0]);
    assert_eq!(
        chunks,
        vec![
            vec![
                (Some(part_id(&x, 0, 2)), vec![0, 1]),
                (some("y"), vec![3, 4]),
            ],
            vec![(Some(part_id(&x, 1, 2)), vec![2])],
        ]
    );
}

#[tokio::test]
async fn a_buffer_that_does_not_keep_origins_stores_labelled_batches_as_plain_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = cfg(BufferKind::File {
        path: Some(dir.path().to_path_buf()),
    });
    cfg.keep_origins = false;
    let (buf, _) = Buffer::open(&cfg, Some(dir.path().to_path_buf()), "test")
        .await
        .unwrap();
    buf.append(&batch(0..4, Some("a"))).await.unwrap();
    // Split to fill the chunk, as an unlabelled batch would be.
    buf.append(&batch(4..12, Some("b"))).await.unwrap();
    assert_eq!(
        drain_segments(&buf).await,
        vec![
            vec![(None, (0..10).collect())],
            vec![(None, (10..12).collect())]
        ]
    );
}
