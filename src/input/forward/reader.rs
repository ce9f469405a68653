//! Reading one connection: frames off the socket, decoded and shaped into batches, each
//! handed to `emit` in its own task and passed on to the ack writer in frame order.
//!
//! Owns the in-flight budget on the read side (a partial frame, the next read, what a gzip
//! frame may decompress to; reading pauses while the budget is spent), decoding big frames on
//! the blocking pool, the idle timeout, and the warnings about bad input. It must not keep a
//! batch anywhere but in its emit task and the ack writer's queue, must not ack, and must not
//! decode records beyond what the frame decoder and the source keys need.

use super::acks::Pending;
use super::{Shared, BLOCKING_DECODE_THRESHOLD, IDLE_READ, READ_CHUNK};
use crate::event::{append_field_to_records, EventBatch, EventTime};
use crate::forward::{
    decode_frame, frame_is_gzip, DecoderConfig, EventFrame, ForwardError, Frame, FrameDecoder,
};
use crate::input::budget::{kib, ConnectionBudget, Held};
use bytes::{Bytes, BytesMut};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Per-connection facts added to records.
pub(super) struct PeerInfo {
    pub(super) addr: SocketAddr,
    pub(super) address: String,
    pub(super) hostname: Option<String>,
}

/// One connection's reading state shared with nothing else but its ack writer's counter.
pub(super) struct Connection {
    pub(super) info: Arc<PeerInfo>,
    pub(super) budget: ConnectionBudget,
    /// Frames sent to the ack writer and not yet acked (or refused).
    pub(super) outstanding: Arc<AtomicUsize>,
}

/// What reading one frame produced.
struct Prepared {
    batch: Option<EventBatch>,
    chunk: Option<Bytes>,
    frame_skipped: u32,
    first_skip_error: Option<String>,
    wire_size: usize,
}

/// Decode a frame and shape its batch (tag rules, source keys). CPU work only.
fn prepare(
    shared: &Shared,
    decoder: &DecoderConfig,
    info: &PeerInfo,
    raw: Bytes,
    now: EventTime,
) -> Result<Option<Prepared>, ForwardError> {
    let frame: EventFrame = match decode_frame(raw, decoder, now)? {
        Frame::Heartbeat => return Ok(None),
        Frame::Events(e) => e,
    };
    let chunk = frame.options.chunk.clone();
    let prepared = Prepared {
        batch: None,
        chunk,
        frame_skipped: frame.skipped,
        first_skip_error: frame.first_skip_error.as_ref().map(|e| e.to_string()),
        wire_size: frame.wire_size,
    };
    if frame.count == 0 {
        return Ok(Some(prepared));
    }
    let mut tag = shared.tag.clone().unwrap_or_else(|| frame.tag.clone());
    if let Some(prefix) = &shared.add_tag_prefix {
        tag = format!("{prefix}.{tag}");
    }
    let mut batch = frame.into_batch(tag);
    if let Some(key) = &shared.source_address_key {
        batch.entries = append_field_to_records(&batch.entries, key, &info.address)
            .map_err(ForwardError::BadEntries)?;
    }
    if let (Some(key), Some(hostname)) = (&shared.source_hostname_key, &info.hostname) {
        batch.entries = append_field_to_records(&batch.entries, key, hostname)
            .map_err(ForwardError::BadEntries)?;
    }
    Ok(Some(Prepared {
        batch: Some(batch),
        ..prepared
    }))
}

/// Why reading stopped waiting.
enum Wait<T> {
    Done(T),
    Stop,
    Idle,
}

/// Await `fut` unless the connection is stopped or its idle deadline passes first.
async fn wait_for<T>(
    fut: impl std::future::Future<Output = T>,
    stop: &CancellationToken,
    idle_deadline: Option<tokio::time::Instant>,
) -> Wait<T> {
    let idle = async {
        match idle_deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = stop.cancelled() => Wait::Stop,
        v = fut => Wait::Done(v),
        _ = idle => Wait::Idle,
    }
}

pub(super) async fn read_frames<R>(
    shared: Arc<Shared>,
    mut reader: R,
    mut buf: BytesMut,
    tx: mpsc::Sender<Pending>,
    stop: CancellationToken,
    conn: Connection,
) where
    R: AsyncRead + Unpin,
{
    let info = conn.info.clone();
    let peer = info.addr;
    let mut decoder = FrameDecoder::new(shared.decoder.clone());
    let next_deadline = || shared.idle_timeout.map(|d| tokio::time::Instant::now() + d);
    let mut idle_deadline = next_deadline();
    // Budget for the bytes in `buf` (a partial frame) and the next read.
    let mut held = Held::default();
    loop {
        loop {
            let raw = match decoder.next_frame(&mut buf) {
                Ok(Some(raw)) => raw,
                Ok(None) => break,
                Err(e) => {
                    warn_bad_input(&shared, peer, &e);
                    return;
                }
            };
            idle_deadline = next_deadline();
            // The frame's bytes leave the buffer: so does their budget.
            let mut hold = held.split(kib(raw.len() as u64));
            // Wait for a pipeline slot before doing the work (bounds frames in flight).
            let permit = tokio::select! {
                _ = stop.cancelled() => return,
                p = tx.reserve() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            let mut frame_decoder = None;
            if frame_is_gzip(&raw) {
                // Reserve what decompression may produce before it runs: at most
                // decompression_size_limit, and no more than this connection may hold.
                let room = conn
                    .budget
                    .share_bytes()
                    .saturating_sub(held.bytes() + hold.bytes());
                let allowance = shared.decoder.decompression_size_limit.min(room);
                let extra = match conn.budget.try_acquire(kib(allowance)) {
                    Some(h) => h,
                    None => {
                        note_budget_spent(&shared, peer);
                        match wait_for(conn.budget.acquire(kib(allowance)), &stop, None).await {
                            Wait::Done(h) => h,
                            _ => return,
                        }
                    }
                };
                hold.merge(extra);
                let mut d = shared.decoder.clone();
                d.decompression_size_limit = allowance;
                frame_decoder = Some(d);
            }
            let now = EventTime::now();
            let prepared = if raw.len() > BLOCKING_DECODE_THRESHOLD || frame_decoder.is_some() {
                let shared = shared.clone();
                let info = info.clone();
                match tokio::task::spawn_blocking(move || {
                    let d = frame_decoder.as_ref().unwrap_or(&shared.decoder);
                    prepare(&shared, d, &info, raw, now)
                })
                .await
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(%peer, error = %e, "in_forward: decoding task failed");
                        return;
                    }
                }
            } else {
                prepare(&shared, &shared.decoder, &info, raw, now)
            };
            let prepared = match prepared {
                Ok(Some(p)) => p,
                Ok(None) => continue, // heartbeat
                Err(e) => {
                    warn_bad_input(&shared, peer, &e);
                    return;
                }
            };
            if prepared.frame_skipped > 0 {
                let dropped = prepared.frame_skipped as u64;
                // Held-back occurrences are events, so the line counts every dropped event.
                if let Some(held_back) = shared.skipped_events.check_n(dropped) {
                    let dropped = dropped + held_back;
                    tracing::warn!(%peer, dropped,
                        reason = prepared.first_skip_error.as_deref().unwrap_or(""),
                        "in_forward: dropped {dropped} invalid event(s) since the last warning (skip_invalid_event)");
                }
            }
            if let Some(limit) = shared.chunk_size_warn_limit {
                if prepared.wire_size as u64 > limit {
                    if let Some(held_back) = shared.size_warn.check() {
                        tracing::warn!(%peer, size = prepared.wire_size, limit,
                            occurrences_since_last_warning = held_back + 1,
                            "in_forward: chunk is larger than chunk_size_warn_limit");
                    }
                }
            }
            let pending = match prepared.batch {
                Some(batch) => {
                    // Keep budget for what stays in memory until the ack: the batch.
                    hold.shrink_to(kib(batch.entries.len() as u64));
                    let emit = shared.emit.clone();
                    let tag = batch.tag.clone();
                    let count = batch.count;
                    Pending::Emitting {
                        commit: tokio::spawn(async move { emit.emit(batch).await }),
                        chunk: prepared.chunk,
                        tag,
                        count,
                        hold,
                    }
                }
                None => Pending::Nothing {
                    chunk: prepared.chunk,
                },
            };
            conn.outstanding.fetch_add(1, Ordering::SeqCst);
            permit.send(pending);
            if shared.deny_keepalive {
                return;
            }
        }
        // Between frames, hold nothing: the first bytes of the next frame are read without
        // budget (at most IDLE_READ), so idle connections do not spend the node's budget.
        let want = if buf.is_empty() {
            held = Held::default();
            0
        } else {
            // Budget for the partial frame and the next read, capped by this share.
            (buf.len() as u64 + READ_CHUNK as u64).min(conn.budget.share_bytes())
        };
        if held.kib() < kib(want) {
            let more = kib(want) - held.kib();
            match conn.budget.try_acquire(more) {
                Some(h) => held.merge(h),
                None => {
                    note_budget_spent(&shared, peer);
                    loop {
                        match wait_for(conn.budget.acquire(more), &stop, idle_deadline).await {
                            Wait::Done(h) => {
                                held.merge(h);
                                break;
                            }
                            Wait::Stop => return,
                            Wait::Idle => {
                                if !close_if_idle(&shared, &conn, peer, buf.len()) {
                                    idle_deadline = next_deadline();
                                    continue;
                                }
                                return;
                            }
                        }
                    }
                }
            }
        }
        let room = if buf.is_empty() {
            IDLE_READ as u64
        } else {
            held.bytes().saturating_sub(buf.len() as u64)
        };
        if room == 0 {
            // Cannot happen while the share holds a whole frame; do not spin if it does.
            if shared.note_bad_input().is_some() {
                tracing::warn!(%peer, pending_bytes = buf.len(),
                    "in_forward: frame exceeds this connection's share of max_in_flight_bytes, closing connection");
            }
            return;
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve((room as usize).clamp(1024, READ_CHUNK));
        }
        let read = {
            let mut limited = (&mut reader).take(room.min(READ_CHUNK as u64));
            match wait_for(limited.read_buf(&mut buf), &stop, idle_deadline).await {
                Wait::Done(r) => r,
                Wait::Stop => return,
                Wait::Idle => {
                    if close_if_idle(&shared, &conn, peer, buf.len()) {
                        return;
                    }
                    idle_deadline = next_deadline();
                    continue;
                }
            }
        };
        match read {
            Ok(0) => {
                if !buf.is_empty() {
                    if let Some(held_back) = shared.note_bad_input() {
                        tracing::warn!(%peer, pending_bytes = buf.len(),
                            occurrences_since_last_warning = held_back + 1,
                            "in_forward: connection closed in the middle of a frame");
                    }
                }
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(%peer, error = %e, "in_forward: read failed");
                return;
            }
        }
    }
}

/// The idle deadline passed: close (true) unless acks are still pending.
fn close_if_idle(shared: &Shared, conn: &Connection, peer: SocketAddr, buffered: usize) -> bool {
    if conn.outstanding.load(Ordering::SeqCst) > 0 {
        return false;
    }
    tracing::info!(%peer, idle_timeout_secs = shared.idle_timeout.map_or(0, |d| d.as_secs()),
        buffered_bytes = buffered,
        "in_forward: closing idle connection (no complete frame and no pending ack within idle_timeout)");
    true
}

/// Reading pauses until budget frees (rate-limited warning).
fn note_budget_spent(shared: &Shared, peer: SocketAddr) {
    if let Some(held_back) = shared.budget_spent.check() {
        tracing::warn!(%peer, max_in_flight_bytes = shared.budget.total_bytes(),
            available_bytes = shared.budget.available_bytes(),
            occurrences_since_last_warning = held_back + 1,
            "in_forward: in-flight budget spent, reading paused until frames are committed (max_in_flight_bytes)");
    }
}

fn warn_bad_input(shared: &Shared, peer: SocketAddr, error: &ForwardError) {
    match shared.note_bad_input() {
        Some(held_back) => tracing::warn!(%peer, %error,
            occurrences_since_last_warning = held_back + 1,
            "in_forward: invalid input, closing connection"),
        None => tracing::debug!(%peer, %error, "in_forward: invalid input, closing connection"),
    }
}
