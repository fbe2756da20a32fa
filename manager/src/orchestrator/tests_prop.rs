//! Property tests: random services, tasks, node changes and task outcomes, with the
//! orchestrator reconciling after every change as its loop does.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use rswarm_proto::api::{NodeAvailability, NodeState, RestartCondition, RestartPolicy, TaskState};

use super::testkit::*;
use super::*;

const NODES: [&str; 3] = ["n0", "n1", "n2"];

/// One thing happening in the cluster between two reconciles.
#[derive(Clone, Debug)]
enum Event {
    /// Time passes.
    Wait(u64),
    /// A worker reports a new observed state for the n-th task.
    Report(usize, TaskState, i32),
    /// The scheduler places the n-th unassigned live task on a node.
    Assign(usize, usize),
    /// A node changes.
    Node(usize, NodeState, NodeAvailability),
    /// The operator scales the service (replicated only).
    Scale(u64),
    /// The operator updates the service: a new image, rolled out `parallelism` at a
    /// time (0: all at once), each new task watched for `monitor` ms, with a pause
    /// of `delay` ms.
    Update(u64, u64, u64, u64),
}

fn arb_state() -> impl Strategy<Value = TaskState> {
    prop::sample::select(vec![
        TaskState::New,
        TaskState::Pending,
        TaskState::Assigned,
        TaskState::Running,
        TaskState::Complete,
        TaskState::Shutdown,
        TaskState::Failed,
        TaskState::Rejected,
        TaskState::Orphaned,
    ])
}

fn arb_node_state() -> impl Strategy<Value = (NodeState, NodeAvailability)> {
    (
        prop::sample::select(vec![
            NodeState::Ready,
            NodeState::Ready,
            NodeState::Down,
            NodeState::Unknown,
            NodeState::Disconnected,
        ]),
        prop::sample::select(vec![
            NodeAvailability::Active,
            NodeAvailability::Active,
            NodeAvailability::Pause,
            NodeAvailability::Drain,
        ]),
    )
}

fn arb_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        3 => (1u64..15_000).prop_map(Event::Wait),
        4 => (any::<usize>(), arb_state(), -1i32..2).prop_map(|(i, s, e)| Event::Report(i, s, e)),
        2 => (any::<usize>(), 0..NODES.len()).prop_map(|(i, n)| Event::Assign(i, n)),
        1 => (0..NODES.len(), arb_node_state()).prop_map(|(i, (s, a))| Event::Node(i, s, a)),
        1 => (0u64..6).prop_map(Event::Scale),
        1 => (0u64..3, 0u64..3, prop::sample::select(vec![0u64, 400]), prop::sample::select(vec![0u64, 5_000]))
            .prop_map(|(i, p, d, m)| Event::Update(i, p, d, m)),
    ]
}

fn arb_policy() -> impl Strategy<Value = RestartPolicy> {
    (
        prop::sample::select(vec![
            RestartCondition::Any,
            RestartCondition::OnFailure,
            RestartCondition::None,
        ]),
        prop::sample::select(vec![0u64, 50, 300]),
        0u64..4,
        prop::sample::select(vec![0u64, 500, 5_000]),
    )
        .prop_map(|(c, d, m, w)| policy(c, d, m, w))
}

/// Tasks left behind by some earlier history, consistent or not.
fn arb_tasks() -> impl Strategy<Value = Vec<Task>> {
    prop::collection::vec(
        (
            0u64..7,
            0..=NODES.len(),
            arb_state(),
            arb_state(),
            0u64..1_000,
        ),
        0..12,
    )
    .prop_map(|rows| {
        rows.into_iter()
            .enumerate()
            .map(|(i, (slot, node, desired, observed, created))| {
                let node = NODES.get(node).copied().unwrap_or("");
                let desired = if desired > TaskState::Running {
                    TaskState::Shutdown
                } else {
                    TaskState::Running
                };
                task(&format!("old{i}"), slot, node, desired, observed, created)
            })
            .collect()
    })
}

/// Whether the policy restarts every exited task, forever.
fn restarts_always(service: &Service) -> bool {
    let policy = service
        .spec
        .as_ref()
        .and_then(|s| s.task.as_ref())
        .and_then(|t| t.restart_policy);
    policy.is_none_or(|p| p.condition == RestartCondition::Any as i32 && p.max_attempts == 0)
}

fn is_global(service: &Service) -> bool {
    matches!(
        service.spec.as_ref().and_then(|s| s.mode.as_ref()),
        Some(service_spec::Mode::Global(_))
    )
}

fn replicas(service: &Service) -> u64 {
    match service.spec.as_ref().and_then(|s| s.mode.as_ref()) {
        Some(service_spec::Mode::Replicated(r)) => r.replicas,
        _ => 0,
    }
}

fn node_by_id<'a>(sim: &'a Sim, id: &str) -> Option<&'a Node> {
    sim.nodes.iter().find(|n| n.id == id)
}

/// How many groups the step gave a new task in place of a running one on a healthy
/// node (stopped by the same step): only a rolling update does that.
fn replaced_running(sim: &Sim, before: &[Task], actions: &Actions) -> usize {
    let healthy_node = |id: &str| {
        node_by_id(sim, id).is_some_and(|n| {
            node_state(n) != NodeState::Down as i32
                && availability(n) != NodeAvailability::Drain as i32
        })
    };
    let same_group =
        |a: &Task, b: &Task| a.slot == b.slot && (a.slot != 0 || a.node_id == b.node_id);
    let stopped_running = |t: &Task| {
        t.desired_state == TaskState::Shutdown as i32
            && before.iter().find(|b| b.id == t.id).is_some_and(|b| {
                is_live(b)
                    && observed(b) == TaskState::Running as i32
                    && (b.node_id.is_empty() || healthy_node(&b.node_id))
            })
    };
    actions
        .create
        .iter()
        .filter(|c| {
            actions
                .update
                .iter()
                .any(|t| same_group(c, t) && stopped_running(t))
        })
        .count()
}

/// What must hold after every reconcile.
fn check(sim: &Sim, before: &[Task], actions: &Actions) {
    let live: Vec<&Task> = sim.tasks.iter().filter(|t| is_live(t)).collect();
    if is_global(&sim.service) {
        let nodes: BTreeSet<&str> = live.iter().map(|t| t.node_id.as_str()).collect();
        assert_eq!(nodes.len(), live.len(), "one live task per node");
        for t in &live {
            let node = node_by_id(sim, &t.node_id).expect("live tasks are on known nodes");
            assert_ne!(node_state(node), NodeState::Down as i32);
            assert_ne!(availability(node), NodeAvailability::Drain as i32);
            assert_eq!(t.slot, 0);
        }
        if restarts_always(&sim.service) {
            for node in &sim.nodes {
                if node_state(node) == NodeState::Ready as i32
                    && availability(node) == NodeAvailability::Active as i32
                {
                    assert!(
                        nodes.contains(node.id.as_str()),
                        "node {} has its task",
                        node.id
                    );
                }
            }
        }
    } else {
        let n = replicas(&sim.service);
        let slots = live_slots(&sim.tasks);
        let unique: BTreeSet<u64> = slots.iter().copied().collect();
        assert_eq!(
            unique.len(),
            slots.len(),
            "one live task per slot: {slots:?}"
        );
        assert!(
            slots.iter().all(|s| *s >= 1) && slots.len() as u64 <= n,
            "slots {slots:?}: numbered, at most {n}"
        );
        if restarts_always(&sim.service) {
            assert_eq!(slots.len() as u64, n, "slots {slots:?}");
        }
    }
    for id in &actions.remove {
        let t = before
            .iter()
            .find(|t| &t.id == id)
            .expect("removes a known task");
        let state = observed(t);
        assert!(state >= TaskState::Complete as i32 || state < TaskState::Assigned as i32);
    }
    // History stays bounded: per group, the ended tasks that could be removed, plus
    // the one that marks a finished group and the newest that got a node.
    let mut ended: BTreeMap<(u64, &str), usize> = BTreeMap::new();
    for t in sim
        .tasks
        .iter()
        .filter(|t| !is_live(t) && observed(t) >= TaskState::Complete as i32)
    {
        let key = if is_global(&sim.service) {
            (t.slot, t.node_id.as_str())
        } else {
            (t.slot, "")
        };
        let marker = t.desired_state == TaskState::Complete as i32;
        *ended.entry(key).or_default() += usize::from(!marker);
    }
    assert!(
        ended.values().all(|c| *c <= HISTORY_PER_GROUP + 1),
        "history bounded: {ended:?}"
    );
    // New tasks carry the service's task spec and start unobserved.
    let spec = sim.service.spec.as_ref().and_then(|s| s.task.clone());
    for t in &actions.create {
        assert_eq!(t.spec, spec);
        assert_eq!(observed(t), TaskState::New as i32);
    }
}

fn run(service: Service, tasks: Vec<Task>, events: Vec<Event>) {
    let nodes = NODES.iter().map(|id| ready(id)).collect();
    let mut sim = Sim::new(service, nodes);
    sim.tasks = tasks;
    let mut now = 1_000;
    for event in events {
        match event.clone() {
            Event::Wait(ms) => now += ms,
            Event::Report(i, state, exit_code) if !sim.tasks.is_empty() => {
                let id = sim.tasks[i % sim.tasks.len()].id.clone();
                sim.report(&id, state, now, exit_code);
            }
            Event::Report(..) => {}
            Event::Assign(i, n) => {
                let mut unassigned = sim
                    .tasks
                    .iter_mut()
                    .filter(|t| is_live(t) && t.node_id.is_empty())
                    .collect::<Vec<_>>();
                if !unassigned.is_empty() {
                    let len = unassigned.len();
                    let task = &mut unassigned[i % len];
                    task.node_id = NODES[n].to_string();
                    if let Some(status) = task.status.as_mut() {
                        status.state = TaskState::Assigned as i32;
                        status.timestamp = now;
                    }
                }
            }
            Event::Node(i, state, availability) => sim.set_node(NODES[i], state, availability),
            Event::Scale(n) if !is_global(&sim.service) => {
                let policy = sim
                    .service
                    .spec
                    .as_ref()
                    .and_then(|s| s.task.as_ref())
                    .and_then(|t| t.restart_policy);
                sim.service = replicated(n, policy.unwrap_or_default());
            }
            Event::Scale(_) => {}
            Event::Update(image, parallelism, delay_ms, monitor_ms) => {
                let spec = sim.service.spec.as_mut().expect("a spec");
                let task = spec.task.as_mut().expect("a task spec");
                task.container.as_mut().expect("a container").image = format!("nginx:{image}");
                spec.update_config = Some(rswarm_proto::api::UpdateConfig {
                    parallelism,
                    delay_ms,
                    monitor_ms,
                });
            }
        }
        let before = sim.tasks.clone();
        let actions = sim.step(now);
        check(&sim, &before, &actions);
        // A rolling update replaces at most `parallelism` running tasks at a time (the
        // node events excepted: a node drained or gone replaces its tasks at once).
        let parallelism = sim
            .service
            .spec
            .as_ref()
            .and_then(|s| s.update_config)
            .map_or(1, |c| c.parallelism);
        if parallelism != 0 && !matches!(event, Event::Node(..)) {
            let replaced = replaced_running(&sim, &before, &actions);
            assert!(
                replaced as u64 <= parallelism,
                "{replaced} running tasks replaced at once, parallelism {parallelism}"
            );
        }
        // The loop never reconciles twice in the same millisecond after a change.
        now += 1;
    }
    // Left alone, the service settles: every due restart happens.
    for _ in 0..64 {
        let before = sim.tasks.clone();
        let actions = sim.step(now);
        check(&sim, &before, &actions);
        match actions.wake_at {
            Some(at) => now = at.max(now + 1),
            None => break,
        }
    }
    assert_eq!(
        reconcile(&sim.service, &sim.tasks, &sim.nodes, now).wake_at,
        None,
        "settled"
    );
    if restarts_always(&sim.service) {
        assert!(
            sim.tasks
                .iter()
                .filter(|t| is_live(t))
                .all(|t| !has_exited(t)),
            "all restarted"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn replicated_services_keep_their_slots(
        n in 0u64..6,
        policy in arb_policy(),
        tasks in arb_tasks(),
        events in prop::collection::vec(arb_event(), 0..40),
    ) {
        run(replicated(n, policy), tasks, events);
    }

    #[test]
    fn global_services_follow_the_nodes(
        policy in arb_policy(),
        tasks in arb_tasks(),
        events in prop::collection::vec(arb_event(), 0..40),
    ) {
        let tasks = tasks.into_iter().map(|mut t| { t.slot = 0; t }).collect();
        run(global(policy, &[]), tasks, events);
    }
}

// The property checks read the nodes on their own, not through the code they check.
fn node_state(node: &Node) -> i32 {
    node.status
        .as_ref()
        .map_or(NodeState::Unknown as i32, |s| s.state)
}

fn availability(node: &Node) -> i32 {
    node.spec
        .as_ref()
        .map_or(NodeAvailability::Active as i32, |s| s.availability)
}
