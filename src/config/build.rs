//! Turns the parsed [`Element`] tree into the typed [`Config`]: the top-level directives
//! (`<system>`, `<cluster>`, `<source>`, `<match>` with its `<buffer>` and `<secondary>`), in
//! file order, collecting every error it can find.
//!
//! Owns the orchestration only: which directives exist, the parts common to every `<source>` and
//! `<match>` (`@id`, `@type`, patterns, `<secondary>`), and the final ordering of diagnostics.
//! Each plugin's parameters are read by its own builder, found through [`super::registry`]. It
//! must not read files itself (that is `parser`) nor start anything.
//!
//! The rule for unknown keys: a key that fills a field of the typed structs is implemented; a
//! key Fluentd documents for that plugin but lograft ignores gives a warning; anything else is an
//! error (with a "did you mean" suggestion when a known key is close).

use super::diag::{did_you_mean, sort_by_position, Diag};
use super::element::Element;
use super::registry::{self, OutputConfig, OutputPlugin};
use super::section::{plugin_common, plugin_type, Section};
use super::system::build_system;
use super::{Config, ConfigErrors, Loaded, Location, MatchConfig, SourceConfig};
use crate::buffer::config::build_buffer;
use crate::cluster::config::build_cluster;
use std::path::Path;

/// Parses and validates the config file at `path` (blocking file I/O; following `@include`s).
pub fn load(path: &Path) -> Result<Loaded, ConfigErrors> {
    let root = super::parser::parse_file(path)?;
    let loaded = build(&root)?;
    tracing::debug!(
        path = %path.display(),
        sources = loaded.config.sources.len(),
        matches = loaded.config.matches.len(),
        warnings = loaded.warnings.len(),
        "config loaded"
    );
    Ok(loaded)
}

/// Like [`load`] for text already in memory; `path` names it in messages and anchors relative
/// `@include`s.
pub fn load_str(text: &str, path: &Path) -> Result<Loaded, ConfigErrors> {
    let root = super::parser::parse_str(text, path)?;
    build(&root)
}

/// Builds the typed config from a parsed tree, collecting every error it can find.
pub fn build(root: &Element) -> Result<Loaded, ConfigErrors> {
    let mut d = Diag::default();
    let mut config = Config::default();
    for p in &root.params {
        d.error(
            &p.location,
            format!(
                "parameter '{}' is outside any directive (put it inside <source>, <match> or <system>)",
                p.key
            ),
        );
    }
    let mut system_seen: Option<&Location> = None;
    let mut cluster_seen: Option<&Location> = None;
    for child in &root.children {
        match child.name.as_str() {
            "cluster" => {
                if let Some(first) = cluster_seen {
                    d.error(
                        &child.location,
                        format!("<cluster> is given more than once (first at {first}); only one is allowed"),
                    );
                } else {
                    cluster_seen = Some(&child.location);
                    config.cluster = build_cluster(child, &mut d);
                }
            }
            "system" => {
                if let Some(first) = system_seen {
                    d.error(
                        &child.location,
                        format!("<system> is given more than once (first at {first}); only one is allowed"),
                    );
                } else {
                    system_seen = Some(&child.location);
                    config.system = build_system(child, &mut d);
                }
            }
            "source" => {
                if let Some(source) = build_source(child, &mut d) {
                    config.sources.push(source);
                }
            }
            "match" => {
                if let Some(m) = build_match(child, &mut d) {
                    config.matches.push(m);
                }
            }
            "filter" | "label" | "worker" => d.error(
                &child.location,
                format!(
                    "<{}> is not supported yet by lograft (supported directives: <source>, <match>, <system>, <cluster>)",
                    child.name
                ),
            ),
            other => d.error(
                &child.location,
                format!(
                    "unknown directive <{other}>{}; lograft knows <source>, <match>, <system>, <cluster>",
                    did_you_mean(other, &["source", "match", "system", "cluster", "filter", "label"])
                        .map(|s| format!(" (did you mean <{s}>?)"))
                        .unwrap_or_default()
                ),
            ),
        }
    }
    sort_by_position(&mut d.errors);
    sort_by_position(&mut d.warnings);
    if d.errors.is_empty() {
        Ok(Loaded {
            config,
            warnings: d.warnings,
        })
    } else {
        Err(ConfigErrors(d.errors))
    }
}

fn build_source(el: &Element, d: &mut Diag) -> Option<SourceConfig> {
    let mut sec = Section::new(el, "<source>");
    if !el.arg.is_empty() {
        d.error(
            &el.location,
            format!("<source> takes no argument (got '{}')", el.arg),
        );
    }
    let common = plugin_common(&mut sec, d);
    if let Some(label) = sec.raw("@label") {
        d.error(
            &label.location,
            "'@label' in <source>: labels are not supported yet by lograft",
        );
    }
    let (ty, ty_location) = plugin_type(&mut sec, d)?;
    let Some(plugin) = registry::source(&ty) else {
        d.error(
            &ty_location,
            format!(
                "unknown source type '{ty}'; lograft supports: {}",
                registry::source_names()
            ),
        );
        return None;
    };
    sec.title = format!("<source> (in_{})", plugin.name);
    let kind = (plugin.build)(&mut sec, d);
    sec.finish(
        d,
        plugin.unimplemented_params,
        plugin.unimplemented_sections,
    );
    Some(SourceConfig { common, kind })
}

/// `<match PATTERN> (out_TYPE)` for messages.
fn match_title(arg: &str, plugin: Option<&OutputPlugin>) -> String {
    let tag = if arg.is_empty() {
        "<match>".to_string()
    } else {
        format!("<match {arg}>")
    };
    match plugin {
        Some(plugin) => format!("{tag} (out_{})", plugin.name),
        None => tag,
    }
}

fn build_match(el: &Element, d: &mut Diag) -> Option<MatchConfig> {
    let patterns: Vec<String> = if el.arg.is_empty() {
        vec!["**".to_string()]
    } else {
        el.arg.split_whitespace().map(str::to_string).collect()
    };
    let mut sec = Section::new(el, match_title(&el.arg, None));
    let common = plugin_common(&mut sec, d);
    let (ty, ty_location) = plugin_type(&mut sec, d)?;
    let Some(plugin) = registry::output(&ty) else {
        d.error(
            &ty_location,
            format!(
                "unknown output type '{ty}' in <match {}>; lograft supports: {}",
                el.arg,
                registry::output_names()
            ),
        );
        return None;
    };
    sec.title = match_title(&el.arg, Some(plugin));
    let output = (plugin.build)(&mut sec, d);
    let buffer = build_buffer(&mut sec, d, plugin.name, &plugin.buffer);
    let secondary = match sec.single_section(d, "secondary") {
        Some(secondary_el) => {
            if buffer.as_ref().is_some_and(|b| b.retry.forever) {
                d.error(
                    &secondary_el.location,
                    format!(
                        "<secondary> and 'retry_forever' are exclusive in {} (retries never run out)",
                        sec.title
                    ),
                );
            }
            build_secondary(secondary_el, d, plugin, &sec.title)
        }
        None => None,
    };
    sec.finish(
        d,
        plugin.unimplemented_params,
        plugin.unimplemented_sections,
    );
    Some(MatchConfig {
        common,
        patterns,
        output: output?,
        buffer: buffer?,
        secondary,
    })
}

fn build_secondary(
    el: &Element,
    d: &mut Diag,
    primary: &'static OutputPlugin,
    primary_title: &str,
) -> Option<OutputConfig> {
    let mut sec = Section::new(el, format!("<secondary> of {primary_title}"));
    let _common = plugin_common(&mut sec, d);
    let at = sec.raw("@type");
    let bare = sec.raw("type");
    let plugin = match at.or(bare) {
        // Fluentd: a <secondary> without @type uses the primary's type.
        None => primary,
        Some(p) => match registry::output(&p.value) {
            Some(plugin) => plugin,
            None => {
                d.error(
                    &p.location,
                    format!(
                        "unknown output type '{}' in <secondary>; lograft supports: {}",
                        p.value,
                        registry::output_names()
                    ),
                );
                return None;
            }
        },
    };
    sec.title = format!("<secondary> (out_{}) of {primary_title}", plugin.name);
    for inner in sec.sections("buffer") {
        d.error(
            &inner.location,
            "<secondary> cannot have its own <buffer> section",
        );
    }
    for inner in sec.sections("secondary") {
        d.error(
            &inner.location,
            "<secondary> cannot have a <secondary> section",
        );
    }
    let output = (plugin.build)(&mut sec, d);
    sec.finish(
        d,
        plugin.unimplemented_params,
        plugin.unimplemented_sections,
    );
    output
}
