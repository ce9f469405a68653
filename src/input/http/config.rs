//! `<source> @type http` (in_http): the typed [`HttpInputConfig`] and its builder.
//!
//! Owns in_http's parameter names and defaults; it must not serve anything (the rest of
//! `input::http` does).

use super::HttpInput;
use crate::config::diag::Diag;
use crate::config::registry::{SourceKind, SourcePlugin};
use crate::config::section::Section;
use crate::input::{InputContext, InputTask, SourceSpec};
use crate::observe::MeteredEmit;
use crate::pipeline::BoxFuture;
use std::io;
use std::time::Duration;

/// The registry's entry for `@type http`.
pub(crate) const PLUGIN: SourcePlugin = SourcePlugin {
    name: "http",
    build: |sec, d| SourceKind::Http(build(sec, d)),
    unimplemented_params: UNIMPLEMENTED,
    unimplemented_sections: &["parse"],
};

/// Documented in_http parameters lograft ignores (with a warning).
const UNIMPLEMENTED: &[&str] = &[
    "backlog",
    "blocking_timeout",
    "cors_allow_credentials",
    "dump_error_log",
    "add_query_params",
    "format",
];
/// `<source> @type http`
#[derive(Debug, Clone)]
pub struct HttpInputConfig {
    pub bind: String,
    /// Default 8888, the port of the HA topology (Fluentd's own in_http default is 9880).
    pub port: u16,
    /// Default 32m.
    pub body_size_limit: u64,
    pub keepalive_timeout: Duration,
    pub add_http_headers: bool,
    pub add_remote_addr: bool,
    pub use_204_response: bool,
    pub respond_with_empty_img: bool,
    pub cors_allow_origins: Vec<String>,
}

/// The typed config of `<source> @type http`.
pub(crate) fn build(sec: &mut Section<'_>, d: &mut Diag) -> HttpInputConfig {
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

impl SourceSpec for HttpInputConfig {
    fn type_name(&self) -> &'static str {
        PLUGIN.name
    }

    fn start<'a>(&'a self, ctx: InputContext<'a>) -> BoxFuture<'a, io::Result<Option<InputTask>>> {
        Box::pin(async move {
            let input = HttpInput::bind(self, MeteredEmit::wrap(ctx.emit, ctx.metrics)).await?;
            tracing::info!(addr = %input.local_addr()?, "http input listening");
            Ok(Some(Box::pin(input.run(ctx.stop)) as InputTask))
        })
    }

    fn describe(&self) -> String {
        format!("http {}:{}", self.bind, self.port)
    }
}
