//! lograft: a Fluentd-compatible log forwarder and Raft-replicated aggregator that never loses
//! an acknowledged event.
//!
//! # Layout
//!
//! An event's path through a node mirrors the modules below:
//!
//! ```text
//!  app ──Forward/HTTP──▶ input ──▶ router ──▶ buffer ──▶ output ──Forward──▶ next hop
//!
//!  on an aggregator with <cluster>:
//!  forwarder ──Forward──▶ input ──▶ cluster::ingest ──Raft log (majority fsync)──▶ ack
//!                                   leader: cluster::upload ──seal/upload/confirm──▶ bucket
//! ```
//!
//! - [`config`]: Fluentd-syntax config files parsed once into typed structs, errors with file:line:
//!   the parser, the section reader and diagnostics, `<system>`, and the registry mapping each
//!   `@type` to its plugin's builder. Each component's typed config and builder live beside it
//!   (`input::*::config`, `buffer::config`, `output::*::config`, `retry::config`,
//!   `cluster::config`), and the config implements the plugin traits (`input::SourceSpec`,
//!   `output::OutputSpec`) through which the node starts it and `check-config` describes it:
//!   adding a plugin touches its folder and `config::registry` only.
//! - `msgpack`: the one set of msgpack primitives: the marker table, a cursor over a complete
//!   buffer, the resumable scanner that finds where a value ends in a stream, and writers.
//! - `event`: tags, `EventTime`, and batches of entries kept as msgpack bytes (never decoded
//!   on the hot path).
//! - [`forward`]: the one Forward-protocol codec (event modes, options, ack, handshake),
//!   shared by the forward input and the forward output.
//! - `origin`: origin ids, the dedup identity of a client's chunk carried through a forwarder's
//!   buffer and out_forward's frames to the cluster, so a chunk a client resends through another
//!   forwarder is stored once.
//! - `pipeline`: the contract between inputs and the rest of the node (`pipeline::Emit`):
//!   "store this batch and tell me when it is committed".
//! - `input`: servers that accept events (`forward`, `http`) and acknowledge them only once
//!   the rest of the node says they are committed (through `pipeline::Emit`); `tail`, which
//!   reads log files and commits each file's position together with its lines. `input::http`
//!   is split by concept: server, request, body decoding, compression, forms, CORS, responses.
//! - `parse`: `<parse>` formats (none, json, regexp, apache2, nginx, syslog, csv, tsv, ltsv,
//!   multiline, cri, docker): one line of text to one event, used by the tail input.
//! - `router`: `<match>` patterns; sends each batch to the first matching pipeline's buffer.
//! - `buffer`: chunks on disk (or in memory): checksummed appends, group-committed fsyncs,
//!   resume after crashes, quarantine of corrupt chunks, flush scheduling.
//! - `output`: where chunks go (`stdout`, `null`, `file`, `forward`; `s3` holds only the
//!   config of the cluster's upload target), and the driver that takes queued
//!   chunks from a buffer, writes them with retry/backoff, and hands exhausted ones to
//!   `<secondary>`.
//! - `retry`: the one retry/backoff mechanism (Fluentd's `retry_*` parameters and the backoff
//!   times), used by the output driver and the cluster's uploader; a leaf.
//! - [`cluster`]: the aggregator cluster (openraft): the Raft log and the chunk state machine
//!   on one RocksDB per node, file-backed snapshots, the gRPC network and admin API, bootstrap
//!   (forming/joining, the disk-loss guard), ingest (the inputs' `Emit`: ack once committed)
//!   and the leader's exactly-once uploader to a local directory or S3 (a backoff per failing
//!   batch; batches that can never be uploaded go to the bucket's dead-letter area, agreed
//!   through Raft).
//! - [`node`]: builds the pipeline from a [`config::Config`] (a forwarder/single aggregator, or
//!   a cluster node when the config has `<cluster>`), runs it, and shuts it down on SIGTERM.
//! - `observe`: the node's metrics and health, beside the data flow rather than in it: one
//!   registry (prometheus-client) owned by the node, handles handed to inputs, the output
//!   driver, the file writer and the cluster (atomic counters per batch or chunk); values that
//!   exist as state elsewhere are read at scrape time. `<source> @type prometheus` (`/metrics`)
//!   and `@type monitor_agent` (`/api/plugins.json`) are its servers, with `/health` and
//!   `/ready`; their typed configs live in `observe::config`, not under `input` (they accept no
//!   events).
//! - `record_depth`: the record nesting-depth limit every input enforces before the ack.
//! - `log_limit`: rate-limited warnings for conditions that repeat per chunk.
//! - [`fd_limit`]: raising the open-file limit at startup; recognizing fd exhaustion.
//! - [`tls`]: loading certificates and keys for rustls.
//! - `durable_fs`: creating directories durably (parents fsynced) and fsyncing a directory.
//! - `fault_injection`: the `fault-injection` feature's switch to skip a named fsync
//!   (`LOGRAFT_SKIP_FSYNC`), used by the fault harness's power-loss nemesis; inert otherwise.
//! - [`loadgen`]: the benchmark client behind `lograft bench-load`.
//! - [`cli`]: the commands of the `lograft` binary that are library code (`check-config` and
//!   its summary).
//!
//! The public surface is what the binary, the integration tests and the benchmark client need:
//! `config`, `node`, `cli`, `cluster` (its gRPC messages, TLS and admin client), `forward` (the
//! codec, for tests that act as a Forward peer), `tls`, `fd_limit` and `loadgen`. Every other
//! module is `pub(crate)`, so the compiler reports what nothing uses.

pub(crate) mod buffer;
pub mod cli;
pub mod cluster;
pub mod config;
mod durable_fs;
pub(crate) mod event;
mod fault_injection;
pub mod fd_limit;
pub mod forward;
pub(crate) mod input;
pub mod loadgen;
pub(crate) mod log_limit;
pub(crate) mod msgpack;
pub mod node;
pub(crate) mod observe;
mod origin;
pub(crate) mod output;
pub(crate) mod parse;
pub(crate) mod pipeline;
pub(crate) mod record_depth;
pub(crate) mod retry;
pub(crate) mod router;
pub mod tls;
