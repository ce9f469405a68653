//! Node: builds the pipeline a config describes, runs it, and shuts it down cleanly.
//!
//! Owns start-up order (buffers are opened and resumed before any input listens, so nothing is
//! accepted that cannot be stored), buffer directory resolution, and the shutdown sequence on
//! SIGTERM: stop inputs (they finish acknowledging what they already read), stop buffers
//! (draining them when `flush_at_shutdown`), let flush workers finish within a deadline. It must
//! not contain protocol or storage logic.

use crate::buffer::config::BufferKind;
use crate::buffer::Buffer;
use crate::config::{Config, MatchConfig};
use crate::input::budget::{InFlightBudget, DEFAULT_MAX_IN_FLIGHT_BYTES};
use crate::input::{InputContext, Observer};
use crate::observe::server::ObserveServer;
use crate::observe::Metrics;
use crate::output::driver::OutputDriver;
use crate::output::OutputError;
use crate::pipeline::Emit;
use crate::router::{MatchPattern, PatternError, Route, Router};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Settings that come from the command line rather than the config file.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Where buffers without an explicit `path` live (unless `<system> root_dir` is set).
    pub data_dir: PathBuf,
    /// How long flush workers may keep delivering after inputs stopped.
    pub shutdown_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{location}: {source}")]
    Pattern {
        location: String,
        #[source]
        source: PatternError,
    },
    #[error("<match {patterns}> at {location}: {source}")]
    Buffer {
        patterns: String,
        location: String,
        #[source]
        source: crate::buffer::BufferError,
    },
    #[error("<match {patterns}> at {location}: {source}")]
    Output {
        patterns: String,
        location: String,
        #[source]
        source: OutputError,
    },
    #[error("<match {patterns}> at {location}: buffer directory {dir} is already used by another <match>")]
    SharedBufferDir {
        patterns: String,
        location: String,
        dir: PathBuf,
    },
    #[error("<cluster> at {location}: {message}")]
    Cluster { location: String, message: String },
    #[error("<match {patterns}> at {location}: {source}")]
    UploadTarget {
        patterns: String,
        location: String,
        #[source]
        source: crate::cluster::upload::UploadError,
    },
    #[error("<source> at {location}: cannot listen: {source}")]
    Listen {
        location: String,
        #[source]
        source: std::io::Error,
    },
}

/// Compile a `<match>` directive's patterns.
pub fn compile_patterns(m: &MatchConfig) -> Result<Vec<MatchPattern>, NodeError> {
    m.patterns
        .iter()
        .map(|p| MatchPattern::parse(p))
        .collect::<Result<_, _>>()
        .map_err(|source| NodeError::Pattern {
            location: m.common.location.to_string(),
            source,
        })
}

/// The buffer directory for the `index`-th `<match>`.
pub fn buffer_dir(cfg: &Config, opts: &NodeOptions, index: usize) -> Option<PathBuf> {
    let m = &cfg.matches[index];
    match &m.buffer.kind {
        BufferKind::Memory => None,
        BufferKind::File { path: Some(p) } => Some(p.clone()),
        BufferKind::File { path: None } => {
            let root = cfg.system.root_dir.as_deref().unwrap_or(&opts.data_dir);
            let name = match &m.common.id {
                Some(id) => sanitize(id),
                None => format!("match{index}-{}", sanitize(&m.patterns.join("_"))),
            };
            Some(root.join("buffer").join(name))
        }
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

struct Pipeline {
    buffer: Arc<Buffer>,
    drain_at_shutdown: bool,
}

/// Run a node until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    opts: NodeOptions,
    shutdown: CancellationToken,
) -> Result<(), NodeError> {
    let metrics = Metrics::new();
    let stop_observers = CancellationToken::new();
    let mut observers = start_observers(&config, &metrics, &stop_observers).await?;
    let result = if config.cluster.is_some() {
        run_cluster(config, opts, shutdown, metrics).await
    } else {
        run_forwarder(config, opts, shutdown, metrics).await
    };
    stop_observers.cancel();
    while observers.join_next().await.is_some() {}
    result
}

/// A forwarder (or single aggregator): `<match>` buffers and outputs behind the router.
async fn run_forwarder(
    config: Config,
    opts: NodeOptions,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
) -> Result<(), NodeError> {
    let abort_flush = CancellationToken::new();
    let mut drivers = JoinSet::new();
    let mut pipelines = Vec::new();
    let mut routes = Vec::new();
    let mut dirs = HashSet::new();

    for (index, m) in config.matches.iter().enumerate() {
        let patterns = m.patterns.join(" ");
        let location = m.common.location.to_string();
        let compiled = compile_patterns(m)?;
        let dir = buffer_dir(&config, &opts, index);
        if let Some(d) = &dir {
            if !dirs.insert(d.clone()) {
                return Err(NodeError::SharedBufferDir {
                    patterns,
                    location,
                    dir: d.clone(),
                });
            }
        }
        let output_err = |source| NodeError::Output {
            patterns: patterns.clone(),
            location: location.clone(),
            source,
        };
        let output = m.output.spec().build(&m.buffer).map_err(output_err)?;
        output.start().await.map_err(output_err)?;
        let secondary = m
            .secondary
            .as_ref()
            .map(|o| o.spec().build(&m.buffer))
            .transpose()
            .map_err(output_err)?;
        let mut buffer_cfg = m.buffer.clone();
        buffer_cfg.keep_origins =
            output.sends_origins() || secondary.as_ref().is_some_and(|o| o.sends_origins());
        let (buffer, report) = Buffer::open(&buffer_cfg, dir.clone(), &patterns)
            .await
            .map_err(|source| NodeError::Buffer {
                patterns: patterns.clone(),
                location: location.clone(),
                source,
            })?;
        tracing::info!(r#match = %patterns, output = output.type_name(), buffer_dir = ?dir,
            resumed_chunks = report.chunks, resumed_records = report.records,
            repaired = report.repaired, quarantined = report.quarantined.len(), "pipeline ready");
        let name = m.common.id.clone().unwrap_or_else(|| patterns.clone());
        let forward = output.server_status();
        let output_metrics = metrics.output(
            &plugin_id(&m.common, "out", m.output.type_name(), index),
            m.output.type_name(),
            Some(buffer.clone()),
            forward,
        );
        output_metrics.quarantined_at_start(report.quarantined.len() as u64);
        drivers.spawn(drain_all(OutputDriver::spawn(
            name,
            buffer.clone(),
            output,
            secondary,
            m.buffer.retry.clone(),
            m.buffer.flush_thread_count,
            abort_flush.clone(),
            output_metrics,
        )));
        pipelines.push(Pipeline {
            buffer: buffer.clone(),
            drain_at_shutdown: m.buffer.flush_at_shutdown,
        });
        routes.push(Route {
            patterns: compiled,
            buffer,
        });
    }

    let router: Arc<dyn Emit> = Arc::new(Router::new(routes));
    let stop_inputs = CancellationToken::new();
    let mut inputs = start_inputs(&config, router, &stop_inputs, &metrics).await?;
    tracing::info!(
        sources = config.sources.len(),
        matches = config.matches.len(),
        "lograft node started"
    );

    flush_on_usr1(&pipelines, shutdown.clone());
    shutdown.cancelled().await;

    tracing::info!("shutting down: closing inputs");
    metrics.ready.set_inputs_listening(false);
    stop_inputs.cancel();
    while inputs.join_next().await.is_some() {}
    for p in &pipelines {
        p.buffer.shutdown(p.drain_at_shutdown);
    }
    tracing::info!("inputs closed; finishing flushes");
    let finished = tokio::time::timeout(opts.shutdown_timeout, async {
        while drivers.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            timeout_secs = opts.shutdown_timeout.as_secs(),
            "flushes did not finish in time; unsent chunks stay in the buffer for the next start"
        );
        abort_flush.cancel();
        while drivers.join_next().await.is_some() {}
    }
    tracing::info!("lograft node stopped");
    Ok(())
}

/// `@id`, else `<in|out>_<type>_<index>` (stable across restarts of the same config).
fn plugin_id(
    common: &crate::config::PluginCommon,
    category: &str,
    type_name: &str,
    index: usize,
) -> String {
    common
        .id
        .clone()
        .unwrap_or_else(|| format!("{category}_{type_name}_{index}"))
}

/// Bind the `prometheus` and `monitor_agent` sources first, so `/health` answers (and
/// `/ready` says why not) while buffers resume or the cluster forms.
async fn start_observers(
    config: &Config,
    metrics: &Arc<Metrics>,
    stop: &CancellationToken,
) -> Result<JoinSet<()>, NodeError> {
    let mut servers = JoinSet::new();
    for source in &config.sources {
        let location = source.common.location.to_string();
        let listen_err = |source| NodeError::Listen {
            location: location.clone(),
            source,
        };
        let Some(Observer { bind, port, routes }) = source.kind.spec().observer() else {
            continue;
        };
        let server = ObserveServer::bind(bind, port, routes.clone(), metrics.clone())
            .await
            .map_err(listen_err)?;
        let addr = server.local_addr().map_err(listen_err)?;
        tracing::info!(%addr, ?routes, "observability server listening");
        servers.spawn(server.run(stop.clone()));
    }
    Ok(servers)
}

/// Bind every `<source>` and start serving into `emit`, until `stop` is cancelled. Once all
/// listen, `/ready` may answer 200.
async fn start_inputs(
    config: &Config,
    emit: Arc<dyn Emit>,
    stop: &CancellationToken,
    metrics: &Arc<Metrics>,
) -> Result<JoinSet<()>, NodeError> {
    let mut inputs = JoinSet::new();
    // One budget for every in_forward of the node.
    let budget = InFlightBudget::new(
        config
            .system
            .max_in_flight_bytes
            .unwrap_or(DEFAULT_MAX_IN_FLIGHT_BYTES),
    );
    for (index, source) in config.sources.iter().enumerate() {
        let location = source.common.location.to_string();
        let listen_err = |source| NodeError::Listen {
            location: location.clone(),
            source,
        };
        let spec = source.kind.spec();
        if spec.observer().is_some() {
            continue; // started before the pipeline by `start_observers`
        }
        let type_name = spec.type_name();
        let ctx = InputContext {
            emit: emit.clone(),
            metrics: metrics.input(
                &plugin_id(&source.common, "in", type_name, index),
                type_name,
            ),
            budget: budget.clone(),
            common: &source.common,
            stop: stop.clone(),
        };
        if let Some(task) = spec.start(ctx).await.map_err(listen_err)? {
            inputs.spawn(task);
        }
    }
    metrics.ready.set_inputs_listening(true);
    Ok(inputs)
}

/// An aggregator in a cluster: the Raft log replaces the `<match>` buffers. Start-up order:
/// identity check, Raft node, joining the cluster, the matches' uploaders (active while this
/// node leads), then the inputs. Shutdown: inputs first, then uploaders, then Raft.
async fn run_cluster(
    config: Config,
    opts: NodeOptions,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
) -> Result<(), NodeError> {
    use crate::cluster::bootstrap;
    use crate::cluster::ingest::ClusterIngest;
    use crate::cluster::server::{ClusterNode, ClusterNodeConfig};
    use crate::cluster::upload::{BatchPolicy, UploadTarget, Uploader};
    use crate::router::TagRoutes;

    let Some(c) = config.cluster.clone() else {
        unreachable!("run_cluster is called for configs with <cluster>")
    };
    let cluster_err = |message: String| NodeError::Cluster {
        location: c.location.to_string(),
        message,
    };
    let mut patterns = Vec::new();
    let mut uploads = Vec::new();
    for m in &config.matches {
        patterns.push(compile_patterns(m)?);
        let target =
            UploadTarget::from_output(&m.output).map_err(|source| NodeError::UploadTarget {
                patterns: m.patterns.join(" "),
                location: m.common.location.to_string(),
                source,
            })?;
        if m.secondary.is_some() {
            tracing::warn!(r#match = %m.patterns.join(" "), "<secondary> is not used in cluster mode: failed uploads are retried, the chunks stay replicated");
        }
        let name = m.common.id.clone().unwrap_or_else(|| m.patterns.join(" "));
        uploads.push((target, BatchPolicy::from_buffer(&m.buffer), name));
    }
    let routes = Arc::new(TagRoutes::new(patterns));

    let root = config.system.root_dir.as_deref().unwrap_or(&opts.data_dir);
    let data_dir = c.data_dir.clone().unwrap_or_else(|| root.join("raft"));
    let listen = tokio::net::lookup_host(&c.address)
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| cluster_err(format!("cannot resolve address {}", c.address)))?;
    let tls = match &c.tls {
        Some(t) => {
            let files = crate::cluster::tls::TlsFiles {
                ca_path: t.ca_path.clone(),
                cert_path: t.cert_path.clone(),
                private_key_path: t.private_key_path.clone(),
            };
            let loaded =
                tokio::task::spawn_blocking(move || crate::cluster::tls::ClusterTls::load(files))
                    .await
                    .map_err(|e| cluster_err(format!("loading <transport tls>: {e}")))?
                    .map_err(|e| cluster_err(format!("<transport tls>: {e}")))?;
            Some(Arc::new(loaded))
        }
        None => None,
    };
    match c.exposure(&listen).map_err(&cluster_err)? {
        crate::cluster::config::Exposure::Insecure => tracing::warn!(
            %listen,
            "<cluster> insecure true: the cluster port is served WITHOUT TLS on a non-loopback address; \
             anyone who reaches it can administer the cluster, speak Raft and inject events"
        ),
        crate::cluster::config::Exposure::Tls | crate::cluster::config::Exposure::Loopback => {}
    }
    let mut node_cfg = ClusterNodeConfig::new(c.node_id, listen, &data_dir);
    node_cfg.advertise = Some(
        c.advertise_address
            .clone()
            .unwrap_or_else(|| c.address.clone()),
    );
    node_cfg.store.dedup_window = c.dedup_window as usize;
    node_cfg.store.memtable_limit = c.memtable_limit as usize;
    node_cfg.store.block_cache = c.block_cache_size as usize;
    node_cfg.store.log_cache = c.log_cache_size as usize;
    node_cfg.store.compress_log_blobs =
        c.log_compression == crate::cluster::compression::LogCompression::None;
    node_cfg.proposals_in_flight = c.proposals_in_flight as usize;
    node_cfg.log_compression = c.log_compression;
    node_cfg.heartbeat_interval = c.heartbeat_interval;
    node_cfg.election_timeout_min = c.election_timeout;
    node_cfg.election_timeout_max = c.election_timeout * 2;
    node_cfg.snapshot_policy = openraft::SnapshotPolicy::LogsSinceLast(c.snapshot_every);
    node_cfg.tls = tls.clone();

    let bootstrap_err = |e: bootstrap::BootstrapError| cluster_err(e.to_string());
    if !bootstrap::has_identity(&data_dir, c.node_id).map_err(bootstrap_err)? {
        bootstrap::check_identity(&c, &data_dir, tls.as_ref())
            .await
            .map_err(bootstrap_err)?;
        bootstrap::write_identity(&data_dir, c.node_id).map_err(bootstrap_err)?;
    }
    let node = ClusterNode::start(node_cfg)
        .await
        .map_err(|e| cluster_err(e.to_string()))?;
    tracing::info!(node_id = c.node_id, addr = %node.addr(), data_dir = %data_dir.display(), "cluster node serving");
    match bootstrap::join_cluster(&node, &c, &shutdown).await {
        Ok(()) => {}
        Err(bootstrap::BootstrapError::Stopped) => {
            node.shutdown().await;
            return Ok(());
        }
        Err(e) => {
            node.shutdown().await;
            return Err(bootstrap_err(e));
        }
    }

    let cluster_metrics = metrics.cluster(node.shared().clone());
    // Rendered batches wait here for their upload; what a crash left is removed first.
    let spool_dir = data_dir.join("upload-spool");
    let cleared = {
        let dir = spool_dir.clone();
        tokio::task::spawn_blocking(move || crate::cluster::upload::clear_spool(&dir)).await
    };
    if let Err(e) = cleared.map_err(std::io::Error::other).and_then(|r| r) {
        node.shutdown().await;
        return Err(cluster_err(format!(
            "upload spool directory {}: {e}",
            spool_dir.display()
        )));
    }
    let stop_uploaders = CancellationToken::new();
    let mut uploaders = JoinSet::new();
    for (match_index, (target, policy, name)) in uploads.into_iter().enumerate() {
        tracing::info!(r#match = %name, %target, flush_interval_ms = policy.flush_interval.as_millis() as u64,
            batch_bytes = policy.batch_bytes, "uploader ready (active while this node leads)");
        let uploader = Uploader {
            shared: node.shared().clone(),
            match_index,
            routes: routes.clone(),
            target,
            spool_dir: spool_dir.clone(),
            policy,
            name,
            metrics: cluster_metrics.clone(),
        };
        uploaders.spawn(uploader.run(stop_uploaders.clone()));
    }

    let ingest: Arc<dyn Emit> =
        Arc::new(ClusterIngest::new(node.shared().clone(), routes).with_metrics(cluster_metrics));
    let stop_inputs = CancellationToken::new();
    let mut inputs = match start_inputs(&config, ingest, &stop_inputs, &metrics).await {
        Ok(inputs) => inputs,
        Err(e) => {
            stop_uploaders.cancel();
            node.shutdown().await;
            return Err(e);
        }
    };
    tracing::info!(
        node_id = c.node_id,
        sources = config.sources.len(),
        matches = config.matches.len(),
        "lograft aggregator node started"
    );

    #[cfg(feature = "fault-injection")]
    if std::env::var(crate::cluster::upload::FAULT_POINT_ENV).is_ok_and(|v| v == "stop-raft-core") {
        // Test hook: the Raft core stops a second after start, as after a storage failure.
        let raft = node.raft().clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let _ = raft.shutdown().await;
        });
    }
    // A node whose Raft core stopped (a storage failure, a bug) cannot commit anything: exit
    // non-zero so the supervisor restarts it, rather than serve stale status.
    let core_stopped = tokio::select! {
        _ = shutdown.cancelled() => None,
        reason = node.shared().core_stopped_wait() => Some(reason),
    };
    if let Some(reason) = &core_stopped {
        tracing::error!(node_id = c.node_id, %reason, "the raft core stopped; shutting down");
    }
    tracing::info!("shutting down: closing inputs");
    metrics.ready.set_inputs_listening(false);
    stop_inputs.cancel();
    while inputs.join_next().await.is_some() {}
    stop_uploaders.cancel();
    while uploaders.join_next().await.is_some() {}
    node.shutdown().await;
    tracing::info!("lograft aggregator node stopped");
    match core_stopped {
        Some(reason) => Err(cluster_err(format!("the raft core stopped: {reason}"))),
        None => Ok(()),
    }
}

async fn drain_all(mut set: JoinSet<()>) {
    while set.join_next().await.is_some() {}
}

/// SIGUSR1 flushes every buffer now (as Fluentd does).
fn flush_on_usr1(pipelines: &[Pipeline], shutdown: CancellationToken) {
    let buffers: Vec<_> = pipelines.iter().map(|p| p.buffer.clone()).collect();
    let Ok(mut usr1) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
    else {
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = usr1.recv() => {
                    tracing::info!("SIGUSR1: flushing all buffers");
                    buffers.iter().for_each(|b| b.enqueue_all());
                }
                _ = shutdown.cancelled() => return,
            }
        }
    });
}

/// Default data directory: `$LOGRAFT_DATA_DIR`, else `/var/lib/lograft`.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("LOGRAFT_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new("/var/lib/lograft").to_path_buf())
}
