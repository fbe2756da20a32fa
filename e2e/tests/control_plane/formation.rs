//! A cluster forms: roles, readiness, one leader; workers refuse control calls.

use std::collections::BTreeSet;

use anyhow::{Context, ensure};
use rswarm_e2e::command::describe;
use rswarm_e2e::{Role, leader_addr};

use crate::support::{manager_addrs, stderr, with_cluster};

#[test]
fn managers_and_workers_form_a_cluster() {
    with_cluster("managers_and_workers_form_a_cluster", 3, 2, |cluster| {
        let expected_managers: BTreeSet<String> =
            (0..3).map(|i| cluster.node(i).addr.to_string()).collect();
        // Every manager gives the same picture, the followers' included.
        for via in 0..3 {
            let nodes = cluster.node_ls(via)?;
            let list = nodes.as_array().context("node ls is not an array")?;
            ensure!(list.len() == 5, "node ls through node {via}: {nodes}");
            for node in cluster.nodes() {
                let row = list
                    .iter()
                    .find(|r| r["hostname"] == node.name.as_str())
                    .with_context(|| format!("{} missing from node ls: {nodes}", node.name))?;
                let role = node.role.context("node without a role")?.as_str();
                ensure!(
                    row["role"] == role,
                    "{}: role {} not {role}",
                    node.name,
                    row["role"]
                );
                ensure!(row["status"] == "ready", "{} not ready: {row}", node.name);
                ensure!(row["availability"] == "active", "{}: {row}", node.name);
                ensure!(
                    row["addr"]
                        .as_str()
                        .is_some_and(|a| a.starts_with(&node.ip.to_string())),
                    "{}: addr {row}",
                    node.name
                );
                let manager_status = &row["manager_status"];
                match node.role {
                    Some(Role::Manager) => ensure!(
                        manager_status == "leader" || manager_status == "reachable",
                        "{}: manager_status {row}",
                        node.name
                    ),
                    _ => ensure!(
                        manager_status.is_null(),
                        "worker {} has a manager status: {row}",
                        node.name
                    ),
                }
            }
            let leaders = list
                .iter()
                .filter(|r| r["manager_status"] == "leader")
                .count();
            ensure!(
                leaders == 1,
                "node ls through node {via} shows {leaders} leaders: {nodes}"
            );

            let status = cluster.status(via)?;
            let managers = status["managers"].as_array().context("no managers array")?;
            ensure!(
                managers.len() == 3,
                "cluster status through node {via}: {status}"
            );
            ensure!(
                managers.iter().all(|m| m["reachable"] == true),
                "unreachable manager: {status}"
            );
            ensure!(
                managers.iter().filter(|m| m["leader"] == true).count() == 1,
                "not exactly one leader: {status}"
            );
            ensure!(
                manager_addrs(&status) == expected_managers,
                "manager addresses: {status}"
            );
            ensure!(
                status["cluster_id"]
                    .as_str()
                    .is_some_and(|id| !id.is_empty()),
                "{status}"
            );
            ensure!(
                status["raft_term"].as_u64().is_some_and(|t| t >= 1),
                "{status}"
            );
        }
        // Every manager has the same cluster id and the same leader.
        let first = cluster.status(0)?;
        for via in 1..3 {
            let other = cluster.status(via)?;
            ensure!(
                other["cluster_id"] == first["cluster_id"],
                "{first} vs {other}"
            );
            ensure!(
                leader_addr(&other) == leader_addr(&first),
                "{first} vs {other}"
            );
        }

        // A worker's socket refuses control commands and says where the managers are.
        for worker in 3..5 {
            let node = cluster.node(worker);
            let output = node.cli(&["cluster", "status"])?;
            ensure!(
                !output.status.success(),
                "worker answered cluster status: {}",
                describe(&output)
            );
            let err = stderr(&output);
            ensure!(
                err.contains("this node is a worker"),
                "{}: {err}",
                node.name
            );
            ensure!(
                expected_managers
                    .iter()
                    .any(|addr| err.contains(addr.as_str())),
                "{}: no manager address in: {err}",
                node.name
            );
            let output = node.cli(&["service", "create", "--name", "x", "--detach", "busybox"])?;
            ensure!(
                !output.status.success() && stderr(&output).contains("this node is a worker"),
                "{}",
                describe(&output)
            );
        }
        Ok(())
    });
}
