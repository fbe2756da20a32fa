use rswarm_proto::api::{
    Cluster, Meta, Node, ReplicatedService, Service, ServiceSpec, Task, service_spec,
};

use super::*;

fn service(id: &str, name: &str) -> Service {
    Service {
        endpoint: None,
        id: id.into(),
        meta: None,
        spec: Some(ServiceSpec {
            name: name.into(),
            mode: Some(service_spec::Mode::Replicated(ReplicatedService {
                replicas: 1,
            })),
            ..Default::default()
        }),
    }
}

fn task(id: &str, service_id: &str) -> Task {
    Task {
        id: id.into(),
        service_id: service_id.into(),
        ..Default::default()
    }
}

fn node(id: &str) -> Node {
    Node {
        id: id.into(),
        ..Default::default()
    }
}

#[test]
fn create_sets_version_and_lists() {
    let store = Store::new();
    store
        .apply(7, &[StoreAction::CreateService(service("s1", "web"))])
        .unwrap();
    store.view(|tx| {
        let s = tx.service("s1").unwrap();
        assert_eq!(s.meta.unwrap().version, 7);
        assert_eq!(tx.service_by_name("web").unwrap().id, "s1");
        assert_eq!(tx.services().count(), 1);
    });
}

#[test]
fn duplicate_name_is_refused_and_batch_rolled_back() {
    let store = Store::new();
    store
        .apply(1, &[StoreAction::CreateService(service("s1", "web"))])
        .unwrap();
    let err = store
        .apply(
            2,
            &[
                StoreAction::CreateNode(node("n1")),
                StoreAction::CreateTask(task("t1", "s1")),
                StoreAction::CreateService(service("s2", "web")),
            ],
        )
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::NameConflict {
            kind: Kind::Service,
            name: "web".into(),
            existing_id: "s1".into()
        }
    );
    store.view(|tx| {
        assert!(
            tx.node("n1").is_none(),
            "the node of a refused batch must not stay"
        );
        assert_eq!(tx.tasks().count(), 0);
        assert_eq!(tx.tasks_of_service("s1").count(), 0);
        assert_eq!(tx.services().count(), 1);
    });
}

#[test]
fn stale_update_is_a_version_conflict() {
    let store = Store::new();
    store
        .apply(1, &[StoreAction::CreateNode(node("n1"))])
        .unwrap();
    let mut read = store.view(|tx| tx.node("n1").unwrap().clone());
    read.spec
        .get_or_insert_default()
        .labels
        .insert("a".into(), "1".into());
    store
        .apply(2, &[StoreAction::UpdateNode(read.clone())])
        .unwrap();
    // A second update based on the same (now stale) read.
    let err = store
        .apply(3, &[StoreAction::UpdateNode(read)])
        .unwrap_err();
    assert!(matches!(
        err,
        StoreError::VersionConflict {
            expected: 1,
            found: 2,
            ..
        }
    ));
}

#[test]
fn update_keeps_creation_time() {
    let store = Store::new();
    let mut n = node("n1");
    n.meta = Some(Meta {
        created_at: 42,
        ..Default::default()
    });
    store.apply(1, &[StoreAction::CreateNode(n)]).unwrap();
    let mut n = store.view(|tx| tx.node("n1").unwrap().clone());
    n.meta.as_mut().unwrap().created_at = 0;
    store.apply(2, &[StoreAction::UpdateNode(n)]).unwrap();
    assert_eq!(
        store.view(|tx| tx.node("n1").unwrap().meta.unwrap().created_at),
        42
    );
}

#[test]
fn rename_frees_the_old_name_and_rollback_restores_it() {
    let store = Store::new();
    store
        .apply(1, &[StoreAction::CreateService(service("s1", "web"))])
        .unwrap();
    let mut s = store.view(|tx| tx.service("s1").unwrap().clone());
    s.spec.as_mut().unwrap().name = "api".into();
    // Renamed, then the batch fails: the old name must be back.
    let err = store
        .apply(
            2,
            &[
                StoreAction::UpdateService(s.clone()),
                StoreAction::RemoveNode { id: "nope".into() },
            ],
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }));
    store.view(|tx| {
        assert_eq!(tx.service_by_name("web").unwrap().id, "s1");
        assert!(tx.service_by_name("api").is_none());
    });
    store.apply(3, &[StoreAction::UpdateService(s)]).unwrap();
    store.view(|tx| {
        assert!(tx.service_by_name("web").is_none());
        assert_eq!(tx.service_by_name("api").unwrap().id, "s1");
    });
}

#[test]
fn cluster_is_created_once() {
    let store = Store::new();
    let c = Cluster {
        id: "c1".into(),
        ..Default::default()
    };
    store
        .apply(1, &[StoreAction::CreateCluster(c.clone())])
        .unwrap();
    assert!(matches!(
        store.apply(2, &[StoreAction::CreateCluster(c)]),
        Err(StoreError::AlreadyExists { .. })
    ));
}

#[test]
fn watch_sees_every_event_after_the_view_without_gaps() {
    let store = Store::new();
    store
        .apply(1, &[StoreAction::CreateNode(node("n1"))])
        .unwrap();
    let (count, mut watch) = store.view_and_watch(|tx| tx.nodes().count());
    assert_eq!(count, 1);
    store
        .apply(2, &[StoreAction::CreateNode(node("n2"))])
        .unwrap();
    // A refused batch publishes nothing.
    assert!(
        store
            .apply(3, &[StoreAction::CreateNode(node("n2"))])
            .is_err()
    );
    store
        .apply(4, &[StoreAction::RemoveNode { id: "n1".into() }])
        .unwrap();
    let mut got = Vec::new();
    while let Ok(e) = watch.try_recv() {
        got.push(e);
    }
    assert!(matches!(&got[0], Event::Created(Object::Node(n)) if n.id == "n2"));
    assert_eq!(got[1], Event::Commit(2));
    assert!(matches!(&got[2], Event::Removed(Object::Node(n)) if n.id == "n1"));
    assert_eq!(got[3], Event::Commit(4));
    assert_eq!(got.len(), 4);
}

#[test]
fn concurrent_watchers_never_miss_or_repeat() {
    let store = Store::new();
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for i in 1..=2000u64 {
                store
                    .apply(i, &[StoreAction::CreateNode(node(&format!("n{i:05}")))])
                    .unwrap();
            }
        })
    };
    let mut checks = Vec::new();
    for _ in 0..20 {
        let (seen, watch) = store.view_and_watch(|tx| tx.nodes().count());
        checks.push((seen, watch));
        std::thread::yield_now();
    }
    writer.join().unwrap();
    for (seen, mut watch) in checks {
        let mut created = 0;
        while let Ok(e) = watch.try_recv() {
            if matches!(e, Event::Created(_)) {
                created += 1;
            }
        }
        assert_eq!(seen + created, 2000);
    }
}

#[test]
fn snapshot_restore_round_trips_and_rebuilds_indexes() {
    let store = Store::new();
    store
        .apply(
            1,
            &[
                StoreAction::CreateService(service("s1", "web")),
                StoreAction::CreateTask(task("t1", "s1")),
                StoreAction::CreateTask(task("t2", "s1")),
            ],
        )
        .unwrap();
    let snap = store.snapshot();
    let bytes = postcard::to_allocvec(&snap).unwrap();
    let back: StoreSnapshot = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, snap);
    let other = Store::new();
    let (_, mut watch) = other.view_and_watch(|_| ());
    other.restore(back);
    assert_eq!(watch.try_recv().unwrap(), Event::Reset);
    other.view(|tx| {
        assert_eq!(tx.tasks_of_service("s1").count(), 2);
        assert_eq!(tx.service_by_name("web").unwrap().id, "s1");
    });
    // The name index is live: a duplicate is refused after restore.
    assert!(
        other
            .apply(2, &[StoreAction::CreateService(service("s9", "web"))])
            .is_err()
    );
}

/// A proposer that lets another writer slip in before the first proposal.
struct RacingProposer {
    inner: DirectProposer,
    store: Store,
    raced: std::sync::atomic::AtomicBool,
}

impl Proposer for RacingProposer {
    async fn propose(&self, actions: Vec<StoreAction>) -> Result<(), ProposeError> {
        if !self.raced.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let mut other = self.store.view(|tx| tx.node("n1").unwrap().clone());
            other
                .spec
                .get_or_insert_default()
                .labels
                .insert("x".into(), "1".into());
            self.inner
                .propose(vec![StoreAction::UpdateNode(other)])
                .await?;
        }
        self.inner.propose(actions).await
    }
}

#[tokio::test]
async fn update_retries_on_conflict_and_reads_fresh_data() {
    let store = Store::new();
    let proposer = RacingProposer {
        inner: DirectProposer::new(store.clone()),
        store: store.clone(),
        raced: Default::default(),
    };
    proposer
        .inner
        .propose(vec![StoreAction::CreateNode(node("n1"))])
        .await
        .unwrap();
    let runs = std::sync::atomic::AtomicUsize::new(0);
    update::<_, ProposeError, _>(&store, &proposer, |tx| {
        runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut n = tx.node("n1").unwrap().clone();
        n.spec
            .get_or_insert_default()
            .labels
            .insert("y".into(), "2".into());
        Ok(vec![StoreAction::UpdateNode(n)])
    })
    .await
    .unwrap();
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 2);
    let labels = store.view(|tx| tx.node("n1").unwrap().spec.clone().unwrap().labels);
    assert_eq!(labels.get("x").map(String::as_str), Some("1"));
    assert_eq!(labels.get("y").map(String::as_str), Some("2"));
}

#[test]
fn apply_each_applies_batches_independently_with_one_commit() {
    let store = Store::new();
    let ((), mut watch) = store.view_and_watch(|_| ());
    let a = [StoreAction::CreateNode(node("a"))];
    let dup = [
        StoreAction::CreateNode(node("b")),
        StoreAction::CreateNode(node("a")),
    ];
    let c = [StoreAction::CreateNode(node("c"))];
    let results = store.apply_each(7, [&a[..], &dup[..], &c[..]]);
    assert_eq!(results[0], Ok(()));
    assert!(matches!(results[1], Err(StoreError::AlreadyExists { .. })));
    assert_eq!(results[2], Ok(()));
    store.view(|tx| {
        assert!(tx.node("a").is_some() && tx.node("c").is_some());
        // The refused batch left nothing behind.
        assert!(tx.node("b").is_none());
        assert_eq!(
            tx.node("c")
                .and_then(|n| n.meta.as_ref())
                .map(|m| m.version),
            Some(7)
        );
    });
    let mut got = Vec::new();
    while let Ok(e) = watch.try_recv() {
        got.push(e);
    }
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[2], Event::Commit(7));

    // Nothing applied: no event at all.
    assert!(store.apply_each(8, [&a[..]])[0].is_err());
    assert!(watch.try_recv().is_err());
}

#[test]
fn node_watch_sees_only_that_nodes_tasks_and_their_commits() {
    let store = Store::new();
    store
        .apply(1, &[StoreAction::CreateService(service("s1", "web"))])
        .unwrap();
    let on = |id: &str, node_id: &str| Task {
        node_id: node_id.into(),
        ..task(id, "s1")
    };
    let ((), mut watch) = store.view_and_watch_node_tasks("n1", |_| ());
    store
        .apply(
            2,
            &[
                StoreAction::CreateTask(on("t1", "n1")),
                StoreAction::CreateTask(on("t2", "n2")),
                StoreAction::CreateNode(node("n1")),
            ],
        )
        .unwrap();
    // Nothing for n1 in this batch: not even its commit.
    store
        .apply(3, &[StoreAction::CreateTask(on("t3", "n2"))])
        .unwrap();
    store
        .apply(4, &[StoreAction::RemoveTask { id: "t1".into() }])
        .unwrap();
    store.restore(store.snapshot());
    let mut got = Vec::new();
    while let Ok(e) = watch.try_recv() {
        got.push(e);
    }
    assert!(matches!(&got[0], Event::Created(Object::Task(t)) if t.id == "t1"));
    assert_eq!(got[1], Event::Commit(2));
    assert!(matches!(&got[2], Event::Removed(Object::Task(t)) if t.id == "t1"));
    assert_eq!(got[3], Event::Commit(4));
    assert_eq!(got[4], Event::Reset);
    assert_eq!(got.len(), 5);
}
