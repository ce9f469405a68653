//! Safe names: the one rule that turns a tag (or a part of one) into a single path segment or
//! object-key segment.
//!
//! Owns [`safe_segment`], used wherever an output puts a tag into a name: out_file's `${tag}`
//! placeholders and the cluster uploader's object key. The rule is deterministic (the same tag
//! always gives the same segment, on every node and after every restart), so a name derived
//! from a tag can be derived again:
//! - every byte outside `A-Z a-z 0-9 . - _` becomes `_` (so `/`, `\`, NUL, control characters
//!   and spaces never reach a path or key);
//! - the empty string, `.` and `..` get a `_` prefix (`_`, `_.`, `_..`), so a segment is never
//!   empty and never a relative-directory component: a tag cannot move a name out of its
//!   directory or prefix;
//! - a result longer than [`MAX_SEGMENT_BYTES`] keeps its first bytes and ends with `~` and
//!   16 hex digits of the SHA-256 of the whole tag, so two long tags that share a prefix still
//!   get different names, and the segment stays well under the 255-byte limit of file names
//!   and key segments.
//!
//! It must not know where the name is used (no paths, no prefixes): callers add those.

use crate::log_limit::WarnLimiter;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::sync::LazyLock;
use std::time::Duration;

/// The longest segment [`safe_segment`] returns, in bytes.
pub const MAX_SEGMENT_BYTES: usize = 200;

/// Hex digits of the tag's hash kept in a shortened segment.
const HASH_HEX: usize = 16;

/// [`safe_segment`], with an info line (at most one a minute, counting the others) when the tag
/// had to be changed: which tag, the name written instead, and where (`used_in`).
pub fn safe_segment_noted<'t>(text: &'t str, used_in: &str) -> Cow<'t, str> {
    static NOTED: LazyLock<WarnLimiter> =
        LazyLock::new(|| WarnLimiter::new(Duration::from_secs(60)));
    let segment = safe_segment(text);
    if matches!(segment, Cow::Owned(_)) {
        if let Some(others) = NOTED.check() {
            let shown: String = text.chars().take(300).collect();
            tracing::info!(tag = %shown.escape_debug(), written_as = %segment, used_in,
                other_tags_renamed_since_last_line = others,
                "tag is not safe as a file or object name; written under a safe name");
        }
    }
    segment
}

/// The tag text made safe as one path or key segment (see the module doc). Borrowed when the
/// text is already safe.
pub fn safe_segment(text: &str) -> Cow<'_, str> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_');
    let needs_prefix = matches!(text, "" | "." | "..");
    if !needs_prefix && text.len() <= MAX_SEGMENT_BYTES && text.bytes().all(allowed) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().min(MAX_SEGMENT_BYTES) + 1);
    if needs_prefix {
        out.push('_');
    }
    // Per character (not per byte), so a multi-byte character becomes one `_`.
    out.extend(text.chars().map(|c| {
        if c.is_ascii() && allowed(c as u8) {
            c
        } else {
            '_'
        }
    }));
    if out.len() > MAX_SEGMENT_BYTES {
        let digest = Sha256::digest(text.as_bytes());
        let keep = MAX_SEGMENT_BYTES - 1 - HASH_HEX;
        // `out` is ASCII: any byte index is a character boundary.
        out.truncate(keep);
        out.push('~');
        out.push_str(&hex::encode(digest)[..HASH_HEX]);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_tags_are_unchanged_and_borrowed() {
        for tag in ["app.web", "kubernetes.var.log.my-pod_ns_c-1.log", "A_b-9"] {
            assert!(matches!(safe_segment(tag), Cow::Borrowed(t) if t == tag));
        }
    }

    #[test]
    fn separators_controls_and_relative_components_are_replaced() {
        assert_eq!(safe_segment("a/b\\c\0d"), "a_b_c_d");
        assert_eq!(safe_segment("x\ny\tz\u{7f}"), "x_y_z_");
        assert_eq!(safe_segment("../x y"), ".._x_y");
        assert_eq!(safe_segment("../../etc"), ".._.._etc");
        assert_eq!(safe_segment(""), "_");
        assert_eq!(safe_segment("."), "_.");
        assert_eq!(safe_segment(".."), "_..");
        assert_eq!(safe_segment("ログ"), "__");
        for tag in ["..", "../../etc", "a/../..", "/", "/etc/passwd", "."] {
            let s = safe_segment(tag);
            assert!(
                !s.contains('/') && s != "." && s != ".." && !s.is_empty(),
                "{tag:?} → {s:?}"
            );
        }
    }

    #[test]
    fn long_tags_are_cut_with_a_hash_of_the_whole_tag() {
        let long = "t".repeat(300);
        let s = safe_segment(&long);
        assert_eq!(s.len(), MAX_SEGMENT_BYTES);
        assert!(s.starts_with(&"t".repeat(183)));
        assert_eq!(s.as_bytes()[183], b'~');
        // Deterministic, and different for tags sharing the kept prefix.
        assert_eq!(safe_segment(&long), s);
        let other = format!("{}u", "t".repeat(299));
        assert_ne!(safe_segment(&other), s);
        // Exactly at the limit: kept as is.
        let edge = "e".repeat(MAX_SEGMENT_BYTES);
        assert_eq!(safe_segment(&edge), edge);
        // Multi-byte characters count once each after replacement.
        let wide = "é".repeat(150);
        assert_eq!(safe_segment(&wide), "_".repeat(150));
    }
}
