//! The admin API of a cluster node, split by role:
//!
//! - [`ops`]: the operations on a running node (status, init, add/promote/remove members,
//!   leader transfer, snapshots) and their error [`ops::AdminError`];
//! - [`grpc`]: the tonic adapter serving them ([`grpc::AdminGrpc`]);
//! - [`client`]: [`AdminClient`], used by the `lograft cluster` CLI and by bootstrap;
//! - [`report`]: the CLI's rendering of a status ([`format_status`], [`status_json`]).
//!
//! This module only names its parts. The operations must not depend on the client or the
//! report, and none of them touches storage or Raft's own wire protocol.

pub mod client;
pub(crate) mod grpc;
pub(crate) mod ops;
pub mod report;

pub use self::client::{AdminClient, AdminClientError};
pub use self::report::{format_status, status_json};
