//! Values read at scrape time: buffers (chunks and bytes by stage, oldest chunk age, the file
//! writer's fsync histograms), out_forward's servers (up, phi, standby active), and the
//! cluster (Raft role, term, leader, indexes, follower lag; pending and unconfirmed chunks,
//! upload lag; RocksDB's memory by part), the process's RSS (`/proc/self/status`, a
//! procfs read that never waits on a disk) and its heap as the allocator counts it (jemalloc's
//! statistics: live bytes against the pages it holds).
//!
//! Owns the names of those series and [`ClusterView::can_commit`] (the cluster half of
//! `/ready`). Reading costs the scrape, never the hot path: one lock of each buffer's state, a
//! borrow of Raft's metrics watch, one read lock of the state machine. It must not change
//! anything it reads.

use super::handles::PluginLabels;
use super::histogram::AtomicHistogram;
use super::Metrics;
use crate::cluster::node::NodeShared;
use openraft::ServerState;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use std::fmt;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The registry's collector: reads the node's [`Metrics`] when scraped.
#[derive(Debug)]
pub(crate) struct Live(pub(crate) Weak<Metrics>);

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Metrics")
    }
}

/// A family of gauges, written only when it has samples.
fn gauges<L: EncodeLabelSet, V: EncodeGaugeValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(L, V)],
) -> fmt::Result {
    if rows.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in rows {
        m.encode_family(labels)?.encode_gauge(value)?;
    }
    Ok(())
}

/// A family of counters kept elsewhere, written only when it has samples.
fn counters<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(L, u64)],
) -> fmt::Result {
    if rows.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in rows {
        m.encode_family(labels)?
            .encode_counter::<NoLabelSet, _, f64>(value, None)?;
    }
    Ok(())
}

fn histograms<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(L, &AtomicHistogram)],
) -> fmt::Result {
    if rows.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, h) in rows {
        h.encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn age_seconds(t: SystemTime) -> f64 {
    SystemTime::now()
        .duration_since(t)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

impl Collector for Live {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let Some(metrics) = self.0.upgrade() else {
            return Ok(());
        };
        encode_plugins(&metrics, &mut enc)?;
        if let Some(bytes) = resident_memory_bytes() {
            gauges(
                &mut enc,
                "process_resident_memory_bytes",
                "Resident set size of this process (VmRSS)",
                &[(NO_LABELS, bytes as i64)],
            )?;
        }
        if let Some(heap) = heap_bytes() {
            gauges(
                &mut enc,
                "process_heap_bytes",
                "The heap as jemalloc counts it: allocated (live), active (pages holding live \
                 allocations), resident (pages it holds in RAM, freed but not yet returned ones \
                 included), metadata, retained (address space kept, not in RAM)",
                &heap.map(|(part, v)| (PartLabels { part }, v as i64)),
            )?;
        }
        let cluster = metrics
            .cluster
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(cluster) = cluster {
            cluster.encode(&mut enc)?;
        }
        Ok(())
    }
}

/// jemalloc's statistics (refreshed by advancing its epoch), by part; `None` if it cannot
/// answer. jemalloc is linked in as the process's `malloc` (`main.rs`), so it serves Rust's
/// and RocksDB's allocations alike.
fn heap_bytes() -> Option<[(&'static str, usize); 5]> {
    use tikv_jemalloc_ctl::{epoch, stats};
    epoch::advance().ok()?;
    Some([
        ("allocated", stats::allocated::read().ok()?),
        ("active", stats::active::read().ok()?),
        ("resident", stats::resident::read().ok()?),
        ("metadata", stats::metadata::read().ok()?),
        ("retained", stats::retained::read().ok()?),
    ])
}

/// This process's resident set size, from `/proc/self/status` (Linux; `None` elsewhere).
fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn plugin_labels(plugin_id: &str, type_name: &str) -> PluginLabels {
    PluginLabels {
        plugin_id: plugin_id.to_string(),
        r#type: type_name.to_string(),
    }
}

fn encode_plugins(metrics: &Metrics, enc: &mut DescriptorEncoder) -> fmt::Result {
    let plugins = metrics.plugins();
    let mut stage: [Vec<(PluginLabels, u64)>; 8] = Default::default();
    let mut age = Vec::new();
    let mut quarantined = (Vec::new(), Vec::new());
    let counters_held: Vec<_> = plugins
        .iter()
        .filter_map(|p| Some((plugin_labels(&p.plugin_id, p.type_name), p.buffer.as_ref()?)))
        .map(|(l, b)| (l, b.writer_counters().clone()))
        .collect();
    for p in plugins.iter() {
        let labels = plugin_labels(&p.plugin_id, p.type_name);
        if let Some(b) = &p.buffer {
            let s = b.stats();
            let values = [
                s.staged_chunks as u64,
                s.staged_bytes,
                s.queued_chunks as u64,
                s.queued_bytes,
                s.in_flight_chunks as u64,
                s.in_flight_bytes,
                s.records,
                s.blocked_appends as u64,
            ];
            for (rows, v) in stage.iter_mut().zip(values) {
                rows.push((labels.clone(), v));
            }
            age.push((
                labels.clone(),
                s.oldest_chunk_created.map_or(0.0, age_seconds),
            ));
        }
        if let Some(o) = &p.output {
            let (chunks, events) = o.quarantined();
            quarantined.0.push((labels.clone(), chunks));
            quarantined.1.push((labels, events));
        }
    }
    const STAGES: [(&str, &str); 8] = [
        ("buffer_staged_chunks", "Chunks taking appends"),
        ("buffer_staged_bytes", "Bytes in chunks taking appends"),
        (
            "buffer_queued_chunks",
            "Chunks queued for the output (waiting or in backoff)",
        ),
        ("buffer_queued_bytes", "Bytes in queued chunks"),
        (
            "buffer_in_flight_chunks",
            "Chunks being written by the output now",
        ),
        (
            "buffer_in_flight_bytes",
            "Bytes in chunks being written now",
        ),
        ("buffer_records", "Events held by the buffer (all stages)"),
        (
            "buffer_blocked_appends",
            "Appends waiting for space now (overflow_action block, buffer full)",
        ),
    ];
    for ((name, help), rows) in STAGES.iter().zip(&stage) {
        gauges(enc, name, help, rows)?;
    }
    gauges(
        enc,
        "buffer_oldest_chunk_age_seconds",
        "Age of the oldest chunk the buffer holds (0 when empty)",
        &age,
    )?;
    counters(
        enc,
        "buffer_quarantined_chunks",
        "Chunks moved to the buffer's quarantine (undeliverable, or damaged at start)",
        &quarantined.0,
    )?;
    counters(
        enc,
        "buffer_quarantined_events",
        "Events of the chunks moved to quarantine (damaged chunks at start count 0: unreadable)",
        &quarantined.1,
    )?;
    let fsync: Vec<_> = counters_held
        .iter()
        .map(|(l, c)| (l.clone(), &c.fsync_seconds))
        .collect();
    histograms(
        enc,
        "buffer_fsync_seconds",
        "Write + fdatasync of one chunk file in a group commit (file buffers)",
        &fsync,
    )?;
    let per: Vec<_> = counters_held
        .iter()
        .map(|(l, c)| (l.clone(), &c.appends_per_fsync))
        .collect();
    histograms(
        enc,
        "buffer_appends_per_fsync",
        "Appends made durable by one fdatasync (group-commit size)",
        &per,
    )?;
    encode_forward_servers(&plugins, enc)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabels {
    plugin_id: String,
    r#type: String,
    server: String,
    standby: String,
}

fn encode_forward_servers(
    plugins: &[super::PluginView],
    enc: &mut DescriptorEncoder,
) -> fmt::Result {
    let (mut up, mut phi, mut active) = (Vec::new(), Vec::new(), Vec::new());
    for p in plugins {
        let Some(f) = &p.forward else { continue };
        for s in f.servers() {
            let l = ServerLabels {
                plugin_id: p.plugin_id.clone(),
                r#type: p.type_name.to_string(),
                server: s.label.clone(),
                standby: s.standby.to_string(),
            };
            up.push((l.clone(), i64::from(s.up)));
            phi.push((l.clone(), s.phi));
            active.push((l, i64::from(s.active)));
        }
    }
    gauges(
        enc,
        "forward_server_up",
        "1 while out_forward considers the server available",
        &up,
    )?;
    gauges(
        enc,
        "forward_server_phi",
        "The phi accrual failure detector's suspicion of the server",
        &phi,
    )?;
    gauges(
        enc,
        "forward_server_active",
        "1 while the server is eligible for traffic (a standby: while it replaces a failed server)",
        &active,
    )
}

/// The cluster node the scrape reads.
#[derive(Clone)]
pub(crate) struct ClusterView {
    pub(crate) node: Arc<NodeShared>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartLabels {
    part: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabels {
    role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FollowerLabels {
    follower: String,
}

const ROLES: [(ServerState, &str); 5] = [
    (ServerState::Leader, "leader"),
    (ServerState::Follower, "follower"),
    (ServerState::Candidate, "candidate"),
    (ServerState::Learner, "learner"),
    (ServerState::Shutdown, "shutdown"),
];

impl ClusterView {
    /// The cluster half of `/ready`: a leader is known and, on the leader, a quorum answered
    /// within the maximal election timeout (a leader cut off from its followers cannot commit).
    pub(crate) fn can_commit(&self) -> Result<(), String> {
        let m = self.node.raft.metrics();
        let m = m.borrow();
        let Some(leader) = m.current_leader else {
            return Err("no leader known (no quorum, or an election in progress)".into());
        };
        if leader == self.node.id {
            let limit = self.node.election_timeout_max.as_millis() as u64;
            match m.millis_since_quorum_ack {
                Some(ms) if ms <= limit => {}
                Some(ms) => {
                    return Err(format!(
                        "this node leads but no quorum answered for {ms} ms"
                    ))
                }
                None => return Err("this node leads but no quorum answered yet".into()),
            }
        }
        Ok(())
    }

    fn encode(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let raft = {
            let m = self.node.raft.metrics();
            let m = m.borrow();
            m.clone()
        };
        let roles: Vec<_> = ROLES
            .iter()
            .map(|(state, role)| (RoleLabels { role }, i64::from(raft.state == *state)))
            .collect();
        gauges(
            enc,
            "cluster_role",
            "1 for this node's current Raft role",
            &roles,
        )?;
        let one = |v: i64| [(NO_LABELS, v)];
        gauges(
            enc,
            "cluster_node_id",
            "This node's id",
            &one(self.node.id as i64),
        )?;
        gauges(
            enc,
            "cluster_term",
            "The current Raft term",
            &one(raft.current_term as i64),
        )?;
        gauges(
            enc,
            "cluster_leader_id",
            "The leader this node knows (-1: none)",
            &one(raft.current_leader.map_or(-1, |l| l as i64)),
        )?;
        gauges(
            enc,
            "cluster_leader_known",
            "1 while this node knows a leader",
            &one(i64::from(raft.current_leader.is_some())),
        )?;
        gauges(
            enc,
            "cluster_ready",
            "1 while this node can commit (a leader is known; on the leader, a quorum answers)",
            &one(i64::from(self.can_commit().is_ok())),
        )?;
        let index = |l: Option<openraft::LogId<u64>>| l.map_or(0, |l| l.index as i64);
        gauges(
            enc,
            "cluster_last_log_index",
            "Index of the last entry in this node's Raft log",
            &one(raft.last_log_index.unwrap_or(0) as i64),
        )?;
        gauges(
            enc,
            "cluster_applied_index",
            "Index of the last entry applied to the state machine (entries are applied once committed, so this is the commit index this node has seen applied)",
            &one(index(raft.last_applied)),
        )?;
        gauges(
            enc,
            "cluster_snapshot_index",
            "Last log index of the latest snapshot",
            &one(index(raft.snapshot)),
        )?;
        gauges(
            enc,
            "cluster_purged_index",
            "Last log index purged after a snapshot",
            &one(index(raft.purged)),
        )?;
        if let Some(ms) = raft.millis_since_quorum_ack {
            gauges(
                enc,
                "cluster_quorum_ack_age_seconds",
                "Leader only: time since a quorum last acknowledged this leader",
                &[(NO_LABELS, ms as f64 / 1000.0)],
            )?;
        }
        let last = raft.last_log_index.unwrap_or(0);
        let lag: Vec<_> = raft
            .replication
            .iter()
            .flatten()
            .filter(|(id, _)| **id != self.node.id)
            .map(|(id, matched)| {
                let m = matched.map_or(0, |l| l.index);
                (
                    FollowerLabels {
                        follower: id.to_string(),
                    },
                    last.saturating_sub(m) as i64,
                )
            })
            .collect();
        gauges(
            enc,
            "cluster_follower_lag_entries",
            "Leader only: log entries a follower has not matched yet",
            &lag,
        )?;
        let reader = &self.node.reader;
        let stats = reader.upload_stats();
        let lag_secs = reader
            .oldest_unconfirmed_received_unix_ms()
            .map_or(0.0, |ms| {
                age_seconds(UNIX_EPOCH + Duration::from_millis(ms))
            });
        let rows: [(&str, &str, i64); 6] = [
            (
                "cluster_pending_chunks",
                "Chunks stored and not yet sealed into a batch",
                stats.pending_chunks as i64,
            ),
            (
                "cluster_pending_bytes",
                "Payload bytes of the chunks not yet sealed",
                stats.pending_bytes as i64,
            ),
            (
                "cluster_sealed_unconfirmed_batches",
                "Batches sealed whose upload is not confirmed yet",
                stats.unconfirmed_batches as i64,
            ),
            (
                "cluster_sealed_unconfirmed_chunks",
                "Chunks in sealed, unconfirmed batches",
                stats.sealed_chunks as i64,
            ),
            (
                "cluster_sealed_unconfirmed_bytes",
                "Payload bytes in sealed, unconfirmed batches",
                stats.sealed_bytes as i64,
            ),
            (
                "cluster_dedup_window_ids",
                "Chunk ids remembered for deduplication",
                stats.remembered_ids as i64,
            ),
        ];
        for (name, help, v) in rows {
            gauges(enc, name, help, &one(v))?;
        }
        let memory = reader.storage_memory();
        let parts = [
            ("memtables", memory.memtables),
            ("table_readers", memory.table_readers),
            ("block_cache", memory.block_cache),
            ("block_cache_pinned", memory.block_cache_pinned),
        ]
        .map(|(part, v)| (PartLabels { part }, v as i64));
        gauges(
            enc,
            "cluster_storage_memory_bytes",
            "Memory RocksDB holds by part (its own estimates; block_cache_pinned is part of block_cache)",
            &parts,
        )?;
        gauges(
            enc,
            "cluster_upload_lag_seconds",
            "Age of the oldest chunk not yet confirmed uploaded (0 when none waits)",
            &[(NO_LABELS, lag_secs)],
        )?;
        counters(
            enc,
            "cluster_dead_lettered_batches",
            "Batches dead-lettered since the cluster began",
            &[(NO_LABELS, stats.dead_lettered_batches)],
        )
    }
}

/// No labels (a single series).
type Unlabelled = [(&'static str, &'static str); 0];
const NO_LABELS: Unlabelled = [];
