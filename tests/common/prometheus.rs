//! A real Prometheus server for tests (Debian's `prometheus` package, installed by `.ci/run`),
//! and a small blocking HTTP GET for lograft's own metrics endpoints.
//!
//! Prometheus is started on 127.0.0.1 with a config of its own (no default config, no default
//! ports: the web port comes from [`super::free_port`]), a TSDB in a temporary directory, a
//! 0.5 s scrape interval, and the given scrape jobs; it is killed when dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PROMETHEUS: &str = "/usr/bin/prometheus";
pub const PROMTOOL: &str = "/usr/bin/promtool";

/// `GET http://127.0.0.1:{port}{path}` with optional `Accept`; (status, content type, body).
pub fn http_get(
    port: u16,
    path: &str,
    accept: Option<&str>,
) -> std::io::Result<(u16, String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{accept}Connection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    Ok((status, content_type, body.to_string()))
}

/// The deployment assets' Grafana dashboard (cluster/monitoring/lograft-dashboard.json): every
/// panel's PromQL with the dashboard's variables filled in as Grafana would (`$instance` →
/// all, `$__rate_interval` → 1m).
pub fn dashboard_queries() -> Vec<(String, String)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/cluster/monitoring/lograft-dashboard.json"
    );
    let d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = Vec::new();
    for panel in d["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = t["expr"].as_str() {
                let expr = expr
                    .replace("$instance", ".*")
                    .replace("$__rate_interval", "1m");
                out.push((panel["title"].as_str().unwrap_or("?").to_string(), expr));
            }
        }
    }
    out
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A running Prometheus.
pub struct Prometheus {
    child: Child,
    pub port: u16,
    log: std::path::PathBuf,
}

impl Prometheus {
    /// Start Prometheus in `dir`, scraping each `(job, [port, ...])` at `/metrics` on 127.0.0.1.
    pub fn start(dir: &Path, jobs: &[(&str, Vec<u16>)]) -> Prometheus {
        assert!(
            Path::new(PROMETHEUS).exists(),
            "{PROMETHEUS} is missing: install Debian's prometheus package (.ci/run does)"
        );
        std::fs::create_dir_all(dir).unwrap();
        let mut config = String::from(
            "global:\n  scrape_interval: 500ms\n  scrape_timeout: 400ms\n  evaluation_interval: 1s\nscrape_configs:\n",
        );
        for (job, ports) in jobs {
            let targets: Vec<String> = ports.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
            config.push_str(&format!(
                "  - job_name: '{job}'\n    static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            ));
        }
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let port = super::free_port();
        let log = dir.join("prometheus.log");
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start prometheus");
        let p = Prometheus { child, port, log };
        let ready = super::wait_until(Duration::from_secs(30), || {
            http_get(port, "/-/ready", None).is_ok_and(|(s, _, _)| s == 200)
        });
        assert!(ready, "prometheus did not start: {}", p.log_text());
        p
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An instant query; each result's labels and value.
    pub fn query(&self, promql: &str) -> Vec<(serde_json::Value, f64)> {
        let q = url_encode(promql);
        let Ok((200, _, body)) = http_get(self.port, &format!("/api/v1/query?query={q}"), None)
        else {
            return Vec::new();
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|r| {
                let value = r["value"][1].as_str()?.parse().ok()?;
                Some((r["metric"].clone(), value))
            })
            .collect()
    }

    /// The single value of `promql` (None while it has no result).
    /// Check the dashboard against what this Prometheus scraped: every panel query parses
    /// (Prometheus answers 200), and every `lograft_*` series a query names whose name starts
    /// with one of `prefixes` exists (so a renamed metric cannot leave a panel empty).
    pub fn check_dashboard(&self, prefixes: &[&str]) {
        let queries = dashboard_queries();
        assert!(
            queries.len() > 20,
            "dashboard has {} queries",
            queries.len()
        );
        let mut missing = Vec::new();
        for (title, expr) in &queries {
            let q: String = url_encode(expr);
            let (status, _, body) = http_get(self.port, &format!("/api/v1/query?query={q}"), None)
                .unwrap_or((0, String::new(), String::new()));
            assert_eq!(status, 200, "panel '{title}': {expr}: {body}");
            for name in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if name.starts_with("lograft_")
                    && prefixes.iter().any(|p| name.starts_with(p))
                    && self
                        .query(&format!("count({{__name__=\"{name}\"}})"))
                        .is_empty()
                {
                    missing.push(format!("{name} (panel '{title}')"));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "dashboard series never scraped: {missing:?}"
        );
    }

    pub fn value(&self, promql: &str) -> Option<f64> {
        let r = self.query(promql);
        (r.len() == 1).then(|| r[0].1)
    }

    /// Wait until `promql` has one value satisfying `ok`; the last value seen otherwise.
    pub fn wait_value(
        &self,
        promql: &str,
        timeout: Duration,
        ok: impl Fn(f64) -> bool,
    ) -> Result<f64, Option<f64>> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        while Instant::now() < deadline {
            last = self.value(promql);
            if let Some(v) = last.filter(|v| ok(*v)) {
                return Ok(v);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Err(last)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `promtool check metrics` on `exposition`; its exit status and output.
pub fn promtool_check_metrics(exposition: &str) -> (bool, String) {
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
