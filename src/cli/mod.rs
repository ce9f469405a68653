//! The `lograft` command line's commands that are library code (so that they can be tested
//! without the binary): `check-config`.
//!
//! `main.rs` keeps argument parsing, logging set-up, signal handling and exit codes.

pub mod check_config;

pub use check_config::{check_config, summary};
