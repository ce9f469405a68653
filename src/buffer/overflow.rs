//! Overflow: whether an append may enter a buffer that holds `total_limit_size` bytes.
//!
//! Owns `overflow_action` (`throw_exception`, `block`, `drop_oldest_chunk`): refusing, asking
//! the appender to wait, or taking the oldest queued chunks out of the state. It must not touch
//! files (the appender deletes dropped chunk files) nor wait itself (the appender blocks).

use super::config::OverflowAction;
use super::{BufferError, ChunkId, ChunkStorage, Shared, State};
use std::path::PathBuf;
use tracing::warn;

impl Shared {
    /// Decide whether `size` more bytes may enter: `Ok(Some(dropped chunks))` to go ahead,
    /// `Ok(None)` to wait (block), `Err` to refuse.
    #[allow(clippy::type_complexity)]
    pub(super) fn admit(
        &self,
        st: &mut State,
        size: u64,
    ) -> Result<Option<Vec<(ChunkId, Option<PathBuf>)>>, BufferError> {
        let limit = self.settings.total_limit_size;
        if st.total_bytes.saturating_add(size) <= limit {
            return Ok(Some(Vec::new()));
        }
        let overflow = BufferError::Overflow { limit };
        match self.settings.overflow_action {
            OverflowAction::ThrowException => Err(overflow),
            OverflowAction::Block if size > limit => Err(overflow),
            OverflowAction::Block => Ok(None),
            OverflowAction::DropOldestChunk => {
                let droppable: u64 = st
                    .queue
                    .iter()
                    .filter_map(|(_, _, id)| st.chunks.get(id))
                    .map(|c| c.meta.bytes)
                    .sum();
                if st.total_bytes - droppable.min(st.total_bytes) + size > limit {
                    return Err(overflow);
                }
                let mut dropped = Vec::new();
                while st.total_bytes + size > limit {
                    let Some((_, _, id)) = st.queue.pop_front() else {
                        break;
                    };
                    let Some(c) = st.chunks.remove(&id) else {
                        continue;
                    };
                    st.total_bytes -= c.meta.bytes;
                    warn!(
                        buffer = %self.name,
                        chunk = %id,
                        tag = %c.meta.tag,
                        records = c.meta.records,
                        bytes = c.meta.bytes,
                        "buffer full: dropping oldest queued chunk"
                    );
                    let path = match c.storage {
                        ChunkStorage::File(f) => Some(f.path.clone()),
                        ChunkStorage::Memory(_) => None,
                    };
                    dropped.push((id, path));
                }
                Ok(Some(dropped))
            }
        }
    }
}
