//! `retry_*` parameters (written in `<buffer>` or flat in `<match>`): the typed [`RetryConfig`]
//! every output's [`super::Backoff`] runs on, and the reader that fills it.
//!
//! Owns the retry parameters' names, defaults and checks; it must not compute backoff times
//! (that is [`crate::retry`]) nor read any other buffer parameter (that is `buffer::config`).

use crate::config::diag::Diag;
use crate::config::element::Element;
use crate::config::section::Section;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryType {
    ExponentialBackoff,
    Periodic,
}

/// Retry parameters shared by every output.
#[derive(Debug, Clone)]
pub struct RetryConfig {
    pub retry_type: RetryType,
    /// Default 1s.
    pub wait: Duration,
    /// Default 2.0.
    pub exponential_backoff_base: f64,
    pub max_interval: Option<Duration>,
    /// Default true.
    pub randomize: bool,
    /// Default 72h.
    pub timeout: Duration,
    pub max_times: Option<u32>,
    pub forever: bool,
    /// Default 0.8.
    pub secondary_threshold: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            retry_type: RetryType::ExponentialBackoff,
            wait: Duration::from_secs(1),
            exponential_backoff_base: 2.0,
            max_interval: None,
            randomize: true,
            timeout: Duration::from_secs(72 * 3600),
            max_times: None,
            forever: false,
            secondary_threshold: 0.8,
        }
    }
}

/// Reads the `retry_*` parameters of the merged buffer section `bsec` (whose element is
/// `merged`) into `retry`, keeping the defaults for those not given.
pub(crate) fn read_retry(
    bsec: &mut Section<'_>,
    d: &mut Diag,
    merged: &Element,
    retry: &mut RetryConfig,
) {
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
}
