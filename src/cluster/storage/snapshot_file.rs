//! The snapshot file format: the state machine's column families streamed as checksummed
//! records, so a snapshot of any size is written and read without holding it in memory.
//!
//! Owns [`SnapshotWriter`], [`SnapshotReader`] and [`SnapshotHeader`]. It must not touch RocksDB
//! or decide when snapshots are built or installed: that is [`super::state_machine`]
//! (its `snapshot` module).
//!
//! ```text
//! "LGRSNAP1"
//! header:  u32 len | msgpack SnapshotHeader | u32 crc32c(msgpack)
//! record:  u8 cf (1..=4) | u32 key_len | u32 value_len | key | value | u32 crc32c(all before)
//! end:     u8 0 | u64 record_count | u32 crc32c(the 9 bytes)
//! ```
//!
//! All integers are big-endian. A file without a valid end frame is incomplete and rejected.

use crate::cluster::{ClusterError, NodeId};
use openraft::{BasicNode, SnapshotMeta};
use serde::{Deserialize, Serialize};
use std::io::{BufReader, BufWriter, Read, Write};

const MAGIC: &[u8; 8] = b"LGRSNAP1";
const END_TAG: u8 = 0;
/// Keys are 8-byte indexes; anything much larger is corruption.
const MAX_KEY_LEN: u32 = 1024;
/// Values are chunk payloads and small records; a larger length is corruption, not data.
const MAX_VALUE_LEN: u32 = 256 * 1024 * 1024;
const MAX_HEADER_LEN: u32 = 64 * 1024 * 1024;

/// What a snapshot file says about itself: the openraft metadata and the state-machine values
/// that are not rows of a dumped column family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SnapshotHeader {
    pub(crate) meta: SnapshotMeta<NodeId, BasicNode>,
    /// The dedup window's next sequence number.
    pub(crate) next_dedup_seq: u64,
    /// The count of dead-lettered batches (`AppliedRecord::dead_lettered_batches`).
    /// Absent in snapshots written before dead-lettering existed.
    #[serde(default)]
    pub(crate) dead_lettered_batches: u64,
}

/// One dumped row: which column family (1-based position in the dump order), key and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SnapshotRecord {
    pub(crate) cf: u8,
    pub(crate) key: Vec<u8>,
    pub(crate) value: Vec<u8>,
}

/// Streams a snapshot into `W`.
pub(crate) struct SnapshotWriter<W: Write> {
    out: BufWriter<W>,
    records: u64,
}

impl<W: Write> SnapshotWriter<W> {
    pub(crate) fn new(out: W, header: &SnapshotHeader) -> Result<Self, ClusterError> {
        let mut out = BufWriter::with_capacity(1024 * 1024, out);
        let header = rmp_serde::to_vec_named(header)?;
        out.write_all(MAGIC)?;
        out.write_all(&(header.len() as u32).to_be_bytes())?;
        out.write_all(&header)?;
        out.write_all(&crc32c::crc32c(&header).to_be_bytes())?;
        Ok(SnapshotWriter { out, records: 0 })
    }

    pub(crate) fn record(&mut self, cf: u8, key: &[u8], value: &[u8]) -> Result<(), ClusterError> {
        if cf == END_TAG {
            return Err(ClusterError::CorruptSnapshot(
                "record tag 0 is reserved".into(),
            ));
        }
        let (key_len, value_len) = (key.len() as u32, value.len() as u32);
        if key_len > MAX_KEY_LEN || value_len > MAX_VALUE_LEN {
            return Err(ClusterError::CorruptSnapshot(format!(
                "record too large: key {} bytes, value {} bytes",
                key.len(),
                value.len()
            )));
        }
        let mut frame = [0u8; 9];
        frame[0] = cf;
        frame[1..5].copy_from_slice(&key_len.to_be_bytes());
        frame[5..9].copy_from_slice(&value_len.to_be_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c_append(crc32c::crc32c(&frame), key), value);
        self.out.write_all(&frame)?;
        self.out.write_all(key)?;
        self.out.write_all(value)?;
        self.out.write_all(&crc.to_be_bytes())?;
        self.records += 1;
        Ok(())
    }

    /// Write the end frame and flush; returns the inner writer (the caller syncs files).
    pub(crate) fn finish(mut self) -> Result<W, ClusterError> {
        let mut end = [0u8; 9];
        end[0] = END_TAG;
        end[1..9].copy_from_slice(&self.records.to_be_bytes());
        self.out.write_all(&end)?;
        self.out.write_all(&crc32c::crc32c(&end).to_be_bytes())?;
        self.out
            .into_inner()
            .map_err(|e| ClusterError::Io(e.into_error()))
    }
}

/// Reads a snapshot from `R`, verifying every checksum and the record count.
pub(crate) struct SnapshotReader<R: Read> {
    input: BufReader<R>,
    records: u64,
    finished: bool,
}

impl<R: Read> SnapshotReader<R> {
    pub(crate) fn open(input: R) -> Result<(Self, SnapshotHeader), ClusterError> {
        let mut input = BufReader::with_capacity(1024 * 1024, input);
        let mut magic = [0u8; 8];
        read_exact(&mut input, &mut magic, "magic")?;
        if &magic != MAGIC {
            return Err(ClusterError::CorruptSnapshot(
                "not a lograft snapshot".into(),
            ));
        }
        let len = read_u32(&mut input, "header length")?;
        if len > MAX_HEADER_LEN {
            return Err(ClusterError::CorruptSnapshot(format!(
                "header length {len}"
            )));
        }
        let mut header = vec![0u8; len as usize];
        read_exact(&mut input, &mut header, "header")?;
        if read_u32(&mut input, "header checksum")? != crc32c::crc32c(&header) {
            return Err(ClusterError::CorruptSnapshot(
                "header checksum mismatch".into(),
            ));
        }
        let header: SnapshotHeader = rmp_serde::from_slice(&header)?;
        Ok((
            SnapshotReader {
                input,
                records: 0,
                finished: false,
            },
            header,
        ))
    }

    /// The next record, or `None` once the end frame was read and verified.
    pub(crate) fn next_record(&mut self) -> Result<Option<SnapshotRecord>, ClusterError> {
        if self.finished {
            return Ok(None);
        }
        let mut frame = [0u8; 9];
        read_exact(&mut self.input, &mut frame, "record frame")?;
        if frame[0] == END_TAG {
            let crc = read_u32(&mut self.input, "end checksum")?;
            if crc != crc32c::crc32c(&frame) {
                return Err(ClusterError::CorruptSnapshot(
                    "end checksum mismatch".into(),
                ));
            }
            let count = u64::from_be_bytes(frame[1..9].try_into().expect("8 bytes"));
            if count != self.records {
                return Err(ClusterError::CorruptSnapshot(format!(
                    "end frame counts {count} records, read {}",
                    self.records
                )));
            }
            self.finished = true;
            return Ok(None);
        }
        let key_len = u32::from_be_bytes(frame[1..5].try_into().expect("4 bytes"));
        let value_len = u32::from_be_bytes(frame[5..9].try_into().expect("4 bytes"));
        if key_len > MAX_KEY_LEN || value_len > MAX_VALUE_LEN {
            return Err(ClusterError::CorruptSnapshot(format!(
                "record {} has key length {key_len}, value length {value_len}",
                self.records
            )));
        }
        let mut key = vec![0u8; key_len as usize];
        read_exact(&mut self.input, &mut key, "record key")?;
        let mut value = vec![0u8; value_len as usize];
        read_exact(&mut self.input, &mut value, "record value")?;
        let crc = read_u32(&mut self.input, "record checksum")?;
        let expected =
            crc32c::crc32c_append(crc32c::crc32c_append(crc32c::crc32c(&frame), &key), &value);
        if crc != expected {
            return Err(ClusterError::CorruptSnapshot(format!(
                "record {} checksum mismatch",
                self.records
            )));
        }
        self.records += 1;
        Ok(Some(SnapshotRecord {
            cf: frame[0],
            key,
            value,
        }))
    }
}

fn read_exact<R: Read>(input: &mut R, buf: &mut [u8], what: &str) -> Result<(), ClusterError> {
    input.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            ClusterError::CorruptSnapshot(format!("truncated at {what}"))
        } else {
            ClusterError::Io(e)
        }
    })
}

fn read_u32<R: Read>(input: &mut R, what: &str) -> Result<u32, ClusterError> {
    let mut bytes = [0u8; 4];
    read_exact(input, &mut bytes, what)?;
    Ok(u32::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{LogId, StoredMembership};

    fn header() -> SnapshotHeader {
        SnapshotHeader {
            meta: SnapshotMeta {
                last_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(3, 1), 42)),
                last_membership: StoredMembership::default(),
                snapshot_id: "3-1-42-7".into(),
            },
            next_dedup_seq: 9,
            dead_lettered_batches: 2,
        }
    }

    fn written() -> Vec<u8> {
        let mut w = SnapshotWriter::new(Vec::new(), &header()).unwrap();
        w.record(1, &7u64.to_be_bytes(), b"payload").unwrap();
        w.record(3, &8u64.to_be_bytes(), &[]).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn round_trip() {
        let bytes = written();
        let (mut r, h) = SnapshotReader::open(&bytes[..]).unwrap();
        assert_eq!(h, header());
        let first = r.next_record().unwrap().unwrap();
        assert_eq!((first.cf, &first.value[..]), (1, &b"payload"[..]));
        let second = r.next_record().unwrap().unwrap();
        assert_eq!((second.cf, second.value.len()), (3, 0));
        assert!(r.next_record().unwrap().is_none());
        assert!(r.next_record().unwrap().is_none());
    }

    #[test]
    fn truncated_file_is_rejected() {
        let bytes = written();
        let cut = &bytes[..bytes.len() - 5];
        let (mut r, _) = SnapshotReader::open(cut).unwrap();
        let result = (|| {
            while r.next_record()?.is_some() {}
            Ok::<_, ClusterError>(())
        })();
        assert!(matches!(result, Err(ClusterError::CorruptSnapshot(_))));
    }

    #[test]
    fn flipped_payload_byte_is_rejected() {
        let mut bytes = written();
        let at = bytes.windows(7).position(|w| w == b"payload").unwrap();
        bytes[at] ^= 0x01;
        let (mut r, _) = SnapshotReader::open(&bytes[..]).unwrap();
        assert!(matches!(
            r.next_record(),
            Err(ClusterError::CorruptSnapshot(_))
        ));
    }
}
