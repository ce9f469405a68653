//! Turns the parsed [`Element`] tree into the typed [`Config`], with Fluentd's defaults and
//! lograft's own (file buffers by default, `require_ack_response true`).
//!
//! Owns the meaning of every parameter name: which plugin types exist, which parameters each
//! accepts, the v0.12 spellings (`type`, flat `buffer_*` parameters), defaults, and the
//! diagnostics (errors and "accepted but not implemented" warnings, all `FILE:LINE: message`).
//! It must not read files itself (that is `parser`) nor start anything.
//!
//! The rule for unknown keys: a key that fills a field of the typed structs is implemented; a
//! key Fluentd documents for that plugin but lograft ignores gives a warning; anything else is an
//! error (with a "did you mean" suggestion when a known key is close).

use super::element::{Element, Param};
use super::value::{self, num_bounds::Bounds, ValueError};
use super::*;

/// Parses and validates the config file at `path` (blocking file I/O; following `@include`s).
pub fn load(path: &Path) -> Result<Loaded, ConfigErrors> {
    let root = super::parser::parse_file(path)?;
    build(&root)
}

/// Like [`load`] for text already in memory; `path` names it in messages and anchors relative
/// `@include`s.
pub fn load_str(text: &str, path: &Path) -> Result<Loaded, ConfigErrors> {
    let root = super::parser::parse_str(text, path)?;
    build(&root)
}

/// Builds the typed config from a parsed tree, collecting every error it can find.
pub fn build(root: &Element) -> Result<Loaded, ConfigErrors> {
    let mut d = Diag::default();
    let mut config = Config::default();
    for p in &root.params {
        d.error(
            &p.location,
            format!(
                "parameter '{}' is outside any directive (put it inside <source>, <match> or <system>)",
                p.key
            ),
        );
    }
    let mut system_seen: Option<&Location> = None;
    for child in &root.children {
        match child.name.as_str() {
            "system" => {
                if let Some(first) = system_seen {
                    d.error(
                        &child.location,
                        format!("<system> is given more than once (first at {first}); only one is allowed"),
                    );
                } else {
                    system_seen = Some(&child.location);
                    config.system = build_system(child, &mut d);
                }
            }
            "source" => {
                if let Some(source) = build_source(child, &mut d) {
                    config.sources.push(source);
                }
            }
            "match" => {
                if let Some(m) = build_match(child, &mut d) {
                    config.matches.push(m);
                }
            }
            "filter" | "label" | "worker" => d.error(
                &child.location,
                format!(
                    "<{}> is not supported yet by lograft (supported directives: <source>, <match>, <system>)",
                    child.name
                ),
            ),
            other => d.error(
                &child.location,
                format!(
                    "unknown directive <{other}>{}; lograft knows <source>, <match>, <system>",
                    did_you_mean(other, &["source", "match", "system", "filter", "label"])
                        .map(|s| format!(" (did you mean <{s}>?)"))
                        .unwrap_or_default()
                ),
            ),
        }
    }
    if d.errors.is_empty() {
        Ok(Loaded {
            config,
            warnings: d.warnings,
        })
    } else {
        Err(ConfigErrors(d.errors))
    }
}

// ---------------------------------------------------------------------------------------------
// Diagnostics and the per-section reader.

#[derive(Default)]
struct Diag {
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
}

impl Diag {
    fn error(&mut self, location: &Location, message: impl Into<String>) {
        self.errors.push(ConfigError {
            location: location.clone(),
            message: message.into(),
        });
    }

    fn warn(&mut self, location: &Location, message: impl Into<String>) {
        self.warnings.push(ConfigError {
            location: location.clone(),
            message: message.into(),
        });
    }
}

/// The closest candidate, if it is close enough to be a plausible typo.
fn did_you_mean<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    candidates
        .iter()
        .copied()
        .filter(|c| *c != word)
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Reads the parameters and child sections of one element, remembering which keys and section
/// names the builder asked for, so that [`Section::finish`] can flag everything else.
struct Section<'e> {
    el: &'e Element,
    /// Names the section in messages, e.g. `<match mytag.**> (out_forward)`.
    title: String,
    known_params: Vec<&'static str>,
    known_sections: Vec<&'static str>,
    /// Keys synthesized from another spelling: (key read, key the user wrote).
    written_as: Vec<(String, String)>,
}

impl<'e> Section<'e> {
    fn new(el: &'e Element, title: impl Into<String>) -> Self {
        Section {
            el,
            title: title.into(),
            known_params: Vec::new(),
            known_sections: Vec::new(),
            written_as: Vec::new(),
        }
    }

    /// The key as the user wrote it (for synthesized buffer keys).
    fn shown(&self, key: &str) -> String {
        self.written_as
            .iter()
            .find(|(read, _)| read == key)
            .map(|(_, written)| written.clone())
            .unwrap_or_else(|| key.to_string())
    }

    fn raw(&mut self, key: &'static str) -> Option<&'e Param> {
        self.known_params.push(key);
        self.el.param(key)
    }

    fn typed<T>(
        &mut self,
        d: &mut Diag,
        key: &'static str,
        parse: impl FnOnce(&str) -> Result<T, ValueError>,
    ) -> Option<T> {
        let param = self.raw(key)?;
        match parse(&param.value) {
            Ok(v) => Some(v),
            Err(e) => {
                d.error(
                    &param.location,
                    format!("'{}' in {}: {e}", self.shown(key), self.title),
                );
                None
            }
        }
    }

    fn string(&mut self, key: &'static str) -> Option<String> {
        self.raw(key).map(|p| value::parse_string(&p.value))
    }

    fn required_string(&mut self, d: &mut Diag, key: &'static str) -> Option<String> {
        let v = self.string(key);
        if v.is_none() {
            self.missing(d, key);
        }
        v
    }

    fn missing(&self, d: &mut Diag, key: &str) {
        d.error(
            &self.el.location,
            format!("missing required parameter '{key}' in {}", self.title),
        );
    }

    fn bool(&mut self, d: &mut Diag, key: &'static str, default: bool) -> bool {
        self.typed(d, key, value::parse_bool).unwrap_or(default)
    }

    fn size(&mut self, d: &mut Diag, key: &'static str) -> Option<u64> {
        self.typed(d, key, value::parse_size)
    }

    fn duration(&mut self, d: &mut Diag, key: &'static str) -> Option<Duration> {
        self.typed(d, key, value::parse_duration)
    }

    fn float(&mut self, d: &mut Diag, key: &'static str) -> Option<f64> {
        self.typed(d, key, value::parse_float)
    }

    fn integer<T: TryFrom<i64> + Bounds>(&mut self, d: &mut Diag, key: &'static str) -> Option<T> {
        self.typed(d, key, value::parse_integer_in::<T>)
    }

    fn array(&mut self, d: &mut Diag, key: &'static str) -> Option<Vec<String>> {
        self.typed(d, key, value::parse_array)
    }

    fn enumerated(
        &mut self,
        d: &mut Diag,
        key: &'static str,
        allowed: &[&'static str],
    ) -> Option<&'static str> {
        self.typed(d, key, |v| value::parse_enum(v, allowed))
    }

    fn log_level(&mut self, d: &mut Diag, key: &'static str) -> Option<LogLevel> {
        self.enumerated(d, key, &["trace", "debug", "info", "warn", "error", "fatal"])
            .map(|level| match level {
                "trace" => LogLevel::Trace,
                "debug" => LogLevel::Debug,
                "info" => LogLevel::Info,
                "warn" => LogLevel::Warn,
                "error" => LogLevel::Error,
                _ => LogLevel::Fatal,
            })
    }

    /// A value that must not be below `min` (e.g. ports of 0 for servers are fine, counts of 0
    /// threads are not).
    fn check_min<T: PartialOrd + std::fmt::Display>(
        &self,
        d: &mut Diag,
        key: &str,
        got: T,
        min: T,
    ) -> bool {
        if got < min {
            let location = self
                .el
                .param(key)
                .map(|p| p.location.clone())
                .unwrap_or_else(|| self.el.location.clone());
            d.error(
                &location,
                format!("'{}' in {} must be at least {min}, got {got}", self.shown(key), self.title),
            );
            return false;
        }
        true
    }

    /// Child sections named `name` (registering the name as known).
    fn sections(&mut self, name: &'static str) -> Vec<&'e Element> {
        self.known_sections.push(name);
        self.el.children_named(name).collect()
    }

    /// At most one child section named `name`.
    fn single_section(&mut self, d: &mut Diag, name: &'static str) -> Option<&'e Element> {
        let found = self.sections(name);
        for extra in found.iter().skip(1) {
            d.error(
                &extra.location,
                format!(
                    "<{name}> is given more than once in {} (first at line {}); only one is allowed",
                    self.title, found[0].location.line
                ),
            );
        }
        found.first().copied()
    }

    /// Flags every parameter and section nobody asked for: a warning for those Fluentd documents
    /// (`unimplemented_*`), an error for the rest. Also warns about keys given twice.
    fn finish(self, d: &mut Diag, unimplemented_params: &[&str], unimplemented_sections: &[&str]) {
        for (i, p) in self.el.params.iter().enumerate() {
            let shown = self.shown(&p.key);
            if let Some(later) = self.el.params[i + 1..].iter().find(|q| q.key == p.key) {
                d.warn(
                    &p.location,
                    format!(
                        "'{shown}' is given more than once in {}; line {} wins",
                        self.title, later.location.line
                    ),
                );
                continue;
            }
            if self.known_params.contains(&p.key.as_str()) {
                continue;
            }
            if unimplemented_params.contains(&p.key.as_str()) {
                d.warn(
                    &p.location,
                    format!(
                        "'{shown}' in {} is accepted but not implemented by lograft; ignored",
                        self.title
                    ),
                );
                continue;
            }
            let mut candidates: Vec<&str> = self.known_params.clone();
            candidates.extend_from_slice(unimplemented_params);
            let hint = did_you_mean(&p.key, &candidates)
                .map(|s| format!("; did you mean '{s}'?"))
                .unwrap_or_default();
            d.error(
                &p.location,
                format!("unknown parameter '{shown}' in {}{hint}", self.title),
            );
        }
        for child in &self.el.children {
            if self.known_sections.contains(&child.name.as_str()) {
                continue;
            }
            if unimplemented_sections.contains(&child.name.as_str()) {
                d.warn(
                    &child.location,
                    format!(
                        "section <{}> in {} is accepted but not implemented by lograft; ignored",
                        child.name, self.title
                    ),
                );
                continue;
            }
            let mut candidates: Vec<&str> = self.known_sections.clone();
            candidates.extend_from_slice(unimplemented_sections);
            let hint = did_you_mean(&child.name, &candidates)
                .map(|s| format!("; did you mean <{s}>?"))
                .unwrap_or_default();
            let known = if candidates.is_empty() {
                String::from(" (it takes no sections)")
            } else {
                String::new()
            };
            d.error(
                &child.location,
                format!("unknown section <{}> in {}{known}{hint}", child.name, self.title),
            );
        }
    }
}

/// `@id`, `@log_level` / `log_level`.
fn plugin_common(sec: &mut Section<'_>, d: &mut Diag) -> PluginCommon {
    let id = sec.string("@id");
    let log_level = match sec.log_level(d, "@log_level") {
        Some(level) => Some(level),
        None => sec.log_level(d, "log_level"),
    };
    PluginCommon {
        id,
        log_level,
        location: sec.el.location.clone(),
    }
}

/// `@type` (or the v0.12 spelling `type`), with its location.
fn plugin_type(sec: &mut Section<'_>, d: &mut Diag) -> Option<(String, Location)> {
    let at = sec.raw("@type");
    let bare = sec.raw("type");
    match (at, bare) {
        (Some(a), Some(b)) => {
            d.error(
                &b.location,
                format!(
                    "both '@type' (line {}) and 'type' are given in {}; keep one",
                    a.location.line, sec.title
                ),
            );
            None
        }
        (Some(p), None) | (None, Some(p)) => {
            if p.value.is_empty() {
                d.error(&p.location, format!("'@type' in {} has no value", sec.title));
                return None;
            }
            Some((p.value.clone(), p.location.clone()))
        }
        (None, None) => {
            sec.missing(d, "@type");
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// <system>

const SYSTEM_UNIMPLEMENTED: &[&str] = &[
    "workers",
    "suppress_repeated_stacktrace",
    "emit_error_log_interval",
    "suppress_config_dump",
    "log_event_verbose",
    "ignore_repeated_log_interval",
    "ignore_same_log_interval",
    "without_source",
    "with_source_only",
    "rpc_endpoint",
    "enable_get_dump",
    "process_name",
    "file_permission",
    "dir_permission",
    "strict_config_value",
    "enable_msgpack_time_support",
    "disable_shared_socket",
    "enable_input_metrics",
    "enable_size_metrics",
    "enable_jit",
    "config_include_dir",
    "umask",
];
const SYSTEM_UNIMPLEMENTED_SECTIONS: &[&str] =
    &["log", "counter_server", "counter_client", "metrics", "source_only_buffer"];

fn build_system(el: &Element, d: &mut Diag) -> SystemConfig {
    let mut sec = Section::new(el, "<system>");
    if !el.arg.is_empty() {
        d.error(&el.location, "<system> takes no argument");
    }
    let system = SystemConfig {
        root_dir: sec.string("root_dir").map(PathBuf::from),
        log_level: sec.log_level(d, "log_level"),
    };
    sec.finish(d, SYSTEM_UNIMPLEMENTED, SYSTEM_UNIMPLEMENTED_SECTIONS);
    system
}

// ---------------------------------------------------------------------------------------------
// <source>

const SOURCE_TYPES: &[&str] = &["forward", "http"];

const IN_FORWARD_UNIMPLEMENTED: &[&str] = &[
    "linger_timeout",
    "send_keepalive_packet",
    "backlog",
    "blocking_timeout",
];
const IN_HTTP_UNIMPLEMENTED: &[&str] = &[
    "backlog",
    "blocking_timeout",
    "cors_allow_credentials",
    "dump_error_log",
    "add_query_params",
    "format",
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

fn build_source(el: &Element, d: &mut Diag) -> Option<SourceConfig> {
    let mut sec = Section::new(el, "<source>");
    if !el.arg.is_empty() {
        d.error(&el.location, format!("<source> takes no argument (got '{}')", el.arg));
    }
    let common = plugin_common(&mut sec, d);
    if let Some(label) = sec.raw("@label") {
        d.error(
            &label.location,
            "'@label' in <source>: labels are not supported yet by lograft",
        );
    }
    let (ty, ty_location) = plugin_type(&mut sec, d)?;
    let kind = match ty.as_str() {
        "forward" => {
            sec.title = "<source> (in_forward)".into();
            let cfg = forward_input(&mut sec, d);
            sec.finish(d, IN_FORWARD_UNIMPLEMENTED, &[]);
            SourceKind::Forward(cfg)
        }
        "http" => {
            sec.title = "<source> (in_http)".into();
            let cfg = http_input(&mut sec, d);
            sec.finish(d, IN_HTTP_UNIMPLEMENTED, &["parse"]);
            SourceKind::Http(cfg)
        }
        other => {
            d.error(
                &ty_location,
                format!(
                    "unknown source type '{other}'; lograft supports: {}",
                    SOURCE_TYPES.join(", ")
                ),
            );
            return None;
        }
    };
    Some(SourceConfig { common, kind })
}

fn forward_input(sec: &mut Section<'_>, d: &mut Diag) -> ForwardInputConfig {
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
        security,
        tls,
    }
}

/// `<transport tcp>` (nothing to keep) or `<transport tls>` of in_forward.
fn server_transport(el: &Element, d: &mut Diag) -> Option<ServerTlsConfig> {
    let protocol = if el.arg.is_empty() { "tcp" } else { el.arg.as_str() };
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

fn http_input(sec: &mut Section<'_>, d: &mut Diag) -> HttpInputConfig {
    for transport in sec.sections("transport") {
        d.error(
            &transport.location,
            "<transport> in in_http is not supported yet by lograft (it serves plain HTTP only)",
        );
    }
    HttpInputConfig {
        bind: sec.string("bind").unwrap_or_else(|| "0.0.0.0".into()),
        port: sec.integer(d, "port").unwrap_or(9880),
        body_size_limit: sec.size(d, "body_size_limit").unwrap_or(32 << 20),
        keepalive_timeout: sec
            .duration(d, "keepalive_timeout")
            .unwrap_or(Duration::from_secs(10)),
        add_http_headers: sec.bool(d, "add_http_headers", false),
        add_remote_addr: sec.bool(d, "add_remote_addr", false),
        use_204_response: sec.bool(d, "use_204_response", false),
        respond_with_empty_img: sec.bool(d, "respond_with_empty_img", false),
        cors_allow_origins: sec.array(d, "cors_allow_origins").unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------------------------
// <match> and outputs

const OUTPUT_TYPES: &[&str] = &["stdout", "null", "file", "forward"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutputKind {
    Stdout,
    Null,
    File,
    Forward,
}

impl OutputKind {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "stdout" => Some(OutputKind::Stdout),
            "null" => Some(OutputKind::Null),
            "file" => Some(OutputKind::File),
            "forward" => Some(OutputKind::Forward),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            OutputKind::Stdout => "stdout",
            OutputKind::Null => "null",
            OutputKind::File => "file",
            OutputKind::Forward => "forward",
        }
    }

    /// Documented Fluentd parameters of the plugin that lograft ignores.
    fn unimplemented_params(self) -> &'static [&'static str] {
        match self {
            OutputKind::Stdout => &["output_type", "time_as_integer"],
            OutputKind::Null => &["never_flush"],
            OutputKind::File => &[
                "symlink_path",
                "symlink_path_use_relative",
                "recompress",
                "time_as_integer",
            ],
            OutputKind::Forward => &[
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
        }
    }

    fn unimplemented_sections(self) -> &'static [&'static str] {
        match self {
            OutputKind::Stdout | OutputKind::File => &["inject"],
            OutputKind::Null => &[],
            OutputKind::Forward => &["service_discovery"],
        }
    }
}

fn build_match(el: &Element, d: &mut Diag) -> Option<MatchConfig> {
    let patterns: Vec<String> = if el.arg.is_empty() {
        vec!["**".to_string()]
    } else {
        el.arg.split_whitespace().map(str::to_string).collect()
    };
    let mut sec = Section::new(el, format!("<match {}>", el.arg));
    let common = plugin_common(&mut sec, d);
    let (ty, ty_location) = plugin_type(&mut sec, d)?;
    let Some(kind) = OutputKind::parse(&ty) else {
        d.error(
            &ty_location,
            format!(
                "unknown output type '{ty}' in <match {}>; lograft supports: {}",
                el.arg,
                OUTPUT_TYPES.join(", ")
            ),
        );
        return None;
    };
    sec.title = format!("<match {}> (out_{})", el.arg, kind.name());
    let output = build_output(&mut sec, d, kind);
    let buffer = build_buffer(&mut sec, d, kind);
    let secondary = match sec.single_section(d, "secondary") {
        Some(secondary_el) => {
            if buffer.as_ref().is_some_and(|b| b.retry.forever) {
                d.error(
                    &secondary_el.location,
                    format!(
                        "<secondary> and 'retry_forever' are exclusive in {} (retries never run out)",
                        sec.title
                    ),
                );
            }
            build_secondary(secondary_el, d, kind, &sec.title)
        }
        None => None,
    };
    sec.finish(d, kind.unimplemented_params(), kind.unimplemented_sections());
    Some(MatchConfig {
        common,
        patterns,
        output: output?,
        buffer: buffer?,
        secondary,
    })
}

fn build_secondary(
    el: &Element,
    d: &mut Diag,
    primary: OutputKind,
    primary_title: &str,
) -> Option<OutputConfig> {
    let mut sec = Section::new(el, format!("<secondary> of {primary_title}"));
    let _common = plugin_common(&mut sec, d);
    let at = sec.raw("@type");
    let bare = sec.raw("type");
    let kind = match at.or(bare) {
        // Fluentd: a <secondary> without @type uses the primary's type.
        None => primary,
        Some(p) => match OutputKind::parse(&p.value) {
            Some(kind) => kind,
            None => {
                d.error(
                    &p.location,
                    format!(
                        "unknown output type '{}' in <secondary>; lograft supports: {}",
                        p.value,
                        OUTPUT_TYPES.join(", ")
                    ),
                );
                return None;
            }
        },
    };
    sec.title = format!("<secondary> (out_{}) of {primary_title}", kind.name());
    for inner in sec.sections("buffer") {
        d.error(&inner.location, "<secondary> cannot have its own <buffer> section");
    }
    for inner in sec.sections("secondary") {
        d.error(&inner.location, "<secondary> cannot have a <secondary> section");
    }
    let output = build_output(&mut sec, d, kind);
    sec.finish(d, kind.unimplemented_params(), kind.unimplemented_sections());
    output
}

fn build_output(sec: &mut Section<'_>, d: &mut Diag, kind: OutputKind) -> Option<OutputConfig> {
    Some(match kind {
        OutputKind::Stdout => OutputConfig::Stdout(StdoutOutputConfig {
            format: match output_format(sec, d, &["stdout", "json"], "stdout") {
                "json" => StdoutFormat::Json,
                _ => StdoutFormat::Stdout,
            },
        }),
        OutputKind::Null => OutputConfig::Null,
        OutputKind::File => OutputConfig::File(file_output(sec, d)?),
        OutputKind::Forward => OutputConfig::Forward(forward_output(sec, d)?),
    })
}

/// The record format: flat `format NAME` (v0.12) or `<format> @type NAME </format>`.
fn output_format(
    sec: &mut Section<'_>,
    d: &mut Diag,
    allowed: &[&'static str],
    default: &'static str,
) -> &'static str {
    let flat = sec.enumerated(d, "format", allowed);
    let Some(format_el) = sec.single_section(d, "format") else {
        return flat.unwrap_or(default);
    };
    let mut fsec = Section::new(format_el, format!("<format> of {}", sec.title));
    let _ = plugin_common(&mut fsec, d);
    let ty_param = fsec.raw("@type").or_else(|| fsec.raw("type"));
    let chosen = match ty_param {
        None => default,
        Some(p) => match value::parse_enum(&p.value, allowed) {
            Ok(v) => v,
            Err(e) => {
                d.error(&p.location, format!("'@type' in {}: {e}", fsec.title));
                default
            }
        },
    };
    if let Some(flat_param) = sec.el.param("format") {
        d.error(
            &flat_param.location,
            format!(
                "'format' and a <format> section (line {}) are both given in {}; keep one",
                format_el.location.line, sec.title
            ),
        );
    }
    fsec.finish(
        d,
        &[
            "output_type",
            "output_tag",
            "output_time",
            "time_format",
            "time_type",
            "localtime",
            "utc",
            "timezone",
            "delimiter",
            "add_newline",
            "include_time_key",
            "include_tag_key",
            "time_key",
            "tag_key",
            "keep_time_key",
            "json_parser",
        ],
        &[],
    );
    chosen
}

fn compression(sec: &mut Section<'_>, d: &mut Diag, allowed: &[&'static str]) -> Compression {
    match sec.enumerated(d, "compress", allowed) {
        Some("gzip" | "gz") => Compression::Gzip,
        _ => Compression::Text,
    }
}

fn file_output(sec: &mut Section<'_>, d: &mut Diag) -> Option<FileOutputConfig> {
    let path = sec.required_string(d, "path");
    let cfg = FileOutputConfig {
        path: path.clone().unwrap_or_default(),
        append: sec.bool(d, "append", false),
        compress: compression(sec, d, &["text", "gz", "gzip"]),
        add_path_suffix: sec.bool(d, "add_path_suffix", true),
        path_suffix: sec.string("path_suffix").unwrap_or_else(|| ".log".into()),
        format: match output_format(sec, d, &["out_file", "json"], "out_file") {
            "json" => FileFormat::Json,
            _ => FileFormat::OutFile,
        },
    };
    path.map(|_| cfg)
}

fn forward_output(sec: &mut Section<'_>, d: &mut Diag) -> Option<ForwardOutputConfig> {
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
    let heartbeat_type = match sec.enumerated(d, "heartbeat_type", &["transport", "tcp", "udp", "none"]) {
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
                format!("'dns_round_robin' cannot be used with 'heartbeat_type udp' in {}", sec.title),
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
        send_timeout: sec.duration(d, "send_timeout").unwrap_or(Duration::from_secs(60)),
        connect_timeout: sec.duration(d, "connect_timeout"),
        heartbeat_type,
        heartbeat_interval: sec
            .duration(d, "heartbeat_interval")
            .unwrap_or(Duration::from_secs(1)),
        recover_wait: sec.duration(d, "recover_wait").unwrap_or(Duration::from_secs(10)),
        hard_timeout: sec.duration(d, "hard_timeout").unwrap_or(Duration::from_secs(60)),
        phi_failure_detector: sec.bool(d, "phi_failure_detector", true),
        phi_threshold: sec.float(d, "phi_threshold").unwrap_or(16.0),
        require_ack_response: sec.bool(d, "require_ack_response", true),
        ack_response_timeout,
        expire_dns_cache: sec.duration(d, "expire_dns_cache"),
        dns_round_robin,
        compress: compression(sec, d, &["text", "gzip"]),
        keepalive: sec.bool(d, "keepalive", false),
        keepalive_timeout: sec.duration(d, "keepalive_timeout"),
        verify_connection_at_startup: sec.bool(d, "verify_connection_at_startup", false),
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
        d.error(&el.location, format!("<server> takes no argument (got '{}')", el.arg));
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

// ---------------------------------------------------------------------------------------------
// Buffers: the <buffer> section and the flat spellings inside <match>.

/// Buffer parameters lograft implements (v1 names, as inside `<buffer>`).
const BUFFER_IMPLEMENTED: &[&str] = &[
    "@type",
    "type",
    "path",
    "timekey",
    "timekey_wait",
    "timekey_use_utc",
    "chunk_limit_size",
    "chunk_limit_records",
    "total_limit_size",
    "queue_limit_length",
    "flush_mode",
    "flush_interval",
    "flush_thread_count",
    "flush_at_shutdown",
    "overflow_action",
    "compress",
    "retry_type",
    "retry_wait",
    "retry_exponential_backoff_base",
    "retry_max_interval",
    "retry_randomize",
    "retry_timeout",
    "retry_max_times",
    "retry_forever",
    "retry_secondary_threshold",
];

/// Documented buffer parameters lograft ignores (with a warning).
const BUFFER_UNIMPLEMENTED: &[&str] = &[
    "chunk_full_threshold",
    "queued_chunks_limit_size",
    "flush_thread_interval",
    "flush_thread_burst_interval",
    "delayed_commit_timeout",
    "timekey_zone",
    "disable_chunk_backup",
    "path_suffix",
    "chunk_format",
    "file_permission",
    "dir_permission",
];

/// v1 buffer names that cannot be written flat in `<match>` because the output itself has a
/// parameter of that name (`path`, `compress`, ...).
const NOT_FLAT: &[&str] = &[
    "@type",
    "type",
    "path",
    "compress",
    "path_suffix",
    "file_permission",
    "dir_permission",
];

/// v0.12 flat spellings → v1 `<buffer>` names (Fluentd's compat layer).
const LEGACY_BUFFER: &[(&str, &str)] = &[
    ("buffer_type", "@type"),
    ("buffer_path", "path"),
    ("num_threads", "flush_thread_count"),
    ("try_flush_interval", "flush_thread_interval"),
    ("queued_chunk_flush_interval", "flush_thread_burst_interval"),
    ("disable_retry_limit", "retry_forever"),
    ("retry_limit", "retry_max_times"),
    ("max_retry_wait", "retry_max_interval"),
    ("buffer_chunk_limit", "chunk_limit_size"),
    ("buffer_queue_limit", "queue_limit_length"),
    ("buffer_queue_full_action", "overflow_action"),
];

/// v0.12 out_file spellings that become buffer time settings.
const FILE_TIME_SLICE: &[&str] = &["time_slice_format", "time_slice_wait", "utc", "localtime", "timezone"];

/// Collects the effective buffer parameters: the `<buffer>` section's own, plus flat ones from
/// `<match>` renamed to their v1 names. Returns the merged element, the flat v1 names given, and
/// the user's spellings.
fn merge_buffer_params(
    sec: &mut Section<'_>,
    d: &mut Diag,
    kind: OutputKind,
    section: Option<&Element>,
) -> (Element, Vec<String>, Vec<(String, String)>) {
    let mut merged = section
        .cloned()
        .unwrap_or_else(|| Element::new("buffer", "", sec.el.location.clone()));
    merged.children.clear();
    let mut flat_names = Vec::new();
    let mut written_as: Vec<(String, String)> = Vec::new();

    // Register every flat spelling as known on <match>, whether given or not.
    for (legacy, _) in LEGACY_BUFFER {
        sec.known_params.push(legacy);
    }
    for name in BUFFER_IMPLEMENTED.iter().chain(BUFFER_UNIMPLEMENTED) {
        if !NOT_FLAT.contains(name) {
            sec.known_params.push(name);
        }
    }
    if kind == OutputKind::File {
        sec.known_params.extend_from_slice(FILE_TIME_SLICE);
    }

    let mut seen: Vec<(String, String, usize)> = Vec::new(); // (v1, written, line)
    for p in &sec.el.params {
        let (v1, value): (String, String) = if let Some((_, v1)) =
            LEGACY_BUFFER.iter().find(|(legacy, _)| *legacy == p.key)
        {
            let value = if p.key == "buffer_queue_full_action" && p.value.trim() == "exception" {
                "throw_exception".to_string()
            } else {
                p.value.clone()
            };
            (v1.to_string(), value)
        } else if (BUFFER_IMPLEMENTED.contains(&p.key.as_str())
            || BUFFER_UNIMPLEMENTED.contains(&p.key.as_str()))
            && !NOT_FLAT.contains(&p.key.as_str())
        {
            (p.key.clone(), p.value.clone())
        } else if kind == OutputKind::File && FILE_TIME_SLICE.contains(&p.key.as_str()) {
            match file_time_slice(p, d) {
                Some(pair) => pair,
                None => continue,
            }
        } else {
            continue;
        };
        if let Some(in_section) = section.and_then(|s| s.param(&v1)) {
            d.error(
                &p.location,
                format!(
                    "'{}' in {} sets the same buffer parameter as '{}' in <buffer> (line {}); set it in one place",
                    p.key, sec.title, v1, in_section.location.line
                ),
            );
            continue;
        }
        if let Some((_, other, line)) = seen.iter().find(|(seen_v1, written, _)| *seen_v1 == v1 && *written != p.key) {
            d.error(
                &p.location,
                format!(
                    "'{}' in {} sets the same buffer parameter as '{other}' (line {line}); keep one",
                    p.key, sec.title
                ),
            );
            continue;
        }
        seen.push((v1.clone(), p.key.clone(), p.location.line));
        if v1 != p.key {
            written_as.push((v1.clone(), p.key.clone()));
        }
        flat_names.push(v1.clone());
        merged.params.push(Param {
            key: v1,
            value,
            location: p.location.clone(),
        });
    }
    (merged, flat_names, written_as)
}

/// out_file's v0.12 `time_slice_format`, `time_slice_wait`, `utc`, `localtime`, `timezone` as
/// buffer parameters (v1 name, value).
fn file_time_slice(p: &Param, d: &mut Diag) -> Option<(String, String)> {
    match p.key.as_str() {
        "time_slice_format" => {
            let f = p.value.as_str();
            let seconds = if f.contains("%S") {
                1
            } else if f.contains("%M") {
                60
            } else if f.contains("%H") {
                3600
            } else if f.contains("%d") {
                86400
            } else {
                d.error(
                    &p.location,
                    format!(
                        "'time_slice_format' '{f}' has no %d, %H, %M or %S placeholder to derive the time slice from"
                    ),
                );
                return None;
            };
            Some(("timekey".into(), seconds.to_string()))
        }
        "time_slice_wait" => Some(("timekey_wait".into(), p.value.clone())),
        "utc" | "localtime" => match value::parse_bool(&p.value) {
            Ok(b) => {
                let utc = if p.key == "utc" { b } else { !b };
                Some(("timekey_use_utc".into(), utc.to_string()))
            }
            Err(e) => {
                d.error(&p.location, format!("'{}': {e}", p.key));
                None
            }
        },
        _ => Some(("timekey_zone".into(), p.value.clone())),
    }
}

/// Fluentd's per-plugin buffer defaults: (chunk keys, timekey, flush_at_shutdown, chunk_limit).
struct PluginBufferDefaults {
    chunk_keys: &'static [&'static str],
    timekey: Option<Duration>,
    flush_at_shutdown: Option<bool>,
    chunk_limit_size: Option<u64>,
}

fn plugin_buffer_defaults(kind: OutputKind) -> PluginBufferDefaults {
    match kind {
        OutputKind::Forward => PluginBufferDefaults {
            chunk_keys: &["tag"],
            timekey: None,
            flush_at_shutdown: None,
            chunk_limit_size: None,
        },
        OutputKind::File => PluginBufferDefaults {
            chunk_keys: &["time"],
            timekey: Some(Duration::from_secs(86400)),
            flush_at_shutdown: None,
            chunk_limit_size: None,
        },
        OutputKind::Stdout | OutputKind::Null => PluginBufferDefaults {
            chunk_keys: &["tag"],
            timekey: None,
            flush_at_shutdown: Some(true),
            chunk_limit_size: Some(10 * 1024),
        },
    }
}

fn build_buffer(sec: &mut Section<'_>, d: &mut Diag, kind: OutputKind) -> Option<BufferConfig> {
    let section = sec.single_section(d, "buffer");
    let (merged, flat_names, written_as) = merge_buffer_params(sec, d, kind, section);
    let arg_title = if merged.arg.is_empty() {
        String::new()
    } else {
        format!(" {}", merged.arg)
    };
    let mut bsec = Section::new(&merged, format!("<buffer{arg_title}> of {}", sec.title));
    bsec.written_as = written_as;
    let plugin_defaults = plugin_buffer_defaults(kind);
    let error_count = d.errors.len();

    // Kind and path.
    let ty = match bsec.enumerated(d, "@type", &["file", "memory"]) {
        Some(t) => Some(t),
        None => bsec.enumerated(d, "type", &["file", "memory"]),
    };
    let path_param = bsec.raw("path");
    let buffer_kind = match ty {
        Some("memory") => {
            if let Some(p) = path_param {
                d.error(
                    &p.location,
                    format!("'{}' in {} only applies to file buffers", bsec.shown("path"), bsec.title),
                );
            }
            BufferKind::Memory
        }
        _ => BufferKind::File {
            path: path_param.map(|p| PathBuf::from(&p.value)),
        },
    };
    let mut cfg = BufferConfig::defaults(buffer_kind);
    if let Some(flush) = plugin_defaults.flush_at_shutdown {
        cfg.flush_at_shutdown = flush;
    }
    if let Some(limit) = plugin_defaults.chunk_limit_size {
        cfg.chunk_limit_size = limit;
    }

    // Chunk keys.
    let chunk_keys: Vec<String> = if merged.arg.trim().is_empty() {
        plugin_defaults.chunk_keys.iter().map(|k| k.to_string()).collect()
    } else {
        merged
            .arg
            .split(',')
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .collect()
    };
    for key in &chunk_keys {
        if key != "tag" && key != "time" {
            d.error(
                &merged.location,
                format!(
                    "chunk key '{key}' in {} is not supported: lograft chunks by 'tag' and 'time' only",
                    bsec.title
                ),
            );
        }
    }
    cfg.chunk_by_tag = chunk_keys.iter().any(|k| k == "tag");
    let by_time = chunk_keys.iter().any(|k| k == "time");
    if kind == OutputKind::Forward && !cfg.chunk_by_tag {
        d.error(
            &merged.location,
            format!("the buffer chunk keys of {} must include 'tag' (out_forward sends one tag per chunk)", sec.title),
        );
    }
    let timekey = bsec.duration(d, "timekey").or(plugin_defaults.timekey);
    if by_time {
        match timekey {
            None => d.error(
                &merged.location,
                format!("'timekey' is required in {} because 'time' is a chunk key", bsec.title),
            ),
            Some(t) if t.is_zero() => {
                if let Some(p) = merged.param("timekey") {
                    d.error(&p.location, format!("'{}' in {} must be greater than 0", bsec.shown("timekey"), bsec.title));
                }
            }
            Some(_) => cfg.timekey = timekey,
        }
    } else if let Some(p) = merged.param("timekey") {
        d.warn(
            &p.location,
            format!(
                "'{}' in {} has no effect because 'time' is not a chunk key (write <buffer tag,time>)",
                bsec.shown("timekey"),
                bsec.title
            ),
        );
    }
    if let Some(wait) = bsec.duration(d, "timekey_wait") {
        cfg.timekey_wait = wait;
    }
    cfg.timekey_use_utc = bsec.bool(d, "timekey_use_utc", false);

    // Sizes.
    if let Some(size) = bsec.size(d, "chunk_limit_size") {
        if bsec.check_min(d, "chunk_limit_size", size, 1) {
            cfg.chunk_limit_size = size;
        }
    }
    cfg.chunk_limit_records = bsec.integer(d, "chunk_limit_records");
    let total = bsec.size(d, "total_limit_size");
    let queue_limit: Option<u64> = bsec.integer(d, "queue_limit_length");
    match (total, queue_limit) {
        (Some(_), Some(_)) => {
            if let Some(p) = merged.param("queue_limit_length") {
                d.error(
                    &p.location,
                    format!(
                        "'{}' and 'total_limit_size' both set the buffer's total size in {}; keep one",
                        bsec.shown("queue_limit_length"),
                        bsec.title
                    ),
                );
            }
        }
        (Some(total), None) => cfg.total_limit_size = total,
        (None, Some(queue)) => match cfg.chunk_limit_size.checked_mul(queue) {
            Some(total) => cfg.total_limit_size = total,
            None => {
                if let Some(p) = merged.param("queue_limit_length") {
                    d.error(&p.location, format!("'{}' in {} is too large", bsec.shown("queue_limit_length"), bsec.title));
                }
            }
        },
        (None, None) => {}
    }

    // Flushing.
    let flush_mode_given = bsec.enumerated(d, "flush_mode", &["default", "lazy", "interval", "immediate"]);
    let flat_flush_interval = flat_names.iter().any(|n| n == "flush_interval");
    cfg.flush_mode = match flush_mode_given {
        Some("lazy") => FlushMode::Lazy,
        Some("interval") => FlushMode::Interval,
        Some("immediate") => FlushMode::Immediate,
        // `default`: Fluentd keeps interval when flush_interval is written outside <buffer>.
        _ if flat_flush_interval => FlushMode::Interval,
        _ if cfg.timekey.is_some() => FlushMode::Lazy,
        _ => FlushMode::Interval,
    };
    if let Some(interval) = bsec.duration(d, "flush_interval") {
        cfg.flush_interval = interval;
    }
    if cfg.flush_mode != FlushMode::Interval {
        if let Some(p) = section.and_then(|s| s.param("flush_interval")) {
            let mode = format!("{:?}", cfg.flush_mode).to_lowercase();
            if matches!(flush_mode_given, Some("lazy" | "immediate")) {
                d.error(
                    &p.location,
                    format!("'flush_interval' in {} cannot be used with 'flush_mode {mode}'", bsec.title),
                );
            } else {
                d.warn(
                    &p.location,
                    format!(
                        "'flush_interval' in {} is ignored because flush_mode resolves to '{mode}' ('time' is a chunk key); write 'flush_mode interval' to use it",
                        bsec.title
                    ),
                );
            }
        }
    }
    if let Some(threads) = bsec.integer::<usize>(d, "flush_thread_count") {
        if bsec.check_min(d, "flush_thread_count", threads, 1) {
            cfg.flush_thread_count = threads;
        }
    }
    if let Some(flush) = bsec.typed(d, "flush_at_shutdown", value::parse_bool) {
        cfg.flush_at_shutdown = flush;
    }
    cfg.overflow_action = match bsec.enumerated(d, "overflow_action", &["throw_exception", "block", "drop_oldest_chunk"]) {
        Some("block") => OverflowAction::Block,
        Some("drop_oldest_chunk") => OverflowAction::DropOldestChunk,
        _ => OverflowAction::ThrowException,
    };
    cfg.compress = compression(&mut bsec, d, &["text", "gzip"]);

    // Retries.
    let retry = &mut cfg.retry;
    if let Some("periodic") = bsec.enumerated(d, "retry_type", &["exponential_backoff", "periodic"]) {
        retry.retry_type = RetryType::Periodic;
    }
    if let Some(wait) = bsec.duration(d, "retry_wait") {
        retry.wait = wait;
    }
    if let Some(base) = bsec.float(d, "retry_exponential_backoff_base") {
        if bsec.check_min(d, "retry_exponential_backoff_base", base, 1.0) {
            retry.exponential_backoff_base = base;
        }
    }
    retry.max_interval = bsec.duration(d, "retry_max_interval");
    retry.randomize = bsec.bool(d, "retry_randomize", true);
    if let Some(timeout) = bsec.duration(d, "retry_timeout") {
        retry.timeout = timeout;
    }
    retry.max_times = bsec.integer(d, "retry_max_times");
    retry.forever = bsec.bool(d, "retry_forever", false);
    if let Some(threshold) = bsec.float(d, "retry_secondary_threshold") {
        if threshold > 0.0 && threshold <= 1.0 {
            retry.secondary_threshold = threshold;
        } else if let Some(p) = merged.param("retry_secondary_threshold") {
            d.error(
                &p.location,
                format!("'retry_secondary_threshold' in {} must be greater than 0 and at most 1, got {threshold}", bsec.title),
            );
        }
    }

    bsec.finish(d, BUFFER_UNIMPLEMENTED, &[]);
    if let Some(section) = section {
        for child in &section.children {
            d.error(
                &child.location,
                format!("unknown section <{}> in {}", child.name, sec.title.replace("<match", "<buffer> of <match")),
            );
        }
    }
    (d.errors.len() == error_count).then_some(cfg)
}

// ---------------------------------------------------------------------------------------------
// Summary for `lograft check-config`.

fn format_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if d.subsec_nanos() != 0 {
        return format!("{secs}s");
    }
    let whole = d.as_secs();
    if whole != 0 && whole % 86400 == 0 {
        format!("{}d", whole / 86400)
    } else if whole != 0 && whole % 3600 == 0 {
        format!("{}h", whole / 3600)
    } else if whole != 0 && whole % 60 == 0 {
        format!("{}m", whole / 60)
    } else {
        format!("{whole}s")
    }
}

fn describe_output(out: &OutputConfig) -> String {
    match out {
        OutputConfig::Stdout(s) => format!("stdout ({})", if s.format == StdoutFormat::Json { "json" } else { "stdout format" }),
        OutputConfig::Null => "null".into(),
        OutputConfig::File(f) => format!(
            "file path={}{}",
            f.path,
            if f.compress == Compression::Gzip { " gzip" } else { "" }
        ),
        OutputConfig::Forward(f) => {
            let mut s = format!(
                "forward ({}{}, require_ack_response={})",
                if f.transport == Transport::Tls { "tls" } else { "tcp" },
                if f.compress == Compression::Gzip { ", gzip" } else { "" },
                f.require_ack_response
            );
            for server in &f.servers {
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
}

/// A short human summary of sources and matches, printed by `lograft check-config`.
pub fn summary(cfg: &Config) -> String {
    let mut out = String::new();
    let id = |common: &PluginCommon| {
        common
            .id
            .as_ref()
            .map(|id| format!(" @id={id}"))
            .unwrap_or_default()
    };
    out.push_str(&format!("sources: {}\n", cfg.sources.len()));
    for source in &cfg.sources {
        match &source.kind {
            SourceKind::Forward(f) => out.push_str(&format!(
                "  forward {}:{}{}{}{}\n",
                f.bind,
                f.port,
                if f.tls.is_some() { " tls" } else { "" },
                if f.security.is_some() { " shared_key" } else { "" },
                id(&source.common)
            )),
            SourceKind::Http(h) => out.push_str(&format!(
                "  http {}:{}{}\n",
                h.bind,
                h.port,
                id(&source.common)
            )),
        }
    }
    out.push_str(&format!("matches: {}\n", cfg.matches.len()));
    for m in &cfg.matches {
        out.push_str(&format!("  <match {}>{}\n", m.patterns.join(" "), id(&m.common)));
        out.push_str(&format!("    output: {}\n", describe_output(&m.output)));
        let b = &m.buffer;
        let kind = match &b.kind {
            BufferKind::File { path: Some(p) } => format!("file {}", p.display()),
            BufferKind::File { path: None } => "file (default path)".into(),
            BufferKind::Memory => "memory".into(),
        };
        let mode = match b.flush_mode {
            FlushMode::Interval => format!("flush_interval {}", format_duration(b.flush_interval)),
            FlushMode::Lazy => "flush_mode lazy".into(),
            FlushMode::Immediate => "flush_mode immediate".into(),
        };
        let timekey = b
            .timekey
            .map(|t| format!(", timekey {}", format_duration(t)))
            .unwrap_or_default();
        out.push_str(&format!("    buffer: {kind}, {mode}{timekey}\n"));
        if let Some(secondary) = &m.secondary {
            out.push_str(&format!("    secondary: {}\n", describe_output(secondary)));
        }
    }
    out
}
