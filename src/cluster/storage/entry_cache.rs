//! The most recently appended Raft log entries, kept in memory so that replication and apply
//! do not read back from RocksDB what the log store has just written.
//!
//! openraft 0.9 reads the log once per follower (each replication stream sends what it reads)
//! and once more to apply committed entries; right after an append, all three want the same
//! few entries. Without this cache each read goes through RocksDB (memtable or blob file, LZ4)
//! and copies every payload out of the stored msgpack; here an entry is shared: its payload is
//! a `Bytes`, so a clone is a reference count.
//!
//! Owns only the window of entries: the log store decides what enters it (entries that are
//! durable: put after the synced write) and what leaves it (truncate, purge). The window is
//! contiguous and ends at the last appended entry; it is bounded by its payload bytes.
//! It must not be the only copy of anything: whatever it holds is also in RocksDB.
//!
//! An entry enters the window with its payload and chunk ids copied into allocations of their
//! own ([`ClusterRequest::detach`]): they are often slices of a larger buffer (the frame a
//! chunk arrived in on the leader, the whole AppendEntries message on a follower), which a
//! cached slice would keep alive whole. The copy costs one pass over the payload; the reads it
//! saves cost a RocksDB read and a decode each, three per entry on the leader.
//!
//! [`ClusterRequest::detach`]: crate::cluster::ClusterRequest::detach

use crate::cluster::TypeConfig;
use openraft::{Entry, EntryPayload};
use std::collections::VecDeque;
use std::sync::Mutex;

/// Default of the byte budget: none, the cache is opt-in. Measured (docs/benchmarks.md): in
/// session 13 it saved 10–18 % CPU per event at 8 connections, in session 15 (after other
/// changes) nothing measurable (3.69 against 3.73 CPU s per million events over four rounds
/// each). The leader's memory with it, once taken for the cache's cost, was the state machine
/// pinning frames by chunk ids (fixed in session 15); with 2 MiB a 5 GB backlog stays < 64 MB.
pub const DEFAULT_LOG_CACHE: usize = 0;

/// The window of recent entries (see the module doc). Shared by the log store and its readers.
pub(crate) struct EntryCache {
    budget: usize,
    window: Mutex<Window>,
}

#[derive(Default)]
struct Window {
    /// Contiguous by index, oldest first.
    entries: VecDeque<Entry<TypeConfig>>,
    /// Sum of [`weight`] over `entries`.
    bytes: usize,
}

/// What an entry counts against the budget: its payload, plus a little for the rest.
fn weight(entry: &Entry<TypeConfig>) -> usize {
    let payload = match &entry.payload {
        EntryPayload::Normal(request) => request.payload().map_or(0, |p| p.len()),
        _ => 0,
    };
    payload + 128
}

/// `entry` with its payload and chunk ids in allocations of their own (see the module doc).
fn compact(entry: &Entry<TypeConfig>) -> Entry<TypeConfig> {
    let mut kept = entry.clone();
    if let EntryPayload::Normal(request) = &mut kept.payload {
        request.detach();
    }
    kept
}

impl EntryCache {
    /// A cache of at most `budget` bytes of entries; 0 keeps nothing.
    pub(crate) fn new(budget: usize) -> Self {
        EntryCache {
            budget,
            window: Mutex::new(Window::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Entries just made durable, in index order. Entries that do not continue the window
    /// replace it; the oldest leave while the window is over budget.
    pub(crate) fn put(&self, appended: &[Entry<TypeConfig>]) {
        if self.budget == 0 || appended.is_empty() {
            return;
        }
        let mut window = self.lock();
        let continues = window
            .entries
            .back()
            .is_none_or(|last| last.log_id.index.checked_add(1) == Some(appended[0].log_id.index));
        if !continues {
            *window = Window::default();
        }
        for entry in appended {
            window.bytes += weight(entry);
            window.entries.push_back(compact(entry));
        }
        while window.bytes > self.budget {
            let Some(oldest) = window.entries.pop_front() else {
                break;
            };
            window.bytes -= weight(&oldest);
        }
    }

    /// Forget entries at `index` and after (the log is truncated there).
    pub(crate) fn truncate(&self, index: u64) {
        let mut window = self.lock();
        while window
            .entries
            .back()
            .is_some_and(|last| last.log_id.index >= index)
        {
            let Some(entry) = window.entries.pop_back() else {
                break;
            };
            window.bytes -= weight(&entry);
        }
    }

    /// Forget entries up to and including `index` (purged).
    pub(crate) fn purge(&self, index: u64) {
        let mut window = self.lock();
        while window
            .entries
            .front()
            .is_some_and(|first| first.log_id.index <= index)
        {
            let Some(entry) = window.entries.pop_front() else {
                break;
            };
            window.bytes -= weight(&entry);
        }
    }

    /// The cached part of `[start, end)` (`end = None`: to the last entry): the entries from
    /// `max(start, first cached)` on, and that first index; `None` when the window holds
    /// nothing of the range. The caller reads `[start, first)` from the store.
    pub(crate) fn tail_of(
        &self,
        start: u64,
        end: Option<u64>,
    ) -> Option<(u64, Vec<Entry<TypeConfig>>)> {
        let window = self.lock();
        let first = window.entries.front()?.log_id.index;
        let last = window.entries.back()?.log_id.index;
        let from = start.max(first);
        let to = end.map_or(last, |end| end.saturating_sub(1).min(last));
        if end.is_some_and(|end| end <= from) || from > to {
            return None;
        }
        let skip = (from - first) as usize;
        let take = (to - from) as usize + 1;
        let entries = window
            .entries
            .iter()
            .skip(skip)
            .take(take)
            .cloned()
            .collect();
        Some((from, entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::shared_bytes::lies_within;
    use crate::cluster::ClusterRequest;
    use bytes::Bytes;
    use openraft::{CommittedLeaderId, LogId};

    fn entry(index: u64, payload: usize) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(ClusterRequest::AppendChunk {
                origin: None,
                tag: "t".into(),
                entries: Bytes::from(vec![0u8; payload]),
                count: 1,
                received_unix_ms: 0,
            }),
        }
    }

    fn indexes(entries: &[Entry<TypeConfig>]) -> Vec<u64> {
        entries.iter().map(|e| e.log_id.index).collect()
    }

    #[test]
    fn serves_the_cached_tail_of_a_range() {
        let cache = EntryCache::new(1 << 20);
        cache.put(&[entry(5, 10), entry(6, 10), entry(7, 10)]);
        let (from, got) = cache.tail_of(0, None).unwrap();
        assert_eq!((from, indexes(&got)), (5, vec![5, 6, 7]));
        let (from, got) = cache.tail_of(6, Some(7)).unwrap();
        assert_eq!((from, indexes(&got)), (6, vec![6]));
        let (from, got) = cache.tail_of(3, Some(100)).unwrap();
        assert_eq!((from, indexes(&got)), (5, vec![5, 6, 7]));
        assert!(cache.tail_of(8, None).is_none());
        assert!(cache.tail_of(0, Some(5)).is_none());
        assert!(cache.tail_of(6, Some(6)).is_none());
    }

    #[test]
    fn stays_within_its_budget_and_contiguous() {
        let cache = EntryCache::new(3 * (1000 + 128));
        for index in 1..=10 {
            cache.put(&[entry(index, 1000)]);
        }
        let (from, got) = cache.tail_of(0, None).unwrap();
        assert_eq!((from, indexes(&got)), (8, vec![8, 9, 10]));
        // A gap (the log was truncated and rewritten elsewhere) starts a new window.
        cache.put(&[entry(20, 10)]);
        assert_eq!(indexes(&cache.tail_of(0, None).unwrap().1), vec![20]);
        // An entry larger than the budget is not kept at all.
        cache.put(&[entry(21, 10_000)]);
        assert!(cache.tail_of(0, None).is_none());
        assert_eq!(cache.lock().bytes, 0);
    }

    #[test]
    fn truncate_and_purge_forget_their_ranges() {
        let cache = EntryCache::new(1 << 20);
        cache.put(&(1..=6).map(|i| entry(i, 1)).collect::<Vec<_>>());
        cache.truncate(5);
        assert_eq!(
            indexes(&cache.tail_of(0, None).unwrap().1),
            vec![1, 2, 3, 4]
        );
        cache.purge(2);
        assert_eq!(indexes(&cache.tail_of(0, None).unwrap().1), vec![3, 4]);
        // After a truncation the log continues at 5 again.
        cache.put(&[entry(5, 1)]);
        assert_eq!(indexes(&cache.tail_of(0, None).unwrap().1), vec![3, 4, 5]);
        cache.purge(10);
        assert!(cache.tail_of(0, None).is_none());
        assert_eq!(cache.lock().bytes, 0);
    }

    #[test]
    fn keeps_its_own_copy_of_a_payload_and_chunk_id() {
        let cache = EntryCache::new(1 << 20);
        // As on a leader: payload and chunk id are slices of the frame the chunk arrived in.
        let frame = Bytes::from(vec![7u8; 64 * 1024]);
        let mut e = entry(1, 0);
        if let EntryPayload::Normal(ClusterRequest::AppendChunk {
            entries, origin, ..
        }) = &mut e.payload
        {
            *entries = frame.slice(100..200);
            *origin = Some(frame.slice(10..26));
        }
        cache.put(&[e]);
        let (_, got) = cache.tail_of(0, None).unwrap();
        let EntryPayload::Normal(ClusterRequest::AppendChunk {
            entries, origin, ..
        }) = &got[0].payload
        else {
            panic!("not an append");
        };
        let origin = origin.as_ref().unwrap();
        assert_eq!(
            (&entries[..], &origin[..]),
            (&frame[100..200], &frame[10..26])
        );
        assert!(
            !lies_within(entries, &frame),
            "the cache pins the frame by the payload"
        );
        assert!(
            !lies_within(origin, &frame),
            "the cache pins the frame by the chunk id"
        );
    }

    #[test]
    fn zero_budget_keeps_nothing() {
        let cache = EntryCache::new(0);
        cache.put(&[entry(1, 1)]);
        assert!(cache.tail_of(0, None).is_none());
    }
}
