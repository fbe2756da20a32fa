//! Losing a worker, losing the leader.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::ensure;
use rswarm_e2e::services::{self, running};

use crate::support::{CONVERGE_TIMEOUT, with_fake_cluster};

/// A lost worker's tasks must run elsewhere within this (the target is 5 s; this
/// leaves room for a loaded machine).
const REPLACE_BOUND: Duration = Duration::from_secs(15);
/// A new leader must be agreed on within this.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(15);
/// How long tasks are watched after a failover for restarts that should not happen:
/// longer than the dispatcher's grace for nodes that have not reported yet.
const STABLE_FOR: Duration = Duration::from_secs(8);

#[test]
fn a_dead_workers_tasks_run_elsewhere() {
    with_fake_cluster("dead worker", 1, 3, |cluster| {
        services::create_detached(cluster, 0, "web", 12, &[], "fake/web")?;
        services::wait_converged(cluster, 0, "web", 12, CONVERGE_TIMEOUT, |_| Ok(()))?;
        let lost = cluster.node(2).name.clone();
        cluster
            .node(0)
            .log_note(&format!("killing {lost} and cutting it off"));
        let killed = Instant::now();
        cluster.node_mut(2).kill9()?;
        cluster.node(2).cut_network()?;
        let tasks = services::wait_replaced(cluster, 0, "web", 12, &lost, REPLACE_BOUND)?;
        let took = killed.elapsed();
        println!(
            "{lost}'s tasks ran elsewhere {:.2} s after it was killed; per node {:?}",
            took.as_secs_f64(),
            services::per_node(&tasks)
        );
        // The service converges again: one running task per slot.
        services::wait_converged(
            cluster,
            0,
            "web",
            12,
            CONVERGE_TIMEOUT,
            |t| match running(t).iter().find(|t| t.node == lost) {
                Some(t) => Err(format!("{} still counted as running on {lost}", t.id)),
                None => Ok(()),
            },
        )?;
        Ok(())
    });
}

#[test]
fn tasks_survive_a_leader_failover() {
    with_fake_cluster("leader failover", 3, 2, |cluster| {
        // On workers only: the leader's own tasks would die with it.
        let flags = ["--constraint", "node.role==worker"];
        services::create_detached(cluster, 0, "web", 6, &flags, "fake/web")?;
        let tasks = services::wait_converged(cluster, 0, "web", 6, CONVERGE_TIMEOUT, |_| Ok(()))?;
        let before: BTreeSet<String> = running(&tasks).iter().map(|t| t.id.clone()).collect();

        let old = cluster.leader()?;
        cluster.node(old).log_note("killing the leader");
        cluster.node_mut(old).kill9()?;
        let started = Instant::now();
        let leader = cluster.wait_leader(&[old], FAILOVER_TIMEOUT)?;
        println!(
            "{} leads {:.2} s after {} was killed",
            cluster.node(leader).name,
            started.elapsed().as_secs_f64(),
            cluster.node(old).name
        );
        // Watched through the new leader for a while: the same tasks keep running.
        let until = Instant::now() + STABLE_FOR;
        while Instant::now() < until {
            let now = services::tasks(cluster, leader, "web")?;
            let ids: BTreeSet<String> = running(&now).iter().map(|t| t.id.clone()).collect();
            ensure!(
                ids == before,
                "the running tasks changed after the failover: before {before:?}, now {now:#?}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        services::scale(cluster, leader, "web", 8)?;
        let tasks =
            services::wait_converged(cluster, leader, "web", 8, CONVERGE_TIMEOUT, |_| Ok(()))?;
        let ids: BTreeSet<String> = running(&tasks).iter().map(|t| t.id.clone()).collect();
        ensure!(
            ids.is_superset(&before),
            "scaling after the failover replaced tasks: before {before:?}, now {ids:?}"
        );
        Ok(())
    });
}
