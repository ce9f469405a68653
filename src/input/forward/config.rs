//! `<source> @type forward` (in_forward): the typed [`ForwardInputConfig`], its `<transport
//! tls>` ([`ServerTlsConfig`]) and `<security>` ([`ServerSecurityConfig`]), and their builder.
//!
//! Owns in_forward's parameter names, defaults and checks; it must not open sockets or load
//! certificates (that is `input::forward` and `tls`).

use super::ForwardInput;
use crate::config::diag::Diag;
use crate::config::element::Element;
use crate::config::registry::{SourceKind, SourcePlugin};
use crate::config::section::Section;
pub use crate::forward::{ClientConfig, ServerSecurityConfig, UserConfig};
use crate::input::{InputContext, InputTask, SourceSpec};
use crate::observe::MeteredEmit;
use crate::pipeline::BoxFuture;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// The registry's entry for `@type forward`.
pub(crate) const PLUGIN: SourcePlugin = SourcePlugin {
    name: "forward",
    build: |sec, d| SourceKind::Forward(build(sec, d)),
    unimplemented_params: UNIMPLEMENTED,
    unimplemented_sections: &[],
};

/// Documented in_forward parameters lograft ignores (with a warning).
const UNIMPLEMENTED: &[&str] = &[
    "linger_timeout",
    "send_keepalive_packet",
    "backlog",
    "blocking_timeout",
];
const TRANSPORT_TLS_UNIMPLEMENTED: &[&str] = &[
    "version",
    "min_version",
    "max_version",
    "ciphers",
    "insecure",
    "ca_cert_path",
    "ca_private_key_path",
    "ca_private_key_passphrase",
    "cert_verifier",
    "generate_private_key_length",
    "generate_cert_country",
    "generate_cert_state",
    "generate_cert_locality",
    "generate_cert_common_name",
    "generate_cert_expiration",
    "generate_cert_digest",
    "cert_logical_store_name",
    "cert_use_enterprise_store",
    "cert_thumbprint",
    "ensure_fips",
    "linger_timeout",
];

/// `<source> @type forward`
#[derive(Debug, Clone)]
pub struct ForwardInputConfig {
    pub bind: String,
    /// Default 24224.
    pub port: u16,
    /// Overrides the tag of every event.
    pub tag: Option<String>,
    pub add_tag_prefix: Option<String>,
    /// Chunks larger than this (bytes on the wire) are refused. Default: none.
    pub chunk_size_limit: Option<u64>,
    pub chunk_size_warn_limit: Option<u64>,
    /// Limit on decompressed size of a CompressedPackedForward chunk. Default 256m.
    pub decompression_size_limit: u64,
    /// Default true (Fluentd ≥ 1.19).
    pub skip_invalid_event: bool,
    pub source_address_key: Option<String>,
    pub source_hostname_key: Option<String>,
    pub resolve_hostname: bool,
    pub deny_keepalive: bool,
    /// Connections open at once; more are closed as soon as accepted. Default 16384.
    pub max_connections: usize,
    /// A connection without a complete frame and without an ack pending for this long is
    /// closed. Default 300s; zero: never.
    pub idle_timeout: Duration,
    pub security: Option<ServerSecurityConfig>,
    pub tls: Option<ServerTlsConfig>,
}

/// Default of in_forward's `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16384;
/// Default of in_forward's `idle_timeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

impl Default for ForwardInputConfig {
    /// Fluentd's in_forward defaults.
    fn default() -> Self {
        ForwardInputConfig {
            bind: "0.0.0.0".into(),
            port: 24224,
            tag: None,
            add_tag_prefix: None,
            chunk_size_limit: None,
            chunk_size_warn_limit: None,
            decompression_size_limit: 256 << 20,
            skip_invalid_event: true,
            source_address_key: None,
            source_hostname_key: None,
            resolve_hostname: false,
            deny_keepalive: false,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            security: None,
            tls: None,
        }
    }
}

/// `<transport tls>` inside in_forward.
#[derive(Debug, Clone, Default)]
pub struct ServerTlsConfig {
    pub cert_path: PathBuf,
    pub private_key_path: PathBuf,
    pub private_key_passphrase: Option<String>,
    pub client_cert_auth: bool,
    pub ca_path: Option<PathBuf>,
}

/// The typed config of `<source> @type forward`.
pub(crate) fn build(sec: &mut Section<'_>, d: &mut Diag) -> ForwardInputConfig {
    let security = sec
        .single_section(d, "security")
        .and_then(|el| server_security(el, d));
    let tls = sec
        .single_section(d, "transport")
        .and_then(|el| server_transport(el, d));
    ForwardInputConfig {
        bind: sec.string("bind").unwrap_or_else(|| "0.0.0.0".into()),
        port: sec.integer(d, "port").unwrap_or(24224),
        tag: sec.string("tag"),
        add_tag_prefix: sec.string("add_tag_prefix"),
        chunk_size_limit: sec.size(d, "chunk_size_limit"),
        chunk_size_warn_limit: sec.size(d, "chunk_size_warn_limit"),
        decompression_size_limit: sec.size(d, "decompression_size_limit").unwrap_or(256 << 20),
        skip_invalid_event: sec.bool(d, "skip_invalid_event", true),
        source_address_key: sec.string("source_address_key"),
        source_hostname_key: sec.string("source_hostname_key"),
        resolve_hostname: sec.bool(d, "resolve_hostname", false),
        deny_keepalive: sec.bool(d, "deny_keepalive", false),
        max_connections: sec
            .integer(d, "max_connections")
            .unwrap_or(DEFAULT_MAX_CONNECTIONS),
        idle_timeout: sec
            .duration(d, "idle_timeout")
            .unwrap_or(DEFAULT_IDLE_TIMEOUT),
        security,
        tls,
    }
}

/// `<transport tcp>` (nothing to keep) or `<transport tls>` of in_forward.
fn server_transport(el: &Element, d: &mut Diag) -> Option<ServerTlsConfig> {
    let protocol = if el.arg.is_empty() {
        "tcp"
    } else {
        el.arg.as_str()
    };
    let mut sec = Section::new(el, format!("<transport {protocol}> of in_forward"));
    match protocol {
        "tcp" => {
            sec.finish(d, &["linger_timeout"], &[]);
            None
        }
        "tls" => {
            let cert_path = sec.required_string(d, "cert_path");
            let private_key_path = sec.required_string(d, "private_key_path");
            let tls = ServerTlsConfig {
                cert_path: cert_path.unwrap_or_default().into(),
                private_key_path: private_key_path.unwrap_or_default().into(),
                private_key_passphrase: sec.string("private_key_passphrase"),
                client_cert_auth: sec.bool(d, "client_cert_auth", false),
                ca_path: sec.string("ca_path").map(PathBuf::from),
            };
            sec.finish(d, TRANSPORT_TLS_UNIMPLEMENTED, &[]);
            Some(tls)
        }
        other => {
            d.error(
                &el.location,
                format!("<transport {other}> is not supported by in_forward; use tcp or tls"),
            );
            None
        }
    }
}

/// in_forward's `<security>`.
fn server_security(el: &Element, d: &mut Diag) -> Option<ServerSecurityConfig> {
    let mut sec = Section::new(el, "<security> of in_forward");
    let self_hostname = sec.required_string(d, "self_hostname");
    let shared_key = sec.required_string(d, "shared_key");
    let user_auth = sec.bool(d, "user_auth", false);
    let allow_anonymous_source = sec.bool(d, "allow_anonymous_source", true);
    let users = sec
        .sections("user")
        .into_iter()
        .map(|user_el| {
            let mut user = Section::new(user_el, "<user> of in_forward <security>");
            let cfg = UserConfig {
                username: user.required_string(d, "username").unwrap_or_default(),
                password: user.required_string(d, "password").unwrap_or_default(),
            };
            user.finish(d, &[], &[]);
            cfg
        })
        .collect();
    let clients = sec
        .sections("client")
        .into_iter()
        .map(|client_el| {
            let mut client = Section::new(client_el, "<client> of in_forward <security>");
            let cfg = ClientConfig {
                host: client.string("host"),
                network: client.string("network"),
                shared_key: client.string("shared_key"),
                users: client.array(d, "users").unwrap_or_default(),
            };
            if cfg.host.is_some() == cfg.network.is_some() {
                d.error(
                    &client_el.location,
                    "<client> of in_forward <security> needs exactly one of 'host' or 'network'",
                );
            }
            client.finish(d, &[], &[]);
            cfg
        })
        .collect();
    sec.finish(d, &[], &[]);
    Some(ServerSecurityConfig {
        self_hostname: self_hostname?,
        shared_key: shared_key?,
        user_auth,
        allow_anonymous_source,
        users,
        clients,
    })
}

impl SourceSpec for ForwardInputConfig {
    fn type_name(&self) -> &'static str {
        PLUGIN.name
    }

    fn start<'a>(&'a self, ctx: InputContext<'a>) -> BoxFuture<'a, io::Result<Option<InputTask>>> {
        Box::pin(async move {
            let input = ForwardInput::bind(self, MeteredEmit::wrap(ctx.emit, ctx.metrics.clone()))?
                .with_in_flight_budget(ctx.budget)
                .with_metrics(ctx.metrics);
            tracing::info!(addr = %input.local_addr(), "forward input listening");
            Ok(Some(Box::pin(input.run(ctx.stop)) as InputTask))
        })
    }

    fn describe(&self) -> String {
        format!(
            "forward {}:{}{}{}",
            self.bind,
            self.port,
            if self.tls.is_some() { " tls" } else { "" },
            if self.security.is_some() {
                " shared_key"
            } else {
                ""
            }
        )
    }
}
