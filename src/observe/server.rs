//! The observability HTTP server behind `<source> @type prometheus` and `@type monitor_agent`.
//!
//! Routes: the prometheus source serves its `metrics_path` (OpenMetrics text to a client that
//! asks for `application/openmetrics-text`, as Prometheus does, else Prometheus text 0.0.4 for
//! curl and `promtool`); the monitor_agent source serves `/api/plugins.json`. Both serve
//! `/health` (200 while the process serves) and `/ready` (200 once the inputs listen and, in a
//! cluster, this node can commit; 503 with the reason otherwise). Requests are answered from
//! [`Metrics`]; the server must not change any state and holds no events.

use super::Metrics;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Idle keep-alive connections are closed after this (scrapers reconnect at no cost).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What one server answers besides `/health` and `/ready`.
#[derive(Debug, Clone)]
pub(crate) enum Routes {
    /// `<source> @type prometheus`.
    Metrics { path: String },
    /// `<source> @type monitor_agent`.
    MonitorAgent,
}

pub(crate) struct ObserveServer {
    listener: TcpListener,
    routes: Routes,
    metrics: Arc<Metrics>,
}

impl ObserveServer {
    pub(crate) async fn bind(
        bind: &str,
        port: u16,
        routes: Routes,
        metrics: Arc<Metrics>,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind((bind, port)).await?;
        Ok(ObserveServer {
            listener,
            routes,
            metrics,
        })
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve until `shutdown` is cancelled.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let graceful = GracefulShutdown::new();
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new());
        builder.header_read_timeout(IDLE_TIMEOUT);
        let shared = Arc::new((self.routes, self.metrics));
        loop {
            let (stream, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!(error = %e, "metrics server: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let shared = shared.clone();
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(answer(&req, &shared.0, &shared.1)) }
            });
            let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "metrics connection ended with an error");
                }
            });
        }
        drop(self.listener);
        let _ = tokio::time::timeout(Duration::from_secs(1), graceful.shutdown()).await;
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn answer(req: &Request<Incoming>, routes: &Routes, metrics: &Metrics) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return respond(StatusCode::METHOD_NOT_ALLOWED, TEXT, "GET only\n".into());
    }
    let path = req.uri().path();
    match (path, routes) {
        ("/health", _) => respond(StatusCode::OK, TEXT, "ok\n".into()),
        ("/ready", _) => match metrics.readiness() {
            Ok(()) => respond(StatusCode::OK, TEXT, "ready\n".into()),
            Err(why) => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                format!("not ready: {why}\n"),
            ),
        },
        (p, Routes::Metrics { path }) if p == path.as_str() => {
            let openmetrics = req
                .headers()
                .get_all(header::ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| v.contains("application/openmetrics-text"));
            let body = metrics.encode_openmetrics();
            if openmetrics {
                respond(StatusCode::OK, OPENMETRICS, body)
            } else {
                respond(
                    StatusCode::OK,
                    PROMETHEUS_TEXT,
                    openmetrics_to_prometheus_text(&body),
                )
            }
        }
        ("/api/plugins.json", Routes::MonitorAgent) => respond(
            StatusCode::OK,
            "application/json",
            super::plugins_json::render(metrics),
        ),
        _ => respond(StatusCode::NOT_FOUND, TEXT, "not found\n".into()),
    }
}

/// OpenMetrics text as Prometheus text 0.0.4: a counter family's `# HELP` and `# TYPE` name
/// its samples (`x_total`), and there is no `# EOF` or `# UNIT`. The samples are unchanged.
fn openmetrics_to_prometheus_text(om: &str) -> String {
    let lines: Vec<&str> = om.lines().collect();
    let mut out = String::with_capacity(om.len() + 256);
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line == "# EOF" || line.starts_with("# UNIT ") {
            i += 1;
            continue;
        }
        // `# HELP name text` followed by `# TYPE name counter`.
        if let (Some(help), Some(next)) = (line.strip_prefix("# HELP "), lines.get(i + 1)) {
            let name = help.split(' ').next().unwrap_or("");
            if *next == format!("# TYPE {name} counter") {
                let text = &help[name.len()..];
                out.push_str(&format!(
                    "# HELP {name}_total{text}\n# TYPE {name}_total counter\n"
                ));
                i += 2;
                continue;
            }
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.strip_suffix(" unknown") {
                out.push_str(&format!("# TYPE {name} untyped\n"));
                i += 1;
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_by_their_samples_in_prometheus_text() {
        let om = "# HELP lograft_input_events Events.\n# TYPE lograft_input_events counter\nlograft_input_events_total{plugin_id=\"a\"} 5\n# HELP lograft_x Gauge.\n# TYPE lograft_x gauge\nlograft_x 1\n# EOF\n";
        assert_eq!(
            openmetrics_to_prometheus_text(om),
            "# HELP lograft_input_events_total Events.\n# TYPE lograft_input_events_total counter\nlograft_input_events_total{plugin_id=\"a\"} 5\n# HELP lograft_x Gauge.\n# TYPE lograft_x gauge\nlograft_x 1\n"
        );
    }
}
