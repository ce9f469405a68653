//! The admin operations on a running node: [`status`], [`init`], [`add_learner`], [`promote`],
//! [`remove`], [`transfer_leader`] and [`trigger_snapshot`], on the node's [`NodeShared`], and
//! their error [`AdminError`]. [`super::grpc`] serves them and `ClusterNode` offers them.
//!
//! Owns the rules of those operations (leader-only checks that name the leader, waiting for a
//! learner to catch up before promoting it, leader transfer in openraft 0.9). It must not touch
//! storage, the wire protocol of Raft itself, gRPC statuses or CLI output.
//!
//! # Leader transfer in openraft 0.9
//!
//! openraft 0.9 has no `transfer_leader` (0.10 does). What is available is
//! `Raft::trigger().elect()` on the target, which makes it campaign at `term + 1`. Whether
//! that moves leadership depends on openraft's *leader lease* (`election_timeout_max`): a
//! voter whose vote is committed refuses any vote request until `election_timeout_max` has
//! passed since its vote was last updated or touched. Followers touch it on every heartbeat,
//! so a healthy leader's followers always refuse. The leader does not touch its own vote when
//! it sends heartbeats, so once it has led for longer than `election_timeout_max` it grants
//! its vote to an up-to-date candidate with a higher term (and steps down). Observed in
//! `net_tests` (3 nodes, lease 600 ms, openraft 0.9.25):
//!
//! - Campaign on the target ~100 ms after the leader was elected: both others refuse (lease).
//!   The target's higher term still reaches the leader in its next AppendEntries reply, so the
//!   leader steps down, and the next election is won by whichever up-to-date node's timer
//!   fires first: the old leader won it back. A second campaign ~1.2 s later succeeded.
//! - Campaign once the leader's own lease has expired: the leader grants, the target's own
//!   vote makes the majority of three, and the target leads at once.
//!
//! So [`transfer_leader`] (1) waits until the target has replicated the leader's
//! whole log (a campaign with a shorter log is refused), (2) waits until the leader's own vote
//! is older than the lease, (3) asks the target to campaign, and repeats (3) every two
//! election timeouts until the target leads, another node leads (an error: retry there), or
//! the timeout passes. With more than three voters one grant is not a majority: the first
//! campaign makes the leader step down and a later one, after the followers' leases ran out,
//! wins, or another up-to-date node does; the outcome is checked, not assumed. Either way the
//! cluster is without a leader for at most about one election timeout.

use crate::cluster::network::CallError;
use crate::cluster::node::{known_leader, NodeShared};
use crate::cluster::proto::admin_pb::{
    Member, MembershipReply, Role, StatusReply, TransferLeaderReply, TriggerSnapshotReply,
};
use crate::cluster::NodeId;
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, ChangeMembers, RaftMetrics, ServerState};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::time::Instant;
use tracing::info;

/// How long [`trigger_snapshot`] waits for the snapshot, and then for the purge.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(60);
const PURGE_WAIT: Duration = Duration::from_secs(5);

/// Why an admin operation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AdminError {
    /// The operation needs the leader and this node is not it.
    #[error("node {node} is not the leader; {}", leader_text(.leader))]
    NotLeader {
        node: NodeId,
        /// The leader's id and address, if known.
        leader: Option<(NodeId, String)>,
    },
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The cluster is not in a state that allows the operation.
    #[error("{0}")]
    Precondition(String),
    #[error("timed out: {0}")]
    Timeout(String),
    /// Raft failed or stopped.
    #[error("raft: {0}")]
    Raft(String),
}

fn leader_text(leader: &Option<(NodeId, String)>) -> String {
    match leader {
        Some((id, addr)) => format!("the leader is node {id} at {addr}"),
        None => "no leader is known (election in progress, or no quorum)".to_string(),
    }
}

type Metrics = RaftMetrics<NodeId, BasicNode>;

fn current_metrics(shared: &NodeShared) -> Metrics {
    shared.raft.metrics().borrow().clone()
}

fn not_leader(shared: &NodeShared, metrics: &Metrics) -> AdminError {
    let leader = known_leader(metrics);
    AdminError::NotLeader {
        node: shared.id,
        leader,
    }
}

/// The current metrics if this node is the leader, else `NotLeader` naming the leader.
fn require_leader(shared: &NodeShared) -> Result<Metrics, AdminError> {
    let metrics = current_metrics(shared);
    if metrics.current_leader == Some(shared.id) && metrics.state == ServerState::Leader {
        Ok(metrics)
    } else {
        Err(not_leader(shared, &metrics))
    }
}

/// Map a membership-change failure; `ForwardToLeader` becomes `NotLeader`.
fn write_error(
    shared: &NodeShared,
    error: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
) -> AdminError {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => AdminError::NotLeader {
            node: shared.id,
            leader: forward
                .leader_id
                .map(|id| (id, forward.leader_node.map(|n| n.addr).unwrap_or_default())),
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            AdminError::Precondition(e.to_string())
        }
        RaftError::Fatal(e) => AdminError::Raft(e.to_string()),
    }
}

/// Wait until `done(metrics)` holds, at most `timeout`. Returns the metrics that satisfied it.
async fn wait_metrics(
    shared: &NodeShared,
    timeout: Duration,
    what: &str,
    mut done: impl FnMut(&Metrics) -> bool,
) -> Result<Metrics, AdminError> {
    let deadline = Instant::now() + timeout;
    let mut rx = shared.raft.metrics();
    loop {
        {
            let metrics = rx.borrow_and_update();
            if done(&metrics) {
                return Ok(metrics.clone());
            }
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Err(_) => return Err(AdminError::Timeout(format!("{what} after {timeout:?}"))),
            Ok(Err(_)) => return Err(AdminError::Raft("raft stopped".to_string())),
            Ok(Ok(())) => {}
        }
    }
}

fn membership_reply(shared: &NodeShared, log_index: u64) -> MembershipReply {
    MembershipReply {
        log_index,
        members: members(&current_metrics(shared)),
    }
}

/// The members of the current membership config, with replication progress if `metrics` is
/// the leader's.
fn members(metrics: &Metrics) -> Vec<Member> {
    let membership = metrics.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let last = metrics.last_log_index;
    membership
        .nodes()
        .map(|(&id, node)| {
            let role = if metrics.current_leader == Some(id) {
                Role::Leader
            } else if voters.contains(&id) {
                Role::Voter
            } else {
                Role::Learner
            };
            let matched: Option<Option<u64>> =
                if id == metrics.id && metrics.state == ServerState::Leader {
                    Some(last)
                } else {
                    metrics
                        .replication
                        .as_ref()
                        .and_then(|r| r.get(&id))
                        .map(|m| m.map(|log_id| log_id.index))
                };
            let lag = matched.map(|m| last.unwrap_or(0).saturating_sub(m.unwrap_or(0)));
            Member {
                id,
                address: node.addr.clone(),
                role: role as i32,
                matched_index: matched.flatten(),
                lag,
            }
        })
        .collect()
}

/// Index up to which `id` has replicated the leader's log (leader metrics only).
fn matched_index(metrics: &Metrics, id: NodeId) -> Option<u64> {
    metrics
        .replication
        .as_ref()
        .and_then(|r| r.get(&id).cloned().flatten())
        .map(|log_id| log_id.index)
}

pub(crate) async fn status(shared: &NodeShared) -> StatusReply {
    let metrics = current_metrics(shared);
    let committed = shared
        .raft
        .with_raft_state(|state| state.committed.map(|id| id.index))
        .await
        .ok()
        .flatten();
    let leader_address = metrics
        .current_leader
        .and_then(|id| shared.node_addr(id))
        .unwrap_or_default();
    let stats = shared.reader.upload_stats();
    StatusReply {
        node_id: shared.id,
        address: shared.addr.clone(),
        // A stopped core keeps its last metrics: say so rather than show them as current.
        state: match shared.core_stopped() {
            Some(reason) => format!("RaftStopped ({reason})"),
            None => format!("{:?}", metrics.state),
        },
        term: metrics.current_term,
        leader_id: metrics.current_leader,
        leader_address,
        last_log_index: metrics.last_log_index,
        committed_index: committed,
        applied_index: metrics.last_applied.map(|id| id.index),
        snapshot_index: metrics.snapshot.map(|id| id.index),
        purged_index: metrics.purged.map(|id| id.index),
        members: members(&metrics),
        millis_since_quorum_ack: metrics.millis_since_quorum_ack,
        pending_chunks: stats.pending_chunks,
        pending_bytes: stats.pending_bytes,
        sealed_chunks: stats.sealed_chunks,
        sealed_bytes: stats.sealed_bytes,
        unconfirmed_batches: stats.unconfirmed_batches,
        remembered_ids: stats.remembered_ids,
        dead_lettered_batches: stats.dead_lettered_batches,
    }
}

pub(crate) async fn init(
    shared: &NodeShared,
    mut members: BTreeMap<NodeId, String>,
) -> Result<MembershipReply, AdminError> {
    if members.is_empty() {
        members.insert(shared.id, shared.addr.clone());
    }
    if !members.contains_key(&shared.id) {
        return Err(AdminError::Invalid(format!(
            "the initial members must include this node ({})",
            shared.id
        )));
    }
    let nodes: BTreeMap<NodeId, BasicNode> = members
        .into_iter()
        .map(|(id, addr)| (id, BasicNode::new(addr)))
        .collect();
    info!(node_id = shared.id, members = ?nodes, "initializing the cluster");
    shared.raft.initialize(nodes).await.map_err(|e| match e {
        RaftError::APIError(InitializeError::NotAllowed(e)) => {
            AdminError::Precondition(format!("already initialized: {e}"))
        }
        RaftError::APIError(InitializeError::NotInMembers(e)) => AdminError::Invalid(e.to_string()),
        RaftError::Fatal(e) => AdminError::Raft(e.to_string()),
    })?;
    Ok(membership_reply(shared, 0))
}

pub(crate) async fn add_learner(
    shared: &NodeShared,
    id: NodeId,
    addr: String,
) -> Result<MembershipReply, AdminError> {
    if addr.is_empty() {
        return Err(AdminError::Invalid(
            "the learner's address is empty".to_string(),
        ));
    }
    let metrics = require_leader(shared)?;
    if metrics
        .membership_config
        .membership()
        .voter_ids()
        .any(|v| v == id)
    {
        return Err(AdminError::Precondition(format!(
            "node {id} is already a voter"
        )));
    }
    info!(node_id = shared.id, learner = id, %addr, "adding a learner");
    let written = shared
        .raft
        .add_learner(id, BasicNode::new(addr), false)
        .await
        .map_err(|e| write_error(shared, e))?;
    Ok(membership_reply(shared, written.log_id.index))
}

pub(crate) async fn promote(
    shared: &NodeShared,
    id: NodeId,
    wait: Duration,
) -> Result<MembershipReply, AdminError> {
    let metrics = require_leader(shared)?;
    let membership = metrics.membership_config.membership();
    if membership.voter_ids().any(|v| v == id) {
        return Err(AdminError::Precondition(format!(
            "node {id} is already a voter"
        )));
    }
    if membership.get_node(&id).is_none() {
        return Err(AdminError::Precondition(format!(
            "node {id} is not a learner of this cluster: add it first"
        )));
    }
    // Caught up: it has replicated everything the leader had when asked.
    let target = metrics.last_log_index.unwrap_or(0);
    wait_metrics(
        shared,
        wait,
        &format!("learner {id} did not catch up to index {target}"),
        |m| m.state != ServerState::Leader || matched_index(m, id).unwrap_or(0) >= target,
    )
    .await?;
    require_leader(shared)?;
    info!(
        node_id = shared.id,
        learner = id,
        "promoting a learner to voter"
    );
    let written = shared
        .raft
        .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
        .await
        .map_err(|e| write_error(shared, e))?;
    Ok(membership_reply(shared, written.log_id.index))
}

pub(crate) async fn remove(shared: &NodeShared, id: NodeId) -> Result<MembershipReply, AdminError> {
    let metrics = require_leader(shared)?;
    let membership = metrics.membership_config.membership();
    let change = if membership.voter_ids().any(|v| v == id) {
        if membership.voter_ids().count() == 1 {
            return Err(AdminError::Precondition(format!(
                "node {id} is the only voter: a cluster cannot remove its last voter"
            )));
        }
        ChangeMembers::RemoveVoters(BTreeSet::from([id]))
    } else if membership.get_node(&id).is_some() {
        ChangeMembers::RemoveNodes(BTreeSet::from([id]))
    } else {
        return Err(AdminError::Precondition(format!(
            "node {id} is not a member"
        )));
    };
    info!(node_id = shared.id, removed = id, "removing a member");
    // retain = false: a removed voter leaves the cluster instead of staying as a learner.
    let written = shared
        .raft
        .change_membership(change, false)
        .await
        .map_err(|e| write_error(shared, e))?;
    shared.channels.forget(id);
    Ok(membership_reply(shared, written.log_id.index))
}

pub(crate) async fn transfer_leader(
    shared: &NodeShared,
    target: NodeId,
    timeout: Duration,
) -> Result<TransferLeaderReply, AdminError> {
    let metrics = require_leader(shared)?;
    if target == shared.id {
        return Ok(TransferLeaderReply {
            leader_id: shared.id,
            term: metrics.current_term,
            campaigns: 0,
        });
    }
    let membership = metrics.membership_config.membership();
    if !membership.voter_ids().any(|v| v == target) {
        return Err(AdminError::Precondition(format!(
            "node {target} is not a voter: only a voter can lead"
        )));
    }
    let target_addr = membership
        .get_node(&target)
        .map(|n| n.addr.clone())
        .unwrap_or_default();
    let deadline = Instant::now() + timeout;

    // 1. The target must hold the leader's whole log, or its campaign would be refused.
    let last = metrics.last_log_index.unwrap_or(0);
    wait_metrics(
        shared,
        timeout,
        &format!("node {target} did not catch up to index {last}"),
        |m| m.state != ServerState::Leader || matched_index(m, target).unwrap_or(0) >= last,
    )
    .await?;
    require_leader(shared)?;

    // 2. Wait until this leader's own lease has expired, so that it grants the target's vote.
    let lease = shared.election_timeout_max + Duration::from_millis(20);
    let vote_modified = shared
        .raft
        .with_raft_state(|state| state.vote_last_modified())
        .await
        .map_err(|e| AdminError::Raft(e.to_string()))?;
    if let Some(modified) = vote_modified {
        tokio::time::sleep_until((modified + lease).min(deadline)).await;
    }
    info!(
        node_id = shared.id,
        target,
        term = metrics.current_term,
        "transferring leadership"
    );

    // 3. Campaign on the target until it leads (see the module doc).
    let retry_every = shared.election_timeout_max * 2;
    let mut campaigns = 0;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(AdminError::Timeout(format!(
                "node {target} did not become the leader within {timeout:?} ({campaigns} campaigns)"
            )));
        }
        match shared
            .channels
            .start_election(
                target,
                &target_addr,
                (deadline - now).min(Duration::from_secs(1)),
            )
            .await
        {
            Ok(()) => campaigns += 1,
            Err(CallError::Timeout { .. }) => {}
            Err(error) => {
                return Err(AdminError::Precondition(format!(
                    "cannot ask node {target} to campaign: {error}"
                )))
            }
        }
        let until = (Instant::now() + retry_every).min(deadline);
        let outcome = wait_metrics(
            shared,
            until.saturating_duration_since(Instant::now()),
            "waiting for a leader",
            |m| m.current_leader.is_some_and(|l| l != shared.id),
        )
        .await;
        match outcome {
            Ok(m) if m.current_leader == Some(target) => {
                info!(
                    node_id = shared.id,
                    target,
                    term = m.current_term,
                    campaigns,
                    "leadership transferred"
                );
                return Ok(TransferLeaderReply {
                    leader_id: target,
                    term: m.current_term,
                    campaigns,
                });
            }
            Ok(m) => {
                let other = m.current_leader.unwrap_or_default();
                return Err(AdminError::Precondition(format!(
                    "leadership moved to node {other} (term {}) instead of node {target}; retry the transfer on node {other}",
                    m.current_term
                )));
            }
            // No other leader yet (or this node leads again): campaign again.
            Err(AdminError::Timeout(_)) => {}
            Err(other) => return Err(other),
        }
    }
}

pub(crate) async fn trigger_snapshot(
    shared: &NodeShared,
    purge: bool,
) -> Result<TriggerSnapshotReply, AdminError> {
    let applied = current_metrics(shared).last_applied.map(|id| id.index);
    let Some(applied) = applied else {
        return Err(AdminError::Precondition(
            "nothing applied yet: there is nothing to snapshot".to_string(),
        ));
    };
    shared
        .raft
        .trigger()
        .snapshot()
        .await
        .map_err(|e| AdminError::Raft(e.to_string()))?;
    let metrics = wait_metrics(
        shared,
        SNAPSHOT_WAIT,
        &format!("no snapshot up to index {applied}"),
        |m| m.snapshot.is_some_and(|s| s.index >= applied),
    )
    .await?;
    let snapshot_index = metrics.snapshot.map_or(0, |s| s.index);
    info!(node_id = shared.id, snapshot_index, "snapshot built");
    let mut purged_index = metrics.purged.map(|p| p.index);
    if purge {
        shared
            .raft
            .trigger()
            .purge_log(snapshot_index)
            .await
            .map_err(|e| AdminError::Raft(e.to_string()))?;
        // openraft may delay a purge while a replication stream still reads those entries;
        // report what is purged after a short wait rather than fail.
        let purged = wait_metrics(shared, PURGE_WAIT, "purge", |m| {
            m.purged.is_some_and(|p| p.index >= snapshot_index)
        })
        .await
        .map(|m| m.purged.map(|p| p.index))
        .unwrap_or_else(|_| current_metrics(shared).purged.map(|p| p.index));
        purged_index = purged;
    }
    Ok(TriggerSnapshotReply {
        snapshot_index,
        purged_index,
    })
}
