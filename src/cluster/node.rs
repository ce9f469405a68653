//! What every part of a running node shares: [`NodeShared`] (id, address, Raft handle, state
//! machine reader, peer channels, timings), [`known_leader`], and [`propose`], which commits a
//! request through the log (the leader writes; a follower forwards a chunk to the leader, and
//! refuses any other request: only the leader's own uploader seals, confirms and dead-letters).
//!
//! A leaf of the running node: ingest, upload, the admin operations and the server use it, it
//! uses none of them. It must not start or stop anything (that is [`super::server`]) nor
//! implement admin operations (that is [`super::admin`]).

use super::compression::LogCompression;
use super::network::{CallError, ClientWriteRaftError, PeerChannels};
use super::proto::raft_pb::{ForwardedChunk, ForwardedSegment};
use super::storage::ChunkReader;
use super::tls::{ClusterTls, Gate};
use super::{ClusterRaft, ClusterRequest, ClusterResponse, NodeId};
use openraft::error::{ClientWriteError, RaftError};
use openraft::BasicNode;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::warn;

/// Why a proposal has no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProposeError {
    /// No leader was known for the whole wait: the cluster has no quorum or is electing.
    #[error("no leader elected within {waited:?} (no quorum, or an election in progress)")]
    NoLeader { waited: Duration },
    /// The leader did not answer in time. The request may or may not be committed: retry with
    /// the same origin chunk id, the state machine drops the duplicate.
    #[error(
        "no answer from the leader (node {leader:?}) within {waited:?}; the outcome is unknown"
    )]
    Timeout {
        leader: Option<NodeId>,
        waited: Duration,
    },
    /// This node's Raft stopped (shutdown or a storage failure).
    #[error("raft stopped: {0}")]
    Stopped(String),
    /// Raft refused the request for another reason.
    #[error("raft refused the write: {0}")]
    Refused(String),
    /// Only chunks are forwarded: this request is proposed by the leader itself.
    #[error("node {node} is not the leader (node {leader} is); only the leader proposes this")]
    NotLeader { node: NodeId, leader: NodeId },
}

/// What the gRPC services and admin operations share about the running node.
pub(crate) struct NodeShared {
    pub(crate) id: NodeId,
    pub(crate) addr: String,
    pub(crate) raft: ClusterRaft,
    pub(crate) reader: ChunkReader,
    pub(crate) channels: PeerChannels,
    /// This node's TLS identity (for its own admin calls, e.g. `join`); `None`: plaintext.
    pub(crate) tls: Option<Arc<ClusterTls>>,
    /// The per-call checks of the services on the cluster port.
    pub(crate) gate: Gate,
    /// How long [`propose`] may take, waiting for a leader included.
    pub(crate) propose_timeout: Duration,
    /// Appends proposed at once by ingest; those waiting meanwhile share an entry
    /// (`<cluster> proposals_in_flight`, see [`super::coalesce`]).
    pub(crate) proposals_in_flight: usize,
    /// How this node, as leader, writes chunk payloads into the log (see
    /// [`super::compression`]).
    pub(crate) log_compression: LogCompression,
    /// The leader lease (openraft's `election_timeout_max`), for leader transfers.
    pub(crate) election_timeout_max: Duration,
}

impl NodeShared {
    /// The address of node `id` in the current membership config.
    pub(crate) fn node_addr(&self, id: NodeId) -> Option<String> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        metrics
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
    }
}

impl NodeShared {
    /// Why this node's Raft core stopped, or `None` while it runs. The core sets
    /// `running_state` when it quits and drops its metrics sender when its task ends, also on
    /// a panic.
    pub(crate) fn core_stopped(&self) -> Option<String> {
        let metrics = self.raft.metrics();
        if let Err(fatal) = &metrics.borrow().running_state {
            return Some(fatal.to_string());
        }
        metrics
            .has_changed()
            .is_err()
            .then(|| "the raft core task ended".to_string())
    }

    /// Wait until this node's Raft core stops; why it stopped.
    pub(crate) async fn core_stopped_wait(&self) -> String {
        let mut metrics = self.raft.metrics();
        loop {
            if let Err(fatal) = &metrics.borrow_and_update().running_state {
                return fatal.to_string();
            }
            if metrics.changed().await.is_err() {
                return "the raft core task ended".to_string();
            }
        }
    }
}

/// The leader these metrics name, with its address from the membership (empty if unknown).
pub(crate) fn known_leader(
    metrics: &openraft::RaftMetrics<NodeId, BasicNode>,
) -> Option<(NodeId, String)> {
    metrics.current_leader.map(|id| {
        let addr = metrics
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
            .unwrap_or_default();
        (id, addr)
    })
}

/// Pause between attempts while leadership is moving.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Commit `request` through the cluster's log and return the state machine's answer.
///
/// On the leader this is `client_write`; on another node an `AppendChunk` is forwarded to the
/// leader (following `ForwardToLeader` hints as leadership moves) and any other request is
/// refused ([`ProposeError::NotLeader`]). Waits for a leader, but never longer than
/// `propose_timeout` in total.
pub(crate) async fn propose(
    shared: &NodeShared,
    request: ClusterRequest,
) -> Result<ClusterResponse, ProposeError> {
    let started = Instant::now();
    let timeout = shared.propose_timeout;
    let deadline = started + timeout;
    let mut metrics = shared.raft.metrics();
    // A leader named by a `ForwardToLeader` answer, newer than our metrics may be.
    let mut hinted: Option<(NodeId, String)> = None;
    let mut last_leader: Option<NodeId> = None;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(match last_leader {
                Some(leader) => ProposeError::Timeout {
                    leader: Some(leader),
                    waited: timeout,
                },
                None => ProposeError::NoLeader { waited: timeout },
            });
        }
        let remaining = deadline - now;
        let leader = match hinted.take() {
            Some(hint) => Some(hint),
            None => known_leader(&metrics.borrow_and_update()),
        };
        let Some((leader, leader_addr)) = leader else {
            // No leader known: wait for the metrics to change, at most until the deadline.
            let _ = tokio::time::timeout(remaining, metrics.changed()).await;
            continue;
        };
        last_leader = Some(leader);

        let answer: Result<ClusterResponse, ClientWriteRaftError> = if leader == shared.id {
            match tokio::time::timeout(
                remaining,
                shared
                    .raft
                    .client_write(shared.log_compression.compress(request.clone())),
            )
            .await
            {
                Ok(answer) => answer.map(|r| r.data),
                Err(_) => {
                    return Err(ProposeError::Timeout {
                        leader: Some(leader),
                        waited: timeout,
                    })
                }
            }
        } else {
            let Some(chunk) = forwarded_chunk(&request) else {
                return Err(ProposeError::NotLeader {
                    node: shared.id,
                    leader,
                });
            };
            match shared
                .channels
                .forward_chunk(leader, &leader_addr, chunk, remaining)
                .await
            {
                Ok(answer) => answer,
                Err(CallError::Timeout { .. }) => {
                    return Err(ProposeError::Timeout {
                        leader: Some(leader),
                        waited: timeout,
                    })
                }
                Err(error) => {
                    // The leader may be gone; wait for the cluster to notice.
                    warn!(node_id = shared.id, leader, %error, "forwarding a write failed; retrying");
                    tokio::time::sleep(RETRY_PAUSE.min(remaining)).await;
                    continue;
                }
            }
        };
        match answer {
            Ok(response) => return Ok(response),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                match (forward.leader_id, forward.leader_node) {
                    (Some(id), Some(BasicNode { addr, .. })) if id != leader => {
                        hinted = Some((id, addr));
                    }
                    _ => {
                        // Leadership is moving and nobody knows where yet.
                        tokio::time::sleep(RETRY_PAUSE.min(remaining)).await;
                    }
                }
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                return Err(ProposeError::Refused(e.to_string()))
            }
            Err(RaftError::Fatal(fatal)) if leader == shared.id => {
                return Err(ProposeError::Stopped(fatal.to_string()))
            }
            Err(RaftError::Fatal(fatal)) => {
                // The leader's Raft stopped (it is shutting down): another will be elected.
                warn!(node_id = shared.id, leader, %fatal, "leader's raft stopped; retrying");
                tokio::time::sleep(RETRY_PAUSE.min(remaining)).await;
            }
        }
    }
}

/// The wire form of an `AppendChunk` or `AppendSegments`, the requests a follower forwards;
/// `None` for others.
fn forwarded_chunk(request: &ClusterRequest) -> Option<ForwardedChunk> {
    match request {
        ClusterRequest::AppendChunk {
            origin,
            tag,
            entries,
            count,
            received_unix_ms,
        } => Some(ForwardedChunk {
            origin: origin.clone(),
            tag: tag.clone(),
            entries: entries.clone(),
            count: *count,
            received_unix_ms: *received_unix_ms,
            segments: Vec::new(),
        }),
        ClusterRequest::AppendSegments {
            tag,
            entries,
            segments,
            received_unix_ms,
        } => Some(ForwardedChunk {
            origin: None,
            tag: tag.clone(),
            entries: entries.clone(),
            count: segments.iter().map(|s| s.count).sum(),
            received_unix_ms: *received_unix_ms,
            segments: segments
                .iter()
                .map(|s| ForwardedSegment {
                    origin: s.origin.clone(),
                    len: s.len as u64,
                    count: s.count,
                })
                .collect(),
        }),
        _ => None,
    }
}
