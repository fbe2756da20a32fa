//! Group commit: proposals that arrive while earlier entries are being appended and
//! replicated are gathered into one log entry.
//!
//! openraft 0.9 turns every `client_write` into its own entry, and its core waits for
//! that entry's append (a redb commit with fsync) before it handles the next write: one
//! proposal per entry caps the group at one leader fsync per write, and the core is busy
//! with storage instead of replication. Holding proposals back while a few entries are
//! in flight lets one append, one fsync on each member and one replication round serve
//! all of them. Durability is unchanged: a proposal is answered only once its entry is
//! committed (fsynced on a quorum) and applied.

use std::sync::Arc;

use std::future::Future;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use super::node::{Committed, ForwardError, leader_of};
use super::{Proposals, Raft, Request};
use openraft::error::{ClientWriteError, RaftError};

/// Entries submitted to openraft and not yet applied (each counted for at most
/// [`MAX_SLOT_HOLD`]). Two keep the core busy (one is being appended while the
/// previous one is replicated) while new proposals gather.
const MAX_IN_FLIGHT: usize = 2;
/// Most proposals in one entry, so that an entry stays a bounded message.
const MAX_PROPOSALS: usize = 128;

/// Longest time one batch holds its slot. A batch sent to a leader that has just
/// died or lost its quorum can hang until its timeout: later proposals (for the next
/// leader) must not wait behind it.
const MAX_SLOT_HOLD: Duration = Duration::from_millis(250);

type Reply = oneshot::Sender<Result<Committed, ForwardError>>;

/// The queue in front of the local Raft member's `client_write`.
pub(crate) struct Batcher {
    tx: mpsc::UnboundedSender<(Request, Reply)>,
}

impl Batcher {
    /// Starts the batching task; it ends when the batcher is dropped.
    pub(crate) fn start(raft: Raft) -> Batcher {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, rx));
        Batcher { tx }
    }

    /// Commits every request (each on its own) if this member is the leader: queued
    /// together, they normally share one entry. One verdict per request, in order.
    pub(crate) async fn write_all(
        &self,
        reqs: Vec<Request>,
    ) -> Vec<Result<Committed, ForwardError>> {
        // All queued before any is awaited, so that they can share an entry.
        let answers: Vec<_> = reqs
            .into_iter()
            .map(|req| {
                let (reply, answer) = oneshot::channel();
                self.tx.send((req, reply)).ok().map(|()| answer)
            })
            .collect();
        let mut verdicts = Vec::with_capacity(answers.len());
        for answer in answers {
            verdicts.push(match answer {
                Some(answer) => answer.await.unwrap_or_else(|_| Err(dropped())),
                None => Err(closed()),
            });
        }
        verdicts
    }

    /// Commits `req` in the next entry if this member is the leader.
    pub(crate) async fn write(&self, req: Request) -> Result<Committed, ForwardError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send((req, reply)).map_err(|_| closed())?;
        answer.await.map_err(|_| dropped())?
    }
}

/// Runs `work` in its own task, holding `slot` until it ends or for
/// [`MAX_SLOT_HOLD`], whichever comes first; the work itself is never cut short.
pub(crate) fn spawn_in_slot(
    slot: OwnedSemaphorePermit,
    work: impl Future<Output = ()> + Send + 'static,
) {
    let work = tokio::spawn(work);
    tokio::spawn(async move {
        // On timeout the handle is dropped, which detaches the task without stopping it.
        let _ = tokio::time::timeout(MAX_SLOT_HOLD, work).await;
        drop(slot);
    });
}

fn closed() -> ForwardError {
    ForwardError::Fatal("the proposal queue is closed".to_string())
}

fn dropped() -> ForwardError {
    ForwardError::Fatal("the proposal queue dropped the proposal".to_string())
}

async fn run(raft: Raft, mut rx: mpsc::UnboundedReceiver<(Request, Reply)>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, MAX_PROPOSALS).await > 0 {
        // Proposals keep queueing while every slot is taken: that is the batching.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            // The semaphore is never closed.
            return;
        };
        while batch.len() < MAX_PROPOSALS {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let batch = std::mem::take(&mut batch);
        let raft = raft.clone();
        spawn_in_slot(slot, async move { commit(&raft, batch).await });
    }
}

/// Writes `batch` as one entry and answers each proposal with its own verdict.
async fn commit(raft: &Raft, batch: Vec<(Request, Reply)>) {
    let (requests, replies): (Vec<Request>, Vec<Reply>) = batch.into_iter().unzip();
    let err = match raft.client_write(Proposals { requests }).await {
        Ok(resp) => {
            let index = resp.log_id.index;
            // One response per request, in order (the state machine's contract).
            for (reply, response) in replies.into_iter().zip(resp.data.responses) {
                // The proposer may have given up (timeout); its verdict is then unused.
                let _ = reply.send(Ok(Committed { index, response }));
            }
            return;
        }
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => ForwardError::NotLeader {
            leader: leader_of(&f),
        },
        // Only membership entries can fail this way, never a normal one.
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
            ForwardError::Fatal(e.to_string())
        }
        Err(RaftError::Fatal(f)) => ForwardError::Fatal(f.to_string()),
    };
    for reply in replies {
        let _ = reply.send(Err(err.clone()));
    }
}
