//! `<match> @type file` (out_file): the typed [`FileOutputConfig`] and its builder, with
//! Fluentd's buffer defaults for out_file and its v0.12 time-slice spellings (`time_slice_format`,
//! `time_slice_wait`, `utc`, `localtime`, `timezone`), which set buffer parameters.
//!
//! Owns out_file's parameter names and defaults; it must not write files (the rest of
//! `output::file` does).

use super::FileOutput;
use crate::buffer::config::{BufferConfig, LegacyFlatParams, PluginBufferDefaults};
use crate::config::diag::Diag;
use crate::config::element::Param;
use crate::config::registry::{OutputConfig, OutputPlugin};
use crate::config::section::{compression, output_format, Section};
use crate::config::{value, Compression};
use crate::output::format::Zone;
use crate::output::{Output, OutputError, OutputSpec};
use std::time::Duration;

/// The registry's entry for `@type file`.
pub(crate) const PLUGIN: OutputPlugin = OutputPlugin {
    name: "file",
    build: |sec, d| build(sec, d).map(OutputConfig::File),
    unimplemented_params: &[
        "symlink_path",
        "symlink_path_use_relative",
        "recompress",
        "time_as_integer",
    ],
    unimplemented_sections: &["inject"],
    buffer: PluginBufferDefaults {
        chunk_keys: &["time"],
        timekey: Some(Duration::from_secs(86400)),
        flush_at_shutdown: None,
        chunk_limit_size: None,
        requires_tag_key: false,
        legacy_flat: Some(LegacyFlatParams {
            names: FILE_TIME_SLICE,
            translate: file_time_slice,
        }),
    },
};

/// v0.12 out_file spellings that become buffer time settings.
const FILE_TIME_SLICE: &[&str] = &[
    "time_slice_format",
    "time_slice_wait",
    "utc",
    "localtime",
    "timezone",
];

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

/// The typed config of `<match> @type file`; `None` without `path`.
pub(crate) fn build(sec: &mut Section<'_>, d: &mut Diag) -> Option<FileOutputConfig> {
    let path = sec.required_string(d, "path");
    let cfg = FileOutputConfig {
        path: path.clone().unwrap_or_default(),
        append: sec.bool(d, "append", false),
        compress: compression(sec, d, &["text", "gz", "gzip"]),
        add_path_suffix: sec.bool(d, "add_path_suffix", true),
        path_suffix: sec.string("path_suffix").unwrap_or_else(|| ".log".into()),
        format: match output_format(sec, d, &["out_file", "json"], "out_file") {
            "json" => FileFormat::Json,
            _ => FileFormat::OutFile,
        },
    };
    path.map(|_| cfg)
}

/// out_file's v0.12 `time_slice_format`, `time_slice_wait`, `utc`, `localtime`, `timezone` as
/// buffer parameters (v1 name, value).
fn file_time_slice(p: &Param, d: &mut Diag) -> Option<(String, String)> {
    match p.key.as_str() {
        "time_slice_format" => {
            let f = p.value.as_str();
            let seconds = if f.contains("%S") {
                1
            } else if f.contains("%M") {
                60
            } else if f.contains("%H") {
                3600
            } else if f.contains("%d") {
                86400
            } else {
                d.error(
                    &p.location,
                    format!(
                        "'time_slice_format' '{f}' has no %d, %H, %M or %S placeholder to derive the time slice from"
                    ),
                );
                return None;
            };
            Some(("timekey".into(), seconds.to_string()))
        }
        "time_slice_wait" => Some(("timekey_wait".into(), p.value.clone())),
        "utc" | "localtime" => match value::parse_bool(&p.value) {
            Ok(b) => {
                let utc = if p.key == "utc" { b } else { !b };
                Some(("timekey_use_utc".into(), utc.to_string()))
            }
            Err(e) => {
                d.error(&p.location, format!("'{}': {e}", p.key));
                None
            }
        },
        _ => Some(("timekey_zone".into(), p.value.clone())),
    }
}

impl OutputSpec for FileOutputConfig {
    fn type_name(&self) -> &'static str {
        PLUGIN.name
    }

    /// Path placeholders follow the buffer's `timekey_zone` / `timekey_use_utc`.
    fn build(&self, buffer: &BufferConfig) -> Result<Output, OutputError> {
        let path_zone = match (buffer.timekey_zone, buffer.timekey_use_utc) {
            (Some(offset), _) => Zone::Fixed(offset),
            (None, true) => Zone::Utc,
            (None, false) => Zone::Local,
        };
        let output = FileOutput::with_time_slicing(self, buffer.timekey, path_zone)?;
        Ok(Box::new(output))
    }

    fn describe(&self) -> String {
        let gzip = if self.compress == Compression::Gzip {
            " gzip"
        } else {
            ""
        };
        format!("file path={}{gzip}", self.path)
    }
}
