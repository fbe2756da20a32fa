use std::sync::Arc;
use std::time::Duration;

use rswarm_proto::api::{
    Cluster, HeartbeatRequest, Node, NodeNetwork, NodeState, Task, TaskState, TaskStatus,
    TaskStatusUpdate, UpdateTaskStatusRequest,
};

use super::*;
use crate::controlapi::RaftStatus;
use crate::network::node_subnet;
use crate::store::{DirectProposer, ProposeError};

/// Lets other tasks run between a read and its write, as a Raft round trip does.
struct Yielding(DirectProposer);

impl Proposer for Yielding {
    async fn propose(&self, actions: Vec<StoreAction>) -> Result<(), ProposeError> {
        tokio::task::yield_now().await;
        self.0.propose(actions).await
    }
}

type Dispatcher = DispatcherService<Yielding, Leader>;

struct Leader;

impl RaftView for Leader {
    fn status(&self) -> RaftStatus {
        RaftStatus {
            term: 1,
            last_applied: 1,
            leader: Some(1),
            self_id: 1,
            voters: vec![(1, "10.0.0.1:4242".into())],
        }
    }
    async fn ping(&self, _addr: &str) -> bool {
        true
    }
    async fn remove_voter(&self, _raft_id: u64) -> Result<(), String> {
        Err("not in unit tests".into())
    }
}

fn node(id: &str, subnet: &str) -> Node {
    Node {
        id: id.into(),
        network: (!subnet.is_empty()).then(|| NodeNetwork {
            subnet: subnet.into(),
        }),
        ..Default::default()
    }
}

fn dispatcher(pool: &str, nodes: Vec<Node>) -> Dispatcher {
    let store = Store::new();
    let mut seed = vec![StoreAction::CreateCluster(Cluster {
        id: "c1".into(),
        network_pool: pool.into(),
        ..Default::default()
    })];
    seed.extend(nodes.into_iter().map(StoreAction::CreateNode));
    let direct = DirectProposer::new(store.clone());
    futures::executor::block_on(direct.propose(seed)).unwrap();
    let proposer = Arc::new(Yielding(direct));
    DispatcherService::new(store, proposer, Arc::new(Leader), Duration::from_secs(1))
}

async fn heartbeat(d: &Dispatcher, id: &str) {
    let report = HeartbeatRequest {
        description: None,
        addr: format!("192.0.2.{}:4242", id.len()),
        port_errors: Vec::new(),
    };
    d.set_state(id, NodeState::Ready, "", Some(&report))
        .await
        .unwrap();
}

fn subnet(d: &Dispatcher, id: &str) -> Option<String> {
    d.store
        .view(|tx| tx.node(id).and_then(node_subnet).map(str::to_owned))
}

#[tokio::test]
async fn a_heartbeat_gives_a_node_the_lowest_free_subnet_once() {
    let d = dispatcher(
        "10.231.0.0/16",
        vec![node("n1", "10.231.0.0/24"), node("n2", ""), node("n3", "")],
    );
    heartbeat(&d, "n2").await;
    assert_eq!(subnet(&d, "n2").as_deref(), Some("10.231.1.0/24"));
    heartbeat(&d, "n3").await;
    heartbeat(&d, "n2").await;
    assert_eq!(subnet(&d, "n2").as_deref(), Some("10.231.1.0/24"));
    assert_eq!(subnet(&d, "n3").as_deref(), Some("10.231.2.0/24"));

    // A removed node's subnet goes to the next node.
    d.store
        .apply(
            100,
            &[
                StoreAction::RemoveNode { id: "n2".into() },
                StoreAction::CreateNode(node("n4", "")),
            ],
        )
        .unwrap();
    heartbeat(&d, "n4").await;
    assert_eq!(subnet(&d, "n4").as_deref(), Some("10.231.1.0/24"));
}

#[tokio::test]
async fn concurrent_heartbeats_get_different_subnets() {
    // Both read the store before either writes: the second write conflicts on the
    // cluster object and picks again.
    let d = dispatcher("10.231.0.0/16", vec![node("a", ""), node("bb", "")]);
    tokio::join!(heartbeat(&d, "a"), heartbeat(&d, "bb"));
    let (a, b) = (subnet(&d, "a").unwrap(), subnet(&d, "bb").unwrap());
    assert_ne!(a, b);
}

#[tokio::test]
async fn no_pool_or_a_full_pool_gives_no_subnet() {
    let d = dispatcher("", vec![node("a", "")]);
    heartbeat(&d, "a").await;
    assert_eq!(subnet(&d, "a"), None);

    let d = dispatcher(
        "10.1.0.0/24",
        vec![node("a", "10.1.0.0/24"), node("bb", "")],
    );
    heartbeat(&d, "bb").await;
    assert_eq!(subnet(&d, "bb"), None);
    let state = d
        .store
        .view(|tx| tx.node("bb").and_then(|n| n.status.clone()).unwrap());
    assert_eq!(state.state, NodeState::Ready as i32);
}

#[tokio::test]
async fn port_errors_are_written_when_they_change_and_cleared_when_the_node_goes_down() {
    let d = dispatcher("", vec![node("n1", "")]);
    let errors =
        vec!["cannot listen on tcp 0.0.0.0:8080: Address already in use (os error 98)".to_string()];
    let report = |port_errors: &[String]| HeartbeatRequest {
        description: None,
        addr: "192.0.2.1:4242".into(),
        port_errors: port_errors.to_vec(),
    };
    let read = |d: &Dispatcher| {
        d.store.view(|tx| {
            let node = tx.node("n1").unwrap();
            (
                node.status.as_ref().unwrap().port_errors.clone(),
                node.meta.as_ref().map_or(0, |m| m.version),
            )
        })
    };
    d.set_state("n1", NodeState::Ready, "", Some(&report(&errors)))
        .await
        .unwrap();
    let (stored, version) = read(&d);
    assert_eq!(stored, errors);
    // The same report again writes nothing.
    d.set_state("n1", NodeState::Ready, "", Some(&report(&errors)))
        .await
        .unwrap();
    assert_eq!(read(&d), (errors.clone(), version));
    // Fixed on the node: cleared.
    d.set_state("n1", NodeState::Ready, "", Some(&report(&[])))
        .await
        .unwrap();
    assert!(read(&d).0.is_empty());
    d.set_state("n1", NodeState::Ready, "", Some(&report(&errors)))
        .await
        .unwrap();
    // A node that stopped reporting serves nothing: nothing to report either.
    d.set_state("n1", NodeState::Down, "heartbeat failure", None)
        .await
        .unwrap();
    assert!(read(&d).0.is_empty());
}

#[tokio::test]
async fn task_states_are_stamped_with_the_leaders_clock_and_repeats_write_nothing() {
    let d = dispatcher("", vec![node("n1", "")]);
    d.store
        .apply(
            2,
            &[StoreAction::CreateTask(Task {
                id: "t1".into(),
                node_id: "n1".into(),
                desired_state: TaskState::Running as i32,
                status: Some(TaskStatus {
                    state: TaskState::Assigned as i32,
                    ..Default::default()
                }),
                ..Default::default()
            })],
        )
        .unwrap();
    // The worker's clock is an hour behind.
    let worker_now = now_ms() - 3_600_000;
    let report = |state: TaskState, timestamp: u64| UpdateTaskStatusRequest {
        updates: vec![TaskStatusUpdate {
            task_id: "t1".into(),
            status: Some(TaskStatus {
                state: state as i32,
                timestamp,
                ..Default::default()
            }),
        }],
    };
    let read = |d: &Dispatcher| {
        d.store.view(|tx| {
            let task = tx.task("t1").unwrap();
            (
                task.status.clone().unwrap(),
                task.meta.as_ref().map_or(0, |m| m.version),
            )
        })
    };
    let before = now_ms();
    d.record_status("n1", report(TaskState::Running, worker_now))
        .await
        .unwrap();
    let (status, version) = read(&d);
    assert_eq!(status.state, TaskState::Running as i32);
    assert!(
        (before..=now_ms()).contains(&status.timestamp),
        "stamped {} (worker said {worker_now})",
        status.timestamp
    );
    // The same state again, with the worker's later time: nothing written.
    d.record_status("n1", report(TaskState::Running, worker_now + 5_000))
        .await
        .unwrap();
    assert_eq!(read(&d), (status, version));
}
