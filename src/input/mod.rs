//! Inputs: the servers that accept events from applications and other lograft nodes.
//!
//! Every input asks one question of the rest of the node — "store this batch and tell me when it
//! is committed" — through [`Emit`]. On a forwarder the answer comes from the router and the
//! file buffer (appended and fsynced); on an aggregator from the Raft cluster (replicated to a
//! majority). Inputs send their acknowledgement (Forward `ack`, HTTP 200) only after
//! [`Emit::emit`] returned `Ok`, and must never hold accepted data anywhere but in that call.
//!
//! Each input's typed config and its builder live in its own `config` module
//! ([`forward::config`], [`http::config`]), registered in [`crate::config::registry`].

pub mod forward;
pub mod http;

use crate::event::EventBatch;
use std::future::Future;
use std::pin::Pin;

/// A boxed future, as returned by the object-safe traits of this crate.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a batch was not committed. The input must not acknowledge it.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// The buffer is full and `overflow_action` is `throw_exception` (HTTP 503).
    #[error("buffer is full: {0}")]
    Overflow(String),
    /// The batch is larger than a chunk may be.
    #[error("batch too large: {0}")]
    TooLarge(String),
    /// Storage failed (disk full, I/O error) — accepted data stays safe, this batch is refused.
    #[error("storage error: {0}")]
    Storage(String),
    /// No committed destination is reachable right now (e.g. no Raft quorum).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The node is shutting down.
    #[error("shutting down")]
    ShuttingDown,
}

/// The one question inputs ask: store this batch, resolve when it is committed.
pub trait Emit: Send + Sync + 'static {
    fn emit(&self, batch: EventBatch) -> BoxFuture<'_, Result<(), EmitError>>;
}
