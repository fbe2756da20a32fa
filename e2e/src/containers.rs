//! Containers the nodes leave behind. A node daemon keeps its containers running
//! when it stops (so that a restart re-adopts them), so a test cluster removes them
//! itself once its daemons are gone: processes, cgroups, state directories.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rswarm_agent_runtime::container::Runtime;

/// The test image's program, built next to the `rswarm` binary.
pub fn testimg_binary(rswarm: &Path) -> PathBuf {
    rswarm.with_file_name("rswarm-testimg")
}

/// A root filesystem tarball of the test image (`/bin/testimg`, its libraries and
/// a minimal `/etc`), written to `out`.
pub fn test_image_tar(rswarm: &Path, out: &Path) -> anyhow::Result<()> {
    rswarm_agent_runtime::testing::test_rootfs_tar(out, &testimg_binary(rswarm))?;
    Ok(())
}

/// Removes every container under a node's data dir; returns their ids.
pub fn remove_left(data_dir: &Path, rswarm: &Path) -> anyhow::Result<Vec<String>> {
    let root = data_dir.join("runtime");
    remove_task_netns(&root)?;
    if !root.join("containers").is_dir() {
        return Ok(Vec::new());
    }
    let runtime = Runtime::new(&root, rswarm.with_file_name("rswarm-shim"))?;
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(tokio.block_on(runtime.cleanup_orphans(&HashSet::new()))?)
}

/// Unmounts and removes the task network namespace files a node left (its tasks'
/// containers are gone; a daemon would have detached them).
fn remove_task_netns(runtime_root: &Path) -> anyhow::Result<()> {
    let dir = runtime_root.join("netns");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        rswarm_agent_runtime::network::delete_netns(&entry.path())?;
    }
    Ok(())
}
