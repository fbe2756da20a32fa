//! AppendEntries RPCs that carry entries: bounded in size, and allowed more time than
//! openraft gives them.
//!
//! openraft 0.9 runs every AppendEntries under a time limit of one heartbeat interval
//! (66 ms with the defaults), entries or not, and cancels the RPC when it expires. A
//! batch of a few megabytes, sent to a follower on a loaded machine, needs longer than
//! that: the follower decodes it and fsyncs it before answering. Cancelled every time,
//! it never lands, the follower hears nothing and stands for election, and the
//! leader is deposed by a member that cannot even win.
//!
//! So a request with more than a few kilobytes of entries runs in its own task,
//! under the longer time limit given to [`Appends::new`], and
//! survives openraft's cancellation. openraft retries at once, with the same start of
//! range: the retry waits for the running request instead of sending the entries
//! again, and answers from its outcome. Empty heartbeats and small requests keep
//! openraft's limit.
//!
//! A request is also cut to [`MAX_APPEND_BYTES`] (at least one entry): the follower
//! answers the part sent, openraft is told `PartialSuccess` and sends the rest at
//! once. This bounds what a follower appends (and fsyncs) per request, so that it
//! comes back to its election timer often, and keeps each message far below the
//! transport's limit.

use std::time::Duration;

use openraft::error::{NetworkError, RPCError, RaftError};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
use openraft::{BasicNode, Vote};
use tokio::task::{JoinError, JoinHandle};

use super::network::{Peer, Rpc};
use super::{LogId, NodeId, TypeConfig};

/// Largest encoded size of the entries of one AppendEntries request, unless a single
/// entry is larger (it is then sent alone).
pub(crate) const MAX_APPEND_BYTES: usize = 2 * 1024 * 1024;
/// Requests up to this size are sent as openraft asks, under its time limit: they
/// are done in a few milliseconds.
const INLINE_BYTES: usize = 64 * 1024;

type AppendResult =
    Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>>;

/// The log range a request covers: after `prev`, up to `last`, under `vote`.
#[derive(Clone, Debug, PartialEq)]
struct Range {
    vote: Vote<NodeId>,
    prev: Option<LogId>,
    last: Option<LogId>,
}

impl Range {
    fn of(rpc: &AppendEntriesRequest<TypeConfig>) -> Range {
        Range {
            vote: rpc.vote,
            prev: rpc.prev_log_id,
            last: rpc.entries.last().map(|e| e.log_id).or(rpc.prev_log_id),
        }
    }
}

/// A request running in its own task.
struct InFlight {
    range: Range,
    handle: JoinHandle<AppendResult>,
}

impl Drop for InFlight {
    /// A client openraft drops (its replication to the peer ended) stops its request.
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// The AppendEntries side of one peer's client.
pub(crate) struct Appends {
    /// Time limit of a request with entries.
    ttl: Duration,
    in_flight: Option<InFlight>,
}

impl Appends {
    /// No request running; requests with entries get `ttl`.
    pub(crate) fn new(ttl: Duration) -> Appends {
        Appends {
            ttl,
            in_flight: None,
        }
    }

    /// Sends `rpc`, or answers it from the request already running for the same range.
    /// `heartbeat_ttl` is openraft's limit, used for requests without entries.
    pub(crate) async fn send(
        &mut self,
        peer: &Peer,
        rpc: AppendEntriesRequest<TypeConfig>,
        heartbeat_ttl: Duration,
    ) -> AppendResult {
        let wanted = Range::of(&rpc);
        // openraft may cancel this call while it waits here; the request keeps running
        // and the next call waits for it again.
        if let Some((sent, outcome)) = self.finish().await
            && let Some(answer) = reuse(&sent, outcome, &wanted)
        {
            return answer;
        }
        if rpc.entries.is_empty() {
            return peer.call(Rpc::Append, &rpc, heartbeat_ttl).await;
        }
        let (rpc, bytes) = cut(rpc, MAX_APPEND_BYTES);
        if bytes <= INLINE_BYTES {
            // Small requests fit openraft's limit; running them in their own task
            // would only add a hand-over between threads to every write.
            return peer.call(Rpc::Append, &rpc, heartbeat_ttl).await;
        }
        let range = Range::of(&rpc);
        let (peer, ttl) = (peer.clone(), self.ttl);
        let handle = tokio::spawn(async move { peer.call(Rpc::Append, &rpc, ttl).await });
        self.in_flight = Some(InFlight { range, handle });
        match self.finish().await {
            Some((sent, outcome)) => answer(&sent, outcome, &wanted),
            // Impossible: the request was stored just above.
            None => Err(RPCError::Network(NetworkError::new(
                &std::io::Error::other("AppendEntries request vanished"),
            ))),
        }
    }

    /// Waits for the running request, if any, and takes it with its outcome.
    async fn finish(&mut self) -> Option<(Range, Result<AppendResult, JoinError>)> {
        let flight = self.in_flight.as_mut()?;
        let outcome = (&mut flight.handle).await;
        let flight = self.in_flight.take()?;
        Some((flight.range.clone(), outcome))
    }
}

/// The entries of `rpc` cut to `max_bytes` (encoded), keeping at least one, and
/// their encoded size.
fn cut(
    mut rpc: AppendEntriesRequest<TypeConfig>,
    max_bytes: usize,
) -> (AppendEntriesRequest<TypeConfig>, usize) {
    let mut total = 0usize;
    let mut keep = 0;
    for entry in &rpc.entries {
        // An entry that cannot be sized is kept: encoding it for the wire reports the error.
        let size = postcard::experimental::serialized_size(entry).unwrap_or(0);
        if keep > 0 && total.saturating_add(size) > max_bytes {
            break;
        }
        total = total.saturating_add(size);
        keep += 1;
    }
    rpc.entries.truncate(keep);
    (rpc, total)
}

/// The answer to a request for `wanted` from an earlier request for `sent`, when it
/// is one: same vote and start, and `wanted` covers at least what was sent. A failed
/// earlier request is no answer; the caller sends again.
fn reuse(
    sent: &Range,
    outcome: Result<AppendResult, JoinError>,
    wanted: &Range,
) -> Option<AppendResult> {
    if sent.vote != wanted.vote || sent.prev != wanted.prev || wanted.last < sent.last {
        return None;
    }
    match outcome {
        Ok(Ok(resp)) => Some(Ok(partial(sent, resp, wanted))),
        Ok(Err(_)) | Err(_) => None,
    }
}

/// The answer to a request for `wanted` from the request just sent for `sent` (a
/// prefix of it).
// The error type is openraft's, as `RaftNetwork::append_entries` returns it.
#[allow(clippy::result_large_err)]
fn answer(sent: &Range, outcome: Result<AppendResult, JoinError>, wanted: &Range) -> AppendResult {
    match outcome {
        Ok(Ok(resp)) => Ok(partial(sent, resp, wanted)),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
    }
}

/// A success for `sent` is a partial success for a longer `wanted`.
fn partial(
    sent: &Range,
    resp: AppendEntriesResponse<NodeId>,
    wanted: &Range,
) -> AppendEntriesResponse<NodeId> {
    match resp {
        AppendEntriesResponse::Success if sent.last < wanted.last => {
            AppendEntriesResponse::PartialSuccess(sent.last)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, Entry, EntryPayload};

    fn log_id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    fn entry(index: u64, bytes: usize) -> Entry<TypeConfig> {
        let request = super::super::Request {
            actions: vec![crate::store::StoreAction::RemoveTask {
                id: "x".repeat(bytes),
            }],
        };
        Entry {
            log_id: log_id(index),
            payload: EntryPayload::Normal(super::super::Proposals {
                requests: vec![request],
            }),
        }
    }

    fn request(prev: u64, entries: Vec<Entry<TypeConfig>>) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: Some(log_id(prev)),
            leader_commit: None,
            entries,
        }
    }

    #[test]
    fn requests_are_cut_by_size_but_keep_one_entry() {
        let rpc = request(0, (1..=10).map(|i| entry(i, 1000)).collect());
        let (cut_rpc, bytes) = cut(rpc, 3500);
        assert_eq!(cut_rpc.entries.len(), 3);
        assert!((3000..=3500).contains(&bytes), "{bytes}");
        let big = request(0, vec![entry(1, 10_000), entry(2, 10)]);
        let (cut_big, bytes) = cut(big, 100);
        assert_eq!(cut_big.entries.len(), 1);
        assert!(bytes > 10_000);
    }

    #[test]
    fn a_success_for_a_prefix_is_a_partial_success() {
        let sent = Range::of(&request(4, (5..=7).map(|i| entry(i, 1)).collect()));
        let wanted = Range::of(&request(4, (5..=9).map(|i| entry(i, 1)).collect()));
        let resp = answer(&sent, Ok(Ok(AppendEntriesResponse::Success)), &wanted);
        assert_eq!(
            resp.ok(),
            Some(AppendEntriesResponse::PartialSuccess(Some(log_id(7))))
        );
        let resp = answer(&sent, Ok(Ok(AppendEntriesResponse::Success)), &sent);
        assert_eq!(resp.ok(), Some(AppendEntriesResponse::Success));
    }

    #[test]
    fn an_earlier_request_answers_only_the_same_start_and_vote() {
        let sent = Range::of(&request(4, (5..=7).map(|i| entry(i, 1)).collect()));
        let ok = || Ok(Ok(AppendEntriesResponse::Success));
        let later = Range::of(&request(7, vec![entry(8, 1)]));
        assert!(reuse(&sent, ok(), &later).is_none());
        let heartbeat = Range::of(&request(4, vec![]));
        assert!(reuse(&sent, ok(), &heartbeat).is_none());
        let mut other_vote = sent.clone();
        other_vote.vote = Vote::new_committed(2, 2);
        assert!(reuse(&sent, ok(), &other_vote).is_none());
        let failed = Ok(Err(RPCError::Network(NetworkError::new(
            &std::io::Error::other("down"),
        ))));
        assert!(reuse(&sent, failed, &sent).is_none());
        let conflict = Ok(Ok(AppendEntriesResponse::Conflict));
        assert_eq!(
            reuse(&sent, conflict, &sent).and_then(|r| r.ok()),
            Some(AppendEntriesResponse::Conflict)
        );
    }
}
