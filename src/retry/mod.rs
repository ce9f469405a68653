//! Retry and backoff: the one mechanism every output's failed flushes go through.
//!
//! Owns Fluentd's retry parameters (`retry_type`, `retry_wait`,
//! `retry_exponential_backoff_base`, `retry_max_interval`, `retry_randomize`, `retry_timeout`,
//! `retry_max_times`, `retry_forever`). The output driver keeps one [`Backoff`] per failing
//! chunk (so one chunk in backoff never holds back the others), the cluster uploader one per
//! batch. It only computes times; waiting and moving chunks is the caller's business. The
//! parameters themselves are read in [`config`].

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
    #[cfg(test)]
    pub fn next_attempt(&self) -> Option<Instant> {
        self.next_attempt
    }

    /// Record a failure at `now` and decide what comes next. The wait returned is the real
    /// one: never longer than `retry_max_interval` (when set, randomization included), never
    /// past what remains of `retry_timeout` (with `retry_forever`: never longer than
    /// `retry_timeout` itself).
    pub fn on_failure(&mut self, now: Instant) -> RetryDecision {
        let first = *self.first_failure.get_or_insert(now);
        self.steps += 1;
        let elapsed = now.saturating_duration_since(first);
        let cap = if self.cfg.forever {
            self.cfg.timeout
        } else {
            let out_of_times = self.cfg.max_times.is_some_and(|max| self.steps > max);
            let out_of_time = elapsed >= self.cfg.timeout;
            if out_of_times || out_of_time {
                self.reset();
                return RetryDecision::GiveUp;
            }
            self.cfg.timeout - elapsed
        };
        let wait = self.wait_for_step(self.steps).min(cap);
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
        if self.cfg.randomize {
            secs *= rand::thread_rng().gen_range(0.875..1.125);
        }
        if let Some(max) = self.cfg.max_interval {
            secs = secs.min(max.as_secs_f64());
        }
        // The caller caps by the retry timeout; this only keeps the float in range.
        if !secs.is_finite() {
            return Duration::MAX;
        }
        Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::MAX)
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

    fn wait(d: RetryDecision) -> Duration {
        match d {
            RetryDecision::RetryIn(d) => d,
            RetryDecision::GiveUp => panic!("gave up"),
        }
    }

    #[test]
    fn wait_never_exceeds_max_interval_even_randomized() {
        let mut b = Backoff::new(RetryConfig {
            max_interval: Some(Duration::from_secs(4)),
            ..RetryConfig::default()
        });
        let now = Instant::now();
        for _ in 0..200 {
            let w = wait(b.on_failure(now));
            assert!(w <= Duration::from_secs(4), "{w:?}");
        }
    }

    #[test]
    fn wait_never_goes_past_the_remaining_retry_timeout() {
        // Default: no max interval, 72h timeout; after 60 failures the exponential is ~1e18 s.
        let mut b = Backoff::new(cfg());
        let t0 = Instant::now();
        for _ in 0..59 {
            assert!(wait(b.on_failure(t0)) <= Duration::from_secs(72 * 3600));
        }
        let later = t0 + Duration::from_secs(72 * 3600 - 30);
        assert_eq!(wait(b.on_failure(later)), Duration::from_secs(30));
        assert_eq!(b.next_attempt(), Some(later + Duration::from_secs(30)));
        // At the deadline the next failure gives up instead of waiting again.
        assert_eq!(
            b.on_failure(later + Duration::from_secs(30)),
            RetryDecision::GiveUp
        );

        let mut b = Backoff::new(RetryConfig {
            timeout: Duration::from_secs(10),
            ..cfg()
        });
        let waits: Vec<_> = (0..6)
            .map(|i| wait(b.on_failure(t0 + Duration::from_secs(i))).as_secs())
            .collect();
        // 1, 2, 4, 8 → capped to 10-3=7, 16 → 6, 32 → 5.
        assert_eq!(waits, vec![1, 2, 4, 7, 6, 5]);
    }

    #[test]
    fn forever_waits_at_most_the_retry_timeout() {
        let mut b = Backoff::new(RetryConfig {
            forever: true,
            timeout: Duration::from_secs(100),
            ..cfg()
        });
        let now = Instant::now();
        let mut last = Duration::ZERO;
        for i in 0..100 {
            last = wait(b.on_failure(now + Duration::from_secs(1000 * i)));
            assert!(last <= Duration::from_secs(100));
        }
        assert_eq!(last, Duration::from_secs(100));
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
