//! Configuration: Fluentd-syntax files parsed once into typed structs.
//!
//! Owns the top of a lograft config's data model ([`Config`], [`SourceConfig`],
//! [`MatchConfig`], the values every plugin shares) and the machinery every builder uses:
//! - [`parser`] turns text (with `@include`) into an [`element::Element`] tree that remembers
//!   file and line; [`value`] parses one value (size, duration, bool, array...);
//! - [`section`] reads one section's parameters and flags unknown ones, [`diag`] collects the
//!   resulting [`ConfigError`]s (file, line, key, "did you mean");
//! - [`build`] walks the top-level directives, [`system`] builds `<system>`, and [`registry`]
//!   maps each `@type` of `<source>` and `<match>` to its component's builder.
//!
//! Each component's typed config and builder live beside the component (e.g.
//! `input::forward::config`, `buffer::config`, `output::file::config`, `cluster::config`).
//! Nothing outside the builders looks a parameter up by string: plugins receive the typed
//! struct for their section.

pub mod build;
pub(crate) mod diag;
pub mod element;
pub mod parser;
pub mod registry;
pub(crate) mod section;
pub mod system;
#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
pub mod value;

pub use registry::{OutputConfig, SourceKind};
pub use system::SystemConfig;

use crate::buffer::config::BufferConfig;
use crate::cluster::config::ClusterConfig;
use std::fmt;
use std::path::{Path, PathBuf};

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

/// `log_level` of `<system>` and `@log_level` of a plugin.
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

/// One `<source>` directive: an input.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub common: PluginCommon,
    pub kind: SourceKind,
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

/// `compress`: shared by out_file, out_forward (and the Forward codec) and `<buffer>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Text,
    Gzip,
}
