//! The Forward protocol codec, shared by the forward input (server side) and the forward
//! output (client side).
//!
//! Owns the wire format of Fluentd's Forward Protocol v1: incremental framing of a TCP byte
//! stream ([`FrameDecoder`]), the four event modes normalized to one PackedForward entry stream
//! ([`EventFrame`]), the option map (`chunk`, `size`, `compressed`), the ack, PackedForward
//! encoding for senders, and the shared-key/user handshake (HELO/PING/PONG) for both sides.
//!
//! It must not do I/O, hold sockets, or decode records into values: records travel as the
//! msgpack bytes received (see [`crate::event`]).

mod frame;
mod handshake;

pub use frame::{
    decode_ack, decode_frame, encode_ack, encode_packed_forward,
    encode_packed_forward_with_origins, frame_is_gzip, gzip_entries, take_message, DecoderConfig,
    EncodedFrameParts, EventFrame, EventMode, Frame, FrameDecoder, FrameOptions,
    DEFAULT_DECOMPRESSION_SIZE_LIMIT, HARD_MAX_FRAME_SIZE, MAX_CONTROL_MESSAGE_SIZE,
    ORIGINS_OPTION,
};
pub use handshake::{
    generate_nonce, generate_shared_key_salt, password_digest, shared_key_digest, ClientConfig,
    ClientHandshake, HandshakeError, Helo, PingOutcome, ServerHandshake, ServerSecurity,
    ServerSecurityConfig, UserConfig,
};

use crate::event::EntryError;
use crate::msgpack::MsgpackError;

/// Why a Forward frame (or ack) was refused. Messages are meant for an operator's log.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("frame of at least {size} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge { size: u64, limit: u64 },
    #[error(
        "not a Forward-protocol message: first byte 0x{0:02x} is neither a msgpack array of 2 to 4 elements nor nil (JSON is not supported)"
    )]
    NotAFrame(u8),
    #[error("Forward message is an array of {0} elements; expected 2 to 4")]
    BadArity(u32),
    #[error("malformed msgpack: {0}")]
    Msgpack(#[from] EntryError),
    #[error("the tag (first element) is not a UTF-8 string")]
    BadTag,
    #[error("unknown event mode: {0}")]
    UnknownMode(String),
    #[error("invalid option map: {0}")]
    BadOption(String),
    #[error("unsupported compression {0:?} (expected \"gzip\" or \"text\")")]
    UnsupportedCompression(String),
    #[error("invalid event entries: {0}")]
    BadEntries(EntryError),
    #[error("gzip-compressed entries could not be decompressed: {0}")]
    Gzip(std::io::Error),
    #[error("decompressed entries exceed decompression_size_limit ({limit} bytes)")]
    DecompressionLimit { limit: u64 },
    #[error("entries of {0} bytes do not fit in one Forward frame (at most 4 GiB)")]
    EntriesTooLarge(usize),
    #[error("malformed ack response: {0}")]
    BadAck(String),
}

impl From<MsgpackError> for ForwardError {
    fn from(e: MsgpackError) -> Self {
        ForwardError::Msgpack(e.into())
    }
}
