//! Buffers: where a `<match>` keeps its chunks between input and output.
//!
//! Owns chunking (by tag and timekey, up to `chunk_limit_size`/`chunk_limit_records`), the
//! staged → queued lifecycle and flush scheduling (`flush_mode`, `flush_interval`,
//! `timekey_wait`), overflow handling (`total_limit_size`, `overflow_action`), and for the file
//! buffer durability: checksummed appends, group commit (one fsync for many appends), resume
//! after a crash, torn-tail repair and quarantine. It must not know what an output does with a
//! chunk, nor retry anything: that is `output::driver`'s job.
//!
//! Life of a chunk: `append` puts entries into a *staged* chunk and returns once they are
//! durable; when the chunk is full or its flush time comes it is *queued*; an output worker
//! `dequeue`s it (it is then *in flight*), and either `purge`s it after the next hop
//! acknowledged it or `release`s it back to the queue to be retried.

pub mod chunk;
pub mod file;
pub mod memory;

use crate::event::EventBatch;
use bytes::Bytes;
use std::fmt;
use std::time::SystemTime;

/// A chunk's identity: 128 random bits, born when the chunk is created and never changed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 16]);

impl ChunkId {
    pub fn random() -> Self {
        ChunkId(rand::random())
    }

    /// The form used as out_forward's `chunk` option (standard base64, with padding).
    pub fn to_base64(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let v = hex::decode(s).ok()?;
        Some(ChunkId(v.try_into().ok()?))
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", self.to_hex())
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// What a chunk is, without its entries.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkMeta {
    pub id: ChunkId,
    pub tag: String,
    /// Start of the time bucket (Unix seconds) when `time` is a chunk key.
    pub timekey: Option<i64>,
    pub records: u64,
    pub bytes: u64,
    pub created: SystemTime,
}

/// A queued chunk handed to an output: its metadata and all its entries, as one
/// PackedForward entry stream (concatenated `[time, record]` msgpack arrays).
#[derive(Debug, Clone)]
pub struct Chunk {
    pub meta: ChunkMeta,
    pub entries: Bytes,
}

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
    #[error("buffer is closed")]
    Closed,
}

impl From<BufferError> for crate::input::EmitError {
    fn from(e: BufferError) -> Self {
        use crate::input::EmitError;
        match e {
            BufferError::Overflow { .. } => EmitError::Overflow(e.to_string()),
            BufferError::TooLarge { .. } => EmitError::TooLarge(e.to_string()),
            BufferError::Io { .. } => EmitError::Storage(e.to_string()),
            BufferError::Closed => EmitError::ShuttingDown,
        }
    }
}

/// What resuming a file buffer found on disk.
#[derive(Debug, Default, Clone)]
pub struct ResumeReport {
    pub chunks: usize,
    pub records: u64,
    /// Chunks whose torn tail (a half-written last append) was cut off.
    pub repaired: usize,
    /// Chunks moved to `quarantine/` (failed checksum or unreadable header).
    pub quarantined: Vec<std::path::PathBuf>,
}
