//! Control-plane behaviour of real `rswarm` nodes, each in its own network namespace:
//! cluster formation, leader failover, restart from disk, join and TLS refusals.
//!
//! Root only (network namespaces); skipped with a notice otherwise.

use std::collections::BTreeSet;
use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use rswarm_e2e::command::describe;
use rswarm_e2e::{Cluster, Role, leader_addr, skip_reason, wait_until};
use rswarm_proto::api::GetClusterStatusRequest;
use rswarm_proto::api::control_client::ControlClient;
use serde_json::Value;

/// A new leader must be agreed on within this after the old one is killed (election
/// timeouts are 0.5–1 s by default; this leaves room for a loaded machine).
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(15);
/// Restarted nodes must be back within this.
const RESTART_TIMEOUT: Duration = Duration::from_secs(30);
/// A refused join or init must exit within this.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `scenario` on a cluster of `managers` and `workers`, unless these tests cannot
/// run here. Failures panic while the cluster is alive, so its logs are printed.
fn with_cluster(
    test: &str,
    managers: usize,
    workers: usize,
    scenario: impl FnOnce(&mut Cluster) -> anyhow::Result<()>,
) {
    if let Some(why) = skip_reason() {
        eprintln!("skipping {test}: {why}");
        return;
    }
    let mut cluster = Cluster::start(managers, workers)
        .unwrap_or_else(|err| panic!("{test}: cluster did not form: {err:#}"));
    if let Err(err) = scenario(&mut cluster) {
        panic!("{test}: {err:#}");
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `service create --detach` through node `via`, retried while the cluster settles.
fn create_service(
    cluster: &Cluster,
    via: usize,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let node = cluster.node(via);
    wait_until(
        timeout,
        &format!("service {name} to be created through {}", node.name),
        || {
            let output = node
                .cli(&[
                    "service",
                    "create",
                    "--name",
                    name,
                    "--replicas",
                    "2",
                    "--detach",
                    "busybox",
                ])
                .map_err(|e| format!("{e:#}"))?;
            if output.status.success() {
                return Ok(());
            }
            let err = stderr(&output);
            // A retry after a lost acknowledgement finds the service already there.
            if err.contains("already exists")
                && service_names(cluster, via).is_ok_and(|n| n.contains(name))
            {
                return Ok(());
            }
            Err(describe(&output))
        },
    )
}

fn service_names(cluster: &Cluster, via: usize) -> anyhow::Result<BTreeSet<String>> {
    let services = cluster.service_ls(via)?;
    let list = services
        .as_array()
        .context("service ls is not a JSON array")?;
    Ok(list
        .iter()
        .filter_map(|s| s["name"].as_str().map(str::to_string))
        .collect())
}

fn manager_addrs(status: &Value) -> BTreeSet<String> {
    status["managers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["addr"].as_str().map(str::to_string))
        .collect()
}

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
fn wrong_join_tokens_are_refused_without_leaving_state() {
    with_cluster(
        "wrong_join_tokens_are_refused_without_leaving_state",
        1,
        0,
        |cluster| {
            let joiner = cluster.add_node()?;
            let manager = cluster.node(0).addr;
            let token = cluster.join_token(0, Role::Worker)?;
            let parts: Vec<&str> = token.split('-').collect();
            ensure!(
                parts.len() == 4 && parts[0] == "RSWTKN",
                "unexpected token shape: {token}"
            );
            let (digest, secret) = (parts[2], parts[3]);

            // Right CA, wrong secret (same format and length).
            let wrong_secret: String = secret
                .chars()
                .map(|c| if c == 'a' { 'b' } else { 'a' })
                .collect();
            let bad_secret = format!("RSWTKN-1-{digest}-{wrong_secret}");
            // A CA digest that is not this cluster's, with the right secret.
            let wrong_digest: String = digest
                .chars()
                .map(|c| if c == '0' { '1' } else { '0' })
                .collect();
            let bad_ca = format!("RSWTKN-1-{wrong_digest}-{secret}");

            for (what, token, expect) in [
                ("wrong secret", bad_secret, "token"),
                ("wrong CA digest", bad_ca, "does not match"),
            ] {
                let node = cluster.node(joiner);
                let output = node.try_join(&token, manager, REFUSAL_TIMEOUT)?;
                ensure!(
                    !output.status.success(),
                    "{what}: join succeeded: {}",
                    describe(&output)
                );
                let err = stderr(&output);
                ensure!(
                    err.to_lowercase().contains(expect),
                    "{what}: unclear message: {}",
                    describe(&output)
                );
                ensure!(
                    !err.contains(secret),
                    "{what}: the secret was printed: {err}"
                );
                let left: Vec<_> = std::fs::read_dir(node.data_dir())
                    .map(|entries| entries.flatten().map(|e| e.file_name()).collect())
                    .unwrap_or_default();
                ensure!(
                    left.is_empty(),
                    "{what}: state left in {}: {left:?}",
                    node.data_dir().display()
                );
            }
            let nodes = cluster.node_ls(0)?;
            ensure!(
                nodes.as_array().is_some_and(|n| n.len() == 1),
                "a refused node was registered: {nodes}"
            );

            // The right token still works after the refusals.
            cluster.join(joiner, Role::Worker, 0)?;
            cluster.wait_nodes_ready(0, 2, Duration::from_secs(30))?;
            Ok(())
        },
    );
}

#[test]
fn tcp_clients_need_the_admin_certificate() {
    with_cluster("tcp_clients_need_the_admin_certificate", 1, 0, |cluster| {
        // Some namespace on the segment to run the CLI from: a node without a daemon.
        let outsider = cluster.add_node()?;
        let manager = cluster.node(0).addr.to_string();
        let no_cert = cluster.root_dir().join("no-certificate");
        std::fs::create_dir_all(&no_cert)?;

        let with_cert = cluster.node(outsider).exec_in_netns(
            &[
                "--host",
                manager.as_str(),
                "--cert-dir",
                &cluster.node(0).admin_dir().to_string_lossy(),
                "--format",
                "json",
                "cluster",
                "status",
            ],
            REFUSAL_TIMEOUT,
        )?;
        ensure!(
            with_cert.status.success(),
            "admin certificate refused: {}",
            describe(&with_cert)
        );
        let without = cluster.node(outsider).exec_in_netns(
            &[
                "--host",
                manager.as_str(),
                "--cert-dir",
                &no_cert.to_string_lossy(),
                "cluster",
                "status",
            ],
            REFUSAL_TIMEOUT,
        )?;
        ensure!(
            !without.status.success(),
            "answered without a certificate: {}",
            describe(&without)
        );
        ensure!(
            !without.stdout.iter().any(|b| !b.is_ascii_whitespace()),
            "printed a result: {}",
            describe(&without)
        );

        // A raw gRPC client that skips the certificate entirely gets `unauthenticated`.
        let runtime = cluster.client_runtime(1)?;
        let addr = manager.clone();
        let result = runtime.run(async move {
            let channel = rswarm_proto::tls::bootstrap_channel(&addr)?;
            let mut client = ControlClient::new(channel);
            anyhow::Ok(client.get_cluster_status(GetClusterStatusRequest {}).await)
        })??;
        match result {
            Ok(status) => bail!(
                "answered a client without a certificate: {:?}",
                status.into_inner()
            ),
            Err(status) => ensure!(status.code() == tonic::Code::Unauthenticated, "{status}"),
        }
        Ok(())
    });
}

#[test]
fn init_twice_on_one_data_dir_is_refused() {
    with_cluster("init_twice_on_one_data_dir_is_refused", 1, 0, |cluster| {
        let cluster_id = cluster.status(0)?["cluster_id"].clone();
        cluster.node_mut(0).sigterm()?;
        let output = cluster.node(0).try_init(REFUSAL_TIMEOUT)?;
        ensure!(
            !output.status.success(),
            "second init succeeded: {}",
            describe(&output)
        );
        ensure!(
            stderr(&output).contains("rswarm daemon"),
            "no hint to use rswarm daemon: {}",
            describe(&output)
        );

        // The node is intact: `rswarm daemon` brings back the same cluster.
        cluster.node_mut(0).start_daemon()?;
        let status = cluster.wait_managers(0, 1, RESTART_TIMEOUT)?;
        ensure!(
            status["cluster_id"] == cluster_id,
            "cluster changed: {status}"
        );
        Ok(())
    });
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
