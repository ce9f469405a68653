//! Coalescing appends: the chunks that concurrent emits want committed while earlier proposals
//! are still in flight travel together as one `AppendSegments` log entry.
//!
//! Why: openraft 0.9 writes (and fsyncs) the leader's log once per proposed entry, one entry at
//! a time, so with one entry per chunk the leader's fsyncs bound the cluster's rate. Here at
//! most `in_flight` proposals are outstanding; the appends that arrive meanwhile wait and then
//! go as one entry (of at most [`MAX_MERGED_BYTES`], one tag; a larger chunk goes alone), each
//! keeping its dedup id as a segment, so the state machine still stores a resent client chunk
//! once. Once merged, the appends' own copies of their events are dropped (a refused entry is
//! cut back into them), so a merge does not hold the events twice. Every waiting emit
//! gets the combined entry's answer (`Appended` or `Duplicate`: both mean committed). An
//! entry the state machine refuses is proposed again chunk by chunk, so one bad chunk never
//! fails the others; an append that waited longer than the propose timeout is answered with a
//! timeout without being proposed.
//!
//! Owns the queue, the in-flight limit and the merging. It must not decide what a chunk's
//! segments are (that is `ingest`) nor talk to the leader itself (that is `node::propose`).

use super::node::{self, NodeShared, ProposeError};
use super::{ClusterRequest, ClusterResponse};
use crate::origin::{push_run, Segment};
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Default of `<cluster> proposals_in_flight`.
pub const DEFAULT_PROPOSALS_IN_FLIGHT: usize = 2;

/// Largest merged entry. Merging pays by sparing fsyncs, and a few chunks per entry spare most
/// of them; larger entries would only make every copy on the way (log, AppendEntries, each
/// follower's log) larger, and the nodes' memory with it. A chunk this large or larger is
/// proposed alone, as it came (ingest keeps it within `MAX_ENTRY_BYTES`).
pub const MAX_MERGED_BYTES: usize = 1024 * 1024;

/// One append waiting to be proposed.
struct Waiting {
    /// `AppendChunk` or `AppendSegments`.
    request: ClusterRequest,
    queued: Instant,
    answer: oneshot::Sender<Result<ClusterResponse, ProposeError>>,
}

/// The handle ingest proposes appends through; the merging task runs until every handle is
/// dropped.
#[derive(Clone)]
pub(crate) struct Coalescer {
    queue: mpsc::UnboundedSender<Waiting>,
}

impl Coalescer {
    /// Start the merging task: at most `in_flight` (≥ 1) proposals outstanding at once.
    pub(crate) fn start(shared: Arc<NodeShared>, in_flight: usize) -> Self {
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(run(shared, waiting, in_flight.max(1)));
        Coalescer { queue }
    }

    /// Commit an `AppendChunk` or `AppendSegments` request, possibly in one entry with others
    /// (any other request is proposed alone). The answer is the entry's.
    pub(crate) async fn propose(
        &self,
        shared: &NodeShared,
        request: ClusterRequest,
    ) -> Result<ClusterResponse, ProposeError> {
        if request.payload().is_none() {
            return node::propose(shared, request).await;
        }
        let (answer, answered) = oneshot::channel();
        let waiting = Waiting {
            request,
            queued: Instant::now(),
            answer,
        };
        if let Err(mpsc::error::SendError(back)) = self.queue.send(waiting) {
            // The task ended (runtime shutting down): propose directly.
            return node::propose(shared, back.request).await;
        }
        answered
            .await
            .unwrap_or_else(|_| Err(ProposeError::Stopped("append queue closed".into())))
    }
}

/// Take appends off the queue whenever a proposal slot is free, merging what waits.
async fn run(
    shared: Arc<NodeShared>,
    mut waiting: mpsc::UnboundedReceiver<Waiting>,
    in_flight: usize,
) {
    let slots = Arc::new(Semaphore::new(in_flight));
    // An append that did not fit the previous entry (another tag, or too large): next first.
    let mut carried: Option<Waiting> = None;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let first = match carried.take() {
            Some(w) => w,
            None => match waiting.recv().await {
                Some(w) => w,
                None => return,
            },
        };
        let tag = tag_of(&first.request).to_string();
        let mut bytes = payload_len(&first.request);
        let mut group = vec![first];
        while bytes < MAX_MERGED_BYTES {
            let Ok(next) = waiting.try_recv() else { break };
            let len = payload_len(&next.request);
            if tag_of(&next.request) != tag || bytes + len > MAX_MERGED_BYTES {
                carried = Some(next);
                break;
            }
            bytes += len;
            group.push(next);
        }
        let shared = shared.clone();
        tokio::spawn(async move {
            commit_group(&shared, group).await;
            drop(slot);
        });
    }
}

/// Propose `group` as one entry (or its only request as it is) and answer every member.
async fn commit_group(shared: &NodeShared, group: Vec<Waiting>) {
    let timeout = shared.propose_timeout;
    let (late, mut group): (Vec<_>, Vec<_>) = group
        .into_iter()
        .partition(|w| w.queued.elapsed() >= timeout);
    for w in late {
        let _ = w.answer.send(Err(ProposeError::Timeout {
            leader: None,
            waited: timeout,
        }));
    }
    if group.len() <= 1 {
        for w in group {
            let answer = node::propose(shared, w.request).await;
            let _ = w.answer.send(answer);
        }
        return;
    }
    let (merged, events, ranges) = merge(&mut group);
    let answer = node::propose(shared, merged).await;
    if let Ok(ClusterResponse::Rejected(_)) = answer {
        // Refused as a whole: find out which chunk it is, each alone (concurrently), with its
        // events cut back out of the merged ones.
        let alone = group.into_iter().zip(ranges).map(|(mut w, range)| {
            set_payload(&mut w.request, events.slice(range));
            async move {
                let answer = node::propose(shared, w.request).await;
                let _ = w.answer.send(answer);
            }
        });
        futures_util::future::join_all(alone).await;
        return;
    }
    for w in group {
        let _ = w.answer.send(answer.clone());
    }
}

/// One `AppendSegments` carrying every request of `group` (same tag) in order, received at the
/// earliest of their times; its events; and where each request's events lie in them. The
/// requests keep no events of their own afterwards (see [`set_payload`]).
fn merge(group: &mut [Waiting]) -> (ClusterRequest, Bytes, Vec<std::ops::Range<usize>>) {
    let len: usize = group.iter().map(|w| payload_len(&w.request)).sum();
    let mut entries = BytesMut::with_capacity(len);
    let mut segments: Vec<Segment> = Vec::new();
    let mut ranges = Vec::with_capacity(group.len());
    let mut received = u64::MAX;
    for w in group.iter_mut() {
        let start = entries.len();
        match &mut w.request {
            ClusterRequest::AppendChunk {
                origin,
                entries: e,
                count,
                received_unix_ms,
                ..
            } => {
                entries.extend_from_slice(e);
                push_run(&mut segments, origin.clone(), e.len(), *count);
                received = received.min(*received_unix_ms);
                *e = Bytes::new();
            }
            ClusterRequest::AppendSegments {
                entries: e,
                segments: s,
                received_unix_ms,
                ..
            } => {
                entries.extend_from_slice(e);
                for segment in s.iter() {
                    push_run(
                        &mut segments,
                        segment.origin.clone(),
                        segment.len,
                        segment.count,
                    );
                }
                received = received.min(*received_unix_ms);
                *e = Bytes::new();
            }
            // `propose` queues appends only.
            _ => unreachable!("only appends are queued"),
        }
        ranges.push(start..entries.len());
    }
    let entries = entries.freeze();
    let merged = ClusterRequest::AppendSegments {
        tag: tag_of(&group[0].request).to_string(),
        entries: entries.clone(),
        segments,
        received_unix_ms: received,
    };
    (merged, entries, ranges)
}

/// Give an append its events back (after [`merge`] took them).
fn set_payload(request: &mut ClusterRequest, events: Bytes) {
    if let Some(entries) = request.payload_mut() {
        *entries = events;
    }
}

fn tag_of(request: &ClusterRequest) -> &str {
    match request {
        ClusterRequest::AppendChunk { tag, .. } | ClusterRequest::AppendSegments { tag, .. } => tag,
        _ => "",
    }
}

fn payload_len(request: &ClusterRequest) -> usize {
    request.payload().map_or(0, Bytes::len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::server::{ClusterNode, ClusterNodeConfig};
    use std::collections::BTreeMap;
    use std::time::Duration;

    /// One `[time, record]` entry: `[1, {"k": "v"}]`.
    const ENTRY: &[u8] = &[0x92, 0x01, 0x81, 0xa1, b'k', 0xa1, b'v'];

    async fn single_node(dir: &std::path::Path) -> ClusterNode {
        let config = ClusterNodeConfig::new(1, "127.0.0.1:0".parse().unwrap(), dir.join("n1"));
        let node = ClusterNode::start(config).await.expect("node starts");
        node.init(BTreeMap::new()).await.expect("init");
        for _ in 0..500 {
            if node.raft().metrics().borrow().current_leader == Some(1) {
                return node;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the node did not become leader");
    }

    fn chunk(tag: &str, origin: Option<&[u8]>, events: usize) -> ClusterRequest {
        ClusterRequest::AppendChunk {
            origin: origin.map(Bytes::copy_from_slice),
            tag: tag.to_string(),
            entries: Bytes::from(ENTRY.repeat(events)),
            count: events as u32,
            received_unix_ms: 1_000,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_appends_share_an_entry_and_a_bad_one_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let node = single_node(dir.path()).await;
        let shared = node.shared().clone();
        // One proposal at a time: everything queued behind the first goes together.
        let coalescer = Coalescer::start(shared.clone(), 1);
        let mut requests = Vec::new();
        for i in 0..40u8 {
            requests.push(chunk("a", Some(&[b'o', i]), 1 + i as usize % 3));
        }
        // A resend of a chunk among them, a chunk of another tag, an unlabelled chunk and one
        // whose id the state machine refuses (longer than MAX_ORIGIN_LEN).
        requests.push(chunk("a", Some(b"o\x05"), 3));
        requests.push(chunk("b", Some(b"other-tag"), 2));
        requests.push(chunk("a", None, 2));
        requests.push(chunk("a", Some(&[b'x'; 65]), 1));
        let answers = futures_util::future::join_all(
            requests.into_iter().map(|r| coalescer.propose(&shared, r)),
        )
        .await;
        let (bad, good) = answers.split_last().unwrap();
        assert!(
            matches!(bad, Ok(ClusterResponse::Rejected(_))),
            "the bad chunk is refused: {bad:?}"
        );
        for a in good {
            assert!(
                matches!(
                    a,
                    Ok(ClusterResponse::Appended { .. } | ClusterResponse::Duplicate { .. })
                ),
                "{a:?}"
            );
        }
        let pending = shared.reader.pending(None);
        let events: u32 = pending.iter().map(|c| c.count).sum();
        // 40 chunks of 1..=3 events (the resend stored once), 2 + 2 more.
        let expected: u32 = (0..40u32).map(|i| 1 + i % 3).sum::<u32>() + 4;
        assert_eq!(events, expected, "{pending:?}");
        assert!(
            pending.len() < 10,
            "{} entries for 43 appends: they were not merged",
            pending.len()
        );
        assert!(pending.iter().any(|c| c.tag == "b"));
        // Each stored entry holds exactly the bytes of its events, every id is remembered.
        for c in &pending {
            let stored = shared
                .reader
                .chunk_entries_blocking(c.index)
                .unwrap()
                .unwrap();
            assert_eq!(stored.len(), ENTRY.len() * c.count as usize);
        }
        for i in 0..40u8 {
            assert!(shared.reader.remembered_origin(&[b'o', i]).is_some());
        }
        // Ingest answers a resend from the state machine before queueing it: only when every
        // chunk of it is already stored.
        use crate::cluster::ingest::stored_already;
        let stored = shared.reader.remembered_origin(b"o\x07").unwrap();
        assert_eq!(
            stored_already(&shared.reader, &chunk("a", Some(b"o\x07"), 1)),
            Some(stored)
        );
        assert_eq!(
            stored_already(&shared.reader, &chunk("a", Some(b"new"), 1)),
            None
        );
        assert_eq!(stored_already(&shared.reader, &chunk("a", None, 1)), None);
        let segments = |ids: &[&[u8]]| ClusterRequest::AppendSegments {
            tag: "a".into(),
            entries: Bytes::from(ENTRY.repeat(ids.len())),
            segments: ids
                .iter()
                .map(|id| Segment {
                    origin: Some(Bytes::copy_from_slice(id)),
                    len: ENTRY.len(),
                    count: 1,
                })
                .collect(),
            received_unix_ms: 1_000,
        };
        assert!(stored_already(&shared.reader, &segments(&[b"o\x01", b"o\x02"])).is_some());
        assert_eq!(
            stored_already(&shared.reader, &segments(&[b"o\x01", b"new"])),
            None
        );
        node.shutdown().await;
    }
}
