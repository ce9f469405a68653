//! Mutual TLS on the cluster port: who a certificate says the caller is, which calls each role
//! may make, and the certificate files, re-read when they change.
//!
//! # Roles
//!
//! Every certificate is signed by the cluster CA (`ca_path`). Its role is in its subject
//! alternative names (DNS names, so rustls/webpki check them; see [`certs`] for how
//! `lograft cluster certs` makes them):
//!
//! - a **node** certificate names `node-<id>.lograft` ([`node_name`]) and has both the server
//!   and the client extended key usage: node `<id>` serves the cluster port with it and
//!   presents it when it calls its peers;
//! - an **operator** certificate names `operator.lograft` ([`OPERATOR_NAME`]) and has only the
//!   client usage: it cannot serve, and names no node.
//!
//! [`Gate`] applies the rules: Raft RPCs (AppendEntries, Vote, InstallSnapshot) only from the
//! node certificate of the node the message claims to come from (which
//! [`super::raft_guard`] also requires to be a member); a forwarded chunk and the
//! leader-transfer helper only from the node certificate of a current member; admin RPCs only
//! from an operator certificate, except `Status` (any certificate of the cluster) and
//! `AddLearner` of node `<id>` (also from node `<id>` itself: that is how `join` works). A
//! node dialing peer `<id>` accepts only a server certificate naming `node-<id>.lograft`.
//!
//! # Rotation
//!
//! [`ClusterTls`] checks the modification times of its three files before each new
//! connection (accepted or dialed) and reloads them when they changed; connections already
//! open keep the certificates they were made with. Replacing the files (CA bundle first, when
//! the CA changes) rotates certificates without a restart.
//!
//! Owns the role names, the file reloading and the per-call checks. It must not decide
//! membership (that is openraft's, checked by [`super::raft_guard`]) nor carry bytes (that is
//! [`transport`]).

pub mod certs;
pub(crate) mod transport;

use super::NodeId;
use crate::log_limit::WarnLimiter;
use crate::tls::TlsError;
use rustls_pki_types::{CertificateDer, ServerName};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime};
use tokio_rustls::rustls;
use tonic::{Extensions, Status};
use tracing::warn;

/// The DNS name node `id`'s certificate carries.
pub fn node_name(id: NodeId) -> String {
    format!("node-{id}.lograft")
}

/// The DNS name an operator certificate carries.
pub const OPERATOR_NAME: &str = "operator.lograft";

/// The three PEM files of one TLS identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_path: PathBuf,
    pub cert_path: PathBuf,
    pub private_key_path: PathBuf,
}

/// The rustls configs made from [`TlsFiles`] at one moment.
pub(crate) struct Loaded {
    /// What the files' modification times were.
    stamp: Vec<Option<SystemTime>>,
    /// Serving the cluster port: this certificate, client certificates required.
    pub(crate) server: Arc<rustls::ServerConfig>,
    /// Dialing a peer (its name is checked).
    pub(crate) peer: Arc<rustls::ClientConfig>,
    /// Dialing a node for admin calls (any node of the cluster).
    pub(crate) admin: Arc<rustls::ClientConfig>,
}

/// One node's (or the CLI's) TLS identity, reloaded when its files change.
pub struct ClusterTls {
    files: TlsFiles,
    loaded: Mutex<Arc<Loaded>>,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ClusterTls {
    /// Load the files now (blocking: at startup). Fails if any is missing or invalid.
    pub fn load(files: TlsFiles) -> Result<ClusterTls, TlsError> {
        let loaded = load(&files)?;
        Ok(ClusterTls {
            files,
            loaded: Mutex::new(Arc::new(loaded)),
        })
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The configs for a new connection: reloaded first if a file changed since. A reload that
    /// fails keeps the previous configs (and warns).
    pub(crate) async fn current(&self) -> Arc<Loaded> {
        let current = self
            .loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let stamp = stamp_of(&self.files).await;
        if stamp == current.stamp {
            return current;
        }
        let files = self.files.clone();
        match tokio::task::spawn_blocking(move || load(&files)).await {
            Ok(Ok(fresh)) => {
                let fresh = Arc::new(fresh);
                tracing::info!(cert = %self.files.cert_path.display(), "cluster TLS files changed: reloaded");
                *self.loaded.lock().unwrap_or_else(|e| e.into_inner()) = fresh.clone();
                fresh
            }
            Ok(Err(error)) => {
                static FAILED: LazyLock<WarnLimiter> =
                    LazyLock::new(|| WarnLimiter::new(Duration::from_secs(60)));
                if FAILED.check().is_some() {
                    warn!(%error, "cluster TLS files changed but cannot be loaded; keeping the previous ones");
                }
                current
            }
            Err(_) => current,
        }
    }
}

async fn stamp_of(files: &TlsFiles) -> Vec<Option<SystemTime>> {
    let mut stamp = Vec::with_capacity(3);
    for path in [&files.ca_path, &files.cert_path, &files.private_key_path] {
        stamp.push(
            tokio::fs::metadata(path)
                .await
                .ok()
                .and_then(|m| m.modified().ok()),
        );
    }
    stamp
}

fn load(files: &TlsFiles) -> Result<Loaded, TlsError> {
    let stamp = [&files.ca_path, &files.cert_path, &files.private_key_path]
        .iter()
        .map(|p| std::fs::metadata(p).ok().and_then(|m| m.modified().ok()))
        .collect();
    let (ca, cert, key) = (
        files.ca_path.as_path(),
        files.cert_path.as_path(),
        files.private_key_path.as_path(),
    );
    Ok(Loaded {
        stamp,
        server: crate::tls::mutual_server_config(ca, cert, key)?,
        peer: crate::tls::mutual_client_config(ca, cert, key, false)?,
        admin: crate::tls::mutual_client_config(ca, cert, key, true)?,
    })
}

/// The verified certificate of the client of one TLS connection (a request extension).
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    cert: CertificateDer<'static>,
}

impl Caller {
    pub(crate) fn new(cert: CertificateDer<'static>) -> Self {
        Caller { cert }
    }

    /// Whether the certificate carries the DNS name `name`.
    fn names(&self, name: &str) -> bool {
        let Ok(server_name) = ServerName::try_from(name) else {
            return false;
        };
        webpki::EndEntityCert::try_from(&self.cert)
            .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&server_name).is_ok())
    }

    fn is_node(&self, id: NodeId) -> bool {
        self.names(&node_name(id))
    }

    fn is_operator(&self) -> bool {
        self.names(OPERATOR_NAME)
    }
}

/// The per-call checks of a service on the cluster port. Without TLS (loopback, or
/// `insecure true`) every call is allowed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Gate {
    tls: bool,
}

impl Gate {
    pub(crate) fn new(tls: bool) -> Self {
        Gate { tls }
    }

    /// `Ok(None)` without TLS, else the caller (a TLS connection always has one).
    fn caller<'e>(&self, ext: &'e Extensions) -> Result<Option<&'e Caller>, Status> {
        if !self.tls {
            return Ok(None);
        }
        ext.get::<Caller>()
            .map(Some)
            .ok_or_else(|| Status::unauthenticated("no client certificate"))
    }

    /// Only node `id`'s certificate.
    pub(crate) fn node(&self, ext: &Extensions, id: NodeId) -> Result<(), Status> {
        match self.caller(ext)? {
            Some(caller) if !caller.is_node(id) => Err(denied(format!(
                "the message claims to come from node {id}, but the client certificate is not node {id}'s"
            ))),
            _ => Ok(()),
        }
    }

    /// Only the certificate of one of `members`.
    pub(crate) fn member(
        &self,
        ext: &Extensions,
        members: impl IntoIterator<Item = NodeId>,
    ) -> Result<(), Status> {
        match self.caller(ext)? {
            Some(caller) if !members.into_iter().any(|id| caller.is_node(id)) => Err(denied(
                "only a current member's node certificate may make this call".into(),
            )),
            _ => Ok(()),
        }
    }

    /// Only an operator certificate.
    pub(crate) fn operator(&self, ext: &Extensions) -> Result<(), Status> {
        match self.caller(ext)? {
            Some(caller) if !caller.is_operator() => {
                Err(denied("admin calls need an operator certificate".into()))
            }
            _ => Ok(()),
        }
    }

    /// An operator certificate, or node `id`'s own.
    pub(crate) fn operator_or_node(&self, ext: &Extensions, id: NodeId) -> Result<(), Status> {
        match self.caller(ext)? {
            Some(caller) if !caller.is_operator() && !caller.is_node(id) => Err(denied(format!(
                "this call needs an operator certificate or node {id}'s own"
            ))),
            _ => Ok(()),
        }
    }

    /// Any certificate of the cluster (the handshake checked it chains to the CA).
    pub(crate) fn anyone(&self, ext: &Extensions) -> Result<(), Status> {
        self.caller(ext).map(|_| ())
    }
}

fn denied(message: String) -> Status {
    static DENIED: LazyLock<WarnLimiter> =
        LazyLock::new(|| WarnLimiter::new(Duration::from_secs(60)));
    if let Some(others) = DENIED.check() {
        warn!(reason = %message, denied_since_last_line = others, "cluster call denied");
    }
    Status::permission_denied(message)
}

#[cfg(test)]
mod tests {
    use super::certs::{make_certs, CertsRequest, NodeCertSpec};
    use super::*;

    fn request(dir: &std::path::Path) -> CertsRequest {
        CertsRequest {
            dir: dir.to_path_buf(),
            nodes: vec![NodeCertSpec {
                id: 1,
                hosts: vec!["agg1.example".into()],
            }],
            operator: Some("alice".into()),
            valid_for: Duration::from_secs(86_400),
        }
    }

    /// Certificates carry their role: node 1's names node 1 only, the operator's only the
    /// operator; a rewrite of the files is picked up by the next connection.
    #[tokio::test]
    async fn roles_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        make_certs(&request(dir.path())).unwrap();
        let node = crate::tls::load_certs(&dir.path().join("node-1.pem")).unwrap();
        let node = Caller::new(node[0].clone());
        assert!(node.is_node(1) && !node.is_node(2) && !node.is_operator());
        let operator = crate::tls::load_certs(&dir.path().join("operator.pem")).unwrap();
        let operator = Caller::new(operator[0].clone());
        assert!(operator.is_operator() && !operator.is_node(1));

        let tls = ClusterTls::load(TlsFiles {
            ca_path: dir.path().join("ca.pem"),
            cert_path: dir.path().join("node-1.pem"),
            private_key_path: dir.path().join("node-1.key"),
        })
        .unwrap();
        let first = tls.current().await;
        assert!(Arc::ptr_eq(&first, &tls.current().await), "unchanged files");
        // Renewed under the same CA (ca.key is reused): the next connection uses the new files.
        std::thread::sleep(Duration::from_millis(20));
        make_certs(&request(dir.path())).unwrap();
        let second = tls.current().await;
        assert!(!Arc::ptr_eq(&first, &second), "not reloaded");

        // The gate: without TLS everything passes; with it, the roles decide.
        let mut ext = Extensions::new();
        assert!(Gate::new(true).anyone(&ext).is_err());
        assert!(Gate::new(false).operator(&ext).is_ok());
        ext.insert(node.clone());
        let gate = Gate::new(true);
        assert!(gate.node(&ext, 1).is_ok());
        assert!(gate.node(&ext, 2).is_err());
        assert!(gate.operator(&ext).is_err());
        assert!(gate.operator_or_node(&ext, 1).is_ok());
        assert!(gate.operator_or_node(&ext, 5).is_err());
        assert!(gate.member(&ext, [2, 3]).is_err());
        assert!(gate.member(&ext, [1, 2]).is_ok());
        let mut ext = Extensions::new();
        ext.insert(operator);
        assert!(gate.operator(&ext).is_ok());
        assert!(gate.node(&ext, 1).is_err());
        assert!(gate.member(&ext, [1, 2, 3]).is_err());
    }
}
