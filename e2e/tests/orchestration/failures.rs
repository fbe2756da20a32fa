//! Tasks that crash, images that do not exist.

use std::time::Duration;

use anyhow::{bail, ensure};
use rswarm_e2e::services::{self, TaskView};
use rswarm_e2e::wait_until;

use crate::support::{CONVERGE_TIMEOUT, with_fake_cluster};

/// Exits with code 1 after 300 ms.
const CRASHING: &str = "fake/crash:1:300";

/// Failed tasks among `tasks`, with their slot.
fn failed(tasks: &[TaskView]) -> Vec<&TaskView> {
    tasks.iter().filter(|t| t.state == "failed").collect()
}

#[test]
fn crashing_tasks_are_restarted_in_their_slot() {
    with_fake_cluster("crash restart", 1, 3, |cluster| {
        // Restarts on any exit by default; the delay flag is given to check that a
        // policy from the CLI reaches the orchestrator without breaking restarts.
        let flags = ["--restart-delay", "100ms"];
        services::create_detached(cluster, 0, "crash", 1, &flags, CRASHING)?;
        let tasks = wait_until(CONVERGE_TIMEOUT, "two failures and a running task", || {
            let all = services::tasks(cluster, 0, "crash").map_err(|e| format!("{e:#}"))?;
            let failures = failed(&all);
            let running = services::running(&all);
            if failures.len() >= 2 && running.len() == 1 {
                Ok(all)
            } else {
                Err(format!("{all:#?}"))
            }
        })?;
        for task in failed(&tasks) {
            ensure!(task.slot == 1, "failed task outside slot 1: {task:?}");
            ensure!(
                task.error.contains("non-zero exit (1)"),
                "the failure does not give the exit code: {task:?}"
            );
            ensure!(
                task.desired_state != "running",
                "failed task still desired: {task:?}"
            );
        }
        let running = services::running(&tasks);
        ensure!(
            running[0].slot == 1,
            "replacement in another slot: {tasks:#?}"
        );
        Ok(())
    });
}

#[test]
fn restart_condition_none_leaves_a_crashed_task_down() {
    with_fake_cluster("no restart", 1, 3, |cluster| {
        let flags = ["--restart-condition", "none"];
        services::create_detached(cluster, 0, "once", 2, &flags, CRASHING)?;
        let tasks = wait_until(CONVERGE_TIMEOUT, "both tasks to fail", || {
            let all = services::tasks(cluster, 0, "once").map_err(|e| format!("{e:#}"))?;
            if failed(&all).len() == 2 {
                Ok(all)
            } else {
                Err(format!("{all:#?}"))
            }
        })?;
        println!("both crashed, not restarted: {:?}", failed(&tasks));
        // Given time to (wrongly) restart, nothing new appears.
        std::thread::sleep(Duration::from_secs(3));
        let later = services::tasks(cluster, 0, "once")?;
        if later.len() != 2 || !services::running(&later).is_empty() {
            bail!("tasks were restarted despite --restart-condition none: {later:#?}");
        }
        Ok(())
    });
}

#[test]
fn a_missing_image_rejects_the_tasks() {
    with_fake_cluster("missing image", 1, 3, |cluster| {
        services::create_detached(cluster, 0, "ghost", 2, &[], "fake/missing")?;
        let tasks = wait_until(CONVERGE_TIMEOUT, "rejected tasks in both slots", || {
            let all = services::tasks(cluster, 0, "ghost").map_err(|e| format!("{e:#}"))?;
            let rejected: Vec<&TaskView> = all.iter().filter(|t| t.state == "rejected").collect();
            let slots: std::collections::BTreeSet<u64> = rejected.iter().map(|t| t.slot).collect();
            if slots.len() == 2 {
                Ok(all)
            } else {
                Err(format!("{all:#?}"))
            }
        })?;
        for task in tasks.iter().filter(|t| t.state == "rejected") {
            ensure!(
                task.error.contains("image not found") && task.error.contains("fake/missing"),
                "rejection does not say the image is missing: {task:?}"
            );
        }
        ensure!(
            services::running(&tasks).is_empty(),
            "a task with a missing image runs: {tasks:#?}"
        );
        Ok(())
    });
}
