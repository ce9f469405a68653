//! `<buffer>` (or the flat v0.12 / v1 buffer parameters written in `<match>`): the typed
//! [`BufferConfig`] and its builder.
//!
//! Owns the buffer parameters' names, defaults and checks, Fluentd's compatibility layer (flat
//! `buffer_*` spellings renamed to their v1 names and merged with the `<buffer>` section), and
//! the resolution of per-plugin defaults ([`PluginBufferDefaults`], given by each output in the
//! config registry). The `retry_*` parameters are read by `output::retry::config`. It must not
//! know any output plugin by name, nor start anything.

use crate::config::diag::Diag;
use crate::config::element::{Element, Param};
use crate::config::section::{compression, Section};
use crate::config::{value, Compression};
use crate::retry::config::{read_retry, RetryConfig};
use std::path::PathBuf;
use std::time::Duration;

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
    /// `timekey_zone`: a fixed offset for the path placeholders (overrides `timekey_use_utc`).
    pub timekey_zone: Option<chrono::FixedOffset>,
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
    /// Keep the origin ids of labelled batches (see [`crate::origin`]); not a parameter: the
    /// node turns it off when no output of the buffer sends them on (only out_forward does),
    /// so such a buffer stores and splits batches as if they had none.
    pub keep_origins: bool,
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

impl BufferConfig {
    /// Fluentd's defaults for the given buffer kind.
    pub fn defaults(kind: BufferKind) -> Self {
        let file = matches!(kind, BufferKind::File { .. });
        BufferConfig {
            chunk_by_tag: true,
            timekey: None,
            timekey_wait: Duration::from_secs(600),
            timekey_use_utc: false,
            timekey_zone: None,
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
            keep_origins: true,
            kind,
        }
    }
}

/// What an output plugin changes in the buffer's defaults and compatibility rules (Fluentd's
/// per-plugin `config_section :buffer` defaults). Each output's `PLUGIN` entry carries one.
pub(crate) struct PluginBufferDefaults {
    /// Chunk keys when `<buffer>` names none.
    pub(crate) chunk_keys: &'static [&'static str],
    pub(crate) timekey: Option<Duration>,
    pub(crate) flush_at_shutdown: Option<bool>,
    pub(crate) chunk_limit_size: Option<u64>,
    /// The chunk keys must include `tag` (the output sends one tag per chunk).
    pub(crate) requires_tag_key: bool,
    /// The plugin's own flat parameters that are buffer settings in another spelling.
    pub(crate) legacy_flat: Option<LegacyFlatParams>,
}

/// Flat `<match>` parameters of one plugin that set buffer parameters (out_file's v0.12 time
/// slices): their names, and the translation of one of them to a (v1 name, value) pair (`None`
/// after reporting a bad value).
pub(crate) struct LegacyFlatParams {
    pub(crate) names: &'static [&'static str],
    pub(crate) translate: fn(&Param, &mut Diag) -> Option<(String, String)>,
}

/// Buffer parameters lograft implements (v1 names, as inside `<buffer>`).
const BUFFER_IMPLEMENTED: &[&str] = &[
    "@type",
    "type",
    "path",
    "timekey",
    "timekey_wait",
    "timekey_use_utc",
    "timekey_zone",
    "chunk_limit_size",
    "chunk_limit_records",
    "total_limit_size",
    "queue_limit_length",
    "flush_mode",
    "flush_interval",
    "flush_thread_count",
    "flush_at_shutdown",
    "overflow_action",
    "compress",
    "retry_type",
    "retry_wait",
    "retry_exponential_backoff_base",
    "retry_max_interval",
    "retry_randomize",
    "retry_timeout",
    "retry_max_times",
    "retry_forever",
    "retry_secondary_threshold",
];

/// Documented buffer parameters lograft ignores (with a warning).
const BUFFER_UNIMPLEMENTED: &[&str] = &[
    "chunk_full_threshold",
    "queued_chunks_limit_size",
    "flush_thread_interval",
    "flush_thread_burst_interval",
    "delayed_commit_timeout",
    "disable_chunk_backup",
    "path_suffix",
    "chunk_format",
    "file_permission",
    "dir_permission",
];

/// v1 buffer names that cannot be written flat in `<match>` because the output itself has a
/// parameter of that name (`path`, `compress`, ...).
const NOT_FLAT: &[&str] = &[
    "@type",
    "type",
    "path",
    "compress",
    "path_suffix",
    "file_permission",
    "dir_permission",
];

/// v0.12 flat spellings → v1 `<buffer>` names (Fluentd's compat layer).
const LEGACY_BUFFER: &[(&str, &str)] = &[
    ("buffer_type", "@type"),
    ("buffer_path", "path"),
    ("num_threads", "flush_thread_count"),
    ("try_flush_interval", "flush_thread_interval"),
    ("queued_chunk_flush_interval", "flush_thread_burst_interval"),
    ("disable_retry_limit", "retry_forever"),
    ("retry_limit", "retry_max_times"),
    ("max_retry_wait", "retry_max_interval"),
    ("buffer_chunk_limit", "chunk_limit_size"),
    ("buffer_queue_limit", "queue_limit_length"),
    ("buffer_queue_full_action", "overflow_action"),
];

/// Collects the effective buffer parameters: the `<buffer>` section's own, plus flat ones from
/// `<match>` renamed to their v1 names. Returns the merged element, the flat v1 names given, and
/// the user's spellings.
fn merge_buffer_params(
    sec: &mut Section<'_>,
    d: &mut Diag,
    plugin: &PluginBufferDefaults,
    section: Option<&Element>,
) -> (Element, Vec<String>, Vec<(String, String)>) {
    let mut merged = section
        .cloned()
        .unwrap_or_else(|| Element::new("buffer", "", sec.el.location.clone()));
    let mut flat_names = Vec::new();
    let mut written_as: Vec<(String, String)> = Vec::new();

    // Register every flat spelling as known on <match>, whether given or not.
    for (legacy, _) in LEGACY_BUFFER {
        sec.known_params.push(legacy);
    }
    for name in BUFFER_IMPLEMENTED.iter().chain(BUFFER_UNIMPLEMENTED) {
        if !NOT_FLAT.contains(name) {
            sec.known_params.push(name);
        }
    }
    if let Some(legacy) = &plugin.legacy_flat {
        sec.known_params.extend_from_slice(legacy.names);
    }

    let mut seen: Vec<(String, String, usize)> = Vec::new(); // (v1, written, line)
    for p in &sec.el.params {
        let (v1, value): (String, String) = if let Some((_, v1)) =
            LEGACY_BUFFER.iter().find(|(legacy, _)| *legacy == p.key)
        {
            let value = if p.key == "buffer_queue_full_action" && p.value.trim() == "exception" {
                "throw_exception".to_string()
            } else {
                p.value.clone()
            };
            (v1.to_string(), value)
        } else if (BUFFER_IMPLEMENTED.contains(&p.key.as_str())
            || BUFFER_UNIMPLEMENTED.contains(&p.key.as_str()))
            && !NOT_FLAT.contains(&p.key.as_str())
        {
            (p.key.clone(), p.value.clone())
        } else if let Some(legacy) = plugin
            .legacy_flat
            .as_ref()
            .filter(|l| l.names.contains(&p.key.as_str()))
        {
            match (legacy.translate)(p, d) {
                Some(pair) => pair,
                None => continue,
            }
        } else {
            continue;
        };
        if let Some(in_section) = section.and_then(|s| s.param(&v1)) {
            d.error(
                &p.location,
                format!(
                    "'{}' in {} sets the same buffer parameter as '{}' in <buffer> (line {}); set it in one place",
                    p.key, sec.title, v1, in_section.location.line
                ),
            );
            continue;
        }
        if let Some((_, other, line)) = seen
            .iter()
            .find(|(seen_v1, written, _)| *seen_v1 == v1 && *written != p.key)
        {
            d.error(
                &p.location,
                format!(
                    "'{}' in {} sets the same buffer parameter as '{other}' (line {line}); keep one",
                    p.key, sec.title
                ),
            );
            continue;
        }
        seen.push((v1.clone(), p.key.clone(), p.location.line));
        if v1 != p.key {
            written_as.push((v1.clone(), p.key.clone()));
        }
        flat_names.push(v1.clone());
        merged.params.push(Param {
            key: v1,
            value,
            location: p.location.clone(),
        });
    }
    (merged, flat_names, written_as)
}

/// The `<match>`'s buffer: its `<buffer>` section merged with the flat spellings, with the
/// plugin's defaults (`plugin_name` names the output in messages). `None` after an error.
pub(crate) fn build_buffer(
    sec: &mut Section<'_>,
    d: &mut Diag,
    plugin_name: &str,
    plugin: &PluginBufferDefaults,
) -> Option<BufferConfig> {
    let section = sec.single_section(d, "buffer");
    let (merged, flat_names, written_as) = merge_buffer_params(sec, d, plugin, section);
    let arg_title = if merged.arg.is_empty() {
        String::new()
    } else {
        format!(" {}", merged.arg)
    };
    let mut bsec = Section::new(&merged, format!("<buffer{arg_title}> of {}", sec.title));
    bsec.written_as = written_as;
    let error_count = d.errors.len();

    let mut cfg = BufferConfig::defaults(buffer_kind(&mut bsec, d));
    if let Some(flush) = plugin.flush_at_shutdown {
        cfg.flush_at_shutdown = flush;
    }
    if let Some(limit) = plugin.chunk_limit_size {
        cfg.chunk_limit_size = limit;
    }
    read_chunk_keys(&mut bsec, d, &sec.title, plugin_name, plugin, &mut cfg);
    read_sizes(&mut bsec, d, &mut cfg);
    read_flush(&mut bsec, d, section, &flat_names, &mut cfg);
    read_retry(&mut bsec, d, &merged, &mut cfg.retry);

    bsec.finish(d, BUFFER_UNIMPLEMENTED, &[]);
    (d.errors.len() == error_count).then_some(cfg)
}

/// `@type` (file or memory) and `path`.
fn buffer_kind(bsec: &mut Section<'_>, d: &mut Diag) -> BufferKind {
    let ty = match bsec.enumerated(d, "@type", &["file", "memory"]) {
        Some(t) => Some(t),
        None => bsec.enumerated(d, "type", &["file", "memory"]),
    };
    let path_param = bsec.raw("path");
    match ty {
        Some("memory") => {
            if let Some(p) = path_param {
                d.error(
                    &p.location,
                    format!(
                        "'{}' in {} only applies to file buffers",
                        bsec.shown("path"),
                        bsec.title
                    ),
                );
            }
            BufferKind::Memory
        }
        _ => BufferKind::File {
            path: path_param.map(|p| PathBuf::from(&p.value)),
        },
    }
}

/// The chunk keys (the section's argument, else the plugin's), `timekey` and the other
/// `timekey_*` parameters.
fn read_chunk_keys(
    bsec: &mut Section<'_>,
    d: &mut Diag,
    match_title: &str,
    plugin_name: &str,
    plugin: &PluginBufferDefaults,
    cfg: &mut BufferConfig,
) {
    let merged = bsec.el;
    let chunk_keys: Vec<String> = if merged.arg.trim().is_empty() {
        plugin.chunk_keys.iter().map(|k| k.to_string()).collect()
    } else {
        merged
            .arg
            .split(',')
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .collect()
    };
    for key in &chunk_keys {
        if key != "tag" && key != "time" {
            d.error(
                &merged.location,
                format!(
                    "chunk key '{key}' in {} is not supported: lograft chunks by 'tag' and 'time' only",
                    bsec.title
                ),
            );
        }
    }
    cfg.chunk_by_tag = chunk_keys.iter().any(|k| k == "tag");
    let by_time = chunk_keys.iter().any(|k| k == "time");
    if plugin.requires_tag_key && !cfg.chunk_by_tag {
        d.error(
            &merged.location,
            format!("the buffer chunk keys of {match_title} must include 'tag' (out_{plugin_name} sends one tag per chunk)"),
        );
    }
    let timekey = bsec.duration(d, "timekey").or(plugin.timekey);
    if by_time {
        match timekey {
            None => d.error(
                &merged.location,
                format!(
                    "'timekey' is required in {} because 'time' is a chunk key",
                    bsec.title
                ),
            ),
            Some(t) if t.is_zero() => {
                if let Some(p) = merged.param("timekey") {
                    d.error(
                        &p.location,
                        format!(
                            "'{}' in {} must be greater than 0",
                            bsec.shown("timekey"),
                            bsec.title
                        ),
                    );
                }
            }
            Some(_) => cfg.timekey = timekey,
        }
    } else if let Some(p) = merged.param("timekey") {
        d.warn(
            &p.location,
            format!(
                "'{}' in {} has no effect because 'time' is not a chunk key (write <buffer tag,time>)",
                bsec.shown("timekey"),
                bsec.title
            ),
        );
    }
    if let Some(wait) = bsec.duration(d, "timekey_wait") {
        cfg.timekey_wait = wait;
    }
    cfg.timekey_use_utc = bsec.bool(d, "timekey_use_utc", false);
    cfg.timekey_zone = bsec.typed(d, "timekey_zone", value::parse_utc_offset);
}

/// `chunk_limit_size`, `chunk_limit_records`, and the total size (`total_limit_size`, or the
/// v0.12 way: `queue_limit_length` chunks).
fn read_sizes(bsec: &mut Section<'_>, d: &mut Diag, cfg: &mut BufferConfig) {
    let merged = bsec.el;
    if let Some(size) = bsec.size(d, "chunk_limit_size") {
        if bsec.check_min(d, "chunk_limit_size", size, 1) {
            cfg.chunk_limit_size = size;
        }
    }
    cfg.chunk_limit_records = bsec.integer(d, "chunk_limit_records");
    let total = bsec.size(d, "total_limit_size");
    let queue_limit: Option<u64> = bsec.integer(d, "queue_limit_length");
    match (total, queue_limit) {
        (Some(_), Some(_)) => {
            if let Some(p) = merged.param("queue_limit_length") {
                d.error(
                    &p.location,
                    format!(
                        "'{}' and 'total_limit_size' both set the buffer's total size in {}; keep one",
                        bsec.shown("queue_limit_length"),
                        bsec.title
                    ),
                );
            }
        }
        (Some(total), None) => cfg.total_limit_size = total,
        (None, Some(queue)) => match cfg.chunk_limit_size.checked_mul(queue) {
            Some(total) => cfg.total_limit_size = total,
            None => {
                if let Some(p) = merged.param("queue_limit_length") {
                    d.error(
                        &p.location,
                        format!(
                            "'{}' in {} is too large",
                            bsec.shown("queue_limit_length"),
                            bsec.title
                        ),
                    );
                }
            }
        },
        (None, None) => {}
    }
}

/// `flush_mode` (resolving `default`), `flush_interval`, `flush_thread_count`,
/// `flush_at_shutdown`, `overflow_action` and `compress`. `section` is the user's own
/// `<buffer>` (for the flush_interval rule), `flat_names` the v1 names written flat.
fn read_flush(
    bsec: &mut Section<'_>,
    d: &mut Diag,
    section: Option<&Element>,
    flat_names: &[String],
    cfg: &mut BufferConfig,
) {
    let flush_mode_given = bsec.enumerated(
        d,
        "flush_mode",
        &["default", "lazy", "interval", "immediate"],
    );
    let flat_flush_interval = flat_names.iter().any(|n| n == "flush_interval");
    cfg.flush_mode = match flush_mode_given {
        Some("lazy") => FlushMode::Lazy,
        Some("interval") => FlushMode::Interval,
        Some("immediate") => FlushMode::Immediate,
        // `default`: Fluentd keeps interval when flush_interval is written outside <buffer>.
        _ if flat_flush_interval => FlushMode::Interval,
        _ if cfg.timekey.is_some() => FlushMode::Lazy,
        _ => FlushMode::Interval,
    };
    if let Some(interval) = bsec.duration(d, "flush_interval") {
        cfg.flush_interval = interval;
    }
    if cfg.flush_mode != FlushMode::Interval {
        if let Some(p) = section.and_then(|s| s.param("flush_interval")) {
            let mode = format!("{:?}", cfg.flush_mode).to_lowercase();
            if matches!(flush_mode_given, Some("lazy" | "immediate")) {
                d.error(
                    &p.location,
                    format!(
                        "'flush_interval' in {} cannot be used with 'flush_mode {mode}'",
                        bsec.title
                    ),
                );
            } else {
                d.warn(
                    &p.location,
                    format!(
                        "'flush_interval' in {} is ignored because flush_mode resolves to '{mode}' ('time' is a chunk key); write 'flush_mode interval' to use it",
                        bsec.title
                    ),
                );
            }
        }
    }
    if let Some(threads) = bsec.integer::<usize>(d, "flush_thread_count") {
        if bsec.check_min(d, "flush_thread_count", threads, 1) {
            cfg.flush_thread_count = threads;
        }
    }
    if let Some(flush) = bsec.typed(d, "flush_at_shutdown", value::parse_bool) {
        cfg.flush_at_shutdown = flush;
    }
    cfg.overflow_action = match bsec.enumerated(
        d,
        "overflow_action",
        &["throw_exception", "block", "drop_oldest_chunk"],
    ) {
        Some("block") => OverflowAction::Block,
        Some("drop_oldest_chunk") => OverflowAction::DropOldestChunk,
        _ => OverflowAction::ThrowException,
    };
    cfg.compress = compression(bsec, d, &["text", "gzip"]);
    if cfg.compress == Compression::Gzip {
        if let Some(p) = bsec.raw("compress") {
            d.warn(
                &p.location,
                format!(
                    "'compress gzip' in {} is accepted but not implemented by lograft yet; \
                     chunks are stored uncompressed",
                    bsec.title
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::{errors, ok, warning_text};

    /// The same buffer written three ways: v1 `<buffer>`, v1 flat, v0.12 flat.
    #[test]
    fn flat_and_section_buffer_spellings_agree() {
        let head = "<match a.**>\n  @type forward\n  <server>\n    host h\n  </server>\n";
        let section = ok(&format!(
            "{head}  <buffer>\n    @type file\n    path /var/buf\n    chunk_limit_size 4m\n    total_limit_size 32m\n    flush_interval 5s\n    flush_thread_count 2\n    flush_at_shutdown true\n    overflow_action block\n    retry_wait 2s\n    retry_max_interval 1h\n    retry_max_times 5\n    retry_forever false\n  </buffer>\n</match>\n"
        ));
        let legacy = ok(&format!(
            "{head}  buffer_type file\n  buffer_path /var/buf\n  buffer_chunk_limit 4m\n  buffer_queue_limit 8\n  flush_interval 5s\n  num_threads 2\n  flush_at_shutdown true\n  buffer_queue_full_action block\n  retry_wait 2s\n  max_retry_wait 1h\n  retry_limit 5\n  disable_retry_limit false\n</match>\n"
        ));
        let flat_v1 = ok(&format!(
            "{head}  <buffer>\n    @type file\n    path /var/buf\n  </buffer>\n  chunk_limit_size 4m\n  total_limit_size 32m\n  flush_interval 5s\n  flush_thread_count 2\n  flush_at_shutdown true\n  overflow_action block\n  retry_wait 2s\n  retry_max_interval 1h\n  retry_max_times 5\n  retry_forever false\n</match>\n"
        ));
        let a = format!("{:?}", section.config.matches[0].buffer);
        assert_eq!(a, format!("{:?}", legacy.config.matches[0].buffer));
        assert_eq!(a, format!("{:?}", flat_v1.config.matches[0].buffer));
        let b = &section.config.matches[0].buffer;
        assert_eq!(b.total_limit_size, 32 << 20);
        assert_eq!(b.retry.max_interval, Some(Duration::from_secs(3600)));
        assert_eq!(b.overflow_action, OverflowAction::Block);
        assert!(section.warnings.is_empty() && legacy.warnings.is_empty());

        // `exception` is the v0.12 name of throw_exception; disable_retry_limit → forever.
        let legacy2 = ok(&format!(
            "{head}  buffer_queue_full_action exception\n  disable_retry_limit\n</match>\n"
        ));
        let b2 = &legacy2.config.matches[0].buffer;
        assert_eq!(b2.overflow_action, OverflowAction::ThrowException);
        assert!(b2.retry.forever);

        // Same key in both places, or in two flat spellings: error naming both lines.
        let mixed = errors(&format!(
            "{head}  flush_interval 5s\n  <buffer>\n    flush_interval 1s\n  </buffer>\n</match>\n"
        ));
        assert!(
            mixed.contains(":6: 'flush_interval' in <match a.**> (out_forward) sets the same buffer parameter as 'flush_interval' in <buffer> (line 8)"),
            "{mixed}"
        );
        let twice = errors(&format!(
            "{head}  num_threads 2\n  flush_thread_count 3\n</match>\n"
        ));
        assert!(
            twice.contains(":7: 'flush_thread_count'") && twice.contains("'num_threads' (line 6)"),
            "{twice}"
        );
        let typed = errors(&format!("{head}  buffer_chunk_limit big\n</match>\n"));
        assert!(
            typed.contains(":6: 'buffer_chunk_limit' in <buffer> of <match a.**>")
                && typed.contains("expected a size"),
            "{typed}"
        );
    }

    #[test]
    fn chunk_keys_timekey_and_flush_mode() {
        let head = "<match a.**>\n  @type stdout\n";
        let lazy = ok(&format!(
            "{head}  <buffer tag,time>\n    timekey 1h\n  </buffer>\n</match>\n"
        ));
        let b = &lazy.config.matches[0].buffer;
        assert!(b.chunk_by_tag);
        assert_eq!(b.timekey, Some(Duration::from_secs(3600)));
        assert_eq!(b.flush_mode, FlushMode::Lazy);
        assert!(b.flush_at_shutdown, "stdout's Fluentd default");

        let missing = errors(&format!("{head}  <buffer time>\n  </buffer>\n</match>\n"));
        assert!(
            missing.contains(":3: 'timekey' is required")
                && missing.contains("'time' is a chunk key"),
            "{missing}"
        );
        let bad_key = errors(&format!("{head}  <buffer $.user>\n  </buffer>\n</match>\n"));
        assert!(bad_key.contains("chunk key '$.user'"), "{bad_key}");
        let no_tag = errors("<match a>\n  @type forward\n  <server>\n    host h\n  </server>\n  <buffer time>\n    timekey 60\n  </buffer>\n</match>\n");
        assert!(no_tag.contains("must include 'tag'"), "{no_tag}");
        let inner = errors(&format!(
            "{head}  <buffer>\n    <server>\n    </server>\n  </buffer>\n</match>\n"
        ));
        assert!(inner.contains(":4: unknown section <server> in <buffer> of <match a.**> (out_stdout) (it takes no sections)"), "{inner}");

        // flush_interval inside <buffer> with a time key: Fluentd ignores it (warning)...
        let ignored = ok(&format!(
            "{head}  <buffer time>\n    timekey 60\n    flush_interval 5s\n  </buffer>\n</match>\n"
        ));
        assert_eq!(ignored.config.matches[0].buffer.flush_mode, FlushMode::Lazy);
        assert!(
            warning_text(&ignored).contains(":5: 'flush_interval' in <buffer time>"),
            "{}",
            warning_text(&ignored)
        );
        // ...while a flat flush_interval keeps interval mode (Fluentd's compat rule).
        let flat = ok("<match a>\n  @type file\n  path /x\n  flush_interval 5s\n</match>\n");
        let fb = &flat.config.matches[0].buffer;
        assert_eq!(
            (fb.flush_mode, fb.flush_interval),
            (FlushMode::Interval, Duration::from_secs(5))
        );
        assert_eq!(fb.timekey, Some(Duration::from_secs(86400)));
        // v0.12 out_file time slices become the timekey.
        let sliced = ok(
            "<match a>\n  @type file\n  path /x\n  time_slice_format %Y%m%d%H\n  utc\n</match>\n",
        );
        let sb = &sliced.config.matches[0].buffer;
        assert_eq!(sb.timekey, Some(Duration::from_secs(3600)));
        assert!(sb.timekey_use_utc);
        let zoned = ok(
            "<match a>\n  @type file\n  path /x\n  <buffer time>\n    timekey_zone +09:00\n  </buffer>\n</match>\n",
        );
        let zb = &zoned.config.matches[0].buffer;
        assert_eq!(zb.timekey_zone, chrono::FixedOffset::east_opt(9 * 3600));
        let err = errors(
            "<match a>\n  @type file\n  path /x\n  <buffer time>\n    timekey_zone Asia/Tokyo\n  </buffer>\n</match>\n",
        );
        assert!(err.contains(":5") && err.contains("timekey_zone"), "{err}");
    }
}
