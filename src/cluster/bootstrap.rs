//! Bootstrap: how a node with a `<cluster>` section gets into its cluster, and the guard
//! against rejoining under an old identity after losing its disk.
//!
//! A node's data directory holds an identity file written (and fsynced) before the node first
//! serves Raft. Its absence means "never been a member with this directory":
//! - with `<member>`s: if a listed peer already has a cluster that contains this node's id, the
//!   directory was lost (the node voted and stored chunks before) — rejoining as if nothing
//!   happened would break Raft's vote safety, so [`check_identity`] refuses to start and says
//!   how to come back as a new node. Otherwise the lowest listed id initializes the cluster
//!   once every member answers and none has a cluster yet; the others wait to be contacted.
//! - with `join`: the node asks the cluster (any member; "not the leader" answers are followed)
//!   to add it as a learner, and waits until it is in the membership.
//!
//! Owns only these decisions. It must not change membership beyond initialize/add-learner
//! (promotion and removal are admin operations) nor touch the Raft storage.

use super::admin::{AdminClient, AdminClientError};
use super::server::ClusterNode;
use super::tls::ClusterTls;
use super::NodeId;
use crate::cluster::config::ClusterConfig;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The identity file in a node's data directory.
pub const IDENTITY_FILE: &str = "node-identity";

/// How often an unfinished bootstrap tries again.
const RETRY: Duration = Duration::from_secs(1);
/// How long an attempt waits for the membership to reach this node before trying again.
const MEMBERSHIP_WAIT: Duration = Duration::from_secs(5);
/// How often it says it is still waiting.
const REPORT_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(
        "data directory {dir} has no node identity, but node {id} is already a member of the cluster \
         (according to node {peer} at {peer_addr}): this node's disk was lost or wiped. Rejoining under \
         id {id} would break Raft's vote safety. Start it as a new node instead: give it an unused \
         node_id, replace its <member> sections with `join {peer_addr}`, start it, then run \
         `lograft cluster replace --node {peer_addr} --old {id} --new <new id>` (see README, \
         \"Replacing a node after disk loss\")"
    )]
    DiskLost {
        id: NodeId,
        dir: PathBuf,
        peer: NodeId,
        peer_addr: String,
    },
    #[error(
        "data directory {dir} belongs to node {found}, but the config says node_id {configured}; \
         a data directory must not change identity"
    )]
    WrongIdentity {
        dir: PathBuf,
        found: String,
        configured: NodeId,
    },
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("stopped before the node joined a cluster")]
    Stopped,
}

/// Whether this data directory has served as node `id` before. Errors when it belongs to
/// another id.
pub fn has_identity(data_dir: &Path, id: NodeId) -> Result<bool, BootstrapError> {
    let path = data_dir.join(IDENTITY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let found = text.trim();
            if found == format!("node_id {id}") {
                Ok(true)
            } else {
                Err(BootstrapError::WrongIdentity {
                    dir: data_dir.to_path_buf(),
                    found: found.to_string(),
                    configured: id,
                })
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(BootstrapError::Io { path, source }),
    }
}

/// Before a node without identity serves Raft: refuse if a listed peer already counts this
/// node's id as a member (the disk was lost). Unreachable peers are skipped — they cannot
/// contact this node either until it serves.
pub async fn check_identity(
    cfg: &ClusterConfig,
    data_dir: &Path,
    tls: Option<&Arc<ClusterTls>>,
) -> Result<(), BootstrapError> {
    for peer in cfg.members.iter().filter(|m| m.id != cfg.node_id) {
        let Ok(mut client) = AdminClient::connect_with(&peer.address, tls).await else {
            continue;
        };
        let Ok(status) = client.status().await else {
            continue;
        };
        if status.members.iter().any(|m| m.id == cfg.node_id) {
            return Err(BootstrapError::DiskLost {
                id: cfg.node_id,
                dir: data_dir.to_path_buf(),
                peer: peer.id,
                peer_addr: peer.address.clone(),
            });
        }
    }
    Ok(())
}

/// Record that this directory is node `id`'s (fsynced, with its directory).
pub fn write_identity(data_dir: &Path, id: NodeId) -> Result<(), BootstrapError> {
    let path = data_dir.join(IDENTITY_FILE);
    let io = |source| BootstrapError::Io {
        path: path.clone(),
        source,
    };
    crate::durable_fs::create_dir_all_durably(data_dir).map_err(io)?;
    let tmp = data_dir.join(format!("{IDENTITY_FILE}.tmp"));
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    writeln!(file, "node_id {id}").map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    std::fs::File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(io)
}

/// Bring a node that has no cluster yet into one (see the module doc). Returns at once when
/// the node already has a membership.
pub async fn join_cluster(
    node: &ClusterNode,
    cfg: &ClusterConfig,
    stop: &CancellationToken,
) -> Result<(), BootstrapError> {
    let mut last_report = tokio::time::Instant::now();
    let mut last_added: Option<tokio::time::Instant> = None;
    loop {
        if in_membership(node) {
            return Ok(());
        }
        let waiting = if let Some(target) = &cfg.join {
            let recently_added = last_added.is_some_and(|t| t.elapsed() < MEMBERSHIP_WAIT);
            if recently_added {
                "replication from the leader".to_string()
            } else {
                match ask_to_join(node, target).await {
                    Ok(waiting) => {
                        last_added = Some(tokio::time::Instant::now());
                        waiting
                    }
                    Err(waiting) => waiting,
                }
            }
        } else {
            initialize_if_lowest(node, cfg).await
        };
        if in_membership(node) {
            return Ok(());
        }
        if last_report.elapsed() >= REPORT_EVERY {
            info!(node_id = node.id(), %waiting, "waiting to join the cluster");
            last_report = tokio::time::Instant::now();
        }
        // Wait for the membership to arrive (or the next attempt is due).
        let mut metrics = node.raft().metrics();
        let deadline = tokio::time::Instant::now() + RETRY;
        while !in_membership(node) {
            tokio::select! {
                _ = stop.cancelled() => return Err(BootstrapError::Stopped),
                _ = tokio::time::sleep_until(deadline) => break,
                changed = metrics.changed() => {
                    if changed.is_err() {
                        // Raft stopped; the node is going down.
                        return Err(BootstrapError::Stopped);
                    }
                }
            }
        }
    }
}

fn in_membership(node: &ClusterNode) -> bool {
    let metrics = node.raft().metrics();
    let m = metrics.borrow();
    let found = m
        .membership_config
        .membership()
        .nodes()
        .any(|(id, _)| *id == node.id());
    found
}

/// `join`: ask `target` (following "not the leader" answers) to add this node as a learner.
/// `Ok` once added; either way, says what is being waited for.
async fn ask_to_join(node: &ClusterNode, target: &str) -> Result<String, String> {
    let mut addr = target.to_string();
    for _ in 0..3 {
        let result = match AdminClient::connect_with(&addr, node.shared().tls.as_ref()).await {
            Ok(mut client) => client.add_learner(node.id(), node.addr().to_string()).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(_) => {
                info!(node_id = node.id(), via = %addr, "added to the cluster as a learner");
                return Ok("replication from the leader".into());
            }
            Err(e) => match e.leader() {
                Some((_, leader_addr)) if !leader_addr.is_empty() && leader_addr != addr => {
                    addr = leader_addr;
                }
                _ => return Err(format!("the cluster at {target} ({e})")),
            },
        }
    }
    Err(format!("a leader (asked {target})"))
}

/// `<member>`s: the lowest id initializes once every member answers and none has a cluster.
async fn initialize_if_lowest(node: &ClusterNode, cfg: &ClusterConfig) -> String {
    if node.raft().is_initialized().await.unwrap_or(false) {
        return "the membership to be applied".into();
    }
    let lowest = cfg
        .members
        .iter()
        .map(|m| m.id)
        .min()
        .unwrap_or(cfg.node_id);
    if lowest != cfg.node_id {
        return format!("node {lowest} to initialize the cluster");
    }
    let tls = node.shared().tls.as_ref();
    for peer in cfg.members.iter().filter(|m| m.id != cfg.node_id) {
        let status = match AdminClient::connect_with(&peer.address, tls).await {
            Ok(mut client) => client.status().await,
            Err(e) => Err(e),
        };
        match status {
            Ok(s) if s.members.is_empty() => {}
            Ok(_) => return format!("node {} already has a cluster; contacting us", peer.id),
            Err(AdminClientError::Connect { .. }) | Err(AdminClientError::Status(_)) => {
                return format!("member {} at {} to start", peer.id, peer.address)
            }
        }
    }
    let members: BTreeMap<NodeId, String> = cfg
        .members
        .iter()
        .map(|m| (m.id, m.address.clone()))
        .collect();
    match node.init(members).await {
        Ok(_) => "the first election".into(),
        Err(e) => {
            warn!(node_id = node.id(), error = %e, "initializing the cluster failed");
            format!("initialization ({e})")
        }
    }
}
