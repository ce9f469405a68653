//! `<match> @type stdout` (out_stdout): the typed [`StdoutOutputConfig`] and its builder.
//!
//! Owns out_stdout's parameter names and Fluentd's buffer defaults for it; it must not write
//! anything (that is `output::stdout`).

use super::StdoutOutput;
use crate::buffer::config::{BufferConfig, PluginBufferDefaults};
use crate::config::diag::Diag;
use crate::config::registry::{OutputConfig, OutputPlugin};
use crate::config::section::output_format;
use crate::config::section::Section;
use crate::output::{Output, OutputError, OutputSpec};

/// The registry's entry for `@type stdout`.
pub(crate) const PLUGIN: OutputPlugin = OutputPlugin {
    name: "stdout",
    build: |sec, d| Some(OutputConfig::Stdout(build(sec, d))),
    unimplemented_params: &["output_type", "time_as_integer"],
    unimplemented_sections: &["inject"],
    buffer: STDOUT_BUFFER_DEFAULTS,
};

/// Fluentd's buffer defaults for out_stdout, which out_null shares: chunks by tag of at most
/// 10 KiB, flushed at shutdown.
pub(crate) const STDOUT_BUFFER_DEFAULTS: PluginBufferDefaults = PluginBufferDefaults {
    chunk_keys: &["tag"],
    timekey: None,
    flush_at_shutdown: Some(true),
    chunk_limit_size: Some(10 * 1024),
    requires_tag_key: false,
    legacy_flat: None,
};

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

/// The typed config of `<match> @type stdout`.
pub(crate) fn build(sec: &mut Section<'_>, d: &mut Diag) -> StdoutOutputConfig {
    StdoutOutputConfig {
        format: match output_format(sec, d, &["stdout", "json"], "stdout") {
            "json" => StdoutFormat::Json,
            _ => StdoutFormat::Stdout,
        },
    }
}

impl OutputSpec for StdoutOutputConfig {
    fn type_name(&self) -> &'static str {
        PLUGIN.name
    }

    fn build(&self, _: &BufferConfig) -> Result<Output, OutputError> {
        Ok(Box::new(StdoutOutput::new(self)))
    }

    fn describe(&self) -> String {
        let format = match self.format {
            StdoutFormat::Json => "json",
            StdoutFormat::Stdout => "stdout format",
        };
        format!("stdout ({format})")
    }
}
