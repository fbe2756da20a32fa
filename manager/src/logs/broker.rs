//! The leader's log broker: matches clients asking for a service's logs with the
//! nodes that hold them.
//!
//! Each node keeps one subscription stream open to the leader; a client's request
//! becomes one [`LogSubscription`] per node that ran the service's tasks, and each
//! node answers with its own publish stream, which the broker forwards to the
//! client. Without `follow`, the client's stream ends once every node has answered.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rswarm_proto::api::{LogEntry, LogSubscription, ServiceLogsMessage};
use tokio::sync::mpsc;

/// Messages a client's stream may hold before publishers wait for it.
const CLIENT_BUFFER: usize = 64;

/// What a client asked for, resolved: each node and the tasks it ran.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogPlan {
    /// Node id → (task id, task name) of the tasks the node ran.
    pub nodes: HashMap<String, Vec<(String, String)>>,
    /// Keep streaming new lines.
    pub follow: bool,
    /// Last lines per task; negative: all.
    pub tail: i64,
    /// Node id → hostname, for warnings.
    pub hostnames: HashMap<String, String>,
}

struct NodeStream {
    tx: mpsc::UnboundedSender<LogSubscription>,
    generation: u64,
}

struct Subscription {
    client: mpsc::Sender<ServiceLogsMessage>,
    /// Nodes that have not finished answering.
    pending: HashSet<String>,
    follow: bool,
    /// What each pending node was asked, to ask again if it reconnects.
    requests: HashMap<String, LogSubscription>,
    /// Task id → task name.
    names: HashMap<String, String>,
}

#[derive(Default)]
struct Inner {
    nodes: HashMap<String, NodeStream>,
    subs: HashMap<String, Subscription>,
    generation: u64,
}

/// The broker. Cheap operations under one std mutex, never held across an await.
#[derive(Default)]
pub struct LogBroker {
    inner: Mutex<Inner>,
}

/// A node's permission to publish to one subscription.
pub struct Publisher {
    client: mpsc::Sender<ServiceLogsMessage>,
    names: HashMap<String, String>,
    node_id: String,
}

impl Publisher {
    /// Forwards entries to the client, naming their tasks and node; waits while the
    /// client's buffer is full. False once the client has gone.
    pub async fn send(&self, mut entries: Vec<LogEntry>) -> bool {
        for entry in &mut entries {
            entry.node_id = self.node_id.clone();
            if let Some(name) = self.names.get(&entry.task_id) {
                entry.task_name = name.clone();
            }
        }
        self.client
            .send(ServiceLogsMessage {
                entries,
                warning: String::new(),
            })
            .await
            .is_ok()
    }
}

fn warning(text: String) -> ServiceLogsMessage {
    ServiceLogsMessage {
        entries: Vec::new(),
        warning: text,
    }
}

impl LogBroker {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A node's subscription stream opened; it replaces an older one of the same
    /// node. Followed subscriptions still waiting on the node are asked again.
    pub fn register_node(&self, node_id: &str) -> (u64, mpsc::UnboundedReceiver<LogSubscription>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut inner = self.lock();
        inner.generation += 1;
        let generation = inner.generation;
        for sub in inner.subs.values() {
            if let Some(request) = sub.requests.get(node_id)
                && sub.pending.contains(node_id)
            {
                let _ = tx.send(request.clone());
            }
        }
        inner
            .nodes
            .insert(node_id.to_owned(), NodeStream { tx, generation });
        (generation, rx)
    }

    /// A node's subscription stream closed. Subscriptions that do not follow stop
    /// waiting for it, with a warning to their client.
    pub fn unregister_node(&self, node_id: &str, generation: u64) {
        let mut inner = self.lock();
        if inner
            .nodes
            .get(node_id)
            .is_some_and(|n| n.generation == generation)
        {
            inner.nodes.remove(node_id);
        } else {
            return;
        }
        let mut finished = Vec::new();
        for (id, sub) in inner.subs.iter_mut() {
            if sub.follow || !sub.pending.remove(node_id) {
                continue;
            }
            let _ = sub.client.try_send(warning(format!(
                "node {node_id} disconnected before sending all its logs"
            )));
            if sub.pending.is_empty() {
                finished.push(id.clone());
            }
        }
        for id in finished {
            inner.subs.remove(&id);
        }
    }

    /// Starts a subscription: asks each node of the plan for its tasks' logs.
    /// Returns its id and the client's stream, which starts with a warning for each
    /// node that is not connected.
    pub fn subscribe(&self, plan: LogPlan) -> (String, mpsc::Receiver<ServiceLogsMessage>) {
        let id = uuid::Uuid::new_v4().to_string();
        let (client, rx) = mpsc::channel(CLIENT_BUFFER);
        let mut sub = Subscription {
            client,
            pending: HashSet::new(),
            follow: plan.follow,
            requests: HashMap::new(),
            names: HashMap::new(),
        };
        let mut inner = self.lock();
        let mut nodes: Vec<_> = plan.nodes.into_iter().collect();
        nodes.sort();
        for (node_id, tasks) in nodes {
            let request = LogSubscription {
                id: id.clone(),
                task_ids: tasks.iter().map(|(task, _)| task.clone()).collect(),
                follow: plan.follow,
                tail: plan.tail,
                close: false,
            };
            let count = tasks.len();
            sub.names.extend(tasks);
            let sent = inner
                .nodes
                .get(&node_id)
                .is_some_and(|n| n.tx.send(request.clone()).is_ok());
            if sent || plan.follow {
                sub.pending.insert(node_id.clone());
                sub.requests.insert(node_id.clone(), request);
            }
            if !sent {
                let host = plan.hostnames.get(&node_id).unwrap_or(&node_id);
                let _ = sub.client.try_send(warning(format!(
                    "node {host} is not connected: the logs of its {count} task(s) are missing{}",
                    if plan.follow {
                        " until it reconnects"
                    } else {
                        ""
                    }
                )));
            }
        }
        if !sub.pending.is_empty() || sub.follow {
            inner.subs.insert(id.clone(), sub);
        }
        (id, rx)
    }

    /// The client went away: the nodes still answering are told to stop.
    pub fn unsubscribe(&self, id: &str) {
        let mut inner = self.lock();
        let Some(sub) = inner.subs.remove(id) else {
            return;
        };
        for node_id in sub.pending {
            if let Some(node) = inner.nodes.get(&node_id) {
                let _ = node.tx.send(LogSubscription {
                    id: id.to_owned(),
                    close: true,
                    ..Default::default()
                });
            }
        }
    }

    /// A node starts answering subscription `id`; None if it was not asked (or the
    /// client has gone).
    pub fn publisher(&self, id: &str, node_id: &str) -> Option<Publisher> {
        let inner = self.lock();
        let sub = inner.subs.get(id)?;
        sub.pending.contains(node_id).then(|| Publisher {
            client: sub.client.clone(),
            names: sub.names.clone(),
            node_id: node_id.to_owned(),
        })
    }

    /// A node finished answering (with `error` if it could not give everything).
    /// Without follow, the client's stream ends after the last node.
    pub fn finished(&self, id: &str, node_id: &str, error: Option<String>) {
        let mut inner = self.lock();
        let Some(sub) = inner.subs.get_mut(id) else {
            return;
        };
        if let Some(error) = error {
            let _ = sub
                .client
                .try_send(warning(format!("node {node_id}: {error}")));
        }
        if sub.follow {
            // A following node stops only when told to; if it ends on its own (its
            // task was removed), it is not asked again.
            sub.requests.remove(node_id);
        }
        sub.pending.remove(node_id);
        if sub.pending.is_empty() && !sub.follow {
            inner.subs.remove(id);
        }
    }

    /// Subscriptions open now (for tests and metrics).
    pub fn subscriptions(&self) -> usize {
        self.lock().subs.len()
    }
}
