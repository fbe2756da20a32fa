//! Shared by the scenarios: running one on a cluster, and CLI helpers.

use std::collections::BTreeSet;
use std::process::Output;
use std::time::Duration;

use anyhow::Context;
use rswarm_e2e::command::describe;
use rswarm_e2e::{Cluster, skip_reason, wait_until};
use serde_json::Value;

/// A new leader must be agreed on within this after the old one is killed (election
/// timeouts are 0.5–1 s by default; this leaves room for a loaded machine).
pub const FAILOVER_TIMEOUT: Duration = Duration::from_secs(15);
/// Restarted nodes must be back within this.
pub const RESTART_TIMEOUT: Duration = Duration::from_secs(30);
/// A refused join or init must exit within this.
pub const REFUSAL_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `scenario` on a cluster of `managers` and `workers`, unless these tests cannot
/// run here. Failures panic while the cluster is alive, so its logs are printed.
pub fn with_cluster(
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

/// A command's stderr as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `service create --detach` through node `via`, retried while the cluster settles.
pub fn create_service(
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

/// Names of the services `service ls` through node `via` lists.
pub fn service_names(cluster: &Cluster, via: usize) -> anyhow::Result<BTreeSet<String>> {
    let services = cluster.service_ls(via)?;
    let list = services
        .as_array()
        .context("service ls is not a JSON array")?;
    Ok(list
        .iter()
        .filter_map(|s| s["name"].as_str().map(str::to_string))
        .collect())
}

/// Addresses of the managers in a `cluster status` JSON value.
pub fn manager_addrs(status: &Value) -> BTreeSet<String> {
    status["managers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["addr"].as_str().map(str::to_string))
        .collect()
}
