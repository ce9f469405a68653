//! Helpers for the config tests (here and beside each component): load a config from text or
//! from the seed files in `config/`, and show its errors or warnings as text.

use super::build::load_str;
use super::{Loaded, MatchConfig, OutputConfig};
use crate::output::forward::config::ForwardOutputConfig;
use std::path::{Path, PathBuf};

pub(crate) fn seed(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config")
        .join(name)
}

pub(crate) fn ok(text: &str) -> Loaded {
    load_str(text, Path::new("/etc/lograft/test.conf")).unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) fn errors(text: &str) -> String {
    load_str(text, Path::new("/etc/lograft/test.conf"))
        .expect_err("expected config errors")
        .to_string()
}

pub(crate) fn forward_out(m: &MatchConfig) -> &ForwardOutputConfig {
    match &m.output {
        OutputConfig::Forward(f) => f,
        other => panic!("expected forward output, got {other:?}"),
    }
}

pub(crate) fn warning_text(loaded: &Loaded) -> String {
    loaded
        .warnings
        .iter()
        .map(|w| w.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A `<cluster>` for node 2 of two members (snapshots every 500 entries).
pub(crate) const TWO_OF_TWO_MEMBERS: &str = r#"
<cluster>
  node_id 2
  address 127.0.0.1:7002
  snapshot_every 500
  <member>
    id 1
    address 127.0.0.1:7001
  </member>
  <member>
    id 2
    address 127.0.0.1:7002
  </member>
</cluster>
"#;
