//! Shared by the scenarios: running one on a cluster whose nodes fake their tasks.

use std::time::Duration;

use rswarm_e2e::{Cluster, skip_reason};

/// Tasks must reach the state asked for within this (a loaded machine runs several
/// builds next to the test).
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `scenario` on a cluster of `managers` and `workers` started with `--executor
/// fake`, unless these tests cannot run here. Failures panic while the cluster is
/// alive, so its logs are printed.
pub fn with_fake_cluster(
    test: &str,
    managers: usize,
    workers: usize,
    scenario: impl FnOnce(&mut Cluster) -> anyhow::Result<()>,
) {
    if let Some(why) = skip_reason() {
        eprintln!("skipping {test}: {why}");
        return;
    }
    let mut cluster = Cluster::start_fake(managers, workers, &[])
        .unwrap_or_else(|err| panic!("{test}: cluster did not form: {err:#}"));
    if let Err(err) = scenario(&mut cluster) {
        panic!("{test}: {err:#}");
    }
}

/// Whether the running tasks are spread over nodes so that no two counts differ by
/// more than one, counting each of `nodes` (a node without tasks counts 0).
pub fn balanced(tasks: &[rswarm_e2e::services::TaskView], nodes: &[String]) -> Result<(), String> {
    let counts = rswarm_e2e::services::per_node(tasks);
    let per: Vec<usize> = nodes
        .iter()
        .map(|n| counts.get(n).copied().unwrap_or(0))
        .collect();
    let (min, max) = (per.iter().min(), per.iter().max());
    match (min, max) {
        (Some(min), Some(max)) if max - min <= 1 && counts.len() <= nodes.len() => Ok(()),
        _ => Err(format!("unbalanced: {counts:?} over {nodes:?}")),
    }
}
