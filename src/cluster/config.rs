//! `<cluster>`: the typed [`ClusterConfig`] of an aggregator's place in its Raft group, and its
//! builder.
//!
//! Owns the `<cluster>`, `<member>` and `<transport tls>` parameter names, defaults and
//! consistency checks (the node is among the members, `join` xor members, timeouts); it must
//! not start anything (that is `cluster::bootstrap`) nor load certificates (that is
//! `cluster::tls`).

use crate::cluster::coalesce::DEFAULT_PROPOSALS_IN_FLIGHT;
use crate::cluster::compression::LogCompression;
use crate::cluster::storage::{DEFAULT_BLOCK_CACHE, DEFAULT_LOG_CACHE, DEFAULT_MEMTABLE_LIMIT};
use crate::config::diag::Diag;
use crate::config::element::Element;
use crate::config::section::Section;
use crate::config::Location;
use std::path::PathBuf;
use std::time::Duration;

/// Smallest `memtable_limit` taken (a smaller value is raised to it): one memtable must hold
/// at least a chunk or two.
const MIN_MEMTABLE_LIMIT: u64 = 4 << 20;

/// `<cluster>`: this aggregator's place in its Raft group.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This node's Raft id (unique in the cluster, never reused after a disk loss).
    pub node_id: u64,
    /// `host:port` this node serves Raft and admin gRPC on.
    pub address: String,
    /// `host:port` other nodes use to reach this one (default: `address`).
    pub advertise_address: Option<String>,
    /// `<member id address>` sections: the initial voters of a new cluster (including this node).
    pub members: Vec<MemberConfig>,
    /// `host:port` of a member of an existing cluster to join as a learner.
    pub join: Option<String>,
    /// Raft log and state machine directory (default: `<root_dir or --data-dir>/raft`).
    pub data_dir: Option<PathBuf>,
    /// Build a snapshot (and purge the log) every this many applied entries. Default 1000.
    pub snapshot_every: u64,
    /// How many recent chunk ids the state machine remembers to drop retransmissions. Default 100,000.
    pub dedup_window: u64,
    /// RocksDB memtables of all column families together (`memtable_limit`). Default 16 MiB.
    pub memtable_limit: u64,
    /// RocksDB's block cache, shared by all column families (`block_cache_size`). Default 4 MiB.
    pub block_cache_size: u64,
    /// The Raft log's recent entries kept in memory for replication and apply
    /// (`log_cache_size`; 0: none). Default 0 (opt-in).
    pub log_cache_size: u64,
    /// Appends an aggregator proposes at once; chunks arriving meanwhile wait and go to the log
    /// together as one entry (`proposals_in_flight`, at least 1). Default 2.
    pub proposals_in_flight: u64,
    /// How the leader writes chunk payloads into the Raft log (`log_compression lz4|none`).
    /// Default lz4.
    pub log_compression: LogCompression,
    /// Leader heartbeat. Default 100 ms.
    pub heartbeat_interval: Duration,
    /// Election timeout (the lower bound; the upper is twice it). Default 500 ms.
    pub election_timeout: Duration,
    /// `<transport tls>`: mutual TLS on the cluster port (and to the peers).
    pub tls: Option<ClusterTlsConfig>,
    /// `insecure true`: serve the cluster port without TLS on an address other than loopback
    /// (warned at every start). Default false: without TLS, only a loopback address is served.
    pub insecure: bool,
    pub location: Location,
}

/// How the cluster port may be served (see [`ClusterConfig::exposure`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// Mutual TLS.
    Tls,
    /// Plaintext on loopback: only processes of this machine reach it.
    Loopback,
    /// Plaintext elsewhere, because `insecure true` says so: warn at every start.
    Insecure,
}

impl ClusterConfig {
    /// Whether the cluster port may listen on `listen`: always with TLS; without it only on a
    /// loopback address, unless `insecure true`. The error names the file and line.
    pub fn exposure(&self, listen: &std::net::SocketAddr) -> Result<Exposure, String> {
        match (&self.tls, listen.ip().is_loopback(), self.insecure) {
            (Some(_), _, _) => Ok(Exposure::Tls),
            (None, true, _) => Ok(Exposure::Loopback),
            (None, false, true) => Ok(Exposure::Insecure),
            (None, false, false) => Err(format!(
                "<cluster> address {} ({listen}) is not a loopback address and no <transport tls> is configured: \
                 anyone who reaches it could administer the cluster and speak Raft. \
                 Configure <transport tls> (see README \"Securing the cluster\"), or set 'insecure true' to accept the risk",
                self.address
            )),
        }
    }
}

/// `<transport tls>` inside `<cluster>`: the cluster CA and this node's certificate (see
/// `cluster::tls` for the roles a certificate must carry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTlsConfig {
    /// PEM file of the cluster CA (every peer and operator certificate must chain to it).
    pub ca_path: PathBuf,
    /// PEM file of this node's certificate (chain), with the `lograft-node://<id>` URI SAN.
    pub cert_path: PathBuf,
    /// PEM file of its private key.
    pub private_key_path: PathBuf,
}

/// `<member>` inside `<cluster>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberConfig {
    pub id: u64,
    pub address: String,
}

/// Builds `<cluster>`; `None` when `node_id` or `address` is missing.
pub(crate) fn build_cluster(el: &Element, d: &mut Diag) -> Option<ClusterConfig> {
    let mut sec = Section::new(el, "<cluster>");
    if !el.arg.is_empty() {
        d.error(&el.location, "<cluster> takes no argument");
    }
    let node_id = sec.integer::<u64>(d, "node_id");
    if node_id.is_none() && sec.el.param("node_id").is_none() {
        sec.missing(d, "node_id");
    }
    let address = sec.required_string(d, "address");
    let advertise_address = sec.string("advertise_address");
    let join = sec.string("join");
    for (key, value) in [
        ("address", &address),
        ("advertise_address", &advertise_address),
        ("join", &join),
    ] {
        if let Some(v) = value {
            if !is_host_port(v) {
                let at = sec
                    .el
                    .param(key)
                    .map(|p| p.location.clone())
                    .unwrap_or_default();
                d.error(
                    &at,
                    format!("'{key}' in <cluster>: expected host:port, got '{v}'"),
                );
            }
        }
    }
    let tls = sec
        .single_section(d, "transport")
        .and_then(|el| cluster_transport(el, d));
    let mut members = Vec::new();
    for m in sec.sections("member") {
        let mut ms = Section::new(m, "<member> of <cluster>");
        let id = ms.integer::<u64>(d, "id");
        if id.is_none() && m.param("id").is_none() {
            ms.missing(d, "id");
        }
        let addr = ms.required_string(d, "address");
        if let Some(a) = addr.as_deref().filter(|a| !is_host_port(a)) {
            d.error(
                &m.location,
                format!("<member>: 'address' expected host:port, got '{a}'"),
            );
        }
        ms.finish(d, &[], &[]);
        if let (Some(id), Some(address)) = (id, addr) {
            if let Some(dup) = members.iter().find(|o: &&MemberConfig| o.id == id) {
                d.error(
                    &m.location,
                    format!("<member> id {id} is given twice (address {})", dup.address),
                );
            }
            members.push(MemberConfig { id, address });
        }
    }
    if !members.is_empty() && join.is_some() {
        d.error(
            &el.location,
            "<cluster>: give either <member> sections (to start a new cluster) or 'join' (to join an existing one), not both",
        );
    }
    if let (Some(id), false) = (node_id, members.is_empty()) {
        let me = members.iter().find(|m| m.id == id);
        let advertised = advertise_address.as_ref().or(address.as_ref());
        match me {
            None => d.error(
                &el.location,
                format!("<cluster>: node_id {id} is not among the <member> sections; list this node too"),
            ),
            Some(m) if Some(&m.address) != advertised => d.error(
                &el.location,
                format!(
                    "<cluster>: <member> {id} has address {} but this node's advertised address is {}",
                    m.address,
                    advertised.map(String::as_str).unwrap_or("?")
                ),
            ),
            Some(_) => {}
        }
    }
    let cfg = ClusterConfig {
        node_id: node_id.unwrap_or_default(),
        address: address.clone().unwrap_or_default(),
        advertise_address,
        members,
        join,
        data_dir: sec.string("data_dir").map(PathBuf::from),
        snapshot_every: sec
            .integer::<u64>(d, "snapshot_every")
            .unwrap_or(1000)
            .max(1),
        dedup_window: sec.integer::<u64>(d, "dedup_window").unwrap_or(100_000),
        memtable_limit: sec
            .size(d, "memtable_limit")
            .unwrap_or(DEFAULT_MEMTABLE_LIMIT as u64)
            .max(MIN_MEMTABLE_LIMIT),
        block_cache_size: sec
            .size(d, "block_cache_size")
            .unwrap_or(DEFAULT_BLOCK_CACHE as u64),
        log_cache_size: sec
            .size(d, "log_cache_size")
            .unwrap_or(DEFAULT_LOG_CACHE as u64),
        proposals_in_flight: sec
            .integer::<u64>(d, "proposals_in_flight")
            .unwrap_or(DEFAULT_PROPOSALS_IN_FLIGHT as u64)
            .clamp(1, 1024),
        log_compression: log_compression(&mut sec, d),
        heartbeat_interval: sec
            .duration(d, "heartbeat_interval")
            .unwrap_or(Duration::from_millis(100)),
        election_timeout: sec
            .duration(d, "election_timeout")
            .unwrap_or(Duration::from_millis(500)),
        tls,
        insecure: sec.bool(d, "insecure", false),
        location: el.location.clone(),
    };
    if cfg.election_timeout <= cfg.heartbeat_interval * 2 {
        d.error(
            &el.location,
            "<cluster>: election_timeout must be more than twice heartbeat_interval",
        );
    }
    sec.finish(d, &[], &[]);
    (node_id.is_some() && address.is_some()).then_some(cfg)
}

/// `log_compression`: `lz4` (default) or `none`; anything else is an error naming the key.
fn log_compression(sec: &mut Section, d: &mut Diag) -> LogCompression {
    sec.enumerated(d, "log_compression", &["lz4", "none"])
        .and_then(LogCompression::parse)
        .unwrap_or_default()
}

/// `<transport tls>` of `<cluster>` (the only transport: `tcp` is what `insecure` is for).
fn cluster_transport(el: &Element, d: &mut Diag) -> Option<ClusterTlsConfig> {
    let mut sec = Section::new(el, format!("<transport {}> of <cluster>", el.arg));
    if el.arg != "tls" {
        d.error(
            &el.location,
            format!(
                "<transport {}> is not supported in <cluster>; use <transport tls> (or, on loopback only, no <transport>)",
                el.arg
            ),
        );
        return None;
    }
    let ca_path = sec.required_string(d, "ca_path");
    let cert_path = sec.required_string(d, "cert_path");
    let private_key_path = sec.required_string(d, "private_key_path");
    sec.finish(d, &[], &[]);
    Some(ClusterTlsConfig {
        ca_path: ca_path?.into(),
        cert_path: cert_path?.into(),
        private_key_path: private_key_path?.into(),
    })
}

/// `host:port` with a numeric port.
fn is_host_port(s: &str) -> bool {
    matches!(s.rsplit_once(':'), Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::{ClusterConfig, Exposure, LogCompression};
    use crate::config::test_support::{errors, ok, TWO_OF_TWO_MEMBERS};

    #[test]
    fn cluster_section() {
        let three = TWO_OF_TWO_MEMBERS;
        let c = ok(three).config.cluster.unwrap();
        assert_eq!(
            (c.node_id, c.address.as_str(), c.snapshot_every),
            (2, "127.0.0.1:7002", 500)
        );
        assert_eq!(c.members.len(), 2);
        assert_eq!(c.dedup_window, 100_000);
        assert_eq!(c.proposals_in_flight, 2);
        assert_eq!(c.log_compression, LogCompression::Lz4);
        assert_eq!(c.log_cache_size, 0);
        let join = "<cluster>\n  node_id 1\n  address 127.0.0.1:7001\n  join 127.0.0.1:7002\n";
        let c = ok(&format!("{join}  proposals_in_flight 8\n</cluster>\n"));
        assert_eq!(c.config.cluster.unwrap().proposals_in_flight, 8);
        let c = ok(&format!("{join}  log_compression none\n</cluster>\n"));
        assert_eq!(
            c.config.cluster.unwrap().log_compression,
            LogCompression::None
        );
        let e = errors(&format!("{join}  log_compression zstd\n</cluster>\n"));
        assert!(e.contains("log_compression"), "{e}");
        let c = ok(&format!("{join}  log_cache_size 2m\n</cluster>\n"));
        assert_eq!(c.config.cluster.unwrap().log_cache_size, 2 << 20);
        let e = errors(&format!("{join}  log_cache_size lots\n</cluster>\n"));
        assert!(e.contains("log_cache_size"), "{e}");
        let e = errors(&format!("{join}  proposals_in_flight many\n</cluster>\n"));
        assert!(e.contains("proposals_in_flight"), "{e}");

        let e = errors("<cluster>\n  node_id 3\n  address 127.0.0.1:7003\n  <member>\n    id 1\n    address 127.0.0.1:7001\n  </member>\n</cluster>\n");
        assert!(
            e.contains("node_id 3 is not among the <member> sections"),
            "{e}"
        );
        let e = errors("<cluster>\n  address 127.0.0.1:7003\n  join 127.0.0.1:7001\n</cluster>\n");
        assert!(e.contains("node_id"), "{e}");
        let e = errors("<cluster>\n  node_id 1\n  address nowhere\n  join 127.0.0.1:7001\n  bogus 1\n</cluster>\n");
        assert!(
            e.contains("expected host:port") && e.contains("bogus"),
            "{e}"
        );
        let e = errors("<cluster>\n  node_id 1\n  address 127.0.0.1:7001\n  join 127.0.0.1:7002\n  <member>\n    id 1\n    address 127.0.0.1:7001\n  </member>\n</cluster>\n");
        assert!(e.contains("not both"), "{e}");
        let e = errors(
            "<cluster>\n  node_id 1\n  address 127.0.0.1:7001\n</cluster>\n<cluster>\n</cluster>\n",
        );
        assert!(e.contains("more than once"), "{e}");
    }

    #[test]
    fn cluster_tls_and_insecure() {
        let c = ok(r#"
<cluster>
  node_id 1
  address 0.0.0.0:7001
  <transport tls>
    ca_path /c/ca.pem
    cert_path /c/node.pem
    private_key_path /c/node.key
  </transport>
</cluster>
"#)
        .config
        .cluster
        .unwrap();
        let tls = c.tls.clone().expect("tls");
        assert_eq!(tls.ca_path, std::path::PathBuf::from("/c/ca.pem"));
        assert_eq!(tls.cert_path, std::path::PathBuf::from("/c/node.pem"));
        assert_eq!(
            tls.private_key_path,
            std::path::PathBuf::from("/c/node.key")
        );
        assert!(!c.insecure);
        let insecure =
            ok("<cluster>\n  node_id 1\n  address 0.0.0.0:7001\n  insecure true\n</cluster>\n")
                .config
                .cluster
                .unwrap();
        assert!(insecure.insecure && insecure.tls.is_none());

        // Plaintext elsewhere than loopback only with `insecure true`; TLS anywhere.
        let listen = |a: &str| a.parse::<std::net::SocketAddr>().unwrap();
        assert_eq!(
            insecure.exposure(&listen("0.0.0.0:7001")),
            Ok(Exposure::Insecure)
        );
        let plain = ClusterConfig {
            insecure: false,
            ..insecure
        };
        let refused = plain.exposure(&listen("0.0.0.0:7001")).unwrap_err();
        assert!(refused.contains("not a loopback address"), "{refused}");
        assert!(plain.exposure(&listen("10.1.2.3:7001")).is_err());
        for local in ["127.0.0.1:7001", "127.0.0.2:7001", "[::1]:7001"] {
            assert_eq!(plain.exposure(&listen(local)), Ok(Exposure::Loopback));
        }
        assert_eq!(c.exposure(&listen("0.0.0.0:7001")), Ok(Exposure::Tls));

        let e = errors("<cluster>\n  node_id 1\n  address 127.0.0.1:7001\n  <transport tls>\n    ca_path /c/ca.pem\n  </transport>\n</cluster>\n");
        assert!(
            e.contains("cert_path") && e.contains("private_key_path") && e.contains(":4"),
            "{e}"
        );
        let e = errors("<cluster>\n  node_id 1\n  address 127.0.0.1:7001\n  <transport tcp>\n  </transport>\n</cluster>\n");
        assert!(e.contains("use <transport tls>"), "{e}");
    }
}
