//! The counters components update as they work, and the families they belong to.
//!
//! Owns the metric names and labels of everything counted on the way (inputs, outputs, the
//! cluster's uploads and proposals), the handles each component holds (counters resolved once,
//! at build time), and [`MeteredEmit`], which counts an input's batches around its
//! [`Emit`]. Updating a handle is a relaxed atomic add; it must never take a lock or allocate.
//! Values that exist as state elsewhere are not counted here but read at scrape time
//! (`collect`).

use super::histogram::AtomicHistogram;
use crate::event::EventBatch;
use crate::output::OutputError;
use crate::pipeline::{BoxFuture, Emit, EmitError, SourceMark};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// `plugin_id`, `type`: every plugin metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PluginLabels {
    pub(crate) plugin_id: String,
    pub(crate) r#type: String,
}

/// A plugin's labels plus a bounded `reason` or `kind`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabels {
    pub(crate) plugin_id: String,
    pub(crate) r#type: String,
    pub(crate) reason: String,
}

type Counters = Family<PluginLabels, Counter>;
type Reasons = Family<ReasonLabels, Counter>;
type Seconds = Gauge<f64, AtomicU64>;

/// Every family updated on the way; registered once per node.
pub(crate) struct Families {
    input_events: Counters,
    input_bytes: Counters,
    input_chunks: Counters,
    input_acks: Counters,
    input_rejections: Reasons,
    input_connections: Family<PluginLabels, Gauge>,
    output_events: Counters,
    output_bytes: Counters,
    output_chunks: Counters,
    output_flush: Family<PluginLabels, AtomicHistogram>,
    output_errors: Reasons,
    output_retries: Counters,
    output_backoff: Family<PluginLabels, Seconds>,
    output_set_aside_chunks: Reasons,
    output_set_aside_events: Reasons,
    output_secondary_chunks: Counters,
    cluster_uploaded_objects: Counter,
    cluster_uploaded_bytes: Counter,
    cluster_uploaded_events: Counter,
    cluster_upload_retries: Counter,
    cluster_upload_failing: Gauge,
    cluster_dedup_hits: Counter,
    cluster_propose: AtomicHistogram,
    cluster_propose_failures: Counter,
}

impl Families {
    pub(crate) fn register(r: &mut Registry) -> Self {
        let f = Families {
            input_events: Family::default(),
            input_bytes: Family::default(),
            input_chunks: Family::default(),
            input_acks: Family::default(),
            input_rejections: Family::default(),
            input_connections: Family::default(),
            output_events: Family::default(),
            output_bytes: Family::default(),
            output_chunks: Family::default(),
            output_flush: Family::new_with_constructor(AtomicHistogram::durations),
            output_errors: Family::default(),
            output_retries: Family::default(),
            output_backoff: Family::default(),
            output_set_aside_chunks: Family::default(),
            output_set_aside_events: Family::default(),
            output_secondary_chunks: Family::default(),
            cluster_uploaded_objects: Counter::default(),
            cluster_uploaded_bytes: Counter::default(),
            cluster_uploaded_events: Counter::default(),
            cluster_upload_retries: Counter::default(),
            cluster_upload_failing: Gauge::default(),
            cluster_dedup_hits: Counter::default(),
            cluster_propose: AtomicHistogram::durations(),
            cluster_propose_failures: Counter::default(),
        };
        r.register(
            "input_events",
            "Events accepted by an input (committed or not)",
            f.input_events.clone(),
        );
        r.register(
            "input_bytes",
            "Entry bytes of the events accepted by an input",
            f.input_bytes.clone(),
        );
        r.register(
            "input_chunks",
            "Batches (Forward frames, HTTP requests) an input handed to the node",
            f.input_chunks.clone(),
        );
        r.register(
            "input_acks",
            "Batches committed and acknowledged (Forward ack, HTTP 2xx)",
            f.input_acks.clone(),
        );
        r.register(
            "input_rejections",
            "Batches or connections an input refused, by reason",
            f.input_rejections.clone(),
        );
        r.register(
            "input_open_connections",
            "Connections an input holds open now",
            f.input_connections.clone(),
        );
        r.register(
            "output_events",
            "Events an output wrote (acknowledged by the destination)",
            f.output_events.clone(),
        );
        r.register(
            "output_bytes",
            "Entry bytes of the chunks an output wrote",
            f.output_bytes.clone(),
        );
        r.register(
            "output_chunks",
            "Chunks an output wrote",
            f.output_chunks.clone(),
        );
        r.register(
            "output_flush_seconds",
            "Time to write one chunk, successful or not",
            f.output_flush.clone(),
        );
        r.register(
            "output_errors",
            "Failed chunk writes, by kind (io, retryable, unrecoverable)",
            f.output_errors.clone(),
        );
        r.register(
            "output_retries",
            "Chunk writes scheduled for retry after a failure",
            f.output_retries.clone(),
        );
        r.register(
            "output_backoff_seconds",
            "The wait before the last failed chunk's next try (0 after a success)",
            f.output_backoff.clone(),
        );
        r.register(
            "output_set_aside_chunks",
            "Chunks that could not be delivered, by where they went (secondary, quarantine)",
            f.output_set_aside_chunks.clone(),
        );
        r.register(
            "output_set_aside_events",
            "Events of the chunks that could not be delivered, by where they went",
            f.output_set_aside_events.clone(),
        );
        r.register(
            "output_secondary_chunks",
            "Chunks written to <secondary>",
            f.output_secondary_chunks.clone(),
        );
        r.register(
            "cluster_uploaded_objects",
            "Objects this node uploaded as leader (batches confirmed)",
            f.cluster_uploaded_objects.clone(),
        );
        r.register(
            "cluster_uploaded_bytes",
            "Entry bytes of the batches this node uploaded as leader",
            f.cluster_uploaded_bytes.clone(),
        );
        r.register(
            "cluster_uploaded_events",
            "Events of the batches this node uploaded as leader",
            f.cluster_uploaded_events.clone(),
        );
        r.register(
            "cluster_upload_retries",
            "Batch uploads that failed and will be retried",
            f.cluster_upload_retries.clone(),
        );
        r.register(
            "cluster_upload_failing_batches",
            "Batches whose last upload attempt failed (waiting in backoff)",
            f.cluster_upload_failing.clone(),
        );
        r.register(
            "cluster_dedup_hits",
            "Chunks the state machine answered as duplicates (a resend of a stored chunk)",
            f.cluster_dedup_hits.clone(),
        );
        r.register(
            "cluster_propose_seconds",
            "Time to commit one chunk through the Raft log (from this node)",
            f.cluster_propose.clone(),
        );
        r.register(
            "cluster_propose_failures",
            "Chunks the cluster could not commit (no quorum, timeout, stopped)",
            f.cluster_propose_failures.clone(),
        );
        f
    }
}

fn labels(plugin_id: &str, type_name: &str) -> PluginLabels {
    PluginLabels {
        plugin_id: plugin_id.to_string(),
        r#type: type_name.to_string(),
    }
}

fn reason(l: &PluginLabels, reason: &str) -> ReasonLabels {
    ReasonLabels {
        plugin_id: l.plugin_id.clone(),
        r#type: l.r#type.clone(),
        reason: reason.to_string(),
    }
}

/// Why an input refused something (the `reason` label; a closed set).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Rejection {
    /// The buffer is full (`overflow_action throw_exception`).
    Overflow,
    TooLarge,
    Storage,
    /// No quorum / no destination.
    Unavailable,
    ShuttingDown,
    /// Undecodable frame or body.
    BadInput,
    /// `<security>` handshake refused.
    Handshake,
    /// Over `max_connections`.
    ConnectionLimit,
}

const REJECTIONS: [(Rejection, &str); 8] = [
    (Rejection::Overflow, "overflow"),
    (Rejection::TooLarge, "too_large"),
    (Rejection::Storage, "storage"),
    (Rejection::Unavailable, "unavailable"),
    (Rejection::ShuttingDown, "shutting_down"),
    (Rejection::BadInput, "bad_input"),
    (Rejection::Handshake, "handshake_refused"),
    (Rejection::ConnectionLimit, "connection_limit"),
];

impl Rejection {
    fn of(e: &EmitError) -> Self {
        match e {
            EmitError::Overflow(_) => Rejection::Overflow,
            EmitError::TooLarge(_) => Rejection::TooLarge,
            EmitError::Storage(_) => Rejection::Storage,
            EmitError::Unavailable(_) => Rejection::Unavailable,
            EmitError::ShuttingDown => Rejection::ShuttingDown,
        }
    }
}

/// One input's counters.
#[derive(Clone, Debug)]
pub(crate) struct InputMetrics {
    pub(crate) events: Counter,
    pub(crate) bytes: Counter,
    pub(crate) chunks: Counter,
    pub(crate) acks: Counter,
    rejections: Arc<[Counter; 8]>,
    pub(crate) connections: Gauge,
}

impl InputMetrics {
    pub(crate) fn new(f: &Families, plugin_id: &str, type_name: &str) -> Self {
        let l = labels(plugin_id, type_name);
        InputMetrics {
            events: f.input_events.get_or_create_owned(&l),
            bytes: f.input_bytes.get_or_create_owned(&l),
            chunks: f.input_chunks.get_or_create_owned(&l),
            acks: f.input_acks.get_or_create_owned(&l),
            rejections: Arc::new(
                REJECTIONS.map(|(_, r)| f.input_rejections.get_or_create_owned(&reason(&l, r))),
            ),
            connections: f.input_connections.get_or_create_owned(&l),
        }
    }

    /// Handles registered nowhere (an input built without a node, e.g. in unit tests).
    pub(crate) fn detached() -> Self {
        let mut r = Registry::default();
        InputMetrics::new(&Families::register(&mut r), "detached", "none")
    }

    pub(crate) fn rejected(&self, why: Rejection) {
        self.rejections[why as usize].inc();
    }

    /// Counts one open connection until dropped.
    pub(crate) fn connection(&self) -> OpenConnection {
        self.connections.inc();
        OpenConnection(self.connections.clone())
    }
}

/// An open connection, counted in `lograft_input_open_connections` while it lives.
pub(crate) struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// An input's [`Emit`], counting each batch: accepted (events, bytes, chunks) before the
/// commit, then acknowledged or rejected (by reason) after it.
pub(crate) struct MeteredEmit {
    inner: Arc<dyn Emit>,
    metrics: InputMetrics,
}

impl MeteredEmit {
    pub(crate) fn wrap(inner: Arc<dyn Emit>, metrics: InputMetrics) -> Arc<dyn Emit> {
        Arc::new(MeteredEmit { inner, metrics })
    }
}

impl MeteredEmit {
    /// Count a batch of `(events, bytes)` as accepted, and its commit (`committed`) as acknowledged or rejected.
    fn metered<'a>(
        &'a self,
        (events, bytes): (u32, usize),
        committed: BoxFuture<'a, Result<(), EmitError>>,
    ) -> BoxFuture<'a, Result<(), EmitError>> {
        self.metrics.events.inc_by(events as u64);
        self.metrics.bytes.inc_by(bytes as u64);
        self.metrics.chunks.inc();
        Box::pin(async move {
            let result = committed.await;
            match &result {
                Ok(()) => {
                    self.metrics.acks.inc();
                }
                Err(e) => self.metrics.rejected(Rejection::of(e)),
            }
            result
        })
    }
}

impl Emit for MeteredEmit {
    fn emit(&self, batch: EventBatch) -> BoxFuture<'_, Result<(), EmitError>> {
        let size = (batch.count, batch.entries.len());
        self.metered(size, self.inner.emit(batch))
    }

    // The source positions of inputs that commit them with their batches (tail) pass through
    // unchanged: without them such an input falls back to at-least-once.
    fn emit_marked(
        &self,
        batch: EventBatch,
        mark: SourceMark,
    ) -> BoxFuture<'_, Result<(), EmitError>> {
        let size = (batch.count, batch.entries.len());
        self.metered(size, self.inner.emit_marked(batch, mark))
    }

    fn keeps_marks(&self) -> bool {
        self.inner.keeps_marks()
    }

    fn recovered_marks(&self) -> HashMap<String, u64> {
        self.inner.recovered_marks()
    }
}

/// One output's (one `<match>`'s) counters.
#[derive(Clone, Debug)]
pub(crate) struct OutputMetrics {
    pub(crate) events: Counter,
    pub(crate) bytes: Counter,
    pub(crate) chunks: Counter,
    pub(crate) flush: AtomicHistogram,
    errors: Arc<[Counter; 3]>,
    pub(crate) retries: Counter,
    pub(crate) backoff: Seconds,
    /// `[secondary, quarantine]` × (chunks, events).
    set_aside: Arc<[(Counter, Counter); 2]>,
    pub(crate) secondary_chunks: Counter,
}

impl OutputMetrics {
    pub(crate) fn new(f: &Families, plugin_id: &str, type_name: &str) -> Self {
        let l = labels(plugin_id, type_name);
        OutputMetrics {
            events: f.output_events.get_or_create_owned(&l),
            bytes: f.output_bytes.get_or_create_owned(&l),
            chunks: f.output_chunks.get_or_create_owned(&l),
            flush: f.output_flush.get_or_create_owned(&l),
            errors: Arc::new(
                ["io", "retryable", "unrecoverable"]
                    .map(|k| f.output_errors.get_or_create_owned(&reason(&l, k))),
            ),
            retries: f.output_retries.get_or_create_owned(&l),
            backoff: f.output_backoff.get_or_create_owned(&l),
            set_aside: Arc::new(["secondary", "quarantine"].map(|k| {
                let r = reason(&l, k);
                (
                    f.output_set_aside_chunks.get_or_create_owned(&r),
                    f.output_set_aside_events.get_or_create_owned(&r),
                )
            })),
            secondary_chunks: f.output_secondary_chunks.get_or_create_owned(&l),
        }
    }

    /// A chunk was written.
    pub(crate) fn written(&self, events: u64, bytes: u64, took: Duration) {
        self.events.inc_by(events);
        self.bytes.inc_by(bytes);
        self.chunks.inc();
        self.flush.observe_duration(took);
        self.backoff.set(0.0);
    }

    /// A write failed after `took`.
    pub(crate) fn failed(&self, error: &OutputError, took: Duration) {
        self.flush.observe_duration(took);
        let kind = match error {
            OutputError::Io { .. } => 0,
            OutputError::Retryable(_) => 1,
            OutputError::Unrecoverable(_) => 2,
        };
        self.errors[kind].inc();
    }

    /// A failed chunk waits `wait` before its next try.
    pub(crate) fn retry_in(&self, wait: Duration) {
        self.retries.inc();
        self.backoff.set(wait.as_secs_f64());
    }

    /// A chunk (of `events`) was set aside: to `<secondary>` or to quarantine.
    pub(crate) fn set_aside(&self, to_secondary: bool, events: u64) {
        let (chunks, evs) = &self.set_aside[usize::from(!to_secondary)];
        chunks.inc();
        evs.inc_by(events);
        if to_secondary {
            self.secondary_chunks.inc();
        }
    }

    /// Damaged chunks a file buffer moved to quarantine when it resumed (events unknown).
    pub(crate) fn quarantined_at_start(&self, chunks: u64) {
        self.set_aside[1].0.inc_by(chunks);
    }

    /// Handles registered nowhere (components built without a node, e.g. in unit tests).
    #[cfg(test)]
    pub(crate) fn detached() -> Self {
        let mut r = Registry::default();
        OutputMetrics::new(&Families::register(&mut r), "detached", "none")
    }

    /// Retries counted so far (`retry_count` in monitor_agent).
    pub(crate) fn retry_count(&self) -> u64 {
        self.retries.get()
    }

    /// Chunks moved to quarantine (by the driver or found damaged at start).
    pub(crate) fn quarantined(&self) -> (u64, u64) {
        let (c, e) = &self.set_aside[1];
        (c.get(), e.get())
    }

    /// Events written to `<secondary>`.
    pub(crate) fn set_aside_events_to_secondary(&self) -> u64 {
        self.set_aside[0].1.get()
    }

    pub(crate) fn errors_total(&self) -> u64 {
        self.errors.iter().map(Counter::get).sum()
    }
}

/// The cluster's counters (uploads on the leader, proposals from any node).
#[derive(Clone, Debug)]
pub(crate) struct ClusterMetrics {
    pub(crate) uploaded_objects: Counter,
    pub(crate) uploaded_bytes: Counter,
    pub(crate) uploaded_events: Counter,
    pub(crate) upload_retries: Counter,
    pub(crate) upload_failing: Gauge,
    pub(crate) dedup_hits: Counter,
    pub(crate) propose: AtomicHistogram,
    pub(crate) propose_failures: Counter,
}

impl ClusterMetrics {
    pub(crate) fn new(f: &Families) -> Self {
        ClusterMetrics {
            uploaded_objects: f.cluster_uploaded_objects.clone(),
            uploaded_bytes: f.cluster_uploaded_bytes.clone(),
            uploaded_events: f.cluster_uploaded_events.clone(),
            upload_retries: f.cluster_upload_retries.clone(),
            upload_failing: f.cluster_upload_failing.clone(),
            dedup_hits: f.cluster_dedup_hits.clone(),
            propose: f.cluster_propose.clone(),
            propose_failures: f.cluster_propose_failures.clone(),
        }
    }

    /// Handles that count into nothing registered (for components built without a node's
    /// metrics, e.g. in unit tests).
    pub(crate) fn detached() -> Self {
        let mut r = Registry::default();
        ClusterMetrics::new(&Families::register(&mut r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    struct Answer(fn() -> Result<(), EmitError>);

    impl Emit for Answer {
        fn emit(&self, _batch: EventBatch) -> BoxFuture<'_, Result<(), EmitError>> {
            let answer = (self.0)();
            Box::pin(async move { answer })
        }
    }

    fn batch(count: u32, bytes: usize) -> EventBatch {
        EventBatch {
            tag: "t".into(),
            entries: Bytes::from(vec![0u8; bytes]),
            count,
            origin_chunk: None,
            segments: Vec::new(),
        }
    }

    #[tokio::test]
    async fn metered_emit_counts_batches_acks_and_rejections_by_reason() {
        let mut registry = Registry::default();
        let families = Families::register(&mut registry);
        let m = InputMetrics::new(&families, "in1", "forward");
        let ok = MeteredEmit::wrap(Arc::new(Answer(|| Ok(()))), m.clone());
        let full = MeteredEmit::wrap(
            Arc::new(Answer(|| Err(EmitError::Overflow("full".into())))),
            m.clone(),
        );
        ok.emit(batch(10, 100)).await.unwrap();
        ok.emit(batch(5, 50)).await.unwrap();
        full.emit(batch(7, 70)).await.unwrap_err();
        m.rejected(Rejection::ConnectionLimit);
        assert_eq!(
            (m.events.get(), m.bytes.get(), m.chunks.get(), m.acks.get()),
            (22, 220, 3, 2)
        );
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "input_rejections_total{plugin_id=\"in1\",type=\"forward\",reason=\"overflow\"} 1",
            "input_rejections_total{plugin_id=\"in1\",type=\"forward\",reason=\"connection_limit\"} 1",
            "input_rejections_total{plugin_id=\"in1\",type=\"forward\",reason=\"bad_input\"} 0",
            "input_events_total{plugin_id=\"in1\",type=\"forward\"} 22",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        let open = m.connection();
        assert_eq!(m.connections.get(), 1);
        drop(open);
        assert_eq!(m.connections.get(), 0);
    }
}
