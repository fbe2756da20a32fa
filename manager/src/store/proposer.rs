//! Writing to the store: batches are proposed (through Raft in production) and
//! applied by every manager once committed.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{ReadTx, Store, StoreAction, StoreError};

/// Why a proposal did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// The batch was committed but refused by the store; nothing was applied.
    #[error(transparent)]
    Rejected(#[from] StoreError),
    /// The batch could not be committed (no leader, leader unreachable, shutting down).
    #[error("the cluster cannot accept writes right now: {0}")]
    Unavailable(String),
}

/// Proposes batches of store actions and resolves once they are applied locally or
/// refused.
pub trait Proposer: Send + Sync {
    /// Proposes one batch, applied atomically.
    fn propose(
        &self,
        actions: Vec<StoreAction>,
    ) -> impl Future<Output = Result<(), ProposeError>> + Send;
}

/// Applies batches straight to a store, numbering them itself: for unit tests and
/// tools that run without Raft.
pub struct DirectProposer {
    store: Store,
    next_index: AtomicU64,
}

impl DirectProposer {
    /// A proposer writing into `store`, starting at index 1.
    pub fn new(store: Store) -> DirectProposer {
        DirectProposer {
            store,
            next_index: AtomicU64::new(1),
        }
    }
}

impl Proposer for DirectProposer {
    async fn propose(&self, actions: Vec<StoreAction>) -> Result<(), ProposeError> {
        let index = self.next_index.fetch_add(1, Ordering::SeqCst);
        self.store.apply(index, &actions)?;
        Ok(())
    }
}

/// How many times [`update`] re-reads and retries after a concurrent change.
const UPDATE_ATTEMPTS: usize = 5;

/// A transactional read-modify-write: `f` reads the store and returns the batch to
/// propose. If another write changed an object in between (version conflict), `f`
/// runs again on fresh data, a bounded number of times.
pub async fn update<P, E, F>(store: &Store, proposer: &P, f: F) -> Result<(), E>
where
    P: Proposer,
    E: From<ProposeError>,
    F: Fn(&ReadTx<'_>) -> Result<Vec<StoreAction>, E>,
{
    let mut attempt = 0;
    loop {
        let actions = store.view(&f)?;
        if actions.is_empty() {
            return Ok(());
        }
        match proposer.propose(actions).await {
            Err(ProposeError::Rejected(StoreError::VersionConflict { .. }))
                if attempt + 1 < UPDATE_ATTEMPTS =>
            {
                attempt += 1;
                // A follower's copy may trail the leader's by a moment: let it catch up.
                tokio::time::sleep(Duration::from_millis(10 * attempt as u64)).await;
            }
            other => return other.map_err(E::from),
        }
    }
}
