//! The node-wide budget for bytes held by frames in flight (`<system> max_in_flight_bytes`).
//!
//! Owns the accounting only: a semaphore counting KiB shared by every in_forward of the node,
//! and per connection a second one capping that connection's share. A connection acquires
//! budget before it reads bytes into its buffer (a partly received frame) and keeps it, moved to
//! the frame, until the frame's ack was written; when the budget is spent it waits (reading
//! pauses: backpressure) instead of growing memory. Must not read sockets or know frames.

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Default of `<system> max_in_flight_bytes`: room for a frame of Fluentd's largest default
/// chunk (`chunk_limit_size 256m` of its file buffer, sent whole by its out_forward: a little
/// over 256 MiB on the wire) and as much again for other connections. A smaller default would
/// refuse such a frame on every retry and stall that sender for good.
pub const DEFAULT_MAX_IN_FLIGHT_BYTES: u64 = 512 << 20;
/// Smallest budget accepted (one read of a connection must fit).
pub const MIN_IN_FLIGHT_BYTES: u64 = 1 << 20;

/// KiB needed to hold `bytes` (rounded up).
pub fn kib(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

/// The node's budget; cheap to clone (all clones share it).
#[derive(Debug, Clone)]
pub struct InFlightBudget {
    node: Arc<Semaphore>,
    total_kib: u32,
}

impl InFlightBudget {
    /// A budget of `bytes` (at least [`MIN_IN_FLIGHT_BYTES`]).
    pub fn new(bytes: u64) -> Self {
        let total_kib = kib(bytes.max(MIN_IN_FLIGHT_BYTES))
            .min(u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX));
        InFlightBudget {
            node: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
        }
    }

    pub fn total_bytes(&self) -> u64 {
        self.total_kib as u64 * 1024
    }

    /// Bytes not held by any connection right now.
    pub fn available_bytes(&self) -> u64 {
        self.node.available_permits() as u64 * 1024
    }

    /// The budget of one connection, which may hold at most `share_bytes` (capped by the total).
    pub fn connection(&self, share_bytes: u64) -> ConnectionBudget {
        let share_kib = kib(share_bytes).clamp(1, self.total_kib);
        ConnectionBudget {
            node: self.node.clone(),
            conn: Arc::new(Semaphore::new(share_kib as usize)),
            share_kib,
        }
    }
}

impl Default for InFlightBudget {
    fn default() -> Self {
        InFlightBudget::new(DEFAULT_MAX_IN_FLIGHT_BYTES)
    }
}

/// One connection's access to the node budget.
#[derive(Debug)]
pub struct ConnectionBudget {
    node: Arc<Semaphore>,
    conn: Arc<Semaphore>,
    share_kib: u32,
}

impl ConnectionBudget {
    /// The most this connection may hold, in bytes.
    pub fn share_bytes(&self) -> u64 {
        self.share_kib as u64 * 1024
    }

    /// Wait until `kib` more KiB (at most the share) are granted: first within this
    /// connection's share, then from the node. Cancel-safe: nothing is held on cancellation.
    pub async fn acquire(&self, kib: u32) -> Held {
        let kib = kib.min(self.share_kib);
        if kib == 0 {
            return Held::default();
        }
        // Neither semaphore is ever closed.
        let conn = self.conn.clone().acquire_many_owned(kib).await.ok();
        let node = self.node.clone().acquire_many_owned(kib).await.ok();
        Held { conn, node }
    }

    /// Like [`ConnectionBudget::acquire`], but only if it is granted at once.
    pub fn try_acquire(&self, kib: u32) -> Option<Held> {
        let kib = kib.min(self.share_kib);
        if kib == 0 {
            return Some(Held::default());
        }
        let conn = self.conn.clone().try_acquire_many_owned(kib).ok()?;
        let node = self.node.clone().try_acquire_many_owned(kib).ok()?;
        Some(Held {
            conn: Some(conn),
            node: Some(node),
        })
    }
}

/// Budget held (released when dropped).
#[derive(Debug, Default)]
pub struct Held {
    conn: Option<OwnedSemaphorePermit>,
    node: Option<OwnedSemaphorePermit>,
}

impl Held {
    pub fn kib(&self) -> u32 {
        self.node.as_ref().map_or(0, |p| p.num_permits() as u32)
    }

    pub fn bytes(&self) -> u64 {
        self.kib() as u64 * 1024
    }

    /// Add `other` to this hold.
    pub fn merge(&mut self, other: Held) {
        fn join(a: &mut Option<OwnedSemaphorePermit>, b: Option<OwnedSemaphorePermit>) {
            match (a.as_mut(), b) {
                (Some(a), Some(b)) => a.merge(b),
                (None, b) => *a = b,
                (Some(_), None) => {}
            }
        }
        join(&mut self.conn, other.conn);
        join(&mut self.node, other.node);
    }

    /// Move up to `kib` KiB out of this hold into a new one.
    pub fn split(&mut self, kib: u32) -> Held {
        let kib = kib.min(self.kib()) as usize;
        if kib == 0 {
            return Held::default();
        }
        Held {
            conn: self.conn.as_mut().and_then(|p| p.split(kib)),
            node: self.node.as_mut().and_then(|p| p.split(kib)),
        }
    }

    /// Keep at most `kib` KiB; release the rest now.
    pub fn shrink_to(&mut self, kib: u32) {
        let excess = self.kib().saturating_sub(kib);
        drop(self.split(excess));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn connections_share_the_node_budget_and_wait_when_it_is_spent() {
        let budget = InFlightBudget::new(4 << 20);
        assert_eq!(budget.total_bytes(), 4 << 20);
        let a = budget.connection(3 << 20);
        let b = budget.connection(3 << 20);
        let mut held_a = a.acquire(kib(3 << 20)).await;
        assert_eq!(held_a.bytes(), 3 << 20);
        // a is at its share: more waits even though the node has 1 MiB left.
        assert!(a.try_acquire(1).is_none());
        // b gets the node's last MiB, then waits.
        let held_b = b.acquire(1024).await;
        assert_eq!(budget.available_bytes(), 0);
        let waiting = tokio::spawn(async move { b.acquire(1024).await.bytes() });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        // A frame of a's moves out and is released: b proceeds.
        let frame = held_a.split(1024);
        assert_eq!((held_a.kib(), frame.kib()), (2048, 1024));
        drop(frame);
        assert_eq!(waiting.await.unwrap(), 1 << 20);
        held_a.shrink_to(0);
        assert_eq!(held_a.kib(), 0);
        assert_eq!(budget.available_bytes(), 3 << 20);
        drop(held_b);
        assert_eq!(budget.available_bytes(), 4 << 20);
    }

    #[test]
    fn requests_are_capped_by_share_and_total() {
        let budget = InFlightBudget::new(2 << 20);
        let c = budget.connection(u64::MAX);
        assert_eq!(c.share_bytes(), 2 << 20);
        let mut h = c.try_acquire(u32::MAX).unwrap();
        assert_eq!(h.bytes(), 2 << 20);
        h.merge(Held::default());
        assert_eq!(h.bytes(), 2 << 20);
        assert_eq!(kib(1), 1);
        assert_eq!(kib(2048), 2);
        assert_eq!(InFlightBudget::new(1).total_bytes(), MIN_IN_FLIGHT_BYTES);
    }
}
