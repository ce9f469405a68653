//! What out_forward's servers look like now, for metrics and monitor_agent: up or down, the
//! phi detector's suspicion, and whether a standby server is carrying traffic.
//!
//! Owns only reading: it must not change a server's health or the balancer's position.

use super::balance::{eligible, Candidate};
use super::Shared;
use std::sync::Arc;

/// One server's state.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerStatus {
    /// `name`, else `host:port`.
    pub label: String,
    pub standby: bool,
    pub up: bool,
    pub phi: f64,
    /// Eligible for traffic now (for a standby: it replaces a failed active server).
    pub active: bool,
}

/// A cheap handle on an out_forward's servers.
#[derive(Clone)]
pub struct ForwardStatus(Arc<Shared>);

impl ForwardStatus {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        ForwardStatus(shared)
    }

    /// Every server, in configuration order.
    pub fn servers(&self) -> Vec<ServerStatus> {
        let nodes = &self.0.nodes;
        let candidates: Vec<Candidate> = nodes
            .iter()
            .map(|n| Candidate {
                weight: n.config.weight,
                standby: n.config.standby,
                available: n.available(),
                in_flight: 0,
            })
            .collect();
        let active = eligible(&candidates);
        nodes
            .iter()
            .enumerate()
            .map(|(i, n)| ServerStatus {
                label: n.label.clone(),
                standby: n.config.standby,
                up: candidates[i].available,
                phi: n.phi(),
                active: active.contains(&i),
            })
            .collect()
    }
}
