//! The `lograft` command line: `run` a node from a config file, `check-config` one, or administer
//! an aggregator cluster (`cluster status|init|...`).
//!
//! Owns argument parsing, logging set-up, signal handling and exit codes; everything else is
//! in the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use lograft::config::{Config, LogLevel};
use lograft::node::{self, NodeOptions};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// jemalloc returns freed memory to the OS and does not fragment into one arena per blocking
/// thread as glibc malloc does; it keeps RSS flat under load (see docs/benchmarks.md). It
/// replaces `malloc` for the whole process (`unprefixed_malloc_on_supported_platforms`), so
/// RocksDB's C++ allocations go through it too: with glibc's malloc under RocksDB, a 2 GB
/// cluster backlog left 10–20 MB more RSS per node (docs/benchmarks.md, "Replicated path").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main`: one arena, and freed pages returned within about a
/// second. By default jemalloc makes four arenas per CPU and spreads threads over them; memory
/// freed in one arena is not reused by another, and an aggregator's blocking storage threads
/// and RPC tasks left 20–30 MB of it idle at high concurrency. Thread caches keep one arena
/// fast. `MALLOC_CONF` in the environment still overrides it.
#[unsafe(export_name = "malloc_conf")]
#[used]
static JEMALLOC_OPTIONS: &[u8; 47] = b"narenas:1,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

#[derive(Parser)]
#[command(
    name = "lograft",
    version,
    about = "Durable Fluentd-compatible log forwarder and aggregator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node (forwarder or aggregator) from a Fluentd-syntax config file.
    Run {
        /// Config file.
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
        /// Directory for buffers without an explicit path (default: $LOGRAFT_DATA_DIR or /var/lib/lograft).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Log filter (overrides <system> log_level; RUST_LOG also works), e.g. `info`, `debug`.
        #[arg(long)]
        log_level: Option<String>,
        /// Seconds flush workers may keep delivering after SIGTERM.
        #[arg(long, default_value_t = 30)]
        shutdown_timeout: u64,
    },
    /// Parse and validate a config file; print a summary, or FILE:LINE: errors and exit 1.
    CheckConfig {
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
    },
    /// Benchmark client: send PackedForward chunks with acks to a forward input and report
    /// events/s and ack latency.
    BenchLoad {
        /// Address of the forward input.
        #[arg(long, default_value = "127.0.0.1:24224")]
        target: std::net::SocketAddr,
        #[arg(long, default_value = "bench.load")]
        tag: String,
        /// Total events to send.
        #[arg(long, default_value_t = 10_000_000)]
        events: u64,
        #[arg(long, default_value_t = 1000)]
        events_per_chunk: u32,
        /// Approximate bytes per record (msgpack).
        #[arg(long, default_value_t = 200)]
        record_size: usize,
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Chunks in flight per connection.
        #[arg(long, default_value_t = 4)]
        pipeline: usize,
        /// What the records' `msg` holds: access-log lines, one repeated letter, or random
        /// alphanumerics (decides how well chunks compress).
        #[arg(long, value_enum, default_value_t = lograft::loadgen::RecordContent::Logs)]
        content: lograft::loadgen::RecordContent,
    },
    /// Administer an aggregator cluster through one node's admin API.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Make a cluster CA, node certificates and an operator certificate in DIR (an existing
    /// ca.pem + ca.key there is reused). README: "Securing the cluster".
    Certs {
        /// Output directory.
        dir: PathBuf,
        /// Node ids to make certificates for, as ID or ID=HOST (HOST added to the names).
        #[arg(long, value_delimiter = ',', num_args = 1..)]
        nodes: Vec<lograft::cluster::tls::certs::NodeCertSpec>,
        /// Common name of the operator certificate (operator.pem).
        #[arg(long, default_value = "operator")]
        operator: String,
        /// Make no operator certificate.
        #[arg(long)]
        no_operator: bool,
        /// Validity of the node and operator certificates, in days.
        #[arg(long, default_value_t = 825)]
        days: u64,
    },
    /// Show a node's view of the cluster (replication lag is known only on the leader).
    Status {
        #[command(flatten)]
        node: ClusterNodeArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Initialize a new cluster on this node (once, on one node).
    Init {
        #[command(flatten)]
        node: ClusterNodeArg,
        /// Initial voter as ID=ADDR (repeat); none: the node alone.
        #[arg(long = "member", value_parser = parse_member)]
        members: Vec<(u64, String)>,
    },
    /// Add a node as a learner (send to the leader).
    AddLearner {
        #[command(flatten)]
        node: ClusterNodeArg,
        #[arg(long)]
        id: u64,
        /// The learner's Raft/admin address.
        #[arg(long)]
        addr: String,
    },
    /// Promote a caught-up learner to voter (send to the leader).
    Promote {
        #[command(flatten)]
        node: ClusterNodeArg,
        #[arg(long)]
        id: u64,
        /// Seconds to wait for the learner to catch up.
        #[arg(long, default_value_t = 30)]
        wait: u64,
    },
    /// Remove a voter or learner (send to the leader).
    Remove {
        #[command(flatten)]
        node: ClusterNodeArg,
        #[arg(long)]
        id: u64,
    },
    /// Replace a lost member by a new node that joined as a learner: promote the new node once
    /// it caught up, then remove the old one (any node: the leader is found).
    Replace {
        #[command(flatten)]
        node: ClusterNodeArg,
        /// Id of the member to replace (e.g. one whose disk was lost).
        #[arg(long)]
        old: u64,
        /// Id of the new node (started with `join`, now a learner).
        #[arg(long)]
        new: u64,
        /// Seconds to wait for the new node to catch up.
        #[arg(long, default_value_t = 120)]
        wait: u64,
    },
    /// Move leadership to an up-to-date voter (send to the leader).
    TransferLeader {
        #[command(flatten)]
        node: ClusterNodeArg,
        /// Target node id.
        #[arg(long)]
        to: u64,
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// Build a snapshot on the node now.
    Snapshot {
        #[command(flatten)]
        node: ClusterNodeArg,
        /// Also purge the Raft log the snapshot covers.
        #[arg(long)]
        purge: bool,
    },
}

#[derive(clap::Args, Clone)]
struct ClusterNodeArg {
    /// Admin address of the node to ask (host:port).
    #[arg(long = "node", default_value = "127.0.0.1:7101")]
    addr: String,
    /// Cluster CA (PEM) for mutual TLS; with --cert and --key (an operator certificate).
    #[arg(long = "ca", env = "LOGRAFT_CLUSTER_CA")]
    ca: Option<PathBuf>,
    /// Operator certificate (PEM).
    #[arg(long = "cert", env = "LOGRAFT_CLUSTER_CERT")]
    cert: Option<PathBuf>,
    /// Operator private key (PEM).
    #[arg(long = "key", env = "LOGRAFT_CLUSTER_KEY")]
    key: Option<PathBuf>,
}

impl ClusterNodeArg {
    /// The TLS identity --ca/--cert/--key name (all three or none).
    fn tls(&self) -> anyhow::Result<Option<Arc<lograft::cluster::tls::ClusterTls>>> {
        match (&self.ca, &self.cert, &self.key) {
            (None, None, None) => Ok(None),
            (Some(ca), Some(cert), Some(key)) => {
                let files = lograft::cluster::tls::TlsFiles {
                    ca_path: ca.clone(),
                    cert_path: cert.clone(),
                    private_key_path: key.clone(),
                };
                Ok(Some(Arc::new(lograft::cluster::tls::ClusterTls::load(
                    files,
                )?)))
            }
            _ => anyhow::bail!(
                "give --ca, --cert and --key together (or LOGRAFT_CLUSTER_CA, _CERT, _KEY)"
            ),
        }
    }
}

fn parse_member(s: &str) -> Result<(u64, String), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("expected ID=ADDR, got {s:?}"))?;
    let id = id
        .trim()
        .parse()
        .map_err(|e| format!("bad node id {id:?}: {e}"))?;
    Ok((id, addr.trim().to_string()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => lograft::cli::check_config(&config),
        Command::BenchLoad {
            target,
            tag,
            events,
            events_per_chunk,
            record_size,
            connections,
            pipeline,
            content,
        } => bench_load(lograft::loadgen::LoadSpec {
            addr: target,
            tag,
            total_events: events,
            events_per_chunk,
            record_size,
            connections,
            pipeline,
            content,
        }),
        Command::Cluster { command } => cluster_admin(command),
        Command::Run {
            config,
            data_dir,
            log_level,
            shutdown_timeout,
        } => match run(config, data_dir, log_level, shutdown_timeout) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("lograft: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn bench_load(spec: lograft::loadgen::LoadSpec) -> ExitCode {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lograft: starting the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(lograft::loadgen::run(spec)) {
        Ok(r) => {
            println!(
                "events={} chunks={} bytes={} elapsed_s={:.3} events_per_s={:.0} ack_p50_ms={:.2} ack_p99_ms={:.2} ack_max_ms={:.2}",
                r.events,
                r.chunks,
                r.bytes,
                r.elapsed.as_secs_f64(),
                r.events_per_sec(),
                r.ack_p50.as_secs_f64() * 1e3,
                r.ack_p99.as_secs_f64() * 1e3,
                r.ack_max.as_secs_f64() * 1e3
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lograft bench-load: {e}");
            ExitCode::FAILURE
        }
    }
}

fn cluster_admin(command: ClusterCommand) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lograft: starting the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(cluster_admin_call(command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lograft cluster: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn cluster_admin_call(command: ClusterCommand) -> anyhow::Result<()> {
    use lograft::cluster::admin::{format_status, status_json, AdminClient};
    let connect = |node: ClusterNodeArg| async move {
        let tls = node.tls()?;
        anyhow::Ok(AdminClient::connect_with(&node.addr, tls.as_ref()).await?)
    };
    let print_members = |reply: &lograft::cluster::proto::admin_pb::MembershipReply| {
        for m in &reply.members {
            let role = lograft::cluster::proto::admin_pb::Role::try_from(m.role)
                .map(|r| r.as_str_name())
                .unwrap_or("?");
            println!("{:>6}  {:<24} {}", m.id, m.address, role);
        }
    };
    match command {
        ClusterCommand::Certs {
            dir,
            nodes,
            operator,
            no_operator,
            days,
        } => {
            let request = lograft::cluster::tls::certs::CertsRequest {
                dir,
                nodes,
                operator: (!no_operator).then_some(operator),
                valid_for: Duration::from_secs(days.max(1) * 86_400),
            };
            for path in lograft::cluster::tls::certs::make_certs(&request)? {
                println!("{}", path.display());
            }
        }
        ClusterCommand::Status { node, json } => {
            let status = connect(node).await?.status().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status_json(&status))?);
            } else {
                print!("{}", format_status(&status));
            }
        }
        ClusterCommand::Init { node, members } => {
            let reply = connect(node)
                .await?
                .init(members.into_iter().collect())
                .await?;
            println!("initialized");
            print_members(&reply);
        }
        ClusterCommand::AddLearner { node, id, addr } => {
            let reply = connect(node).await?.add_learner(id, addr).await?;
            println!(
                "node {id} added as a learner at log index {}",
                reply.log_index
            );
            print_members(&reply);
        }
        ClusterCommand::Promote { node, id, wait } => {
            let reply = connect(node)
                .await?
                .promote(id, Duration::from_secs(wait))
                .await?;
            println!(
                "node {id} promoted to voter at log index {}",
                reply.log_index
            );
            print_members(&reply);
        }
        ClusterCommand::Remove { node, id } => {
            let reply = connect(node).await?.remove(id).await?;
            println!("node {id} removed at log index {}", reply.log_index);
            print_members(&reply);
        }
        ClusterCommand::Replace {
            node,
            old,
            new,
            wait,
        } => {
            let status = connect(node.clone()).await?.status().await?;
            let leader = match status.leader_id {
                Some(id) if !status.leader_address.is_empty() => {
                    (id, status.leader_address.clone())
                }
                _ => anyhow::bail!(
                    "node {} at {} knows no leader (no quorum?); a replacement needs one",
                    status.node_id,
                    status.address
                ),
            };
            if !status.members.iter().any(|m| m.id == new) {
                anyhow::bail!(
                    "node {new} is not in the cluster; start it with `join {}` in its <cluster> section first",
                    node.addr
                );
            }
            if old == leader.0 {
                anyhow::bail!(
                    "node {old} is the leader; move leadership first (`lograft cluster transfer-leader`)"
                );
            }
            let mut client = AdminClient::connect_with(&leader.1, node.tls()?.as_ref()).await?;
            let reply = client.promote(new, Duration::from_secs(wait)).await?;
            println!(
                "node {new} promoted to voter at log index {}",
                reply.log_index
            );
            let reply = client.remove(old).await?;
            println!("node {old} removed at log index {}", reply.log_index);
            print_members(&reply);
        }
        ClusterCommand::TransferLeader { node, to, timeout } => {
            let reply = connect(node)
                .await?
                .transfer_leader(to, Duration::from_secs(timeout))
                .await?;
            println!("node {} leads in term {}", reply.leader_id, reply.term);
        }
        ClusterCommand::Snapshot { node, purge } => {
            let reply = connect(node).await?.trigger_snapshot(purge).await?;
            match reply.purged_index {
                Some(purged) => println!(
                    "snapshot up to index {}, log purged up to {purged}",
                    reply.snapshot_index
                ),
                None => println!("snapshot up to index {}", reply.snapshot_index),
            }
        }
    }
    Ok(())
}

fn run(
    config_path: PathBuf,
    data_dir: Option<PathBuf>,
    log_level: Option<String>,
    shutdown_timeout: u64,
) -> anyhow::Result<()> {
    let loaded = Config::load(&config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    init_logging(log_level, loaded.config.system.log_level);
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    match lograft::fd_limit::raise_nofile_limit() {
        Ok(l) if l.soft > l.previous_soft => tracing::info!(
            limit = l.soft,
            previous = l.previous_soft,
            "raised the open file limit (RLIMIT_NOFILE) to its hard limit"
        ),
        Ok(l) => tracing::info!(limit = l.soft, "open file limit (RLIMIT_NOFILE)"),
        Err(e) => tracing::warn!(error = %e, "could not read or raise the open file limit"),
    }
    let opts = NodeOptions {
        data_dir: data_dir.unwrap_or_else(node::default_data_dir),
        shutdown_timeout: Duration::from_secs(shutdown_timeout),
    };
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        let signals = shutdown.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            }
            signals.cancel();
        });
        node::run(loaded.config, opts, shutdown).await
    })?;
    Ok(())
}

fn init_logging(cli: Option<String>, system: Option<LogLevel>) {
    use tracing_subscriber::EnvFilter;
    let filter = cli
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| {
            match system.unwrap_or(LogLevel::Info) {
                LogLevel::Trace => "trace",
                LogLevel::Debug => "debug",
                LogLevel::Info => "info",
                LogLevel::Warn => "warn",
                LogLevel::Error | LogLevel::Fatal => "error",
            }
            .to_string()
        });
    // openraft narrates every election and vote at info; keep its warnings unless asked for more.
    let filter = if filter.contains("openraft") || !filter.chars().all(|c| c.is_ascii_alphabetic())
    {
        filter
    } else {
        format!("{filter},openraft=warn")
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
