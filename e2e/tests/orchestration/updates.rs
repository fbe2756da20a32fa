//! Rolling updates: tasks replaced one at a time, each watched and followed by a
//! pause, an update to a crashing image that stops at its first task, and a
//! global update that leaves a paused node its task until the node is active.

use std::time::{Duration, Instant};

use anyhow::ensure;
use rswarm_e2e::command::describe;
use rswarm_e2e::services::{self, TaskView, running};

use crate::support::{CONVERGE_TIMEOUT, with_fake_cluster};

/// `service update ARGS...` through node 0, followed until it ends.
fn update(cluster: &rswarm_e2e::Cluster, args: &[&str]) -> anyhow::Result<std::process::Output> {
    let mut all = vec!["service", "update"];
    all.extend_from_slice(args);
    cluster
        .node(0)
        .cli_with_timeout(&all, CONVERGE_TIMEOUT + Duration::from_secs(30))
}

fn on_image<'a>(tasks: &[&'a TaskView], image: &str) -> Vec<&'a TaskView> {
    tasks.iter().copied().filter(|t| t.image == image).collect()
}

#[test]
fn a_rolling_update_replaces_one_task_at_a_time() {
    with_fake_cluster("rolling update", 1, 3, |cluster| {
        services::create_detached(cluster, 0, "web", 3, &[], "fake/web:1")?;
        services::wait_converged(cluster, 0, "web", 3, CONVERGE_TIMEOUT, |_| Ok(()))?;
        // Followed from outside while it runs: with one task at a time, two of the
        // three slots run at every look.
        let settle = Duration::from_millis(500 + 700);
        cluster.node(0).cli_ok(&[
            "service",
            "update",
            "--detach",
            "--update-monitor",
            "500ms",
            "--update-delay",
            "700ms",
            "--image",
            "fake/web:2",
            "web",
        ])?;
        let started = Instant::now();
        let mut looks = 0;
        let tasks = loop {
            let tasks = services::tasks(cluster, 0, "web")?;
            let up = running(&tasks);
            ensure!(
                up.len() >= 2,
                "fewer than 2 of 3 tasks ran during the update: {tasks:#?}"
            );
            looks += 1;
            if on_image(&up, "fake/web:2").len() == 3 {
                break tasks;
            }
            ensure!(
                started.elapsed() < CONVERGE_TIMEOUT,
                "the update did not finish: {tasks:#?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let took = started.elapsed();
        println!("rolled out in {took:?}, {looks} looks");
        // The first two replaced tasks were watched, then followed by a pause.
        ensure!(
            took >= 2 * settle,
            "three tasks replaced in {took:?}, under twice the monitor period and delay"
        );
        for slot in 1..=3 {
            let old: Vec<&TaskView> = tasks
                .iter()
                .filter(|t| t.slot == slot && t.image == "fake/web:1")
                .collect();
            ensure!(
                old.len() == 1 && old[0].desired_state == "shutdown",
                "slot {slot} does not keep its old task as history: {tasks:#?}"
            );
        }
        // Followed by the command: the same spec again converges at once.
        let output = update(cluster, &["--image", "fake/web:2", "web"])?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        ensure!(
            output.status.success() && stdout.contains("verify: Service converged"),
            "an update without change did not converge: {}",
            describe(&output)
        );
        ensure!(
            services::tasks(cluster, 0, "web")?.len() == tasks.len(),
            "an update without change replaced tasks"
        );
        Ok(())
    });
}

#[test]
fn an_update_to_a_crashing_image_stops_and_a_fixed_one_goes_through() {
    with_fake_cluster("failed update", 1, 3, |cluster| {
        services::create_detached(cluster, 0, "api", 3, &[], "fake/api:1")?;
        services::wait_converged(cluster, 0, "api", 3, CONVERGE_TIMEOUT, |_| Ok(()))?;
        let output = update(cluster, &["--image", "fake/crash:1:300", "api"])?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        ensure!(
            !output.status.success() && stderr.contains("tasks of service api keep failing"),
            "the broken update was not reported as failing: {}",
            describe(&output)
        );
        let tasks = services::tasks(cluster, 0, "api")?;
        let up = running(&tasks);
        ensure!(
            on_image(&up, "fake/api:1").len() == 2,
            "the broken update went past its first task: {tasks:#?}"
        );
        let failed = tasks
            .iter()
            .filter(|t| t.state == "failed" && t.image == "fake/crash:1:300")
            .count();
        ensure!(
            failed >= 3,
            "expected the new task to fail again: {tasks:#?}"
        );

        // The crashing task ran for 300 ms each time, under the 5 s monitor period.
        // A fixed image: the failing slot restarts on it and the others follow.
        let output = update(cluster, &["--image", "fake/api:2", "api"])?;
        ensure!(
            output.status.success(),
            "the fixed update failed: {}",
            describe(&output)
        );
        let tasks = services::wait_converged(cluster, 0, "api", 3, CONVERGE_TIMEOUT, |_| Ok(()))?;
        let up = running(&tasks);
        ensure!(
            on_image(&up, "fake/api:2").len() == 3,
            "not every task runs the fixed image: {tasks:#?}"
        );
        Ok(())
    });
}

#[test]
fn a_global_update_leaves_a_paused_node_until_it_is_active() {
    with_fake_cluster("global update with a paused node", 1, 2, |cluster| {
        cluster.node(0).cli_ok(&[
            "service",
            "create",
            "--detach",
            "--mode",
            "global",
            "--name",
            "agent",
            "fake/agent:1",
        ])?;
        global_on(cluster, "fake/agent:1", 3)?;
        let paused = cluster.node(2).name.clone();
        cluster
            .node(0)
            .cli_ok(&["node", "update", "--availability", "pause", &paused])?;
        // Followed by the command: it ends once the other nodes run the new spec,
        // saying which task was left as it is.
        let output = update(
            cluster,
            &[
                "--update-monitor",
                "200ms",
                "--image",
                "fake/agent:2",
                "agent",
            ],
        )?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        ensure!(
            output.status.success()
                && stdout.contains("verify: Service converged")
                && stdout.contains("note: 1 task(s) keep the previous spec"),
            "the update did not end with the paused node's task left alone: {}",
            describe(&output)
        );
        let tasks = services::tasks(cluster, 0, "agent")?;
        let up = running(&tasks);
        ensure!(
            up.len() == 3
                && up
                    .iter()
                    .all(|t| (t.node == paused) == (t.image == "fake/agent:1")),
            "only the paused node should run the previous image: {tasks:#?}"
        );
        cluster
            .node(0)
            .cli_ok(&["node", "update", "--availability", "active", &paused])?;
        global_on(cluster, "fake/agent:2", 3)?;
        Ok(())
    });
}

/// Waits until service `agent` runs `image` on `nodes` distinct nodes, and nothing
/// else is meant to run.
fn global_on(cluster: &rswarm_e2e::Cluster, image: &str, nodes: usize) -> anyhow::Result<()> {
    rswarm_e2e::wait_until(
        CONVERGE_TIMEOUT,
        &format!("agent to run {image} on {nodes} nodes"),
        || {
            let tasks = services::tasks(cluster, 0, "agent").map_err(|e| format!("{e:#}"))?;
            let up = running(&tasks);
            let on = on_image(&up, image);
            let mut hosts: Vec<&str> = on.iter().map(|t| t.node.as_str()).collect();
            hosts.sort_unstable();
            hosts.dedup();
            let meant = tasks
                .iter()
                .filter(|t| t.desired_state == "running")
                .count();
            if hosts.len() == nodes && on.len() == nodes && meant == nodes {
                Ok(())
            } else {
                Err(format!("{} of {nodes} on {image}: {tasks:#?}", on.len()))
            }
        },
    )
}
