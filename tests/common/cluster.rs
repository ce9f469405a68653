//! The aggregator-cluster harness of the end-to-end tests: three `lograft run` nodes with
//! `<cluster>` on 127.0.0.1 and a local directory as the bucket, their status through
//! `lograft cluster status --json`, and the exactly-once check of the bucket.

use super::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const TAG: &str = "test.cluster";

/// Ports and paths of one aggregator node.
#[derive(Clone, Copy)]
pub struct Ports {
    pub forward: u16,
    pub raft: u16,
}

pub struct Cluster {
    pub dir: PathBuf,
    pub bucket: PathBuf,
    pub ports: BTreeMap<u64, Ports>,
    pub nodes: BTreeMap<u64, Node>,
    pub extra: String,
    /// Whether the nodes use mutual TLS (the admin CLI then the operator certificate).
    pub tls: bool,
}

/// Whether clusters of the harness use mutual TLS: yes, unless `LOGRAFT_TEST_CLUSTER_TLS=0`.
pub fn harness_tls() -> bool {
    std::env::var("LOGRAFT_TEST_CLUSTER_TLS").map_or(true, |v| v != "0")
}

/// The PKI of this test process, made once by `lograft cluster certs` (nodes 1..=9 and an
/// operator) in a directory of its own.
pub fn test_pki() -> &'static Path {
    static PKI: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PKI.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("lograft-test-pki-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let out = Command::new(BIN)
            .args(["cluster", "certs"])
            .arg(&dir)
            .args(["--nodes", "1,2,3,4,5,6,7,8,9"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "lograft cluster certs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

/// The environment that makes `lograft cluster ...` use the operator certificate.
pub fn operator_env() -> Vec<(&'static str, PathBuf)> {
    let pki = test_pki();
    vec![
        ("LOGRAFT_CLUSTER_CA", pki.join("ca.pem")),
        ("LOGRAFT_CLUSTER_CERT", pki.join("operator.pem")),
        ("LOGRAFT_CLUSTER_KEY", pki.join("operator.key")),
    ]
}

/// `<transport tls>` for node `id` with the test PKI.
pub fn transport_tls(id: u64) -> String {
    let pki = test_pki();
    format!(
        "<transport tls>\n    ca_path {}\n    cert_path {}\n    private_key_path {}\n  </transport>",
        pki.join("ca.pem").display(),
        pki.join(format!("node-{id}.pem")).display(),
        pki.join(format!("node-{id}.key")).display()
    )
}

/// A node's config, with TLS as [`harness_tls`] says.
pub fn node_config(
    dir: &Path,
    bucket: &Path,
    id: u64,
    ports: Ports,
    membership: &str,
    extra: &str,
) -> String {
    node_config_tls(dir, bucket, id, ports, membership, extra, harness_tls())
}

/// A node's config, with or without `<transport tls>`.
pub fn node_config_tls(
    dir: &Path,
    bucket: &Path,
    id: u64,
    ports: Ports,
    membership: &str,
    extra: &str,
    tls: bool,
) -> String {
    let transport = if tls {
        transport_tls(id)
    } else {
        String::new()
    };
    let cluster = format!(
        r#"<cluster>
  node_id {id}
  address 127.0.0.1:{raft}
  data_dir {data}
  heartbeat_interval 0.1s
  election_timeout 0.5s
  {transport}
  {extra}
  {membership}
</cluster>"#,
        raft = ports.raft,
        data = dir.join(format!("node{id}-raft")).display(),
    );
    ConfigText::new()
        .forward_source(ports.forward)
        .out_file(
            "test.**",
            bucket,
            BufferText::default_type()
                .param("flush_interval", "0.3s")
                .param("chunk_limit_size", "2m")
                .param("retry_wait", "0.2s")
                .param("retry_max_interval", "1s"),
        )
        .raw(&cluster)
        .build()
}

impl Cluster {
    /// Three voters 1..=3, started together; returns once a leader is known.
    pub fn start(dir: &Path, extra: &str, env: &[(u64, &str, &str)]) -> Cluster {
        Cluster::start_with_bucket(dir, &dir.join("bucket"), extra, env)
    }

    /// [`Cluster::start`] with the bucket directory at `bucket`.
    pub fn start_with_bucket(
        dir: &Path,
        bucket: &Path,
        extra: &str,
        env: &[(u64, &str, &str)],
    ) -> Cluster {
        Cluster::start_opts(dir, bucket, extra, env, harness_tls())
    }

    /// [`Cluster::start`] without TLS, whatever [`harness_tls`] says (loopback plaintext).
    pub fn start_plaintext(dir: &Path, extra: &str, env: &[(u64, &str, &str)]) -> Cluster {
        Cluster::start_opts(dir, &dir.join("bucket"), extra, env, false)
    }

    pub fn start_opts(
        dir: &Path,
        bucket: &Path,
        extra: &str,
        env: &[(u64, &str, &str)],
        tls: bool,
    ) -> Cluster {
        let ports: BTreeMap<u64, Ports> = (1..=3)
            .map(|id| {
                (
                    id,
                    Ports {
                        forward: free_port(),
                        raft: free_port(),
                    },
                )
            })
            .collect();
        let mut c = Cluster {
            dir: dir.to_path_buf(),
            bucket: bucket.to_path_buf(),
            ports,
            nodes: BTreeMap::new(),
            extra: extra.to_string(),
            tls,
        };
        for id in 1..=3 {
            let envs: Vec<(&str, &str)> = env
                .iter()
                .filter(|(n, _, _)| *n == id)
                .map(|&(_, k, v)| (k, v))
                .collect();
            let text = c.config_with_members(id);
            c.launch(id, &text, &envs, false);
        }
        c.wait_leader(Duration::from_secs(30));
        c
    }

    pub fn members_text(&self) -> String {
        self.ports
            .iter()
            .filter(|(id, _)| **id <= 3)
            .map(|(id, p)| {
                format!(
                    "<member>\n id {id}\n address 127.0.0.1:{}\n</member>",
                    p.raft
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn config_with_members(&self, id: u64) -> String {
        node_config_tls(
            &self.dir,
            &self.bucket,
            id,
            self.ports[&id],
            &self.members_text(),
            &self.extra,
            self.tls,
        )
    }

    /// Start node `id` with `config_text`; with `wait_forward` wait for its Forward port.
    pub fn launch(&mut self, id: u64, config_text: &str, env: &[(&str, &str)], wait_forward: bool) {
        // The Forward port opens only once the node is in a cluster; else wait for gRPC.
        let port = if wait_forward {
            self.ports[&id].forward
        } else {
            self.ports[&id].raft
        };
        let dir = self.dir.join(format!("node{id}"));
        let node = Node::start_with_env(&dir, config_text, &[port], env);
        self.nodes.insert(id, node);
    }

    /// The last lines of every node's log, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|(id, n)| {
                let text = n.log_text();
                let lines: Vec<&str> = text
                    .lines()
                    .filter(|l| l.contains("panicked at") || !l.contains("openraft"))
                    .collect();
                let tail = lines[lines.len().saturating_sub(20)..].join("\n");
                let panics: Vec<&str> = text
                    .lines()
                    .filter(|l| l.contains("panicked"))
                    .take(3)
                    .collect();
                format!("--- node {id} ---\n{}\n{tail}\n", panics.join("\n"))
            })
            .collect()
    }

    pub fn raft_addr(&self, id: u64) -> String {
        format!("127.0.0.1:{}", self.ports[&id].raft)
    }

    /// `lograft cluster status --json` of node `id` (None: it did not answer).
    pub fn status(&self, id: u64) -> Option<serde_json::Value> {
        let mut command = Command::new(BIN);
        command.args(["cluster", "status", "--json", "--node", &self.raft_addr(id)]);
        if self.tls {
            command.envs(operator_env());
        }
        let out = command.output().unwrap();
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    pub fn live_ids(&mut self) -> Vec<u64> {
        self.nodes
            .iter_mut()
            .filter_map(|(id, n)| n.is_running().then_some(*id))
            .collect()
    }

    /// The leader every live node agrees on, once the one it names says it leads.
    pub fn wait_leader(&mut self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let live = self.live_ids();
            let views: Vec<Option<u64>> = live
                .iter()
                .map(|id| self.status(*id).and_then(|s| s["leader_id"].as_u64()))
                .collect();
            if let Some(Some(leader)) = views.first() {
                if views.iter().all(|v| *v == Some(*leader)) && live.contains(leader) {
                    let st = self.status(*leader);
                    if st.is_some_and(|s| s["state"] == "Leader") {
                        return *leader;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader among {live:?} within {timeout:?}: {views:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait until the leader has nothing pending or unconfirmed and the bucket holds
    /// `expected` events; returns the count of each sequence number found.
    pub fn wait_uploaded(&mut self, expected: usize) -> std::collections::HashMap<u64, u32> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let counts = seq_counts(&read_out_file_records(&self.bucket));
            let total: u32 = counts.values().sum();
            let leader = self.wait_leader(Duration::from_secs(30));
            let st = self.status(leader).unwrap_or_default();
            let idle = st["pending_chunks"] == 0 && st["unconfirmed_batches"] == 0;
            if idle && total as usize >= expected {
                return counts;
            }
            assert!(
                Instant::now() < deadline,
                "bucket holds {total} of {expected} events; leader status {st}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Run `lograft ARGS...` (as the operator when [`harness_tls`]) and return its stdout; panics
/// with its stderr if it fails.
pub fn cli(args: &[&str]) -> String {
    let mut command = Command::new(BIN);
    command.args(args);
    if harness_tls() {
        command.envs(operator_env());
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "lograft {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every acked sequence number is in the bucket exactly once, and nothing else is.
pub fn assert_exactly_once(counts: &std::collections::HashMap<u64, u32>, acked: &[u64]) {
    let dups: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(10).collect();
    assert!(dups.is_empty(), "duplicated events in the bucket: {dups:?}");
    let missing: Vec<_> = acked
        .iter()
        .filter(|s| !counts.contains_key(s))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "acked events missing from the bucket (first 10): {missing:?}"
    );
}

pub fn cluster_forwarder_config(fwd: u16, dir: &Path, cluster: &Cluster) -> String {
    let servers: String = cluster
        .ports
        .iter()
        .map(|(id, p)| {
            format!(
                "<server>\n name node{id}\n host 127.0.0.1\n port {}\n {}\n</server>\n",
                p.forward,
                if *id == 1 { "" } else { "standby" }
            )
        })
        .collect();
    let sources = ConfigText::new().forward_source(fwd);
    super::forwarder_config(sources, dir, &servers, "5s", "")
}
