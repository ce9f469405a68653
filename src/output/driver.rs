//! Output driver: moves queued chunks from a buffer to an output, with retry and `<secondary>`.
//!
//! Owns the flush workers of one `<match>` (`flush_thread_count` of them, so one slow write does
//! not hold back the other chunks), the retry state of each failing chunk, and the fate of a
//! chunk that cannot be delivered: `<secondary>` if configured, otherwise the buffer's
//! quarantine — never a silent drop.
//!
//! Isolation: a chunk that fails transiently gets its own [`Backoff`] and goes back to the
//! buffer with a not-before time ([`Buffer::release_after`]); the workers meanwhile deliver
//! every other chunk, so one chunk (one tag, one bad destination path) in backoff never holds
//! back the others. A chunk whose failure retrying cannot fix ([`OutputError::is_permanent`])
//! is set aside at once, alone, with an error line naming the chunk, the reason and its number
//! of events. When the output signals that a destination recovered ([`super::ChunkOutput::recovered`]),
//! every waiting chunk becomes due at once. A chunk leaves the buffer (`purge`) only after an
//! output returned `Ok` for it. The driver must not look inside chunks; outputs and buffers own
//! that.

use super::{Output, OutputError};
use crate::buffer::{Buffer, Chunk, ChunkId};
use crate::log_limit::WarnLimiter;
use crate::observe::OutputMetrics;
use crate::retry::RetryConfig;
use crate::retry::{Backoff, RetryDecision};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Retry states kept before the driver forgets those of chunks the buffer no longer holds
/// (e.g. dropped by `overflow_action drop_oldest_chunk`).
const RETRY_STATES_BEFORE_PRUNE: usize = 1024;

/// Why a chunk is set aside.
#[derive(Debug, Clone, Copy, PartialEq)]
enum SetAside {
    /// Its retries ran out (`retry_timeout` / `retry_max_times`).
    RetriesExhausted,
    /// Retrying cannot help (see [`OutputError::is_permanent`]).
    Permanent,
}

impl SetAside {
    fn describe(self) -> &'static str {
        match self {
            SetAside::RetriesExhausted => "retries exhausted",
            SetAside::Permanent => "permanent error, not retried",
        }
    }
}

/// The flush workers of one `<match>`.
pub struct OutputDriver {
    name: String,
    buffer: Arc<Buffer>,
    output: Output,
    secondary: Option<Output>,
    retry: RetryConfig,
    /// Retry state of each chunk that failed since it was last delivered.
    retries: Mutex<HashMap<ChunkId, Backoff>>,
    /// "will retry" lines: one per interval during an outage, not one per chunk.
    retry_warning: WarnLimiter,
    /// Counted per chunk: written, failed, retried, set aside.
    metrics: OutputMetrics,
}

impl OutputDriver {
    /// Start `workers` flush workers. They stop when the buffer's `dequeue` returns None (after
    /// `Buffer::shutdown`) or, abandoning writes in progress, when `abort` is cancelled; chunks
    /// not purged stay in the buffer for the next start.
    // One argument per part of a `<match>`; node.rs is the only caller.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn spawn(
        name: String,
        buffer: Arc<Buffer>,
        output: Output,
        secondary: Option<Output>,
        retry: RetryConfig,
        workers: usize,
        abort: CancellationToken,
        metrics: OutputMetrics,
    ) -> JoinSet<()> {
        let driver = Arc::new(OutputDriver {
            name,
            buffer,
            output,
            secondary,
            retry,
            retries: Mutex::new(HashMap::new()),
            retry_warning: WarnLimiter::default(),
            metrics,
        });
        let mut set = JoinSet::new();
        for _ in 0..workers.max(1) {
            let d = driver.clone();
            let abort = abort.clone();
            set.spawn(async move {
                tokio::select! {
                    _ = d.worker() => {}
                    _ = abort.cancelled() => {}
                }
            });
        }
        set
    }

    async fn worker(&self) {
        loop {
            // Waiting for a chunk also listens for "destination recovered", which makes the
            // chunks in backoff due now. (`dequeue` is cancel-safe: a chunk being read when
            // the recovery arrives goes back to the queue.)
            let recovered = async {
                match self.output.recovered() {
                    Some(n) => n.notified().await,
                    None => std::future::pending().await,
                }
            };
            let chunk = tokio::select! {
                chunk = self.buffer.dequeue() => chunk,
                _ = recovered => {
                    tracing::debug!(output = %self.name, "destination recovered; retrying waiting chunks now");
                    self.buffer.retry_now();
                    continue;
                }
            };
            let Some(chunk) = chunk else {
                return;
            };
            let started = Instant::now();
            match self.output.write(&chunk).await {
                Ok(()) => {
                    self.metrics
                        .written(chunk.meta.records, chunk.meta.bytes, started.elapsed());
                    self.delivered(&chunk, false).await
                }
                Err(e) => {
                    self.metrics.failed(&e, started.elapsed());
                    self.failed(chunk, e).await
                }
            }
        }
    }

    fn retries(&self) -> std::sync::MutexGuard<'_, HashMap<ChunkId, Backoff>> {
        self.retries.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn delivered(&self, chunk: &Chunk, by_secondary: bool) {
        let id = chunk.meta.id;
        if let Err(e) = self.buffer.purge(id).await {
            tracing::error!(output = %self.name, chunk_id = %id, error = %e,
                "chunk delivered but could not be removed from the buffer; it may be sent again");
        }
        let past = self.retries().remove(&id);
        if let Some(b) = past.filter(|_| !by_secondary) {
            tracing::info!(output = %self.name, chunk_id = %id, after_failures = b.failures(),
                "flush succeeded again");
        }
    }

    async fn failed(&self, chunk: Chunk, error: OutputError) {
        let id = chunk.meta.id;
        if error.is_permanent() {
            self.retries().remove(&id);
            return self.set_aside(chunk, error, SetAside::Permanent).await;
        }
        let decision = {
            let mut retries = self.retries();
            if retries.len() >= RETRY_STATES_BEFORE_PRUNE && !retries.contains_key(&id) {
                retries.retain(|held, _| self.buffer.holds(*held));
            }
            let decision = retries
                .entry(id)
                .or_insert_with(|| Backoff::new(self.retry.clone()))
                .on_failure(Instant::now());
            if decision == RetryDecision::GiveUp {
                retries.remove(&id);
            }
            decision
        };
        match decision {
            RetryDecision::RetryIn(wait) => {
                if let Some(held_back) = self.retry_warning.check() {
                    tracing::warn!(output = %self.name, chunk_id = %id, tag = %chunk.meta.tag,
                        records = chunk.meta.records, error = %error,
                        retry_in_secs = wait.as_secs_f64(),
                        similar_failures_not_logged = held_back,
                        "failed to flush chunk; will retry (other chunks go on meanwhile)");
                }
                self.metrics.retry_in(wait);
                self.buffer
                    .release_after(id, tokio::time::Instant::now() + wait);
            }
            RetryDecision::GiveUp => {
                self.set_aside(chunk, error, SetAside::RetriesExhausted)
                    .await
            }
        }
    }

    /// The chunk cannot be delivered (retries ran out, or never can be): secondary, else
    /// quarantine. Only this chunk is moved.
    async fn set_aside(&self, chunk: Chunk, error: OutputError, why: SetAside) {
        let id = chunk.meta.id;
        let why = why.describe();
        if let Some(secondary) = &self.secondary {
            match secondary.write(&chunk).await {
                Ok(()) => {
                    tracing::error!(output = %self.name, chunk_id = %id, tag = %chunk.meta.tag,
                        records = chunk.meta.records, error = %error, why,
                        secondary = secondary.type_name(),
                        "chunk cannot be delivered; written to <secondary>");
                    self.metrics.set_aside(true, chunk.meta.records);
                    self.delivered(&chunk, true).await;
                    return;
                }
                Err(e) => tracing::error!(output = %self.name, chunk_id = %id, error = %e,
                    "<secondary> failed too"),
            }
        }
        match self.buffer.quarantine(id, &error.to_string()).await {
            Ok(path) => {
                self.metrics.set_aside(false, chunk.meta.records);
                tracing::error!(output = %self.name, chunk_id = %id,
                tag = %chunk.meta.tag, records = chunk.meta.records, error = %error, why,
                quarantine = ?path, "chunk cannot be delivered; moved to quarantine")
            }
            Err(e) => {
                tracing::error!(output = %self.name, chunk_id = %id, error = %e,
                    "could not quarantine chunk; it stays queued");
                self.buffer.release(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::config::{BufferConfig, BufferKind};
    use crate::buffer::Buffer;
    use crate::event::{write_entry, EventBatch, EventTime};
    use crate::output::file::config::{FileFormat, FileOutputConfig};
    use crate::output::file::FileOutput;
    use bytes::BytesMut;
    use std::path::Path;
    use std::time::Duration;

    fn batch(tag: &str, n: u64) -> EventBatch {
        let mut out = BytesMut::new();
        for i in 0..n {
            let rec = rmp_serde::to_vec_named(&serde_json::json!({ "n": i })).unwrap();
            write_entry(
                &mut out,
                EventTime {
                    secs: 1_700_000_000,
                    nanos: 0,
                },
                &rec,
            );
        }
        EventBatch {
            tag: tag.into(),
            entries: out.freeze(),
            count: n as u32,
            origin_chunk: None,
            segments: Vec::new(),
        }
    }

    fn file_output(path: &Path) -> Output {
        let cfg = FileOutputConfig {
            path: path.display().to_string(),
            format: FileFormat::Json,
            append: true,
            compress: crate::config::Compression::Text,
            add_path_suffix: false,
            path_suffix: String::new(),
        };
        Box::new(
            FileOutput::build(
                &cfg,
                None,
                crate::output::format::Zone::Local,
                crate::output::format::Zone::Local,
            )
            .unwrap(),
        )
    }

    async fn buffer(dir: &Path) -> Arc<Buffer> {
        let mut cfg = BufferConfig::defaults(BufferKind::File {
            path: Some(dir.to_path_buf()),
        });
        cfg.flush_interval = Duration::from_millis(50);
        Buffer::open(&cfg, Some(dir.to_path_buf()), "test")
            .await
            .unwrap()
            .0
    }

    fn lines(path: &Path) -> usize {
        std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
    }

    async fn wait_for(mut f: impl FnMut() -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < deadline {
            if f() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        f()
    }

    #[tokio::test]
    async fn a_chunk_in_backoff_does_not_hold_back_other_tags() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        // Tag "blocked" cannot be written: a file stands where its directory should be.
        std::fs::write(out.join("blocked"), b"not a directory").unwrap();
        let buf = buffer(&dir.path().join("buf")).await;
        let abort = CancellationToken::new();
        let retry = RetryConfig {
            wait: Duration::from_secs(30),
            randomize: false,
            ..RetryConfig::default()
        };
        let mut workers = OutputDriver::spawn(
            "t".into(),
            buf.clone(),
            file_output(&out.join("${tag}/f")),
            None,
            retry,
            1,
            abort.clone(),
            OutputMetrics::detached(),
        );
        buf.append(&batch("blocked", 3)).await.unwrap();
        // Let the blocked chunk fail first and go into its 30 s backoff.
        assert!(
            wait_for(|| buf.stats().queued_chunks == 1 && buf.stats().in_flight_chunks == 0).await
        );
        for round in 0..3 {
            buf.append(&batch("fine", 2)).await.unwrap();
            buf.append(&batch("other", 1)).await.unwrap();
            assert!(
                wait_for(|| lines(&out.join("fine/f")) == 2 * (round + 1)
                    && lines(&out.join("other/f")) == round + 1)
                .await,
                "other tags must be delivered while 'blocked' waits"
            );
        }
        // The blocked chunk is still waiting (not lost, not quarantined).
        assert!(buf.stats().records >= 3);
        assert!(!dir.path().join("buf/quarantine").exists());
        // Once the obstacle is gone and the chunk is due, it is delivered.
        std::fs::remove_file(out.join("blocked")).unwrap();
        buf.retry_now();
        assert!(wait_for(|| lines(&out.join("blocked/f")) == 3).await);
        abort.cancel();
        while workers.join_next().await.is_some() {}
    }

    #[tokio::test]
    async fn a_permanent_failure_is_quarantined_at_once_and_alone() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        // The literal text after ${tag} makes the name of a long tag's directory longer than
        // the OS allows (ENAMETOOLONG); short tags fit.
        let pattern = out.join(format!("${{tag}}{}/f", "p".repeat(100)));
        let buf = buffer(&dir.path().join("buf")).await;
        let abort = CancellationToken::new();
        let mut workers = OutputDriver::spawn(
            "t".into(),
            buf.clone(),
            file_output(&pattern),
            None,
            RetryConfig::default(),
            1,
            abort.clone(),
            OutputMetrics::detached(),
        );
        let long = "l".repeat(300);
        buf.append(&batch(&long, 4)).await.unwrap();
        buf.append(&batch("short", 2)).await.unwrap();
        let short = out.join(format!("short{}/f", "p".repeat(100)));
        assert!(wait_for(|| lines(&short) == 2).await);
        let quarantine = dir.path().join("buf/quarantine");
        assert!(
            wait_for(|| std::fs::read_dir(&quarantine).is_ok_and(|d| d.count() >= 1)).await,
            "the long tag's chunk goes to quarantine without waiting for retries"
        );
        assert!(wait_for(|| buf.stats().records == 0).await);
        abort.cancel();
        while workers.join_next().await.is_some() {}
    }
}
