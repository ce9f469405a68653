//! TLS configuration for rustls: loading PEM certificates and keys into server and client
//! configs (ring crypto provider).
//!
//! Owns turning `<transport tls>` (in_forward, and `<cluster>`'s mutual TLS) and out_forward's
//! `tls_*` parameters into `rustls` configs. Reads files synchronously: call at startup, not on a hot path. Must not
//! open connections.

use crate::input::forward::config::ServerTlsConfig;
use crate::output::forward::config::ClientTlsConfig;
use rustls_pki_types::pem::{self, PemObject};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{
    CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// Why a TLS config could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid PEM in {path}: {source}")]
    Pem { path: PathBuf, source: pem::Error },
    #[error("no PEM certificate found in {0}")]
    NoCertificate(PathBuf),
    #[error("no PEM private key found in {0}")]
    NoPrivateKey(PathBuf),
    #[error("{0}")]
    Unsupported(String),
    #[error("invalid TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("invalid CA certificates: {0}")]
    Verifier(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// All certificates in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|source| match source {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey(path.to_path_buf()),
        source => TlsError::Pem {
            path: path.to_path_buf(),
            source,
        },
    })
}

fn root_store(paths: &[&Path]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for path in paths {
        for cert in load_certs(path)? {
            roots
                .add(cert)
                .map_err(|e| TlsError::Verifier(format!("{}: {e}", path.display())))?;
        }
    }
    Ok(roots)
}

/// Server config for in_forward's `<transport tls>`.
pub fn server_config(cfg: &ServerTlsConfig) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    if cfg.private_key_passphrase.is_some() {
        return Err(TlsError::Unsupported(
            "private_key_passphrase is not supported: decrypt the key file (openssl pkey -in KEY -out PLAIN)"
                .into(),
        ));
    }
    let certs = load_certs(&cfg.cert_path)?;
    let key = load_private_key(&cfg.private_key_path)?;
    let provider = provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = if cfg.client_cert_auth {
        let ca = cfg
            .ca_path
            .as_deref()
            .ok_or_else(|| TlsError::Unsupported("client_cert_auth requires ca_path".into()))?;
        let roots = Arc::new(root_store(&[ca])?);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    Ok(Arc::new(builder.with_single_cert(certs, key)?))
}

/// Client config for out_forward's `transport tls`.
///
/// Trust anchors come from `tls_cert_path` and `tls_ca_cert_path` (no system store).
/// `tls_insecure_mode` accepts any certificate; `tls_verify_hostname false` accepts a valid
/// certificate for another name; `tls_allow_self_signed_cert` accepts a certificate whose
/// issuer is unknown (a self-signed one) — signatures are still checked.
pub fn client_config(cfg: &ClientTlsConfig) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let verifier: Arc<dyn ServerCertVerifier> = if cfg.insecure_mode {
        Arc::new(RelaxedVerifier {
            inner: None,
            provider: provider.clone(),
            accept_wrong_name: true,
            accept_unknown_issuer: true,
        })
    } else {
        let mut paths: Vec<&Path> = cfg.cert_path.iter().map(|p| p.as_path()).collect();
        if let Some(ca) = &cfg.ca_cert_path {
            paths.push(ca);
        }
        if paths.is_empty() && !cfg.allow_self_signed_cert {
            return Err(TlsError::Unsupported(
                "TLS needs a CA certificate: set tls_cert_path or tls_ca_cert_path (the system store is not used)"
                    .into(),
            ));
        }
        let roots = root_store(&paths)?;
        let inner = if roots.is_empty() {
            None
        } else {
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| TlsError::Verifier(e.to_string()))?,
            )
        };
        Arc::new(RelaxedVerifier {
            inner,
            provider: provider.clone(),
            accept_wrong_name: !cfg.verify_hostname,
            accept_unknown_issuer: cfg.allow_self_signed_cert,
        })
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (&cfg.client_cert_path, &cfg.client_private_key_path) {
        (Some(cert), Some(key)) => {
            builder.with_client_auth_cert(load_certs(cert)?, load_private_key(key)?)?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(TlsError::Unsupported(
                "tls_client_cert_path and tls_client_private_key_path must be set together".into(),
            ))
        }
    };
    Ok(Arc::new(config))
}

/// Server config for mutual TLS (the cluster port): this certificate, and every client must
/// present a certificate that chains to the CA in `ca`.
pub fn mutual_server_config(
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = provider();
    let roots = Arc::new(root_store(&[ca])?);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(cert)?, load_private_key(key)?)?;
    Ok(Arc::new(config))
}

/// Client config for mutual TLS: present this certificate, trust only servers whose
/// certificate chains to the CA in `ca`. With `any_name`, a valid certificate for another name
/// than the one dialed is accepted (an admin client that does not know which node it reaches).
pub fn mutual_client_config(
    ca: &Path,
    cert: &Path,
    key: &Path,
    any_name: bool,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = provider();
    let inner =
        WebPkiServerVerifier::builder_with_provider(Arc::new(root_store(&[ca])?), provider.clone())
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let verifier = Arc::new(RelaxedVerifier {
        inner: Some(inner),
        provider: provider.clone(),
        accept_wrong_name: any_name,
        accept_unknown_issuer: false,
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(load_certs(cert)?, load_private_key(key)?)?;
    Ok(Arc::new(config))
}

/// WebPKI verification with the relaxations out_forward's parameters ask for.
#[derive(Debug)]
struct RelaxedVerifier {
    /// None: no trust anchors, every chain is "unknown issuer".
    inner: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
    accept_wrong_name: bool,
    accept_unknown_issuer: bool,
}

impl ServerCertVerifier for RelaxedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let result = match &self.inner {
            Some(inner) => {
                inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
        };
        match result {
            Ok(v) => Ok(v),
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.accept_wrong_name => Ok(ServerCertVerified::assertion()),
            Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer))
                if self.accept_unknown_issuer =>
            {
                Ok(ServerCertVerified::assertion())
            }
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A throwaway PKI for unit tests: a CA and a server certificate it signed.
#[cfg(test)]
pub(crate) mod test_pki {
    use std::path::{Path, PathBuf};

    /// Paths of the files [`write`] created.
    pub(crate) struct TestPki {
        pub ca_path: PathBuf,
        pub cert_path: PathBuf,
        pub key_path: PathBuf,
    }

    /// Write `ca.pem`, `server.pem` and `server.key` (certificate for `server_name`) into `dir`.
    pub(crate) fn write(dir: &Path, server_name: &str) -> TestPki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "lograft test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let server_key = rcgen::KeyPair::generate().unwrap();
        let server_cert = rcgen::CertificateParams::new(vec![server_name.to_string()])
            .unwrap()
            .signed_by(&server_key, &ca, &ca_key)
            .unwrap();
        let pki = TestPki {
            ca_path: dir.join("ca.pem"),
            cert_path: dir.join("server.pem"),
            key_path: dir.join("server.key"),
        };
        std::fs::write(&pki.ca_path, ca.pem()).unwrap();
        std::fs::write(&pki.cert_path, server_cert.pem()).unwrap();
        std::fs::write(&pki.key_path, server_key.serialize_pem()).unwrap();
        pki
    }
}
