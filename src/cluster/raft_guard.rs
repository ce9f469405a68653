//! Sanity checks on Raft traffic before openraft sees it: terms beyond any reachable value,
//! malformed AppendEntries (entries that do not follow `prev_log_id`, log ids that go
//! backwards or name a later term than the sender's vote) and senders that are not members of
//! this node's cluster are refused, so no RPC can make openraft panic (0.9 computes `term + 1`
//! unchecked) or adopt a vote no real member could hold.
//!
//! Owns [`MAX_TERM`], the membership rule (a sender must be a member of this node's effective
//! membership — a voter, for a vote request — unless that membership is still empty: a fresh
//! node waiting to be added, or a member of a cluster another node initialized; or does not
//! include this node yet: a new node whose log has not reached the change that added it, so
//! the leader that added it may be newer than any membership it has seen; or the message
//! itself carries a membership naming its sender) and the checks of answers from peers. It must not judge
//! anything openraft judges (which vote or log wins), nor know how callers are authenticated
//! (that is the transport's): it checks the node ids messages claim.

use super::{NodeId, TypeConfig};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, EntryPayload, LogId, Membership, Vote};

/// The highest term a node accepts (2^48). A cluster electing every 100 ms would take about
/// 900 000 years to reach it; a term above it can only be forged.
pub const MAX_TERM: u64 = 1 << 48;

/// Why a Raft message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("term {term} is beyond any reachable term (at most {MAX_TERM})")]
    Term { term: u64 },
    #[error("node {node} is not a member of this cluster")]
    NotMember { node: NodeId },
    #[error("node {node} is not a voter of this cluster")]
    NotVoter { node: NodeId },
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
}

fn check_term(term: u64) -> Result<(), Refusal> {
    if term > MAX_TERM {
        return Err(Refusal::Term { term });
    }
    Ok(())
}

/// The sender a vote names, after its term is checked.
fn vote_sender(vote: &Vote<NodeId>, what: &'static str) -> Result<NodeId, Refusal> {
    check_term(vote.leader_id().term)?;
    vote.leader_id()
        .voted_for()
        .ok_or_else(|| Refusal::Malformed {
            what,
            reason: "the vote names no node".into(),
        })
}

/// A log id of a message whose sender holds `vote`: not of a later term than the vote.
fn check_log_id(
    log_id: Option<&LogId<NodeId>>,
    vote: &Vote<NodeId>,
    what: &'static str,
    name: &str,
) -> Result<(), Refusal> {
    match log_id {
        Some(id) if id.leader_id.term > vote.leader_id().term => Err(Refusal::Malformed {
            what,
            reason: format!(
                "{name} has term {}, later than the sender's vote (term {})",
                id.leader_id.term,
                vote.leader_id().term
            ),
        }),
        _ => Ok(()),
    }
}

/// Whether `node` may send log traffic to node `me` (see the module doc): a member; anyone
/// while `me` knows no membership that includes itself (it is waiting to be added, or
/// catching up to the change that added it); or a node that a membership in `carried` (the
/// message's own entries or snapshot) names.
fn check_member<'a>(
    membership: &Membership<NodeId, BasicNode>,
    me: NodeId,
    node: NodeId,
    mut carried: impl Iterator<Item = &'a Membership<NodeId, BasicNode>>,
) -> Result<(), Refusal> {
    if membership.get_node(&node).is_some()
        || membership.get_node(&me).is_none()
        || carried.any(|m| m.get_node(&node).is_some())
    {
        Ok(())
    } else {
        Err(Refusal::NotMember { node })
    }
}

/// Check an AppendEntries received by node `me`; the sender (the leader its vote names).
pub(crate) fn append_entries(
    req: &AppendEntriesRequest<TypeConfig>,
    membership: &Membership<NodeId, BasicNode>,
    me: NodeId,
) -> Result<NodeId, Refusal> {
    const WHAT: &str = "AppendEntries";
    let sender = vote_sender(&req.vote, WHAT)?;
    check_log_id(req.prev_log_id.as_ref(), &req.vote, WHAT, "prev_log_id")?;
    check_log_id(req.leader_commit.as_ref(), &req.vote, WHAT, "leader_commit")?;
    let mut expected = req.prev_log_id.map_or(0, |id| id.index + 1);
    let mut previous = req.prev_log_id;
    for entry in &req.entries {
        let id = entry.log_id;
        check_log_id(Some(&id), &req.vote, WHAT, "an entry")?;
        if id.index != expected {
            return Err(Refusal::Malformed {
                what: WHAT,
                reason: format!("entry index {} where {expected} follows", id.index),
            });
        }
        if previous.is_some_and(|p| p.leader_id.term > id.leader_id.term) {
            return Err(Refusal::Malformed {
                what: WHAT,
                reason: format!("entry {} has an older leader than the one before", id.index),
            });
        }
        expected = expected.saturating_add(1);
        previous = Some(id);
    }
    let carried = req.entries.iter().filter_map(|e| match &e.payload {
        EntryPayload::Membership(m) => Some(m),
        _ => None,
    });
    check_member(membership, me, sender, carried)?;
    Ok(sender)
}

/// Check a vote request; the candidate.
pub(crate) fn vote(
    req: &VoteRequest<NodeId>,
    membership: &Membership<NodeId, BasicNode>,
) -> Result<NodeId, Refusal> {
    const WHAT: &str = "Vote";
    let candidate = vote_sender(&req.vote, WHAT)?;
    check_log_id(req.last_log_id.as_ref(), &req.vote, WHAT, "last_log_id")?;
    let empty = membership.nodes().next().is_none();
    if !empty && !membership.voter_ids().any(|v| v == candidate) {
        return Err(Refusal::NotVoter { node: candidate });
    }
    Ok(candidate)
}

/// Check one InstallSnapshot chunk received by node `me`; the sender.
pub(crate) fn install_snapshot(
    req: &InstallSnapshotRequest<TypeConfig>,
    membership: &Membership<NodeId, BasicNode>,
    me: NodeId,
) -> Result<NodeId, Refusal> {
    const WHAT: &str = "InstallSnapshot";
    let sender = vote_sender(&req.vote, WHAT)?;
    check_log_id(
        req.meta.last_log_id.as_ref(),
        &req.vote,
        WHAT,
        "the snapshot",
    )?;
    let carried = std::iter::once(req.meta.last_membership.membership());
    check_member(membership, me, sender, carried)?;
    Ok(sender)
}

/// Check a peer's answer to AppendEntries.
pub(crate) fn append_entries_response(resp: &AppendEntriesResponse<NodeId>) -> Result<(), Refusal> {
    match resp {
        AppendEntriesResponse::HigherVote(vote) => check_term(vote.leader_id().term),
        AppendEntriesResponse::PartialSuccess(Some(id)) => check_term(id.leader_id.term),
        _ => Ok(()),
    }
}

/// Check a peer's answer to a vote request.
pub(crate) fn vote_response(resp: &VoteResponse<NodeId>) -> Result<(), Refusal> {
    check_term(resp.vote.leader_id().term)?;
    match &resp.last_log_id {
        Some(id) => check_term(id.leader_id.term),
        None => Ok(()),
    }
}

/// Check a peer's answer to a snapshot chunk.
pub(crate) fn install_snapshot_response(
    resp: &InstallSnapshotResponse<NodeId>,
) -> Result<(), Refusal> {
    check_term(resp.vote.leader_id().term)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, Entry, EntryPayload};
    use std::collections::{BTreeMap, BTreeSet};

    fn members(voters: &[NodeId], learners: &[NodeId]) -> Membership<NodeId, BasicNode> {
        let nodes: BTreeMap<NodeId, BasicNode> = voters
            .iter()
            .chain(learners)
            .map(|&id| (id, BasicNode::new(format!("127.0.0.1:{}", 7000 + id))))
            .collect();
        let voters: BTreeSet<NodeId> = voters.iter().copied().collect();
        Membership::new(vec![voters], nodes)
    }

    fn log_id(term: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn append(
        term: u64,
        leader: NodeId,
        prev: Option<LogId<NodeId>>,
        ids: &[LogId<NodeId>],
    ) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(term, leader),
            prev_log_id: prev,
            leader_commit: prev,
            entries: ids
                .iter()
                .map(|&log_id| Entry {
                    log_id,
                    payload: EntryPayload::Blank,
                })
                .collect(),
        }
    }

    #[test]
    fn unreachable_terms_are_refused() {
        let m = members(&[1, 2, 3], &[]);
        for term in [u64::MAX, u64::MAX - 1, MAX_TERM + 1] {
            let req = append(term, 1, None, &[]);
            assert_eq!(append_entries(&req, &m, 2), Err(Refusal::Term { term }));
            let req = VoteRequest::new(Vote::new(term, 2), None);
            assert_eq!(vote(&req, &m), Err(Refusal::Term { term }));
            let resp = VoteResponse::new(Vote::new(term, 2), None, true);
            assert!(vote_response(&resp).is_err());
            let resp = AppendEntriesResponse::HigherVote(Vote::new(term, 2));
            assert!(append_entries_response(&resp).is_err());
        }
        assert_eq!(
            append_entries(&append(MAX_TERM, 1, None, &[]), &m, 2),
            Ok(1)
        );
    }

    #[test]
    fn senders_must_be_members_and_candidates_voters() {
        let m = members(&[1, 2, 3], &[4]);
        assert_eq!(append_entries(&append(5, 4, None, &[]), &m, 2), Ok(4));
        assert_eq!(
            append_entries(&append(5, 99, None, &[]), &m, 2),
            Err(Refusal::NotMember { node: 99 })
        );
        let req = VoteRequest::new(Vote::new(5, 4), None);
        assert_eq!(vote(&req, &m), Err(Refusal::NotVoter { node: 4 }));
        let req = VoteRequest::new(Vote::new(5, 2), Some(log_id(4, 10)));
        assert_eq!(vote(&req, &m), Ok(2));
        // A node that knows no membership yet (a learner waiting to be added, or a member
        // of a cluster another node initialized) accepts its future leader.
        let empty = Membership::default();
        assert_eq!(append_entries(&append(5, 99, None, &[]), &empty, 5), Ok(99));
        let req = VoteRequest::new(Vote::new(5, 99), None);
        assert_eq!(vote(&req, &empty), Ok(99));
        // A new node (5) whose log has reached an older membership without it accepts the
        // leader that added it (4), though that membership does not name 4 either.
        assert_eq!(
            append_entries(&append(5, 4, None, &[]), &members(&[1, 2, 3], &[]), 5),
            Ok(4)
        );
        // A member accepts a sender that the appended entries themselves add.
        let mut adds_9 = append(5, 9, Some(log_id(4, 7)), &[log_id(5, 8)]);
        adds_9.entries[0].payload = EntryPayload::Membership(members(&[1, 2, 9], &[]));
        assert_eq!(append_entries(&adds_9, &m, 2), Ok(9));
        adds_9.entries[0].payload = EntryPayload::Membership(members(&[1, 2, 3], &[]));
        assert_eq!(
            append_entries(&adds_9, &m, 2),
            Err(Refusal::NotMember { node: 9 })
        );
    }

    #[test]
    fn malformed_appends_are_refused() {
        let m = members(&[1, 2, 3], &[]);
        let ok = append(5, 1, Some(log_id(4, 7)), &[log_id(4, 8), log_id(5, 9)]);
        assert_eq!(append_entries(&ok, &m, 2), Ok(1));
        for bad in [
            // A gap after prev_log_id.
            append(5, 1, Some(log_id(4, 7)), &[log_id(4, 9)]),
            // Not consecutive.
            append(5, 1, None, &[log_id(4, 0), log_id(4, 2)]),
            // Terms going back.
            append(5, 1, None, &[log_id(5, 0), log_id(4, 1)]),
            // A later term than the leader's vote.
            append(5, 1, None, &[log_id(6, 0)]),
            append(5, 1, Some(log_id(6, 3)), &[]),
        ] {
            assert!(
                matches!(append_entries(&bad, &m, 2), Err(Refusal::Malformed { .. })),
                "{bad:?}"
            );
        }
    }
}
