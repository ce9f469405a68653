//! What the state machine's openraft half ([`super::StateMachineStore`]) and its query half
//! ([`super::queries::ChunkReader`]) share: the database, the in-memory state
//! ([`super::records::SmState`]) behind its lock, the current snapshot and the snapshot
//! directory's file names.
//!
//! Owns [`SmShared`] and [`CurrentSnapshot`]. It must not apply entries, build or install
//! snapshots, or answer queries: it only hands out the shared pieces.

use super::records::SmState;
use crate::cluster::storage::db::StoreOptions;
use crate::cluster::storage::payload::PayloadStore;
use crate::cluster::NodeId;
use openraft::{BasicNode, SnapshotMeta};
use rocksdb::DB;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// The current snapshot: its metadata and file.
#[derive(Debug, Clone)]
pub(crate) struct CurrentSnapshot {
    pub(crate) meta: SnapshotMeta<NodeId, BasicNode>,
    pub(crate) path: PathBuf,
}

pub(crate) struct SmShared {
    pub(crate) db: Arc<DB>,
    /// Where chunk payloads are read from (their log entry or `sm_chunk_data`).
    pub(crate) payloads: Arc<PayloadStore>,
    pub(crate) options: StoreOptions,
    pub(crate) snapshot_dir: PathBuf,
    state: RwLock<SmState>,
    current_snapshot: Mutex<Option<CurrentSnapshot>>,
    /// Files handed out by `begin_receiving_snapshot`, by (device, inode), so installing one
    /// renames it instead of copying it.
    receiving: Mutex<HashMap<(u64, u64), PathBuf>>,
    file_counter: AtomicU64,
}

impl SmShared {
    pub(crate) fn new(
        db: Arc<DB>,
        payloads: Arc<PayloadStore>,
        options: StoreOptions,
        snapshot_dir: PathBuf,
        state: SmState,
        current: Option<CurrentSnapshot>,
    ) -> Self {
        SmShared {
            db,
            payloads,
            options,
            snapshot_dir,
            state: RwLock::new(state),
            current_snapshot: Mutex::new(current),
            receiving: Mutex::new(HashMap::new()),
            file_counter: AtomicU64::new(0),
        }
    }

    pub(crate) fn read_state(&self) -> RwLockReadGuard<'_, SmState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write_state(&self) -> RwLockWriteGuard<'_, SmState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn current(&self) -> MutexGuard<'_, Option<CurrentSnapshot>> {
        self.current_snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn receiving(&self) -> MutexGuard<'_, HashMap<(u64, u64), PathBuf>> {
        self.receiving.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn unique_name(&self, prefix: &str) -> PathBuf {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let n = self.file_counter.fetch_add(1, Ordering::Relaxed);
        self.snapshot_dir.join(format!("{prefix}-{nanos}-{n}"))
    }

    pub(crate) fn snapshot_file_name(&self, meta: &SnapshotMeta<NodeId, BasicNode>) -> PathBuf {
        let index = meta.last_log_id.map_or(0, |id| id.index);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let n = self.file_counter.fetch_add(1, Ordering::Relaxed);
        self.snapshot_dir
            .join(format!("snap-{index:020}-{nanos}-{n}.bin"))
    }
}
