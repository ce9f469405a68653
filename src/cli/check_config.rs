//! `lograft check-config`: validating a config file and printing a short human summary of it.
//!
//! Owns the wording of the summary; it must not decide what is valid (that is `config`, plus
//! the checks `node` and `cluster::upload` run before starting).

use crate::buffer::config::{BufferKind, FlushMode};
use crate::config::{Config, PluginCommon};
use std::process::ExitCode;
use std::time::Duration;

/// `lograft check-config`: load and validate the config at `path` (including what `run` would
/// check before starting: patterns, cluster upload targets); print the warnings and errors, or
/// "OK" and a [`summary`]. Exit code 1 on any error.
pub fn check_config(path: &std::path::Path) -> ExitCode {
    match Config::load(path) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            let mut errors = Vec::new();
            for m in &loaded.config.matches {
                if let Err(e) = crate::node::compile_patterns(m) {
                    errors.push(e.to_string());
                }
                if loaded.config.cluster.is_some() {
                    if let Err(e) = crate::cluster::upload::UploadTarget::check_output(&m.output) {
                        errors.push(format!("<match> at {}: {e}", m.common.location));
                    }
                }
            }
            if !errors.is_empty() {
                errors.iter().for_each(|e| eprintln!("{e}"));
                return ExitCode::FAILURE;
            }
            println!("{}: OK", path.display());
            print!("{}", summary(&loaded.config));
            ExitCode::SUCCESS
        }
        Err(errs) => {
            for e in &errs.0 {
                eprintln!("{e}");
            }
            ExitCode::FAILURE
        }
    }
}

/// `60s`, `1h`, `1d`, `0.5s`: the shortest exact spelling.
fn format_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if d.subsec_nanos() != 0 {
        return format!("{secs}s");
    }
    let whole = d.as_secs();
    if whole != 0 && whole.is_multiple_of(86400) {
        format!("{}d", whole / 86400)
    } else if whole != 0 && whole.is_multiple_of(3600) {
        format!("{}h", whole / 3600)
    } else {
        format!("{whole}s")
    }
}

/// A short human summary of sources and matches, printed by `lograft check-config`.
pub fn summary(cfg: &Config) -> String {
    let mut out = String::new();
    let id = |common: &PluginCommon| {
        common
            .id
            .as_ref()
            .map(|id| format!(" @id={id}"))
            .unwrap_or_default()
    };
    if let Some(c) = &cfg.cluster {
        let members: Vec<String> = c
            .members
            .iter()
            .map(|m| format!("{}={}", m.id, m.address))
            .collect();
        out.push_str(&format!(
            "cluster: node {} at {}{}\n",
            c.node_id,
            c.address,
            match (&c.join, members.is_empty()) {
                (Some(j), _) => format!(", joining via {j}"),
                (None, false) => format!(", initial members {}", members.join(" ")),
                (None, true) => String::new(),
            }
        ));
    }
    out.push_str(&format!("sources: {}\n", cfg.sources.len()));
    for source in &cfg.sources {
        out.push_str(&format!(
            "  {}{}\n",
            source.kind.spec().describe(),
            id(&source.common)
        ));
    }
    out.push_str(&format!("matches: {}\n", cfg.matches.len()));
    for m in &cfg.matches {
        out.push_str(&format!(
            "  <match {}>{}\n",
            m.patterns.join(" "),
            id(&m.common)
        ));
        out.push_str(&format!("    output: {}\n", m.output.spec().describe()));
        let b = &m.buffer;
        let kind = match &b.kind {
            BufferKind::File { path: Some(p) } => format!("file {}", p.display()),
            BufferKind::File { path: None } => "file (default path)".into(),
            BufferKind::Memory => "memory".into(),
        };
        let mode = match b.flush_mode {
            FlushMode::Interval => format!("flush_interval {}", format_duration(b.flush_interval)),
            FlushMode::Lazy => "flush_mode lazy".into(),
            FlushMode::Immediate => "flush_mode immediate".into(),
        };
        let timekey = b
            .timekey
            .map(|t| format!(", timekey {}", format_duration(t)))
            .unwrap_or_default();
        out.push_str(&format!("    buffer: {kind}, {mode}{timekey}\n"));
        if let Some(secondary) = &m.secondary {
            out.push_str(&format!("    secondary: {}\n", secondary.spec().describe()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::build::load;
    use crate::config::test_support::{ok, seed, TWO_OF_TWO_MEMBERS};

    #[test]
    fn seed_forwarder_summary() {
        let loaded = load(&seed("forwarder.conf")).unwrap_or_else(|e| panic!("{e}"));
        let cfg = &loaded.config;
        let text = summary(cfg);
        assert!(text.contains("forward 0.0.0.0:24224"), "{text}");
        assert!(text.contains("http 0.0.0.0:8888"), "{text}");
        assert!(text.contains("server 192.168.0.1:24224\n"), "{text}");
        assert!(
            text.contains("server 192.168.0.2:24224 (standby)"),
            "{text}"
        );
        assert!(
            text.contains("buffer: file (default path), flush_interval 60s"),
            "{text}"
        );
    }

    #[test]
    fn cluster_summary() {
        let three = TWO_OF_TWO_MEMBERS;
        assert!(summary(&ok(three).config).contains("cluster: node 2 at 127.0.0.1:7002"));
    }

    #[test]
    fn secondary_summary() {
        let loaded = ok(concat!(
            "<match a>\n  @type forward\n  <server>\n    host h\n  </server>\n",
            "  <secondary>\n    @type file\n    path /var/log/failed\n  </secondary>\n</match>\n",
        ));
        assert!(summary(&loaded.config).contains("secondary: file path=/var/log/failed"));
    }
}
