//! Outputs: where a `<match>` delivers its chunks.
//!
//! Owns what every output plugin implements ([`ChunkOutput`] for the runtime, [`OutputSpec`] for
//! its typed config), the one [`Output`] type the node and driver see, and the [`driver`] that
//! moves chunks from a buffer to an output with retry and `<secondary>`. The plugins
//! (`stdout`, `null`, `file`, `forward`, `s3`) live in their folders.
//! Each plugin's typed config and builder live in its folder (`stdout::config`, [`null`],
//! `file::config`, `forward::config`, and [`s3`], whose runtime is the cluster's uploader),
//! registered in [`crate::config::registry`]; the retry/backoff mechanism is [`crate::retry`].
//! An output's `write` returns `Ok` only when the chunk is safely delivered (for `file`:
//! written and fsynced), because the driver then deletes the chunk from the buffer.
//! Outputs must not retry by themselves: the driver owns retry and backoff.

pub mod driver;
pub mod file;
pub mod format;
pub mod forward;
pub mod null;
pub mod s3;
pub mod safe_name;
pub mod stdout;

use crate::buffer::config::BufferConfig;
use crate::buffer::Chunk;
use crate::pipeline::BoxFuture;
use tokio::sync::Notify;

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
    /// This chunk can never be delivered by this output (e.g. its bytes cannot be formatted,
    /// an entry is larger than the receiver accepts): hand it to `<secondary>` (or
    /// quarantine) at once instead of retrying. See also [`OutputError::is_permanent`].
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

    /// Whether retrying cannot help: the chunk is set aside at once (`<secondary>`, else
    /// quarantine) instead of holding a place in the retry schedule. Besides
    /// [`OutputError::Unrecoverable`], I/O errors by which the OS refuses the name or the
    /// request itself (ENAMETOOLONG, EINVAL, EILSEQ) are permanent: the same chunk gets the
    /// same name and the same refusal every time.
    pub fn is_permanent(&self) -> bool {
        match self {
            OutputError::Unrecoverable(_) => true,
            OutputError::Retryable(_) => false,
            OutputError::Io { source, .. } => io_error_is_permanent(source),
        }
    }
}

/// The deflate level of the gzip an output writes: out_file's `compress gzip` and the cluster's
/// upload objects. 1, deflate's fastest: with level 6 (zlib's default, Fluentd's) an
/// aggregator writing access-log lines through out_file spent 8.8 CPU s per million events
/// instead of 1.9, and the pipeline fell from 705 k to 191 k events/s (docs/benchmarks.md,
/// session 17).
pub const GZIP_LEVEL: flate2::Compression = flate2::Compression::new(1);

/// Whether the OS refused the name or the request itself (ENAMETOOLONG, EINVAL, EILSEQ): the
/// same item gets the same name and the same refusal every time, so retrying cannot help.
/// Shared by [`OutputError::is_permanent`] and the cluster uploader.
pub fn io_error_is_permanent(error: &std::io::Error) -> bool {
    /// Linux errno values (ENAMETOOLONG, EINVAL, EILSEQ).
    const REFUSED: [i32; 3] = [36, 22, 84];
    matches!(
        error.kind(),
        std::io::ErrorKind::InvalidFilename | std::io::ErrorKind::InvalidInput
    ) || error.raw_os_error().is_some_and(|e| REFUSED.contains(&e))
}

/// What an output plugin's runtime does. Each plugin implements it in its own folder; the
/// driver and the node see only [`Output`].
pub trait ChunkOutput: Send + Sync {
    /// The `@type` name, for logs and metrics.
    fn type_name(&self) -> &'static str;

    /// Deliver a chunk; `Ok` means the next hop has it safely (the chunk may be deleted).
    fn write<'a>(&'a self, chunk: &'a Chunk) -> BoxFuture<'a, Result<(), OutputError>>;

    /// Finish start-up that needs the network (out_forward's `verify_connection_at_startup`).
    fn start(&self) -> BoxFuture<'_, Result<(), OutputError>> {
        Box::pin(async { Ok(()) })
    }

    /// Notified when a destination that was down comes back (None: this output never
    /// signals it), so the driver can end a backoff early.
    fn recovered(&self) -> Option<&Notify> {
        None
    }

    /// Whether the output sends origin ids on (see [`crate::origin`]). A buffer whose outputs
    /// do not need not keep them.
    fn sends_origins(&self) -> bool {
        false
    }

    /// The health of the servers it sends to, for metrics (out_forward).
    fn server_status(&self) -> Option<forward::ForwardStatus> {
        None
    }
}

/// An output plugin's typed config, as the registry ([`crate::config::registry`]) holds it:
/// what the node builds from it and how `check-config` names it. Implemented beside each
/// plugin's config.
pub trait OutputSpec {
    /// The `@type` name.
    fn type_name(&self) -> &'static str;

    /// Build the runtime; `buffer` tells time-sliced outputs the chunks' timekey.
    fn build(&self, buffer: &BufferConfig) -> Result<Output, OutputError>;

    /// A short description for `lograft check-config` (one line, plus one per server for
    /// out_forward).
    fn describe(&self) -> String;
}

/// An output plugin's runtime, built once from its typed config (`cfg.spec().build(...)`).
pub type Output = Box<dyn ChunkOutput>;
