//! A lock-free histogram: fixed buckets of atomic counters, encoded as a Prometheus histogram.
//!
//! prometheus-client's own `Histogram` takes a lock on every observation; the hot path of
//! lograft may only do atomic increments, so this type keeps one `AtomicU64` per bucket, the
//! count, and the sum in nanoseconds (durations are all this crate observes). It owns only
//! that; the encoding itself is prometheus-client's (`MetricEncoder::encode_histogram`).

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Upper bounds (seconds) of the duration buckets: 100 µs to ~26 s, ×4 per bucket.
pub(crate) const DURATION_BUCKETS: [f64; 10] = [
    0.0001, 0.0004, 0.0016, 0.0064, 0.0256, 0.1024, 0.4096, 1.6384, 6.5536, 26.2144,
];

/// Upper bounds of the "appends per fsync" buckets (group-commit sizes).
pub(crate) const COUNT_BUCKETS: [f64; 10] =
    [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0];

#[derive(Debug)]
struct Inner {
    bounds: &'static [f64],
    /// One counter per bound, plus `+Inf`.
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    /// Sum of observations × `scale` (nanoseconds for durations, the count for counts).
    sum_scaled: AtomicU64,
    scale: f64,
}

/// A histogram; clones share the counters.
#[derive(Debug, Clone)]
pub struct AtomicHistogram(Arc<Inner>);

impl AtomicHistogram {
    fn with(bounds: &'static [f64], scale: f64) -> Self {
        AtomicHistogram(Arc::new(Inner {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_scaled: AtomicU64::new(0),
            scale,
        }))
    }

    /// A histogram of durations in seconds ([`DURATION_BUCKETS`]).
    pub fn durations() -> Self {
        Self::with(&DURATION_BUCKETS, 1e9)
    }

    /// A histogram of small counts ([`COUNT_BUCKETS`]).
    pub fn counts() -> Self {
        Self::with(&COUNT_BUCKETS, 1.0)
    }

    /// Record one duration: three relaxed atomic adds.
    pub fn observe_duration(&self, d: Duration) {
        self.observe_scaled(d.as_secs_f64(), d.as_nanos().min(u64::MAX as u128) as u64);
    }

    /// Record one count.
    pub fn observe_count(&self, n: u64) {
        self.observe_scaled(n as f64, n);
    }

    fn observe_scaled(&self, value: f64, scaled: u64) {
        let i = self.0.bounds.partition_point(|&b| b < value);
        self.0.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.0.sum_scaled.fetch_add(scaled, Ordering::Relaxed);
        self.0.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Observations so far.
    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // Per-bucket counts: the encoder makes them cumulative itself.
        let mut count = 0;
        let mut buckets = Vec::with_capacity(self.0.buckets.len());
        for (i, b) in self.0.buckets.iter().enumerate() {
            let n = b.load(Ordering::Relaxed);
            count += n;
            // The encoder writes the last bound as "+Inf" when it is f64::MAX (its own
            // histograms' convention), not when it is infinity.
            let bound = self.0.bounds.get(i).copied().unwrap_or(f64::MAX);
            buckets.push((bound, n));
        }
        // The count is the sum of the buckets read, so the two always agree within one scrape.
        let sum = self.0.sum_scaled.load(Ordering::Relaxed) as f64 / self.0.scale;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket_and_the_sum() {
        let h = AtomicHistogram::durations();
        h.observe_duration(Duration::from_micros(50));
        h.observe_duration(Duration::from_millis(5));
        h.observe_duration(Duration::from_secs(100));
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("d_seconds", "test", h.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("d_seconds_bucket{le=\"0.0001\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("d_seconds_bucket{le=\"0.0064\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("d_seconds_bucket{le=\"26.2144\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("d_seconds_bucket{le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("d_seconds_count 3\n"), "{text}");
        assert!(text.contains("d_seconds_sum 100.00505"), "{text}");
        assert_eq!(h.count(), 3);
    }
}
