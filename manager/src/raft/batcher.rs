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

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
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
/// Most store actions in one entry (unless a single proposal has more): a few
/// thousand tasks are a few hundred kilobytes, which a follower receives, decodes
/// and fsyncs well within its election timeout even on a loaded machine.
const MAX_ENTRY_ACTIONS: usize = 2048;

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
    let mut queue: VecDeque<(Request, Reply)> = VecDeque::new();
    loop {
        if queue.is_empty() {
            match rx.recv().await {
                Some(p) => queue.push_back(p),
                None => return,
            }
        }
        // Proposals keep queueing while every slot is taken: that is the batching.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            // The semaphore is never closed.
            return;
        };
        while let Ok(p) = rx.try_recv() {
            queue.push_back(p);
        }
        let batch = next_batch(&mut queue);
        let raft = raft.clone();
        spawn_in_slot(slot, async move { commit(&raft, batch).await });
    }
}

/// Takes the proposals of the next entry from the front of `queue`: at least one,
/// then as many as fit in [`MAX_PROPOSALS`] and [`MAX_ENTRY_ACTIONS`].
fn next_batch<T>(queue: &mut VecDeque<(Request, T)>) -> Vec<(Request, T)> {
    let mut batch = Vec::new();
    let mut actions = 0usize;
    while let Some((req, _)) = queue.front() {
        let n = req.actions.len();
        if !batch.is_empty() && (batch.len() >= MAX_PROPOSALS || actions + n > MAX_ENTRY_ACTIONS) {
            break;
        }
        actions += n;
        if let Some(p) = queue.pop_front() {
            batch.push(p);
        }
    }
    batch
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreAction;

    fn req(actions: usize) -> (Request, ()) {
        let remove = |i: usize| StoreAction::RemoveTask { id: i.to_string() };
        let actions = (0..actions).map(remove).collect();
        (Request { actions }, ())
    }

    #[test]
    fn entries_are_bounded_by_actions_but_take_at_least_one_proposal() {
        let mut queue: VecDeque<_> = [1000, 1000, 1000, 5000, 1].map(req).into();
        let sizes = |b: Vec<(Request, ())>| b.iter().map(|(r, _)| r.actions.len()).collect();
        let first: Vec<usize> = sizes(next_batch(&mut queue));
        assert_eq!(first, vec![1000, 1000]);
        let second: Vec<usize> = sizes(next_batch(&mut queue));
        assert_eq!(second, vec![1000]);
        let third: Vec<usize> = sizes(next_batch(&mut queue));
        assert_eq!(third, vec![5000]);
        let fourth: Vec<usize> = sizes(next_batch(&mut queue));
        assert_eq!(fourth, vec![1]);
        assert!(queue.is_empty());
    }

    #[test]
    fn entries_are_bounded_by_proposals() {
        let mut queue: VecDeque<_> = (0..300).map(|_| req(1)).collect();
        assert_eq!(next_batch(&mut queue).len(), MAX_PROPOSALS);
        assert_eq!(queue.len(), 300 - MAX_PROPOSALS);
    }
}
