//! `<source> @type tail`: follow log files and emit their lines, exactly once from file to
//! buffer across crashes and rotation.
//!
//! Split by concept: [`config`] (the typed parameters), [`watch`] (globs, inodes, tags),
//! [`reader`] (one file: reading and splitting lines, positions), [`pos_file`] (Fluentd's pos
//! file format), `tailer` (the loop of one source, on its own thread). Parsing lines is
//! [`crate::parse`]'s.
//!
//! # Exactly once from file to buffer
//!
//! A line counts as read only once it is durable in the buffer. Each batch of lines of one
//! file is emitted with [`Emit::emit_marked`], whose mark is the file's position after the
//! batch: key `<source id>\t<inode>`, value the byte offset packed with a truncation
//! generation ([`reader::pack`]). The file buffer stores batch and position in ONE
//! checksummed append, written and fsynced as one unit by its group commit
//! (`buffer::chunk`, marked appends). So, at every instant:
//!
//! - a position is durable if and only if the lines before it are (same append, same
//!   checksum: a torn append loses both, a whole one keeps both);
//! - positions of one file only grow: one batch per file is in flight at a time, and the
//!   next batch is read only after the previous one was committed (or rewound on failure);
//! - when a chunk leaves the buffer (delivered and purged, or quarantined) its positions are
//!   first merged durably into the buffer's ledger (`buffer::marks`), so they outlive it.
//!
//! On start, a file's position is the buffer's (maximum over live chunks and the ledger) if it
//! has one, else the pos file's. The pos file is rewritten (atomically, fsynced) only with
//! positions whose batches were already committed, at most every 200 ms: it can lag the
//! buffer, never lead it. Hence after a kill -9 at any moment, reading resumes exactly after
//! the last durable line: nothing is lost (the position never passed an undurable line) and
//! nothing is repeated (every durable line is behind the recovered position). A batch the
//! buffer cannot store as one append (larger than a chunk, or spanning timekey buckets) is
//! refused before anything is written, and the file is read again in smaller batches.
//!
//! Positions move without an emit only past lines that produce no event (unmatched lines
//! dropped, oversized lines skipped); losing such a move to a crash re-reads lines that are
//! dropped again. A CRI partial group and an oversized line are never split by a position:
//! the position stays at their first line until they are complete.
//!
//! Rotation: files are identified by inode. A path that holds another inode (rename + create)
//! or none (deletion) leaves its old file *rotated*: still read through the open handle until
//! it is read completely and `rotate_wait` has passed. On start, files whose inode has a
//! recovered position but no longer matches the globs are searched for in the directories
//! of the globs and finished the same way. A file shorter than its position was truncated
//! (copytruncate): it is read again from the start, in a new generation. Lines that a
//! copytruncate cuts off before they were read are gone from the file; no tailer can read
//! them.
//!
//! Limits of the guarantee: it needs a file buffer (`Emit::keeps_marks`); with a memory
//! buffer, or on a cluster aggregator, the pos file alone is used (at least once, or lines
//! lost with the memory buffer). Unlike Fluentd, a source that has saved positions before
//! reads files it does not know from their start (they appeared while lograft was stopped);
//! `read_from_head false` only applies to the first start. Files are always followed by inode
//! (what Fluentd does with `follow_inodes true`). Change detection polls (`stat` every
//! 250 ms, every 1 s with only `enable_watch_timer`).

pub mod config;
pub mod pos_file;
pub mod reader;
mod tailer;
pub mod watch;

use crate::pipeline::Emit;
use config::TailInputConfig;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// A running tail source.
pub struct TailInput {
    cfg: TailInputConfig,
    emit: Arc<dyn Emit>,
    source_id: String,
}

impl TailInput {
    /// `source_id` names this source's positions in the buffer: its `pos_file` path when it
    /// has one, else its `@id`, else its config location.
    pub fn new(cfg: &TailInputConfig, emit: Arc<dyn Emit>, source_id: String) -> Self {
        TailInput {
            cfg: cfg.clone(),
            emit,
            source_id,
        }
    }

    /// Follow the files until `stop` is cancelled; the batch in flight is finished first.
    pub async fn run(self, stop: CancellationToken) {
        if !self.emit.keeps_marks() {
            tracing::warn!(source = %self.source_id, "tail: the destination does not commit positions with the data (not a file buffer): positions come from the pos file alone, so a crash may repeat lines");
        }
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let tailer = tailer::Tailer {
            cfg: self.cfg,
            emit: self.emit,
            key_prefix: format!("tail\t{}\t", self.source_id),
            handle: tokio::runtime::Handle::current(),
            stop,
        };
        let spawned = std::thread::Builder::new()
            .name("tail".into())
            .spawn(move || {
                tailer.run();
                let _ = done_tx.send(());
            });
        match spawned {
            Ok(_) => {
                let _ = done_rx.await;
            }
            Err(e) => tracing::error!(error = %e, "cannot start the tail thread"),
        }
    }
}
