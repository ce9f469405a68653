//! Inputs: the servers that accept events from applications and other lograft nodes, and the
//! tail input that reads log files.
//!
//! Every input hands what it accepted to the rest of the node through the pipeline contract
//! ([`crate::pipeline::Emit`]) and acknowledges (Forward `ack`, HTTP 200) only after the batch
//! is committed. Inputs must not hold accepted data anywhere but in that call.
//!
//! Each input's typed config and its builder live in its own `config` module
//! ([`forward::config`], [`http::config`]), registered in [`crate::config::registry`].

pub mod budget;
pub mod fd_reserve;
pub mod forward;
pub mod http;
pub mod tail;
