//! The buffer's error type, and how it maps onto the pipeline's [`EmitError`] (what an input
//! tells its sender).
//!
//! Owns only the error variants and that mapping; it must not decide what a caller does about
//! an error (retry, refuse, close): that is the input's and the output driver's job.

use crate::pipeline::EmitError;

/// Errors from a buffer.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    #[error("buffer total_limit_size reached ({limit} bytes)")]
    Overflow { limit: u64 },
    #[error("batch of {size} bytes exceeds chunk_limit_size {limit}")]
    TooLarge { size: u64, limit: u64 },
    #[error("buffer I/O error on {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A batch with a source position must go into one append of one chunk, and this one
    /// cannot (larger than a chunk, or spanning timekey buckets): send it in smaller parts.
    #[error("batch of {size} bytes with a source position cannot be stored as one append (chunk limit {limit} bytes, or it spans timekey buckets); send it in smaller parts")]
    MarkSpansChunks { size: u64, limit: u64 },
    #[error("buffer is closed")]
    Closed,
    /// The batch's entry stream could not be walked (inputs validate entries, so this means a
    /// caller broke that contract).
    #[error("invalid entry stream: {0}")]
    InvalidEntries(String),
}

impl From<BufferError> for EmitError {
    fn from(e: BufferError) -> Self {
        match e {
            BufferError::Overflow { .. } => EmitError::Overflow(e.to_string()),
            BufferError::TooLarge { .. } | BufferError::MarkSpansChunks { .. } => {
                EmitError::TooLarge(e.to_string())
            }
            BufferError::Io { .. } => EmitError::Storage(e.to_string()),
            BufferError::Closed => EmitError::ShuttingDown,
            BufferError::InvalidEntries(_) => EmitError::Storage(e.to_string()),
        }
    }
}
