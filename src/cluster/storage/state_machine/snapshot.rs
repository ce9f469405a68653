//! The state machine's snapshots: building one from a consistent RocksDB snapshot, installing
//! a received one, and picking the current snapshot file at open.
//!
//! `build_snapshot` streams a consistent RocksDB snapshot of the state-machine column families
//! (every chunk's payload included, also those still read from their log entry) into `snapshots/tmp-build-*`, syncs it and renames it to `snapshots/snap-*.bin`.
//! `install_snapshot` validates the received file completely (checksums, record count,
//! metadata), renames it to `snap-*.bin`, then writes a synced *install marker* naming it, clears
//! the state-machine column families and loads the file in bounded write batches; the last
//! batch sets the applied state and removes the marker, synced. A crash before the marker leaves
//! the old state (a `snap-*` newer than the applied state is discarded at open); a crash after
//! it is rolled forward at open by installing the marked file again — so a reopened store holds
//! either the old or the new state, never a mix.
//!
//! Owns those procedures and the snapshot directory's life cycle. It must not define the file
//! format (that is [`crate::cluster::storage::snapshot_file`]) nor apply log entries.

use super::handle::{CurrentSnapshot, SmShared};
use super::persist::{load_state, write_install_marker, KEY_APPLIED, KEY_INSTALLING};
use super::records::AppliedRecord;
use crate::cluster::storage::db::{
    cf, decode_index_key, encode, CF_CHUNK_DATA, CF_CHUNK_META, CF_SM_META, SM_DATA_CFS,
};
use crate::cluster::storage::payload::PayloadStore;
use crate::cluster::storage::snapshot_file::{SnapshotHeader, SnapshotReader, SnapshotWriter};
use crate::cluster::{ClusterError, NodeId, TypeConfig};
use openraft::storage::Snapshot;
use openraft::{BasicNode, LogId, SnapshotMeta};
use rocksdb::{IteratorMode, WriteBatch, WriteOptions, DB};
use std::fs::{self, File};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::{debug, info, warn};

/// Write batch size while loading a snapshot.
const INSTALL_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Build a snapshot of the applied state into a new `snap-*.bin` file and make it current.
/// Blocking.
pub(crate) fn build_snapshot(shared: &SmShared) -> Result<Snapshot<TypeConfig>, ClusterError> {
    let db = &shared.db;
    // Applies hold the write lock while they write, so the memory and the RocksDB snapshot
    // taken under the read lock describe the same applied state.
    let (db_snapshot, header) = {
        let state = shared.read_state();
        let db_snapshot = db.snapshot();
        let applied = &state.applied;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let snapshot_id = match applied.last_applied {
            Some(id) => format!("{}-{}-{nanos}", id.leader_id, id.index),
            None => format!("none-{nanos}"),
        };
        let header = SnapshotHeader {
            meta: SnapshotMeta {
                last_log_id: applied.last_applied,
                last_membership: applied.membership.clone(),
                snapshot_id,
            },
            next_dedup_seq: applied.next_dedup_seq,
            dead_lettered_batches: applied.dead_lettered_batches,
        };
        (db_snapshot, header)
    };
    // Everything this snapshot reflects becomes durable before it is reported.
    db.flush_wal(true)?;

    let tmp = shared.unique_name("tmp-build");
    let written = (|| {
        let mut writer = SnapshotWriter::new(File::create(&tmp)?, &header)?;
        let mut records = 0u64;
        for (position, name) in SM_DATA_CFS.iter().enumerate() {
            if *name == CF_CHUNK_DATA {
                // Every stored chunk's payload, wherever it lives (see `storage::payload`): a
                // node installing the snapshot has no log entries to refer to.
                for item in db_snapshot.iterator_cf(cf(db, CF_CHUNK_META)?, IteratorMode::Start) {
                    let (key, _) = item?;
                    let index = decode_index_key(&key)?;
                    let payload =
                        shared
                            .payloads
                            .read_at(&db_snapshot, index)?
                            .ok_or_else(|| {
                                ClusterError::Corrupt(format!("chunk {index} has no payload"))
                            })?;
                    writer.record(position as u8 + 1, &key, &payload)?;
                    records += 1;
                }
                continue;
            }
            for item in db_snapshot.iterator_cf(cf(db, name)?, IteratorMode::Start) {
                let (key, value) = item?;
                writer.record(position as u8 + 1, &key, &value)?;
                records += 1;
            }
        }
        writer.finish()?.sync_all()?;
        Ok::<_, ClusterError>(records)
    })();
    drop(db_snapshot);
    let records = match written {
        Ok(records) => records,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let path = shared.snapshot_file_name(&header.meta);
    fs::rename(&tmp, &path)?;
    sync_dir(&shared.snapshot_dir)?;
    let bytes = fs::metadata(&path)?.len();
    info!(
        snapshot_id = %header.meta.snapshot_id,
        last_log_id = ?header.meta.last_log_id,
        records,
        bytes,
        "snapshot built"
    );

    let mut current = shared.current();
    let read = File::open(&path)?;
    replace_current(
        &mut current,
        CurrentSnapshot {
            meta: header.meta.clone(),
            path,
        },
    );
    Ok(Snapshot {
        meta: header.meta,
        snapshot: Box::new(tokio::fs::File::from_std(read)),
    })
}

/// Validate a received snapshot file, then replace the state with it (see the module doc).
/// Blocking.
pub(crate) fn install_snapshot(
    shared: &SmShared,
    meta: &SnapshotMeta<NodeId, BasicNode>,
    mut received: File,
) -> Result<(), ClusterError> {
    let identity = received.metadata().map(|m| (m.dev(), m.ino()))?;
    let ours = shared.receiving().remove(&identity);
    let staged = match ours {
        Some(path) => {
            received.sync_all()?;
            path
        }
        None => {
            // Not a file we handed out (e.g. another store's snapshot): copy it in.
            let path = shared.unique_name("tmp-install");
            let mut copy = File::create(&path)?;
            received.seek(SeekFrom::Start(0))?;
            std::io::copy(&mut received, &mut copy)?;
            copy.sync_all()?;
            path
        }
    };
    drop(received);

    if let Err(e) = validate_snapshot_file(&staged, meta) {
        let _ = fs::remove_file(&staged);
        return Err(e);
    }
    let path = shared.snapshot_file_name(meta);
    fs::rename(&staged, &path)?;
    sync_dir(&shared.snapshot_dir)?;

    let db = &shared.db;
    let mut state = shared.write_state();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| ClusterError::Corrupt("snapshot file name".into()))?;
    write_install_marker(db, name)?;
    let loaded = load_snapshot_into_db(db, &shared.payloads, &path).and_then(|()| load_state(db));
    match loaded {
        Ok(reloaded) => *state = reloaded,
        Err(e) => {
            // The marker stays: the next open rolls the install forward.
            if let Ok(reloaded) = load_state(db) {
                *state = reloaded;
            }
            return Err(e);
        }
    }
    drop(state);
    info!(
        snapshot_id = %meta.snapshot_id,
        last_log_id = ?meta.last_log_id,
        "snapshot installed"
    );
    let mut current = shared.current();
    replace_current(
        &mut current,
        CurrentSnapshot {
            meta: meta.clone(),
            path,
        },
    );
    Ok(())
}

/// Make `next` the current snapshot and delete the previous file (open readers keep theirs).
fn replace_current(current: &mut Option<CurrentSnapshot>, next: CurrentSnapshot) {
    if let Some(previous) = current.replace(next) {
        if let Err(e) = fs::remove_file(&previous.path) {
            warn!(path = %previous.path.display(), error = %e, "removing old snapshot");
        }
    }
}

/// Check a snapshot file end to end and that it describes `meta`.
fn validate_snapshot_file(
    path: &Path,
    meta: &SnapshotMeta<NodeId, BasicNode>,
) -> Result<(), ClusterError> {
    let (mut reader, header) = SnapshotReader::open(File::open(path)?)?;
    if header.meta.last_log_id != meta.last_log_id
        || header.meta.last_membership != meta.last_membership
    {
        return Err(ClusterError::SnapshotMismatch(format!(
            "file holds {:?} / {:?}, metadata says {:?} / {:?}",
            header.meta.last_log_id,
            header.meta.last_membership,
            meta.last_log_id,
            meta.last_membership
        )));
    }
    while let Some(record) = reader.next_record()? {
        if record.cf == 0 || record.cf as usize > SM_DATA_CFS.len() {
            return Err(ClusterError::CorruptSnapshot(format!(
                "unknown column family tag {}",
                record.cf
            )));
        }
    }
    Ok(())
}

/// Replace the state-machine column families with a (validated) snapshot file's content.
/// The caller has written the install marker; the final, synced batch removes it.
pub(crate) fn load_snapshot_into_db(
    db: &DB,
    payloads: &PayloadStore,
    path: &Path,
) -> Result<(), ClusterError> {
    let (mut reader, header) = SnapshotReader::open(File::open(path)?)?;
    let payloads = payloads.lock();
    let mut batch = WriteBatch::default();
    // The chunks replaced no longer need the log entries kept for them; the snapshot brings
    // the payloads of its own.
    payloads.forget_kept_into(&mut batch)?;
    for name in SM_DATA_CFS {
        // Every key of these CFs is an 8-byte index or sequence number.
        batch.delete_range_cf(cf(db, name)?, &[][..], &[0xffu8; 9][..]);
    }
    db.write(batch)?;
    let handles = SM_DATA_CFS
        .iter()
        .map(|name| cf(db, name))
        .collect::<Result<Vec<_>, _>>()?;
    let mut batch = WriteBatch::default();
    while let Some(record) = reader.next_record()? {
        let handle = handles
            .get((record.cf as usize).wrapping_sub(1))
            .ok_or_else(|| {
                ClusterError::CorruptSnapshot(format!("unknown column family tag {}", record.cf))
            })?;
        batch.put_cf(*handle, &record.key, &record.value);
        if batch.size_in_bytes() >= INSTALL_BATCH_BYTES {
            db.write(std::mem::take(&mut batch))?;
        }
    }
    let applied = AppliedRecord {
        last_applied: header.meta.last_log_id,
        membership: header.meta.last_membership,
        next_dedup_seq: header.next_dedup_seq,
        dead_lettered_batches: header.dead_lettered_batches,
    };
    let meta_cf = cf(db, CF_SM_META)?;
    batch.put_cf(meta_cf, KEY_APPLIED, encode(&applied)?);
    batch.delete_cf(meta_cf, KEY_INSTALLING);
    let mut opts = WriteOptions::default();
    opts.set_sync(true);
    db.write_opt(batch, &opts)?;
    Ok(())
}

/// At open: keep the newest complete snapshot file not ahead of the applied state; delete
/// temporary files and the others.
pub(crate) fn pick_current_snapshot(
    dir: &Path,
    applied: Option<LogId<NodeId>>,
) -> Result<Option<CurrentSnapshot>, ClusterError> {
    let mut best: Option<CurrentSnapshot> = None;
    let mut discard = Vec::new();
    for dirent in fs::read_dir(dir)? {
        let path = dirent?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if !(name.starts_with("snap-") && name.ends_with(".bin")) {
            discard.push(path);
            continue;
        }
        let header = File::open(&path)
            .map_err(ClusterError::from)
            .and_then(|f| SnapshotReader::open(f).map(|(_, h)| h));
        match header {
            Ok(h) if h.meta.last_log_id <= applied => {
                let newer = best
                    .as_ref()
                    .is_none_or(|b| h.meta.last_log_id > b.meta.last_log_id);
                if newer {
                    if let Some(previous) = best.take() {
                        discard.push(previous.path);
                    }
                    best = Some(CurrentSnapshot { meta: h.meta, path });
                } else {
                    discard.push(path);
                }
            }
            Ok(_) => discard.push(path),
            Err(e) => {
                warn!(path = %path.display(), error = %e, "discarding unreadable snapshot");
                discard.push(path);
            }
        }
    }
    for path in discard {
        debug!(path = %path.display(), "removing stale snapshot file");
        if let Err(e) = fs::remove_file(&path) {
            warn!(path = %path.display(), error = %e, "removing stale snapshot file");
        }
    }
    Ok(best)
}

fn sync_dir(dir: &Path) -> Result<(), ClusterError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}
