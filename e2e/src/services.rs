//! Services and their tasks as the CLI shows them (`service ps --format json`),
//! for orchestration scenarios and benchmarks.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::cluster::Cluster;
use crate::wait::wait_until;

/// One row of `service ps`, with its node named by hostname.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskView {
    /// Task id.
    pub id: String,
    /// Its slot.
    pub slot: u64,
    /// The image it runs.
    pub image: String,
    /// Hostname of its node (`node-<n>`); empty while unassigned, the node id when
    /// the node is unknown.
    pub node: String,
    /// Desired state (`running`, `shutdown`...).
    pub desired_state: String,
    /// Observed state (`running`, `failed`, `rejected`...).
    pub state: String,
    /// Why it failed or waits; empty if nothing went wrong.
    pub error: String,
    /// Its address on the task network; empty without one.
    pub address: String,
}

impl TaskView {
    /// Running and meant to.
    pub fn is_running(&self) -> bool {
        self.state == "running" && self.desired_state == "running"
    }
}

/// Hostnames by node id, from `node ls` through node `via`.
pub fn hostnames(cluster: &Cluster, via: usize) -> anyhow::Result<HashMap<String, String>> {
    let nodes = cluster.node_ls(via)?;
    let list = nodes.as_array().context("node ls is not a JSON array")?;
    Ok(list
        .iter()
        .filter_map(|n| Some((n["id"].as_str()?.into(), n["hostname"].as_str()?.into())))
        .collect())
}

/// Every task of `service` (history included), through node `via`.
pub fn tasks(cluster: &Cluster, via: usize, service: &str) -> anyhow::Result<Vec<TaskView>> {
    let names = hostnames(cluster, via)?;
    let rows = cluster.service_ps(via, service)?;
    rows.iter().map(|row| task_view(row, &names)).collect()
}

fn task_view(row: &Value, names: &HashMap<String, String>) -> anyhow::Result<TaskView> {
    let text = |key: &str| -> anyhow::Result<String> {
        row[key]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("service ps row without {key}: {row}"))
    };
    let node = text("node")?;
    Ok(TaskView {
        id: text("id")?,
        slot: row["slot"]
            .as_u64()
            .with_context(|| format!("service ps row without slot: {row}"))?,
        image: text("image")?,
        node: names.get(&node).cloned().unwrap_or(node),
        desired_state: text("desired_state")?,
        state: text("state")?,
        error: text("error")?,
        address: row["address"].as_str().unwrap_or_default().to_string(),
    })
}

/// The running tasks among `tasks`.
pub fn running(tasks: &[TaskView]) -> Vec<&TaskView> {
    tasks.iter().filter(|t| t.is_running()).collect()
}

/// Running tasks per node hostname.
pub fn per_node(tasks: &[TaskView]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for task in running(tasks) {
        *counts.entry(task.node.clone()).or_insert(0) += 1;
    }
    counts
}

/// Waits until `service` has exactly `replicas` running tasks, one per slot,
/// nothing else meant to run, and `check` accepts them; returns every task then.
pub fn wait_converged(
    cluster: &Cluster,
    via: usize,
    service: &str,
    replicas: u64,
    timeout: Duration,
    mut check: impl FnMut(&[TaskView]) -> Result<(), String>,
) -> anyhow::Result<Vec<TaskView>> {
    wait_until(
        timeout,
        &format!("{service} to run {replicas} tasks"),
        || {
            let all = tasks(cluster, via, service).map_err(|e| format!("{e:#}"))?;
            let up = running(&all);
            let mut slots: Vec<u64> = up.iter().map(|t| t.slot).collect();
            slots.sort_unstable();
            slots.dedup();
            let meant = all.iter().filter(|t| t.desired_state == "running").count();
            // One running task in each of `replicas` slots (a scale down keeps the
            // slots whose tasks run, whatever their numbers).
            if slots.len() as u64 != replicas || up.len() != slots.len() || meant != up.len() {
                return Err(format!(
                    "{} running (slots {slots:?}), {meant} meant to run; per node {:?}",
                    up.len(),
                    per_node(&all)
                ));
            }
            check(&all)?;
            Ok(all)
        },
    )
}

/// `service create --detach --name NAME --replicas N FLAGS... IMAGE` through `via`.
pub fn create_detached(
    cluster: &Cluster,
    via: usize,
    name: &str,
    replicas: u64,
    flags: &[&str],
    image: &str,
) -> anyhow::Result<()> {
    let replicas = replicas.to_string();
    let mut args = vec![
        "service",
        "create",
        "--detach",
        "--name",
        name,
        "--replicas",
        &replicas,
    ];
    args.extend_from_slice(flags);
    args.push(image);
    cluster.node(via).cli_ok(&args)?;
    Ok(())
}

/// `service scale NAME=N` through `via`.
pub fn scale(cluster: &Cluster, via: usize, name: &str, replicas: u64) -> anyhow::Result<()> {
    let output = cluster
        .node(via)
        .cli(&["service", "scale", &format!("{name}={replicas}")])?;
    if !output.status.success() {
        bail!(
            "service scale {name}={replicas} failed: {}",
            crate::command::describe(&output)
        );
    }
    Ok(())
}

/// Waits until `service` runs `replicas` tasks, none of them on the node named
/// `lost`; returns every task then. The time this takes after `lost` died is how
/// long its tasks were missing.
pub fn wait_replaced(
    cluster: &Cluster,
    via: usize,
    service: &str,
    replicas: u64,
    lost: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<TaskView>> {
    wait_until(
        timeout,
        &format!("{service}'s tasks on {lost} to run elsewhere"),
        || {
            let all = tasks(cluster, via, service).map_err(|e| format!("{e:#}"))?;
            let elsewhere = running(&all).into_iter().filter(|t| t.node != lost).count();
            if elsewhere as u64 == replicas {
                Ok(all)
            } else {
                Err(format!(
                    "{elsewhere} of {replicas} running off {lost}; per node {:?}",
                    per_node(&all)
                ))
            }
        },
    )
}
