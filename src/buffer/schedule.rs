//! Flush scheduling: when a staged chunk is due to be queued (`flush_mode`, `flush_interval`,
//! `timekey` + `timekey_wait`), and the background task that seals chunks when that time comes.
//!
//! It must not queue chunks by any other path than sealing them (`queue` does the rest) and
//! must not touch the not-before times of released chunks (the output driver sets those).

use super::config::FlushMode;
use super::{Settings, Shared, Stage, State};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

impl Settings {
    /// When a chunk created at `created` for `timekey` is due to be queued (None: only when
    /// full, on `enqueue_all` or at shutdown; `Immediate` is handled when appends complete).
    pub(super) fn flush_at(&self, created: SystemTime, timekey: Option<i64>) -> Option<SystemTime> {
        match self.flush_mode {
            FlushMode::Interval => Some(created + self.flush_interval),
            FlushMode::Immediate => None,
            FlushMode::Lazy => {
                let (start, tk) = (timekey?, self.timekey?);
                let end = start.checked_add(tk)?;
                let end = std::time::UNIX_EPOCH + Duration::from_secs(end.max(0) as u64);
                Some(end + self.timekey_wait)
            }
        }
    }
}

impl Shared {
    /// Seal every staged chunk whose flush time has come; returns the next flush time.
    fn flush_due(&self, st: &mut State, now: SystemTime) -> Option<SystemTime> {
        let mut due = Vec::new();
        let mut next: Option<SystemTime> = None;
        for (id, c) in &st.chunks {
            if c.stage != Stage::Staged || c.sealed {
                continue;
            }
            if let Some(at) = c.flush_at {
                if at <= now {
                    due.push(*id);
                } else {
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
            }
        }
        for id in due {
            self.seal(st, id);
        }
        next
    }
}

/// The background task that queues staged chunks when their flush time comes.
pub(super) async fn flush_loop(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let now = SystemTime::now();
        let next = {
            let mut st = shared.lock();
            if st.closed {
                return;
            }
            shared.flush_due(&mut st, now)
        };
        let wait = next
            .map(|at| at.duration_since(now).unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = shared.schedule_changed.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
