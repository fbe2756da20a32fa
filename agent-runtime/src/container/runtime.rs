//! The daemon-side API: create, start, watch, stop and remove containers.
//!
//! Nothing here runs a container in-process: each container has its own
//! `rswarm-shim`, started in its own session, so containers survive a daemon
//! restart and a new [`Runtime`] on the same root re-adopts them from the files
//! the shim writes (`state.json`, `exit.json`).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::config::ContainerConfig;
use super::state::{self, ExitInfo, RunState};
use super::{CGROUP_FILE, CONFIG_FILE, ContainerError, signal_from_name};
use crate::cgroup::{Cgroup, HostFs, Layout};
use crate::idmap::IdMap;

/// How long removal waits for killed processes to drain.
const DRAIN: Duration = Duration::from_secs(5);

/// Where a container is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerState {
    /// Created, never started.
    Created,
    /// Its pid 1 runs (or has just exited and the shim is recording it).
    Running {
        /// Host pid of the container's pid 1.
        pid: u32,
    },
    /// Its pid 1 has exited.
    Exited(ExitInfo),
    /// Started, but the shim is gone without recording an exit (it was killed).
    Lost,
}

/// Containers under one root directory.
#[derive(Debug)]
pub struct Runtime {
    pub(super) root: PathBuf,
    shim: PathBuf,
    layout: Layout,
    /// One lock per container being started, so concurrent `start` calls for the
    /// same id start one shim. A std mutex: held only to look up the entry.
    starting: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

pub(super) fn io_err(
    op: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> ContainerError {
    let path = path.to_path_buf();
    move |source| ContainerError::Io { op, path, source }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ContainerError> + Send + 'static,
) -> Result<T, ContainerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ContainerError::Task(e.to_string()))?
}

impl Runtime {
    /// A runtime keeping its containers under `root/containers` and starting
    /// `shim` (the `rswarm-shim` binary) for each. Detects the cgroup layout.
    pub fn new(
        root: impl Into<PathBuf>,
        shim: impl Into<PathBuf>,
    ) -> Result<Runtime, ContainerError> {
        let (root, shim): (PathBuf, PathBuf) = (root.into(), shim.into());
        // The upper and work dirs go into overlay options, separated by ':' and ','.
        if root.to_string_lossy().contains([':', ',']) {
            return Err(ContainerError::InvalidConfig(format!(
                "runtime root {} contains ':' or ','",
                root.display()
            )));
        }
        if !shim.is_file() {
            return Err(io_err("find shim", &shim)(std::io::Error::from(
                std::io::ErrorKind::NotFound,
            )));
        }
        for d in ["containers", "volumes"] {
            let p = root.join(d);
            std::fs::create_dir_all(&p).map_err(io_err("create", &p))?;
        }
        super::trash::empty_trash(&root);
        let layout = Layout::detect(&HostFs)?;
        tracing::debug!(root = %root.display(), kind = ?layout.kind(), "container runtime ready");
        Ok(Runtime {
            root,
            shim,
            layout,
            starting: Mutex::new(HashMap::new()),
        })
    }

    /// `rswarm-shim` next to the running executable, the default shim location.
    pub fn default_shim_path() -> Result<PathBuf, ContainerError> {
        let exe = std::env::current_exe().map_err(io_err("locate", Path::new("/proc/self/exe")))?;
        Ok(exe.with_file_name("rswarm-shim"))
    }

    /// The cgroup layout in use.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The runtime's state directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The state directory of container `id`.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    /// Where container `id`'s log files are (`container.log`, `.1`, ...).
    pub fn log_dir(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("logs")
    }

    /// The directory of named volume `name` (created if missing), to bind-mount.
    pub fn volume_dir(&self, name: &str) -> Result<PathBuf, ContainerError> {
        self.volume_dir_for(name, None)
    }

    /// Like [`Runtime::volume_dir`], for a container with the user namespace
    /// mapping `id_map`: a volume it creates belongs to its root. An existing
    /// volume keeps its owner.
    pub fn volume_dir_for(
        &self,
        name: &str,
        id_map: Option<&IdMap>,
    ) -> Result<PathBuf, ContainerError> {
        super::config::validate_id(name).map_err(ContainerError::InvalidConfig)?;
        let volumes = self.root.join("volumes");
        std::fs::create_dir_all(&volumes).map_err(io_err("create", &volumes))?;
        let p = volumes.join(name);
        match std::fs::create_dir(&p) {
            Ok(()) => {
                if let Some(map) = id_map {
                    chown_to_root_of(map, &p)?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("create", &p)(e)),
        }
        Ok(p)
    }

    fn dir_checked(&self, id: &str) -> Result<PathBuf, ContainerError> {
        super::config::validate_id(id).map_err(ContainerError::InvalidConfig)?;
        Ok(self.container_dir(id))
    }

    fn config(&self, id: &str) -> Result<ContainerConfig, ContainerError> {
        let path = self.dir_checked(id)?.join(CONFIG_FILE);
        state::read_json(&path)
            .map_err(io_err("read", &path))?
            .ok_or_else(|| ContainerError::NotFound { id: id.to_string() })
    }

    /// Creates container `config.id`: its directories, `config.json`, the
    /// `/etc` files and its cgroup with limits. Nothing runs yet. Creating again
    /// with the same config succeeds; with another config it is an error.
    pub async fn create(&self, config: &ContainerConfig) -> Result<(), ContainerError> {
        config.validate().map_err(ContainerError::InvalidConfig)?;
        let dir = self.container_dir(&config.id);
        let (config, layout) = (config.clone(), self.layout.clone());
        blocking(move || create_blocking(&dir, &config, &layout)).await
    }

    /// Starts container `id` and returns the host pid of its pid 1 once the
    /// command has been exec'd. Returns the recorded pid at once if it was
    /// started before (running or exited).
    pub async fn start(&self, id: &str) -> Result<u32, ContainerError> {
        let dir = self.dir_checked(id)?;
        let lock = self
            .starting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_string())
            .or_default()
            .clone();
        let result = {
            let _guard = lock.lock().await;
            self.start_locked(id, &dir).await
        };
        let mut starting = self.starting.lock().unwrap_or_else(|p| p.into_inner());
        // Ours and the map's: nobody else is waiting, so the entry can go.
        if Arc::strong_count(&lock) <= 2 {
            starting.remove(id);
        }
        result
    }

    async fn start_locked(&self, id: &str, dir: &Path) -> Result<u32, ContainerError> {
        if let Some(rs) = read_state(dir)? {
            return Ok(rs.pid);
        }
        if !dir.join(CONFIG_FILE).exists() {
            return Err(ContainerError::NotFound { id: id.to_string() });
        }
        let shim_log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(dir.join("shim.log"))
            .map_err(io_err("open", &dir.join("shim.log")))?;
        let mut child = tokio::process::Command::new(&self.shim)
            .arg("run")
            .arg(dir)
            // Not the daemon's cwd: the shim may outlive it by a long time.
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(shim_log)
            .spawn()
            .map_err(io_err("spawn", &self.shim))?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            // A read error reads as "no report", handled below like EOF.
            let _ = BufReader::new(out).read_line(&mut line).await;
        }
        // The shim is our child until it exits: reap it in the background. `wait`
        // watches it through a pidfd, which works for re-adopted shims as well.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        let line = line.trim();
        if let Some(pid) = line.strip_prefix("started ").and_then(|p| p.parse().ok()) {
            tracing::debug!(container = id, pid, "container started");
            return Ok(pid);
        }
        let message = match line.strip_prefix("error: ") {
            Some(m) => m.to_string(),
            None => format!(
                "the shim exited without reporting (see {})",
                dir.join("shim.log").display()
            ),
        };
        Err(ContainerError::Start {
            id: id.to_string(),
            message,
        })
    }

    /// What state container `id` is in.
    pub async fn state(&self, id: &str) -> Result<ContainerState, ContainerError> {
        let dir = self.dir_checked(id)?;
        if !dir.join(CONFIG_FILE).exists() {
            return Err(ContainerError::NotFound { id: id.to_string() });
        }
        if let Some(exit) = read_exit(&dir)? {
            return Ok(ContainerState::Exited(exit));
        }
        let Some(rs) = read_state(&dir)? else {
            return Ok(ContainerState::Created);
        };
        if state::is_same_process(rs.pid, rs.pid_start)
            || state::is_same_process(rs.shim_pid, rs.shim_start)
        {
            return Ok(ContainerState::Running { pid: rs.pid });
        }
        // The shim may have written exit.json between the two reads.
        Ok(match read_exit(&dir)? {
            Some(exit) => ContainerState::Exited(exit),
            None => ContainerState::Lost,
        })
    }

    /// Waits until container `id`'s pid 1 has exited and returns how. Works for
    /// containers started by an earlier runtime on the same root. Dropping the
    /// future stops the watching, never the container.
    pub async fn wait(&self, id: &str) -> Result<ExitInfo, ContainerError> {
        let dir = self.dir_checked(id)?;
        loop {
            if let Some(exit) = read_exit(&dir)? {
                return Ok(exit);
            }
            let Some(rs) = read_state(&dir)? else {
                return Err(ContainerError::NotStarted { id: id.to_string() });
            };
            if !state::is_same_process(rs.shim_pid, rs.shim_start) {
                return match read_exit(&dir)? {
                    Some(exit) => Ok(exit),
                    None => Err(ContainerError::ShimLost { id: id.to_string() }),
                };
            }
            let Some(pid) = rustix::process::Pid::from_raw(rs.shim_pid as i32) else {
                return Err(ContainerError::ShimLost { id: id.to_string() });
            };
            let pidfd = match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
            {
                Ok(fd) => fd,
                // Gone between the check and the open: look again.
                Err(rustix::io::Errno::SRCH) => continue,
                Err(e) => return Err(io_err("pidfd_open", &dir)(e.into())),
            };
            // The pid could have been reused between the check and the open.
            if !state::is_same_process(rs.shim_pid, rs.shim_start) {
                continue;
            }
            // Deprecated because a generic `T: AsRawFd` may change its fd while
            // registered; an OwnedFd owned by the AsyncFd cannot, so this use is
            // sound, and the replacement constructor is `unsafe` (forbidden here).
            #[allow(deprecated)]
            let afd = AsyncFd::with_interest(pidfd, tokio::io::Interest::READABLE)
                .map_err(io_err("watch shim", &dir))?;
            // Readable once the shim has exited; it writes exit.json before.
            let _ = afd.readable().await.map_err(io_err("watch shim", &dir))?;
        }
    }

    /// Sends `signal` to container `id`'s pid 1. A container that is not running
    /// is left alone (success).
    pub async fn kill(&self, id: &str, signal: Signal) -> Result<(), ContainerError> {
        let dir = self.dir_checked(id)?;
        let Some(rs) = read_state(&dir)? else {
            return Ok(());
        };
        if read_exit(&dir)?.is_none() && state::is_same_process(rs.pid, rs.pid_start) {
            let pid = nix::unistd::Pid::from_raw(rs.pid as i32);
            match nix::sys::signal::kill(pid, signal) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                Err(e) => return Err(io_err("kill", &dir)(e.into())),
            }
        }
        Ok(())
    }

    /// Stops container `id`: its stop signal, up to `grace` to exit, then SIGKILL.
    /// Returns how it exited (at once if it already had); a container that was
    /// never started gives [`ContainerError::NotStarted`].
    ///
    /// As in Docker, a pid 1 without a handler for the stop signal ignores it (the
    /// kernel protects a namespace's init), so such a process waits out the grace.
    pub async fn stop(&self, id: &str, grace: Duration) -> Result<ExitInfo, ContainerError> {
        let config = self.config(id)?;
        let signal =
            signal_from_name(&config.stop_signal).map_err(ContainerError::InvalidConfig)?;
        self.kill(id, signal).await?;
        if let Ok(done) = tokio::time::timeout(grace, self.wait(id)).await {
            return done;
        }
        tracing::debug!(container = id, ?grace, "grace period over, killing");
        self.kill(id, Signal::SIGKILL).await?;
        match tokio::time::timeout(DRAIN, self.wait(id)).await {
            Ok(done) => done,
            Err(_) => Err(ContainerError::Timeout {
                id: id.to_string(),
                what: "exit after SIGKILL",
            }),
        }
    }

    /// Removes container `id` completely: kills whatever still runs in its cgroup,
    /// removes the cgroup and the state directory (upper layer and logs included).
    /// Removing a container that does not exist succeeds.
    pub async fn remove(&self, id: &str) -> Result<(), ContainerError> {
        let dir = self.dir_checked(id)?;
        let cgroup = Cgroup::for_container(&self.layout, id);
        let running = match read_exit(&dir)? {
            Some(_) => None,
            None => read_state(&dir)?,
        };
        if running.is_some() {
            self.kill(id, Signal::SIGKILL).await?;
        }
        let cg = cgroup.clone();
        blocking(move || {
            // Kill anything left; the shim lives outside the cgroup and is not hit.
            let _ = cg.kill_all(&HostFs, DRAIN);
            Ok(())
        })
        .await?;
        // The shim records the exit and leaves; one stuck past the deadline is
        // killed so it cannot write into a directory being removed.
        if let Some(rs) = running
            && tokio::time::timeout(DRAIN, self.wait(id)).await.is_err()
            && state::is_same_process(rs.shim_pid, rs.shim_start)
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(rs.shim_pid as i32),
                Signal::SIGKILL,
            );
        }
        let trash = self.root.join(super::trash::TRASH);
        blocking(move || {
            cgroup.remove(&HostFs, DRAIN)?;
            super::trash::discard(&dir, &trash)
        })
        .await?;
        tracing::debug!(container = id, "container removed");
        Ok(())
    }

    /// The ids of every container under the root.
    pub async fn list(&self) -> Result<Vec<String>, ContainerError> {
        let dir = self.root.join("containers");
        let mut ids: Vec<String> = std::fs::read_dir(&dir)
            .map_err(io_err("list", &dir))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|id| super::config::validate_id(id).is_ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Removes every container not in `keep` (also half-created ones, whose
    /// directory exists without `config.json`), as left by tasks that vanished
    /// while the daemon was down. Returns the removed container ids.
    ///
    /// Only containers under this runtime's root are touched: several nodes may
    /// share a host (tests, benchmarks), and their cgroups sit side by side.
    pub async fn cleanup_orphans(
        &self,
        keep: &HashSet<String>,
    ) -> Result<Vec<String>, ContainerError> {
        let mut removed = Vec::new();
        for id in self.list().await? {
            if !keep.contains(&id) {
                self.remove(&id).await?;
                removed.push(id);
            }
        }
        Ok(removed)
    }
}

/// Gives `path` to the root of a container mapped by `map`.
fn chown_to_root_of(map: &IdMap, path: &Path) -> Result<(), ContainerError> {
    nix::unistd::chown(
        path,
        Some(nix::unistd::Uid::from_raw(map.host_uid)),
        Some(nix::unistd::Gid::from_raw(map.host_gid)),
    )
    .map_err(|e| io_err("chown", path)(e.into()))
}

fn read_state(dir: &Path) -> Result<Option<RunState>, ContainerError> {
    let path = dir.join(state::STATE_FILE);
    state::read_json(&path).map_err(io_err("read", &path))
}

fn read_exit(dir: &Path) -> Result<Option<ExitInfo>, ContainerError> {
    let path = dir.join(state::EXIT_FILE);
    state::read_json(&path).map_err(io_err("read", &path))
}

fn create_blocking(
    dir: &Path,
    config: &ContainerConfig,
    layout: &Layout,
) -> Result<(), ContainerError> {
    let config_path = dir.join(CONFIG_FILE);
    if let Some(existing) =
        state::read_json::<ContainerConfig>(&config_path).map_err(io_err("read", &config_path))?
    {
        return if &existing == config {
            Ok(())
        } else {
            Err(ContainerError::AlreadyExists {
                id: config.id.clone(),
            })
        };
    }
    for d in ["upper", "work", "rootfs", "logs", "etc"] {
        let p = dir.join(d);
        std::fs::create_dir_all(&p).map_err(io_err("create", &p))?;
    }
    let etc = dir.join("etc");
    let mut owned_by_container_root = vec![dir.join("upper")];
    for (name, text) in [
        ("hosts", config.etc_hosts.clone()),
        ("hostname", format!("{}\n", config.hostname)),
        ("resolv.conf", config.resolv_conf.clone()),
    ] {
        let p = etc.join(name);
        std::fs::write(&p, text).map_err(io_err("write", &p))?;
        owned_by_container_root.push(p);
    }
    // The upper directory's owner is the owner of the container's `/`.
    if let Some(map) = &config.id_map {
        for p in &owned_by_container_root {
            chown_to_root_of(map, p)?;
        }
    }
    let cgroup = Cgroup::create(&HostFs, layout, &config.id, &config.limits)?;
    let cg_path = dir.join(CGROUP_FILE);
    state::write_atomic(&cg_path, &cgroup).map_err(io_err("write", &cg_path))?;
    // config.json last: its presence marks a complete create.
    state::write_atomic(&config_path, config).map_err(io_err("write", &config_path))
}
