//! Output driver: moves queued chunks from a buffer to an output, with retry and `<secondary>`.
//!
//! Owns the flush workers of one `<match>` (`flush_thread_count` of them, so one slow write does
//! not hold back the other chunks), the shared [`Backoff`], and the fate of a chunk whose retries
//! ran out: `<secondary>` if configured, otherwise the buffer's quarantine — never a silent
//! drop. A backoff sleep ends early when the output signals that a destination recovered
//! ([`Output::recovered`]). A chunk leaves the buffer (`purge`) only after an output returned
//! `Ok` for it. The driver must not look inside chunks; outputs and buffers own that.

use super::retry::{Backoff, RetryDecision};
use super::{Output, OutputError};
use crate::buffer::{Buffer, Chunk};
use crate::log_limit::WarnLimiter;
use crate::output::retry::RetryConfig;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The flush workers of one `<match>`.
pub struct OutputDriver {
    name: String,
    buffer: Arc<Buffer>,
    output: Output,
    secondary: Option<Output>,
    backoff: Mutex<Backoff>,
    /// "will retry" lines: one per interval during an outage, not one per chunk.
    retry_warning: WarnLimiter,
}

impl OutputDriver {
    /// Start `workers` flush workers. They stop when the buffer's `dequeue` returns None (after
    /// `Buffer::shutdown`) or, abandoning writes in progress, when `abort` is cancelled; chunks
    /// not purged stay in the buffer for the next start.
    pub fn spawn(
        name: String,
        buffer: Arc<Buffer>,
        output: Output,
        secondary: Option<Output>,
        retry: RetryConfig,
        workers: usize,
        abort: CancellationToken,
    ) -> JoinSet<()> {
        let driver = Arc::new(OutputDriver {
            name,
            buffer,
            output,
            secondary,
            backoff: Mutex::new(Backoff::new(retry)),
            retry_warning: WarnLimiter::default(),
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
            // Register for "destination recovered" before reading the gate, so a recovery
            // between the two is not missed; it ends the backoff sleep early.
            let mut recovered = std::pin::pin!(self.output.recovered().map(|n| n.notified()));
            if let Some(n) = recovered.as_mut().as_pin_mut() {
                n.enable();
            }
            let gate = self.backoff.lock().expect("backoff").next_attempt();
            if let Some(at) = gate {
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = async {
                        match recovered.as_mut().as_pin_mut() {
                            Some(n) => n.await,
                            None => std::future::pending().await,
                        }
                    } => {
                        tracing::debug!(output = %self.name, "destination recovered; retrying now");
                    }
                }
            }
            let Some(chunk) = self.buffer.dequeue().await else {
                return;
            };
            match self.output.write(&chunk).await {
                Ok(()) => self.delivered(&chunk, false).await,
                Err(e) => self.failed(chunk, e).await,
            }
        }
    }

    async fn delivered(&self, chunk: &Chunk, by_secondary: bool) {
        let id = chunk.meta.id;
        if let Err(e) = self.buffer.purge(id).await {
            tracing::error!(output = %self.name, chunk_id = %id, error = %e,
                "chunk delivered but could not be removed from the buffer; it may be sent again");
        }
        let mut b = self.backoff.lock().expect("backoff");
        if b.failures() > 0 && !by_secondary {
            tracing::info!(output = %self.name, after_failures = b.failures(), "flush succeeded again");
        }
        b.reset();
    }

    async fn failed(&self, chunk: Chunk, error: OutputError) {
        let id = chunk.meta.id;
        let decision = match &error {
            OutputError::Unrecoverable(_) => RetryDecision::GiveUp,
            _ => self
                .backoff
                .lock()
                .expect("backoff")
                .on_failure(Instant::now()),
        };
        match decision {
            RetryDecision::RetryIn(wait) => {
                if let Some(held_back) = self.retry_warning.check() {
                    tracing::warn!(output = %self.name, chunk_id = %id, records = chunk.meta.records,
                        error = %error, retry_in_secs = wait.as_secs_f64(),
                        similar_failures_not_logged = held_back,
                        "failed to flush chunk; will retry");
                }
                self.buffer.release(id);
            }
            RetryDecision::GiveUp => self.give_up(chunk, error).await,
        }
    }

    /// Retries ran out (or the chunk can never be written): secondary, else quarantine.
    async fn give_up(&self, chunk: Chunk, error: OutputError) {
        let id = chunk.meta.id;
        if let Some(secondary) = &self.secondary {
            match secondary.write(&chunk).await {
                Ok(()) => {
                    tracing::warn!(output = %self.name, chunk_id = %id, records = chunk.meta.records,
                        error = %error, secondary = secondary.type_name(),
                        "retries exhausted; chunk written to <secondary>");
                    self.delivered(&chunk, true).await;
                    return;
                }
                Err(e) => tracing::error!(output = %self.name, chunk_id = %id, error = %e,
                    "<secondary> failed too"),
            }
        }
        match self.buffer.quarantine(id, &error.to_string()).await {
            Ok(path) => tracing::error!(output = %self.name, chunk_id = %id,
                records = chunk.meta.records, error = %error,
                quarantine = ?path, "retries exhausted; chunk moved to quarantine"),
            Err(e) => {
                tracing::error!(output = %self.name, chunk_id = %id, error = %e,
                    "could not quarantine chunk; it stays queued");
                self.buffer.release(id);
            }
        }
    }
}
