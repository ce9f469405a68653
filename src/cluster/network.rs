//! Raft traffic over tonic gRPC: the client side ([`NetworkFactory`] / [`PeerConnection`],
//! openraft's `RaftNetworkFactory` / `RaftNetwork`), the server side ([`RaftGrpc`], handing
//! requests to the local [`ClusterRaft`]), and the follower-to-leader `ForwardChunk` (the one
//! application request a node accepts from another: a chunk to append).
//!
//! Owns the wire encoding of `proto/raft.proto` (openraft's types as rmp-serde bytes, snapshot
//! chunks raw) and the mapping of transport failures to openraft's `Unreachable` /
//! `NetworkError` / `Timeout`, so openraft retries them. It must not decide anything about
//! membership or leadership: that is openraft's, and the admin operations' ([`super::admin`]).

use super::compression::LogCompression;
use super::proto::raft_pb::{
    raft_reply, raft_service_client::RaftServiceClient, raft_service_server::RaftService,
    ForwardedChunk, RaftMessage, RaftReply, SnapshotChunk, StartElectionReply,
    StartElectionRequest,
};
use super::raft_guard::{self, Refusal};
use super::shared_bytes;
use super::tls::transport::{self, Dial};
use super::tls::{ClusterTls, Gate};
use super::{to_msgpack_sized, ClusterRaft, ClusterRequest, ClusterResponse, NodeId, TypeConfig};
use crate::log_limit::WarnLimiter;
use bytes::Bytes;
use openraft::error::{
    ClientWriteError, InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError,
    RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, EntryPayload, Membership};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};
use tracing::{debug, warn};

/// Largest gRPC message a node sends or accepts (snapshot chunks, forwarded chunks, appends).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// An AppendEntries larger than this (encoded) is split: openraft is told to send fewer
/// entries. openraft 0.9 gives AppendEntries only `heartbeat_interval` to complete, so one RPC
/// must stay small enough to transfer and fsync in that time. Each request is held several
/// times over while it is encoded, sent, received and written (leader and follower), so this
/// is also what bounds replication's share of a node's memory: 2 MiB (4 MiB let the leader
/// reach 64.5 MB RSS at 16 connections once appends were merged into 1 MiB entries). A single
/// entry larger than this (a chunk up to `ingest::MAX_ENTRY_BYTES`) still goes, alone.
pub const MAX_APPEND_BYTES: usize = 2 * 1024 * 1024;

/// How long to wait for a TCP connection to a peer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A failed call to a peer, before it is mapped to the caller's error type.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The peer could not be reached (connection refused or reset, bad address).
    #[error("node {target} at {addr} is unreachable: {reason}")]
    Unreachable {
        target: NodeId,
        addr: String,
        reason: String,
    },
    /// No answer within the deadline.
    #[error("node {target} at {addr} did not answer within {timeout:?}")]
    Timeout {
        target: NodeId,
        addr: String,
        timeout: Duration,
    },
    /// The peer answered with a gRPC error or an undecodable reply.
    #[error("node {target} at {addr}: {reason}")]
    Failed {
        target: NodeId,
        addr: String,
        reason: String,
    },
}

/// One lazily connected channel per peer, shared by every Raft replication stream and
/// forward to that peer. tonic channels reconnect on their own; a peer whose address changes
/// gets a new channel. Cheap to clone.
#[derive(Clone, Default)]
pub struct PeerChannels {
    channels: Arc<Mutex<HashMap<NodeId, (String, Channel)>>>,
    /// Mutual TLS to the peers (each must present its own node certificate).
    tls: Option<Arc<ClusterTls>>,
}

impl PeerChannels {
    pub fn new(tls: Option<Arc<ClusterTls>>) -> Self {
        PeerChannels {
            channels: Arc::default(),
            tls,
        }
    }

    /// The channel to `target` at `addr` (`host:port` or a `http://` URI), created lazily.
    pub fn channel(&self, target: NodeId, addr: &str) -> Result<Channel, CallError> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((cached_addr, channel)) = channels.get(&target) {
            if cached_addr == addr {
                return Ok(channel.clone());
            }
        }
        let uri = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("http://{addr}")
        };
        let endpoint = Endpoint::from_shared(uri)
            .map_err(|e| CallError::Unreachable {
                target,
                addr: addr.to_string(),
                reason: format!("bad address: {e}"),
            })?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        let channel = match &self.tls {
            Some(tls) => endpoint
                .connect_with_connector_lazy(transport::connector(tls.clone(), Dial::Peer(target))),
            None => endpoint.connect_lazy(),
        };
        channels.insert(target, (addr.to_string(), channel.clone()));
        Ok(channel)
    }

    /// A raft-service client for `target`.
    pub fn raft_client(
        &self,
        target: NodeId,
        addr: &str,
    ) -> Result<RaftServiceClient<Channel>, CallError> {
        Ok(RaftServiceClient::new(self.channel(target, addr)?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// Forget the channel to `target` (it left the cluster).
    pub fn forget(&self, target: NodeId) {
        self.channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&target);
    }

    /// Forward a chunk to the leader `target` at `addr` and return the state machine's
    /// answer, or the leader's Raft error (e.g. `ForwardToLeader` when it is no longer the
    /// leader).
    pub async fn forward_chunk(
        &self,
        target: NodeId,
        addr: &str,
        chunk: ForwardedChunk,
        timeout: Duration,
    ) -> Result<Result<ClusterResponse, ClientWriteRaftError>, CallError> {
        let mut client = self.raft_client(target, addr)?;
        let call = async move {
            let mut req = Request::new(chunk);
            req.set_timeout(timeout);
            client.forward_chunk(req).await
        };
        let reply = call_with_timeout(target, addr, timeout, call).await?;
        decode_reply(target, addr, reply)
    }

    /// Ask `target` to start an election now (the leader-transfer helper).
    pub async fn start_election(
        &self,
        target: NodeId,
        addr: &str,
        timeout: Duration,
    ) -> Result<(), CallError> {
        let mut client = self.raft_client(target, addr)?;
        let call = async move {
            let mut req = Request::new(StartElectionRequest { target_id: target });
            req.set_timeout(timeout);
            client.start_election(req).await
        };
        call_with_timeout(target, addr, timeout, call).await?;
        Ok(())
    }
}

/// The leader's answer to a forwarded write when Raft refused it.
pub type ClientWriteRaftError = RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>;

/// Run one unary call with a hard deadline and classify its failure.
async fn call_with_timeout<T>(
    target: NodeId,
    addr: &str,
    timeout: Duration,
    call: impl std::future::Future<Output = Result<Response<T>, Status>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(timeout, call).await {
        Err(_) => Err(CallError::Timeout {
            target,
            addr: addr.to_string(),
            timeout,
        }),
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(classify_status(target, addr, timeout, &status)),
    }
}

fn classify_status(target: NodeId, addr: &str, timeout: Duration, status: &Status) -> CallError {
    let addr = addr.to_string();
    match status.code() {
        // tonic reports refused / reset connections as UNAVAILABLE.
        Code::Unavailable => CallError::Unreachable {
            target,
            addr,
            reason: status_text(status),
        },
        Code::DeadlineExceeded | Code::Cancelled => CallError::Timeout {
            target,
            addr,
            timeout,
        },
        _ => CallError::Failed {
            target,
            addr,
            reason: status_text(status),
        },
    }
}

fn status_text(status: &Status) -> String {
    use std::error::Error;
    match status.source() {
        Some(source) => format!("{:?}: {} ({source})", status.code(), status.message()),
        None => format!("{:?}: {}", status.code(), status.message()),
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Bytes, rmp_serde::encode::Error> {
    to_msgpack_sized(value, 0).map(Bytes::from)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, rmp_serde::decode::Error> {
    rmp_serde::from_slice(bytes)
}

/// Decode a [`RaftReply`]: `Ok(Ok(T))` for an answer, `Ok(Err(E))` for the remote Raft's error.
fn decode_reply<T: DeserializeOwned, E: DeserializeOwned>(
    target: NodeId,
    addr: &str,
    reply: RaftReply,
) -> Result<Result<T, E>, CallError> {
    let failed = |reason: String| CallError::Failed {
        target,
        addr: addr.to_string(),
        reason,
    };
    match reply.result {
        Some(raft_reply::Result::Ok(bytes)) => decode(&bytes)
            .map(Ok)
            .map_err(|e| failed(format!("undecodable answer: {e}"))),
        Some(raft_reply::Result::Error(bytes)) => decode(&bytes)
            .map(Err)
            .map_err(|e| failed(format!("undecodable error: {e}"))),
        None => Err(failed("empty reply".to_string())),
    }
}

/// Builds a [`PeerConnection`] per replication target; all share one [`PeerChannels`].
#[derive(Clone)]
pub struct NetworkFactory {
    local_id: NodeId,
    channels: PeerChannels,
}

impl NetworkFactory {
    pub fn new(local_id: NodeId, channels: PeerChannels) -> Self {
        NetworkFactory { local_id, channels }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        PeerConnection {
            local_id: self.local_id,
            target,
            node: node.clone(),
            channels: self.channels.clone(),
        }
    }
}

/// openraft's connection to one peer. Connects lazily: creating one never fails.
pub struct PeerConnection {
    local_id: NodeId,
    target: NodeId,
    node: BasicNode,
    channels: PeerChannels,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl PeerConnection {
    /// Map a transport failure to the openraft error that makes openraft retry sensibly:
    /// unreachable peers are backed off, other failures retried.
    fn rpc_error<E: std::error::Error>(
        &self,
        action: RPCTypes,
        error: CallError,
    ) -> RPCError<NodeId, BasicNode, E> {
        debug!(target_node = self.target, ?action, %error, "raft rpc failed");
        match error {
            CallError::Unreachable { .. } => RPCError::Unreachable(Unreachable::new(&error)),
            CallError::Timeout { timeout, .. } => RPCError::Timeout(Timeout {
                action,
                id: self.local_id,
                target: self.target,
                timeout,
            }),
            CallError::Failed { .. } => RPCError::Network(NetworkError::new(&error)),
        }
    }

    // The error type is openraft's `RPCError`, which the `RaftNetwork` methods must return.
    #[allow(clippy::result_large_err)]
    fn remote<T, E: std::error::Error>(
        &self,
        answer: Result<T, RaftError<NodeId, E>>,
    ) -> RpcResult<T, E> {
        answer.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }

    /// A peer's answer that [`raft_guard`] refuses: a network error for openraft (retried),
    /// never handed on.
    fn refused_answer<E: std::error::Error>(
        &self,
        refusal: Refusal,
    ) -> RPCError<NodeId, BasicNode, E> {
        warn_refused(&format!("answer of node {}", self.target), &refusal);
        RPCError::Network(NetworkError::new(&refusal))
    }

    fn encoding_error<E: std::error::Error>(
        &self,
        error: rmp_serde::encode::Error,
    ) -> RPCError<NodeId, BasicNode, E> {
        RPCError::Network(NetworkError::new(&error))
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        let entries = rpc.entries.len() as u64;
        // Ask openraft to resend with proportionally fewer entries when they are too large:
        // judged by their payloads first, so an oversized request is not encoded at all.
        let too_large = |size: usize| {
            (size > MAX_APPEND_BYTES && entries > 1).then(|| {
                let hint = (entries * MAX_APPEND_BYTES as u64 / size as u64).clamp(1, entries - 1);
                RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(hint))
            })
        };
        let payloads: usize = rpc
            .entries
            .iter()
            .filter_map(|entry| match &entry.payload {
                EntryPayload::Normal(request) => request.payload().map(Bytes::len),
                _ => None,
            })
            .sum();
        if let Some(error) = too_large(payloads) {
            return Err(error);
        }
        // Payloads plus each entry's framing (log id, request fields: well under 256 bytes).
        let capacity = payloads + 256 * rpc.entries.len() + 256;
        let data = to_msgpack_sized(&rpc, capacity)
            .map(Bytes::from)
            .map_err(|e| self.encoding_error(e))?;
        if let Some(error) = too_large(data.len()) {
            return Err(error);
        }
        let timeout = option.hard_ttl();
        let mut client = self
            .channels
            .raft_client(self.target, &self.node.addr)
            .map_err(|e| self.rpc_error(RPCTypes::AppendEntries, e))?;
        let target = self.target;
        let call = async move {
            let mut req = Request::new(RaftMessage { data });
            address_to(&mut req, target);
            req.set_timeout(timeout);
            client.append_entries(req).await
        };
        let reply = call_with_timeout(self.target, &self.node.addr, timeout, call)
            .await
            .map_err(|e| self.rpc_error(RPCTypes::AppendEntries, e))?;
        let answer = decode_reply(self.target, &self.node.addr, reply)
            .map_err(|e| self.rpc_error(RPCTypes::AppendEntries, e))?;
        if let Ok(resp) = &answer {
            raft_guard::append_entries_response(resp).map_err(|r| self.refused_answer(r))?;
        }
        self.remote(answer)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let chunk = SnapshotChunk {
            vote: encode(&rpc.vote).map_err(|e| self.encoding_error(e))?,
            meta: encode(&rpc.meta).map_err(|e| self.encoding_error(e))?,
            offset: rpc.offset,
            data: Bytes::from(rpc.data),
            done: rpc.done,
        };
        let timeout = option.hard_ttl();
        let mut client = self
            .channels
            .raft_client(self.target, &self.node.addr)
            .map_err(|e| self.rpc_error(RPCTypes::InstallSnapshot, e))?;
        let target = self.target;
        let call = async move {
            let mut req = Request::new(chunk);
            address_to(&mut req, target);
            req.set_timeout(timeout);
            client.install_snapshot(req).await
        };
        let reply = call_with_timeout(self.target, &self.node.addr, timeout, call)
            .await
            .map_err(|e| self.rpc_error(RPCTypes::InstallSnapshot, e))?;
        let answer = decode_reply(self.target, &self.node.addr, reply)
            .map_err(|e| self.rpc_error(RPCTypes::InstallSnapshot, e))?;
        if let Ok(resp) = &answer {
            raft_guard::install_snapshot_response(resp).map_err(|r| self.refused_answer(r))?;
        }
        self.remote(answer)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        let data = encode(&rpc).map_err(|e| self.encoding_error(e))?;
        let timeout = option.hard_ttl();
        let mut client = self
            .channels
            .raft_client(self.target, &self.node.addr)
            .map_err(|e| self.rpc_error(RPCTypes::Vote, e))?;
        let target = self.target;
        let call = async move {
            let mut req = Request::new(RaftMessage { data });
            address_to(&mut req, target);
            req.set_timeout(timeout);
            client.vote(req).await
        };
        let reply = call_with_timeout(self.target, &self.node.addr, timeout, call)
            .await
            .map_err(|e| self.rpc_error(RPCTypes::Vote, e))?;
        let answer = decode_reply(self.target, &self.node.addr, reply)
            .map_err(|e| self.rpc_error(RPCTypes::Vote, e))?;
        if let Ok(resp) = &answer {
            raft_guard::vote_response(resp).map_err(|r| self.refused_answer(r))?;
        }
        self.remote(answer)
    }
}

/// gRPC metadata naming the node a Raft RPC is meant for.
const TARGET_METADATA: &str = "lograft-target-id";

/// Name the intended receiver of a Raft RPC, so a process that now listens on a member's old
/// address under another id (a replacement after disk loss) refuses traffic meant for the
/// old member instead of taking it for its own.
fn address_to<T>(req: &mut Request<T>, target: NodeId) {
    if let Ok(value) = target.to_string().parse() {
        req.metadata_mut().insert(TARGET_METADATA, value);
    }
}

/// The gRPC server side of the Raft traffic: decodes requests and hands them to the local
/// Raft. Refuses requests addressed to another node id and what [`raft_guard`] refuses
/// (unreachable terms, malformed appends, non-members); openraft judges terms, votes and logs.
pub struct RaftGrpc {
    node_id: NodeId,
    raft: ClusterRaft,
    gate: Gate,
    /// How a chunk forwarded to this node (as leader) goes into the log.
    log_compression: LogCompression,
}

impl RaftGrpc {
    pub(crate) fn new(
        node_id: NodeId,
        raft: ClusterRaft,
        gate: Gate,
        log_compression: LogCompression,
    ) -> Self {
        RaftGrpc {
            node_id,
            raft,
            gate,
            log_compression,
        }
    }
}

impl RaftGrpc {
    /// This node's effective membership (the latest config in its log).
    fn membership(&self) -> Membership<NodeId, BasicNode> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .clone()
    }

    fn check_addressed<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let target = request
            .metadata()
            .get(TARGET_METADATA)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<NodeId>().ok());
        match target {
            Some(t) if t != self.node_id => Err(Status::failed_precondition(format!(
                "raft message for node {t}, but this is node {}",
                self.node_id
            ))),
            _ => Ok(()),
        }
    }
}

/// Log refused Raft input (at most one line a minute, counting the others).
fn warn_refused(from: &str, refusal: &Refusal) {
    static REFUSED: LazyLock<WarnLimiter> =
        LazyLock::new(|| WarnLimiter::new(Duration::from_secs(60)));
    if let Some(others) = REFUSED.check() {
        warn!(%from, %refusal, refused_since_last_line = others, "raft message refused");
    }
}

/// The gRPC status of refused Raft input.
fn refused(refusal: Refusal) -> Status {
    warn_refused("a raft request", &refusal);
    match refusal {
        Refusal::NotMember { .. } | Refusal::NotVoter { .. } => {
            Status::permission_denied(refusal.to_string())
        }
        Refusal::Term { .. } | Refusal::Malformed { .. } => {
            Status::invalid_argument(refusal.to_string())
        }
    }
}

fn bad_request(what: &str, e: rmp_serde::decode::Error) -> Status {
    Status::invalid_argument(format!("undecodable {what}: {e}"))
}

/// Encode a local Raft answer as a [`RaftReply`].
fn reply<T: Serialize, E: Serialize>(answer: Result<T, E>) -> Result<Response<RaftReply>, Status> {
    let result = match answer {
        Ok(value) => raft_reply::Result::Ok(
            encode(&value).map_err(|e| Status::internal(format!("encoding the answer: {e}")))?,
        ),
        Err(error) => raft_reply::Result::Error(
            encode(&error).map_err(|e| Status::internal(format!("encoding the error: {e}")))?,
        ),
    };
    Ok(Response::new(RaftReply {
        result: Some(result),
    }))
}

#[tonic::async_trait]
impl RaftService for RaftGrpc {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftReply>, Status> {
        self.check_addressed(&request)?;
        let (_, ext, message) = request.into_parts();
        let rpc: AppendEntriesRequest<TypeConfig> =
            // Payloads stay slices of the message (no copy per entry).
            shared_bytes::decode_sharing(&message.data)
                .map_err(|e| bad_request("AppendEntries", e))?;
        let sender =
            raft_guard::append_entries(&rpc, &self.membership(), self.node_id).map_err(refused)?;
        self.gate.node(&ext, sender)?;
        reply(self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftReply>, Status> {
        self.check_addressed(&request)?;
        let (_, ext, message) = request.into_parts();
        let rpc: VoteRequest<NodeId> = decode(&message.data).map_err(|e| bad_request("Vote", e))?;
        let candidate = raft_guard::vote(&rpc, &self.membership()).map_err(refused)?;
        self.gate.node(&ext, candidate)?;
        reply(self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<SnapshotChunk>,
    ) -> Result<Response<RaftReply>, Status> {
        self.check_addressed(&request)?;
        let (_, ext, chunk) = request.into_parts();
        let rpc = InstallSnapshotRequest::<TypeConfig> {
            vote: decode(&chunk.vote).map_err(|e| bad_request("snapshot vote", e))?,
            meta: decode(&chunk.meta).map_err(|e| bad_request("snapshot meta", e))?,
            offset: chunk.offset,
            data: chunk.data.to_vec(),
            done: chunk.done,
        };
        let sender = raft_guard::install_snapshot(&rpc, &self.membership(), self.node_id)
            .map_err(refused)?;
        self.gate.node(&ext, sender)?;
        reply(self.raft.install_snapshot(rpc).await)
    }

    async fn forward_chunk(
        &self,
        request: Request<ForwardedChunk>,
    ) -> Result<Response<RaftReply>, Status> {
        let (_, ext, chunk) = request.into_parts();
        self.gate
            .member(&ext, self.membership().nodes().map(|(id, _)| *id))?;
        let app = if chunk.segments.is_empty() {
            ClusterRequest::AppendChunk {
                origin: chunk.origin,
                tag: chunk.tag,
                entries: chunk.entries,
                count: chunk.count,
                received_unix_ms: chunk.received_unix_ms,
            }
        } else {
            ClusterRequest::AppendSegments {
                tag: chunk.tag,
                entries: chunk.entries,
                segments: chunk
                    .segments
                    .into_iter()
                    .map(|s| crate::origin::Segment {
                        origin: s.origin,
                        len: usize::try_from(s.len).unwrap_or(usize::MAX),
                        count: s.count,
                    })
                    .collect(),
                received_unix_ms: chunk.received_unix_ms,
            }
        };
        debug!(request = ?app, "forwarded chunk");
        let app = self.log_compression.compress(app);
        reply(self.raft.client_write(app).await.map(|r| r.data))
    }

    async fn start_election(
        &self,
        request: Request<StartElectionRequest>,
    ) -> Result<Response<StartElectionReply>, Status> {
        let (_, ext, request) = request.into_parts();
        self.gate.member(&ext, self.membership().voter_ids())?;
        let target = request.target_id;
        if target != self.node_id {
            return Err(Status::invalid_argument(format!(
                "election requested for node {target}, but this is node {}",
                self.node_id
            )));
        }
        self.raft
            .trigger()
            .elect()
            .await
            .map_err(|e| Status::unavailable(format!("raft is not running: {e}")))?;
        Ok(Response::new(StartElectionReply {}))
    }
}
