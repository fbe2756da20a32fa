//! Table tests for rolling updates.

use rswarm_proto::api::{
    EndpointSpec, NodeAvailability, NodeState, PortConfig, PublishMode, RestartCondition,
    TaskState, UpdateConfig,
};

use super::testkit::*;
use super::*;

const SHUTDOWN: i32 = TaskState::Shutdown as i32;

/// `service`'s spec with another image.
fn with_image(mut service: Service, image: &str) -> Service {
    let spec = service.spec.as_mut().unwrap();
    let container = spec.task.as_mut().unwrap().container.as_mut().unwrap();
    container.image = image.into();
    service
}

fn with_update(mut service: Service, parallelism: u64, delay_ms: u64, monitor_ms: u64) -> Service {
    service.spec.as_mut().unwrap().update_config = Some(UpdateConfig {
        parallelism,
        delay_ms,
        monitor_ms,
    });
    service
}

fn image_of(task: &Task) -> &str {
    &task
        .spec
        .as_ref()
        .unwrap()
        .container
        .as_ref()
        .unwrap()
        .image
}

/// A replicated service of `n` tasks, all running since `at`.
fn running_sim(service: Service, n: u64, at: u64) -> Sim {
    let mut sim = Sim::new(service, vec![ready("n1"), ready("n2"), ready("n3")]);
    sim.step(at);
    for slot in 1..=n {
        let id = sim.live(slot, "").id.clone();
        sim.report(&id, TaskState::Running, at, 0);
    }
    sim
}

/// The slots whose live task runs `image`, sorted.
fn slots_on(sim: &Sim, image: &str) -> Vec<u64> {
    let mut slots: Vec<u64> = sim
        .tasks
        .iter()
        .filter(|t| is_live(t) && image_of(t) == image)
        .map(|t| t.slot)
        .collect();
    slots.sort_unstable();
    slots
}

#[test]
fn an_update_replaces_one_task_at_a_time_once_the_new_one_runs() {
    let service = with_update(replicated(3, any_policy()), 1, 0, 0);
    let mut sim = running_sim(service.clone(), 3, 100);
    assert!(sim.step(200).is_empty(), "nothing to roll");
    sim.service = with_image(service, "nginx:2");

    let old = sim.live(1, "").id.clone();
    let first = sim.step(300);
    assert_eq!(updates(&first), [(old, SHUTDOWN)].into());
    assert_eq!(first.create.len(), 1);
    assert_eq!(
        (first.create[0].slot, image_of(&first.create[0])),
        (1, "nginx:2")
    );
    // Until the new task runs, nothing more is replaced.
    assert!(sim.step(400).is_empty());
    let new = sim.live(1, "").id.clone();
    sim.report(&new, TaskState::Starting, 450, 0);
    assert!(sim.step(500).is_empty());
    sim.report(&new, TaskState::Running, 550, 0);
    assert_eq!(sim.step(600).create.len(), 1);
    assert_eq!(slots_on(&sim, "nginx:2"), [1, 2]);
    let new = sim.live(2, "").id.clone();
    sim.report(&new, TaskState::Running, 650, 0);
    sim.step(700);
    let new = sim.live(3, "").id.clone();
    sim.report(&new, TaskState::Running, 750, 0);
    assert!(sim.step(800).is_empty(), "done");
    assert_eq!(slots_on(&sim, "nginx:2"), [1, 2, 3]);
    assert_eq!(live_slots(&sim.tasks), [1, 2, 3]);
}

#[test]
fn parallelism_sets_how_many_tasks_are_replaced_at_once() {
    let service = with_update(replicated(5, any_policy()), 2, 0, 0);
    let mut sim = running_sim(service.clone(), 5, 100);
    sim.service = with_image(service.clone(), "nginx:2");
    assert_eq!(sim.step(200).create.len(), 2);
    assert_eq!(slots_on(&sim, "nginx:2"), [1, 2]);
    // One of the two runs: one more may go.
    let new = sim.live(1, "").id.clone();
    sim.report(&new, TaskState::Running, 250, 0);
    assert_eq!(sim.step(300).create.len(), 1);
    assert_eq!(slots_on(&sim, "nginx:2"), [1, 2, 3]);

    // Parallelism 0: all at once.
    let service = with_update(replicated(4, any_policy()), 0, 0, 0);
    let mut sim = running_sim(service.clone(), 4, 100);
    sim.service = with_image(service, "nginx:2");
    assert_eq!(sim.step(200).create.len(), 4);
    assert_eq!(slots_on(&sim, "nginx:2"), [1, 2, 3, 4]);
}

#[test]
fn the_monitor_period_and_the_delay_pass_between_a_new_task_running_and_the_next() {
    let service = with_update(replicated(2, any_policy()), 1, 1_000, 0);
    let mut sim = running_sim(service.clone(), 2, 100);
    sim.service = with_image(service, "nginx:2");
    assert_eq!(sim.step(200).create.len(), 1);
    let new = sim.live(1, "").id.clone();
    sim.report(&new, TaskState::Running, 300, 0);
    let waiting = sim.step(400);
    assert!(waiting.is_empty());
    assert_eq!(waiting.wake_at, Some(1_300));
    assert!(sim.step(1_299).is_empty());
    assert_eq!(sim.step(1_300).create.len(), 1);
    assert_eq!(slots_on(&sim, "nginx:2"), [1, 2]);

    // Without an update config: one at a time, each watched for 5 s.
    let service = replicated(2, any_policy());
    let mut sim = running_sim(service.clone(), 2, 100);
    sim.service = with_image(service, "nginx:2");
    assert_eq!(sim.step(200).create.len(), 1);
    let new = sim.live(1, "").id.clone();
    sim.report(&new, TaskState::Running, 300, 0);
    assert_eq!(
        sim.step(400).wake_at,
        Some(300 + rswarm_proto::rollout::DEFAULT_MONITOR_MS)
    );
    assert!(sim.step(5_299).is_empty());
    assert_eq!(sim.step(5_300).create.len(), 1);

    // Monitor and delay add up.
    let service = with_update(replicated(2, any_policy()), 1, 300, 700);
    let mut sim = running_sim(service.clone(), 2, 100);
    sim.service = with_image(service, "nginx:2");
    sim.step(200);
    let new = sim.live(1, "").id.clone();
    sim.report(&new, TaskState::Running, 300, 0);
    assert_eq!(sim.step(400).wake_at, Some(1_300));
}

#[test]
fn a_new_task_that_fails_within_the_monitor_period_holds_the_update() {
    let service = replicated(2, policy(RestartCondition::Any, 100, 0, 0));
    let mut sim = running_sim(service.clone(), 2, 100);
    sim.service = with_image(service, "crashes-after-a-second:1");
    sim.step(200);
    // Runs for a second, fails, restarts, runs again: never 5 s in a row.
    let mut now = 300;
    for _ in 0..5 {
        let new = sim.live(1, "").id.clone();
        sim.report(&new, TaskState::Running, now, 0);
        assert!(sim.step(now + 1).create.is_empty(), "nothing else replaced");
        sim.report(&new, TaskState::Failed, now + 1_000, 1);
        let due = sim.step(now + 1_001).wake_at.expect("a restart is due");
        sim.step(due);
        now = due + 10;
    }
    assert_eq!(slots_on(&sim, "nginx:1"), [2]);
}

#[test]
fn a_new_task_that_fails_stops_the_update_and_the_old_tasks_keep_running() {
    let service = replicated(3, policy(RestartCondition::Any, 100, 0, 0));
    let mut sim = running_sim(service.clone(), 3, 100);
    sim.service = with_image(service, "broken:1");
    sim.step(200);
    let mut now = 300;
    for _ in 0..4 {
        let new = sim.live(1, "").id.clone();
        sim.report(&new, TaskState::Failed, now, 1);
        let actions = sim.step(now + 1);
        let due = actions.wake_at.unwrap_or(now + 1);
        sim.step(due);
        now = due + 50;
    }
    assert_eq!(slots_on(&sim, "broken:1"), [1], "only slot 1 is tried");
    assert_eq!(slots_on(&sim, "nginx:1"), [2, 3]);
    for slot in [2, 3] {
        assert_eq!(observed(sim.live(slot, "")), TaskState::Running as i32);
    }
}

#[test]
fn tasks_not_running_yet_are_replaced_first_and_exited_ones_restart_on_the_new_spec() {
    let service = replicated(4, any_policy());
    let mut sim = running_sim(service.clone(), 4, 100);
    let assigned = sim.live(3, "").id.clone();
    sim.report(&assigned, TaskState::Assigned, 150, 0);
    let pending = sim.live(4, "").id.clone();
    sim.report(&pending, TaskState::Pending, 150, 0);
    sim.service = with_image(service, "nginx:2");
    // The task no node took goes at once and does not count; of the others, the
    // one not running yet takes the one place.
    let first = sim.step(200);
    assert_eq!(
        updates(&first),
        [(assigned, SHUTDOWN), (pending, SHUTDOWN)].into()
    );
    assert_eq!(slots_on(&sim, "nginx:2"), [3, 4]);
    // Slot 1 crashes while slot 3's new task is on its way: its restart (after the
    // back-off) takes the new spec, outside the parallelism.
    let crashed = sim.live(1, "").id.clone();
    sim.report(&crashed, TaskState::Failed, 250, 1);
    let due = sim.step(260).wake_at.expect("a restart is due");
    let restart = sim.step(due);
    assert_eq!(updates(&restart), [(crashed, SHUTDOWN)].into());
    assert_eq!(slots_on(&sim, "nginx:2"), [1, 3, 4]);
    assert_eq!(slots_on(&sim, "nginx:1"), [2]);
}

#[test]
fn a_slot_no_node_takes_does_not_stall_the_update() {
    let service = with_update(replicated(3, any_policy()), 1, 0, 0);
    let mut sim = running_sim(service.clone(), 3, 100);
    let pending = sim.live(3, "").id.clone();
    sim.report(&pending, TaskState::Pending, 150, 0);
    sim.service = with_image(service.clone(), "nginx:2");
    sim.step(200);
    assert_eq!(slots_on(&sim, "nginx:2"), [1, 3]);
    // Slot 3's new task never gets a node; slot 1's runs: slot 2 goes next.
    let new = sim.live(1, "").id.clone();
    sim.report(&new, TaskState::Running, 300, 0);
    assert_eq!(sim.step(400).create.len(), 1);
    assert_eq!(slots_on(&sim, "nginx:2"), [1, 2, 3]);
    // An update whose new tasks no node can take stops at the first running task
    // it replaced (its slot was placed before), the others keep running.
    let mut sim = running_sim(service.clone(), 3, 100);
    sim.service = with_image(service, "too-big:1");
    sim.step(200);
    let new = sim.live(1, "").id.clone();
    sim.report(&new, TaskState::Pending, 250, 0);
    assert!(sim.step(10_000).is_empty());
    assert_eq!(slots_on(&sim, "nginx:1"), [2, 3]);
}

#[test]
fn a_new_task_the_restart_policy_gives_up_on_holds_the_update() {
    for policy in [
        policy(RestartCondition::None, 0, 0, 0),
        policy(RestartCondition::OnFailure, 0, 1, 0),
    ] {
        let service = with_update(replicated(3, policy), 1, 0, 1_000);
        let mut sim = running_sim(service.clone(), 3, 100);
        sim.service = with_image(service, "broken:1");
        sim.step(200);
        let mut now = 300;
        for _ in 0..3 {
            let new = sim.live(1, "").id.clone();
            sim.report(&new, TaskState::Failed, now, 1);
            let due = sim.step(now + 1).wake_at.unwrap_or(now + 1);
            sim.step(due);
            now = due + 10;
            if sim
                .tasks
                .iter()
                .filter(|t| is_live(t) && t.slot == 1)
                .count()
                == 0
            {
                break;
            }
        }
        sim.step(now + 60_000);
        assert_eq!(slots_on(&sim, "nginx:1"), [2, 3], "{policy:?}");
    }
    // A task of the new spec that completes after its monitor period does not.
    let service = with_update(
        replicated(2, policy(RestartCondition::None, 0, 0, 0)),
        1,
        0,
        1_000,
    );
    let mut sim = running_sim(service.clone(), 2, 100);
    sim.service = with_image(service, "batch:2");
    sim.step(200);
    let new = sim.live(1, "").id.clone();
    sim.report(&new, TaskState::Complete, 5_000, 0);
    sim.step(5_001);
    assert_eq!(slots_on(&sim, "batch:2"), [2]);
}

#[test]
fn host_mode_port_changes_replace_the_tasks_and_ingress_changes_do_not() {
    let port = |published, mode: PublishMode| PortConfig {
        target_port: 80,
        published_port: published,
        publish_mode: mode.into(),
        ..Default::default()
    };
    let with_ports = |mut service: Service, ports: Vec<PortConfig>| {
        service.spec.as_mut().unwrap().endpoint = Some(EndpointSpec {
            ports,
            ..Default::default()
        });
        service
    };
    let base = with_update(replicated(2, any_policy()), 0, 0, 0);
    let service = with_ports(base.clone(), vec![port(8080, PublishMode::Ingress)]);
    let mut sim = running_sim(service.clone(), 2, 100);
    assert_eq!(
        sim.live(1, "").endpoint,
        service.spec.as_ref().unwrap().endpoint,
        "a task records the endpoint it was made for"
    );
    // The proxy follows ingress ports without the tasks.
    sim.service = with_ports(base.clone(), vec![port(9090, PublishMode::Ingress)]);
    assert!(sim.step(200).is_empty());
    // Host-mode ports are bound where the tasks are placed: they are placed anew.
    sim.service = with_ports(base, vec![port(9090, PublishMode::Host)]);
    assert_eq!(sim.step(300).create.len(), 2);
}

#[test]
fn a_forced_update_replaces_tasks_with_no_other_change() {
    let service = replicated(2, any_policy());
    let mut sim = running_sim(service.clone(), 2, 100);
    let mut forced = service;
    forced
        .spec
        .as_mut()
        .unwrap()
        .task
        .as_mut()
        .unwrap()
        .force_update = 1;
    sim.service = forced;
    let before = sim.live(1, "").id.clone();
    assert_eq!(updates(&sim.step(200)), [(before, SHUTDOWN)].into());
}

/// A global service on n1 and n2, updated one at a time with no monitor period,
/// its tasks running since 150.
fn running_global() -> (Service, Sim) {
    let service = with_update(global(any_policy(), &[]), 1, 0, 0);
    let mut sim = Sim::new(service.clone(), vec![ready("n1"), ready("n2")]);
    sim.step(100);
    for node in ["n1", "n2"] {
        let id = sim.live(0, node).id.clone();
        sim.report(&id, TaskState::Running, 150, 0);
    }
    (service, sim)
}

#[test]
fn a_global_service_is_rolled_out_node_by_node() {
    let (service, mut sim) = running_global();
    sim.service = with_image(service, "nginx:2");
    let first = sim.step(200);
    assert_eq!(first.create.len(), 1);
    assert_eq!(first.create[0].node_id, "n1");
    assert!(sim.step(300).is_empty());
    let new = sim.live(0, "n1").id.clone();
    sim.report(&new, TaskState::Running, 350, 0);
    let second = sim.step(400);
    assert_eq!(second.create.len(), 1);
    assert_eq!(second.create[0].node_id, "n2");
    assert_eq!(live_nodes(&sim.tasks), ["n1", "n2"]);
}

#[test]
fn a_global_update_leaves_a_paused_node_its_task_until_it_is_active() {
    let (service, mut sim) = running_global();
    sim.set_node("n2", NodeState::Ready, NodeAvailability::Pause);
    sim.service = with_image(service, "nginx:2");
    let first = sim.step(200);
    assert_eq!(first.create.len(), 1);
    assert_eq!(first.create[0].node_id, "n1");
    let new = sim.live(0, "n1").id.clone();
    sim.report(&new, TaskState::Running, 250, 0);
    // n1 is done; n2's task of the previous spec keeps running while it is paused
    // (or not ready), and nothing holds the rollout.
    assert!(sim.step(300).is_empty());
    sim.set_node("n2", NodeState::Disconnected, NodeAvailability::Active);
    assert!(sim.step(400).is_empty());
    assert_eq!(image_of(sim.live(0, "n2")), "nginx:1");
    // Active and ready again: its task is replaced.
    sim.set_node("n2", NodeState::Ready, NodeAvailability::Active);
    let last = sim.step(500);
    assert_eq!(last.create.len(), 1);
    assert_eq!(last.create[0].node_id, "n2");
    assert_eq!(image_of(&last.create[0]), "nginx:2");
}
