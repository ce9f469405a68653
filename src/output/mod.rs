//! Outputs: where a `<match>` delivers its chunks.
//!
//! Owns the output plugins (`stdout`, `null`, `file`, `forward`) behind one [`Output`] type, and the
//! [`driver`] that moves chunks from a buffer to an output with retry and `<secondary>`.
//! Each plugin's typed config and builder live in its folder (`stdout::config`, [`null`],
//! `file::config`, `forward::config`, and [`s3`], whose runtime is the cluster's uploader),
//! registered in [`crate::config::registry`]; `retry_*` parameters in [`retry::config`].
//! An output's `write` returns `Ok` only when the chunk is safely delivered (for `file`:
//! written and fsynced), because the driver then deletes the chunk from the buffer.
//! Outputs must not retry by themselves: the driver owns retry and backoff.

pub mod driver;
pub mod file;
pub mod format;
pub mod forward;
pub mod null;
pub mod retry;
pub mod s3;
pub mod safe_name;
pub mod stdout;

use crate::buffer::config::BufferConfig;
use crate::buffer::Chunk;
use crate::config::OutputConfig;

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

/// An output plugin, built once from its typed config.
pub enum Output {
    Stdout(stdout::StdoutOutput),
    Null,
    File(file::FileOutput),
    Forward(forward::ForwardOutput),
}

impl Output {
    /// Build an output; `buffer` tells time-sliced outputs the chunks' timekey.
    pub fn build(cfg: &OutputConfig, buffer: &BufferConfig) -> Result<Output, OutputError> {
        Ok(match cfg {
            OutputConfig::Stdout(c) => Output::Stdout(stdout::StdoutOutput::new(c)),
            OutputConfig::Null => Output::Null,
            OutputConfig::File(c) => Output::File(file::FileOutput::with_time_slicing(
                c,
                buffer.timekey,
                match (buffer.timekey_zone, buffer.timekey_use_utc) {
                    (Some(offset), _) => format::Zone::Fixed(offset),
                    (None, true) => format::Zone::Utc,
                    (None, false) => format::Zone::Local,
                },
            )?),
            OutputConfig::Forward(c) => Output::Forward(forward::ForwardOutput::new(c)?),
            OutputConfig::S3(_) => {
                return Err(OutputError::Unrecoverable(
                    "@type s3 is an upload target of an aggregator cluster; add a <cluster> section (a single node has no s3 output)".into(),
                ))
            }
        })
    }

    /// Finish start-up that needs the network (out_forward's `verify_connection_at_startup`).
    pub async fn start(&self) -> Result<(), OutputError> {
        match self {
            Output::Forward(o) => o.start().await,
            _ => Ok(()),
        }
    }

    /// Notified when a destination that was down comes back (None: this output never
    /// signals it), so the driver can end a backoff early.
    pub fn recovered(&self) -> Option<&tokio::sync::Notify> {
        match self {
            Output::Forward(o) => Some(o.recovered()),
            _ => None,
        }
    }

    /// Whether the output sends origin ids on (see [`crate::origin`]): out_forward with
    /// `require_ack_response`. A buffer whose outputs do not need not keep them.
    pub fn sends_origins(&self) -> bool {
        matches!(self, Output::Forward(f) if f.requires_ack())
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Output::Stdout(_) => "stdout",
            Output::Null => "null",
            Output::File(_) => "file",
            Output::Forward(_) => "forward",
        }
    }

    /// Deliver a chunk; `Ok` means the next hop has it safely (the chunk may be deleted).
    pub async fn write(&self, chunk: &Chunk) -> Result<(), OutputError> {
        match self {
            Output::Stdout(o) => o.write(chunk).await,
            Output::Null => Ok(()),
            Output::File(o) => o.write(chunk).await,
            Output::Forward(o) => o.write(chunk).await,
        }
    }
}
