//! The broker's bookkeeping, and the plan a request resolves to.

use std::collections::HashMap;

use rswarm_proto::api::*;

use super::service::tasks_by_node;
use super::{LogBroker, LogPlan, plan_for};
use crate::store::{Store, StoreAction};

fn plan(nodes: &[(&str, &[&str])], follow: bool) -> LogPlan {
    LogPlan {
        nodes: nodes
            .iter()
            .map(|(node, tasks)| {
                (
                    node.to_string(),
                    tasks
                        .iter()
                        .map(|t| (t.to_string(), format!("web.{t}")))
                        .collect(),
                )
            })
            .collect(),
        follow,
        tail: -1,
        hostnames: HashMap::new(),
    }
}

fn entry(task: &str, line: &str) -> LogEntry {
    LogEntry {
        task_id: task.into(),
        data: line.as_bytes().to_vec(),
        ..Default::default()
    }
}

#[tokio::test]
async fn each_node_is_asked_for_its_tasks_and_the_stream_ends_after_the_last() {
    let broker = LogBroker::default();
    let (_g1, mut n1) = broker.register_node("n1");
    let (_g2, mut n2) = broker.register_node("n2");
    let (id, mut client) = broker.subscribe(plan(&[("n1", &["t1"]), ("n2", &["t2", "t3"])], false));
    let asked1 = n1.recv().await.unwrap();
    let asked2 = n2.recv().await.unwrap();
    assert_eq!(asked1.task_ids, ["t1"]);
    assert_eq!(asked2.task_ids, ["t2", "t3"]);
    assert_eq!((asked1.id.as_str(), asked1.tail), (id.as_str(), -1));

    let p1 = broker.publisher(&id, "n1").unwrap();
    assert!(
        broker.publisher(&id, "n3").is_none(),
        "only asked nodes publish"
    );
    assert!(p1.send(vec![entry("t1", "hello")]).await);
    let got = client.recv().await.unwrap();
    assert_eq!(got.entries[0].task_name, "web.t1");
    assert_eq!(got.entries[0].node_id, "n1");
    drop(p1);
    broker.finished(&id, "n1", None);
    broker.finished(&id, "n2", Some("task t3 has no logs here".into()));
    let warning = client.recv().await.unwrap();
    assert!(
        warning.warning.contains("task t3 has no logs here"),
        "{warning:?}"
    );
    assert!(
        client.recv().await.is_none(),
        "the stream ends after the last node"
    );
    assert_eq!(broker.subscriptions(), 0);
}

#[tokio::test]
async fn a_node_that_is_not_connected_gives_a_warning_not_a_hang() {
    let broker = LogBroker::default();
    let mut plan = plan(&[("gone", &["t1"])], false);
    plan.hostnames.insert("gone".into(), "worker-2".into());
    let (_, mut client) = broker.subscribe(plan);
    let warning = client.recv().await.unwrap();
    assert!(
        warning.warning.contains("node worker-2 is not connected"),
        "{warning:?}"
    );
    assert!(client.recv().await.is_none());
}

#[tokio::test]
async fn a_node_lost_mid_answer_ends_its_part_with_a_warning() {
    let broker = LogBroker::default();
    let (generation, _n1) = broker.register_node("n1");
    let (_, mut client) = broker.subscribe(plan(&[("n1", &["t1"])], false));
    broker.unregister_node("n1", generation);
    assert!(
        client
            .recv()
            .await
            .unwrap()
            .warning
            .contains("disconnected")
    );
    assert!(client.recv().await.is_none());
}

#[tokio::test]
async fn following_survives_a_node_reconnect_and_unsubscribing_tells_the_node() {
    let broker = LogBroker::default();
    let (g1, mut first) = broker.register_node("n1");
    let (id, _client) = broker.subscribe(plan(&[("n1", &["t1"])], true));
    assert!(!first.recv().await.unwrap().close);
    broker.unregister_node("n1", g1);
    let (_g2, mut second) = broker.register_node("n1");
    let again = second.recv().await.unwrap();
    assert_eq!((again.id.as_str(), again.follow), (id.as_str(), true));
    broker.unsubscribe(&id);
    let close = second.recv().await.unwrap();
    assert!(close.close);
    assert_eq!(broker.subscriptions(), 0);
}

#[test]
fn an_old_stream_closing_does_not_unregister_its_replacement() {
    let broker = LogBroker::default();
    let (old, _a) = broker.register_node("n1");
    let (_new, mut b) = broker.register_node("n1");
    broker.unregister_node("n1", old);
    let (_, _client) = broker.subscribe(plan(&[("n1", &["t1"])], false));
    assert!(b.try_recv().is_ok(), "the new stream still gets requests");
}

#[test]
fn a_request_resolves_to_the_nodes_that_ran_the_service() {
    let store = Store::new();
    let service = Service {
        id: "s1".into(),
        spec: Some(ServiceSpec {
            name: "web".into(),
            mode: Some(service_spec::Mode::Replicated(ReplicatedService {
                replicas: 2,
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    let task = |id: &str, slot: u64, node: &str| Task {
        id: id.into(),
        service_id: "s1".into(),
        slot,
        node_id: node.into(),
        ..Default::default()
    };
    store
        .apply(
            1,
            &[
                StoreAction::CreateService(service),
                StoreAction::CreateTask(task("t1", 1, "n1")),
                StoreAction::CreateTask(task("t2", 2, "n2")),
                StoreAction::CreateTask(task("t3", 1, "n2")),
                StoreAction::CreateTask(task("t4", 3, "")),
            ],
        )
        .unwrap();
    let request = ServiceLogsRequest {
        service: "web".into(),
        follow: true,
        tail: 10,
    };
    let plan = store.view(|tx| plan_for(tx, &request)).unwrap();
    let by_node = tasks_by_node(&plan);
    assert_eq!(by_node["n1"], ["web.1"]);
    assert_eq!(by_node["n2"].len(), 2);
    assert_eq!(by_node.len(), 2, "unassigned tasks have no logs");
    assert!(plan.follow);
    assert_eq!(plan.tail, 10);
    let missing = ServiceLogsRequest {
        service: "nope".into(),
        ..Default::default()
    };
    assert!(store.view(|tx| plan_for(tx, &missing)).is_err());
}
