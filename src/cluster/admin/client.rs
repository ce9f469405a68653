//! The admin client ([`AdminClient`]): one node's `ClusterAdmin` service over gRPC, for the
//! `lograft cluster` CLI and for bootstrap (joining a cluster through its members).
//!
//! Owns connecting, the request encoding of each call and reading the leader out of a "not
//! the leader" status ([`AdminClientError::leader`]). It must not format output for people
//! (that is [`super::report`]) nor run operations locally.

use super::grpc::{LEADER_ADDR_METADATA, LEADER_ID_METADATA};
use crate::cluster::proto::admin_pb::{
    cluster_admin_client::ClusterAdminClient, AddLearnerRequest, InitRequest, MembershipReply,
    NodeAddress, PromoteRequest, RemoveRequest, StatusReply, StatusRequest, TransferLeaderReply,
    TransferLeaderRequest, TriggerSnapshotReply, TriggerSnapshotRequest,
};
use crate::cluster::tls::transport::{self, Dial};
use crate::cluster::tls::ClusterTls;
use crate::cluster::NodeId;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Channel;
use tonic::Status;

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
    /// Connect to the node at `addr` (`host:port` or `http://host:port`) in plaintext.
    pub async fn connect(addr: &str) -> Result<AdminClient, AdminClientError> {
        Self::connect_with(addr, None).await
    }

    /// Connect to the node at `addr`, with mutual TLS when `tls` is given (any node
    /// certificate of the cluster is accepted: the caller does not know which node it is).
    pub async fn connect_with(
        addr: &str,
        tls: Option<&Arc<ClusterTls>>,
    ) -> Result<AdminClient, AdminClientError> {
        let uri = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("http://{addr}")
        };
        let connect_error = |source| AdminClientError::Connect {
            addr: addr.to_string(),
            source,
        };
        let endpoint = tonic::transport::Endpoint::from_shared(uri)
            .map_err(connect_error)?
            .connect_timeout(Duration::from_secs(3));
        let channel = match tls {
            Some(tls) => endpoint
                .connect_with_connector(transport::connector(tls.clone(), Dial::Admin))
                .await
                .map_err(connect_error)?,
            None => endpoint.connect().await.map_err(connect_error)?,
        };
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
