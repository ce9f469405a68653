//! The `stdout` output: prints every event of a chunk to the process's standard output.
//!
//! Owns the choice of line layout (Fluentd's `TIME TAG: JSON` line in local time, or the record
//! JSON alone) and the write itself: a chunk is formatted in memory and written with one locked
//! `write_all` + `flush`, so lines of concurrent chunks never interleave. Formatting and the
//! (blocking) write run on the blocking thread pool, never on the runtime. It must not retry:
//! the output driver owns retries. Its typed config and builder: [`config`].

pub mod config;

use crate::buffer::Chunk;
use crate::output::format::{LineFormatter, Zone};
use crate::output::{ChunkOutput, OutputError};
use crate::pipeline::BoxFuture;
use config::{StdoutFormat, StdoutOutputConfig};
use std::io::Write;

/// Writes chunks to standard output.
#[derive(Debug, Clone)]
pub struct StdoutOutput {
    formatter: LineFormatter,
}

impl StdoutOutput {
    pub fn new(cfg: &StdoutOutputConfig) -> Self {
        Self::with_zone(cfg, Zone::Local)
    }

    /// Like [`StdoutOutput::new`], rendering times in `zone` instead of local time.
    pub fn with_zone(cfg: &StdoutOutputConfig, zone: Zone) -> Self {
        let formatter = match cfg.format {
            StdoutFormat::Stdout => LineFormatter::stdout(zone),
            StdoutFormat::Json => LineFormatter::json(),
        };
        StdoutOutput { formatter }
    }

    /// The bytes `StdoutOutput::print` prints for `chunk`.
    pub fn format_chunk(&self, chunk: &Chunk) -> Result<Vec<u8>, OutputError> {
        let mut out = Vec::with_capacity(chunk.entries.len() * 2);
        self.formatter
            .write_entries(&mut out, &chunk.meta.tag, &chunk.entries)?;
        Ok(out)
    }

    /// Print every event of `chunk`; `Ok` once the bytes were handed to stdout and flushed.
    async fn print(&self, chunk: &Chunk) -> Result<(), OutputError> {
        let this = self.clone();
        let chunk = chunk.clone();
        tokio::task::spawn_blocking(move || {
            let text = this.format_chunk(&chunk)?;
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&text)
                .and_then(|_| stdout.flush())
                .map_err(|e| OutputError::io("writing to stdout", e))
        })
        .await
        .map_err(|e| OutputError::Unrecoverable(format!("stdout formatting task failed: {e}")))?
    }
}

impl ChunkOutput for StdoutOutput {
    fn type_name(&self) -> &'static str {
        config::PLUGIN.name
    }

    fn write<'a>(&'a self, chunk: &'a Chunk) -> BoxFuture<'a, Result<(), OutputError>> {
        Box::pin(self.print(chunk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::{ChunkId, ChunkMeta};
    use crate::event::{write_entry, EventTime};
    use bytes::BytesMut;
    use std::time::SystemTime;

    fn chunk() -> Chunk {
        let mut entries = BytesMut::new();
        let rec = rmp_serde::to_vec_named(&serde_json::json!({"k": "v"})).unwrap();
        let t = EventTime {
            secs: 1_704_067_200,
            nanos: 123_000_000,
        };
        write_entry(&mut entries, t, &rec);
        write_entry(&mut entries, t, &rec);
        Chunk {
            meta: ChunkMeta {
                id: ChunkId([7; 16]),
                tag: "app.web".into(),
                timekey: None,
                records: 2,
                bytes: entries.len() as u64,
                created: SystemTime::now(),
            },
            entries: entries.freeze(),
            segments: Vec::new(),
        }
    }

    #[test]
    fn stdout_format_is_fluentds() {
        let out = StdoutOutput::with_zone(
            &StdoutOutputConfig {
                format: StdoutFormat::Stdout,
            },
            Zone::Utc,
        );
        let text = String::from_utf8(out.format_chunk(&chunk()).unwrap()).unwrap();
        assert_eq!(
            text,
            "2024-01-01 00:00:00.123000000 +0000 app.web: {\"k\":\"v\"}\n".repeat(2)
        );
    }

    #[test]
    fn json_format_is_the_record() {
        let out = StdoutOutput::new(&StdoutOutputConfig {
            format: StdoutFormat::Json,
        });
        let text = String::from_utf8(out.format_chunk(&chunk()).unwrap()).unwrap();
        assert_eq!(text, "{\"k\":\"v\"}\n{\"k\":\"v\"}\n");
    }

    #[tokio::test]
    async fn write_succeeds_and_bad_chunk_is_unrecoverable() {
        let out = StdoutOutput::new(&StdoutOutputConfig {
            format: StdoutFormat::Json,
        });
        out.write(&chunk()).await.unwrap();
        let mut bad = chunk();
        bad.entries = bytes::Bytes::from_static(&[0x92, 0x01, 0x01]);
        assert!(matches!(
            out.write(&bad).await,
            Err(OutputError::Unrecoverable(_))
        ));
    }
}
