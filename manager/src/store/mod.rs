//! The managers' in-memory store: the Raft state machine's contents.
//!
//! Every manager applies the same committed batches of [`StoreAction`]s in the same
//! order, so every store holds the same objects. A batch is applied atomically: if one
//! action is refused (a duplicate name, a stale version), none of the batch is applied
//! and the caller gets the [`StoreError`].
//!
//! Readers use [`Store::view`]; long-lived components use [`Store::view_and_watch`],
//! which returns a consistent read plus a stream of every event applied after it, with
//! no gap and no duplicate, because both happen under the same lock.

mod data;
mod images;
mod proposer;
#[cfg(test)]
mod tests;
mod watchers;

pub use data::{ReadTx, StoreSnapshot};
pub use proposer::{DirectProposer, ProposeError, Proposer, update};

use std::sync::{Arc, Mutex, PoisonError, RwLock};

use rswarm_proto::api::{Cluster, Image, Node, Service, Task};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// One change to the store, as proposed through Raft.
///
/// Objects carry their full new value: applying is a pure replacement, which keeps the
/// state machine deterministic and trivially replayable.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum StoreAction {
    /// Adds a node; refused if the id exists.
    CreateNode(Node),
    /// Replaces a node; its `meta.version` must equal the stored one.
    UpdateNode(Node),
    /// Deletes a node.
    RemoveNode {
        /// The node's id.
        id: String,
    },
    /// Adds a service; refused if the id or the name exists.
    CreateService(Service),
    /// Replaces a service; its `meta.version` must equal the stored one.
    UpdateService(Service),
    /// Deletes a service.
    RemoveService {
        /// The service's id.
        id: String,
    },
    /// Adds a task; refused if the id exists.
    CreateTask(Task),
    /// Replaces a task; its `meta.version` must equal the stored one.
    UpdateTask(Task),
    /// Deletes a task.
    RemoveTask {
        /// The task's id.
        id: String,
    },
    /// Creates the cluster object; refused if one exists.
    CreateCluster(Cluster),
    /// Replaces the cluster object; its `meta.version` must equal the stored one.
    UpdateCluster(Cluster),
    /// Adds an image; refused if the id exists or one of its names is held by another.
    CreateImage(Image),
    /// Replaces an image; its `meta.version` must equal the stored one.
    UpdateImage(Image),
    /// Deletes an image.
    RemoveImage {
        /// The image's id (manifest digest).
        id: String,
    },
}

/// The kind of a stored object, for error messages and events.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Kind {
    /// A [`Node`].
    Node,
    /// A [`Service`].
    Service,
    /// A [`Task`].
    Task,
    /// The [`Cluster`] object.
    Cluster,
    /// An [`Image`].
    Image,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Node => "node",
            Kind::Service => "service",
            Kind::Task => "task",
            Kind::Cluster => "cluster",
            Kind::Image => "image",
        })
    }
}

/// Why a batch was refused. Nothing of the batch was applied.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist.
    #[error("{kind} {id} not found")]
    NotFound {
        /// What was looked for.
        kind: Kind,
        /// Its id.
        id: String,
    },
    /// An object with this id exists already.
    #[error("{kind} {id} already exists")]
    AlreadyExists {
        /// What was created.
        kind: Kind,
        /// Its id.
        id: String,
    },
    /// Another object holds this name.
    #[error("{kind} name {name:?} is already in use by {existing_id}")]
    NameConflict {
        /// What was named.
        kind: Kind,
        /// The contested name.
        name: String,
        /// The object holding it.
        existing_id: String,
    },
    /// The object changed since it was read; read it again and retry.
    #[error("{kind} {id} was changed concurrently (version {expected} expected, {found} found)")]
    VersionConflict {
        /// What was updated.
        kind: Kind,
        /// Its id.
        id: String,
        /// The version the update was based on.
        expected: u64,
        /// The stored version.
        found: u64,
    },
}

/// An object as carried by an [`Event`].
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    /// A node.
    Node(Node),
    /// A service.
    Service(Service),
    /// A task.
    Task(Task),
    /// The cluster.
    Cluster(Cluster),
    /// An image.
    Image(Image),
}

/// What a watcher receives, in apply order.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// An object was created (its new value).
    Created(Object),
    /// An object was updated (its new value).
    Updated(Object),
    /// An object was removed (its last value).
    Removed(Object),
    /// The store was replaced by a snapshot: read it again.
    Reset,
    /// A batch ended; carries its Raft index. Components that debounce use it.
    Commit(u64),
}

/// The receiving end of [`Store::view_and_watch`]. Dropping it unsubscribes.
pub type Watch = mpsc::UnboundedReceiver<Event>;

struct Inner {
    data: RwLock<data::StoreData>,
    // Lock order: `data` then `watchers`. Registration takes `data` for reading and
    // applying takes it for writing, so no event can fall between a view and its watch.
    watchers: Mutex<watchers::Watchers>,
}

/// The store. Cheap to clone: clones share the same contents.
///
/// std locks are right here: no `.await` happens while one is held, and every
/// critical section is a bounded in-memory operation.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    /// An empty store.
    pub fn new() -> Store {
        Store {
            inner: Arc::new(Inner {
                data: RwLock::new(data::StoreData::default()),
                watchers: Mutex::new(watchers::Watchers::default()),
            }),
        }
    }

    /// Applies a batch atomically (all or nothing) as Raft log index `index`: written
    /// objects get `meta.version = index`. Deterministic: the same batch on the same
    /// contents gives the same result on every manager.
    pub fn apply(&self, index: u64, actions: &[StoreAction]) -> Result<(), StoreError> {
        self.apply_each(index, [actions]).pop().unwrap_or(Ok(()))
    }

    /// Applies several independent batches, in order, all as Raft log index `index`:
    /// each is atomic on its own and a refused one leaves the others applied. Watchers
    /// receive the events of the applied batches and one [`Event::Commit`] (none at
    /// all when every batch was refused).
    pub fn apply_each<'a>(
        &self,
        index: u64,
        batches: impl IntoIterator<Item = &'a [StoreAction]>,
    ) -> Vec<Result<(), StoreError>> {
        let mut data = self
            .inner
            .data
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut events = Vec::new();
        let results = batches
            .into_iter()
            .map(|actions| {
                events.append(&mut data.apply(index, actions)?);
                Ok(())
            })
            .collect::<Vec<_>>();
        if results.iter().all(Result::is_err) {
            // Nothing changed: watchers hear nothing, as for a refused single batch.
            return results;
        }
        self.inner
            .watchers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .publish(index, &events);
        results
    }

    /// Runs `f` on a consistent view of the store.
    pub fn view<R>(&self, f: impl FnOnce(&ReadTx<'_>) -> R) -> R {
        let data = self
            .inner
            .data
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        f(&ReadTx::new(&data))
    }

    /// Runs `f` on a consistent view and subscribes to every event applied after it.
    pub fn view_and_watch<R>(&self, f: impl FnOnce(&ReadTx<'_>) -> R) -> (R, Watch) {
        self.watch_scoped(None, f)
    }

    /// Runs `f` on a consistent view and subscribes to the events, applied after it,
    /// of the tasks placed on `node_id` (by the task's new value, or last value for a
    /// removal), each batch's [`Event::Commit`] when it had some, and [`Event::Reset`].
    pub fn view_and_watch_node_tasks<R>(
        &self,
        node_id: &str,
        f: impl FnOnce(&ReadTx<'_>) -> R,
    ) -> (R, Watch) {
        self.watch_scoped(Some(node_id), f)
    }

    fn watch_scoped<R>(&self, node: Option<&str>, f: impl FnOnce(&ReadTx<'_>) -> R) -> (R, Watch) {
        let data = self
            .inner
            .data
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let r = f(&ReadTx::new(&data));
        let rx = self
            .inner
            .watchers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add(node);
        (r, rx)
    }

    /// A full copy of the contents, for a Raft snapshot.
    pub fn snapshot(&self) -> StoreSnapshot {
        let data = self
            .inner
            .data
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        data.to_snapshot()
    }

    /// Replaces the whole contents; watchers receive [`Event::Reset`] and must read again.
    pub fn restore(&self, snapshot: StoreSnapshot) {
        let mut data = self
            .inner
            .data
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        *data = data::StoreData::from_snapshot(snapshot);
        self.inner
            .watchers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reset();
    }
}
