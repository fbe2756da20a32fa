//! Forwarding a follower's proposals to the leader, several per `Propose` call.
//!
//! Two thirds of the writes reach a follower when clients are spread over the managers.
//! One gRPC call per write costs both ends a request's worth of HTTP/2, TLS and task
//! work; proposals that arrive while earlier calls are in flight share the next call,
//! and the leader puts them in the same log entry.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};

use super::batcher::spawn_in_slot;
use super::network::Peers;
use super::node::{Committed, ForwardError, ProposeError};
use super::{NodeId, Proposals, Request, decode, encode};

/// `Propose` calls in flight at once (each counted for at most the batcher's
/// `MAX_SLOT_HOLD`, so that calls hanging on a dead leader do not hold back the rest).
const MAX_IN_FLIGHT: usize = 2;
/// Most proposals in one call.
const MAX_PROPOSALS: usize = 128;

/// What a forwarded proposal comes back with: `None` when it should be retried (the
/// leader moved or could not be reached, so it did not commit it).
pub(crate) type Forwarded = Result<Option<Committed>, ProposeError>;

/// The leader's answer to a `Propose` call: one verdict per proposal, in order.
pub(crate) type ProposeAnswer = Vec<Result<Committed, ForwardError>>;

struct Pending {
    leader_id: NodeId,
    addr: String,
    req: Request,
    reply: oneshot::Sender<Forwarded>,
}

/// The queue of proposals on their way to the leader.
pub(crate) struct Forwarder {
    tx: mpsc::UnboundedSender<Pending>,
}

impl Forwarder {
    /// Starts the forwarding task; it ends when the forwarder is dropped.
    pub(crate) fn start(peers: Arc<Peers>, rpc_timeout: Duration) -> Forwarder {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(peers, rpc_timeout, rx));
        Forwarder { tx }
    }

    /// Sends `req` to the leader `leader_id` at `addr` with the proposals queued meanwhile.
    pub(crate) async fn forward(&self, leader_id: NodeId, addr: &str, req: Request) -> Forwarded {
        let stopped = || ProposeError::Fatal("the forwarding queue stopped".to_string());
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            leader_id,
            addr: addr.to_string(),
            req,
            reply,
        };
        self.tx.send(pending).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(peers: Arc<Peers>, rpc_timeout: Duration, mut rx: mpsc::UnboundedReceiver<Pending>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut queue: Vec<Pending> = Vec::new();
    loop {
        if queue.is_empty() && rx.recv_many(&mut queue, MAX_PROPOSALS).await == 0 {
            return;
        }
        let Ok(slot) = slots.clone().acquire_owned().await else {
            // The semaphore is never closed.
            return;
        };
        while queue.len() < MAX_PROPOSALS {
            match rx.try_recv() {
                Ok(p) => queue.push(p),
                Err(_) => break,
            }
        }
        // Normally all go to the same leader; after a change of leader the proposals
        // still aimed at the old one make a call of their own.
        let (leader_id, addr) = (queue[0].leader_id, queue[0].addr.clone());
        let (batch, rest): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut queue)
            .into_iter()
            .partition(|p| p.leader_id == leader_id && p.addr == addr);
        queue = rest;
        let peers = peers.clone();
        spawn_in_slot(slot, async move {
            call(&peers, rpc_timeout, leader_id, &addr, batch).await;
        });
    }
}

/// One `Propose` call carrying `batch`; every proposal gets its own outcome.
async fn call(
    peers: &Peers,
    rpc_timeout: Duration,
    leader_id: NodeId,
    addr: &str,
    batch: Vec<Pending>,
) {
    let (requests, replies): (Vec<Request>, Vec<oneshot::Sender<Forwarded>>) =
        batch.into_iter().map(|p| (p.req, p.reply)).unzip();
    match send(peers, rpc_timeout, leader_id, addr, Proposals { requests }).await {
        Ok(Some(answers)) => {
            // One answer per proposal (the leader's contract); a missing one shows up
            // as a stopped queue to its proposer.
            for (reply, answer) in replies.into_iter().zip(answers) {
                let outcome = match answer {
                    Ok(committed) => Some(committed),
                    // The leader stepped down or is stopping before accepting the entry.
                    Err(e) => {
                        tracing::debug!(leader_id, error = %e, "forwarded proposal refused, retrying");
                        None
                    }
                };
                let _ = reply.send(Ok(outcome));
            }
        }
        Ok(None) => {
            for reply in replies {
                let _ = reply.send(Ok(None));
            }
        }
        Err(reason) => {
            for reply in replies {
                let _ = reply.send(Err(ProposeError::Forward {
                    leader_id,
                    addr: addr.to_string(),
                    reason: reason.clone(),
                }));
            }
        }
    }
}

/// The leader's answers; `None` when the call should be retried, `Err` with the reason
/// when its outcome is unknown.
async fn send(
    peers: &Peers,
    rpc_timeout: Duration,
    leader_id: NodeId,
    addr: &str,
    proposals: Proposals,
) -> Result<Option<ProposeAnswer>, String> {
    let data = encode(&proposals).map_err(|e| e.to_string())?;
    let mut client = match peers.client(addr) {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(leader_id, error = %e, "cannot reach Raft leader");
            return Ok(None);
        }
    };
    let payload = rswarm_proto::api::RaftPayload { data };
    let resp = match tokio::time::timeout(rpc_timeout, client.propose(payload)).await {
        Err(_) => return Err("timed out".to_string()),
        Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
            tracing::debug!(leader_id, error = %status, "Raft leader unavailable, retrying");
            return Ok(None);
        }
        Ok(Err(status)) => return Err(status.to_string()),
        Ok(Ok(resp)) => resp.into_inner(),
    };
    decode(&resp.data).map(Some).map_err(|e| e.to_string())
}
