//! Images imported on one manager reach the others and are refused removal while a
//! service uses them; a service's logs come back from the nodes that ran it.

use std::process::Command;

use anyhow::{Context, bail, ensure};
use rswarm_e2e::services;
use rswarm_e2e::wait_until;

use crate::support::{CONVERGE_TIMEOUT, with_fake_cluster};

/// A one-file root filesystem tarball, made with the system's tar.
fn rootfs_tarball(dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("etc"))?;
    std::fs::write(root.join("etc/hello"), "hello from the image\n")?;
    let tarball = dir.join("rootfs.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tarball)
        .arg(".")
        .status()
        .context("running tar")?;
    ensure!(status.success(), "tar failed: {status}");
    Ok(tarball)
}

/// Blob files in a node's image store.
fn blob_count(node: &rswarm_e2e::Node) -> usize {
    std::fs::read_dir(node.data_dir().join("runtime/images/blobs/sha256"))
        .map(|entries| entries.count())
        .unwrap_or(0)
}

#[test]
fn images_replicate_to_every_manager_and_logs_come_back() {
    with_fake_cluster("images and logs", 3, 1, |cluster| {
        let tarball = rootfs_tarball(cluster.root_dir())?;
        let imported = cluster.node(0).cli_ok(&[
            "image".as_ref(),
            "import".as_ref(),
            "--name".as_ref(),
            "demo:1".as_ref(),
            tarball.as_os_str(),
        ])?;
        ensure!(imported.starts_with("Imported demo:1 ("), "{imported}");

        // Every manager fetches the image's blobs and records itself as a holder.
        wait_until(CONVERGE_TIMEOUT, "the image on all three managers", || {
            let list = cluster
                .node(2)
                .cli_json(&["image", "ls"])
                .map_err(|e| format!("{e:#}"))?;
            match list[0]["managers"].as_u64() {
                Some(3) => Ok(()),
                _ => Err(format!("{list}")),
            }
        })?;
        for index in 0..3 {
            let blobs = blob_count(cluster.node(index));
            ensure!(blobs == 3, "manager {index} holds {blobs} blobs, not 3");
        }

        services::create_detached(cluster, 1, "web", 2, &[], "demo:1")?;
        services::wait_converged(cluster, 0, "web", 2, CONVERGE_TIMEOUT, |_| Ok(()))?;

        let refused = cluster.node(2).cli(&["image", "rm", "demo:1"])?;
        let stderr = String::from_utf8_lossy(&refused.stderr);
        ensure!(
            !refused.status.success(),
            "removal of a used image succeeded"
        );
        ensure!(
            stderr.contains("in use by service web"),
            "unclear refusal: {stderr}"
        );

        // Asked on a manager that may not lead: it relays to the leader.
        let logs = cluster.node(1).cli_ok(&["service", "logs", "web"])?;
        let lines: Vec<&str> = logs.lines().collect();
        ensure!(lines.len() == 2, "expected one line per task: {logs}");
        for slot in ["web.1.", "web.2."] {
            ensure!(
                lines
                    .iter()
                    .any(|l| l.starts_with(slot) && l.ends_with("| running image demo:1")),
                "no line from {slot}: {logs}"
            );
        }
        let json = cluster
            .node(0)
            .cli_json(&["service", "logs", "--tail", "1", "web"])?;
        ensure!(json.as_array().map(Vec::len) == Some(2), "{json}");

        cluster.node(0).cli_ok(&["service", "rm", "web"])?;
        cluster.node(0).cli_ok(&["image", "rm", "demo:1"])?;
        wait_until(
            CONVERGE_TIMEOUT,
            "the blobs gone from every manager",
            || {
                let counts: Vec<usize> = (0..3).map(|i| blob_count(cluster.node(i))).collect();
                if counts.iter().all(|c| *c == 0) {
                    Ok(())
                } else {
                    Err(format!("blobs left: {counts:?}"))
                }
            },
        )?;
        let left = cluster.node(1).cli_json(&["image", "ls"])?;
        if left.as_array().is_none_or(|a| !a.is_empty()) {
            bail!("images left after removal: {left}");
        }
        Ok(())
    });
}
