//! What every node stream of the dispatcher shares: store events, until the node
//! disconnects, the watch ends or this manager stops leading.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Interval;
use tonic::Status;

use crate::controlapi::RaftView;
use crate::store::{Event, Watch};

/// How often a stream checks that this manager still leads.
const LEADER_CHECK: Duration = Duration::from_millis(200);

/// A store watch that ends when leadership is lost.
pub(crate) struct LeaderWatch {
    /// The store events after the stream's first view.
    watch: Watch,
    /// When to look at the leadership next.
    check: Interval,
}

impl LeaderWatch {
    /// Follows `watch` (must be called inside a tokio runtime).
    pub(crate) fn new(watch: Watch) -> Self {
        LeaderWatch {
            watch,
            check: tokio::time::interval(LEADER_CHECK),
        }
    }

    /// The next store event; `None` when the stream must end: the watch ended,
    /// `out` was closed by the node, or `raft` shows another leader (the node is
    /// told so through `out` first, so it moves to the new leader).
    pub(crate) async fn next<T, R: RaftView>(
        &mut self,
        raft: &R,
        out: &mpsc::Sender<Result<T, Status>>,
    ) -> Option<Event> {
        loop {
            tokio::select! {
                e = self.watch.recv() => return e,
                _ = self.check.tick() => {
                    let s = raft.status();
                    if s.leader != Some(s.self_id) {
                        let _ = out.send(Err(Status::unavailable("this manager stopped leading"))).await;
                        return None;
                    }
                }
                _ = out.closed() => return None,
            }
        }
    }

    /// An event already queued, without waiting.
    pub(crate) fn try_next(&mut self) -> Option<Event> {
        self.watch.try_recv().ok()
    }
}
