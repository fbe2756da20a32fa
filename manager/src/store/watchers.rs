//! Watch subscriptions. Every event is cloned for each watcher that receives it, so
//! a watcher that only cares about one node's tasks (a dispatcher's assignment
//! stream, one per connected node) subscribes to just those: with a thousand nodes,
//! sending every task event to every stream would cost a thousand deep copies per
//! event, under the store's write lock.

use std::collections::{BTreeSet, HashMap};

use tokio::sync::mpsc;

use super::{Event, Object, Watch};

type Sender = mpsc::UnboundedSender<Event>;

/// The subscribers of one store.
#[derive(Default)]
pub(super) struct Watchers {
    /// Receive every event.
    all: Vec<Sender>,
    /// Receive the events of the tasks placed on one node (by node id), the
    /// [`Event::Commit`] of each batch that had some, and [`Event::Reset`].
    by_node: HashMap<String, Vec<Sender>>,
}

/// The node a task event is about.
fn task_node(event: &Event) -> Option<&str> {
    match event {
        Event::Created(Object::Task(t))
        | Event::Updated(Object::Task(t))
        | Event::Removed(Object::Task(t)) => Some(t.node_id.as_str()),
        _ => None,
    }
}

impl Watchers {
    /// Subscribes to every event, or only to those of `node`'s tasks.
    pub(super) fn add(&mut self, node: Option<&str>) -> Watch {
        let (tx, rx) = mpsc::unbounded_channel();
        match node {
            None => self.all.push(tx),
            Some(node) => self.by_node.entry(node.to_owned()).or_default().push(tx),
        }
        rx
    }

    /// Sends the events of the batch applied at `index`, then its commit.
    pub(super) fn publish(&mut self, index: u64, events: &[Event]) {
        self.all.retain(|w| {
            events.iter().all(|e| w.send(e.clone()).is_ok()) && w.send(Event::Commit(index)).is_ok()
        });
        let mut touched = BTreeSet::new();
        for event in events {
            let Some(node) = task_node(event) else {
                continue;
            };
            if let Some(watchers) = self.by_node.get_mut(node) {
                watchers.retain(|w| w.send(event.clone()).is_ok());
                touched.insert(node);
            }
        }
        for node in touched {
            if let Some(watchers) = self.by_node.get_mut(node) {
                watchers.retain(|w| w.send(Event::Commit(index)).is_ok());
            }
        }
        // Streams of nodes that hear nothing would otherwise never be found closed.
        self.by_node.retain(|_, watchers| {
            watchers.retain(|w| !w.is_closed());
            !watchers.is_empty()
        });
    }

    /// Tells every watcher that the store was replaced.
    pub(super) fn reset(&mut self) {
        self.all.retain(|w| w.send(Event::Reset).is_ok());
        self.by_node.retain(|_, watchers| {
            watchers.retain(|w| w.send(Event::Reset).is_ok());
            !watchers.is_empty()
        });
    }
}
