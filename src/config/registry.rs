//! The registry of plugin types: which `@type` a `<source>` or `<match>` may name, and which
//! component builds its typed config.
//!
//! Every plugin keeps its typed config and its builder beside its runtime, in its own folder
//! (`input/<name>/config.rs`, `output/<name>/config.rs`), and exports one `PLUGIN` entry: its
//! `@type` name, its builder, the Fluentd parameters it accepts but ignores, and (outputs) its
//! buffer defaults. This file lists those entries, in the order messages name them.
//!
//! Adding a plugin touches its own folder and this file only: its `PLUGIN` in [`SOURCES`] or
//! [`OUTPUTS`], its variant of the closed enum [`SourceKind`] / [`OutputConfig`], and that
//! variant's arm of `spec()`. Everything else reaches the plugin through the traits its typed
//! config implements beside it ([`crate::input::SourceSpec`], [`crate::output::OutputSpec`]:
//! start or build the runtime, describe it for `check-config`).
//!
//! It must not read any parameter itself (the plugins' builders do) nor start anything.

use super::diag::Diag;
use super::section::Section;
use crate::buffer::config::PluginBufferDefaults;
use crate::input::forward::config::ForwardInputConfig;
use crate::input::http::config::HttpInputConfig;
use crate::input::tail::config::TailInputConfig;
use crate::input::SourceSpec;
use crate::observe::config::{MonitorAgentConfig, PrometheusConfig};
use crate::output::file::config::FileOutputConfig;
use crate::output::forward::config::ForwardOutputConfig;
use crate::output::null::NullOutput;
use crate::output::s3::config::S3OutputConfig;
use crate::output::stdout::config::StdoutOutputConfig;
use crate::output::OutputSpec;

/// `<source>` types, in the order "lograft supports: ..." lists them.
pub(crate) const SOURCES: &[SourcePlugin] = &[
    crate::input::forward::config::PLUGIN,
    crate::input::http::config::PLUGIN,
    crate::input::tail::config::PLUGIN,
    crate::observe::config::PROMETHEUS,
    crate::observe::config::MONITOR_AGENT,
];

/// `<match>` (and `<secondary>`) output types, in the order "lograft supports: ..." lists them.
pub(crate) const OUTPUTS: &[OutputPlugin] = &[
    crate::output::stdout::config::PLUGIN,
    crate::output::null::PLUGIN,
    crate::output::file::config::PLUGIN,
    crate::output::forward::config::PLUGIN,
    crate::output::s3::config::PLUGIN,
];

/// One `<source>` type.
pub(crate) struct SourcePlugin {
    /// The `@type` name.
    pub(crate) name: &'static str,
    /// Reads the plugin's parameters from the `<source>` section (which [`Section::finish`]
    /// then checks for unknown ones).
    pub(crate) build: fn(&mut Section<'_>, &mut Diag) -> SourceKind,
    /// Parameters Fluentd documents for the plugin that lograft ignores (a warning).
    pub(crate) unimplemented_params: &'static [&'static str],
    pub(crate) unimplemented_sections: &'static [&'static str],
}

/// One `<match>` output type.
pub(crate) struct OutputPlugin {
    /// The `@type` name.
    pub(crate) name: &'static str,
    /// Reads the plugin's parameters from the `<match>` or `<secondary>` section; `None` after
    /// an error that leaves no usable config.
    pub(crate) build: fn(&mut Section<'_>, &mut Diag) -> Option<OutputConfig>,
    /// Parameters Fluentd documents for the plugin that lograft ignores (a warning).
    pub(crate) unimplemented_params: &'static [&'static str],
    pub(crate) unimplemented_sections: &'static [&'static str],
    /// Fluentd's per-plugin buffer defaults and compatibility rules.
    pub(crate) buffer: PluginBufferDefaults,
}

/// The `<source>` type named `name`.
pub(crate) fn source(name: &str) -> Option<&'static SourcePlugin> {
    SOURCES.iter().find(|p| p.name == name)
}

/// The output type named `name`.
pub(crate) fn output(name: &str) -> Option<&'static OutputPlugin> {
    OUTPUTS.iter().find(|p| p.name == name)
}

/// "forward, http": the source types for "lograft supports: ..." messages.
pub(crate) fn source_names() -> String {
    SOURCES
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// "stdout, null, ...": the output types for "lograft supports: ..." messages.
pub(crate) fn output_names() -> String {
    OUTPUTS
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The typed config of a `<source>`: one variant per source type.
// Built once at startup; boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum SourceKind {
    Forward(ForwardInputConfig),
    Http(HttpInputConfig),
    Tail(TailInputConfig),
    /// Not an input of events: the metrics server (`observe`).
    Prometheus(PrometheusConfig),
    /// Not an input of events: Fluentd's monitoring API (`observe`).
    MonitorAgent(MonitorAgentConfig),
}

impl SourceKind {
    /// The plugin's config behind what every source config does (start, describe).
    pub(crate) fn spec(&self) -> &dyn SourceSpec {
        match self {
            SourceKind::Forward(c) => c,
            SourceKind::Http(c) => c,
            SourceKind::Tail(c) => c,
            SourceKind::Prometheus(c) => c,
            SourceKind::MonitorAgent(c) => c,
        }
    }
}

/// The typed config of an output (`<match>` or `<secondary>`): one variant per output type.
// Built once at startup; boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum OutputConfig {
    Stdout(StdoutOutputConfig),
    Null(NullOutput),
    File(FileOutputConfig),
    Forward(ForwardOutputConfig),
    /// Object storage; only an aggregator cluster's leader uploads to it (see `cluster::upload`).
    S3(S3OutputConfig),
}

impl OutputConfig {
    /// The plugin's config behind what every output config does (build, describe).
    pub fn spec(&self) -> &dyn OutputSpec {
        match self {
            OutputConfig::Stdout(c) => c,
            OutputConfig::Null(c) => c,
            OutputConfig::File(c) => c,
            OutputConfig::Forward(c) => c,
            OutputConfig::S3(c) => c,
        }
    }

    pub fn type_name(&self) -> &'static str {
        self.spec().type_name()
    }
}
