//! What the scheduler sees: the nodes and the load already counted against each.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use rswarm_proto::api::{EndpointSpec, Node, PortProtocol, Service, ServiceSpec, Task, TaskState};

use crate::store::ReadTx;

/// A port a task binds on its node's own address (publish mode HOST): two tasks on
/// one node cannot both hold it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    /// The protocol, a [`PortProtocol`] as its `i32` value.
    pub protocol: i32,
    /// The published port.
    pub port: u32,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let protocol = match PortProtocol::try_from(self.protocol) {
            Ok(PortProtocol::Tcp) => "tcp",
            Ok(PortProtocol::Udp) => "udp",
            Err(_) => "unknown",
        };
        write!(f, "{}/{protocol}", self.port)
    }
}

/// The host-mode published ports of a service, sorted and without duplicates. A
/// published port of 0 asks the node for any free port, so it never conflicts.
pub fn host_ports(spec: &ServiceSpec) -> Vec<HostPort> {
    endpoint_host_ports(spec.endpoint.as_ref())
}

/// The host-mode published ports of an endpoint, as [`host_ports`].
fn endpoint_host_ports(endpoint: Option<&EndpointSpec>) -> Vec<HostPort> {
    let mut ports: Vec<HostPort> = endpoint
        .into_iter()
        .flat_map(|endpoint| &endpoint.ports)
        .filter(|p| p.is_host_mode() && p.published_port != 0)
        .map(|p| HostPort {
            protocol: p.protocol,
            port: p.published_port,
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The host-mode ports `task` holds, as [`Snapshot::task_host_ports`];
/// `by_service` holds the services' ports.
fn held_ports<'a>(
    by_service: &'a HashMap<String, Vec<HostPort>>,
    task: &Task,
) -> Cow<'a, [HostPort]> {
    match &task.endpoint {
        Some(made_for) => Cow::Owned(endpoint_host_ports(Some(made_for))),
        None => Cow::Borrowed(
            by_service
                .get(&task.service_id)
                .map_or(&[][..], Vec::as_slice),
        ),
    }
}

/// Whether a task holds resources on its node: it is assigned, it is meant to run
/// (desired state at most RUNNING) and it has not stopped yet. Every observed state
/// after RUNNING (COMPLETE, SHUTDOWN, FAILED, REJECTED, REMOVE, ORPHANED) is terminal.
pub fn counts_against_node(task: &Task) -> bool {
    let running = TaskState::Running as i32;
    let observed = task
        .status
        .as_ref()
        .map_or(TaskState::New as i32, |s| s.state);
    !task.node_id.is_empty() && task.desired_state <= running && observed <= running
}

/// The CPU (nano CPUs) and memory (bytes) a task reserves.
pub fn reservations(task: &Task) -> (u64, u64) {
    task.spec
        .as_ref()
        .and_then(|spec| spec.resources.as_ref())
        .and_then(|resources| resources.reservations.as_ref())
        .map_or((0, 0), |r| (r.nano_cpus, r.memory_bytes))
}

/// One node and the load counted against it.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    /// The node as stored.
    node: Node,
    /// Tasks counted against the node.
    tasks: usize,
    /// The same, per service id.
    service_tasks: HashMap<String, usize>,
    /// Sum of the counted tasks' CPU reservations.
    reserved_nano_cpus: u64,
    /// Sum of the counted tasks' memory reservations.
    reserved_memory_bytes: u64,
    /// Host-mode ports the counted tasks publish.
    host_ports: HashSet<HostPort>,
}

impl NodeInfo {
    /// A node with nothing counted against it yet.
    pub fn new(node: Node) -> NodeInfo {
        NodeInfo {
            node,
            tasks: 0,
            service_tasks: HashMap::new(),
            reserved_nano_cpus: 0,
            reserved_memory_bytes: 0,
            host_ports: HashSet::new(),
        }
    }

    /// The node as stored.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The node's id.
    pub fn id(&self) -> &str {
        &self.node.id
    }

    /// How many tasks are counted against the node.
    pub fn task_count(&self) -> usize {
        self.tasks
    }

    /// How many tasks of `service_id` are counted against the node.
    pub fn service_task_count(&self, service_id: &str) -> usize {
        self.service_tasks.get(service_id).copied().unwrap_or(0)
    }

    /// CPU reserved by the counted tasks, in nano CPUs.
    pub fn reserved_nano_cpus(&self) -> u64 {
        self.reserved_nano_cpus
    }

    /// Memory reserved by the counted tasks, in bytes.
    pub fn reserved_memory_bytes(&self) -> u64 {
        self.reserved_memory_bytes
    }

    /// The node's CPU capacity minus what is reserved (0 if overcommitted).
    pub fn available_nano_cpus(&self) -> u64 {
        let capacity = self.node.description.as_ref().map_or(0, |d| d.nano_cpus);
        capacity.saturating_sub(self.reserved_nano_cpus)
    }

    /// The node's memory minus what is reserved (0 if overcommitted).
    pub fn available_memory_bytes(&self) -> u64 {
        let capacity = self.node.description.as_ref().map_or(0, |d| d.memory_bytes);
        capacity.saturating_sub(self.reserved_memory_bytes)
    }

    /// Whether a counted task publishes `port` in host mode.
    pub fn host_port_in_use(&self, port: HostPort) -> bool {
        self.host_ports.contains(&port)
    }

    /// Counts `task`, which publishes `ports` in host mode, against the node.
    fn add(&mut self, task: &Task, ports: &[HostPort]) {
        self.tasks += 1;
        match self.service_tasks.get_mut(task.service_id.as_str()) {
            Some(count) => *count += 1,
            None => {
                self.service_tasks.insert(task.service_id.clone(), 1);
            }
        }
        let (nano_cpus, memory_bytes) = reservations(task);
        self.reserved_nano_cpus = self.reserved_nano_cpus.saturating_add(nano_cpus);
        self.reserved_memory_bytes = self.reserved_memory_bytes.saturating_add(memory_bytes);
        self.host_ports.extend(ports.iter().copied());
    }
}

/// The cluster as the scheduler sees it: every node with the tasks counted against
/// it, and the host-mode ports of every service.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Sorted by node id, so that a node's index orders like its id: ties between
    /// otherwise equal nodes are broken by index, deterministically.
    nodes: Vec<NodeInfo>,
    /// Node id → index in `nodes`.
    by_id: HashMap<String, usize>,
    /// Service id → its host-mode published ports, for a task made before tasks
    /// recorded their endpoint. Any other task holds the ports of the endpoint it
    /// was made for (as the proxies bind them), also while a rolling update
    /// replaces it.
    host_ports: HashMap<String, Vec<HostPort>>,
}

impl Snapshot {
    /// Builds a snapshot from objects; only the tasks that [`counts_against_node`]
    /// and whose node is among `nodes` are counted.
    pub fn new<'a>(
        nodes: impl IntoIterator<Item = &'a Node>,
        services: impl IntoIterator<Item = &'a Service>,
        tasks: impl IntoIterator<Item = &'a Task>,
    ) -> Snapshot {
        let sorted: BTreeMap<&str, &Node> = nodes.into_iter().map(|n| (n.id.as_str(), n)).collect();
        let nodes: Vec<NodeInfo> = sorted.into_values().cloned().map(NodeInfo::new).collect();
        let by_id = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id().to_owned(), i))
            .collect();
        let host_ports = services
            .into_iter()
            .filter_map(|s| {
                let ports = host_ports(s.spec.as_ref()?);
                (!ports.is_empty()).then(|| (s.id.clone(), ports))
            })
            .collect();
        let mut snapshot = Snapshot {
            nodes,
            by_id,
            host_ports,
        };
        for task in tasks.into_iter().filter(|t| counts_against_node(t)) {
            snapshot.add_task(&task.node_id, task);
        }
        snapshot
    }

    /// Builds a snapshot from a consistent read of the store.
    pub fn from_store(tx: &ReadTx<'_>) -> Snapshot {
        Snapshot::new(tx.nodes(), tx.services(), tx.tasks())
    }

    /// Every node, sorted by id.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// One node by id.
    pub fn node(&self, id: &str) -> Option<&NodeInfo> {
        self.by_id.get(id).map(|&i| &self.nodes[i])
    }

    /// The host-mode published ports `task` holds on its node: those of the
    /// endpoint it was made for, or (made before tasks recorded it) its
    /// service's.
    pub fn task_host_ports(&self, task: &Task) -> Cow<'_, [HostPort]> {
        held_ports(&self.host_ports, task)
    }

    /// Counts `task` against node `node_id`, whatever the task's own `node_id` says;
    /// false if the node is unknown. A caller that keeps a snapshot between rounds
    /// records its committed assignments with it.
    pub fn add_task(&mut self, node_id: &str, task: &Task) -> bool {
        match self.by_id.get(node_id) {
            Some(&i) => {
                self.add_task_at(i, task);
                true
            }
            None => false,
        }
    }

    /// The index of node `id` in [`Snapshot::nodes`].
    pub(super) fn index_of(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// Counts `task` against the node at `index`.
    pub(super) fn add_task_at(&mut self, index: usize, task: &Task) {
        let Snapshot {
            nodes, host_ports, ..
        } = self;
        let ports = held_ports(host_ports, task);
        nodes[index].add(task, &ports);
    }
}
