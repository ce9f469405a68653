//! `<source> @type prometheus` and `<source> @type monitor_agent`: their typed configs and
//! builders.
//!
//! Owns the parameter names and defaults, which follow fluent-plugin-prometheus (`bind`,
//! `port` 24231, `metrics_path` /metrics) and Fluentd's in_monitor_agent (`bind`, `port`
//! 24220). It must not serve anything (`observe::server` does).

use super::server::Routes;
use crate::config::diag::Diag;
use crate::config::registry::{SourceKind, SourcePlugin};
use crate::config::section::Section;
use crate::config::value::ValueError;
use crate::input::{Observer, SourceSpec};

/// The registry's entry for `@type prometheus`.
pub(crate) const PROMETHEUS: SourcePlugin = SourcePlugin {
    name: "prometheus",
    build: |sec, d| SourceKind::Prometheus(build_prometheus(sec, d)),
    unimplemented_params: &["aggregated_metrics_path", "content_encoding"],
    unimplemented_sections: &["transport"],
};

/// The registry's entry for `@type monitor_agent`.
pub(crate) const MONITOR_AGENT: SourcePlugin = SourcePlugin {
    name: "monitor_agent",
    build: |sec, d| SourceKind::MonitorAgent(build_monitor_agent(sec, d)),
    unimplemented_params: &["tag", "emit_interval", "include_config", "include_retry"],
    unimplemented_sections: &[],
};

/// `<source> @type prometheus`: `/metrics` (OpenMetrics or Prometheus text), `/health`,
/// `/ready`.
#[derive(Debug, Clone)]
pub struct PrometheusConfig {
    pub bind: String,
    /// Default 24231 (fluent-plugin-prometheus).
    pub port: u16,
    /// Default `/metrics`.
    pub metrics_path: String,
}

/// `<source> @type monitor_agent`: `/api/plugins.json`, `/api/plugins`, `/health`, `/ready`.
#[derive(Debug, Clone)]
pub struct MonitorAgentConfig {
    pub bind: String,
    /// Default 24220 (Fluentd).
    pub port: u16,
}

fn build_prometheus(sec: &mut Section<'_>, d: &mut Diag) -> PrometheusConfig {
    PrometheusConfig {
        bind: sec.string("bind").unwrap_or_else(|| "0.0.0.0".into()),
        port: sec.integer(d, "port").unwrap_or(24231),
        metrics_path: sec
            .typed(d, "metrics_path", |v| {
                let path = crate::config::value::parse_string(v);
                if path.starts_with('/') {
                    Ok(path)
                } else {
                    Err(ValueError::OutOfRange {
                        what: "the path",
                        bound: "absolute (start with '/')".into(),
                        got: path,
                    })
                }
            })
            .unwrap_or_else(|| "/metrics".into()),
    }
}

fn build_monitor_agent(sec: &mut Section<'_>, d: &mut Diag) -> MonitorAgentConfig {
    MonitorAgentConfig {
        bind: sec.string("bind").unwrap_or_else(|| "0.0.0.0".into()),
        port: sec.integer(d, "port").unwrap_or(24220),
    }
}

impl SourceSpec for PrometheusConfig {
    fn type_name(&self) -> &'static str {
        PROMETHEUS.name
    }

    fn observer(&self) -> Option<Observer<'_>> {
        Some(Observer {
            bind: &self.bind,
            port: self.port,
            routes: Routes::Metrics {
                path: self.metrics_path.clone(),
            },
        })
    }

    fn describe(&self) -> String {
        format!(
            "prometheus {}:{} {}",
            self.bind, self.port, self.metrics_path
        )
    }
}

impl SourceSpec for MonitorAgentConfig {
    fn type_name(&self) -> &'static str {
        MONITOR_AGENT.name
    }

    fn observer(&self) -> Option<Observer<'_>> {
        Some(Observer {
            bind: &self.bind,
            port: self.port,
            routes: Routes::MonitorAgent,
        })
    }

    fn describe(&self) -> String {
        format!("monitor_agent {}:{}", self.bind, self.port)
    }
}
