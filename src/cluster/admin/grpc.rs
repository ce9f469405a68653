//! The admin gRPC service ([`AdminGrpc`]): a thin tonic adapter from the `ClusterAdmin`
//! requests to the operations of [`super::ops`], and from [`AdminError`] to gRPC statuses (a
//! "not the leader" status names the leader in its metadata). With TLS, each call first passes
//! the node's [`Gate`](crate::cluster::tls::Gate): an operator certificate, except `Status`
//! (any certificate of the cluster) and `AddLearner` of a node by that node itself (`join`).
//!
//! Owns the request defaults (`0` means the default wait) and the status mapping. It must not
//! implement operations itself nor be used by clients (that is [`super::client`]).

use super::ops::{self, AdminError};
use crate::cluster::node::NodeShared;
use crate::cluster::proto::admin_pb::{
    cluster_admin_server::ClusterAdmin, AddLearnerRequest, InitRequest, MembershipReply,
    PromoteRequest, RemoveRequest, StatusReply, StatusRequest, TransferLeaderReply,
    TransferLeaderRequest, TriggerSnapshotReply, TriggerSnapshotRequest,
};
use std::sync::Arc;
use std::time::Duration;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

/// Default wait for a learner to catch up before it is promoted.
const DEFAULT_PROMOTE_WAIT: Duration = Duration::from_secs(30);
/// Default time a leader transfer may take.
const DEFAULT_TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);

/// gRPC metadata naming the leader on a "not the leader" error.
pub(crate) const LEADER_ID_METADATA: &str = "lograft-leader-id";
pub(crate) const LEADER_ADDR_METADATA: &str = "lograft-leader-addr";

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

/// The admin gRPC service: the operations of [`super::ops`], errors as gRPC statuses.
pub(crate) struct AdminGrpc {
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
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusReply>, Status> {
        self.shared.gate.anyone(request.extensions())?;
        Ok(Response::new(ops::status(&self.shared).await))
    }

    async fn init(
        &self,
        request: Request<InitRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        self.shared.gate.operator(request.extensions())?;
        let members = request
            .into_inner()
            .members
            .into_iter()
            .map(|m| (m.id, m.address))
            .collect();
        Ok(Response::new(ops::init(&self.shared, members).await?))
    }

    async fn add_learner(
        &self,
        request: Request<AddLearnerRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        let (_, ext, r) = request.into_parts();
        // A node may add itself (that is `join`); anything else is an operator's.
        self.shared.gate.operator_or_node(&ext, r.id)?;
        Ok(Response::new(
            ops::add_learner(&self.shared, r.id, r.address).await?,
        ))
    }

    async fn promote(
        &self,
        request: Request<PromoteRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        self.shared.gate.operator(request.extensions())?;
        let r = request.into_inner();
        let wait = millis_or(r.wait_ms, DEFAULT_PROMOTE_WAIT);
        Ok(Response::new(ops::promote(&self.shared, r.id, wait).await?))
    }

    async fn remove(
        &self,
        request: Request<RemoveRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        self.shared.gate.operator(request.extensions())?;
        Ok(Response::new(
            ops::remove(&self.shared, request.into_inner().id).await?,
        ))
    }

    async fn transfer_leader(
        &self,
        request: Request<TransferLeaderRequest>,
    ) -> Result<Response<TransferLeaderReply>, Status> {
        self.shared.gate.operator(request.extensions())?;
        let r = request.into_inner();
        let timeout = millis_or(r.timeout_ms, DEFAULT_TRANSFER_TIMEOUT);
        Ok(Response::new(
            ops::transfer_leader(&self.shared, r.target_id, timeout).await?,
        ))
    }

    async fn trigger_snapshot(
        &self,
        request: Request<TriggerSnapshotRequest>,
    ) -> Result<Response<TriggerSnapshotReply>, Status> {
        self.shared.gate.operator(request.extensions())?;
        Ok(Response::new(
            ops::trigger_snapshot(&self.shared, request.into_inner().purge).await?,
        ))
    }
}
