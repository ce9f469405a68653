//! Phi accrual failure detector for out_forward heartbeats.
//!
//! Owns the suspicion level of one node: it keeps a window of heartbeat inter-arrival gaps and
//! computes phi = -log10(P(a heartbeat arrives later than now)) under an exponential model of
//! the gaps, with the mean normalised to a 1 s heartbeat as Fluentd does (so `phi_threshold 16`
//! means the same here). It also answers `hard_timeout`. It must not send heartbeats or decide
//! routing; the node health tracker does that.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

const WINDOW: usize = 1000;

#[derive(Debug, Clone)]
pub struct PhiDetector {
    interval: f64,
    hard_timeout: Duration,
    gaps: VecDeque<f64>,
    last: Instant,
}

impl PhiDetector {
    pub fn new(heartbeat_interval: Duration, hard_timeout: Duration, now: Instant) -> Self {
        let interval = heartbeat_interval.as_secs_f64().max(0.001);
        PhiDetector {
            interval,
            hard_timeout,
            gaps: VecDeque::from([interval]),
            last: now,
        }
    }

    /// A heartbeat (or any proof of life) arrived at `now`.
    pub fn heartbeat(&mut self, now: Instant) {
        let gap = now.saturating_duration_since(self.last).as_secs_f64();
        self.gaps.push_back(gap);
        if self.gaps.len() > WINDOW {
            self.gaps.pop_front();
        }
        self.last = now;
    }

    /// Forget history (after a node comes back, start fresh).
    pub fn reset(&mut self, now: Instant) {
        self.gaps.clear();
        self.gaps.push_back(self.interval);
        self.last = now;
    }

    /// Suspicion level at `now`; higher means more likely dead.
    pub fn phi(&self, now: Instant) -> f64 {
        // Weighted mean of recent gaps: newer gaps count more.
        let (mut sum, mut weights) = (0.0, 0.0);
        for (i, g) in self.gaps.iter().enumerate() {
            let w = (i + 1) as f64;
            sum += g * w;
            weights += w;
        }
        let mean_gap = if weights > 0.0 {
            sum / weights
        } else {
            self.interval
        };
        // Normalise to a 1-second heartbeat so thresholds mean the same for any interval.
        let mean = (mean_gap - self.interval + 1.0).max(0.001);
        let since = now.saturating_duration_since(self.last).as_secs_f64();
        let t = (since - self.interval + 1.0).max(0.0);
        t / (mean * std::f64::consts::LN_10)
    }

    pub fn hard_timed_out(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last) > self.hard_timeout
    }

    pub fn last_heartbeat(&self) -> Instant {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_heartbeats_keep_phi_low_and_silence_raises_it() {
        let t0 = Instant::now();
        let mut d = PhiDetector::new(Duration::from_secs(1), Duration::from_secs(60), t0);
        for i in 1..=30 {
            d.heartbeat(t0 + Duration::from_secs(i));
        }
        let last = t0 + Duration::from_secs(30);
        assert!(d.phi(last + Duration::from_millis(500)) < 1.0);
        let p10 = d.phi(last + Duration::from_secs(10));
        let p40 = d.phi(last + Duration::from_secs(40));
        assert!(p10 > 1.0 && p40 > 16.0 && p40 > p10, "{p10} {p40}");
        assert!(!d.hard_timed_out(last + Duration::from_secs(59)));
        assert!(d.hard_timed_out(last + Duration::from_secs(61)));
    }

    #[test]
    fn reset_clears_suspicion() {
        let t0 = Instant::now();
        let mut d = PhiDetector::new(Duration::from_secs(1), Duration::from_secs(60), t0);
        let later = t0 + Duration::from_secs(100);
        assert!(d.phi(later) > 16.0);
        d.reset(later);
        assert!(d.phi(later) < 1.0);
    }
}
