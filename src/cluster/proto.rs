//! Generated gRPC code for `proto/raft.proto` and `proto/admin.proto` (tonic + prost, built by
//! `build.rs`). Owns nothing else: conversions and behaviour live in [`super::network`] and
//! [`super::admin`].

#![allow(clippy::all, missing_docs)]

/// Raft traffic between nodes (`lograft.raft`).
pub mod raft_pb {
    tonic::include_proto!("lograft.raft");
}

/// The admin API (`lograft.admin`).
pub mod admin_pb {
    tonic::include_proto!("lograft.admin");
}
