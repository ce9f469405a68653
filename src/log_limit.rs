//! Rate-limited warnings: a condition that can repeat per chunk or per connection is logged at
//! most once per interval, with a count of the occurrences held back since the last line.
//!
//! Owns only the timing decision; callers write the log line themselves so it keeps its own
//! structured fields.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Default interval between repeated warnings of one kind.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Decides when a repeating warning may be logged again.
#[derive(Debug)]
pub struct WarnLimiter {
    interval: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Default for WarnLimiter {
    fn default() -> Self {
        WarnLimiter::new(WARN_INTERVAL)
    }
}

impl WarnLimiter {
    pub fn new(interval: Duration) -> Self {
        WarnLimiter {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// Record `n` occurrences; `Some(held_back_since_last_line)` when a line should be logged now.
    pub fn check_n(&self, n: u64) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match s.0 {
            Some(last) if now.duration_since(last) < self.interval => {
                s.1 += n;
                None
            }
            _ => {
                let held_back = s.1;
                *s = (Some(now), 0);
                Some(held_back)
            }
        }
    }

    /// Record one occurrence; see [`WarnLimiter::check_n`].
    pub fn check(&self) -> Option<u64> {
        self.check_n(1)
    }

    /// For a periodic timer: `Some(held_back)` when occurrences were held back and the interval
    /// since the last line has passed, so the count is logged even if the condition stopped
    /// repeating. The caller logs the count; the interval restarts as if a line was logged.
    pub fn flush_due(&self) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match s.0 {
            Some(last) if s.1 > 0 && last.elapsed() >= self.interval => {
                let held_back = s.1;
                *s = (Some(Instant::now()), 0);
                Some(held_back)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_first_then_counts_until_interval_passes() {
        let l = WarnLimiter::new(Duration::from_millis(50));
        assert_eq!(l.check(), Some(0));
        assert_eq!(l.check(), None);
        assert_eq!(l.check_n(5), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(l.check(), Some(6));
    }

    #[test]
    fn flush_reports_held_back_counts_once_the_interval_passed() {
        let l = WarnLimiter::new(Duration::from_millis(50));
        assert_eq!(l.flush_due(), None);
        assert_eq!(l.check_n(3), Some(0));
        assert_eq!(l.flush_due(), None, "nothing held back yet");
        assert_eq!(l.check_n(1234), None);
        assert_eq!(l.flush_due(), None, "interval not over");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(l.flush_due(), Some(1234));
        assert_eq!(l.flush_due(), None, "counted once");
        // The flush started a new interval: the next occurrence is held back, not lost.
        assert_eq!(l.check(), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(l.check_n(2), Some(1));
    }
}
