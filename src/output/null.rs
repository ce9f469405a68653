//! `<match> @type null` (out_null): discards every chunk. This is its registry entry (it has
//! no parameters of its own); its runtime is the `Output::Null` arm whose write always succeeds.

use crate::buffer::config::PluginBufferDefaults;
use crate::config::registry::{OutputConfig, OutputPlugin};

/// The registry's entry for `@type null`.
pub(crate) const PLUGIN: OutputPlugin = OutputPlugin {
    name: "null",
    build: |_, _| Some(OutputConfig::Null),
    unimplemented_params: &["never_flush"],
    unimplemented_sections: &[],
    buffer: PluginBufferDefaults {
        chunk_keys: &["tag"],
        timekey: None,
        flush_at_shutdown: Some(true),
        chunk_limit_size: Some(10 * 1024),
        requires_tag_key: false,
        legacy_flat: None,
    },
};
