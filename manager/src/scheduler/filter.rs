//! Placement filters: each one rules nodes out for a task and can say, for a count of
//! nodes it ruled out, why, in words a user reads in `service ps`.

use rswarm_proto::api::Task;
use rswarm_proto::validate::{Constraint, ValidationError, parse_constraint};

use super::snapshot::{HostPort, NodeInfo, Snapshot, reservations};

/// One reason a node may not take a task.
pub trait Filter {
    /// A short name, for logs and tests.
    fn name(&self) -> &'static str;
    /// Whether `node`, with the load counted against it, may take `task`.
    fn check(&self, node: &NodeInfo, task: &Task) -> bool;
    /// Why `failures` nodes (at least 1) were ruled out, e.g. `2 nodes have
    /// insufficient memory`.
    fn explain(&self, failures: usize) -> String;
}

/// `1 node` or `3 nodes`.
fn nodes(n: usize) -> String {
    if n == 1 {
        "1 node".to_owned()
    } else {
        format!("{n} nodes")
    }
}

/// The verb form agreeing with `n` nodes.
fn verb(n: usize, singular: &'static str, plural: &'static str) -> &'static str {
    if n == 1 { singular } else { plural }
}

/// Nodes that are not READY, or that the operator drained or paused.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadyFilter;

impl Filter for ReadyFilter {
    fn name(&self) -> &'static str {
        "ready"
    }

    fn check(&self, node: &NodeInfo, _task: &Task) -> bool {
        node.node().takes_new_tasks()
    }

    fn explain(&self, failures: usize) -> String {
        format!("{} not available for new tasks", nodes(failures))
    }
}

/// One placement constraint of the task's service; a task gets one filter per
/// constraint so that the explanation names the one that failed.
#[derive(Debug, Clone)]
pub struct ConstraintFilter {
    /// The parsed constraint.
    pub constraint: Constraint,
}

impl Filter for ConstraintFilter {
    fn name(&self) -> &'static str {
        "constraint"
    }

    fn check(&self, node: &NodeInfo, _task: &Task) -> bool {
        self.constraint.matches(node.node())
    }

    fn explain(&self, failures: usize) -> String {
        format!(
            "{} {} constraint {}",
            nodes(failures),
            verb(failures, "fails", "fail"),
            self.constraint
        )
    }
}

/// The task's CPU reservation against the node's unreserved CPU.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuFilter;

impl Filter for CpuFilter {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn check(&self, node: &NodeInfo, task: &Task) -> bool {
        reservations(task).0 <= node.available_nano_cpus()
    }

    fn explain(&self, failures: usize) -> String {
        format!(
            "{} {} insufficient CPU",
            nodes(failures),
            verb(failures, "has", "have")
        )
    }
}

/// The task's memory reservation against the node's unreserved memory.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryFilter;

impl Filter for MemoryFilter {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn check(&self, node: &NodeInfo, task: &Task) -> bool {
        reservations(task).1 <= node.available_memory_bytes()
    }

    fn explain(&self, failures: usize) -> String {
        format!(
            "{} {} insufficient memory",
            nodes(failures),
            verb(failures, "has", "have")
        )
    }
}

/// The host-mode ports the task's service publishes, none of which may be in use on
/// the node.
#[derive(Debug, Clone)]
pub struct HostPortFilter {
    /// The task's host-mode published ports.
    pub ports: Vec<HostPort>,
}

impl Filter for HostPortFilter {
    fn name(&self) -> &'static str {
        "host-port"
    }

    fn check(&self, node: &NodeInfo, _task: &Task) -> bool {
        !self.ports.iter().any(|&p| node.host_port_in_use(p))
    }

    fn explain(&self, failures: usize) -> String {
        let ports: Vec<String> = self.ports.iter().map(HostPort::to_string).collect();
        format!(
            "{} {} a conflicting host-mode port ({})",
            nodes(failures),
            verb(failures, "has", "have"),
            ports.join(", ")
        )
    }
}

/// The service's `max_replicas_per_node` against its tasks on the node.
#[derive(Debug, Clone, Copy)]
pub struct MaxReplicasFilter {
    /// The limit (not 0: 0 means unlimited and gets no filter).
    pub max: u64,
}

impl Filter for MaxReplicasFilter {
    fn name(&self) -> &'static str {
        "max-replicas"
    }

    fn check(&self, node: &NodeInfo, task: &Task) -> bool {
        (node.service_task_count(&task.service_id) as u64) < self.max
    }

    fn explain(&self, failures: usize) -> String {
        format!(
            "{} reached the max replicas per node ({})",
            nodes(failures),
            self.max
        )
    }
}

/// The filters that apply to one task, in the order they are checked and explained:
/// readiness, constraints, CPU, memory, host ports, replicas per node. Filters that
/// cannot fail for the task (no reservation, no host port, no limit) are left out.
pub struct Pipeline {
    /// The filters, in order.
    filters: Vec<Box<dyn Filter>>,
}

impl Pipeline {
    /// The filters for `task`, whose host ports `snapshot` tells.
    /// Fails if one of its constraints does not parse: such a task fits no node.
    pub fn for_task(snapshot: &Snapshot, task: &Task) -> Result<Pipeline, ValidationError> {
        let mut filters: Vec<Box<dyn Filter>> = vec![Box::new(ReadyFilter)];
        let placement = task.spec.as_ref().and_then(|s| s.placement.as_ref());
        for input in placement.iter().flat_map(|p| &p.constraints) {
            let constraint = parse_constraint(input)?;
            filters.push(Box::new(ConstraintFilter { constraint }));
        }
        let (nano_cpus, memory_bytes) = reservations(task);
        if nano_cpus > 0 {
            filters.push(Box::new(CpuFilter));
        }
        if memory_bytes > 0 {
            filters.push(Box::new(MemoryFilter));
        }
        let ports = snapshot.task_host_ports(task);
        if !ports.is_empty() {
            filters.push(Box::new(HostPortFilter {
                ports: ports.into_owned(),
            }));
        }
        let max = placement.map_or(0, |p| p.max_replicas_per_node);
        if max > 0 {
            filters.push(Box::new(MaxReplicasFilter { max }));
        }
        Ok(Pipeline { filters })
    }

    /// The filters, in order.
    pub fn filters(&self) -> &[Box<dyn Filter>] {
        &self.filters
    }

    /// The index of the first filter that rules `node` out for `task`, if any.
    pub fn first_failure(&self, node: &NodeInfo, task: &Task) -> Option<usize> {
        self.filters.iter().position(|f| !f.check(node, task))
    }

    /// Whether `node` passes every filter for `task`.
    pub fn passes(&self, node: &NodeInfo, task: &Task) -> bool {
        self.first_failure(node, task).is_none()
    }

    /// Why no node of `nodes` fits `task`: each node is charged to the first filter
    /// that rules it out, and the counts are given in filter order, like
    /// `no suitable node (2 nodes not available for new tasks, 1 node has
    /// insufficient memory)`.
    pub fn explain(&self, nodes: &[NodeInfo], task: &Task) -> String {
        let mut failures = vec![0usize; self.filters.len()];
        for node in nodes {
            if let Some(i) = self.first_failure(node, task) {
                failures[i] += 1;
            }
        }
        let reasons: Vec<String> = self
            .filters
            .iter()
            .zip(failures)
            .filter(|&(_, n)| n > 0)
            .map(|(f, n)| f.explain(n))
            .collect();
        if nodes.is_empty() {
            "no suitable node (the cluster has no nodes)".to_owned()
        } else if reasons.is_empty() {
            // Only reachable if a caller asks while some node fits.
            "no suitable node".to_owned()
        } else {
            format!("no suitable node ({})", reasons.join(", "))
        }
    }
}

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
