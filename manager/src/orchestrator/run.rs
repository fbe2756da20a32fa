//! The orchestrator's loop (leader only): reconciles every service whose tasks,
//! spec or nodes changed, and wakes up when a delayed restart is due.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rswarm_proto::api::Node;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::reconcile;
use crate::controlapi::{RaftView, now_ms};
use crate::leading::{debounce, while_leading};
use crate::store::{Event, Object, Proposer, Store, Watch};

/// Quiet time that ends a burst of events, and the longest a burst may delay work.
const QUIET: Duration = Duration::from_millis(20);
const CAP: Duration = Duration::from_millis(200);
/// Pause before retrying after a proposal failed.
const RETRY: Duration = Duration::from_millis(100);
/// Most task actions proposed and not yet committed: a few Raft entries' worth
/// (see the batcher's entry bound), enough to keep replication busy.
const IN_FLIGHT_ACTIONS: usize = 8192;

/// The orchestrator.
pub struct Orchestrator<P, R> {
    /// This manager's store.
    store: Store,
    /// Where task changes are written.
    proposer: Arc<P>,
    /// Whether this manager leads.
    raft: Arc<R>,
}

enum Dirty {
    All,
    Service(String),
}

fn dirty_of(event: &Event) -> Option<Dirty> {
    match event {
        Event::Created(o) | Event::Updated(o) | Event::Removed(o) => match o {
            Object::Service(s) => Some(Dirty::Service(s.id.clone())),
            Object::Task(t) => Some(Dirty::Service(t.service_id.clone())),
            Object::Node(_) | Object::Cluster(_) => Some(Dirty::All),
            Object::Image(_) => None,
        },
        Event::Reset => Some(Dirty::All),
        Event::Commit(_) => None,
    }
}

impl<P: Proposer + 'static, R: RaftView> Orchestrator<P, R> {
    /// An orchestrator over `store`.
    pub fn new(store: Store, proposer: Arc<P>, raft: Arc<R>) -> Self {
        Orchestrator {
            store,
            proposer,
            raft,
        }
    }

    /// Runs while this manager leads, until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let raft = self.raft.clone();
        while_leading(raft, shutdown, |term| self.lead(term)).await;
    }

    async fn lead(&self, term: CancellationToken) {
        let (all, mut watch): (BTreeSet<String>, Watch) = self
            .store
            .view_and_watch(|tx| tx.services().map(|s| s.id.clone()).collect());
        let mut dirty = all;
        let mut wake_at: Option<u64> = None;
        loop {
            if !dirty.is_empty() {
                let (failed, next) = self.reconcile_services(&dirty).await;
                dirty = failed;
                wake_at = match (wake_at.filter(|w| *w > now_ms()), next) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            let sleep = match (wake_at, dirty.is_empty()) {
                (_, false) => RETRY,
                (Some(w), true) => Duration::from_millis(w.saturating_sub(now_ms()).max(1)),
                (None, true) => Duration::from_secs(3600),
            };
            tokio::select! {
                _ = term.cancelled() => return,
                _ = tokio::time::sleep(sleep) => {
                    if wake_at.is_some_and(|w| w <= now_ms()) {
                        wake_at = None;
                        dirty.extend(self.store.view(|tx| tx.services().map(|s| s.id.clone()).collect::<Vec<_>>()));
                    }
                }
                e = watch.recv() => {
                    let Some(first) = e else { return };
                    let (events, open) = debounce(&mut watch, first, QUIET, CAP).await;
                    for e in events.iter().filter_map(dirty_of) {
                        match e {
                            Dirty::All => dirty.extend(self.store.view(|tx| tx.services().map(|s| s.id.clone()).collect::<Vec<_>>())),
                            Dirty::Service(id) => { dirty.insert(id); }
                        }
                    }
                    if !open {
                        return;
                    }
                }
            }
        }
    }

    /// Reconciles each service; returns the ones to retry and the earliest wake-up.
    ///
    /// The nodes are read once per pass. Every service's actions are proposed at
    /// once, each as its own batch (a refused one does not hold back the others), so
    /// that the Raft batcher packs many services into each entry instead of one
    /// commit round per service; a window on the actions in flight keeps each
    /// proposal's wait for its commit well inside its timeout.
    async fn reconcile_services(&self, ids: &BTreeSet<String>) -> (BTreeSet<String>, Option<u64>) {
        let mut failed = BTreeSet::new();
        let mut wake: Option<u64> = None;
        let now = now_ms();
        let nodes: Vec<Node> = self.store.view(|tx| tx.nodes().cloned().collect());
        let mut work = Vec::new();
        for id in ids {
            let actions = self.store.view(|tx| {
                let service = tx.service(id)?;
                let tasks: Vec<_> = tx.tasks_of_service(id).cloned().collect();
                Some(reconcile(service, &tasks, &nodes, now))
            });
            let Some(actions) = actions else { continue };
            if let Some(w) = actions.wake_at {
                wake = Some(wake.map_or(w, |c: u64| c.min(w)));
            }
            if actions.is_empty() {
                continue;
            }
            debug!(service.id = %id, create = actions.create.len(), update = actions.update.len(), remove = actions.remove.len(), "orchestrator");
            work.push((id, actions.into_store_actions()));
        }
        let window = Semaphore::new(IN_FLIGHT_ACTIONS);
        let proposals = work.into_iter().map(|(id, actions)| {
            let window = &window;
            async move {
                // Permits are taken in service order (the semaphore is fair); a
                // service larger than the window waits for it to drain.
                let n = u32::try_from(actions.len().clamp(1, IN_FLIGHT_ACTIONS)).unwrap_or(1);
                let permit = window.acquire_many(n).await;
                let result = self.proposer.propose(actions).await;
                drop(permit);
                (id, result)
            }
        });
        for (id, result) in futures::future::join_all(proposals).await {
            if let Err(err) = result {
                warn!(service.id = %id, %err, "orchestrator: proposal failed; retrying");
                failed.insert(id.clone());
            }
        }
        (failed, wake)
    }
}
