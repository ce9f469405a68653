//! Observability: the node's metrics, its `/health` and `/ready` answers, and the two servers
//! that show them (`<source> @type prometheus`, `<source> @type monitor_agent`).
//!
//! # Choice of crate
//!
//! [`prometheus_client`] (the Prometheus project's own Rust client): typed metric families
//! with label sets checked at compile time, counters and gauges that are a single atomic, an
//! OpenMetrics text encoder, and a `Collector` trait for values read at scrape time. It has no
//! global registry, so the node owns its [`Metrics`] and hands each component its handles.
//! Its `Histogram` takes a lock per observation, so the few histograms live in
//! [`histogram::AtomicHistogram`] (atomic buckets) and are still encoded by the crate.
//!
//! # Cost on the hot path
//!
//! A component holds pre-resolved handles ([`InputMetrics`], [`OutputMetrics`],
//! [`ClusterMetrics`]): counting is a relaxed atomic add, per batch or per chunk, never per
//! event, never a lock or an allocation. Everything that already exists as state (buffer
//! stages, forward servers' health, Raft metrics, pending chunks) is read only when scraped
//! (`collect`).
//!
//! # Layout
//!
//! - this file: [`Metrics`] (the registry, the families, the plugins it knows for
//!   `monitor_agent`) and [`Readiness`];
//! - `handles`: the per-component handles and the metered [`crate::pipeline::Emit`] wrapper;
//! - `histogram`: the lock-free histogram;
//! - `collect`: the values read at scrape time (buffers, forward servers, the cluster);
//! - `server`: the HTTP server (`/metrics`, `/health`, `/ready`, `/api/plugins.json`);
//! - `plugins_json`: monitor_agent's `/api/plugins.json` body;
//! - `config`: the typed `<source> @type prometheus` and `@type monitor_agent` and builders.
//!
//! It must not change what it observes: everything here reads.

pub(crate) mod collect;
pub mod config;
pub(crate) mod handles;
pub(crate) mod histogram;
mod plugins_json;
pub(crate) mod server;

pub(crate) use handles::{ClusterMetrics, InputMetrics, MeteredEmit, OutputMetrics};

use crate::buffer::Buffer;
use crate::cluster::node::NodeShared;
use crate::output::forward::ForwardStatus;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// One plugin as the scrape and `monitor_agent` see it.
pub(crate) struct PluginView {
    pub(crate) plugin_id: String,
    /// `input` or `output`.
    pub(crate) category: &'static str,
    pub(crate) type_name: &'static str,
    pub(crate) input: Option<InputMetrics>,
    pub(crate) output: Option<OutputMetrics>,
    pub(crate) buffer: Option<Arc<Buffer>>,
    pub(crate) forward: Option<ForwardStatus>,
}

/// The node's metrics: one registry, shared by the servers that expose it.
pub struct Metrics {
    registry: Mutex<Registry>,
    families: handles::Families,
    pub(crate) plugins: Mutex<Vec<PluginView>>,
    pub(crate) cluster: Mutex<Option<collect::ClusterView>>,
    pub(crate) ready: Readiness,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("lograft");
        let families = handles::Families::register(&mut registry);
        let metrics = Arc::new(Metrics {
            registry: Mutex::new(Registry::default()),
            families,
            plugins: Mutex::new(Vec::new()),
            cluster: Mutex::new(None),
            ready: Readiness::default(),
        });
        registry.register_collector(Box::new(collect::Live(Arc::downgrade(&metrics))));
        *metrics.registry() = registry;
        metrics
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn plugins(&self) -> MutexGuard<'_, Vec<PluginView>> {
        self.plugins.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Handles for one input; the plugin is listed for `monitor_agent`.
    pub(crate) fn input(&self, plugin_id: &str, type_name: &'static str) -> InputMetrics {
        let handles = InputMetrics::new(&self.families, plugin_id, type_name);
        self.plugins().push(PluginView {
            plugin_id: plugin_id.to_string(),
            category: "input",
            type_name,
            input: Some(handles.clone()),
            output: None,
            buffer: None,
            forward: None,
        });
        handles
    }

    /// Handles for one output (a `<match>`), with its buffer and, for out_forward, its servers.
    pub(crate) fn output(
        &self,
        plugin_id: &str,
        type_name: &'static str,
        buffer: Option<Arc<Buffer>>,
        forward: Option<ForwardStatus>,
    ) -> OutputMetrics {
        let handles = OutputMetrics::new(&self.families, plugin_id, type_name);
        self.plugins().push(PluginView {
            plugin_id: plugin_id.to_string(),
            category: "output",
            type_name,
            input: None,
            output: Some(handles.clone()),
            buffer,
            forward,
        });
        handles
    }

    /// Handles for the cluster, and the node whose Raft state the scrape reads.
    pub(crate) fn cluster(&self, node: Arc<NodeShared>) -> ClusterMetrics {
        *self.cluster.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(collect::ClusterView { node: node.clone() });
        ClusterMetrics::new(&self.families)
    }

    /// The exposition in OpenMetrics text.
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry());
        out
    }
}

/// What `/ready` answers from: the inputs are listening, and (in a cluster) a leader is known
/// and this node can commit.
#[derive(Default)]
pub struct Readiness {
    inputs_listening: AtomicBool,
}

impl Readiness {
    pub(crate) fn set_inputs_listening(&self, listening: bool) {
        self.inputs_listening.store(listening, Ordering::Release);
    }

    pub(crate) fn inputs_listening(&self) -> bool {
        self.inputs_listening.load(Ordering::Acquire)
    }
}

impl Metrics {
    /// `Ok` when ready; otherwise why not.
    pub(crate) fn readiness(&self) -> Result<(), String> {
        if !self.ready.inputs_listening() {
            return Err("inputs are not listening yet".into());
        }
        if let Some(cluster) = &*self.cluster.lock().unwrap_or_else(|e| e.into_inner()) {
            cluster.can_commit()?;
        }
        Ok(())
    }
}
