//! Tests of the cluster storage against real RocksDB instances in temporary directories:
//! openraft's own storage suite, reopen-after-drop, apply semantics, and snapshots.

use super::storage::{open_storage, ChunkReader, LogStore, StateMachineStore, StoreOptions};
use super::{ClusterRequest, ClusterResponse, NodeId, TypeConfig};
use bytes::Bytes;
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    AnyError, BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftLogReader,
    RaftSnapshotBuilder, StorageError, StorageIOError, Vote,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use tempfile::TempDir;
use tokio::io::AsyncReadExt;

/// Stores with these options (default: the node's defaults).
#[derive(Default)]
struct TempStoreBuilder(StoreOptions);

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for TempStoreBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        let (log, sm) = open_storage(dir.path(), self.0.clone())
            .await
            .map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(TempStoreBuilder::default()).expect("openraft storage suite");
}

/// The suite again with the recent-entries cache on (`log_cache_size`, off by default): reads
/// served from it must agree with the log through appends, truncations and purges.
#[test]
fn openraft_storage_suite_with_the_log_cache() {
    let options = StoreOptions {
        log_cache: 1 << 20,
        ..StoreOptions::default()
    };
    Suite::test_all(TempStoreBuilder(options)).expect("openraft storage suite, log cache on");
}

fn log_id(term: u64, index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn request_entry(index: u64, request: ClusterRequest) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(1, index),
        payload: EntryPayload::Normal(request),
    }
}

fn append_chunk(origin: Option<&str>, tag: &str, payload: &[u8]) -> ClusterRequest {
    ClusterRequest::AppendChunk {
        origin: origin.map(|o| Bytes::copy_from_slice(o.as_bytes())),
        tag: tag.to_owned(),
        entries: Bytes::copy_from_slice(payload),
        count: 1,
        received_unix_ms: 1_700_000_000_000,
    }
}

/// A seal that also sends `key`, which the state machine must ignore (it derives the key).
fn seal(tag: &str, chunks: &[u64], key: &str) -> ClusterRequest {
    ClusterRequest::SealBatch {
        tag: tag.to_owned(),
        chunks: chunks.to_vec(),
        ignored_key: key.to_owned(),
        period_ms: None,
        uncompressed: false,
    }
}

/// The key the state machine derives for a batch of [`append_chunk`]s (received 2023-11-14).
fn derived_key(tag: &str, first: u64, last: u64) -> String {
    format!("{tag}/2023/11/14/{first:020}-{last:020}.log.gz")
}

fn membership_entry(index: u64, voters: &[NodeId]) -> Entry<TypeConfig> {
    let nodes: BTreeMap<NodeId, BasicNode> = voters
        .iter()
        .map(|&id| (id, BasicNode::new(format!("127.0.0.1:{}", 7000 + id))))
        .collect();
    let voter_set: BTreeSet<NodeId> = voters.iter().copied().collect();
    Entry {
        log_id: log_id(1, index),
        payload: EntryPayload::Membership(Membership::new(vec![voter_set], nodes)),
    }
}

/// Apply requests at consecutive indexes starting at `first` (one `apply` call).
async fn apply_at(
    sm: &mut StateMachineStore,
    first: u64,
    requests: Vec<ClusterRequest>,
) -> Vec<ClusterResponse> {
    let entries = requests
        .into_iter()
        .enumerate()
        .map(|(i, r)| request_entry(first + i as u64, r))
        .collect::<Vec<_>>();
    append_and_apply(sm, entries).await
}

/// What openraft does with committed entries: append them to the log, then apply them.
async fn append_and_apply(
    sm: &mut StateMachineStore,
    entries: Vec<Entry<TypeConfig>>,
) -> Vec<ClusterResponse> {
    sm.log_store_for_test()
        .blocking_append(entries.clone())
        .await
        .expect("append");
    sm.apply(entries).await.expect("apply")
}

async fn open(dir: &Path) -> (LogStore, StateMachineStore) {
    open_storage(dir, StoreOptions::default())
        .await
        .expect("open storage")
}

/// Everything the query API says, for comparing two stores.
async fn view(reader: &ChunkReader) -> String {
    let mut payloads = Vec::new();
    for chunk in reader.pending(None) {
        payloads.push((
            chunk.index,
            reader.chunk_entries(chunk.index).await.unwrap(),
        ));
    }
    for batch in reader.unconfirmed_batches() {
        for &index in &batch.chunks {
            payloads.push((index, reader.chunk_entries(index).await.unwrap()));
        }
    }
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        reader.pending(None),
        reader.pending_by_tag(),
        reader.unconfirmed_batches(),
        reader.upload_stats(),
        reader.applied_state(),
        payloads
    )
}

#[tokio::test]
async fn everything_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let before;
    {
        let (mut log, mut sm) = open(dir.path()).await;
        let entries = vec![
            membership_entry(1, &[1, 2, 3]),
            request_entry(2, append_chunk(Some("id-a"), "app.web", b"aaaa")),
            request_entry(3, append_chunk(Some("id-b"), "app.web", b"bbbb")),
            request_entry(4, append_chunk(None, "app.db", b"cccc")),
            request_entry(5, seal("app.web", &[2, 3], "app.web/2-3.msgpack.gz")),
        ];
        log.blocking_append(entries.clone()).await.unwrap();
        log.save_vote(&Vote::new_committed(1, 1)).await.unwrap();
        log.save_committed(Some(log_id(1, 5))).await.unwrap();
        let responses = sm.apply(entries).await.unwrap();
        assert_eq!(
            responses,
            vec![
                ClusterResponse::NoOp,
                ClusterResponse::Appended { index: 2 },
                ClusterResponse::Appended { index: 3 },
                ClusterResponse::Appended { index: 4 },
                ClusterResponse::Sealed { first: 2 },
            ]
        );
        before = view(&sm.reader()).await;
        log.purge(log_id(1, 1)).await.unwrap();
    }
    let (mut log, mut sm) = open(dir.path()).await;
    let entries = log.try_get_log_entries(0..).await.unwrap();
    assert_eq!(entries.len(), 4);
    assert_eq!(entries[0].log_id, log_id(1, 2));
    assert_eq!(entries[3].log_id, log_id(1, 5));
    assert_eq!(
        entries[3].payload,
        EntryPayload::Normal(seal("app.web", &[2, 3], "app.web/2-3.msgpack.gz"))
    );
    assert_eq!(
        log.read_vote().await.unwrap(),
        Some(Vote::new_committed(1, 1))
    );
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 5)));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(1, 5)));
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1)));

    let reader = sm.reader();
    assert_eq!(view(&reader).await, before);
    let (applied, membership) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 5)));
    assert_eq!(membership.log_id(), &Some(log_id(1, 1)));
    assert_eq!(
        membership.membership().get_node(&2),
        Some(&BasicNode::new("127.0.0.1:7002"))
    );
    assert_eq!(reader.pending(Some("app.db")).len(), 1);
    assert_eq!(reader.unconfirmed_batches()[0].chunks, vec![2, 3]);
    // The dedup window survived too.
    assert_eq!(
        apply_at(
            &mut sm,
            6,
            vec![append_chunk(Some("id-b"), "app.web", b"bbbb")]
        )
        .await,
        vec![ClusterResponse::Duplicate { index: 3 }]
    );
}

/// A chunk's payload is read from its log entry. A purge keeps the entries of chunks not yet
/// confirmed (below the purge point, invisible to openraft): they stay readable (after a reopen
/// too, and through a snapshot), and each goes when its chunk is confirmed.
#[tokio::test]
async fn payloads_of_unconfirmed_chunks_outlive_the_log_purge() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, mut sm) = open(dir.path()).await;
        apply_at(
            &mut sm,
            1,
            vec![
                append_chunk(Some("a"), "t", b"first"),
                append_chunk(Some("b"), "t", b"second"),
                append_chunk(Some("c"), "t", b"third"),
                seal("t", &[1], ""),
                ClusterRequest::ConfirmUpload { first: 1 },
            ],
        )
        .await;
        log.purge(log_id(1, 4)).await.unwrap();
        let left = log.try_get_log_entries(0..).await.unwrap();
        assert_eq!(left.len(), 1, "entries 1-4 are purged");
        assert_eq!(
            log.get_log_state().await.unwrap().last_log_id,
            Some(log_id(1, 5))
        );
        assert_eq!(
            sm.stored_log_indexes_for_test(),
            vec![2, 3, 5],
            "kept: 2 and 3"
        );
        let reader = sm.reader();
        assert_eq!(reader.chunk_entries(1).await.unwrap(), None);
        assert_eq!(
            reader.chunk_entries(2).await.unwrap().as_deref(),
            Some(&b"second"[..])
        );
    }
    let (mut log, mut sm) = open(dir.path()).await;
    let reader = sm.reader();
    assert_eq!(
        reader.chunk_entries(3).await.unwrap().as_deref(),
        Some(&b"third"[..])
    );
    // A snapshot carries them to a node that never saw the entries.
    sm.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let (mut log_b, mut sm_b) = open(dir_b.path()).await;
    // B kept an entry for a chunk of its own below its purge point; the install forgets it.
    apply_at(&mut sm_b, 1, vec![append_chunk(Some("z"), "old", b"old")]).await;
    log_b.purge(log_id(1, 1)).await.unwrap();
    assert_eq!(sm_b.stored_log_indexes_for_test(), vec![1]);
    transfer(&mut sm, &mut sm_b).await;
    assert!(sm_b.stored_log_indexes_for_test().is_empty());
    assert_eq!(view(&sm_b.reader()).await, view(&reader).await);
    assert_eq!(
        sm_b.reader().chunk_entries(2).await.unwrap().as_deref(),
        Some(&b"second"[..])
    );
    // Confirmed later, they are gone; a second purge finds nothing to move.
    apply_at(
        &mut sm,
        6,
        vec![
            seal("t", &[2, 3], ""),
            ClusterRequest::ConfirmUpload { first: 2 },
        ],
    )
    .await;
    assert_eq!(sm.stored_log_indexes_for_test(), vec![5, 6, 7]);
    log.purge(log_id(1, 7)).await.unwrap();
    assert!(sm.stored_log_indexes_for_test().is_empty());
    assert_eq!(
        log.get_log_state().await.unwrap().last_log_id,
        Some(log_id(1, 7))
    );
    assert_eq!(reader.chunk_entries(2).await.unwrap(), None);
    assert_eq!(reader.chunk_entries(3).await.unwrap(), None);
    assert!(reader.pending(None).is_empty());
}

#[tokio::test]
async fn duplicates_are_answered_with_the_first_index_and_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = open(dir.path()).await;
    let responses = apply_at(
        &mut sm,
        1,
        vec![
            append_chunk(Some("x"), "t", b"first"),
            append_chunk(Some("x"), "t", b"first"),
            append_chunk(None, "t", b"no id"),
            append_chunk(None, "t", b"no id"),
        ],
    )
    .await;
    assert_eq!(
        responses,
        vec![
            ClusterResponse::Appended { index: 1 },
            ClusterResponse::Duplicate { index: 1 },
            ClusterResponse::Appended { index: 3 },
            ClusterResponse::Appended { index: 4 },
        ]
    );
    // Across apply calls, and even after the chunk was uploaded and dropped.
    let responses = apply_at(
        &mut sm,
        5,
        vec![
            append_chunk(Some("x"), "t", b"first"),
            seal("t", &[1], "t/1"),
            ClusterRequest::ConfirmUpload { first: 1 },
            append_chunk(Some("x"), "t", b"first"),
        ],
    )
    .await;
    assert_eq!(
        responses,
        vec![
            ClusterResponse::Duplicate { index: 1 },
            ClusterResponse::Sealed { first: 1 },
            ClusterResponse::Confirmed { first: 1 },
            ClusterResponse::Duplicate { index: 1 },
        ]
    );
    let reader = sm.reader();
    let stored: Vec<u64> = reader.pending(None).iter().map(|c| c.index).collect();
    assert_eq!(stored, vec![3, 4]);
    assert_eq!(reader.chunk_entries(2).await.unwrap(), None);
    assert_eq!(reader.chunk_entries(1).await.unwrap(), None);
    assert_eq!(reader.remembered_origin(b"x"), Some(1));
    assert_eq!(reader.upload_stats().pending_bytes, 10);
}

#[tokio::test]
async fn chunk_ids_longer_than_the_limit_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = open(dir.path()).await;
    let long = "x".repeat(super::MAX_ORIGIN_LEN + 1);
    let responses = apply_at(&mut sm, 1, vec![append_chunk(Some(&long), "t", b"p")]).await;
    assert!(matches!(responses[0], ClusterResponse::Rejected(_)));
    assert!(sm.reader().pending(None).is_empty());
}

#[tokio::test]
async fn seal_and_confirm_follow_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = open(dir.path()).await;
    apply_at(
        &mut sm,
        1,
        vec![
            append_chunk(Some("a"), "t", b"11"),
            append_chunk(Some("b"), "t", b"222"),
            append_chunk(Some("c"), "t", b"3333"),
            append_chunk(Some("d"), "other", b"44444"),
        ],
    )
    .await;
    let reader = sm.reader();
    let responses = apply_at(
        &mut sm,
        5,
        vec![
            seal("t", &[1, 2], "t/1-2"),
            seal("t", &[2, 3], "t/2-3"),   // 2 already sealed
            seal("t", &[3, 99], "t/3-99"), // 99 unknown
            seal("t", &[3, 4], "t/3-4"),   // 4 has another tag
            seal("t", &[3, 3], "t/3-3"),   // not strictly ascending
            seal("t", &[], "t/empty"),     // empty
            ClusterRequest::ConfirmUpload { first: 3 }, // a pending chunk, not a batch
            ClusterRequest::ConfirmUpload { first: 42 }, // unknown batch
        ],
    )
    .await;
    assert_eq!(responses[0], ClusterResponse::Sealed { first: 1 });
    for (i, response) in responses[1..8].iter().enumerate() {
        assert!(
            matches!(response, ClusterResponse::Rejected(_)),
            "request {} answered {response:?}",
            i + 1
        );
    }

    let pending: Vec<u64> = reader.pending(None).iter().map(|c| c.index).collect();
    assert_eq!(pending, vec![3, 4]);
    assert_eq!(reader.pending(Some("t")).len(), 1);
    let batches = reader.unconfirmed_batches();
    assert_eq!(batches.len(), 1);
    assert_eq!(
        (
            batches[0].first,
            batches[0].object_key.clone(),
            batches[0].bytes
        ),
        (1, derived_key("t", 1, 2), 5)
    );
    assert!(batches[0].key_relative);
    assert_eq!(batches[0].sealed_at, 5);
    let stats = reader.upload_stats();
    assert_eq!(
        (
            stats.pending_chunks,
            stats.pending_bytes,
            stats.sealed_chunks,
            stats.sealed_bytes
        ),
        (2, 9, 2, 5)
    );
    assert_eq!(reader.pending_by_tag()["other"].bytes, 5);

    let responses = apply_at(
        &mut sm,
        13,
        vec![
            ClusterRequest::ConfirmUpload { first: 1 },
            ClusterRequest::ConfirmUpload { first: 1 },
            seal("t", &[1], "t/1"), // confirmed chunks cannot be sealed again
        ],
    )
    .await;
    assert_eq!(responses[0], ClusterResponse::Confirmed { first: 1 });
    // A second confirm is refused (and changes nothing).
    assert!(matches!(responses[1], ClusterResponse::Rejected(_)));
    assert!(matches!(responses[2], ClusterResponse::Rejected(_)));
    assert!(reader.unconfirmed_batches().is_empty());
    assert_eq!(reader.chunk_entries(1).await.unwrap(), None);
    assert_eq!(reader.chunk_entries(2).await.unwrap(), None);
    assert_eq!(
        reader.chunk_entries(3).await.unwrap(),
        Some(Bytes::from_static(b"3333"))
    );
    assert_eq!(reader.upload_stats().sealed_chunks, 0);
}

#[tokio::test]
async fn dedup_window_evicts_oldest_first_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        dedup_window: 3,
        ..StoreOptions::default()
    };
    {
        let (_log, mut sm) = open_storage(dir.path(), options.clone()).await.unwrap();
        let responses = apply_at(
            &mut sm,
            1,
            vec![
                append_chunk(Some("a"), "t", b"1"),
                append_chunk(Some("b"), "t", b"2"),
                append_chunk(Some("c"), "t", b"3"),
                append_chunk(Some("d"), "t", b"4"), // evicts a
                append_chunk(Some("b"), "t", b"2"), // still remembered
            ],
        )
        .await;
        assert_eq!(responses[4], ClusterResponse::Duplicate { index: 2 });
        let reader = sm.reader();
        assert_eq!(reader.remembered_origin(b"a"), None);
        assert_eq!(reader.upload_stats().remembered_ids, 3);
    }
    let (_log, mut sm) = open_storage(dir.path(), options).await.unwrap();
    let responses = apply_at(
        &mut sm,
        6,
        vec![
            append_chunk(Some("a"), "t", b"1"), // forgotten: stored again, evicts b
            append_chunk(Some("b"), "t", b"2"), // evicted by a: stored again, evicts c
            append_chunk(Some("d"), "t", b"4"), // remembered
        ],
    )
    .await;
    assert_eq!(
        responses,
        vec![
            ClusterResponse::Appended { index: 6 },
            ClusterResponse::Appended { index: 7 },
            ClusterResponse::Duplicate { index: 4 },
        ]
    );
    assert_eq!(sm.reader().remembered_origin(b"c"), None);
}

/// Build a state on a store: chunks of two tags, a sealed batch, a confirmed batch, membership.
async fn populate(sm: &mut StateMachineStore) {
    append_and_apply(sm, vec![membership_entry(1, &[1, 2, 3])]).await;
    let big = vec![7u8; 300 * 1024];
    apply_at(
        sm,
        2,
        vec![
            append_chunk(Some("a"), "web", &big),
            append_chunk(Some("b"), "web", b"small"),
            append_chunk(Some("c"), "db", b"db chunk"),
            append_chunk(Some("d"), "web", b"later"),
            seal("web", &[2, 3], "web/2-3"),
            seal("web", &[5], "web/5"),
            ClusterRequest::ConfirmUpload { first: 5 },
        ],
    )
    .await;
}

/// Copy a snapshot into a fresh receiving file of `to` and install it.
async fn transfer(from: &mut StateMachineStore, to: &mut StateMachineStore) {
    let mut snapshot = from
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("snapshot");
    let mut receiving = to.begin_receiving_snapshot().await.unwrap();
    tokio::io::copy(&mut snapshot.snapshot, &mut *receiving)
        .await
        .unwrap();
    to.install_snapshot(&snapshot.meta, receiving)
        .await
        .unwrap();
}

#[tokio::test]
async fn snapshot_round_trip_through_a_file() {
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let (_log_a, mut sm_a) = open(dir_a.path()).await;
    populate(&mut sm_a).await;

    let mut built = sm_a
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(built.meta.last_log_id, Some(log_id(1, 8)));
    // The snapshot is a file in the data directory, holding at least the big payload.
    let files: Vec<_> = std::fs::read_dir(dir_a.path().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(std::fs::metadata(&files[0]).unwrap().len() > 300 * 1024);
    let mut from_build = Vec::new();
    built.snapshot.read_to_end(&mut from_build).await.unwrap();
    assert_eq!(from_build, std::fs::read(&files[0]).unwrap());

    let (_log_b, mut sm_b) = open(dir_b.path()).await;
    // Some old state on B that the snapshot must replace.
    apply_at(&mut sm_b, 1, vec![append_chunk(Some("old"), "old", b"old")]).await;
    transfer(&mut sm_a, &mut sm_b).await;

    let expected = view(&sm_a.reader()).await;
    assert_eq!(view(&sm_b.reader()).await, expected);
    assert_eq!(sm_b.reader().remembered_origin(b"old"), None);
    assert_eq!(
        sm_b.get_current_snapshot().await.unwrap().unwrap().meta,
        built.meta
    );
    // The dedup window travelled with the snapshot.
    assert_eq!(
        apply_at(&mut sm_b, 9, vec![append_chunk(Some("d"), "web", b"later")]).await,
        vec![ClusterResponse::Duplicate { index: 5 }]
    );
    drop((_log_b, sm_b));

    // Reopened, B still has the installed state and the snapshot.
    let (_log_b, mut sm_b) = open(dir_b.path()).await;
    let reopened = sm_b
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("snapshot");
    assert_eq!(reopened.meta, built.meta);
    let reader = sm_b.reader();
    assert_eq!(
        reader.unconfirmed_batches(),
        sm_a.reader().unconfirmed_batches()
    );
    assert_eq!(reader.pending(None), sm_a.reader().pending(None));
    assert_eq!(
        reader.chunk_entries(2).await.unwrap().map(|b| b.len()),
        Some(300 * 1024)
    );
}

/// `DeadLetterBatch` is accepted only for a sealed, unconfirmed batch not yet dead-lettered;
/// the state machine derives the key; the record and the count survive a reopen and travel
/// with a snapshot; the batch is confirmed as usual.
#[tokio::test]
async fn dead_letters_survive_reopen_and_travel_with_snapshots() {
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let (log_a, mut sm_a) = open(dir_a.path()).await;
    // Indexes 1..=8: batch 2 (chunks 2, 3) sealed and unconfirmed, batch 5 confirmed, chunk 4
    // pending.
    populate(&mut sm_a).await;
    let dead_letter = |first: u64, reason: &str| ClusterRequest::DeadLetterBatch {
        first,
        reason: reason.to_string(),
    };
    let answers = apply_at(
        &mut sm_a,
        9,
        vec![
            dead_letter(2, "object store: 400 KeyTooLong"),
            dead_letter(2, "again"),
            dead_letter(5, "already confirmed"),
            dead_letter(4, "a pending chunk, not a batch"),
        ],
    )
    .await;
    assert_eq!(
        answers[0],
        ClusterResponse::DeadLettered {
            first: 2,
            object_key: "dead-letter/00000000000000000002-00000000000000000003.log.gz".into()
        }
    );
    assert!(
        answers[1..]
            .iter()
            .all(|a| matches!(a, ClusterResponse::Rejected(_))),
        "{answers:?}"
    );
    let batch = sm_a.reader().unconfirmed_batches()[0].clone();
    assert_eq!(batch.object_key, derived_key("web", 2, 3));
    assert_eq!(
        batch.dead_letter.expect("dead-lettered").reason,
        "object store: 400 KeyTooLong"
    );
    assert_eq!(sm_a.reader().upload_stats().dead_lettered_batches, 1);

    let expected = view(&sm_a.reader()).await;
    drop((log_a, sm_a));
    let (_log_a, mut sm_a) = open(dir_a.path()).await;
    assert_eq!(view(&sm_a.reader()).await, expected);

    sm_a.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let (_log_b, mut sm_b) = open(dir_b.path()).await;
    transfer(&mut sm_a, &mut sm_b).await;
    assert_eq!(view(&sm_b.reader()).await, expected);

    // Confirming the dead-lettered batch drops it; the count stays.
    apply_at(
        &mut sm_b,
        13,
        vec![ClusterRequest::ConfirmUpload { first: 2 }],
    )
    .await;
    assert!(sm_b.reader().unconfirmed_batches().is_empty());
    assert_eq!(sm_b.reader().upload_stats().dead_lettered_batches, 1);
}

#[tokio::test]
async fn a_corrupt_snapshot_is_refused_and_the_state_kept() {
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let (_log_a, mut sm_a) = open(dir_a.path()).await;
    populate(&mut sm_a).await;
    let built = sm_a
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let path = std::fs::read_dir(dir_a.path().join("snapshots"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;

    let (_log_b, mut sm_b) = open(dir_b.path()).await;
    apply_at(&mut sm_b, 1, vec![append_chunk(Some("mine"), "t", b"mine")]).await;
    let before = view(&sm_b.reader()).await;
    let mut receiving = sm_b.begin_receiving_snapshot().await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut *receiving, &bytes)
        .await
        .unwrap();
    assert!(sm_b.install_snapshot(&built.meta, receiving).await.is_err());
    assert_eq!(view(&sm_b.reader()).await, before);
    assert!(sm_b.get_current_snapshot().await.unwrap().is_none());
}

#[tokio::test]
async fn an_interrupted_install_is_finished_at_open() {
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let (_log_a, mut sm_a) = open(dir_a.path()).await;
    populate(&mut sm_a).await;
    sm_a.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let snap = std::fs::read_dir(dir_a.path().join("snapshots"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let name = snap.file_name().unwrap().to_str().unwrap().to_owned();

    {
        // B crashed mid-install: the file is in place, the marker written, the state-machine
        // CFs half replaced (here: the old state plus nothing of the new one).
        let (_log_b, mut sm_b) = open(dir_b.path()).await;
        apply_at(&mut sm_b, 1, vec![append_chunk(Some("old"), "old", b"old")]).await;
        std::fs::copy(&snap, dir_b.path().join("snapshots").join(&name)).unwrap();
        sm_b.write_install_marker_for_test(&name).unwrap();
    }
    let (_log_b, sm_b) = open(dir_b.path()).await;
    assert_eq!(view(&sm_b.reader()).await, view(&sm_a.reader()).await);
    assert_eq!(sm_b.reader().remembered_origin(b"old"), None);

    // A snapshot file newer than the applied state without a marker (crash before the marker)
    // is not taken as the current snapshot.
    let dir_c = tempfile::tempdir().unwrap();
    {
        let (_log_c, _sm_c) = open(dir_c.path()).await;
        std::fs::copy(&snap, dir_c.path().join("snapshots").join(&name)).unwrap();
    }
    let (_log_c, mut sm_c) = open(dir_c.path()).await;
    assert!(sm_c.get_current_snapshot().await.unwrap().is_none());
    assert!(sm_c.reader().pending(None).is_empty());
}

/// A `SealBatch` written by an older version (with the proposer's key as third field) still
/// decodes; the key it carries is ignored when applied.
#[tokio::test]
async fn an_old_seal_entry_decodes_and_its_key_is_ignored() {
    #[derive(serde::Serialize)]
    enum OldRequest {
        #[allow(dead_code)]
        AppendChunk,
        SealBatch {
            tag: String,
            chunks: Vec<u64>,
            object_key: String,
        },
    }
    let old = rmp_serde::to_vec(&OldRequest::SealBatch {
        tag: "t".into(),
        chunks: vec![1],
        object_key: "somebody-else/important.log.gz".into(),
    })
    .unwrap();
    let request: ClusterRequest = rmp_serde::from_slice(&old).unwrap();
    assert_eq!(request, seal("t", &[1], "somebody-else/important.log.gz"));

    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = open(dir.path()).await;
    let answers = apply_at(&mut sm, 1, vec![append_chunk(None, "t", b"1"), request]).await;
    assert_eq!(answers[1], ClusterResponse::Sealed { first: 1 });
    assert_eq!(
        sm.reader().unconfirmed_batches()[0].object_key,
        derived_key("t", 1, 1)
    );
}

/// A gzip seal is written exactly as before `uncompressed` existed (so older nodes still read
/// it); a plain one round-trips, and its batch's object and dead-letter keys end in `.log`.
#[tokio::test]
async fn a_plain_seal_gives_log_keys_and_a_gzip_seal_is_encoded_as_before() {
    #[derive(serde::Serialize)]
    enum Before {
        #[allow(dead_code)]
        AppendChunk,
        SealBatch {
            tag: String,
            chunks: Vec<u64>,
            ignored_key: String,
            period_ms: Option<u64>,
        },
    }
    let before = rmp_serde::to_vec(&Before::SealBatch {
        tag: "t".into(),
        chunks: vec![1],
        ignored_key: String::new(),
        period_ms: None,
    })
    .unwrap();
    assert_eq!(rmp_serde::to_vec(&seal("t", &[1], "")).unwrap(), before);

    let mut plain = seal("t", &[1], "");
    if let ClusterRequest::SealBatch { uncompressed, .. } = &mut plain {
        *uncompressed = true;
    }
    let bytes = rmp_serde::to_vec(&plain).unwrap();
    assert_eq!(
        rmp_serde::from_slice::<ClusterRequest>(&bytes).unwrap(),
        plain
    );
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = open(dir.path()).await;
    let dead = ClusterRequest::DeadLetterBatch {
        first: 1,
        reason: "refused".into(),
    };
    let answers = apply_at(&mut sm, 1, vec![append_chunk(None, "t", b"1"), plain, dead]).await;
    let plain_key = derived_key("t", 1, 1).replace(".log.gz", ".log");
    assert!(plain_key.ends_with("-00000000000000000001.log"));
    assert_eq!(sm.reader().unconfirmed_batches()[0].object_key, plain_key);
    assert!(!sm.reader().unconfirmed_batches()[0].gzip());
    assert_eq!(
        answers[2],
        ClusterResponse::DeadLettered {
            first: 1,
            object_key: "dead-letter/00000000000000000001-00000000000000000001.log".into()
        }
    );
}
