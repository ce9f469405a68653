//! The http input's own small msgpack helpers (a map marker test, an `EventTime` from float
//! seconds). Kept in this one place until a shared msgpack module replaces them.

use crate::event::EventTime;

pub(super) fn is_map_marker(m: u8) -> bool {
    (0x80..=0x8f).contains(&m) || m == 0xde || m == 0xdf
}

pub(super) fn float_time(f: f64) -> Option<EventTime> {
    (f.is_finite() && (0.0..=u32::MAX as f64).contains(&f)).then(|| EventTime::from_f64(f))
}
