//! Losing a worker, a worker cut off and back, losing the leader.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::ensure;
use rswarm_e2e::Cluster;
use rswarm_e2e::services::{self, TaskView, running};
use rswarm_e2e::wait::wait_until;

use crate::support::{CONVERGE_TIMEOUT, with_fake_cluster};

/// A lost worker's tasks must run elsewhere within this (the target is 5 s; this
/// leaves room for a loaded machine).
const REPLACE_BOUND: Duration = Duration::from_secs(15);
/// A new leader must be agreed on within this.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(15);
/// A worker back on the network must be `ready` again, and its stale tasks shut
/// down, within this.
const REJOIN_BOUND: Duration = Duration::from_secs(30);
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
fn a_cut_off_worker_shuts_its_stale_tasks_down_when_it_rejoins() {
    with_fake_cluster("rejoining worker", 1, 3, |cluster| {
        // On workers only, so the cut-off worker surely holds some of the tasks.
        let flags = ["--constraint", "node.role==worker"];
        services::create_detached(cluster, 0, "web", 6, &flags, "fake/web")?;
        let tasks = services::wait_converged(cluster, 0, "web", 6, CONVERGE_TIMEOUT, |_| Ok(()))?;
        let lost = cluster.node(2).name.clone();
        let stale: BTreeSet<String> = running(&tasks)
            .iter()
            .filter(|t| t.node == lost)
            .map(|t| t.id.clone())
            .collect();
        ensure!(
            !stale.is_empty(),
            "no task on {lost} to begin with: {tasks:#?}"
        );

        // Cut off but alive: its fake tasks keep running on their own.
        cluster.node(0).log_note(&format!("cutting {lost} off"));
        cluster.node(2).cut_network()?;
        wait_node_status(cluster, &lost, "down", REPLACE_BOUND)?;
        let tasks = services::wait_replaced(cluster, 0, "web", 6, &lost, REPLACE_BOUND)?;
        // Nothing has told the managers yet that these tasks stopped: only the worker
        // can, once it is back.
        ensure!(
            tasks
                .iter()
                .filter(|t| stale.contains(&t.id))
                .all(|t| t.state != "shutdown"),
            "{lost}'s tasks shown shut down while it was cut off: {tasks:#?}"
        );

        cluster.node(0).log_note(&format!("reconnecting {lost}"));
        cluster.node(2).restore_network()?;
        let back = Instant::now();
        wait_node_status(cluster, &lost, "ready", REJOIN_BOUND)?;
        let tasks = wait_until(
            REJOIN_BOUND,
            &format!("{lost}'s stale tasks to be shut down"),
            || {
                let all = services::tasks(cluster, 0, "web").map_err(|e| format!("{e:#}"))?;
                let pending: Vec<&TaskView> = all
                    .iter()
                    .filter(|t| stale.contains(&t.id) && t.state != "shutdown")
                    .collect();
                if pending.is_empty() {
                    Ok(all)
                } else {
                    Err(format!("not shut down yet: {pending:#?}"))
                }
            },
        )?;
        println!(
            "{lost}'s {} stale tasks were shut down {:.2} s after it was reconnected",
            stale.len(),
            back.elapsed().as_secs_f64()
        );
        ensure!(
            tasks
                .iter()
                .filter(|t| stale.contains(&t.id))
                .all(|t| t.desired_state == "shutdown"),
            "a stale task is still meant to run: {tasks:#?}"
        );
        // Its return does not add or take away running tasks.
        services::wait_converged(cluster, 0, "web", 6, CONVERGE_TIMEOUT, |t| {
            match running(t).iter().find(|t| stale.contains(&t.id)) {
                Some(t) => Err(format!("stale task {} counted as running", t.id)),
                None => Ok(()),
            }
        })?;
        Ok(())
    });
}

/// Waits until `node ls` through the first manager shows the node named `hostname`
/// with `status`.
fn wait_node_status(
    cluster: &Cluster,
    hostname: &str,
    status: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    wait_until(timeout, &format!("{hostname} to be {status}"), || {
        let nodes = cluster.node_ls(0).map_err(|e| format!("{e:#}"))?;
        let node = nodes
            .as_array()
            .and_then(|list| list.iter().find(|n| n["hostname"] == hostname))
            .ok_or_else(|| format!("{hostname} not listed: {nodes}"))?;
        if node["status"] == status {
            Ok(())
        } else {
            Err(format!("{hostname}: {node}"))
        }
    })
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
