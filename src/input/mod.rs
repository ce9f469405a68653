//! Inputs: the servers that accept events from applications and other lograft nodes, and the
//! tail input that reads log files.
//!
//! Every input hands what it accepted to the rest of the node through the pipeline contract
//! ([`crate::pipeline::Emit`]) and acknowledges (Forward `ack`, HTTP 200) only after the batch
//! is committed. Inputs must not hold accepted data anywhere but in that call.
//!
//! Each input's typed config and its builder live in its own `config` module
//! ([`forward::config`], [`http::config`], [`tail::config`]), registered in
//! [`crate::config::registry`]; the config implements [`SourceSpec`], through which the node
//! starts the input with an [`InputContext`].

pub mod budget;
pub mod fd_reserve;
pub mod forward;
pub mod http;
pub mod tail;

use crate::config::PluginCommon;
use crate::observe::server::Routes;
use crate::observe::InputMetrics;
use crate::pipeline::{BoxFuture, Emit};
use budget::InFlightBudget;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What a `<source>` needs from the node to start.
pub(crate) struct InputContext<'a> {
    /// Where accepted batches go (already counted in `metrics`).
    pub emit: Arc<dyn Emit>,
    pub metrics: InputMetrics,
    /// The node's one budget of bytes in flight (in_forward).
    pub budget: InFlightBudget,
    /// `@id` and where the `<source>` is written.
    pub common: &'a PluginCommon,
    /// Cancelled at shutdown: the input stops accepting and returns.
    pub stop: CancellationToken,
}

/// The task a started input runs until its `stop` is cancelled.
pub(crate) type InputTask = BoxFuture<'static, ()>;

/// Where an observability source (`prometheus`, `monitor_agent`) listens and what it serves.
pub(crate) struct Observer<'a> {
    pub bind: &'a str,
    pub port: u16,
    pub routes: Routes,
}

/// A `<source>`'s typed config, as the registry ([`crate::config::registry`]) holds it: how
/// the node starts it and how `check-config` names it. Implemented beside each plugin's config.
pub(crate) trait SourceSpec {
    /// The `@type` name.
    fn type_name(&self) -> &'static str;

    /// Bind (or open) the input and return the task that serves it. Sources that are not
    /// inputs of events (see [`SourceSpec::observer`]) keep the default: nothing to start.
    fn start<'a>(
        &'a self,
        ctx: InputContext<'a>,
    ) -> BoxFuture<'a, std::io::Result<Option<InputTask>>> {
        let _ = ctx;
        Box::pin(async { Ok(None) })
    }

    /// For observability sources: where to listen. The node binds these before anything else,
    /// so `/health` answers while buffers resume.
    fn observer(&self) -> Option<Observer<'_>> {
        None
    }

    /// A short description for `lograft check-config`.
    fn describe(&self) -> String;
}
