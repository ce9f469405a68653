//! The chunk state machine on RocksDB: openraft's [`RaftStateMachine`] and
//! [`RaftSnapshotBuilder`] for the node's storage.
//!
//! Owns [`StateMachineStore`], which glues the parts below to openraft: each `apply` call runs
//! the pure rules ([`apply`]) over its entries under the state's write lock and persists the
//! resulting mutations ([`persist`]). `apply` is deterministic: its answers depend only on the
//! log and [`StoreOptions::dedup_window`], which must be equal on every node. It must not
//! decide when to seal or upload, nor talk to the network.
//!
//! - [`records`]: the records of the column families and the part kept in memory, [`SmState`].
//! - [`apply`]: the rules, a pure function from (state, entry) to (answer, mutations).
//! - [`persist`]: mutations to one `WriteBatch`; loading the column families at open.
//! - [`snapshot`]: building, installing and picking snapshot files.
//! - [`queries`]: [`ChunkReader`], the read-only view the uploader and admin API use.
//! - [`handle`]: what the store and its readers share.
//!
//! # Storage
//!
//! RocksDB is the authority; what apply and the queries need (pending chunks' records, sealed
//! batches with their chunks' totals, the dedup window's keys, the applied state) is kept in
//! memory ([`SmState`]) and loaded at open. Chunk payloads stay on disk
//! (blob files), written once: in their Raft log entry, which the state machine refers to
//! (see [`crate::cluster::storage::payload`]). One `apply` call is one `WriteBatch` holding every change plus the new
//! applied state and membership. It is written without fsync: the entries are durable in the
//! Raft log, openraft re-applies committed entries after a crash, and the shared, ordered WAL
//! is synced by the next log append, by `build_snapshot` (`flush_wal(true)` before the snapshot
//! is reported) and by `purge` (so the log behind the state goes only after the state is durable).

pub(crate) mod apply;
mod handle;
#[cfg(test)]
mod model_tests;
pub(crate) mod persist;
pub(crate) mod queries;
pub(crate) mod records;
mod snapshot;

use self::apply::{apply_entry, Mutation};
use self::handle::SmShared;
use self::persist::{load_state, read_install_marker, write_applied};
use self::queries::ChunkReader;
use crate::cluster::storage::db::{blocking, storage_error, StoreOptions};
use crate::cluster::storage::payload::PayloadStore;
use crate::cluster::{ClusterError, ClusterResponse, NodeId, TypeConfig};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StoredMembership,
};
use rocksdb::DB;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tracing::{info, warn};

/// The state-machine half of the node's storage. Cheap to clone; a clone is also its
/// snapshot builder.
#[derive(Clone)]
pub(crate) struct StateMachineStore {
    shared: Arc<SmShared>,
}

impl StateMachineStore {
    /// Load the state machine from `db`, finishing an interrupted snapshot install and picking
    /// the current snapshot file. Blocking.
    pub(crate) fn open(
        db: Arc<DB>,
        payloads: Arc<PayloadStore>,
        snapshot_dir: PathBuf,
        options: StoreOptions,
    ) -> Result<Self, ClusterError> {
        crate::durable_fs::create_dir_all_durably(&snapshot_dir)?;
        if let Some(name) = read_install_marker(&db)? {
            let path = snapshot_dir.join(String::from_utf8_lossy(&name).as_ref());
            warn!(path = %path.display(), "finishing an interrupted snapshot install");
            snapshot::load_snapshot_into_db(&db, &payloads, &path)?;
        }
        let state = load_state(&db)?;
        let current = snapshot::pick_current_snapshot(&snapshot_dir, state.applied.last_applied)?;
        info!(
            last_applied = ?state.applied.last_applied,
            pending_chunks = state.pending.len(),
            batches = state.batches.len(),
            remembered_ids = state.dedup.len(),
            snapshot = ?current.as_ref().map(|c| c.meta.snapshot_id.clone()),
            "cluster state machine opened"
        );
        Ok(StateMachineStore {
            shared: Arc::new(SmShared::new(
                db,
                payloads,
                options,
                snapshot_dir,
                state,
                current,
            )),
        })
    }

    /// A query handle that outlives moves of the store into openraft.
    pub(crate) fn reader(&self) -> ChunkReader {
        ChunkReader::new(self.shared.clone())
    }

    /// The log half over the same database, for tests that apply entries without openraft
    /// (they must append them first, as openraft does: payloads are read from the log).
    #[cfg(test)]
    pub(crate) fn log_store_for_test(&self) -> crate::cluster::storage::LogStore {
        crate::cluster::storage::LogStore::new(
            self.shared.db.clone(),
            self.shared.payloads.clone(),
            0,
        )
    }

    /// The indexes of every entry physically in the log, kept ones below the purge point
    /// included (tests check that none is left behind).
    #[cfg(test)]
    pub(crate) fn stored_log_indexes_for_test(&self) -> Vec<u64> {
        use crate::cluster::storage::db::{cf, decode_index_key, CF_LOG};
        let db = &self.shared.db;
        db.iterator_cf(cf(db, CF_LOG).unwrap(), rocksdb::IteratorMode::Start)
            .map(|item| decode_index_key(&item.unwrap().0).unwrap())
            .collect()
    }

    /// Write the install marker as `install_snapshot` does before loading a file, to test the
    /// roll-forward at open.
    #[cfg(test)]
    pub(crate) fn write_install_marker_for_test(&self, name: &str) -> Result<(), ClusterError> {
        persist::write_install_marker(&self.shared.db, name)
    }

    fn apply_blocking(
        shared: &SmShared,
        entries: Vec<Entry<TypeConfig>>,
    ) -> Result<Vec<ClusterResponse>, ClusterError> {
        let db = &shared.db;
        let mut state = shared.write_state();
        let mut mutations: Vec<Mutation> = Vec::new();
        let responses: Vec<ClusterResponse> = entries
            .into_iter()
            .map(|entry| {
                apply_entry(
                    &mut state,
                    entry,
                    shared.options.dedup_window,
                    &mut mutations,
                )
            })
            .collect();
        let result = {
            // A chunk confirmed here takes its kept log entry along (see `payload`).
            let payloads = shared.payloads.lock();
            write_applied(db, &mutations, &state.applied, payloads.log_purged())
        };
        if let Err(e) = result {
            // Memory is ahead of the disk now: reload what is really stored.
            match load_state(db) {
                Ok(reloaded) => *state = reloaded,
                Err(e) => warn!(error = %e, "reloading state machine after a failed apply"),
            }
            return Err(e);
        }
        Ok(responses)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let shared = self.shared.clone();
        blocking(move || snapshot::build_snapshot(&shared))
            .await
            .map_err(|e| storage_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
    {
        let state = self.shared.read_state();
        Ok((state.applied.last_applied, state.applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ClusterResponse>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let shared = self.shared.clone();
        blocking(move || Self::apply_blocking(&shared, entries))
            .await
            .map_err(|e| storage_error(ErrorSubject::StateMachine, ErrorVerb::Write, e))
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<tokio::fs::File>, StorageError<NodeId>> {
        let shared = self.shared.clone();
        blocking(move || {
            let path = shared.unique_name("tmp-recv");
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)?;
            let meta = file.metadata()?;
            shared.receiving().insert((meta.dev(), meta.ino()), path);
            Ok(Box::new(tokio::fs::File::from_std(file)))
        })
        .await
        .map_err(|e| storage_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        mut snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError<NodeId>> {
        let signature = Some(meta.signature());
        let flushed = snapshot.flush().await;
        let received = match flushed {
            Ok(()) => (*snapshot).into_std().await,
            Err(e) => {
                return Err(storage_error(
                    ErrorSubject::Snapshot(signature),
                    ErrorVerb::Write,
                    e.into(),
                ))
            }
        };
        let shared = self.shared.clone();
        let meta_owned = meta.clone();
        blocking(move || snapshot::install_snapshot(&shared, &meta_owned, received))
            .await
            .map_err(|e| storage_error(ErrorSubject::Snapshot(signature), ErrorVerb::Write, e))
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let shared = self.shared.clone();
        blocking(move || {
            let current = shared.current();
            match &*current {
                Some(c) => Ok(Some(Snapshot {
                    meta: c.meta.clone(),
                    snapshot: Box::new(tokio::fs::File::from_std(File::open(&c.path)?)),
                })),
                None => Ok(None),
            }
        })
        .await
        .map_err(|e| storage_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))
    }
}
