//! The record nesting-depth limit shared by every input and output.
//!
//! Owns one constant, [`MAX_RECORD_DEPTH`], and a check, [`record_too_deep`], that tells without
//! decoding whether a record would exceed it in the decoders that use it (in_http's parser reads
//! records with rmpv's `read_value*_with_max_depth`; the outputs' JSON transcoder charges the
//! same budget through [`depth_cost`]). Inputs reject
//! such records before the ack, so no output meets one after it. Must not decode or allocate.
//!
//! rmpv spends its depth budget per value read: 1 for a scalar, 2 for bin, 3 for str and ext,
//! and 2 for a map or array before its children. A value at nesting level `k` (the record itself
//! is level 0) is readable iff `2k + cost <= MAX_RECORD_DEPTH`; about 62 levels of maps.

/// The depth budget given to rmpv when records are decoded (in_http, out_file, out_stdout, ...).
pub const MAX_RECORD_DEPTH: usize = 128;

/// Open containers tracked at most: a non-empty container at level `k` needs `2(k+1)+1 <= max`.
const STACK: usize = MAX_RECORD_DEPTH / 2 + 1;

/// True when the msgpack value `record` would exceed [`MAX_RECORD_DEPTH`] when decoded. Meant
/// for complete values (as checked by [`crate::msgpack::skip_value`]); a malformed value is reported
/// as too deep where it is noticed. Headers are read once, bodies skipped.
pub fn record_too_deep(record: &[u8]) -> bool {
    // A value at level k starts at byte k or later: short records cannot be too deep.
    if 2 * record.len() < MAX_RECORD_DEPTH {
        return false;
    }
    too_deep(record, MAX_RECORD_DEPTH)
}

/// Whether a record with `containers` non-empty maps and arrays (as counted by
/// [`crate::msgpack::skip_value_counting`]) could exceed the limit at all: a value at level `k`
/// sits inside `k` of them, and costs rmpv at most `2k + 3`. The inputs' fast path.
pub fn could_be_too_deep(containers: u64) -> bool {
    containers.saturating_mul(2).saturating_add(3) > MAX_RECORD_DEPTH as u64
}

/// What a value's marker costs against the depth budget, as rmpv charges it (and the outputs'
/// JSON transcoder in `output::format`, so both accept the same records): 2 for maps, arrays
/// and bin, 3 for str and ext, 1 for everything else.
pub fn depth_cost(marker: u8) -> usize {
    match marker {
        0x80..=0x9f | 0xdc..=0xdf | 0xc4..=0xc6 => 2,
        0xa0..=0xbf | 0xd9..=0xdb | 0xc7..=0xc9 | 0xd4..=0xd8 => 3,
        _ => 1,
    }
}

fn too_deep(buf: &[u8], max: usize) -> bool {
    // Children still to read of each open container.
    let mut open = [0u64; STACK];
    let mut level = 0usize;
    let mut pos = 0usize;
    loop {
        let Some(&m) = buf.get(pos) else {
            return true;
        };
        // (header, body, children, rmpv cost): the layout from the one marker table.
        let parsed = crate::msgpack::head(&buf[pos..])
            .ok()
            .map(|h| (h.header as usize, h.body, h.children, depth_cost(m)));
        let Some((header, body, children, cost)) = parsed else {
            return true;
        };
        if 2 * level + cost > max {
            return true;
        }
        let Some(next) = (pos as u64)
            .checked_add(header as u64 + body)
            .filter(|n| *n <= buf.len() as u64)
        else {
            return true;
        };
        pos = next as usize;
        if children > 0 {
            // Its first child (cost >= 1) sits one level down.
            if 2 * (level + 1) + 1 > max || level + 1 >= STACK {
                return true;
            }
            level += 1;
            open[level] = children;
            continue;
        }
        // A value finished: close every container whose last child it was.
        loop {
            if level == 0 {
                return false;
            }
            open[level] -= 1;
            if open[level] > 0 {
                break;
            }
            level -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `{"k": {"k": ... leaf ...}}` with `maps` nested maps around `leaf`.
    fn nested_maps(maps: usize, leaf: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        for _ in 0..maps {
            v.extend_from_slice(&[0x81, 0xa1, b'k']);
        }
        v.extend_from_slice(leaf);
        v
    }

    fn nested_arrays(arrays: usize, leaf: &[u8]) -> Vec<u8> {
        let mut v = vec![0x91; arrays];
        v.extend_from_slice(leaf);
        v
    }

    /// Whether rmpv (in_http) refuses `v`; the outputs' JSON transcoder must agree.
    fn rmpv_refuses(v: &[u8]) -> bool {
        let by_ref = rmpv::decode::read_value_ref_with_max_depth(&mut &v[..], MAX_RECORD_DEPTH);
        let owned = rmpv::decode::read_value_with_max_depth(&mut &v[..], MAX_RECORD_DEPTH);
        assert_eq!(by_ref.is_err(), owned.is_err());
        let transcoded = crate::output::format::write_record_json(&mut Vec::new(), v);
        assert_eq!(by_ref.is_err(), transcoded.is_err(), "transcoder disagrees");
        by_ref.is_err()
    }

    #[test]
    fn agrees_with_rmpv_at_every_depth_and_leaf_kind() {
        let leaves: [&[u8]; 8] = [
            &[0x01],
            &[0xc0],
            &[0xcb, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0xa1, b'x'],
            &[0xc4, 0x01, 0x00],
            &[0xd4, 0x01, 0x00],
            &[0x80],
            &[0x90],
        ];
        for leaf in leaves {
            for n in 55..70 {
                let m = nested_maps(n, leaf);
                assert_eq!(record_too_deep(&m), rmpv_refuses(&m), "maps {n} {leaf:?}");
                let a = nested_arrays(n, leaf);
                assert_eq!(record_too_deep(&a), rmpv_refuses(&a), "arrays {n} {leaf:?}");
            }
        }
    }

    #[test]
    fn wide_records_and_siblings_after_deep_branches() {
        // {"a": [[[...1]]], "b": "x"}: the sibling after a deep branch is read at level 1.
        let mut v = vec![0x82, 0xa1, b'a'];
        v.extend(nested_arrays(40, &[0x01]));
        v.extend_from_slice(&[0xa1, b'b', 0xa1, b'x']);
        assert!(!record_too_deep(&v));
        assert!(!rmpv_refuses(&v));
        let mut wide = vec![0xde, 0x01, 0x00];
        for i in 0..256u32 {
            wide.extend_from_slice(&[0xa1, b'k', 0xcd]);
            wide.extend_from_slice(&(i as u16).to_be_bytes());
        }
        assert!(!record_too_deep(&wide));
        let deep = nested_maps(201, &[0x01]);
        assert!(record_too_deep(&deep));
        assert!(record_too_deep(&nested_maps(200_000, &[0x01])));
    }

    #[test]
    fn the_container_count_bounds_depth() {
        for n in [0usize, 10, 61, 62, 63, 64, 80, 201] {
            for v in [nested_maps(n, &[0x01]), nested_arrays(n, &[0xa1, b'x'])] {
                let (end, containers) = crate::msgpack::skip_value_counting(&v, 0).unwrap();
                assert_eq!(end, v.len());
                // The fast path never clears a record the exact check refuses.
                if record_too_deep(&v) {
                    assert!(
                        could_be_too_deep(containers),
                        "n={n} containers={containers}"
                    );
                }
            }
        }
        assert!(!could_be_too_deep(62));
        assert!(could_be_too_deep(63));
    }

    #[test]
    fn truncated_values_count_as_too_deep() {
        let v = nested_maps(80, &[]);
        assert!(record_too_deep(&v));
        // A str32 claiming more bytes than there are (long enough to be scanned).
        let mut v = vec![0x81, 0xa1, b'k', 0xdb, 0, 1, 0, 0];
        v.extend([b'x'; 100]);
        assert!(record_too_deep(&v));
    }
}
