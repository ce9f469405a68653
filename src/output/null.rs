//! `<match> @type null` (out_null): discards every chunk. Its registry entry, its (empty) typed
//! config and its runtime, whose write always succeeds.

use crate::buffer::config::BufferConfig;
use crate::buffer::Chunk;
use crate::config::registry::{OutputConfig, OutputPlugin};
use crate::output::stdout::config::STDOUT_BUFFER_DEFAULTS;
use crate::output::{ChunkOutput, Output, OutputError, OutputSpec};
use crate::pipeline::BoxFuture;

/// The registry's entry for `@type null`.
pub(crate) const PLUGIN: OutputPlugin = OutputPlugin {
    name: "null",
    build: |_, _| Some(OutputConfig::Null(NullOutput)),
    unimplemented_params: &["never_flush"],
    unimplemented_sections: &[],
    buffer: STDOUT_BUFFER_DEFAULTS,
};

/// out_null: both its (parameterless) config and its runtime.
#[derive(Debug, Clone, Copy)]
pub struct NullOutput;

impl OutputSpec for NullOutput {
    fn type_name(&self) -> &'static str {
        PLUGIN.name
    }

    fn build(&self, _: &BufferConfig) -> Result<Output, OutputError> {
        Ok(Box::new(NullOutput))
    }

    fn describe(&self) -> String {
        PLUGIN.name.into()
    }
}

impl ChunkOutput for NullOutput {
    fn type_name(&self) -> &'static str {
        PLUGIN.name
    }

    fn write<'a>(&'a self, _: &'a Chunk) -> BoxFuture<'a, Result<(), OutputError>> {
        Box::pin(async { Ok(()) })
    }
}
