//! Tests of the cluster's network and admin layer: real [`ClusterNode`]s in one process, over
//! real loopback gRPC, with real RocksDB stores in temporary directories.

use super::admin::{format_status, AdminClient};
use super::node::ProposeError;
use super::proto::admin_pb::{Role, StatusReply};
use super::server::{ClusterNode, ClusterNodeConfig};
use super::{ClusterRequest, ClusterResponse, NodeId};
use bytes::Bytes;
use openraft::ServerState;
use std::collections::BTreeMap;
use std::time::Duration;
use tempfile::TempDir;
use tokio::time::Instant;

fn config(id: NodeId, dir: &TempDir) -> ClusterNodeConfig {
    let mut config = ClusterNodeConfig::new(
        id,
        "127.0.0.1:0".parse().expect("loopback address"),
        dir.path().join(format!("node-{id}")),
    );
    config.propose_timeout = Duration::from_secs(5);
    config
}

async fn start(id: NodeId, dir: &TempDir) -> ClusterNode {
    ClusterNode::start(config(id, dir))
        .await
        .expect("node starts")
}

/// Poll `check` until it returns `Some`, failing the test after `timeout`.
async fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The leader every given node agrees on.
async fn agreed_leader(nodes: &[&ClusterNode]) -> NodeId {
    wait_for(
        "all nodes agree on a leader",
        Duration::from_secs(10),
        || {
            let leaders: Vec<Option<NodeId>> = nodes
                .iter()
                .map(|n| n.raft().metrics().borrow().current_leader)
                .collect();
            let first = leaders[0]?;
            let leader_is_up = nodes.iter().any(|n| {
                n.id() == first && n.raft().metrics().borrow().state == ServerState::Leader
            });
            (leader_is_up && leaders.iter().all(|l| *l == Some(first))).then_some(first)
        },
    )
    .await
}

async fn wait_applied(nodes: &[&ClusterNode], index: u64) {
    wait_for(
        &format!("every node applied index {index}"),
        Duration::from_secs(10),
        || {
            nodes
                .iter()
                .all(|n| {
                    n.raft()
                        .metrics()
                        .borrow()
                        .last_applied
                        .is_some_and(|a| a.index >= index)
                })
                .then_some(())
        },
    )
    .await
}

fn chunk(origin: &str, entries: &'static [u8]) -> ClusterRequest {
    ClusterRequest::AppendChunk {
        origin: Some(Bytes::from(origin.to_string())),
        tag: "app.test".to_string(),
        entries: Bytes::from_static(entries),
        count: 1,
        received_unix_ms: 1_700_000_000_000,
    }
}

fn appended_index(response: ClusterResponse) -> u64 {
    match response {
        ClusterResponse::Appended { index } => index,
        other => panic!("expected Appended, got {other:?}"),
    }
}

fn member_role(status: &StatusReply, id: NodeId) -> Role {
    let member = status
        .members
        .iter()
        .find(|m| m.id == id)
        .unwrap_or_else(|| panic!("node {id} not in {status:?}"));
    Role::try_from(member.role).expect("known role")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_replicate_fail_over_and_grow_by_snapshot() {
    let dir = TempDir::new().expect("tempdir");
    let mut nodes: BTreeMap<NodeId, ClusterNode> = BTreeMap::new();
    for id in 1..=3 {
        nodes.insert(id, start(id, &dir).await);
    }
    let members: BTreeMap<NodeId, String> = nodes
        .iter()
        .map(|(&id, n)| (id, n.addr().to_string()))
        .collect();

    // Init through the admin API on node 1 → one leader, seen by all.
    let mut admin1 = AdminClient::connect(nodes[&1].addr())
        .await
        .expect("admin connects");
    admin1.init(members.clone()).await.expect("init");
    let all: Vec<&ClusterNode> = nodes.values().collect();
    let leader = agreed_leader(&all).await;
    let follower = *nodes.keys().find(|&&id| id != leader).expect("a follower");

    // A chunk proposed through a follower is forwarded, committed and applied everywhere.
    let first = appended_index(
        nodes[&follower]
            .propose(chunk("origin-1", b"\x92\x01\xa1a"))
            .await
            .expect("propose through a follower"),
    );
    wait_applied(&all, first).await;
    for node in nodes.values() {
        let stored = node
            .reader()
            .chunk_entries(first)
            .await
            .expect("read chunk");
        assert_eq!(
            stored.as_deref(),
            Some(&b"\x92\x01\xa1a"[..]),
            "node {}",
            node.id()
        );
    }

    // The same origin chunk again, this time on the leader: stored once.
    let again = nodes[&leader]
        .propose(chunk("origin-1", b"\x92\x01\xa1a"))
        .await
        .expect("propose a duplicate");
    assert_eq!(again, ClusterResponse::Duplicate { index: first });
    let last = nodes[&leader]
        .raft()
        .metrics()
        .borrow()
        .last_log_index
        .expect("log");
    wait_applied(&all, last).await;
    for node in nodes.values() {
        let stats = node.reader().upload_stats();
        assert_eq!(stats.pending_chunks, 1, "node {}: {stats:?}", node.id());
    }

    // Status on the leader: right leader, every member, lag known; on a follower: same leader.
    let mut leader_admin = AdminClient::connect(nodes[&leader].addr())
        .await
        .expect("connect");
    let status = wait_for_status(&mut leader_admin, |s| {
        s.members.iter().all(|m| m.lag == Some(0))
    })
    .await;
    assert_eq!(status.leader_id, Some(leader));
    assert_eq!(status.leader_address, nodes[&leader].addr());
    assert_eq!(status.members.len(), 3);
    assert_eq!(member_role(&status, leader), Role::Leader);
    assert_eq!(member_role(&status, follower), Role::Voter);
    assert_eq!(status.pending_chunks, 1);
    assert!(status.committed_index >= Some(first), "{status:?}");
    let table = format_status(&status);
    assert!(table.contains("leader"), "{table}");
    let mut follower_admin = AdminClient::connect(nodes[&follower].addr())
        .await
        .expect("connect");
    let follower_status = follower_admin.status().await.expect("status");
    assert_eq!(follower_status.leader_id, Some(leader));
    assert_eq!(follower_status.state, "Follower");

    // Leader-only admin calls on a follower name the leader.
    let refused = follower_admin
        .add_learner(9, "127.0.0.1:1".to_string())
        .await
        .expect_err("a follower cannot add learners");
    let expected = format!("the leader is node {leader} at {}", nodes[&leader].addr());
    assert!(refused.to_string().contains(&expected), "{refused}");
    assert_eq!(
        refused.leader(),
        Some((leader, nodes[&leader].addr().to_string()))
    );

    // Leader transfer (openraft 0.9: campaign on an up-to-date target; see admin.rs).
    let target = follower;
    let transfer_started = Instant::now();
    let transferred = leader_admin
        .transfer_leader(target, Duration::from_secs(10))
        .await
        .expect("leader transfer");
    assert_eq!(transferred.leader_id, target);
    // With the leader's own lease expired, its vote plus the target's is a majority of three.
    assert_eq!(transferred.campaigns, 1, "{transferred:?}");
    assert!(
        transfer_started.elapsed() < Duration::from_secs(3),
        "{:?}",
        transfer_started.elapsed()
    );
    let leader = agreed_leader(&all).await;
    assert_eq!(leader, target);

    // Shut the leader down: the other two elect a new one and proposing still works.
    drop(all);
    nodes.remove(&leader).expect("leader node").shutdown().await;
    let survivors: Vec<&ClusterNode> = nodes.values().collect();
    let new_leader = agreed_leader(&survivors).await;
    assert_ne!(new_leader, leader);
    let proposer = *nodes
        .keys()
        .find(|&&id| id != new_leader)
        .expect("a follower");
    let second = appended_index(
        nodes[&proposer]
            .propose(chunk("origin-2", b"\x92\x02\xa1b"))
            .await
            .expect("propose after fail-over"),
    );
    wait_applied(&survivors, second).await;

    // Snapshot and purge on the leader, so a new node can only catch up by snapshot.
    let mut leader_admin = AdminClient::connect(nodes[&new_leader].addr())
        .await
        .expect("connect");
    let snapshot = leader_admin.trigger_snapshot(true).await.expect("snapshot");
    assert!(snapshot.snapshot_index >= second, "{snapshot:?}");
    assert!(snapshot.purged_index >= Some(first), "{snapshot:?}");

    // A fourth node joins as a learner, catches up by snapshot, and is promoted.
    let fourth = start(4, &dir).await;
    leader_admin
        .add_learner(4, fourth.addr().to_string())
        .await
        .expect("add learner");
    let leader_applied = nodes[&new_leader]
        .raft()
        .metrics()
        .borrow()
        .last_applied
        .expect("applied")
        .index;
    wait_applied(&[&fourth], leader_applied).await;
    let installed = fourth.raft().metrics().borrow().snapshot;
    assert!(
        installed.is_some_and(|s| s.index >= snapshot.snapshot_index),
        "the learner caught up by snapshot: {installed:?}"
    );
    for index in [first, second] {
        let stored = fourth.reader().chunk_entries(index).await.expect("read");
        assert!(stored.is_some(), "chunk {index} reached the learner");
    }
    assert_eq!(fourth.reader().remembered_origin(b"origin-1"), Some(first));
    let promoted = leader_admin
        .promote(4, Duration::from_secs(10))
        .await
        .expect("promote");
    let role_of_4 = promoted.members.iter().find(|m| m.id == 4).map(|m| m.role);
    assert_eq!(role_of_4, Some(Role::Voter as i32), "{promoted:?}");
    let status = wait_for_status(&mut leader_admin, |s| {
        s.members.iter().any(|m| m.id == 4 && m.lag == Some(0))
    })
    .await;
    assert_eq!(member_role(&status, 4), Role::Voter);

    // Three of four voters are up: a quorum. A write through the new voter still commits.
    let third = appended_index(
        fourth
            .propose(chunk("origin-3", b"\x92\x03\xa1c"))
            .await
            .expect("propose through the promoted node"),
    );
    let mut everyone: Vec<&ClusterNode> = nodes.values().collect();
    everyone.push(&fourth);
    wait_applied(&everyone, third).await;

    fourth.shutdown().await;
    for (_, node) in nodes {
        node.shutdown().await;
    }
}

async fn wait_for_status(
    admin: &mut AdminClient,
    mut done: impl FnMut(&StatusReply) -> bool,
) -> StatusReply {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = admin.status().await.expect("status");
        if done(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "status never matched: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propose_without_a_leader_fails_in_bounded_time() {
    let dir = TempDir::new().expect("tempdir");
    let mut config = config(1, &dir);
    config.propose_timeout = Duration::from_millis(700);
    let node = ClusterNode::start(config).await.expect("node starts");
    let started = Instant::now();
    let error = node
        .propose(chunk("lonely", b"\x92\x01\xa1a"))
        .await
        .expect_err("an uninitialized node has no leader");
    assert!(matches!(error, ProposeError::NoLeader { .. }), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // Admin operations that need a leader say there is none.
    let mut admin = AdminClient::connect(node.addr()).await.expect("connect");
    let refused = admin.remove(2).await.expect_err("no leader");
    assert!(
        refused.to_string().contains("no leader is known"),
        "{refused}"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_without_quorum_times_out_instead_of_hanging() {
    let dir = TempDir::new().expect("tempdir");
    let mut nodes = Vec::new();
    for id in 1..=3 {
        let mut config = config(id, &dir);
        config.propose_timeout = Duration::from_secs(1);
        nodes.push(ClusterNode::start(config).await.expect("node starts"));
    }
    let members = nodes
        .iter()
        .map(|n| (n.id(), n.addr().to_string()))
        .collect();
    nodes[0].init(members).await.expect("init");
    let refs: Vec<&ClusterNode> = nodes.iter().collect();
    let leader = agreed_leader(&refs).await;
    drop(refs);
    let mut leader_node = None;
    for node in nodes {
        if node.id() == leader {
            leader_node = Some(node);
        } else {
            node.shutdown().await;
        }
    }
    let leader_node = leader_node.expect("leader kept");
    let started = Instant::now();
    let error = leader_node
        .propose(chunk("no-quorum", b"\x92\x01\xa1a"))
        .await
        .expect_err("no quorum");
    assert!(
        matches!(
            error,
            ProposeError::Timeout { .. } | ProposeError::NoLeader { .. }
        ),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    leader_node.shutdown().await;
}

/// A node whose Raft core stopped says so in its status instead of showing its last metrics
/// as current, and `core_stopped_wait` (what the process exits on) returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_raft_core_is_reported() {
    let dir = TempDir::new().expect("tempdir");
    let node = start(1, &dir).await;
    node.init(BTreeMap::new()).await.expect("init");
    assert!(node.shared().core_stopped().is_none());
    let mut admin = AdminClient::connect(node.addr()).await.expect("connect");
    let status = admin.status().await.expect("status");
    assert!(!status.state.starts_with("RaftStopped"), "{status:?}");

    node.raft().shutdown().await.expect("core stops");
    let why = tokio::time::timeout(Duration::from_secs(5), node.shared().core_stopped_wait())
        .await
        .expect("the stop is seen");
    assert!(!why.is_empty());
    let status = admin.status().await.expect("status");
    assert!(status.state.starts_with("RaftStopped"), "{status:?}");
    node.shutdown().await;
}
