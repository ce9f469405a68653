//! Diagnostics of one config load: the errors and "accepted but not implemented" warnings
//! (each `FILE:LINE: message`), their ordering, and "did you mean" suggestions.
//!
//! Owns how problems are collected and ordered; it must not decide what is a problem (the
//! builders do) nor print anything (the caller does).

use super::{ConfigError, Location};
use std::path::PathBuf;

/// Orders diagnostics by line within each file, files in order of first mention (stable).
pub(crate) fn sort_by_position(list: &mut [ConfigError]) {
    let mut files: Vec<PathBuf> = Vec::new();
    for e in list.iter() {
        if !files.contains(&e.location.file) {
            files.push(e.location.file.clone());
        }
    }
    list.sort_by_key(|e| {
        let file_rank = files.iter().position(|f| *f == e.location.file);
        (file_rank, e.location.line)
    });
}

#[derive(Default)]
pub(crate) struct Diag {
    pub(crate) errors: Vec<ConfigError>,
    pub(crate) warnings: Vec<ConfigError>,
}

impl Diag {
    pub(crate) fn error(&mut self, location: &Location, message: impl Into<String>) {
        self.errors.push(ConfigError {
            location: location.clone(),
            message: message.into(),
        });
    }

    pub(crate) fn warn(&mut self, location: &Location, message: impl Into<String>) {
        self.warnings.push(ConfigError {
            location: location.clone(),
            message: message.into(),
        });
    }
}

/// The closest candidate, if it is close enough to be a plausible typo.
pub(crate) fn did_you_mean<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    candidates
        .iter()
        .copied()
        .filter(|c| *c != word)
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}
