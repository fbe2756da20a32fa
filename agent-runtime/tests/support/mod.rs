//! Shared fixtures of the root-only container tests.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use rswarm_agent_runtime::cgroup::{Cgroup, HostFs};
use rswarm_agent_runtime::container::{ContainerConfig, ExitInfo, Runtime};
use rswarm_agent_runtime::testing::{build_test_rootfs, is_root};

/// The test rootfs, built once per test binary.
pub fn rootfs() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("testimg-rootfs-{}", std::process::id()));
        remove_stale_rootfs();
        let _ = std::fs::remove_dir_all(&dir);
        build_test_rootfs(&dir, Path::new(env!("CARGO_BIN_EXE_rswarm-testimg"))).unwrap();
        dir
    })
}

/// Removes rootfs copies of earlier test processes that are gone.
fn remove_stale_rootfs() {
    let Ok(entries) = std::fs::read_dir(env!("CARGO_TARGET_TMPDIR")) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("testimg-rootfs-") else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Prints a notice and returns false when not root.
pub fn root_or_skip() -> bool {
    if !is_root() {
        eprintln!("skipping: container tests need root");
    }
    is_root()
}

/// A runtime on its own temporary root; removes whatever it created on drop.
pub struct TestRuntime {
    pub rt: Runtime,
    pub tmp: tempfile::TempDir,
}

impl TestRuntime {
    pub fn new() -> TestRuntime {
        let tmp = tempfile::tempdir().unwrap();
        let rt = Runtime::new(tmp.path(), env!("CARGO_BIN_EXE_rswarm-shim")).unwrap();
        TestRuntime { rt, tmp }
    }

    /// A config running `/bin/testimg args...` on the test rootfs, with a unique id.
    pub fn config(&self, name: &str, args: &[&str]) -> ContainerConfig {
        let id = format!("{name}-{}", std::process::id());
        let mut argv = vec!["/bin/testimg".to_string()];
        argv.extend(args.iter().map(|a| a.to_string()));
        ContainerConfig::new(id, vec![rootfs().to_path_buf()], argv)
    }

    /// Creates, starts and waits for `config`; returns the exit and the log text
    /// (`<stream> <text>` per line, timestamps removed).
    pub async fn run(&self, config: &ContainerConfig) -> (ExitInfo, String) {
        self.rt.create(config).await.unwrap();
        self.rt.start(&config.id).await.unwrap();
        let exit = tokio::time::timeout(Duration::from_secs(30), self.rt.wait(&config.id))
            .await
            .expect("container did not exit in 30s")
            .unwrap();
        (exit, self.log(&config.id))
    }

    /// The current log file without timestamps.
    pub fn log(&self, id: &str) -> String {
        let text =
            std::fs::read_to_string(self.rt.log_dir(id).join("container.log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| l.split_once(' ').map(|(_, rest)| rest.to_string()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The stdout lines of the log.
    pub fn stdout(&self, id: &str) -> Vec<String> {
        self.log(id)
            .lines()
            .filter_map(|l| l.strip_prefix("stdout ").map(str::to_string))
            .collect()
    }
}

impl Drop for TestRuntime {
    fn drop(&mut self) {
        // Synchronous cleanup so it also runs when a test panics: kill and remove
        // every container's cgroup (the shims then exit on their own).
        let ids: Vec<String> = std::fs::read_dir(self.tmp.path().join("containers"))
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        for id in ids {
            let cg = Cgroup::for_container(self.rt.layout(), &id);
            let _ = cg.kill_all(&HostFs, Duration::from_secs(5));
            let _ = cg.remove(&HostFs, Duration::from_secs(5));
        }
    }
}
