//! Configuration: Fluentd-syntax files parsed once into the typed structs below.
//!
//! Owns the data model of a lograft config. `parser` turns text (with `@include`) into an
//! [`element::Element`] tree that remembers file and line; `build` turns that tree into
//! [`Config`], reporting unknown keys, wrong types and unknown plugin types as
//! [`ConfigError`]s that name file, line and key. Nothing outside this module looks a
//! parameter up by string: plugins receive the typed struct for their section.

pub mod build;
pub mod element;
pub mod parser;
pub mod value;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a directive or parameter was written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One problem found in a config file, printed as `FILE:LINE: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct ConfigError {
    pub location: Location,
    pub message: String,
}

/// All problems found in one load (the loader keeps going to report as many as it can).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// A valid config plus the warnings to log at startup (accepted-but-not-implemented params).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<ConfigError>,
}

impl Config {
    /// Parse and validate a config file (following `@include`s).
    pub fn load(path: &Path) -> Result<Loaded, ConfigErrors> {
        build::load(path)
    }
}

/// A whole lograft config: `<system>`, `<source>`s and `<match>`es in file order.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub system: SystemConfig,
    pub sources: Vec<SourceConfig>,
    pub matches: Vec<MatchConfig>,
    /// `<cluster>`: present on an aggregator that replicates its chunks with Raft.
    pub cluster: Option<ClusterConfig>,
}

/// `<cluster>`: this aggregator's place in its Raft group.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This node's Raft id (unique in the cluster, never reused after a disk loss).
    pub node_id: u64,
    /// `host:port` this node serves Raft and admin gRPC on.
    pub address: String,
    /// `host:port` other nodes use to reach this one (default: `address`).
    pub advertise_address: Option<String>,
    /// `<member id address>` sections: the initial voters of a new cluster (including this node).
    pub members: Vec<MemberConfig>,
    /// `host:port` of a member of an existing cluster to join as a learner.
    pub join: Option<String>,
    /// Raft log and state machine directory (default: `<root_dir or --data-dir>/raft`).
    pub data_dir: Option<PathBuf>,
    /// Build a snapshot (and purge the log) every this many applied entries. Default 1000.
    pub snapshot_every: u64,
    /// How many recent chunk ids the state machine remembers to drop retransmissions. Default 100,000.
    pub dedup_window: u64,
    /// Leader heartbeat. Default 100 ms.
    pub heartbeat_interval: Duration,
    /// Election timeout (the lower bound; the upper is twice it). Default 500 ms.
    pub election_timeout: Duration,
    pub location: Location,
}

/// `<member>` inside `<cluster>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberConfig {
    pub id: u64,
    pub address: String,
}

#[derive(Debug, Clone, Default)]
pub struct SystemConfig {
    /// Base directory for buffers whose path is not given (`root_dir`).
    pub root_dir: Option<PathBuf>,
    pub log_level: Option<LogLevel>,
    /// `max_in_flight_bytes`: one budget, shared by every in_forward of the node, for bytes held
    /// by frames being received or awaiting their commit. Default 256m.
    pub max_in_flight_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

/// Attributes every plugin section may carry.
#[derive(Debug, Clone, Default)]
pub struct PluginCommon {
    /// `@id`
    pub id: Option<String>,
    /// `@log_level` / `log_level`
    pub log_level: Option<LogLevel>,
    /// Where the directive starts.
    pub location: Location,
}

#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub common: PluginCommon,
    pub kind: SourceKind,
}

// Built once at startup; boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum SourceKind {
    Forward(ForwardInputConfig),
    Http(HttpInputConfig),
}

/// `<source> @type forward`
#[derive(Debug, Clone)]
pub struct ForwardInputConfig {
    pub bind: String,
    /// Default 24224.
    pub port: u16,
    /// Overrides the tag of every event.
    pub tag: Option<String>,
    pub add_tag_prefix: Option<String>,
    /// Chunks larger than this (bytes on the wire) are refused. Default: none.
    pub chunk_size_limit: Option<u64>,
    pub chunk_size_warn_limit: Option<u64>,
    /// Limit on decompressed size of a CompressedPackedForward chunk. Default 256m.
    pub decompression_size_limit: u64,
    /// Default true (Fluentd ≥ 1.19).
    pub skip_invalid_event: bool,
    pub source_address_key: Option<String>,
    pub source_hostname_key: Option<String>,
    pub resolve_hostname: bool,
    pub deny_keepalive: bool,
    /// Connections open at once; more are closed as soon as accepted. Default 16384.
    pub max_connections: usize,
    /// A connection without a complete frame and without an ack pending for this long is
    /// closed. Default 300s; zero: never.
    pub idle_timeout: Duration,
    pub security: Option<ServerSecurityConfig>,
    pub tls: Option<ServerTlsConfig>,
}

/// Default of in_forward's `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16384;
/// Default of in_forward's `idle_timeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

impl Default for ForwardInputConfig {
    /// Fluentd's in_forward defaults.
    fn default() -> Self {
        ForwardInputConfig {
            bind: "0.0.0.0".into(),
            port: 24224,
            tag: None,
            add_tag_prefix: None,
            chunk_size_limit: None,
            chunk_size_warn_limit: None,
            decompression_size_limit: 256 << 20,
            skip_invalid_event: true,
            source_address_key: None,
            source_hostname_key: None,
            resolve_hostname: false,
            deny_keepalive: false,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            security: None,
            tls: None,
        }
    }
}

/// `<security>` inside in_forward.
#[derive(Debug, Clone, Default)]
pub struct ServerSecurityConfig {
    pub self_hostname: String,
    pub shared_key: String,
    pub user_auth: bool,
    pub allow_anonymous_source: bool,
    pub users: Vec<UserConfig>,
    pub clients: Vec<ClientConfig>,
}

/// `<user>` inside `<security>`.
#[derive(Debug, Clone, Default)]
pub struct UserConfig {
    pub username: String,
    pub password: String,
}

/// `<client>` inside `<security>`.
#[derive(Debug, Clone, Default)]
pub struct ClientConfig {
    pub host: Option<String>,
    pub network: Option<String>,
    pub shared_key: Option<String>,
    pub users: Vec<String>,
}

/// `<transport tls>` inside in_forward.
#[derive(Debug, Clone, Default)]
pub struct ServerTlsConfig {
    pub cert_path: PathBuf,
    pub private_key_path: PathBuf,
    pub private_key_passphrase: Option<String>,
    pub client_cert_auth: bool,
    pub ca_path: Option<PathBuf>,
}

/// `<source> @type http`
#[derive(Debug, Clone)]
pub struct HttpInputConfig {
    pub bind: String,
    /// Default 8888, the port of the HA topology (Fluentd's own in_http default is 9880).
    pub port: u16,
    /// Default 32m.
    pub body_size_limit: u64,
    pub keepalive_timeout: Duration,
    pub add_http_headers: bool,
    pub add_remote_addr: bool,
    pub use_204_response: bool,
    pub respond_with_empty_img: bool,
    pub cors_allow_origins: Vec<String>,
}

/// One `<match PATTERN...>` directive: where matching events are buffered and sent.
#[derive(Debug, Clone)]
pub struct MatchConfig {
    pub common: PluginCommon,
    /// The raw patterns (space separated in the directive).
    pub patterns: Vec<String>,
    pub output: OutputConfig,
    pub buffer: BufferConfig,
    /// `<secondary>`: receives chunks whose retries ran out.
    pub secondary: Option<OutputConfig>,
}

// Built once at startup; boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum OutputConfig {
    Stdout(StdoutOutputConfig),
    Null,
    File(FileOutputConfig),
    Forward(ForwardOutputConfig),
    /// Object storage; only an aggregator cluster's leader uploads to it (see `cluster::upload`).
    S3(S3OutputConfig),
}

impl OutputConfig {
    pub fn type_name(&self) -> &'static str {
        match self {
            OutputConfig::Stdout(_) => "stdout",
            OutputConfig::Null => "null",
            OutputConfig::File(_) => "file",
            OutputConfig::Forward(_) => "forward",
            OutputConfig::S3(_) => "s3",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdoutFormat {
    /// `time tag: {json}` (Fluentd's default stdout format).
    Stdout,
    Json,
}

#[derive(Debug, Clone)]
pub struct StdoutOutputConfig {
    pub format: StdoutFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Text,
    Gzip,
}

/// `<match> @type file` (Fluentd out_file).
#[derive(Debug, Clone)]
pub struct FileOutputConfig {
    /// Path prefix, may contain strftime placeholders (`%Y%m%d`) and `${tag}`.
    pub path: String,
    pub append: bool,
    pub compress: Compression,
    /// Add `.log` / `.gz` suffixes as Fluentd does (default true).
    pub add_path_suffix: bool,
    pub path_suffix: String,
    /// Line format: `time<TAB>tag<TAB>json` (out_file) or `json` (record only).
    pub format: FileFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    OutFile,
    Json,
}

/// `<match> @type s3`: an S3-compatible bucket (fluent-plugin-s3's parameter names).
#[derive(Clone)]
pub struct S3OutputConfig {
    pub bucket: String,
    pub region: Option<String>,
    /// `s3_endpoint`: an S3-compatible server (MinIO, Ceph...) instead of AWS.
    pub endpoint: Option<String>,
    /// `path`: key prefix inside the bucket.
    pub prefix: String,
    /// `aws_key_id` / `aws_sec_key`; when absent the `AWS_*` environment is used.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub force_path_style: bool,
}

impl std::fmt::Debug for S3OutputConfig {
    // Never print the secret key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3OutputConfig")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("prefix", &self.prefix)
            .field("access_key_id", &self.access_key_id)
            .field("force_path_style", &self.force_path_style)
            .finish_non_exhaustive()
    }
}

/// `<match> @type forward` (behaviour in `output::forward`).
#[derive(Debug, Clone)]
pub struct ForwardOutputConfig {
    pub servers: Vec<ServerConfig>,
    pub transport: Transport,
    pub send_timeout: Duration,
    pub connect_timeout: Option<Duration>,
    pub heartbeat_type: HeartbeatType,
    pub heartbeat_interval: Duration,
    pub recover_wait: Duration,
    pub hard_timeout: Duration,
    pub phi_failure_detector: bool,
    pub phi_threshold: f64,
    /// lograft default: true (Fluentd's is false).
    pub require_ack_response: bool,
    pub ack_response_timeout: Duration,
    pub expire_dns_cache: Option<Duration>,
    pub dns_round_robin: bool,
    pub compress: Compression,
    pub keepalive: bool,
    pub keepalive_timeout: Option<Duration>,
    pub verify_connection_at_startup: bool,
    /// lograft: the largest Forward message sent, in bytes; a bigger chunk goes out as several
    /// messages (default 4 MiB; 0 = each chunk in one message, as Fluentd does).
    pub max_frame_size: u64,
    pub tls: ClientTlsConfig,
    pub security: Option<ClientSecurityConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Tls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatType {
    Transport,
    Udp,
    None,
}

/// One `<server>` of out_forward.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub host: String,
    /// Default 24224.
    pub port: u16,
    pub name: Option<String>,
    /// Default 60.
    pub weight: u32,
    pub standby: bool,
    pub shared_key: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub location: Location,
}

/// out_forward's `tls_*` parameters.
#[derive(Debug, Clone, Default)]
pub struct ClientTlsConfig {
    pub cert_path: Vec<PathBuf>,
    pub ca_cert_path: Option<PathBuf>,
    pub client_cert_path: Option<PathBuf>,
    pub client_private_key_path: Option<PathBuf>,
    pub verify_hostname: bool,
    pub insecure_mode: bool,
    pub allow_self_signed_cert: bool,
}

/// out_forward's `<security>`.
#[derive(Debug, Clone, Default)]
pub struct ClientSecurityConfig {
    pub self_hostname: String,
    pub shared_key: String,
}

/// `<buffer>` section, or the flat v0.12 parameters (`buffer_type`, `buffer_path`, ...).
#[derive(Debug, Clone)]
pub struct BufferConfig {
    pub kind: BufferKind,
    /// Chunk by tag (always true for out_forward).
    pub chunk_by_tag: bool,
    /// Chunk by time: `Some(timekey)` when `time` is a chunk key.
    pub timekey: Option<Duration>,
    /// Default 600s.
    pub timekey_wait: Duration,
    pub timekey_use_utc: bool,
    /// Default 8m (memory) / 256m (file).
    pub chunk_limit_size: u64,
    pub chunk_limit_records: Option<u64>,
    /// Default 512m (memory) / 64g (file).
    pub total_limit_size: u64,
    pub flush_mode: FlushMode,
    /// Default 60s.
    pub flush_interval: Duration,
    /// Default 1.
    pub flush_thread_count: usize,
    /// Default: true for memory, false for file.
    pub flush_at_shutdown: bool,
    pub overflow_action: OverflowAction,
    pub compress: Compression,
    pub retry: RetryConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BufferKind {
    /// `path` is a directory; `None` means "derive from root_dir / data dir and @id".
    File {
        path: Option<PathBuf>,
    },
    Memory,
}

/// Resolved flush mode (`default` is resolved by the loader: lazy with a timekey, else interval).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushMode {
    Interval,
    Immediate,
    Lazy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverflowAction {
    ThrowException,
    Block,
    DropOldestChunk,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryType {
    ExponentialBackoff,
    Periodic,
}

/// Retry parameters shared by every output.
#[derive(Debug, Clone)]
pub struct RetryConfig {
    pub retry_type: RetryType,
    /// Default 1s.
    pub wait: Duration,
    /// Default 2.0.
    pub exponential_backoff_base: f64,
    pub max_interval: Option<Duration>,
    /// Default true.
    pub randomize: bool,
    /// Default 72h.
    pub timeout: Duration,
    pub max_times: Option<u32>,
    pub forever: bool,
    /// Default 0.8.
    pub secondary_threshold: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            retry_type: RetryType::ExponentialBackoff,
            wait: Duration::from_secs(1),
            exponential_backoff_base: 2.0,
            max_interval: None,
            randomize: true,
            timeout: Duration::from_secs(72 * 3600),
            max_times: None,
            forever: false,
            secondary_threshold: 0.8,
        }
    }
}

impl BufferConfig {
    /// Fluentd's defaults for the given buffer kind.
    pub fn defaults(kind: BufferKind) -> Self {
        let file = matches!(kind, BufferKind::File { .. });
        BufferConfig {
            chunk_by_tag: true,
            timekey: None,
            timekey_wait: Duration::from_secs(600),
            timekey_use_utc: false,
            chunk_limit_size: if file { 256 << 20 } else { 8 << 20 },
            chunk_limit_records: None,
            total_limit_size: if file { 64 << 30 } else { 512 << 20 },
            flush_mode: FlushMode::Interval,
            flush_interval: Duration::from_secs(60),
            flush_thread_count: 1,
            flush_at_shutdown: !file,
            overflow_action: OverflowAction::ThrowException,
            compress: Compression::Text,
            retry: RetryConfig::default(),
            kind,
        }
    }
}
