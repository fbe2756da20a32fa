//! Losing the leader (killed or cut off) and restarting every node.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use rswarm_e2e::command::describe;
use rswarm_e2e::{leader_addr, wait_until};

use crate::support::{
    FAILOVER_TIMEOUT, RESTART_TIMEOUT, create_service, service_names, with_cluster,
};

#[test]
fn killing_the_leader_elects_another_and_writes_resume() {
    with_cluster(
        "killing_the_leader_elects_another_and_writes_resume",
        3,
        0,
        |cluster| {
            create_service(cluster, 0, "before-failover", Duration::from_secs(10))?;
            let old = cluster.wait_leader(&[], Duration::from_secs(10))?;
            let old_addr = cluster.node(old).addr.to_string();
            let old_term = cluster.status(old)?["raft_term"].as_u64().unwrap_or(0);
            cluster
                .node_mut(old)
                .log_note("killing this leader with SIGKILL");
            cluster.node_mut(old).kill9()?;
            let killed_at = Instant::now();

            let new = cluster.wait_leader(&[old], FAILOVER_TIMEOUT)?;
            let elected = killed_at.elapsed();
            let survivor = (0..3)
                .find(|&i| i != old && i != new)
                .context("no third manager")?;
            // Writes go through both the new leader and a follower, which forwards.
            create_service(cluster, survivor, "after-failover-1", FAILOVER_TIMEOUT)?;
            create_service(cluster, new, "after-failover-2", FAILOVER_TIMEOUT)?;
            eprintln!(
                "new leader after {elected:?}, writes accepted after {:?}",
                killed_at.elapsed()
            );

            for via in [new, survivor] {
                let names = service_names(cluster, via)?;
                for name in ["before-failover", "after-failover-1", "after-failover-2"] {
                    ensure!(
                        names.contains(name),
                        "{name} missing through node {via}: {names:?}"
                    );
                }
                let status = cluster.status(via)?;
                ensure!(
                    status["raft_term"].as_u64().unwrap_or(0) > old_term,
                    "term did not move: {status}"
                );
            }
            // The survivors report the killed manager unreachable, and not as leader.
            wait_until(
                Duration::from_secs(15),
                "the killed leader to be reported unreachable",
                || {
                    let status = cluster.status(new).map_err(|e| format!("{e:#}"))?;
                    let dead = status["managers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|m| m["addr"] == old_addr.as_str())
                        .cloned()
                        .ok_or_else(|| format!("killed manager not listed: {status}"))?;
                    if dead["reachable"] == false && dead["leader"] == false {
                        Ok(())
                    } else {
                        Err(format!("{status}"))
                    }
                },
            )?;
            Ok(())
        },
    );
}

#[test]
fn services_survive_a_restart_of_every_node() {
    with_cluster(
        "services_survive_a_restart_of_every_node",
        3,
        1,
        |cluster| {
            let names = ["web", "api", "db"];
            for (via, name) in names.iter().enumerate() {
                create_service(cluster, via, name, Duration::from_secs(10))?;
            }
            let cluster_id = cluster.status(0)?["cluster_id"].clone();
            for index in 0..4 {
                cluster
                    .node_mut(index)
                    .log_note("killing every node with SIGKILL");
                cluster.node_mut(index).kill9()?;
            }
            for index in 0..4 {
                cluster.node_mut(index).start_daemon()?;
            }
            cluster.wait_leader(&[], RESTART_TIMEOUT)?;
            for via in 0..3 {
                let listed = wait_until(RESTART_TIMEOUT, "the services to be listed", || {
                    let listed = service_names(cluster, via).map_err(|e| format!("{e:#}"))?;
                    if names.iter().all(|n| listed.contains(*n)) {
                        Ok(listed)
                    } else {
                        Err(format!("{listed:?}"))
                    }
                })?;
                ensure!(
                    listed.len() == names.len(),
                    "unexpected services: {listed:?}"
                );
                let services = cluster.service_ls(via)?;
                for service in services.as_array().into_iter().flatten() {
                    ensure!(service["replicas_desired"] == 2, "{service}");
                    ensure!(
                        service["image"]
                            .as_str()
                            .is_some_and(|i| i.contains("busybox")),
                        "{service}"
                    );
                }
                let status = cluster.status(via)?;
                ensure!(
                    status["cluster_id"] == cluster_id,
                    "cluster id changed: {status}"
                );
            }
            cluster.wait_managers(0, 3, RESTART_TIMEOUT)?;
            cluster.wait_nodes_ready(0, 4, RESTART_TIMEOUT)?;
            Ok(())
        },
    );
}

#[test]
fn a_cut_off_leader_is_replaced_and_follows_once_reconnected() {
    with_cluster(
        "a_cut_off_leader_is_replaced_and_follows_once_reconnected",
        3,
        0,
        |cluster| {
            let old = cluster.wait_leader(&[], Duration::from_secs(10))?;
            cluster
                .node(old)
                .log_note("cutting this leader off the network");
            cluster.node(old).cut_network()?;
            let survivors: Vec<usize> = (0..3).filter(|&i| i != old).collect();
            // The cut-off leader cannot reach a quorum: it must not acknowledge a write.
            let isolated_write = cluster.node(old).cli_with_timeout(
                &[
                    "service",
                    "create",
                    "--name",
                    "isolated",
                    "--replicas",
                    "0",
                    "--detach",
                    "busybox",
                ],
                Duration::from_secs(3),
            );
            if let Ok(output) = &isolated_write {
                ensure!(
                    !output.status.success(),
                    "write acknowledged without a quorum: {}",
                    describe(output)
                );
            }
            // The majority side elects a leader of its own and takes writes.
            let new = wait_until(
                FAILOVER_TIMEOUT,
                "the majority to elect a new leader",
                || {
                    let mut seen = BTreeSet::new();
                    for &via in &survivors {
                        let status = cluster.status(via).map_err(|e| format!("{e:#}"))?;
                        seen.insert(
                            leader_addr(&status).ok_or_else(|| format!("no leader: {status}"))?,
                        );
                    }
                    let leader = seen.iter().next().cloned().unwrap_or_default();
                    match cluster.index_of(&leader) {
                        Some(index) if seen.len() == 1 && index != old => Ok(index),
                        _ => Err(format!("leaders seen by the majority: {seen:?}")),
                    }
                },
            )?;
            create_service(cluster, survivors[0], "during-partition", FAILOVER_TIMEOUT)?;
            let names = service_names(cluster, new)?;
            ensure!(
                names.contains("during-partition"),
                "the new leader lacks the write: {names:?}"
            );

            cluster.node(old).restore_network()?;
            cluster.node(old).log_note("network restored");
            // Everyone ends up with one leader and the write made during the cut.
            let leader = cluster.wait_leader(&[], FAILOVER_TIMEOUT)?;
            wait_until(
                FAILOVER_TIMEOUT,
                "the reconnected manager to catch up",
                || {
                    let names = service_names(cluster, old).map_err(|e| format!("{e:#}"))?;
                    if names.contains("during-partition") {
                        Ok(())
                    } else {
                        Err(format!("{names:?}"))
                    }
                },
            )?;
            cluster.wait_managers(leader, 3, FAILOVER_TIMEOUT)?;
            // The write the isolated leader could not commit was discarded everywhere.
            for via in 0..3 {
                let names = service_names(cluster, via)?;
                ensure!(
                    !names.contains("isolated"),
                    "uncommitted write survived on node {via}: {names:?}"
                );
            }
            Ok(())
        },
    );
}
