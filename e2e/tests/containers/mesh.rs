//! The routing mesh through real containers on three nodes: a task and a node
//! killed under a request loop, host-mode ports, the PROXY protocol.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use rswarm_e2e::load::{self, LoadSpec};
use rswarm_e2e::services::{self, TaskView};
use rswarm_e2e::{Cluster, wait_until};

use super::{
    CONVERGE, container_pid, create, get_from_client, import_test_image, node_of, wait_addressed,
    wait_reaches, with_cluster,
};

/// The request loop spans both kills, the rescheduling after them and a scale
/// down; it also stops after `MAX_REQUESTS`.
const LOAD: Duration = Duration::from_secs(42);
/// The service's stop grace period: a stopping task is drained this long.
const GRACE: Duration = Duration::from_secs(2);
const MAX_REQUESTS: usize = 5000;
const PAUSE: Duration = Duration::from_millis(10);
/// Longer than the proxy's connect timeout and a retry, so a request the proxy
/// moves to another task is not taken for a failure.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(8);
/// SIGKILL is delivered at once but the container's processes and sockets go
/// a moment later: a request sent this soon after it still met the dying task.
const DYING: Duration = Duration::from_millis(50);

fn kill9(pid: u64) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .context("running kill")?;
    ensure!(status.success(), "kill -KILL {pid}: {status}");
    Ok(())
}

#[test]
fn killing_a_task_and_a_node_fails_only_the_requests_in_flight_on_them() {
    with_cluster("mesh failures", |cluster| {
        import_test_image(cluster)?;
        let grace = format!("{}s", GRACE.as_secs());
        create(
            cluster,
            "web",
            3,
            &[
                "--stop-grace-period",
                &grace,
                "--replicas-max-per-node",
                "1",
                "--publish",
                "8000:8080",
                "testimg:1",
                "/bin/testimg",
                "serve",
                "8080",
            ],
        )?;
        let tasks = wait_addressed(cluster, "web", 3)?;
        let entry = cluster.node(0).addr.ip();
        wait_reaches(
            cluster,
            &format!("{entry}:8000"),
            &["web.1", "web.2", "web.3"],
        )?;
        let victim = tasks
            .iter()
            .find(|t| node_of(cluster, t).ok() == Some(1))
            .with_context(|| format!("no task on node 1: {tasks:?}"))?;
        let pid = container_pid(cluster, 1, &victim.id)?;

        let client = cluster.client_runtime(1)?;
        let running = client.handle().spawn(load::http_loop(LoadSpec {
            target: SocketAddr::new(entry, 8000),
            duration: LOAD,
            max_requests: MAX_REQUESTS,
            pause: PAUSE,
            timeout: REQUEST_TIMEOUT,
        }));
        std::thread::sleep(Duration::from_secs(4));
        cluster
            .node(0)
            .log_note(&format!("killing task {} (pid {pid})", victim.id));
        let task_killed = Instant::now();
        kill9(pid)?;
        std::thread::sleep(Duration::from_secs(10));
        let lost = cluster.node(2).name.clone();
        cluster
            .node(0)
            .log_note(&format!("killing {lost} and cutting it off"));
        let node_killed = Instant::now();
        cluster.node(2).cut_network()?;
        cluster.node_mut(2).kill9()?;
        // A scale down stops tasks gracefully: drained first, nothing fails.
        std::thread::sleep(Duration::from_secs(12));
        cluster.node(0).log_note("scaling web to 1");
        let scaled = Instant::now();
        cluster.node(0).cli_ok(&["service", "scale", "web=1"])?;
        let run = client.run(running)?.context("the request loop panicked")?;

        let kills = [
            task_killed.duration_since(run.start),
            node_killed.duration_since(run.start),
        ];
        let scaled = scaled.duration_since(run.start);
        let latencies = run.latencies();
        let percentile = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
        let failures = run.failures();
        println!(
            "{} requests through {entry}:8000, {} failed; latency p50 {:?}, p99 {:?}, max {:?}; \
             task killed at {:?}, node at {:?}, scaled down at {scaled:?}",
            run.outcomes.len(),
            failures.len(),
            percentile(50),
            percentile(99),
            latencies.last().copied().unwrap_or_default(),
            kills[0],
            kills[1],
        );
        for failure in &failures {
            ensure!(
                kills
                    .iter()
                    .any(|at| failure.in_flight_at(*at) || failure.sent.abs_diff(*at) <= DYING),
                "a request sent at {:?} failed ({:?}) without being in flight at a kill ({kills:?})",
                failure.sent,
                failure.reply
            );
        }
        ensure!(
            run.outcomes.len() >= 300,
            "only {} requests were sent",
            run.outcomes.len()
        );
        // The killed task's replacement (same slot, so same name) answered
        // through the entry node before the node was lost: a new task on
        // another node is reachable over the overlay at once.
        let replacement = format!("web.{}", victim.slot);
        ensure!(
            run.outcomes
                .iter()
                .any(|o| o.sent > kills[0] + Duration::from_secs(1)
                    && o.sent < kills[1]
                    && o.reply.as_deref().ok() == Some(replacement.as_str())),
            "{replacement}'s replacement never answered between the kills"
        );
        // The service kept answering after the node was gone.
        let after = run
            .outcomes
            .iter()
            .filter(|o| o.sent > kills[1] + REQUEST_TIMEOUT && o.reply.is_ok())
            .count();
        ensure!(
            after >= 100,
            "only {after} requests answered after the node was lost"
        );
        // The scale down failed nothing, and once the stopped task was drained
        // and gone a single task answered.
        if let Some(failed) = failures.iter().find(|f| f.sent >= scaled) {
            anyhow::bail!(
                "a request sent at {:?}, after the scale down, failed: {:?}",
                failed.sent,
                failed.reply
            );
        }
        let mut last: Vec<&str> = run
            .outcomes
            .iter()
            .filter(|o| o.sent > scaled + GRACE + Duration::from_secs(2))
            .filter_map(|o| o.reply.as_deref().ok())
            .collect();
        last.sort();
        last.dedup();
        ensure!(
            last.len() == 1,
            "after the scale down to 1 the replies came from {last:?}"
        );
        Ok(())
    });
}

#[test]
fn host_ports_reach_only_their_nodes_task_and_the_proxy_protocol_carries_the_client() {
    with_cluster("host mode and PROXY protocol", |cluster| {
        import_test_image(cluster)?;
        create(
            cluster,
            "pinned",
            2,
            &[
                "--replicas-max-per-node",
                "1",
                "--publish",
                "published=8100,target=8080,mode=host",
                "testimg:1",
                "/bin/testimg",
                "serve",
                "8080",
            ],
        )?;
        create(
            cluster,
            "origin",
            3,
            &[
                "--replicas-max-per-node",
                "1",
                "--publish",
                "published=8200,target=8080,proxy-protocol=v2",
                "testimg:1",
                "/bin/testimg",
                "serve-proxy",
                "8080",
            ],
        )?;

        // Host mode: a node with a task answers with that task only; the node
        // without one does not listen.
        let pinned = wait_addressed(cluster, "pinned", 2)?;
        let mut idle = (0..cluster.nodes().len()).collect::<Vec<_>>();
        for task in &pinned {
            let index = node_of(cluster, task)?;
            idle.retain(|i| *i != index);
            let addr = format!("{}:8100", cluster.node(index).addr.ip());
            let name = format!("pinned.{}", task.slot);
            wait_reaches(cluster, &addr, &[&name])?;
            let replies = get_from_client(cluster, &addr, 6)?;
            ensure!(
                replies.iter().all(|r| *r == name),
                "{addr} reached other tasks than {name}: {replies:?}"
            );
        }
        ensure!(idle.len() == 1, "the two tasks share a node: {pinned:?}");
        let idle_addr = SocketAddr::new(cluster.node(idle[0]).addr.ip(), 8100);
        let client = cluster.client_runtime(1)?;
        let reply = client.run(load::request(idle_addr))?;
        ensure!(
            reply.as_ref().is_err_and(|e| e.contains("refused")),
            "{idle_addr}, a node without a task, answered the host-mode port: {reply:?}"
        );

        // PROXY protocol v2: every task sees the client's own address.
        wait_addressed(cluster, "origin", 3)?;
        let client_ip = cluster.client_ip().to_string();
        for node in cluster.nodes() {
            let addr = format!("{}:8200", node.addr.ip());
            wait_until(
                CONVERGE,
                &format!("{addr} to reach every origin task"),
                || {
                    let replies = get_from_client(cluster, &addr, 6).map_err(|e| e.to_string())?;
                    let seen: Vec<(&str, &str)> =
                        replies.iter().filter_map(|r| r.split_once(' ')).collect();
                    if let Some((task, from)) = seen
                        .iter()
                        .find(|(_, from)| from.split(':').next() != Some(client_ip.as_str()))
                    {
                        return Err(format!("{task} saw the client as {from}, not {client_ip}"));
                    }
                    every_origin_task(&replies)
                },
            )?;
        }

        // An ingress port moved by an update: the proxies follow, the tasks stay.
        let before = services::tasks(cluster, 0, "origin")?;
        update(
            cluster,
            &[
                "--publish-rm",
                "8200",
                "--publish-add",
                "published=8300,target=8080,proxy-protocol=v2",
                "origin",
            ],
        )?;
        for node in cluster.nodes() {
            let addr = format!("{}:8300", node.addr.ip());
            wait_until(
                CONVERGE,
                &format!("{addr} to reach every origin task"),
                || {
                    let replies = get_from_client(cluster, &addr, 6).map_err(|e| e.to_string())?;
                    every_origin_task(&replies)
                },
            )?;
            let old = SocketAddr::new(node.addr.ip(), 8200);
            wait_until(
                CONVERGE,
                &format!("{old} to stop listening"),
                || match client.run(load::request(old)).map_err(|e| e.to_string())? {
                    Err(e) if e.contains("refused") => Ok(()),
                    other => Err(format!("{old} still answers: {other:?}")),
                },
            )?;
        }
        ensure!(
            services::tasks(cluster, 0, "origin")? == before,
            "moving an ingress port replaced tasks"
        );

        // A host-mode port moved: where a task may run changes, so the tasks are
        // replaced one at a time (real containers this time). The monitor period
        // holds the second slot: meanwhile the task not replaced yet still
        // answers its old port on its node, its replacement the new one.
        let old_ids: Vec<String> = pinned.iter().map(|t| t.id.clone()).collect();
        let output = cluster.node(0).cli_with_timeout(
            &[
                "service",
                "update",
                "--detach",
                "--update-monitor",
                "20s",
                "--publish-rm",
                "8100",
                "--publish-add",
                "published=8101,target=8080,mode=host",
                "pinned",
            ],
            Duration::from_secs(60),
        )?;
        ensure!(
            output.status.success(),
            "service update --detach failed: {}",
            rswarm_e2e::command::describe(&output)
        );
        let (kept, replacement) = wait_until(CONVERGE, "one pinned slot replaced", || {
            let tasks = services::tasks(cluster, 0, "pinned").map_err(|e| e.to_string())?;
            let running: Vec<&TaskView> = services::running(&tasks)
                .into_iter()
                .filter(|t| !t.address.is_empty())
                .collect();
            let (old, new): (Vec<&TaskView>, Vec<&TaskView>) =
                running.into_iter().partition(|t| old_ids.contains(&t.id));
            match (old.as_slice(), new.as_slice()) {
                ([old], [new]) => Ok(((*old).clone(), (*new).clone())),
                _ => Err(format!("old {old:?}, new {new:?}")),
            }
        })?;
        let kept_addr = format!("{}:8100", cluster.node(node_of(cluster, &kept)?).addr.ip());
        let kept_name = format!("pinned.{}", kept.slot);
        let replies = get_from_client(cluster, &kept_addr, 4)?;
        ensure!(
            replies.iter().all(|r| *r == kept_name),
            "{kept_addr}, the old port of {kept_name} (not replaced yet), answered {replies:?}"
        );
        let new_addr = format!(
            "{}:8101",
            cluster.node(node_of(cluster, &replacement)?).addr.ip()
        );
        wait_reaches(
            cluster,
            &new_addr,
            &[&format!("pinned.{}", replacement.slot)],
        )?;

        let pinned = wait_until(CONVERGE, "every pinned task replaced", || {
            let tasks = services::tasks(cluster, 0, "pinned").map_err(|e| e.to_string())?;
            let running: Vec<TaskView> = services::running(&tasks)
                .into_iter()
                .filter(|t| !t.address.is_empty() && !old_ids.contains(&t.id))
                .cloned()
                .collect();
            if running.len() == 2 {
                Ok(running)
            } else {
                Err(format!("replaced and running: {running:?}"))
            }
        })?;
        for task in &pinned {
            let addr = format!("{}:8101", cluster.node(node_of(cluster, task)?).addr.ip());
            let name = format!("pinned.{}", task.slot);
            wait_reaches(cluster, &addr, &[&name])?;
        }
        Ok(())
    });
}

/// Whether `replies` (`TASK CLIENT` each) came from all three origin tasks.
fn every_origin_task(replies: &[String]) -> Result<(), String> {
    let mut tasks: Vec<&str> = replies
        .iter()
        .filter_map(|r| r.split_once(' ').map(|(task, _)| task))
        .collect();
    tasks.sort();
    tasks.dedup();
    if tasks == ["origin.1", "origin.2", "origin.3"] {
        Ok(())
    } else {
        Err(format!("replies from {tasks:?} only: {replies:?}"))
    }
}

/// `service update ARGS...`, followed to convergence.
fn update(cluster: &Cluster, args: &[&str]) -> anyhow::Result<()> {
    let mut all = vec!["service", "update", "--timeout", "90s"];
    all.extend_from_slice(args);
    let output = cluster
        .node(0)
        .cli_with_timeout(&all, Duration::from_secs(120))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success() && stdout.contains("verify: Service converged"),
        "service update {args:?} did not converge: {}",
        rswarm_e2e::command::describe(&output)
    );
    Ok(())
}
