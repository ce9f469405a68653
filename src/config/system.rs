//! `<system>`: the node-wide settings ([`SystemConfig`]) and their builder.
//!
//! Owns `<system>`'s parameter names; it must not apply them (`node` and `main` do).

use super::diag::Diag;
use super::element::Element;
use super::section::Section;
use super::LogLevel;
use std::path::PathBuf;

/// `<system>`.
#[derive(Debug, Clone, Default)]
pub struct SystemConfig {
    /// Base directory for buffers whose path is not given (`root_dir`).
    pub root_dir: Option<PathBuf>,
    pub log_level: Option<LogLevel>,
    /// `max_in_flight_bytes`: one budget, shared by every in_forward of the node, for bytes held
    /// by frames being received or awaiting their commit. Default 256m.
    pub max_in_flight_bytes: Option<u64>,
}

const SYSTEM_UNIMPLEMENTED: &[&str] = &[
    "workers",
    "suppress_repeated_stacktrace",
    "emit_error_log_interval",
    "suppress_config_dump",
    "log_event_verbose",
    "ignore_repeated_log_interval",
    "ignore_same_log_interval",
    "without_source",
    "with_source_only",
    "rpc_endpoint",
    "enable_get_dump",
    "process_name",
    "file_permission",
    "dir_permission",
    "strict_config_value",
    "enable_msgpack_time_support",
    "disable_shared_socket",
    "enable_input_metrics",
    "enable_size_metrics",
    "enable_jit",
    "config_include_dir",
    "umask",
];
const SYSTEM_UNIMPLEMENTED_SECTIONS: &[&str] = &[
    "log",
    "counter_server",
    "counter_client",
    "metrics",
    "source_only_buffer",
];

/// Builds `<system>`.
pub(crate) fn build_system(el: &Element, d: &mut Diag) -> SystemConfig {
    let mut sec = Section::new(el, "<system>");
    if !el.arg.is_empty() {
        d.error(&el.location, "<system> takes no argument");
    }
    let system = SystemConfig {
        root_dir: sec.string("root_dir").map(PathBuf::from),
        log_level: sec.log_level(d, "log_level"),
        max_in_flight_bytes: sec.size(d, "max_in_flight_bytes"),
    };
    if let Some(v) = system.max_in_flight_bytes {
        if v < crate::input::budget::MIN_IN_FLIGHT_BYTES {
            let at = el
                .param("max_in_flight_bytes")
                .map(|p| p.location.clone())
                .unwrap_or_default();
            d.error(
                &at,
                "'max_in_flight_bytes' in <system>: must be at least 1m",
            );
        }
    }
    sec.finish(d, SYSTEM_UNIMPLEMENTED, SYSTEM_UNIMPLEMENTED_SECTIONS);
    system
}
