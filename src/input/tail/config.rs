//! `<source> @type tail` (in_tail): the typed [`TailInputConfig`] and its builder, with
//! Fluentd's parameter names and defaults.
//!
//! Owns in_tail's parameters and their checks; it must not touch files (that is
//! `input::tail`) nor parse lines (that is `crate::parse`).

use super::TailInput;
use crate::config::diag::Diag;
use crate::config::registry::{SourceKind, SourcePlugin};
use crate::config::section::Section;
use crate::input::{InputContext, InputTask, SourceSpec};
use crate::observe::MeteredEmit;
use crate::parse::ParseConfig;
use crate::pipeline::BoxFuture;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// The registry's entry for `@type tail`.
pub(crate) const PLUGIN: SourcePlugin = SourcePlugin {
    name: "tail",
    build: |sec, d| SourceKind::Tail(build(sec, d)),
    unimplemented_params: UNIMPLEMENTED,
    unimplemented_sections: &["group"],
};

/// Documented in_tail parameters lograft accepts and ignores (with a warning).
const UNIMPLEMENTED: &[&str] = &[
    "encoding",
    "from_encoding",
    "path_timezone",
    "pos_file_compaction_interval",
];

/// `<source> @type tail`
#[derive(Debug, Clone)]
pub struct TailInputConfig {
    /// Glob patterns (`*`, `**`, `?`, `[..]`), from the comma-separated `path`.
    pub paths: Vec<String>,
    pub exclude_paths: Vec<String>,
    /// The tag; a `*` in it is replaced by the file's path with `/` turned into `.`.
    pub tag: String,
    /// How often the globs are expanded again (default 60s).
    pub refresh_interval: Duration,
    /// Files without a known position are read from the start (default false: from the end,
    /// for files present at startup; files appearing later are always read from the start).
    pub read_from_head: bool,
    pub path_key: Option<String>,
    pub pos_file: Option<PathBuf>,
    /// How long a rotated (renamed or deleted) file is still read (default 5s).
    pub rotate_wait: Duration,
    /// Identify files by inode alone (a file renamed within the globs is not read again).
    pub follow_inodes: bool,
    /// Files not modified within this long are not watched (None: no limit).
    pub limit_recently_modified: Option<Duration>,
    /// Lines longer than this are skipped with a warning (None: no limit, except the safety
    /// cap [`MAX_LINE_CAP`]).
    pub max_line_size: Option<u64>,
    /// Lines per batch read from one file (default 1000).
    pub read_lines_limit: usize,
    /// Bytes per second read from one file (None: unlimited; Fluentd's -1).
    pub read_bytes_limit_per_second: Option<u64>,
    pub skip_refresh_on_startup: bool,
    /// Lines the parser does not match are emitted as `{"unmatched_line": line}` with tag
    /// `<tag>` instead of being dropped with a warning.
    pub emit_unmatched_lines: bool,
    /// Polling interval for changes (lograft polls: `enable_stat_watcher` and
    /// `enable_watch_timer` both select it; default 1s for the timer, 250ms when the stat
    /// watcher is on).
    pub poll_interval: Duration,
    pub ignore_repeated_permission_error: bool,
    /// Close each file after reading it and open it again on the next change.
    pub open_on_every_update: bool,
    /// `<parse> @type multiline`: emit a pending group after this long without new lines
    /// (None: only when the next group starts).
    pub multiline_flush_interval: Option<Duration>,
    pub parse: ParseConfig,
}

/// Lines longer than this are always skipped, whatever `max_line_size` says: bounds the
/// memory one unterminated line can take.
pub const MAX_LINE_CAP: u64 = 64 << 20;

/// The polling interval when the stat watcher is enabled (the default).
pub const STAT_WATCHER_POLL: Duration = Duration::from_millis(250);
/// The polling interval with only the watch timer (Fluentd's timer period).
pub const WATCH_TIMER_POLL: Duration = Duration::from_secs(1);

/// The typed config of `<source> @type tail`.
pub(crate) fn build(sec: &mut Section<'_>, d: &mut Diag) -> TailInputConfig {
    let paths: Vec<String> = sec
        .required_string(d, "path")
        .map(|p| split_paths(&p))
        .unwrap_or_default();
    let tag = sec.required_string(d, "tag").unwrap_or_default();
    let parse_el = sec.single_section(d, "parse");
    let parse = match parse_el {
        Some(el) => crate::parse::build(el, "in_tail", d).unwrap_or_default(),
        None => {
            // Fluentd needs <parse>; `format` is the v0.12 spelling.
            match sec.string("format").as_deref() {
                Some("none") | None => {
                    if sec.el.param("format").is_none() {
                        d.error(
                            &sec.el.location,
                            format!(
                                "missing <parse> section in {} (e.g. <parse> @type none </parse>)",
                                sec.title
                            ),
                        );
                    }
                    ParseConfig::default()
                }
                Some(other) => {
                    d.error(
                        &sec.el.location,
                        format!(
                            "'format {other}' in {}: write it as <parse> @type {other} </parse>",
                            sec.title
                        ),
                    );
                    ParseConfig::default()
                }
            }
        }
    };
    let stat_watcher = sec.bool(d, "enable_stat_watcher", true);
    let watch_timer = sec.bool(d, "enable_watch_timer", true);
    if !stat_watcher && !watch_timer {
        d.error(
            &sec.el.location,
            format!(
                "{}: enable_stat_watcher and enable_watch_timer cannot both be false",
                sec.title
            ),
        );
    }
    let read_lines_limit = sec.integer::<i64>(d, "read_lines_limit").unwrap_or(1000);
    sec.check_min(d, "read_lines_limit", read_lines_limit, 1);
    let bytes_limit = sec.size_or_minus_one(d, "read_bytes_limit_per_second");
    let max_line_size = sec.size(d, "max_line_size").filter(|n| *n > 0);
    let limit_recently_modified = sec.duration(d, "limit_recently_modified");
    TailInputConfig {
        exclude_paths: sec.array(d, "exclude_path").unwrap_or_default(),
        refresh_interval: sec
            .duration(d, "refresh_interval")
            .unwrap_or(Duration::from_secs(60))
            .max(Duration::from_millis(10)),
        read_from_head: sec.bool(d, "read_from_head", false),
        path_key: sec.string("path_key"),
        pos_file: sec.string("pos_file").map(PathBuf::from),
        rotate_wait: sec
            .duration(d, "rotate_wait")
            .unwrap_or(Duration::from_secs(5)),
        follow_inodes: sec.bool(d, "follow_inodes", false),
        limit_recently_modified,
        max_line_size,
        read_lines_limit: read_lines_limit.max(1) as usize,
        read_bytes_limit_per_second: bytes_limit,
        skip_refresh_on_startup: sec.bool(d, "skip_refresh_on_startup", false),
        emit_unmatched_lines: sec.bool(d, "emit_unmatched_lines", false),
        poll_interval: if stat_watcher {
            STAT_WATCHER_POLL
        } else {
            WATCH_TIMER_POLL
        },
        ignore_repeated_permission_error: sec.bool(d, "ignore_repeated_permission_error", false),
        open_on_every_update: sec.bool(d, "open_on_every_update", false),
        multiline_flush_interval: sec.duration(d, "multiline_flush_interval"),
        paths,
        tag,
        parse,
    }
}

/// `path a,b, c` → patterns (empty items dropped).
fn split_paths(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

impl Section<'_> {
    /// A size where `-1` (Fluentd's "no limit") means None.
    fn size_or_minus_one(&mut self, d: &mut Diag, key: &'static str) -> Option<u64> {
        self.typed(d, key, |v| {
            if v.trim() == "-1" {
                Ok(None)
            } else {
                crate::config::value::parse_size(v).map(Some)
            }
        })
        .flatten()
    }
}

impl SourceSpec for TailInputConfig {
    fn type_name(&self) -> &'static str {
        PLUGIN.name
    }

    /// The source's id (under which the buffer keeps its files' positions) is its pos file,
    /// else its `@id`, else where the `<source>` is written.
    fn start<'a>(&'a self, ctx: InputContext<'a>) -> BoxFuture<'a, io::Result<Option<InputTask>>> {
        Box::pin(async move {
            let source_id = match (&self.pos_file, &ctx.common.id) {
                (Some(p), _) => p.display().to_string(),
                (None, Some(id)) => id.clone(),
                (None, None) => ctx.common.location.to_string(),
            };
            tracing::info!(paths = %self.paths.join(","), %source_id, "tail input starting");
            let emit = MeteredEmit::wrap(ctx.emit, ctx.metrics);
            let input = TailInput::new(self, emit, source_id);
            Ok(Some(Box::pin(input.run(ctx.stop)) as InputTask))
        })
    }

    fn describe(&self) -> String {
        format!(
            "tail {} tag {}{}",
            self.paths.join(","),
            self.tag,
            self.pos_file
                .as_ref()
                .map(|p| format!(" pos_file {}", p.display()))
                .unwrap_or_default()
        )
    }
}
