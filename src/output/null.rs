//! `<match> @type null` (out_null): discards every chunk. This is its registry entry (it has
//! no parameters of its own); its runtime is the `Output::Null` arm whose write always succeeds.

use crate::config::registry::{OutputConfig, OutputPlugin};
use crate::output::stdout::config::STDOUT_BUFFER_DEFAULTS;

/// The registry's entry for `@type null`.
pub(crate) const PLUGIN: OutputPlugin = OutputPlugin {
    name: "null",
    build: |_, _| Some(OutputConfig::Null),
    unimplemented_params: &["never_flush"],
    unimplemented_sections: &[],
    buffer: STDOUT_BUFFER_DEFAULTS,
};
