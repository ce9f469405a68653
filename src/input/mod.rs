//! Inputs: the servers that accept events from applications and other lograft nodes.
//!
//! Every input hands what it accepted to the rest of the node through the pipeline contract
//! ([`crate::pipeline::Emit`]) and acknowledges (Forward `ack`, HTTP 200) only after the batch
//! is committed. Inputs must not hold accepted data anywhere but in that call.

pub mod budget;
pub mod fd_reserve;
pub mod forward;
pub mod http;

// Re-exported for `input::http` until it imports `crate::pipeline` directly.
#[cfg(test)]
pub(crate) use crate::pipeline::BoxFuture;
pub(crate) use crate::pipeline::{Emit, EmitError};
