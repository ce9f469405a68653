//! Retry and backoff: the one mechanism every output's failed flushes go through.
//!
//! Owns Fluentd's retry parameters (`retry_type`, `retry_wait`,
//! `retry_exponential_backoff_base`, `retry_max_interval`, `retry_randomize`, `retry_timeout`,
//! `retry_max_times`, `retry_forever`). One [`Backoff`] is shared by all flush workers of an
//! output, as in Fluentd: a failure pauses the whole output, a success resets it. It only
//! computes times; sleeping and moving chunks is the driver's business. The parameters
//! themselves are read in [`config`].

pub mod config;

pub use config::{RetryConfig, RetryType};
use rand::Rng;
use std::time::{Duration, Instant};

/// What to do after a failed flush.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RetryDecision {
    /// Try again after this long.
    RetryIn(Duration),
    /// Retries ran out: hand the chunk to `<secondary>` (or quarantine it).
    GiveUp,
}

/// Retry state of one output.
#[derive(Debug, Clone)]
pub struct Backoff {
    cfg: RetryConfig,
    /// Failures since the last success.
    steps: u32,
    first_failure: Option<Instant>,
    next_attempt: Option<Instant>,
}

impl Backoff {
    pub fn new(cfg: RetryConfig) -> Self {
        Backoff {
            cfg,
            steps: 0,
            first_failure: None,
            next_attempt: None,
        }
    }

    /// A flush succeeded: forget past failures.
    pub fn reset(&mut self) {
        self.steps = 0;
        self.first_failure = None;
        self.next_attempt = None;
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.steps
    }

    /// When the next attempt may start (None: now).
    pub fn next_attempt(&self) -> Option<Instant> {
        self.next_attempt
    }

    /// Record a failure at `now` and decide what comes next.
    pub fn on_failure(&mut self, now: Instant) -> RetryDecision {
        let first = *self.first_failure.get_or_insert(now);
        self.steps += 1;
        if !self.cfg.forever {
            let out_of_times = self.cfg.max_times.is_some_and(|max| self.steps > max);
            let out_of_time = now.duration_since(first) >= self.cfg.timeout;
            if out_of_times || out_of_time {
                self.reset();
                return RetryDecision::GiveUp;
            }
        }
        let wait = self.wait_for_step(self.steps);
        self.next_attempt = Some(now + wait);
        RetryDecision::RetryIn(wait)
    }

    fn wait_for_step(&self, step: u32) -> Duration {
        let base = self.cfg.wait.as_secs_f64();
        let mut secs = match self.cfg.retry_type {
            RetryType::Periodic => base,
            RetryType::ExponentialBackoff => {
                let exp = (step.saturating_sub(1)).min(64) as i32;
                base * self.cfg.exponential_backoff_base.powi(exp)
            }
        };
        if let Some(max) = self.cfg.max_interval {
            secs = secs.min(max.as_secs_f64());
        }
        if self.cfg.randomize {
            secs *= rand::thread_rng().gen_range(0.875..1.125);
        }
        // Never beyond the retry timeout, and never a silly number.
        Duration::from_secs_f64(secs.clamp(0.0, 86_400.0 * 365.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RetryConfig {
        RetryConfig {
            randomize: false,
            ..RetryConfig::default()
        }
    }

    #[test]
    fn exponential_doubles_and_caps() {
        let mut b = Backoff::new(RetryConfig {
            max_interval: Some(Duration::from_secs(5)),
            ..cfg()
        });
        let now = Instant::now();
        let waits: Vec<_> = (0..5)
            .map(|_| match b.on_failure(now) {
                RetryDecision::RetryIn(d) => d.as_secs(),
                RetryDecision::GiveUp => 999,
            })
            .collect();
        assert_eq!(waits, vec![1, 2, 4, 5, 5]);
        b.reset();
        assert_eq!(
            b.on_failure(now),
            RetryDecision::RetryIn(Duration::from_secs(1))
        );
    }

    #[test]
    fn periodic_is_constant() {
        let mut b = Backoff::new(RetryConfig {
            retry_type: RetryType::Periodic,
            wait: Duration::from_secs(3),
            ..cfg()
        });
        let now = Instant::now();
        for _ in 0..4 {
            assert_eq!(
                b.on_failure(now),
                RetryDecision::RetryIn(Duration::from_secs(3))
            );
        }
    }

    #[test]
    fn gives_up_after_max_times_or_timeout_unless_forever() {
        let now = Instant::now();
        let mut b = Backoff::new(RetryConfig {
            max_times: Some(2),
            ..cfg()
        });
        assert!(matches!(b.on_failure(now), RetryDecision::RetryIn(_)));
        assert!(matches!(b.on_failure(now), RetryDecision::RetryIn(_)));
        assert_eq!(b.on_failure(now), RetryDecision::GiveUp);

        let mut b = Backoff::new(RetryConfig {
            timeout: Duration::from_secs(10),
            ..cfg()
        });
        assert!(matches!(b.on_failure(now), RetryDecision::RetryIn(_)));
        assert_eq!(
            b.on_failure(now + Duration::from_secs(11)),
            RetryDecision::GiveUp
        );

        let mut b = Backoff::new(RetryConfig {
            timeout: Duration::from_secs(10),
            max_times: Some(1),
            forever: true,
            ..cfg()
        });
        for i in 0..5 {
            assert!(matches!(
                b.on_failure(now + Duration::from_secs(100 * i)),
                RetryDecision::RetryIn(_)
            ));
        }
    }

    #[test]
    fn randomize_stays_within_fluentd_band() {
        let mut b = Backoff::new(RetryConfig {
            retry_type: RetryType::Periodic,
            wait: Duration::from_secs(8),
            ..RetryConfig::default()
        });
        for _ in 0..100 {
            match b.on_failure(Instant::now()) {
                RetryDecision::RetryIn(d) => assert!((7.0..9.0).contains(&d.as_secs_f64())),
                RetryDecision::GiveUp => panic!("gave up"),
            }
        }
    }
}
