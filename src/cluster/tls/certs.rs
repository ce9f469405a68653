//! `lograft cluster certs DIR --nodes ...`: a cluster CA, one certificate per node and an
//! operator certificate, with the roles [`super`] checks (rcgen).
//!
//! Files written into DIR: `ca.pem`, `ca.key` (kept to issue more certificates: store it
//! offline), `node-<id>.pem` / `node-<id>.key` per node, `operator.pem` / `operator.key`.
//! An existing `ca.pem` + `ca.key` in DIR is reused, so running the command again with a new
//! node id adds that node's certificate under the same CA (and renews the others). Private
//! keys are written with mode 0600. Owns certificate issuing only; it must not read a
//! node's config.

use super::{node_name, OPERATOR_NAME};
use crate::cluster::NodeId;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Why certificates could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{0}")]
    Invalid(String),
}

/// One node to make a certificate for: its id and extra DNS names or IP addresses (its
/// advertised host), added to the subject alternative names for other tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCertSpec {
    pub id: NodeId,
    pub hosts: Vec<String>,
}

impl std::str::FromStr for NodeCertSpec {
    type Err = String;

    /// `ID` or `ID=HOST[,HOST...]`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (id, hosts) = s.split_once('=').unwrap_or((s, ""));
        let id = id
            .trim()
            .parse()
            .map_err(|e| format!("bad node id {id:?}: {e}"))?;
        let hosts = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(String::from)
            .collect();
        Ok(NodeCertSpec { id, hosts })
    }
}

/// What to make.
#[derive(Debug, Clone)]
pub struct CertsRequest {
    pub dir: PathBuf,
    pub nodes: Vec<NodeCertSpec>,
    /// The operator certificate's common name (for audit logs); `None`: no operator cert.
    pub operator: Option<String>,
    /// Validity of the node and operator certificates.
    pub valid_for: Duration,
}

/// Make the files; the paths written.
pub fn make_certs(req: &CertsRequest) -> Result<Vec<PathBuf>, CertsError> {
    if req.nodes.is_empty() && req.operator.is_none() {
        return Err(CertsError::Invalid(
            "nothing to make: give --nodes and/or --operator".into(),
        ));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CertsError::Io { path, source }
    };
    std::fs::create_dir_all(&req.dir).map_err(io(&req.dir))?;
    let mut written = Vec::new();
    let (ca_pem, ca_key_path) = (req.dir.join("ca.pem"), req.dir.join("ca.key"));
    let reuse = ca_pem.exists() && ca_key_path.exists();
    let ca_key = if reuse {
        let key_pem = std::fs::read_to_string(&ca_key_path).map_err(io(&ca_key_path))?;
        KeyPair::from_pem(&key_pem)?
    } else {
        KeyPair::generate()?
    };
    // Reusing a CA: the same subject and key make an issuer whose signatures verify under the
    // stored `ca.pem` (only that file is distributed).
    let ca = ca_params()?.self_signed(&ca_key)?;
    if !reuse {
        write_file(&ca_pem, ca.pem().as_bytes(), 0o644)?;
        write_file(&ca_key_path, ca_key.serialize_pem().as_bytes(), 0o600)?;
        written.extend([ca_pem.clone(), ca_key_path.clone()]);
    }
    let now = SystemTime::now();
    let leaf = |names: Vec<String>, cn: String, usages: Vec<ExtendedKeyUsagePurpose>| {
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = usages;
        params.not_before = now.into();
        params.not_after = (now + req.valid_for).into();
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca, &ca_key)?;
        Ok::<_, CertsError>((cert.pem(), key.serialize_pem()))
    };
    for node in &req.nodes {
        let mut names = vec![node_name(node.id)];
        names.extend(node.hosts.iter().cloned());
        let (cert, key) = leaf(
            names,
            format!("lograft node {}", node.id),
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )?;
        let base = req.dir.join(format!("node-{}", node.id));
        let (cert_path, key_path) = (base.with_extension("pem"), base.with_extension("key"));
        write_file(&cert_path, cert.as_bytes(), 0o644)?;
        write_file(&key_path, key.as_bytes(), 0o600)?;
        written.extend([cert_path, key_path]);
    }
    if let Some(name) = &req.operator {
        let (cert, key) = leaf(
            vec![OPERATOR_NAME.to_string()],
            format!("lograft operator {name}"),
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        )?;
        let (cert_path, key_path) = (req.dir.join("operator.pem"), req.dir.join("operator.key"));
        write_file(&cert_path, cert.as_bytes(), 0o644)?;
        write_file(&key_path, key.as_bytes(), 0o600)?;
        written.extend([cert_path, key_path]);
    }
    Ok(written)
}

/// The cluster CA: valid for ten years from now, may sign only end-entity certificates.
fn ca_params() -> Result<CertificateParams, CertsError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params
        .distinguished_name
        .push(DnType::CommonName, "lograft cluster CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = SystemTime::now().into();
    params.not_after = (SystemTime::now() + Duration::from_secs(10 * 365 * 86_400)).into();
    Ok(params)
}

/// Replace `path` with `bytes` (mode `mode` on creation).
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CertsError> {
    let err = |source| CertsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    file.write_all(bytes).map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}
