//! Outputs: where a `<match>` delivers its chunks.
//!
//! Owns the output plugins (`stdout`, `null`, `file`) behind one [`Output`] type, and the
//! [`driver`] that moves chunks from a buffer to an output with retry and `<secondary>`.
//! An output's `write` returns `Ok` only when the chunk is safely delivered (for `file`:
//! written and fsynced), because the driver then deletes the chunk from the buffer.
//! Outputs must not retry by themselves: the driver owns retry and backoff.

pub mod file;
pub mod format;
pub mod stdout;

/// Why an output could not deliver a chunk.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// A failure that may pass (network, disk full, peer down): retry with backoff.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A transient failure described in words (no ack, peer refused): retry with backoff.
    #[error("{0}")]
    Retryable(String),
    /// This chunk can never be delivered by this output (e.g. its bytes cannot be formatted):
    /// hand it to `<secondary>` (or quarantine) at once instead of retrying.
    #[error("unrecoverable: {0}")]
    Unrecoverable(String),
}

impl OutputError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        OutputError::Io {
            context: context.into(),
            source,
        }
    }
}
