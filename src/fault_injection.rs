//! Test hooks of the `fault-injection` cargo feature, never in default builds: with
//! `LOGRAFT_SKIP_FSYNC=NAME[,NAME...]` the named fsyncs are skipped (reported as done), so the
//! fault harness can prove that its power-loss nemesis sees a missing fsync
//! (jepsen/README.md). Names: `buffer` — a file buffer's group-commit `fdatasync` of appended
//! chunk data (its acks then go out with the data only in the page cache). This module owns the
//! switch only; the fsync sites ask it. Without the feature `skip_fsync` is always false.

/// The environment variable naming the fsyncs to skip.
#[cfg(feature = "fault-injection")]
pub const SKIP_FSYNC_ENV: &str = "LOGRAFT_SKIP_FSYNC";

/// Whether the fsync called `name` is to be skipped (read once from the environment).
#[cfg(feature = "fault-injection")]
pub(crate) fn skip_fsync(name: &str) -> bool {
    use std::sync::OnceLock;
    static SKIP: OnceLock<Vec<String>> = OnceLock::new();
    let skip = SKIP.get_or_init(|| {
        let names: Vec<String> = std::env::var(SKIP_FSYNC_ENV)
            .unwrap_or_default()
            .split(',')
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect();
        if !names.is_empty() {
            tracing::warn!(skipped = ?names, "fault injection: {SKIP_FSYNC_ENV} set, these fsyncs are skipped; acknowledged data can be lost in a power cut");
        }
        names
    });
    skip.iter().any(|n| n == name)
}

/// Default builds never skip an fsync.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn skip_fsync(_name: &str) -> bool {
    false
}
