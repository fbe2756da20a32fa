//! Properties of [`schedule`] and [`recheck`] over random clusters and task sets.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use rswarm_proto::api::{Node, NodeAvailability, NodeState, PortProtocol, Service, Task};

use super::fixtures::*;
use super::*;

/// The service with no constraint, reservation, port or limit: it must spread.
const FREE: &str = "free";

/// What the tasks of one generated service ask for.
#[derive(Debug, Clone)]
struct ServiceGen {
    constraint: Option<&'static str>,
    nano_cpus: u64,
    memory_bytes: u64,
    max_per_node: u64,
    host_port: Option<u32>,
}

#[derive(Debug, Clone)]
struct Cluster {
    nodes: Vec<Node>,
    services: Vec<Service>,
    existing: Vec<Task>,
    pending: Vec<Task>,
}

fn node_strategy() -> impl Strategy<Value = (u8, u8, u8, u64, u64)> {
    // (state, availability, zone, CPUs, GiB), mostly ready and active.
    (0u8..8, 0u8..6, 0u8..3, 1u64..8, 1u64..8)
}

fn service_strategy() -> impl Strategy<Value = ServiceGen> {
    (
        prop::option::of(prop::sample::select(vec![
            "node.labels.zone==eu",
            "node.labels.zone!=us",
            "node.role==worker",
        ])),
        prop::sample::select(vec![0, CPU / 2, CPU, 3 * CPU]),
        prop::sample::select(vec![0, GIB / 2, 2 * GIB]),
        0u64..3,
        prop::option::of(prop::sample::select(vec![80u32, 443])),
    )
        .prop_map(
            |(constraint, nano_cpus, memory_bytes, max_per_node, host_port)| ServiceGen {
                constraint,
                nano_cpus,
                memory_bytes,
                max_per_node,
                host_port,
            },
        )
}

fn task_of(id: String, service_id: &str, gens: &[ServiceGen]) -> Task {
    let Some(gen_) = service_id
        .strip_prefix('s')
        .and_then(|i| i.parse::<usize>().ok())
        .and_then(|i| gens.get(i))
    else {
        return task(&id, service_id);
    };
    let t = reserving(task(&id, service_id), gen_.nano_cpus, gen_.memory_bytes);
    let t = at_most_per_node(t, gen_.max_per_node);
    constrained(t, gen_.constraint.as_slice())
}

prop_compose! {
    fn cluster()(
        raw_nodes in prop::collection::vec(node_strategy(), 0..12),
        gens in prop::collection::vec(service_strategy(), 1..5),
        existing in prop::collection::vec((0usize..12, 0usize..5), 0..20),
        pending in prop::collection::vec(0usize..6, 0..80),
    ) -> Cluster {
        let nodes: Vec<Node> = raw_nodes
            .iter()
            .enumerate()
            .map(|(i, &(state, availability, zone, cpus, gib))| {
                let state = if state < 6 { NodeState::Ready } else { NodeState::Down };
                let availability = match availability {
                    4 => NodeAvailability::Drain,
                    5 => NodeAvailability::Pause,
                    _ => NodeAvailability::Active,
                };
                let mut n = sized(node(&format!("n{i:02}")), cpus * CPU, gib * GIB);
                n = with_availability(in_state(n, state), availability);
                match zone {
                    0 => labelled(n, "zone", "eu"),
                    1 => labelled(n, "zone", "us"),
                    _ => n,
                }
            })
            .collect();
        let services = gens
            .iter()
            .enumerate()
            .map(|(i, g)| service(&format!("s{i}"), &g.host_port.map(|p| (p, PortProtocol::Tcp)).into_iter().collect::<Vec<_>>()))
            .collect();
        let service_name = |k: usize| if k < gens.len() { format!("s{k}") } else { FREE.to_owned() };
        let existing = existing
            .iter()
            .enumerate()
            .filter(|&(_, &(n, _))| n < nodes.len())
            .filter(|&(_, &(_, s))| s < gens.len())
            .map(|(i, &(n, s))| running_on(task_of(format!("e{i}"), &service_name(s), &gens), &nodes[n].id))
            .collect();
        let pending = pending
            .iter()
            .enumerate()
            .map(|(i, &s)| task_of(format!("p{i:02}"), &service_name(s), &gens))
            .collect();
        Cluster { nodes, services, existing, pending }
    }
}

impl Cluster {
    fn snapshot(&self) -> Snapshot {
        Snapshot::new(&self.nodes, &self.services, &self.existing)
    }
}

/// Replays `plan` on `snapshot`: each assignment must pass every filter against the
/// state at that moment. Returns the state after the plan.
fn replay(
    snapshot: &Snapshot,
    plan: &Plan,
    tasks: &HashMap<&str, &Task>,
) -> Result<Snapshot, TestCaseError> {
    let mut state = snapshot.clone();
    for a in &plan.assignments {
        let task = tasks[a.task_id.as_str()];
        let pipeline =
            Pipeline::for_task(&state, task).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let node = state
            .node(&a.node_id)
            .ok_or_else(|| TestCaseError::fail("unknown node"))?;
        if let Some(f) = pipeline.first_failure(node, task) {
            return Err(TestCaseError::fail(format!(
                "{} on {} fails {}",
                a.task_id,
                a.node_id,
                pipeline.filters()[f].name()
            )));
        }
        state.add_task(&a.node_id, task);
    }
    Ok(state)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_assignment_fits_at_its_moment(cluster in cluster()) {
        let snapshot = cluster.snapshot();
        let plan = schedule(&snapshot, &cluster.pending);
        let tasks: HashMap<&str, &Task> = cluster.pending.iter().map(|t| (t.id.as_str(), t)).collect();

        // Every pending task is decided exactly once.
        let mut decided: Vec<&str> = plan.assignments.iter().map(|a| a.task_id.as_str())
            .chain(plan.unplaced.iter().map(|u| u.task_id.as_str()))
            .collect();
        decided.sort_unstable();
        let mut expected: Vec<&str> = tasks.keys().copied().collect();
        expected.sort_unstable();
        prop_assert_eq!(decided, expected);

        let after = replay(&snapshot, &plan, &tasks)?;

        // No node went over capacity through the plan's placements.
        for (before, now) in snapshot.nodes().iter().zip(after.nodes()) {
            if now.reserved_nano_cpus() > before.reserved_nano_cpus() {
                prop_assert!(now.reserved_nano_cpus() <= now.node().description.as_ref().unwrap().nano_cpus);
            }
            if now.reserved_memory_bytes() > before.reserved_memory_bytes() {
                prop_assert!(now.reserved_memory_bytes() <= now.node().description.as_ref().unwrap().memory_bytes);
            }
        }

        // An unplaced task fits no node even with the plan applied: load only grows,
        // so it did not fit when it was tried either.
        for u in &plan.unplaced {
            let task = tasks[u.task_id.as_str()];
            let pipeline = Pipeline::for_task(&after, task).unwrap();
            prop_assert!(after.nodes().iter().all(|n| !pipeline.passes(n, task)), "{} fits", u.task_id);
            prop_assert!(u.reason.starts_with("no suitable node ("), "{}", u.reason);
        }
    }

    #[test]
    fn an_unconstrained_service_spreads_within_one(cluster in cluster()) {
        let snapshot = cluster.snapshot();
        let plan = schedule(&snapshot, &cluster.pending);
        let eligible: HashSet<&str> = snapshot.nodes().iter()
            .filter(|n| ReadyFilter.check(n, &task("t", FREE)))
            .map(NodeInfo::id)
            .collect();
        let mut counts: HashMap<&str, usize> = eligible.iter().map(|&id| (id, 0)).collect();
        for a in plan.assignments.iter().filter(|a| a.task_id.starts_with('p')) {
            let task = cluster.pending.iter().find(|t| t.id == a.task_id).unwrap();
            if task.service_id == FREE {
                *counts.get_mut(a.node_id.as_str()).unwrap() += 1;
            }
        }
        if let (Some(min), Some(max)) = (counts.values().min(), counts.values().max()) {
            prop_assert!(max - min <= 1, "{counts:?}");
        }
    }

    #[test]
    fn the_same_input_gives_the_same_plan(cluster in cluster()) {
        let plan = schedule(&cluster.snapshot(), &cluster.pending);
        prop_assert_eq!(&schedule(&cluster.snapshot(), &cluster.pending), &plan);
        let mut reversed = cluster.nodes.clone();
        reversed.reverse();
        let shuffled = Snapshot::new(&reversed, cluster.services.iter().rev(), cluster.existing.iter().rev());
        prop_assert_eq!(&schedule(&shuffled, &cluster.pending), &plan);
    }

    #[test]
    fn a_rechecked_plan_fits_the_newer_snapshot(cluster in cluster(), drain in prop::collection::vec(any::<bool>(), 12)) {
        let snapshot = cluster.snapshot();
        let plan = schedule(&snapshot, &cluster.pending);
        let pending: HashMap<String, Task> = cluster.pending.iter().map(|t| (t.id.clone(), t.clone())).collect();
        prop_assert_eq!(&recheck(&snapshot, &plan, &pending), &plan);

        let newer_nodes: Vec<Node> = cluster.nodes.iter().zip(&drain)
            .map(|(n, &d)| if d { with_availability(n.clone(), NodeAvailability::Drain) } else { n.clone() })
            .collect();
        let newer = Snapshot::new(&newer_nodes, &cluster.services, &cluster.existing);
        let rechecked = recheck(&newer, &plan, &pending);
        prop_assert_eq!(rechecked.assignments.len() + rechecked.unplaced.len(), cluster.pending.len());
        let tasks: HashMap<&str, &Task> = cluster.pending.iter().map(|t| (t.id.as_str(), t)).collect();
        replay(&newer, &rechecked, &tasks)?;
        // Only the drained nodes' assignments were dropped: nothing else changed.
        let kept: Vec<&Assignment> = plan.assignments.iter()
            .filter(|a| !newer_nodes.iter().zip(&drain).any(|(n, &d)| d && n.id == a.node_id))
            .collect();
        prop_assert_eq!(rechecked.assignments.iter().collect::<Vec<_>>(), kept);
    }
}
