//! `<match> @type forward` (out_forward): the typed [`ForwardOutputConfig`], its `<server>`s,
//! `tls_*` parameters ([`ClientTlsConfig`]) and `<security>` ([`ClientSecurityConfig`]), and
//! their builder.
//!
//! Owns out_forward's parameter names, defaults and checks; it must not connect anywhere (the
//! rest of `output::forward` does).

use super::ForwardOutput;
use crate::buffer::config::{BufferConfig, PluginBufferDefaults};
use crate::config::diag::Diag;
use crate::config::element::Element;
use crate::config::registry::{OutputConfig, OutputPlugin};
use crate::config::section::{compression, Section};
use crate::config::{Compression, Location};
use crate::output::{Output, OutputError, OutputSpec};
use std::path::PathBuf;
use std::time::Duration;

/// The registry's entry for `@type forward`.
pub(crate) const PLUGIN: OutputPlugin = OutputPlugin {
    name: "forward",
    build: |sec, d| build(sec, d).map(OutputConfig::Forward),
    unimplemented_params: &[
        "tls_version",
        "tls_min_version",
        "tls_max_version",
        "tls_ciphers",
        "tls_client_private_key_passphrase",
        "tls_cert_logical_store_name",
        "tls_cert_thumbprint",
        "tls_cert_use_enterprise_store",
        "ignore_network_errors_at_startup",
        "time_as_integer",
    ],
    unimplemented_sections: &["service_discovery"],
    buffer: PluginBufferDefaults {
        chunk_keys: &["tag"],
        timekey: None,
        flush_at_shutdown: None,
        chunk_limit_size: None,
        requires_tag_key: true,
        legacy_flat: None,
    },
};

/// `<match> @type forward` (behaviour in `output::forward`).
#[derive(Debug, Clone)]
pub struct ForwardOutputConfig {
    pub servers: Vec<ServerConfig>,
    pub transport: Transport,
    pub send_timeout: Duration,
    pub connect_timeout: Option<Duration>,
    pub health: HealthParams,
    /// lograft default: true (Fluentd's is false).
    pub require_ack_response: bool,
    pub ack_response_timeout: Duration,
    pub expire_dns_cache: Option<Duration>,
    pub dns_round_robin: bool,
    pub compress: Compression,
    pub keepalive: bool,
    pub keepalive_timeout: Option<Duration>,
    pub verify_connection_at_startup: bool,
    /// lograft: the largest Forward message sent, in bytes; a bigger chunk goes out as several
    /// messages (default 4 MiB; 0 = each chunk in one message, as Fluentd does).
    pub max_frame_size: u64,
    pub tls: ClientTlsConfig,
    pub security: Option<ClientSecurityConfig>,
}

/// How one output judges its servers' health (`heartbeat_*`, `recover_wait`, `hard_timeout`,
/// `phi_*`); shared by all its servers (behaviour in `output::forward::node`).
#[derive(Debug, Clone)]
pub struct HealthParams {
    pub heartbeat_type: HeartbeatType,
    pub heartbeat_interval: Duration,
    pub recover_wait: Duration,
    pub hard_timeout: Duration,
    pub phi_failure_detector: bool,
    pub phi_threshold: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Tls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatType {
    Transport,
    Udp,
    None,
}

/// One `<server>` of out_forward.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub host: String,
    /// Default 24224.
    pub port: u16,
    pub name: Option<String>,
    /// Default 60.
    pub weight: u32,
    pub standby: bool,
    pub shared_key: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub location: Location,
}

/// out_forward's `tls_*` parameters.
#[derive(Debug, Clone, Default)]
pub struct ClientTlsConfig {
    pub cert_path: Vec<PathBuf>,
    pub ca_cert_path: Option<PathBuf>,
    pub client_cert_path: Option<PathBuf>,
    pub client_private_key_path: Option<PathBuf>,
    pub verify_hostname: bool,
    pub insecure_mode: bool,
    pub allow_self_signed_cert: bool,
}

/// out_forward's `<security>`.
#[derive(Debug, Clone, Default)]
pub struct ClientSecurityConfig {
    pub self_hostname: String,
    pub shared_key: String,
}

/// The typed config of `<match> @type forward`; `None` without a valid `<server>`.
pub(crate) fn build(sec: &mut Section<'_>, d: &mut Diag) -> Option<ForwardOutputConfig> {
    let server_els = sec.sections("server");
    if server_els.is_empty() {
        d.error(
            &sec.el.location,
            format!("{} needs at least one <server> section", sec.title),
        );
    }
    let servers: Vec<ServerConfig> = server_els
        .into_iter()
        .filter_map(|el| forward_server(el, d))
        .collect();
    let transport = match sec.enumerated(d, "transport", &["tcp", "tls"]) {
        Some("tls") => Transport::Tls,
        _ => Transport::Tcp,
    };
    let heartbeat_type =
        match sec.enumerated(d, "heartbeat_type", &["transport", "tcp", "udp", "none"]) {
            Some("udp") => HeartbeatType::Udp,
            Some("none") => HeartbeatType::None,
            Some("tcp") => {
                if let Some(p) = sec.el.param("heartbeat_type") {
                    d.warn(
                        &p.location,
                        "'heartbeat_type tcp' is deprecated (as in Fluentd); it means 'transport'",
                    );
                }
                HeartbeatType::Transport
            }
            _ => HeartbeatType::Transport,
        };
    let ack_response_timeout = sec
        .duration(d, "ack_response_timeout")
        .unwrap_or(Duration::from_secs(190));
    sec.check_min(
        d,
        "ack_response_timeout",
        ack_response_timeout.as_secs_f64(),
        1.0,
    );
    let dns_round_robin = sec.bool(d, "dns_round_robin", false);
    if dns_round_robin && heartbeat_type == HeartbeatType::Udp {
        if let Some(p) = sec.el.param("dns_round_robin") {
            d.error(
                &p.location,
                format!(
                    "'dns_round_robin' cannot be used with 'heartbeat_type udp' in {}",
                    sec.title
                ),
            );
        }
    }
    let security = sec.single_section(d, "security").and_then(|el| {
        let mut ssec = Section::new(el, "<security> of out_forward");
        let self_hostname = ssec.required_string(d, "self_hostname");
        let shared_key = ssec.required_string(d, "shared_key");
        ssec.finish(d, &[], &[]);
        Some(ClientSecurityConfig {
            self_hostname: self_hostname?,
            shared_key: shared_key?,
        })
    });
    let tls = ClientTlsConfig {
        cert_path: sec
            .array(d, "tls_cert_path")
            .unwrap_or_default()
            .into_iter()
            .map(PathBuf::from)
            .collect(),
        ca_cert_path: sec.string("tls_ca_cert_path").map(PathBuf::from),
        client_cert_path: sec.string("tls_client_cert_path").map(PathBuf::from),
        client_private_key_path: sec.string("tls_client_private_key_path").map(PathBuf::from),
        verify_hostname: sec.bool(d, "tls_verify_hostname", true),
        insecure_mode: sec.bool(d, "tls_insecure_mode", false),
        allow_self_signed_cert: sec.bool(d, "tls_allow_self_signed_cert", false),
    };
    let cfg = ForwardOutputConfig {
        transport,
        send_timeout: sec
            .duration(d, "send_timeout")
            .unwrap_or(Duration::from_secs(60)),
        connect_timeout: sec.duration(d, "connect_timeout"),
        health: HealthParams {
            heartbeat_type,
            heartbeat_interval: sec
                .duration(d, "heartbeat_interval")
                .unwrap_or(Duration::from_secs(1)),
            recover_wait: sec
                .duration(d, "recover_wait")
                .unwrap_or(Duration::from_secs(10)),
            hard_timeout: sec
                .duration(d, "hard_timeout")
                .unwrap_or(Duration::from_secs(60)),
            phi_failure_detector: sec.bool(d, "phi_failure_detector", true),
            phi_threshold: sec.float(d, "phi_threshold").unwrap_or(16.0),
        },
        require_ack_response: sec.bool(d, "require_ack_response", true),
        ack_response_timeout,
        expire_dns_cache: sec.duration(d, "expire_dns_cache"),
        dns_round_robin,
        compress: compression(sec, d, &["text", "gzip"]),
        keepalive: sec.bool(d, "keepalive", false),
        keepalive_timeout: sec.duration(d, "keepalive_timeout"),
        verify_connection_at_startup: sec.bool(d, "verify_connection_at_startup", false),
        max_frame_size: sec
            .size(d, "max_frame_size")
            .unwrap_or(crate::output::forward::DEFAULT_MAX_FRAME_SIZE),
        tls,
        security,
        servers,
    };
    if cfg.servers.is_empty() {
        return None;
    }
    Some(cfg)
}

fn forward_server(el: &Element, d: &mut Diag) -> Option<ServerConfig> {
    let mut sec = Section::new(el, "<server> of out_forward");
    if !el.arg.is_empty() {
        d.error(
            &el.location,
            format!("<server> takes no argument (got '{}')", el.arg),
        );
    }
    let host = sec.required_string(d, "host");
    let weight: u32 = sec.integer(d, "weight").unwrap_or(60);
    let cfg = ServerConfig {
        host: host.clone().unwrap_or_default(),
        port: sec.integer(d, "port").unwrap_or(24224),
        name: sec.string("name"),
        weight,
        standby: sec.bool(d, "standby", false),
        shared_key: sec.string("shared_key"),
        username: sec.string("username"),
        password: sec.string("password"),
        location: el.location.clone(),
    };
    sec.finish(d, &[], &[]);
    host.map(|_| cfg)
}

impl OutputSpec for ForwardOutputConfig {
    fn type_name(&self) -> &'static str {
        PLUGIN.name
    }

    fn build(&self, _: &BufferConfig) -> Result<Output, OutputError> {
        Ok(Box::new(ForwardOutput::new(self)?))
    }

    /// The transport, then one line per server.
    fn describe(&self) -> String {
        let transport = if self.transport == Transport::Tls {
            "tls"
        } else {
            "tcp"
        };
        let gzip = if self.compress == Compression::Gzip {
            ", gzip"
        } else {
            ""
        };
        let mut s = format!(
            "forward ({transport}{gzip}, require_ack_response={})",
            self.require_ack_response
        );
        for server in &self.servers {
            s.push_str(&format!(
                "\n      server {}:{}{}{}",
                server.host,
                server.port,
                server
                    .name
                    .as_ref()
                    .map(|n| format!(" name={n}"))
                    .unwrap_or_default(),
                if server.standby { " (standby)" } else { "" }
            ));
        }
        s
    }
}
