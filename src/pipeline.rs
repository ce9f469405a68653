//! The pipeline contract: "store this batch and tell me when it is committed".
//!
//! Every input asks the rest of the node this one question through [`Emit`]. On a forwarder
//! the answer comes from the router and the file buffer (appended and fsynced); on an
//! aggregator from the Raft cluster (replicated to a majority). An input sends its
//! acknowledgement (Forward `ack`, HTTP 200) only after [`Emit::emit`] returned `Ok`, and must
//! never hold accepted data anywhere but in that call; on `Err` ([`EmitError`]) it must not
//! acknowledge.
//!
//! Owns only the contract (the trait, its error, the boxed future it returns). It sits below
//! inputs, router, buffer and cluster: it must not import any of them.

use crate::event::EventBatch;
use std::collections::HashMap;
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

/// A position in an input's source (e.g. a file's inode and byte offset) to be committed
/// *together with* a batch: after a crash, a position that is durable means its batch is
/// durable, and the other way round. Positions only grow: recovering takes the maximum per key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMark {
    /// Names the position (its input and, e.g., the file); opaque to the rest of the node.
    pub key: String,
    pub position: u64,
}

/// The one question inputs ask: store this batch, resolve when it is committed.
pub trait Emit: Send + Sync + 'static {
    fn emit(&self, batch: EventBatch) -> BoxFuture<'_, Result<(), EmitError>>;

    /// Like [`Emit::emit`], and commit `mark` atomically with the batch where the destination
    /// can (a file buffer: one checksummed, fsynced append holds both). A batch too big to be
    /// committed as one unit is refused with [`EmitError::TooLarge`]: send smaller parts.
    /// Destinations that cannot keep marks (the default) just emit the batch; they report
    /// `false` from [`Emit::keeps_marks`].
    fn emit_marked(
        &self,
        batch: EventBatch,
        mark: SourceMark,
    ) -> BoxFuture<'_, Result<(), EmitError>> {
        let _ = mark;
        self.emit(batch)
    }

    /// Whether [`Emit::emit_marked`] commits marks with the data.
    fn keeps_marks(&self) -> bool {
        false
    }

    /// The marks committed before this start (maximum per key), for inputs to resume from.
    fn recovered_marks(&self) -> HashMap<String, u64> {
        HashMap::new()
    }
}
