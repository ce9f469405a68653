//! CLI output of the admin API: a node's status as the table `lograft cluster status` prints
//! ([`format_status`]) and as JSON ([`status_json`]).
//!
//! Owns the wording and layout of that output. It must not talk to nodes (that is
//! [`super::client`]) nor compute anything the status reply does not hold.

use crate::cluster::proto::admin_pb::{Role, StatusReply};

/// Render a status as the CLI's table.
pub fn format_status(status: &StatusReply) -> String {
    use std::fmt::Write;
    let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    let mut out = String::new();
    let leader = match status.leader_id {
        Some(id) => format!("{id} ({})", status.leader_address),
        None => "none".to_string(),
    };
    let _ = writeln!(
        out,
        "node {} at {}: {}, term {}, leader {}",
        status.node_id, status.address, status.state, status.term, leader
    );
    let _ = writeln!(
        out,
        "log: last {}, committed {}, applied {}, snapshot {}, purged {}",
        opt(status.last_log_index),
        opt(status.committed_index),
        opt(status.applied_index),
        opt(status.snapshot_index),
        opt(status.purged_index)
    );
    let _ = writeln!(
        out,
        "upload: {} pending chunks ({} bytes), {} sealed chunks ({} bytes) in {} batches, {} remembered ids, {} batches dead-lettered",
        status.pending_chunks,
        status.pending_bytes,
        status.sealed_chunks,
        status.sealed_bytes,
        status.unconfirmed_batches,
        status.remembered_ids,
        status.dead_lettered_batches
    );
    let _ = writeln!(
        out,
        "{:>6}  {:<24} {:<8} {:>10} {:>8}",
        "ID", "ADDRESS", "ROLE", "MATCHED", "LAG"
    );
    for m in &status.members {
        let role = match Role::try_from(m.role).unwrap_or(Role::Unspecified) {
            Role::Leader => "leader",
            Role::Voter => "voter",
            Role::Learner => "learner",
            Role::Unspecified => "?",
        };
        let _ = writeln!(
            out,
            "{:>6}  {:<24} {:<8} {:>10} {:>8}",
            m.id,
            m.address,
            role,
            opt(m.matched_index),
            opt(m.lag)
        );
    }
    if status.state != "Leader" {
        let _ = writeln!(out, "(replication progress is known only on the leader)");
    }
    out
}

/// The status as JSON, for `--json`.
pub fn status_json(status: &StatusReply) -> serde_json::Value {
    let members: Vec<serde_json::Value> = status
        .members
        .iter()
        .map(|m| {
            serde_json::json!({
                "id": m.id,
                "address": m.address,
                "role": Role::try_from(m.role).unwrap_or(Role::Unspecified).as_str_name(),
                "matched_index": m.matched_index,
                "lag": m.lag,
            })
        })
        .collect();
    serde_json::json!({
        "node_id": status.node_id,
        "address": status.address,
        "state": status.state,
        "term": status.term,
        "leader_id": status.leader_id,
        "leader_address": status.leader_address,
        "last_log_index": status.last_log_index,
        "committed_index": status.committed_index,
        "applied_index": status.applied_index,
        "snapshot_index": status.snapshot_index,
        "purged_index": status.purged_index,
        "millis_since_quorum_ack": status.millis_since_quorum_ack,
        "members": members,
        "pending_chunks": status.pending_chunks,
        "pending_bytes": status.pending_bytes,
        "sealed_chunks": status.sealed_chunks,
        "sealed_bytes": status.sealed_bytes,
        "unconfirmed_batches": status.unconfirmed_batches,
        "remembered_ids": status.remembered_ids,
        "dead_lettered_batches": status.dead_lettered_batches,
    })
}
