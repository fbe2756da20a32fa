//! Raft groups of in-process members talking plain gRPC over loopback.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rswarm_proto::api::Node;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::transport::{Channel, Server};

use super::{ConnectError, Connector, ProposeError, RaftNode, RaftSettings};
use crate::store::{StoreAction, StoreError, StoreSnapshot};

fn plain_connector() -> Connector {
    Arc::new(|addr: &str| {
        Ok(Channel::from_shared(format!("http://{addr}"))
            .map_err(|e| ConnectError {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?
            .connect_timeout(Duration::from_secs(1))
            .connect_lazy())
    })
}

/// A member and the gRPC server it is reachable through.
struct Member {
    node: RaftNode,
    addr: String,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl Member {
    async fn start(
        dir: &Path,
        raft_id: u64,
        settings: &RaftSettings,
        addr: Option<&str>,
    ) -> Member {
        let node = RaftNode::open(
            dir,
            raft_id,
            format!("node-{raft_id}"),
            settings,
            plain_connector(),
        )
        .await
        .expect("open raft node");
        let listener = TcpListener::bind(addr.unwrap_or("127.0.0.1:0"))
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr").to_string();
        let (stop, stopped) = oneshot::channel();
        let service = node.service();
        let server = tokio::spawn(async move {
            Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    async {
                        let _ = stopped.await;
                    },
                )
                .await
                .expect("serve");
        });
        Member {
            node,
            addr,
            stop: Some(stop),
            server: Some(server),
        }
    }

    async fn stop(&mut self) {
        self.node.shutdown().await.expect("shutdown");
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task");
        }
    }
}

fn create_node(id: &str) -> StoreAction {
    StoreAction::CreateNode(Node {
        id: id.to_string(),
        ..Default::default()
    })
}

async fn wait_for<F: Fn() -> bool>(what: &str, timeout: Duration, cond: F) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_leader(members: &[&Member]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(i) = members.iter().position(|m| m.node.is_leader()) {
            return i;
        }
        assert!(Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_same_store(members: &[&Member], expected: &StoreSnapshot) {
    wait_for("stores to converge", Duration::from_secs(10), || {
        members
            .iter()
            .all(|m| &m.node.store().snapshot() == expected)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_members_replicate_forward_and_fail_over() {
    let settings = RaftSettings::default();
    let dirs: Vec<TempDir> = (0..3)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect();
    let mut m1 = Member::start(dirs[0].path(), 1, &settings, None).await;
    let mut m2 = Member::start(dirs[1].path(), 2, &settings, None).await;
    let mut m3 = Member::start(dirs[2].path(), 3, &settings, None).await;

    m1.node.initialize(&m1.addr).await.expect("initialize");
    wait_leader(&[&m1]).await;
    m2.node
        .join_via(&m1.addr, &m2.addr)
        .await
        .expect("join via leader");
    // Sent to a follower, which forwards it to the leader.
    m3.node
        .join_via(&m2.addr, &m3.addr)
        .await
        .expect("join via follower");
    // Joining again is a no-op.
    m3.node
        .join_via(&m1.addr, &m3.addr)
        .await
        .expect("join again");
    let mut members = m1.node.members();
    members.sort();
    assert_eq!(
        members,
        vec![
            (1, m1.addr.clone(), true),
            (2, m2.addr.clone(), true),
            (3, m3.addr.clone(), true)
        ]
    );

    let verdict = m1
        .node
        .propose(vec![create_node("a")])
        .await
        .expect("propose on leader");
    assert_eq!(verdict, Ok(()));
    let after_a = m1.node.store().snapshot();
    assert_ne!(after_a, StoreSnapshot::default());
    wait_same_store(&[&m1, &m2, &m3], &after_a).await;

    // A follower's proposal is forwarded; a rejected batch is a normal answer.
    assert!(!m3.node.is_leader());
    assert_eq!(m3.node.leader().map(|l| l.0), Some(1));
    let verdict = m3
        .node
        .propose(vec![create_node("b")])
        .await
        .expect("forwarded");
    assert_eq!(verdict, Ok(()));
    // Read-your-writes: the forwarding member has applied it when propose returns.
    assert!(m3.node.store().view(|tx| tx.node("b").is_some()));
    let rejected = m3
        .node
        .propose(vec![create_node("b")])
        .await
        .expect("forwarded");
    assert!(
        matches!(rejected, Err(StoreError::AlreadyExists { .. })),
        "duplicate create must be rejected: {rejected:?}"
    );
    let after_b = m1.node.store().snapshot();
    assert_ne!(after_b, after_a);
    wait_same_store(&[&m1, &m2, &m3], &after_b).await;

    // Leader failure: the survivors elect a new leader and proposals work again.
    let started = Instant::now();
    m1.stop().await;
    let verdict = m2
        .node
        .propose(vec![create_node("c")])
        .await
        .expect("propose after failover");
    assert_eq!(verdict, Ok(()));
    println!(
        "failover: proposal committed {:?} after the leader stopped",
        started.elapsed()
    );
    let leader = wait_leader(&[&m2, &m3]).await;
    let survivors = [&m2, &m3];
    let after_c = survivors[leader].node.store().snapshot();
    wait_same_store(&survivors, &after_c).await;

    m2.stop().await;
    m3.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarted_member_keeps_committed_data_and_ships_snapshots() {
    let settings = RaftSettings {
        snapshot_every: 10,
        ..RaftSettings::default()
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut m1 = Member::start(dir.path(), 1, &settings, None).await;
    m1.node.initialize(&m1.addr).await.expect("initialize");
    wait_leader(&[&m1]).await;
    for i in 0..30 {
        let verdict = m1.node.propose(vec![create_node(&format!("n{i}"))]).await;
        assert_eq!(verdict.expect("propose"), Ok(()));
    }
    let applied = m1.node.metrics().last_applied.expect("applied").index;
    // A trigger is ignored while an automatic snapshot is being built: repeat it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while m1.node.metrics().snapshot.is_none_or(|s| s.index < applied) {
        assert!(
            Instant::now() < deadline,
            "no snapshot: {:?}",
            m1.node.metrics()
        );
        m1.node
            .raft()
            .trigger()
            .snapshot()
            .await
            .expect("trigger snapshot");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Entries after the snapshot live only in the log.
    for i in 30..35 {
        let verdict = m1.node.propose(vec![create_node(&format!("n{i}"))]).await;
        assert_eq!(verdict.expect("propose"), Ok(()));
    }
    let before = m1.node.store().snapshot();
    let addr = m1.addr.clone();
    m1.stop().await;
    drop(m1);

    let mut m1 = Member::start(dir.path(), 1, &settings, Some(&addr)).await;
    wait_for("restored store", Duration::from_secs(10), || {
        m1.node.store().snapshot() == before
    })
    .await;
    wait_leader(&[&m1]).await;
    let verdict = m1.node.propose(vec![create_node("after-restart")]).await;
    assert_eq!(verdict.expect("propose after restart"), Ok(()));

    // The purged log forces a new member to catch up from the snapshot.
    let purged = m1.node.metrics().purged;
    assert!(purged.is_some(), "log should be purged behind the snapshot");
    let dir2 = tempfile::tempdir().expect("temp dir");
    let mut m2 = Member::start(dir2.path(), 2, &settings, None).await;
    m2.node.join_via(&m1.addr, &m2.addr).await.expect("join");
    let expected = m1.node.store().snapshot();
    wait_same_store(&[&m1, &m2], &expected).await;
    assert!(
        m2.node.metrics().snapshot.is_some(),
        "joiner installed a snapshot"
    );

    m2.stop().await;
    m1.stop().await;
}

#[tokio::test]
async fn proposal_without_leader_gives_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut m = Member::start(dir.path(), 1, &RaftSettings::default(), None).await;
    // Never initialized: no leader can exist.
    let err = m
        .node
        .propose(vec![create_node("x")])
        .await
        .expect_err("no leader");
    assert!(matches!(err, ProposeError::NoLeader(_)), "{err}");
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_run_on_the_leader() {
    let settings = RaftSettings::default();
    let (d1, d2) = (
        tempfile::tempdir().expect("temp dir"),
        tempfile::tempdir().expect("temp dir"),
    );
    let mut m1 = Member::start(d1.path(), 1, &settings, None).await;
    let mut m2 = Member::start(d2.path(), 2, &settings, None).await;
    m1.node.initialize(&m1.addr).await.expect("initialize");
    wait_leader(&[&m1]).await;
    m1.node.add_voter(2, &m2.addr).await.expect("add voter");
    m1.node
        .add_voter(2, &m2.addr)
        .await
        .expect("add voter again");
    assert_eq!(m1.node.members().len(), 2);
    wait_for(
        "follower to learn the leader",
        Duration::from_secs(5),
        || m2.node.leader().is_some(),
    )
    .await;

    let err = m2.node.remove_member(1).await.expect_err("follower");
    match err {
        super::RaftError::NotLeader { leader } => assert_eq!(leader, Some((1, m1.addr.clone()))),
        other => panic!("unexpected error: {other}"),
    }
    // Checked before openraft is asked: even a change that would be a no-op (or
    // that openraft would refuse as overlapping one not yet committed on this
    // follower) names the leader, so the caller forwards it.
    let err = m2.node.add_voter(2, &m2.addr).await.expect_err("follower");
    assert!(
        matches!(&err, super::RaftError::NotLeader { leader: Some((1, addr)) } if *addr == m1.addr),
        "{err}"
    );
    m1.node.remove_member(2).await.expect("remove");
    assert_eq!(m1.node.members(), vec![(1, m1.addr.clone(), true)]);
    // Still a working one-member group.
    let verdict = m1.node.propose(vec![create_node("solo")]).await;
    assert_eq!(verdict.expect("propose"), Ok(()));

    m1.stop().await;
    m2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_serves_as_proposer_and_raft_view() {
    use crate::controlapi::RaftView;
    use crate::store::{ProposeError as StoreProposeError, Proposer};

    let dir = tempfile::tempdir().expect("temp dir");
    let mut m = Member::start(dir.path(), 7, &RaftSettings::default(), None).await;
    m.node.initialize(&m.addr).await.expect("initialize");
    wait_leader(&[&m]).await;
    Proposer::propose(&m.node, vec![create_node("p")])
        .await
        .expect("propose");
    let again = Proposer::propose(&m.node, vec![create_node("p")]).await;
    assert!(
        matches!(again, Err(StoreProposeError::Rejected(_))),
        "{again:?}"
    );

    // Membership at 0, the leader's blank entry at 1, then the two batches.
    m.node
        .raft()
        .wait(Some(Duration::from_secs(5)))
        .applied_index_at_least(Some(3), "both batches")
        .await
        .expect("applied");
    let status = m.node.status();
    assert_eq!(status.self_id, 7);
    assert_eq!(status.leader, Some(7));
    assert_eq!(status.voters, vec![(7, m.addr.clone())]);
    assert_eq!(status.last_applied, 3);
    assert!(m.node.ping(&m.addr).await);
    // Nothing listens on port 1 of loopback.
    assert!(!m.node.ping("127.0.0.1:1").await);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_proposals_share_entries_and_keep_their_own_verdicts() {
    let settings = RaftSettings::default();
    let dirs: Vec<TempDir> = (0..2)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect();
    let mut m1 = Member::start(dirs[0].path(), 1, &settings, None).await;
    let mut m2 = Member::start(dirs[1].path(), 2, &settings, None).await;
    m1.node.initialize(&m1.addr).await.expect("initialize");
    wait_leader(&[&m1]).await;
    m2.node
        .join_via(&m1.addr, &m2.addr)
        .await
        .expect("join via leader");
    assert!(!m2.node.is_leader());

    let before = m1.node.metrics().last_log_index.unwrap_or(0);
    // 100 proposals at once, half on the follower (forwarded); every id is proposed
    // twice, so exactly one of each pair must be refused whatever entry it lands in.
    let proposals = (0..100).map(|i| {
        let node = if i % 2 == 0 { &m1.node } else { &m2.node };
        let node = node.clone();
        async move {
            node.propose(vec![create_node(&format!("n{}", i / 2))])
                .await
        }
    });
    let verdicts = futures::future::join_all(proposals).await;
    let mut accepted = 0;
    for verdict in verdicts {
        match verdict.expect("committed") {
            Ok(()) => accepted += 1,
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(other) => panic!("unexpected verdict {other:?}"),
        }
    }
    assert_eq!(accepted, 50);
    let entries = m1.node.metrics().last_log_index.unwrap_or(0) - before;
    assert!(
        entries < 100,
        "{entries} log entries for 100 concurrent proposals: nothing was batched"
    );
    // Read-your-writes on the follower: each id was proposed there too, and the
    // follower has applied the entry of its own proposal, or of the earlier one that won.
    assert_eq!(m2.node.store().view(|tx| tx.nodes().count()), 50);
    m1.stop().await;
    m2.stop().await;
}
