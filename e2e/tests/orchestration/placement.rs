//! Creating, scaling, draining.

use std::collections::BTreeSet;

use anyhow::{bail, ensure};
use rswarm_e2e::command::describe;
use rswarm_e2e::services::{self, TaskView, running};

use crate::support::{CONVERGE_TIMEOUT, balanced, with_fake_cluster};

/// Hostnames of every node of the cluster.
fn all_nodes(cluster: &rswarm_e2e::Cluster) -> Vec<String> {
    cluster.nodes().iter().map(|n| n.name.clone()).collect()
}

#[test]
fn create_follows_the_rollout_and_spreads_tasks() {
    with_fake_cluster("create", 1, 3, |cluster| {
        let output = cluster.node(0).cli_with_timeout(
            &[
                "service",
                "create",
                "--name",
                "web",
                "--replicas",
                "3",
                "fake/web",
            ],
            CONVERGE_TIMEOUT,
        )?;
        ensure!(
            output.status.success(),
            "service create failed: {}",
            describe(&output)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        ensure!(
            stdout.contains("overall progress: 3 out of 3 tasks")
                && stdout.contains("verify: Service converged"),
            "service create did not report its progress to convergence: {stdout}"
        );
        // It returned once converged: the tasks run now, without waiting.
        let tasks = services::tasks(cluster, 0, "web")?;
        let up = running(&tasks);
        let nodes: BTreeSet<&str> = up.iter().map(|t| t.node.as_str()).collect();
        let slots: BTreeSet<u64> = up.iter().map(|t| t.slot).collect();
        ensure!(
            up.len() == 3 && nodes.len() == 3 && slots == BTreeSet::from([1, 2, 3]),
            "expected 3 running tasks in slots 1-3 on distinct nodes: {tasks:#?}"
        );
        Ok(())
    });
}

#[test]
fn scale_up_balances_and_scale_down_removes_the_highest_slots() {
    with_fake_cluster("scale", 1, 3, |cluster| {
        services::create_detached(cluster, 0, "web", 3, &[], "fake/web")?;
        services::wait_converged(cluster, 0, "web", 3, CONVERGE_TIMEOUT, |_| Ok(()))?;
        services::scale(cluster, 0, "web", 30)?;
        let nodes = all_nodes(cluster);
        let tasks = services::wait_converged(cluster, 0, "web", 30, CONVERGE_TIMEOUT, |t| {
            balanced(t, &nodes)
        })?;
        println!("30 replicas per node: {:?}", services::per_node(&tasks));
        let before: Vec<TaskView> = running(&tasks).into_iter().cloned().collect();

        services::scale(cluster, 0, "web", 5)?;
        // Converged once the tasks of slots 6-30 are shut down (or already gone from
        // the history), not only no longer meant to run.
        let tasks = services::wait_converged(cluster, 0, "web", 5, CONVERGE_TIMEOUT, |t| match t
            .iter()
            .find(|t| t.slot > 5 && t.state == "running")
        {
            Some(task) => Err(format!("slot {} still runs: {task:?}", task.slot)),
            None => Ok(()),
        })?;
        // The five kept are the tasks that ran slots 1-5 before: nothing was replaced.
        let kept: BTreeSet<&str> = running(&tasks).iter().map(|t| t.id.as_str()).collect();
        let low: BTreeSet<&str> = (before.iter())
            .filter(|t| t.slot <= 5)
            .map(|t| t.id.as_str())
            .collect();
        ensure!(kept == low, "kept {kept:?}, expected slots 1-5 {low:?}");
        for task in before.iter().filter(|t| t.slot > 5) {
            if let Some(now) = tasks.iter().find(|t| t.id == task.id)
                && now.state != "shutdown"
            {
                bail!("slot {} task did not end as shutdown: {now:?}", task.slot);
            }
        }
        Ok(())
    });
}

#[test]
fn drain_moves_tasks_off_and_active_takes_them_again() {
    with_fake_cluster("drain", 1, 3, |cluster| {
        services::create_detached(cluster, 0, "web", 8, &[], "fake/web")?;
        let nodes = all_nodes(cluster);
        services::wait_converged(cluster, 0, "web", 8, CONVERGE_TIMEOUT, |t| {
            balanced(t, &nodes)
        })?;
        let drained = cluster.node(3).name.clone();
        cluster
            .node(0)
            .cli_ok(&["node", "update", "--availability", "drain", &drained])?;
        let others: Vec<String> = nodes.iter().filter(|n| **n != drained).cloned().collect();
        let tasks = services::wait_converged(cluster, 0, "web", 8, CONVERGE_TIMEOUT, |t| {
            if running(t).iter().any(|t| t.node == drained) {
                return Err(format!("tasks still on {drained}"));
            }
            balanced(t, &others)
        })?;
        println!("after draining {drained}: {:?}", services::per_node(&tasks));
        // Nothing is moved back by itself (as in Swarm), but new tasks may go there.
        cluster
            .node(0)
            .cli_ok(&["node", "update", "--availability", "active", &drained])?;
        services::scale(cluster, 0, "web", 12)?;
        let tasks = services::wait_converged(cluster, 0, "web", 12, CONVERGE_TIMEOUT, |t| {
            if running(t).iter().any(|t| t.node == drained) {
                Ok(())
            } else {
                Err(format!("no new task on {drained}"))
            }
        })?;
        println!(
            "after reactivating and scaling to 12: {:?}",
            services::per_node(&tasks)
        );
        Ok(())
    });
}
