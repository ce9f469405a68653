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
    let loaded = build(&root)?;
    tracing::debug!(
        path = %path.display(),
        sources = loaded.config.sources.len(),
        matches = loaded.config.matches.len(),
        warnings = loaded.warnings.len(),
        "config loaded"
    );
    Ok(loaded)
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
    let mut cluster_seen: Option<&Location> = None;
    for child in &root.children {
        match child.name.as_str() {
            "cluster" => {
                if let Some(first) = cluster_seen {
                    d.error(
                        &child.location,
                        format!("<cluster> is given more than once (first at {first}); only one is allowed"),
                    );
                } else {
                    cluster_seen = Some(&child.location);
                    config.cluster = build_cluster(child, &mut d);
                }
            }
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
                    "<{}> is not supported yet by lograft (supported directives: <source>, <match>, <system>, <cluster>)",
                    child.name
                ),
            ),
            other => d.error(
                &child.location,
                format!(
                    "unknown directive <{other}>{}; lograft knows <source>, <match>, <system>, <cluster>",
                    did_you_mean(other, &["source", "match", "system", "cluster", "filter", "label"])
                        .map(|s| format!(" (did you mean <{s}>?)"))
                        .unwrap_or_default()
                ),
            ),
        }
    }
    sort_by_position(&mut d.errors);
    sort_by_position(&mut d.warnings);
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

/// Orders diagnostics by line within each file, files in order of first mention (stable).
fn sort_by_position(list: &mut [ConfigError]) {
    let mut files: Vec<PathBuf> = Vec::new();
    for e in list.iter() {
        if !files.contains(&e.location.file) {
            files.push(e.location.file.clone());
        }
    }
    list.sort_by_key(|e| {
        let file_rank = files.iter().position(|f| *f == e.location.file);
        (file_rank, e.location.line)
    });
}

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
        self.enumerated(
            d,
            key,
            &["trace", "debug", "info", "warn", "error", "fatal"],
        )
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
                format!(
                    "'{}' in {} must be at least {min}, got {got}",
                    self.shown(key),
                    self.title
                ),
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
                format!(
                    "unknown section <{}> in {}{known}{hint}",
                    child.name, self.title
                ),
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
                d.error(
                    &p.location,
                    format!("'@type' in {} has no value", sec.title),
                );
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
const SYSTEM_UNIMPLEMENTED_SECTIONS: &[&str] = &[
    "log",
    "counter_server",
    "counter_client",
    "metrics",
    "source_only_buffer",
];

fn build_system(el: &Element, d: &mut Diag) -> SystemConfig {
    let mut sec = Section::new(el, "<system>");
    if !el.arg.is_empty() {
        d.error(&el.location, "<system> takes no argument");
    }
    let system = SystemConfig {
        root_dir: sec.string("root_dir").map(PathBuf::from),
        log_level: sec.log_level(d, "log_level"),
        max_in_flight_bytes: sec.size(d, "max_in_flight_bytes"),
    };
    if let Some(v) = system.max_in_flight_bytes {
        if v < crate::input::budget::MIN_IN_FLIGHT_BYTES {
            let at = sec
                .el
                .param("max_in_flight_bytes")
                .map(|p| p.location.clone())
                .unwrap_or_default();
            d.error(
                &at,
                "'max_in_flight_bytes' in <system>: must be at least 1m".to_string(),
            );
        }
    }
    sec.finish(d, SYSTEM_UNIMPLEMENTED, SYSTEM_UNIMPLEMENTED_SECTIONS);
    system
}

// ---------------------------------------------------------------------------------------------
// <cluster>

fn build_cluster(el: &Element, d: &mut Diag) -> Option<ClusterConfig> {
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
        heartbeat_interval: sec
            .duration(d, "heartbeat_interval")
            .unwrap_or(Duration::from_millis(100)),
        election_timeout: sec
            .duration(d, "election_timeout")
            .unwrap_or(Duration::from_millis(500)),
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

/// `host:port` with a numeric port.
fn is_host_port(s: &str) -> bool {
    matches!(s.rsplit_once(':'), Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok())
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
        d.error(
            &el.location,
            format!("<source> takes no argument (got '{}')", el.arg),
        );
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

fn http_input(sec: &mut Section<'_>, d: &mut Diag) -> HttpInputConfig {
    for transport in sec.sections("transport") {
        d.error(
            &transport.location,
            "<transport> in in_http is not supported yet by lograft (it serves plain HTTP only)",
        );
    }
    HttpInputConfig {
        bind: sec.string("bind").unwrap_or_else(|| "0.0.0.0".into()),
        port: sec.integer(d, "port").unwrap_or(8888),
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

const OUTPUT_TYPES: &[&str] = &["stdout", "null", "file", "forward", "s3"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutputKind {
    Stdout,
    Null,
    File,
    Forward,
    S3,
}

impl OutputKind {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "stdout" => Some(OutputKind::Stdout),
            "null" => Some(OutputKind::Null),
            "file" => Some(OutputKind::File),
            "forward" => Some(OutputKind::Forward),
            "s3" => Some(OutputKind::S3),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            OutputKind::Stdout => "stdout",
            OutputKind::Null => "null",
            OutputKind::File => "file",
            OutputKind::Forward => "forward",
            OutputKind::S3 => "s3",
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
            OutputKind::S3 => &[
                "s3_object_key_format",
                "store_as",
                "use_server_side_encryption",
                "ssekms_key_id",
                "storage_class",
                "acl",
                "check_bucket",
                "check_object",
                "auto_create_bucket",
                "time_slice_format",
                "hex_random_length",
                "index_format",
                "s3_metadata",
            ],
        }
    }

    fn unimplemented_sections(self) -> &'static [&'static str] {
        match self {
            OutputKind::Stdout | OutputKind::File => &["inject"],
            OutputKind::Null => &[],
            OutputKind::Forward => &["service_discovery"],
            OutputKind::S3 => &[
                "inject",
                "assume_role_credentials",
                "instance_profile_credentials",
            ],
        }
    }
}

/// `<match PATTERN> (out_TYPE)` for messages.
fn match_title(arg: &str, kind: Option<OutputKind>) -> String {
    let tag = if arg.is_empty() {
        "<match>".to_string()
    } else {
        format!("<match {arg}>")
    };
    match kind {
        Some(kind) => format!("{tag} (out_{})", kind.name()),
        None => tag,
    }
}

fn build_match(el: &Element, d: &mut Diag) -> Option<MatchConfig> {
    let patterns: Vec<String> = if el.arg.is_empty() {
        vec!["**".to_string()]
    } else {
        el.arg.split_whitespace().map(str::to_string).collect()
    };
    let mut sec = Section::new(el, match_title(&el.arg, None));
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
    sec.title = match_title(&el.arg, Some(kind));
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
    sec.finish(
        d,
        kind.unimplemented_params(),
        kind.unimplemented_sections(),
    );
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
        d.error(
            &inner.location,
            "<secondary> cannot have its own <buffer> section",
        );
    }
    for inner in sec.sections("secondary") {
        d.error(
            &inner.location,
            "<secondary> cannot have a <secondary> section",
        );
    }
    let output = build_output(&mut sec, d, kind);
    sec.finish(
        d,
        kind.unimplemented_params(),
        kind.unimplemented_sections(),
    );
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
        OutputKind::S3 => OutputConfig::S3(s3_output(sec, d)?),
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

/// fluent-plugin-s3's parameter names; credentials may also come from the `AWS_*` environment.
fn s3_output(sec: &mut Section<'_>, d: &mut Diag) -> Option<S3OutputConfig> {
    let bucket = sec.required_string(d, "s3_bucket");
    let cfg = S3OutputConfig {
        bucket: bucket.clone().unwrap_or_default(),
        region: sec.string("s3_region"),
        endpoint: sec.string("s3_endpoint"),
        prefix: sec.string("path").unwrap_or_default(),
        access_key_id: sec.string("aws_key_id"),
        secret_access_key: sec.string("aws_sec_key"),
        force_path_style: sec.bool(d, "force_path_style", false),
    };
    bucket.map(|_| cfg)
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
const FILE_TIME_SLICE: &[&str] = &[
    "time_slice_format",
    "time_slice_wait",
    "utc",
    "localtime",
    "timezone",
];

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
        if let Some((_, other, line)) = seen
            .iter()
            .find(|(seen_v1, written, _)| *seen_v1 == v1 && *written != p.key)
        {
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
        OutputKind::S3 => PluginBufferDefaults {
            chunk_keys: &["time"],
            timekey: Some(Duration::from_secs(3600)),
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
                    format!(
                        "'{}' in {} only applies to file buffers",
                        bsec.shown("path"),
                        bsec.title
                    ),
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
        plugin_defaults
            .chunk_keys
            .iter()
            .map(|k| k.to_string())
            .collect()
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
                format!(
                    "'timekey' is required in {} because 'time' is a chunk key",
                    bsec.title
                ),
            ),
            Some(t) if t.is_zero() => {
                if let Some(p) = merged.param("timekey") {
                    d.error(
                        &p.location,
                        format!(
                            "'{}' in {} must be greater than 0",
                            bsec.shown("timekey"),
                            bsec.title
                        ),
                    );
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
                    d.error(
                        &p.location,
                        format!(
                            "'{}' in {} is too large",
                            bsec.shown("queue_limit_length"),
                            bsec.title
                        ),
                    );
                }
            }
        },
        (None, None) => {}
    }

    // Flushing.
    let flush_mode_given = bsec.enumerated(
        d,
        "flush_mode",
        &["default", "lazy", "interval", "immediate"],
    );
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
                    format!(
                        "'flush_interval' in {} cannot be used with 'flush_mode {mode}'",
                        bsec.title
                    ),
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
    cfg.overflow_action = match bsec.enumerated(
        d,
        "overflow_action",
        &["throw_exception", "block", "drop_oldest_chunk"],
    ) {
        Some("block") => OverflowAction::Block,
        Some("drop_oldest_chunk") => OverflowAction::DropOldestChunk,
        _ => OverflowAction::ThrowException,
    };
    cfg.compress = compression(&mut bsec, d, &["text", "gzip"]);
    if cfg.compress == Compression::Gzip {
        if let Some(p) = bsec.raw("compress") {
            d.warn(
                &p.location,
                format!(
                    "'compress gzip' in {} is accepted but not implemented by lograft yet; \
                     chunks are stored uncompressed",
                    bsec.title
                ),
            );
        }
    }

    // Retries.
    let retry = &mut cfg.retry;
    if let Some("periodic") = bsec.enumerated(d, "retry_type", &["exponential_backoff", "periodic"])
    {
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
    if whole != 0 && whole.is_multiple_of(86400) {
        format!("{}d", whole / 86400)
    } else if whole != 0 && whole.is_multiple_of(3600) {
        format!("{}h", whole / 3600)
    } else {
        format!("{whole}s")
    }
}

fn describe_output(out: &OutputConfig) -> String {
    match out {
        OutputConfig::Stdout(s) => format!(
            "stdout ({})",
            if s.format == StdoutFormat::Json {
                "json"
            } else {
                "stdout format"
            }
        ),
        OutputConfig::Null => "null".into(),
        OutputConfig::File(f) => format!(
            "file path={}{}",
            f.path,
            if f.compress == Compression::Gzip {
                " gzip"
            } else {
                ""
            }
        ),
        OutputConfig::S3(c) => format!(
            "s3 bucket={}{}{}",
            c.bucket,
            c.endpoint
                .as_deref()
                .map(|e| format!(" endpoint={e}"))
                .unwrap_or_default(),
            if c.prefix.is_empty() {
                String::new()
            } else {
                format!(" path={}", c.prefix)
            }
        ),
        OutputConfig::Forward(f) => {
            let mut s = format!(
                "forward ({}{}, require_ack_response={})",
                if f.transport == Transport::Tls {
                    "tls"
                } else {
                    "tcp"
                },
                if f.compress == Compression::Gzip {
                    ", gzip"
                } else {
                    ""
                },
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
    if let Some(c) = &cfg.cluster {
        let members: Vec<String> = c
            .members
            .iter()
            .map(|m| format!("{}={}", m.id, m.address))
            .collect();
        out.push_str(&format!(
            "cluster: node {} at {}{}\n",
            c.node_id,
            c.address,
            match (&c.join, members.is_empty()) {
                (Some(j), _) => format!(", joining via {j}"),
                (None, false) => format!(", initial members {}", members.join(" ")),
                (None, true) => String::new(),
            }
        ));
    }
    out.push_str(&format!("sources: {}\n", cfg.sources.len()));
    for source in &cfg.sources {
        match &source.kind {
            SourceKind::Forward(f) => out.push_str(&format!(
                "  forward {}:{}{}{}{}\n",
                f.bind,
                f.port,
                if f.tls.is_some() { " tls" } else { "" },
                if f.security.is_some() {
                    " shared_key"
                } else {
                    ""
                },
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
        out.push_str(&format!(
            "  <match {}>{}\n",
            m.patterns.join(" "),
            id(&m.common)
        ));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config")
            .join(name)
    }

    fn ok(text: &str) -> Loaded {
        load_str(text, Path::new("/etc/lograft/test.conf")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn errors(text: &str) -> String {
        load_str(text, Path::new("/etc/lograft/test.conf"))
            .expect_err("expected config errors")
            .to_string()
    }

    fn forward_out(m: &MatchConfig) -> &ForwardOutputConfig {
        match &m.output {
            OutputConfig::Forward(f) => f,
            other => panic!("expected forward output, got {other:?}"),
        }
    }

    fn warning_text(loaded: &Loaded) -> String {
        loaded
            .warnings
            .iter()
            .map(|w| w.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn out_forward_max_frame_size_defaults_to_4m_and_0_means_whole_chunks() {
        let conf = |extra: &str| {
            format!(
                "<match **>\n  @type forward\n  {extra}\n  <server>\n    host 127.0.0.1\n  </server>\n</match>\n"
            )
        };
        let loaded = ok(&conf(""));
        assert_eq!(
            forward_out(&loaded.config.matches[0]).max_frame_size,
            4 << 20
        );
        let loaded = ok(&conf("max_frame_size 6m"));
        assert_eq!(
            forward_out(&loaded.config.matches[0]).max_frame_size,
            6 << 20
        );
        let loaded = ok(&conf("max_frame_size 0"));
        assert_eq!(forward_out(&loaded.config.matches[0]).max_frame_size, 0);
        assert!(errors(&conf("max_frame_size huge")).contains("max_frame_size"));
    }

    #[test]
    fn input_limits_parse_with_defaults() {
        let cfg =
            ok("<source>\n  @type forward\n</source>\n<match **>\n  @type null\n</match>\n").config;
        assert_eq!(cfg.system.max_in_flight_bytes, None);
        match &cfg.sources[0].kind {
            SourceKind::Forward(f) => {
                assert_eq!(f.max_connections, 16384);
                assert_eq!(f.idle_timeout, Duration::from_secs(300));
            }
            other => panic!("{other:?}"),
        }
        let cfg = ok("<system>\n  max_in_flight_bytes 64m\n</system>\n<source>\n  @type forward\n  max_connections 10\n  idle_timeout 2m\n</source>\n<match **>\n  @type null\n</match>\n")
            .config;
        assert_eq!(cfg.system.max_in_flight_bytes, Some(64 << 20));
        match &cfg.sources[0].kind {
            SourceKind::Forward(f) => {
                assert_eq!(f.max_connections, 10);
                assert_eq!(f.idle_timeout, Duration::from_secs(120));
            }
            other => panic!("{other:?}"),
        }
        let e = errors(
            "<system>\n  max_in_flight_bytes 10k\n</system>\n<match **>\n  @type null\n</match>\n",
        );
        assert!(
            e.contains(":2: 'max_in_flight_bytes'") && e.contains("at least 1m"),
            "{e}"
        );
        let e = errors("<source>\n  @type forward\n  max_connections many\n</source>\n<match **>\n  @type null\n</match>\n");
        assert!(e.contains("'max_connections'"), "{e}");
    }

    #[test]
    fn seed_forwarder_config() {
        let loaded = load(&seed("forwarder.conf")).unwrap_or_else(|e| panic!("{e}"));
        assert!(loaded.warnings.is_empty(), "{}", warning_text(&loaded));
        let cfg = &loaded.config;
        assert_eq!(cfg.sources.len(), 2);
        match &cfg.sources[0].kind {
            SourceKind::Forward(f) => {
                assert_eq!((f.bind.as_str(), f.port), ("0.0.0.0", 24224));
                assert!(f.skip_invalid_event);
                assert_eq!(f.decompression_size_limit, 256 << 20);
            }
            other => panic!("{other:?}"),
        }
        match &cfg.sources[1].kind {
            SourceKind::Http(h) => {
                assert_eq!(h.port, 8888);
                assert_eq!(h.body_size_limit, 32 << 20);
                assert_eq!(h.keepalive_timeout, Duration::from_secs(10));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(cfg.matches.len(), 1);
        let m = &cfg.matches[0];
        assert_eq!(m.patterns, vec!["mytag.**"]);
        let f = forward_out(m);
        assert_eq!(f.servers.len(), 2);
        assert_eq!(
            (
                f.servers[0].host.as_str(),
                f.servers[0].port,
                f.servers[0].standby
            ),
            ("192.168.0.1", 24224, false)
        );
        assert_eq!(
            (
                f.servers[1].host.as_str(),
                f.servers[1].port,
                f.servers[1].standby
            ),
            ("192.168.0.2", 24224, true)
        );
        assert_eq!(f.servers[1].weight, 60);
        assert_eq!(f.servers[1].location.line, 26);
        assert!(f.require_ack_response, "lograft defaults to at-least-once");
        assert_eq!(f.ack_response_timeout, Duration::from_secs(190));
        assert_eq!(f.heartbeat_type, HeartbeatType::Transport);
        assert!(f.tls.verify_hostname);
        let b = &m.buffer;
        assert_eq!(b.kind, BufferKind::File { path: None });
        assert_eq!(b.flush_interval, Duration::from_secs(60));
        assert_eq!(b.flush_mode, FlushMode::Interval);
        assert!(b.chunk_by_tag);
        assert_eq!(b.timekey, None);
        assert_eq!(
            (b.chunk_limit_size, b.total_limit_size),
            (256 << 20, 64 << 30)
        );
        assert!(!b.flush_at_shutdown);
        assert!(m.secondary.is_none());

        let text = summary(cfg);
        assert!(text.contains("forward 0.0.0.0:24224"), "{text}");
        assert!(text.contains("http 0.0.0.0:8888"), "{text}");
        assert!(text.contains("server 192.168.0.1:24224\n"), "{text}");
        assert!(
            text.contains("server 192.168.0.2:24224 (standby)"),
            "{text}"
        );
        assert!(
            text.contains("buffer: file (default path), flush_interval 60s"),
            "{text}"
        );
    }

    #[test]
    fn cluster_section() {
        let three = r#"
<cluster>
  node_id 2
  address 127.0.0.1:7002
  snapshot_every 500
  <member>
    id 1
    address 127.0.0.1:7001
  </member>
  <member>
    id 2
    address 127.0.0.1:7002
  </member>
</cluster>
"#;
        let c = ok(three).config.cluster.unwrap();
        assert_eq!(
            (c.node_id, c.address.as_str(), c.snapshot_every),
            (2, "127.0.0.1:7002", 500)
        );
        assert_eq!(c.members.len(), 2);
        assert_eq!(c.dedup_window, 100_000);
        assert!(summary(&ok(three).config).contains("cluster: node 2 at 127.0.0.1:7002"));

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
    fn seed_aggregator_config() {
        let loaded = load(&seed("aggregator.conf")).unwrap_or_else(|e| panic!("{e}"));
        assert!(loaded.warnings.is_empty(), "{}", warning_text(&loaded));
        let cfg = &loaded.config;
        assert_eq!(cfg.sources.len(), 1);
        assert!(matches!(&cfg.sources[0].kind, SourceKind::Forward(f) if f.port == 24224));
        let m = &cfg.matches[0];
        assert_eq!(m.patterns, vec!["mytag.**"]);
        match &m.output {
            OutputConfig::File(f) => {
                assert_eq!(f.path, "/var/log/lograft/mytag");
                assert!(!f.append && f.add_path_suffix);
                assert_eq!(f.path_suffix, ".log");
                assert_eq!(f.format, FileFormat::OutFile);
            }
            other => panic!("{other:?}"),
        }
        // out_file's Fluentd default: daily time chunks, flushed lazily.
        assert_eq!(m.buffer.timekey, Some(Duration::from_secs(86400)));
        assert!(!m.buffer.chunk_by_tag);
        assert_eq!(m.buffer.flush_mode, FlushMode::Lazy);
    }

    #[test]
    fn local_variants_load_cleanly() {
        let fwd = load(&seed("forwarder.local.conf")).unwrap_or_else(|e| panic!("{e}"));
        assert!(fwd.warnings.is_empty(), "{}", warning_text(&fwd));
        let f = forward_out(&fwd.config.matches[0]);
        let ports: Vec<(u16, bool)> = f.servers.iter().map(|s| (s.port, s.standby)).collect();
        assert_eq!(ports, vec![(24225, false), (24226, true)]);
        assert!(f.servers.iter().all(|s| s.host == "127.0.0.1"));
        let b = &fwd.config.matches[0].buffer;
        assert_eq!(
            b.kind,
            BufferKind::File {
                path: Some("/tmp/lograft/forwarder/buffer".into())
            }
        );
        assert_eq!(b.flush_interval, Duration::from_secs(1));
        assert_eq!(b.flush_mode, FlushMode::Interval);

        let agg = load(&seed("aggregator.local.conf")).unwrap_or_else(|e| panic!("{e}"));
        assert!(agg.warnings.is_empty(), "{}", warning_text(&agg));
        assert!(matches!(&agg.config.sources[0].kind, SourceKind::Forward(s) if s.port == 24225));
        match &agg.config.matches[0].output {
            OutputConfig::File(f) => assert!(f.path.starts_with("/tmp/lograft/aggregator/out")),
            other => panic!("{other:?}"),
        }
        assert_eq!(agg.config.matches[0].buffer.flush_mode, FlushMode::Interval);
        assert_eq!(agg.config.matches[0].buffer.timekey, None);
    }

    #[test]
    fn type_and_at_type_give_the_same_config() {
        let v012 = std::fs::read_to_string(seed("forwarder.conf")).unwrap();
        let v1 = v012.replace("  type ", "  @type ");
        assert_ne!(v012, v1);
        let a = ok(&v012);
        let b = ok(&v1);
        assert_eq!(format!("{:?}", a.config), format!("{:?}", b.config));
        let both = errors("<source>\n  @type forward\n  type forward\n</source>\n");
        assert!(
            both.contains("test.conf:3: both '@type' (line 2) and 'type'"),
            "{both}"
        );
    }

    #[test]
    fn typed_values_reach_the_structs() {
        let loaded = ok(r#"
<system>
  root_dir /var/lib/lograft
  log_level debug
</system>
<source>
  @type http
  @id web
  @log_level warn
  port 9000
  body_size_limit 1m
  keepalive_timeout 0.5
  add_http_headers yes
  use_204_response
  cors_allow_origins ["http://a.example",
                      "http://b.example"]
</source>
<source>
  @type forward
  chunk_size_limit 8m
  chunk_size_warn_limit 512k
  skip_invalid_event false
  <security>
    self_hostname agg1
    shared_key "s3cr\"et"
    <user>
      username u
      password p
    </user>
    <client>
      network 10.0.0.0/8
      users u, v
    </client>
  </security>
  <transport tls>
    cert_path /c.pem
    private_key_path /k.pem
    client_cert_auth true
  </transport>
</source>
<match x.**>
  @type forward
  phi_threshold 24.5
  heartbeat_type none
  transport tls
  tls_cert_path ["/ca1.pem", "/ca2.pem"]
  tls_verify_hostname false
  require_ack_response false
  compress gzip
  <server>
    host h
    weight 10
  </server>
  <buffer>
    @type memory
    chunk_limit_size 1g
    chunk_limit_records 1000
    retry_type periodic
    retry_max_times 3
    retry_secondary_threshold 0.5
    overflow_action drop_oldest_chunk
  </buffer>
</match>
"#);
        let cfg = &loaded.config;
        assert_eq!(cfg.system.root_dir, Some(PathBuf::from("/var/lib/lograft")));
        assert_eq!(cfg.system.log_level, Some(LogLevel::Debug));
        assert_eq!(cfg.sources[0].common.id.as_deref(), Some("web"));
        assert_eq!(cfg.sources[0].common.log_level, Some(LogLevel::Warn));
        match &cfg.sources[0].kind {
            SourceKind::Http(h) => {
                assert_eq!(h.port, 9000);
                assert_eq!(h.body_size_limit, 1 << 20);
                assert_eq!(h.keepalive_timeout, Duration::from_millis(500));
                assert!(h.add_http_headers && h.use_204_response && !h.add_remote_addr);
                assert_eq!(
                    h.cors_allow_origins,
                    vec!["http://a.example", "http://b.example"]
                );
            }
            other => panic!("{other:?}"),
        }
        match &cfg.sources[1].kind {
            SourceKind::Forward(f) => {
                assert_eq!(f.chunk_size_limit, Some(8 << 20));
                assert_eq!(f.chunk_size_warn_limit, Some(512 << 10));
                assert!(!f.skip_invalid_event);
                let sec = f.security.as_ref().unwrap();
                assert_eq!(sec.shared_key, "s3cr\"et");
                assert!(sec.allow_anonymous_source && !sec.user_auth);
                assert_eq!(sec.users[0].username, "u");
                assert_eq!(sec.clients[0].network.as_deref(), Some("10.0.0.0/8"));
                assert_eq!(sec.clients[0].users, vec!["u", "v"]);
                let tls = f.tls.as_ref().unwrap();
                assert_eq!(tls.cert_path, PathBuf::from("/c.pem"));
                assert!(tls.client_cert_auth);
            }
            other => panic!("{other:?}"),
        }
        let m = &cfg.matches[0];
        let f = forward_out(m);
        assert_eq!(f.phi_threshold, 24.5);
        assert_eq!(f.heartbeat_type, HeartbeatType::None);
        assert_eq!(f.transport, Transport::Tls);
        assert_eq!(
            f.tls.cert_path,
            vec![PathBuf::from("/ca1.pem"), PathBuf::from("/ca2.pem")]
        );
        assert!(!f.tls.verify_hostname && !f.require_ack_response);
        assert_eq!(f.compress, Compression::Gzip);
        assert_eq!(f.servers[0].weight, 10);
        let b = &m.buffer;
        assert_eq!(b.kind, BufferKind::Memory);
        assert_eq!(b.chunk_limit_size, 1 << 30);
        assert_eq!(b.total_limit_size, 512 << 20);
        assert!(
            b.flush_at_shutdown,
            "memory buffers flush at shutdown by default"
        );
        assert_eq!(b.chunk_limit_records, Some(1000));
        assert_eq!(b.retry.retry_type, RetryType::Periodic);
        assert_eq!(b.retry.max_times, Some(3));
        assert_eq!(b.retry.secondary_threshold, 0.5);
        assert_eq!(b.overflow_action, OverflowAction::DropOldestChunk);
    }

    #[test]
    fn wrong_value_types_name_key_and_expected_type() {
        let err = errors(concat!(
            "<source>\n  @type forward\n  port 99999\n  chunk_size_limit lots\n  resolve_hostname maybe\n</source>\n",
            "<match a>\n  @type forward\n  <server>\n    host h\n  </server>\n  flush_interval soon\n  heartbeat_type tcpp\n</match>\n",
        ));
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 5, "{err}");
        assert!(
            lines[0].starts_with("/etc/lograft/test.conf:3: 'port' in <source> (in_forward)"),
            "{err}"
        );
        assert!(lines[0].contains("between 0 and 65535"), "{err}");
        assert!(
            lines[1].contains(":4: 'chunk_size_limit'") && lines[1].contains("expected a size"),
            "{err}"
        );
        assert!(
            lines[2].contains(":5: 'resolve_hostname'") && lines[2].contains("expected a boolean"),
            "{err}"
        );
        assert!(
            err.contains(
                ":12: 'flush_interval' in <buffer> of <match a> (out_forward): expected a duration"
            ),
            "{err}"
        );
        assert!(
            err.contains(":13: 'heartbeat_type'")
                && err.contains("expected one of transport, tcp, udp, none, got 'tcpp'"),
            "{err}"
        );
    }

    #[test]
    fn typo_gives_location_key_and_suggestion() {
        let err = errors(
            "<match a.**>\n  @type forward\n  <server>\n    host h\n    standbye\n  </server>\n  flush_intervl 5s\n</match>\n",
        );
        assert!(
            err.contains("/etc/lograft/test.conf:5: unknown parameter 'standbye' in <server> of out_forward; did you mean 'standby'?"),
            "{err}"
        );
        assert!(
            err.contains("/etc/lograft/test.conf:7: unknown parameter 'flush_intervl' in <match a.**> (out_forward); did you mean 'flush_interval'?"),
            "{err}"
        );
        let far = errors("<source>\n  @type http\n  zzzzzz 1\n</source>\n");
        assert!(
            far.contains("unknown parameter 'zzzzzz' in <source> (in_http)")
                && !far.contains("did you mean"),
            "{far}"
        );
        let section =
            errors("<match a>\n  @type forward\n  <sever>\n    host h\n  </sever>\n</match>\n");
        assert!(
            section.contains(":3: unknown section <sever>")
                && section.contains("did you mean <server>?"),
            "{section}"
        );
    }

    #[test]
    fn unknown_types_directives_and_unsupported_ones() {
        let err = errors(concat!(
            "<source>\n  @type tail\n</source>\n",
            "<match a>\n  @type kafka\n</match>\n",
            "<filter a>\n  @type grep\n</filter>\n",
            "<label @x>\n</label>\n",
            "<sorce>\n</sorce>\n",
            "stray_key 1\n",
        ));
        assert!(
            err.contains(":2: unknown source type 'tail'; lograft supports: forward, http"),
            "{err}"
        );
        assert!(err.contains(":5: unknown output type 'kafka' in <match a>; lograft supports: stdout, null, file, forward, s3"), "{err}");
        assert!(err.contains(":7: <filter> is not supported yet"), "{err}");
        assert!(err.contains(":10: <label> is not supported yet"), "{err}");
        assert!(
            err.contains(":12: unknown directive <sorce> (did you mean <source>?)"),
            "{err}"
        );
        assert!(
            err.contains(":14: parameter 'stray_key' is outside any directive"),
            "{err}"
        );
        let missing = errors("<source>\n  port 1\n</source>\n");
        assert!(
            missing.contains(":1: missing required parameter '@type' in <source>"),
            "{missing}"
        );
    }

    #[test]
    fn missing_required_parameters() {
        let err = errors(concat!(
            "<match a>\n  @type forward\n  <server>\n    port 24224\n  </server>\n</match>\n",
            "<match b>\n  @type file\n</match>\n",
            "<match c>\n  @type forward\n</match>\n",
            "<source>\n  @type forward\n  <security>\n    self_hostname x\n  </security>\n</source>\n",
        ));
        assert!(
            err.contains(":3: missing required parameter 'host' in <server> of out_forward"),
            "{err}"
        );
        assert!(
            err.contains(":7: missing required parameter 'path' in <match b> (out_file)"),
            "{err}"
        );
        assert!(
            err.contains(":10: <match c> (out_forward) needs at least one <server>"),
            "{err}"
        );
        assert!(
            err.contains(
                ":15: missing required parameter 'shared_key' in <security> of in_forward"
            ),
            "{err}"
        );
    }

    /// The same buffer written three ways: v1 `<buffer>`, v1 flat, v0.12 flat.
    #[test]
    fn flat_and_section_buffer_spellings_agree() {
        let head = "<match a.**>\n  @type forward\n  <server>\n    host h\n  </server>\n";
        let section = ok(&format!(
            "{head}  <buffer>\n    @type file\n    path /var/buf\n    chunk_limit_size 4m\n    total_limit_size 32m\n    flush_interval 5s\n    flush_thread_count 2\n    flush_at_shutdown true\n    overflow_action block\n    retry_wait 2s\n    retry_max_interval 1h\n    retry_max_times 5\n    retry_forever false\n  </buffer>\n</match>\n"
        ));
        let legacy = ok(&format!(
            "{head}  buffer_type file\n  buffer_path /var/buf\n  buffer_chunk_limit 4m\n  buffer_queue_limit 8\n  flush_interval 5s\n  num_threads 2\n  flush_at_shutdown true\n  buffer_queue_full_action block\n  retry_wait 2s\n  max_retry_wait 1h\n  retry_limit 5\n  disable_retry_limit false\n</match>\n"
        ));
        let flat_v1 = ok(&format!(
            "{head}  <buffer>\n    @type file\n    path /var/buf\n  </buffer>\n  chunk_limit_size 4m\n  total_limit_size 32m\n  flush_interval 5s\n  flush_thread_count 2\n  flush_at_shutdown true\n  overflow_action block\n  retry_wait 2s\n  retry_max_interval 1h\n  retry_max_times 5\n  retry_forever false\n</match>\n"
        ));
        let a = format!("{:?}", section.config.matches[0].buffer);
        assert_eq!(a, format!("{:?}", legacy.config.matches[0].buffer));
        assert_eq!(a, format!("{:?}", flat_v1.config.matches[0].buffer));
        let b = &section.config.matches[0].buffer;
        assert_eq!(b.total_limit_size, 32 << 20);
        assert_eq!(b.retry.max_interval, Some(Duration::from_secs(3600)));
        assert_eq!(b.overflow_action, OverflowAction::Block);
        assert!(section.warnings.is_empty() && legacy.warnings.is_empty());

        // `exception` is the v0.12 name of throw_exception; disable_retry_limit → forever.
        let legacy2 = ok(&format!(
            "{head}  buffer_queue_full_action exception\n  disable_retry_limit\n</match>\n"
        ));
        let b2 = &legacy2.config.matches[0].buffer;
        assert_eq!(b2.overflow_action, OverflowAction::ThrowException);
        assert!(b2.retry.forever);

        // Same key in both places, or in two flat spellings: error naming both lines.
        let mixed = errors(&format!(
            "{head}  flush_interval 5s\n  <buffer>\n    flush_interval 1s\n  </buffer>\n</match>\n"
        ));
        assert!(
            mixed.contains(":6: 'flush_interval' in <match a.**> (out_forward) sets the same buffer parameter as 'flush_interval' in <buffer> (line 8)"),
            "{mixed}"
        );
        let twice = errors(&format!(
            "{head}  num_threads 2\n  flush_thread_count 3\n</match>\n"
        ));
        assert!(
            twice.contains(":7: 'flush_thread_count'") && twice.contains("'num_threads' (line 6)"),
            "{twice}"
        );
        let typed = errors(&format!("{head}  buffer_chunk_limit big\n</match>\n"));
        assert!(
            typed.contains(":6: 'buffer_chunk_limit' in <buffer> of <match a.**>")
                && typed.contains("expected a size"),
            "{typed}"
        );
    }

    #[test]
    fn chunk_keys_timekey_and_flush_mode() {
        let head = "<match a.**>\n  @type stdout\n";
        let lazy = ok(&format!(
            "{head}  <buffer tag,time>\n    timekey 1h\n  </buffer>\n</match>\n"
        ));
        let b = &lazy.config.matches[0].buffer;
        assert!(b.chunk_by_tag);
        assert_eq!(b.timekey, Some(Duration::from_secs(3600)));
        assert_eq!(b.flush_mode, FlushMode::Lazy);
        assert!(b.flush_at_shutdown, "stdout's Fluentd default");

        let missing = errors(&format!("{head}  <buffer time>\n  </buffer>\n</match>\n"));
        assert!(
            missing.contains(":3: 'timekey' is required")
                && missing.contains("'time' is a chunk key"),
            "{missing}"
        );
        let bad_key = errors(&format!("{head}  <buffer $.user>\n  </buffer>\n</match>\n"));
        assert!(bad_key.contains("chunk key '$.user'"), "{bad_key}");
        let no_tag = errors("<match a>\n  @type forward\n  <server>\n    host h\n  </server>\n  <buffer time>\n    timekey 60\n  </buffer>\n</match>\n");
        assert!(no_tag.contains("must include 'tag'"), "{no_tag}");
        let inner = errors(&format!(
            "{head}  <buffer>\n    <server>\n    </server>\n  </buffer>\n</match>\n"
        ));
        assert!(inner.contains(":4: unknown section <server> in <buffer> of <match a.**> (out_stdout) (it takes no sections)"), "{inner}");

        // flush_interval inside <buffer> with a time key: Fluentd ignores it (warning)...
        let ignored = ok(&format!(
            "{head}  <buffer time>\n    timekey 60\n    flush_interval 5s\n  </buffer>\n</match>\n"
        ));
        assert_eq!(ignored.config.matches[0].buffer.flush_mode, FlushMode::Lazy);
        assert!(
            warning_text(&ignored).contains(":5: 'flush_interval' in <buffer time>"),
            "{}",
            warning_text(&ignored)
        );
        // ...while a flat flush_interval keeps interval mode (Fluentd's compat rule).
        let flat = ok("<match a>\n  @type file\n  path /x\n  flush_interval 5s\n</match>\n");
        let fb = &flat.config.matches[0].buffer;
        assert_eq!(
            (fb.flush_mode, fb.flush_interval),
            (FlushMode::Interval, Duration::from_secs(5))
        );
        assert_eq!(fb.timekey, Some(Duration::from_secs(86400)));
        // v0.12 out_file time slices become the timekey.
        let sliced = ok(
            "<match a>\n  @type file\n  path /x\n  time_slice_format %Y%m%d%H\n  utc\n</match>\n",
        );
        let sb = &sliced.config.matches[0].buffer;
        assert_eq!(sb.timekey, Some(Duration::from_secs(3600)));
        assert!(sb.timekey_use_utc);
    }

    #[test]
    fn accepted_but_not_implemented_params_warn() {
        let loaded = ok(concat!(
            "<system>\n  workers 4\n</system>\n",
            "<source>\n  @type forward\n  linger_timeout 0\n  send_keepalive_packet true\n</source>\n",
            "<match a>\n  @type forward\n  tls_version TLSv1_3\n  tls_ciphers ALL\n  ignore_network_errors_at_startup true\n",
            "  <server>\n    host h\n  </server>\n",
            "  <buffer>\n    queued_chunks_limit_size 4\n    delayed_commit_timeout 30\n  </buffer>\n</match>\n",
        ));
        let w = warning_text(&loaded);
        for (line, key) in [
            (2, "workers"),
            (6, "linger_timeout"),
            (7, "send_keepalive_packet"),
            (11, "tls_version"),
            (12, "tls_ciphers"),
            (13, "ignore_network_errors_at_startup"),
            (18, "queued_chunks_limit_size"),
            (19, "delayed_commit_timeout"),
        ] {
            let expected = format!("/etc/lograft/test.conf:{line}: '{key}' in ");
            assert!(w.contains(&expected), "missing {expected}\n{w}");
        }
        assert!(
            w.contains("accepted but not implemented by lograft; ignored"),
            "{w}"
        );
        assert_eq!(loaded.warnings.len(), 8, "{w}");
        assert_eq!(loaded.config.matches.len(), 1);
    }

    #[test]
    fn secondary_outputs() {
        let loaded = ok(concat!(
            "<match a>\n  @type forward\n  <server>\n    host h\n  </server>\n",
            "  <secondary>\n    @type file\n    path /var/log/failed\n  </secondary>\n</match>\n",
        ));
        match &loaded.config.matches[0].secondary {
            Some(OutputConfig::File(f)) => assert_eq!(f.path, "/var/log/failed"),
            other => panic!("{other:?}"),
        }
        assert!(summary(&loaded.config).contains("secondary: file path=/var/log/failed"));
        let err = errors(concat!(
            "<match a>\n  @type stdout\n  retry_forever true\n",
            "  <secondary>\n    @type file\n    <buffer>\n    </buffer>\n  </secondary>\n</match>\n",
        ));
        assert!(
            err.contains(":4: <secondary> and 'retry_forever' are exclusive"),
            "{err}"
        );
        assert!(
            err.contains(":6: <secondary> cannot have its own <buffer>"),
            "{err}"
        );
        assert!(
            err.contains(":4: missing required parameter 'path' in <secondary> (out_file)"),
            "{err}"
        );
    }

    #[test]
    fn includes_resolve_relative_to_the_given_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sources")).unwrap();
        std::fs::write(
            dir.path().join("sources/10-forward.conf"),
            "<source>\n  @type forward\n  port 24230\n</source>\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("sources/20-http.conf"),
            "<source>\n  @type http\n  prot 1\n</source>\n",
        )
        .unwrap();
        let main = dir.path().join("main.conf");
        let err = load_str("@include sources/*.conf\n", &main)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("20-http.conf:3: unknown parameter 'prot'"),
            "{err}"
        );
        assert!(err.contains("did you mean 'port'?"), "{err}");
        std::fs::remove_file(dir.path().join("sources/20-http.conf")).unwrap();
        let loaded = load_str("@include sources/*.conf\n", &main).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(&loaded.config.sources[0].kind, SourceKind::Forward(f) if f.port == 24230)
        );
    }

    #[test]
    fn unreadable_file_is_an_error() {
        let err = load(Path::new("/nonexistent/lograft.conf"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/nonexistent/lograft.conf") && err.contains("cannot read"),
            "{err}"
        );
    }
}
