//! A running cluster node: [`ClusterNode::start`] opens the storage, creates the Raft, serves
//! the Raft and admin gRPC services on one address; the node's handle offers
//! [`ClusterNode::propose`] and the admin operations.
//!
//! Owns [`ClusterNodeConfig`], the node's openraft [`Config`] and its life cycle (start,
//! shutdown). It must not interpret requests (that is the state machine), implement the wire
//! protocol (that is [`super::network`]), the admin operations (that is [`super::admin`]) or
//! proposing (that is [`super::node`]): its methods delegate to those.

use super::admin::grpc::AdminGrpc;
use super::admin::ops::{self, AdminError};
use super::compression::LogCompression;
use super::network::{NetworkFactory, PeerChannels, RaftGrpc, MAX_MESSAGE_BYTES};
use super::node::NodeShared;
use super::proto::admin_pb::cluster_admin_server::ClusterAdminServer;
use super::proto::admin_pb::MembershipReply;
use super::proto::raft_pb::raft_service_server::RaftServiceServer;
use super::storage::{open_storage, StoreOptions};
use super::tls::{transport, ClusterTls, Gate};
use super::{ClusterError, ClusterRaft, NodeId};
use openraft::{Config, SnapshotPolicy};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tracing::{info, warn};

/// How a node is started.
#[derive(Debug, Clone)]
pub(crate) struct ClusterNodeConfig {
    /// This node's Raft id (unique in the cluster, never reused).
    pub(crate) id: NodeId,
    /// Where the Raft and admin gRPC services listen (port 0: any free port).
    pub(crate) listen: SocketAddr,
    /// The address other nodes and admin clients use; default: the bound address.
    pub(crate) advertise: Option<String>,
    /// Storage directory (`db/`, `snapshots/`).
    pub(crate) data_dir: PathBuf,
    pub(crate) store: StoreOptions,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) election_timeout_min: Duration,
    pub(crate) election_timeout_max: Duration,
    /// When the state machine builds a snapshot on its own.
    pub(crate) snapshot_policy: SnapshotPolicy,
    /// Log entries kept after a snapshot (so a briefly lagging follower catches up by log).
    /// Chunks are large: keep few, they are also in the state machine.
    pub(crate) max_in_snapshot_log_to_keep: u64,
    /// Entries per AppendEntries at most.
    pub(crate) max_payload_entries: u64,
    /// How long [`ClusterNode::propose`] may take, waiting for a leader included.
    pub(crate) propose_timeout: Duration,
    /// Appends ingest proposes at once (see `cluster::coalesce`).
    pub(crate) proposals_in_flight: usize,
    /// How the leader writes chunk payloads into the log (`<cluster> log_compression`).
    pub(crate) log_compression: LogCompression,
    /// Mutual TLS on the cluster port and to the peers; `None`: plaintext.
    pub(crate) tls: Option<Arc<ClusterTls>>,
}

impl ClusterNodeConfig {
    /// Defaults: heartbeat 100 ms, election timeout 300–600 ms, snapshot every 5000 entries.
    pub(crate) fn new(id: NodeId, listen: SocketAddr, data_dir: impl Into<PathBuf>) -> Self {
        ClusterNodeConfig {
            id,
            listen,
            advertise: None,
            data_dir: data_dir.into(),
            store: StoreOptions::default(),
            heartbeat_interval: Duration::from_millis(100),
            election_timeout_min: Duration::from_millis(300),
            election_timeout_max: Duration::from_millis(600),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(5000),
            max_in_snapshot_log_to_keep: 100,
            max_payload_entries: 16,
            propose_timeout: Duration::from_secs(5),
            proposals_in_flight: super::coalesce::DEFAULT_PROPOSALS_IN_FLIGHT,
            log_compression: LogCompression::default(),
            tls: None,
        }
    }

    fn raft_config(&self) -> Result<Config, StartError> {
        let config = Config {
            cluster_name: "lograft".to_string(),
            heartbeat_interval: self.heartbeat_interval.as_millis() as u64,
            election_timeout_min: self.election_timeout_min.as_millis() as u64,
            election_timeout_max: self.election_timeout_max.as_millis() as u64,
            snapshot_policy: self.snapshot_policy.clone(),
            max_in_snapshot_log_to_keep: self.max_in_snapshot_log_to_keep,
            max_payload_entries: self.max_payload_entries,
            // Snapshot chunks well under the gRPC message limit.
            snapshot_max_chunk_size: 4 * 1024 * 1024,
            ..Config::default()
        };
        config
            .validate()
            .map_err(|e| StartError::Config(e.to_string()))
    }
}

/// Why a node did not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    #[error("invalid raft config: {0}")]
    Config(String),
    #[error("opening storage: {0}")]
    Storage(#[from] ClusterError),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("starting raft: {0}")]
    Raft(String),
}

/// A running cluster node.
pub(crate) struct ClusterNode {
    shared: Arc<NodeShared>,
    stop_serving: CancellationToken,
    server: Option<JoinHandle<()>>,
}

impl ClusterNode {
    /// Open the storage, create the Raft and serve gRPC. The node is not part of a cluster
    /// until it is initialized ([`ClusterNode::init`]) or added by a leader.
    pub(crate) async fn start(config: ClusterNodeConfig) -> Result<ClusterNode, StartError> {
        let raft_config = Arc::new(config.raft_config()?);
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.listen,
                source,
            })?;
        let bound = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let addr = config
            .advertise
            .clone()
            .unwrap_or_else(|| bound.to_string());

        let (log_store, state_machine) =
            open_storage(&config.data_dir, config.store.clone()).await?;
        let reader = state_machine.reader();
        let channels = PeerChannels::new(config.tls.clone());
        let network = NetworkFactory::new(config.id, channels.clone());
        let raft = ClusterRaft::new(config.id, raft_config, network, log_store, state_machine)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;

        let shared = Arc::new(NodeShared {
            id: config.id,
            addr: addr.clone(),
            raft: raft.clone(),
            reader,
            channels,
            tls: config.tls.clone(),
            gate: Gate::new(config.tls.is_some()),
            propose_timeout: config.propose_timeout,
            proposals_in_flight: config.proposals_in_flight,
            log_compression: config.log_compression,
            election_timeout_max: config.election_timeout_max,
        });

        let raft_service = RaftServiceServer::new(RaftGrpc::new(
            shared.id,
            raft,
            shared.gate,
            config.log_compression,
        ))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let admin_service = ClusterAdminServer::new(AdminGrpc::new(shared.clone()));
        let stop_serving = CancellationToken::new();
        let stop = stop_serving.clone();
        let node_id = shared.id;
        let tls = config.tls.clone();
        let server = tokio::spawn(async move {
            let router = tonic::transport::Server::builder()
                .add_service(raft_service)
                .add_service(admin_service);
            let served = match tls {
                Some(tls) => {
                    let incoming = transport::incoming(listener, tls, stop.clone());
                    router
                        .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
                        .await
                }
                None => {
                    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
                    router
                        .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
                        .await
                }
            };
            if let Err(error) = served {
                warn!(node_id, %error, "cluster gRPC server failed");
            }
        });
        info!(node_id = shared.id, %addr, tls = config.tls.is_some(), "cluster node started");
        Ok(ClusterNode {
            shared,
            stop_serving,
            server: Some(server),
        })
    }

    pub(crate) fn id(&self) -> NodeId {
        self.shared.id
    }

    /// The address other nodes and admin clients use.
    pub(crate) fn addr(&self) -> &str {
        &self.shared.addr
    }

    /// The openraft handle (metrics, waits).
    pub(crate) fn raft(&self) -> &ClusterRaft {
        &self.shared.raft
    }

    /// Read-only queries on this node's state machine.
    #[cfg(test)]
    pub(crate) fn reader(&self) -> &super::storage::ChunkReader {
        &self.shared.reader
    }

    pub(crate) fn shared(&self) -> &Arc<NodeShared> {
        &self.shared
    }

    /// Commit `request` through the cluster's log and return the state machine's answer.
    ///
    /// On the leader this is `client_write`; on another node the request is forwarded to the
    /// leader (following `ForwardToLeader` hints as leadership moves). Waits for a leader, but
    /// never longer than `propose_timeout` in total. (Ingest and upload call
    /// [`node::propose`] directly.)
    #[cfg(test)]
    pub(crate) async fn propose(
        &self,
        request: super::ClusterRequest,
    ) -> Result<super::ClusterResponse, super::node::ProposeError> {
        super::node::propose(&self.shared, request).await
    }

    /// Initialize a new cluster with these voters (`id → address`); empty: this node alone.
    pub(crate) async fn init(
        &self,
        members: BTreeMap<NodeId, String>,
    ) -> Result<MembershipReply, AdminError> {
        ops::init(&self.shared, members).await
    }

    /// Stop the Raft (no more heartbeats: the others elect a new leader without waiting for
    /// this node's lease), then stop serving gRPC. Storage is closed once the last reader is
    /// dropped.
    pub(crate) async fn shutdown(mut self) {
        if let Err(error) = self.shared.raft.shutdown().await {
            warn!(node_id = self.shared.id, %error, "raft did not shut down cleanly");
        }
        self.stop_serving.cancel();
        if let Some(mut server) = self.server.take() {
            // Graceful shutdown waits for in-flight calls (a forwarded write may wait for a
            // quorum): bound it.
            if tokio::time::timeout(Duration::from_secs(2), &mut server)
                .await
                .is_err()
            {
                server.abort();
            }
        }
        info!(node_id = self.shared.id, "cluster node stopped");
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        // A node dropped without `shutdown` still stops listening.
        self.stop_serving.cancel();
    }
}
