//! The admin API of a cluster node: status and membership operations ([`ClusterNode`]'s
//! `status`, `init`, `add_learner`, `promote`, `remove`, `transfer_leader`,
//! `trigger_snapshot`), their gRPC service ([`AdminGrpc`]) and the client the CLI uses
//! ([`AdminClient`]).
//!
//! Owns the rules of those operations (leader-only checks that name the leader, waiting for a
//! learner to catch up before promoting it, leader transfer in openraft 0.9). It must not touch
//! storage or the wire protocol of Raft itself.
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
//! So [`ClusterNode::transfer_leader`] (1) waits until the target has replicated the leader's
//! whole log (a campaign with a shorter log is refused), (2) waits until the leader's own vote
//! is older than the lease, (3) asks the target to campaign, and repeats (3) every two
//! election timeouts until the target leads, another node leads (an error: retry there), or
//! the timeout passes. With more than three voters one grant is not a majority: the first
//! campaign makes the leader step down and a later one, after the followers' leases ran out,
//! wins, or another up-to-date node does; the outcome is checked, not assumed. Either way the
//! cluster is without a leader for at most about one election timeout.

use super::network::CallError;
use super::proto::admin_pb::{
    cluster_admin_client::ClusterAdminClient, cluster_admin_server::ClusterAdmin,
    AddLearnerRequest, InitRequest, Member, MembershipReply, NodeAddress, PromoteRequest,
    RemoveRequest, Role, StatusReply, StatusRequest, TransferLeaderReply, TransferLeaderRequest,
    TriggerSnapshotReply, TriggerSnapshotRequest,
};
use super::server::{ClusterNode, NodeShared};
use super::NodeId;
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, ChangeMembers, RaftMetrics, ServerState};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tracing::info;

/// Default wait for a learner to catch up before it is promoted.
const DEFAULT_PROMOTE_WAIT: Duration = Duration::from_secs(30);
/// Default time a leader transfer may take.
const DEFAULT_TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`ClusterNode::trigger_snapshot`] waits for the snapshot, and then for the purge.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(60);
const PURGE_WAIT: Duration = Duration::from_secs(5);

/// gRPC metadata naming the leader on a "not the leader" error.
pub const LEADER_ID_METADATA: &str = "lograft-leader-id";
pub const LEADER_ADDR_METADATA: &str = "lograft-leader-addr";

/// Why an admin operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
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

impl From<AdminError> for Status {
    fn from(error: AdminError) -> Status {
        let message = error.to_string();
        match error {
            AdminError::NotLeader { leader, .. } => {
                let mut status = Status::failed_precondition(message);
                if let Some((id, addr)) = leader {
                    let metadata = status.metadata_mut();
                    metadata.insert(LEADER_ID_METADATA, MetadataValue::from(id));
                    if let Ok(value) = addr.parse() {
                        metadata.insert(LEADER_ADDR_METADATA, value);
                    }
                }
                status
            }
            AdminError::Invalid(_) => Status::invalid_argument(message),
            AdminError::Precondition(_) => Status::failed_precondition(message),
            AdminError::Timeout(_) => Status::deadline_exceeded(message),
            AdminError::Raft(_) => Status::unavailable(message),
        }
    }
}

type Metrics = RaftMetrics<NodeId, BasicNode>;

impl NodeShared {
    fn metrics(&self) -> Metrics {
        self.raft.metrics().borrow().clone()
    }

    fn not_leader(&self, metrics: &Metrics) -> AdminError {
        let leader = super::server::known_leader(metrics);
        AdminError::NotLeader {
            node: self.id,
            leader,
        }
    }

    /// The current metrics if this node is the leader, else `NotLeader` naming the leader.
    fn require_leader(&self) -> Result<Metrics, AdminError> {
        let metrics = self.metrics();
        if metrics.current_leader == Some(self.id) && metrics.state == ServerState::Leader {
            Ok(metrics)
        } else {
            Err(self.not_leader(&metrics))
        }
    }

    /// Map a membership-change failure; `ForwardToLeader` becomes `NotLeader`.
    fn write_error(
        &self,
        error: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
    ) -> AdminError {
        match error {
            RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
                AdminError::NotLeader {
                    node: self.id,
                    leader: forward
                        .leader_id
                        .map(|id| (id, forward.leader_node.map(|n| n.addr).unwrap_or_default())),
                }
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                AdminError::Precondition(e.to_string())
            }
            RaftError::Fatal(e) => AdminError::Raft(e.to_string()),
        }
    }

    /// Wait until `done(metrics)` holds, at most `timeout`. Returns the metrics that satisfied it.
    async fn wait_metrics(
        &self,
        timeout: Duration,
        what: &str,
        mut done: impl FnMut(&Metrics) -> bool,
    ) -> Result<Metrics, AdminError> {
        let deadline = Instant::now() + timeout;
        let mut rx = self.raft.metrics();
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

    fn membership_reply(&self, log_index: u64) -> MembershipReply {
        MembershipReply {
            log_index,
            members: members(&self.metrics()),
        }
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

impl ClusterNode {
    /// This node's view of the cluster (replication progress only on the leader).
    pub async fn status(&self) -> StatusReply {
        status(self.shared()).await
    }

    /// Initialize a new cluster with these voters (`id → address`); empty: this node alone.
    pub async fn init(
        &self,
        members: BTreeMap<NodeId, String>,
    ) -> Result<MembershipReply, AdminError> {
        init(self.shared(), members).await
    }

    /// Add node `id` at `addr` as a learner (leader only). Returns without waiting for it to
    /// catch up; the membership entry's log index is returned.
    pub async fn add_learner(
        &self,
        id: NodeId,
        addr: String,
    ) -> Result<MembershipReply, AdminError> {
        add_learner(self.shared(), id, addr).await
    }

    /// Make learner `id` a voter once its log has caught up with the leader's (waits at most
    /// `wait`).
    pub async fn promote(&self, id: NodeId, wait: Duration) -> Result<MembershipReply, AdminError> {
        promote(self.shared(), id, wait).await
    }

    /// Remove voter or learner `id` from the cluster (leader only).
    pub async fn remove(&self, id: NodeId) -> Result<MembershipReply, AdminError> {
        remove(self.shared(), id).await
    }

    /// Move leadership to voter `target` (see the module doc). Returns the new leader's id
    /// and term.
    pub async fn transfer_leader(
        &self,
        target: NodeId,
        timeout: Duration,
    ) -> Result<TransferLeaderReply, AdminError> {
        transfer_leader(self.shared(), target, timeout).await
    }

    /// Build a snapshot on this node now, and with `purge` drop the log it covers.
    pub async fn trigger_snapshot(&self, purge: bool) -> Result<TriggerSnapshotReply, AdminError> {
        trigger_snapshot(self.shared(), purge).await
    }
}

async fn status(shared: &NodeShared) -> StatusReply {
    let metrics = shared.metrics();
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
        state: format!("{:?}", metrics.state),
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
    }
}

async fn init(
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
    Ok(shared.membership_reply(0))
}

async fn add_learner(
    shared: &NodeShared,
    id: NodeId,
    addr: String,
) -> Result<MembershipReply, AdminError> {
    if addr.is_empty() {
        return Err(AdminError::Invalid(
            "the learner's address is empty".to_string(),
        ));
    }
    let metrics = shared.require_leader()?;
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
        .map_err(|e| shared.write_error(e))?;
    Ok(shared.membership_reply(written.log_id.index))
}

async fn promote(
    shared: &NodeShared,
    id: NodeId,
    wait: Duration,
) -> Result<MembershipReply, AdminError> {
    let metrics = shared.require_leader()?;
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
    shared
        .wait_metrics(
            wait,
            &format!("learner {id} did not catch up to index {target}"),
            |m| m.state != ServerState::Leader || matched_index(m, id).unwrap_or(0) >= target,
        )
        .await?;
    shared.require_leader()?;
    info!(
        node_id = shared.id,
        learner = id,
        "promoting a learner to voter"
    );
    let written = shared
        .raft
        .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
        .await
        .map_err(|e| shared.write_error(e))?;
    Ok(shared.membership_reply(written.log_id.index))
}

async fn remove(shared: &NodeShared, id: NodeId) -> Result<MembershipReply, AdminError> {
    let metrics = shared.require_leader()?;
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
        .map_err(|e| shared.write_error(e))?;
    shared.channels.forget(id);
    Ok(shared.membership_reply(written.log_id.index))
}

async fn transfer_leader(
    shared: &NodeShared,
    target: NodeId,
    timeout: Duration,
) -> Result<TransferLeaderReply, AdminError> {
    let metrics = shared.require_leader()?;
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
    shared
        .wait_metrics(
            timeout,
            &format!("node {target} did not catch up to index {last}"),
            |m| m.state != ServerState::Leader || matched_index(m, target).unwrap_or(0) >= last,
        )
        .await?;
    shared.require_leader()?;

    // 2. Wait until this leader's own lease has expired, so that it grants the target's vote.
    let lease = shared.config.election_timeout_max + Duration::from_millis(20);
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
    let retry_every = shared.config.election_timeout_max * 2;
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
        let outcome = shared
            .wait_metrics(
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

async fn trigger_snapshot(
    shared: &NodeShared,
    purge: bool,
) -> Result<TriggerSnapshotReply, AdminError> {
    let applied = shared.metrics().last_applied.map(|id| id.index);
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
    let metrics = shared
        .wait_metrics(
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
        let purged = shared
            .wait_metrics(PURGE_WAIT, "purge", |m| {
                m.purged.is_some_and(|p| p.index >= snapshot_index)
            })
            .await
            .map(|m| m.purged.map(|p| p.index))
            .unwrap_or_else(|_| shared.metrics().purged.map(|p| p.index));
        purged_index = purged;
    }
    Ok(TriggerSnapshotReply {
        snapshot_index,
        purged_index,
    })
}

/// The admin gRPC service: the operations above, errors as gRPC statuses.
pub struct AdminGrpc {
    shared: Arc<NodeShared>,
}

impl AdminGrpc {
    pub(crate) fn new(shared: Arc<NodeShared>) -> Self {
        AdminGrpc { shared }
    }
}

fn millis_or(ms: u64, default: Duration) -> Duration {
    if ms == 0 {
        default
    } else {
        Duration::from_millis(ms)
    }
}

#[tonic::async_trait]
impl ClusterAdmin for AdminGrpc {
    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusReply>, Status> {
        Ok(Response::new(status(&self.shared).await))
    }

    async fn init(
        &self,
        request: Request<InitRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        let members = request
            .into_inner()
            .members
            .into_iter()
            .map(|m| (m.id, m.address))
            .collect();
        Ok(Response::new(init(&self.shared, members).await?))
    }

    async fn add_learner(
        &self,
        request: Request<AddLearnerRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        let r = request.into_inner();
        Ok(Response::new(
            add_learner(&self.shared, r.id, r.address).await?,
        ))
    }

    async fn promote(
        &self,
        request: Request<PromoteRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        let r = request.into_inner();
        let wait = millis_or(r.wait_ms, DEFAULT_PROMOTE_WAIT);
        Ok(Response::new(promote(&self.shared, r.id, wait).await?))
    }

    async fn remove(
        &self,
        request: Request<RemoveRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        Ok(Response::new(
            remove(&self.shared, request.into_inner().id).await?,
        ))
    }

    async fn transfer_leader(
        &self,
        request: Request<TransferLeaderRequest>,
    ) -> Result<Response<TransferLeaderReply>, Status> {
        let r = request.into_inner();
        let timeout = millis_or(r.timeout_ms, DEFAULT_TRANSFER_TIMEOUT);
        Ok(Response::new(
            transfer_leader(&self.shared, r.target_id, timeout).await?,
        ))
    }

    async fn trigger_snapshot(
        &self,
        request: Request<TriggerSnapshotRequest>,
    ) -> Result<Response<TriggerSnapshotReply>, Status> {
        Ok(Response::new(
            trigger_snapshot(&self.shared, request.into_inner().purge).await?,
        ))
    }
}

/// Failure of an admin call from the client side.
#[derive(Debug, thiserror::Error)]
pub enum AdminClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: tonic::transport::Error,
    },
    /// The node answered with an error; the message names the leader when that matters.
    #[error("{}", .0.message())]
    Status(#[from] Status),
}

impl AdminClientError {
    /// The leader named by a "not the leader" answer, if any.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let AdminClientError::Status(status) = self else {
            return None;
        };
        let metadata = status.metadata();
        let id = metadata
            .get(LEADER_ID_METADATA)?
            .to_str()
            .ok()?
            .parse()
            .ok()?;
        let addr = metadata
            .get(LEADER_ADDR_METADATA)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        Some((id, addr))
    }
}

/// Admin client for one node (the CLI's `lograft cluster ...`).
pub struct AdminClient {
    client: ClusterAdminClient<Channel>,
}

impl AdminClient {
    /// Connect to the node at `addr` (`host:port` or `http://host:port`).
    pub async fn connect(addr: &str) -> Result<AdminClient, AdminClientError> {
        let uri = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("http://{addr}")
        };
        let connect_error = |source| AdminClientError::Connect {
            addr: addr.to_string(),
            source,
        };
        let channel = tonic::transport::Endpoint::from_shared(uri)
            .map_err(connect_error)?
            .connect_timeout(Duration::from_secs(3))
            .connect()
            .await
            .map_err(connect_error)?;
        Ok(AdminClient {
            client: ClusterAdminClient::new(channel),
        })
    }

    pub async fn status(&mut self) -> Result<StatusReply, AdminClientError> {
        Ok(self.client.status(StatusRequest {}).await?.into_inner())
    }

    pub async fn init(
        &mut self,
        members: BTreeMap<NodeId, String>,
    ) -> Result<MembershipReply, AdminClientError> {
        let members = members
            .into_iter()
            .map(|(id, address)| NodeAddress { id, address })
            .collect();
        Ok(self
            .client
            .init(InitRequest { members })
            .await?
            .into_inner())
    }

    pub async fn add_learner(
        &mut self,
        id: NodeId,
        address: String,
    ) -> Result<MembershipReply, AdminClientError> {
        Ok(self
            .client
            .add_learner(AddLearnerRequest { id, address })
            .await?
            .into_inner())
    }

    pub async fn promote(
        &mut self,
        id: NodeId,
        wait: Duration,
    ) -> Result<MembershipReply, AdminClientError> {
        Ok(self
            .client
            .promote(PromoteRequest {
                id,
                wait_ms: wait.as_millis() as u64,
            })
            .await?
            .into_inner())
    }

    pub async fn remove(&mut self, id: NodeId) -> Result<MembershipReply, AdminClientError> {
        Ok(self.client.remove(RemoveRequest { id }).await?.into_inner())
    }

    pub async fn transfer_leader(
        &mut self,
        target_id: NodeId,
        timeout: Duration,
    ) -> Result<TransferLeaderReply, AdminClientError> {
        Ok(self
            .client
            .transfer_leader(TransferLeaderRequest {
                target_id,
                timeout_ms: timeout.as_millis() as u64,
            })
            .await?
            .into_inner())
    }

    pub async fn trigger_snapshot(
        &mut self,
        purge: bool,
    ) -> Result<TriggerSnapshotReply, AdminClientError> {
        Ok(self
            .client
            .trigger_snapshot(TriggerSnapshotRequest { purge })
            .await?
            .into_inner())
    }
}

/// Render a status as the CLI's table.
pub fn format_status(status: &StatusReply) -> String {
    use std::fmt::Write;
    let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    let mut out = String::new();
    let leader = match status.leader_id {
        Some(id) => format!("{id} ({})", status.leader_address),
        None => "none".to_string(),
    };
    let _ = writeln!(
        out,
        "node {} at {}: {}, term {}, leader {}",
        status.node_id, status.address, status.state, status.term, leader
    );
    let _ = writeln!(
        out,
        "log: last {}, committed {}, applied {}, snapshot {}, purged {}",
        opt(status.last_log_index),
        opt(status.committed_index),
        opt(status.applied_index),
        opt(status.snapshot_index),
        opt(status.purged_index)
    );
    let _ = writeln!(
        out,
        "upload: {} pending chunks ({} bytes), {} sealed chunks ({} bytes) in {} batches, {} remembered ids",
        status.pending_chunks,
        status.pending_bytes,
        status.sealed_chunks,
        status.sealed_bytes,
        status.unconfirmed_batches,
        status.remembered_ids
    );
    let _ = writeln!(
        out,
        "{:>6}  {:<24} {:<8} {:>10} {:>8}",
        "ID", "ADDRESS", "ROLE", "MATCHED", "LAG"
    );
    for m in &status.members {
        let role = match Role::try_from(m.role).unwrap_or(Role::Unspecified) {
            Role::Leader => "leader",
            Role::Voter => "voter",
            Role::Learner => "learner",
            Role::Unspecified => "?",
        };
        let _ = writeln!(
            out,
            "{:>6}  {:<24} {:<8} {:>10} {:>8}",
            m.id,
            m.address,
            role,
            opt(m.matched_index),
            opt(m.lag)
        );
    }
    if status.state != "Leader" {
        let _ = writeln!(out, "(replication progress is known only on the leader)");
    }
    out
}

/// The status as JSON, for `--json`.
pub fn status_json(status: &StatusReply) -> serde_json::Value {
    let members: Vec<serde_json::Value> = status
        .members
        .iter()
        .map(|m| {
            serde_json::json!({
                "id": m.id,
                "address": m.address,
                "role": Role::try_from(m.role).unwrap_or(Role::Unspecified).as_str_name(),
                "matched_index": m.matched_index,
                "lag": m.lag,
            })
        })
        .collect();
    serde_json::json!({
        "node_id": status.node_id,
        "address": status.address,
        "state": status.state,
        "term": status.term,
        "leader_id": status.leader_id,
        "leader_address": status.leader_address,
        "last_log_index": status.last_log_index,
        "committed_index": status.committed_index,
        "applied_index": status.applied_index,
        "snapshot_index": status.snapshot_index,
        "purged_index": status.purged_index,
        "millis_since_quorum_ack": status.millis_since_quorum_ack,
        "members": members,
        "pending_chunks": status.pending_chunks,
        "pending_bytes": status.pending_bytes,
        "sealed_chunks": status.sealed_chunks,
        "sealed_bytes": status.sealed_bytes,
        "unconfirmed_batches": status.unconfirmed_batches,
        "remembered_ids": status.remembered_ids,
    })
}
