//! Per-container cgroups on cgroup v1, v2 and hybrid hosts.
//!
//! Each container gets `rswarm/<id>` in every hierarchy of [`Layout::hierarchies`].
//! All filesystem access goes through [`CgroupFs`], so the intended writes for each
//! layout are unit-tested with a recording fake; [`HostFs`] is the real one.

mod layout;
#[cfg(test)]
mod tests;

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use layout::{Controller, Hierarchy, Layout, LayoutKind, Version};

/// The directory under each hierarchy's root that holds the containers' cgroups.
pub const PARENT: &str = "rswarm";

/// CFS period used for CPU limits, in microseconds (Docker's default).
pub const CFS_PERIOD_US: u64 = 100_000;

/// Why a cgroup operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The host mounts no cgroup hierarchy at all.
    #[error("no cgroup hierarchy is mounted (checked /proc/self/mountinfo)")]
    NoCgroups,
    /// A filesystem operation on a cgroup file or directory failed.
    #[error("cgroup {op} {path}: {source}")]
    Io {
        /// What was attempted (mkdir, write, read, rmdir).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A limit was asked for whose controller the host does not have.
    #[error("the host has no {0} cgroup controller, so the {0} limit cannot be applied")]
    MissingController(&'static str),
    /// Processes were still in the cgroup after the deadline.
    #[error("cgroup {path} still busy after {waited:?}")]
    Busy {
        /// The cgroup directory.
        path: PathBuf,
        /// How long removal was retried.
        waited: Duration,
    },
}

/// The filesystem operations cgroups need; a seam for tests.
pub trait CgroupFs: Send + Sync {
    /// Creates a directory (and missing parents); succeeds if it exists.
    fn mkdir(&self, path: &Path) -> io::Result<()>;
    /// Writes `value` to a cgroup control file.
    fn write(&self, path: &Path, value: &str) -> io::Result<()>;
    /// Reads a cgroup control file.
    fn read(&self, path: &Path) -> io::Result<String>;
    /// Removes an empty cgroup directory.
    fn rmdir(&self, path: &Path) -> io::Result<()>;
    /// Whether a control file exists (optional files such as `memory.memsw.*`).
    fn exists(&self, path: &Path) -> bool;
}

/// The real cgroup filesystem.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostFs;

impl CgroupFs for HostFs {
    fn mkdir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }
    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        // Control files take one value per write(2): no truncation or buffering.
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        f.write_all(value.as_bytes())
    }
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }
    fn rmdir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

/// Resource limits of one container; `None` means unlimited.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Memory limit in bytes (swap is not allowed on top of it).
    pub memory_bytes: Option<u64>,
    /// CPU limit in billionths of a CPU (Docker's `NanoCPUs`).
    pub nano_cpus: Option<u64>,
    /// Maximum number of processes (and threads).
    pub pids: Option<u64>,
}

/// One container's cgroup: a directory in each hierarchy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroup {
    /// The container's directory in each hierarchy, with that hierarchy's version.
    pub dirs: Vec<CgroupDir>,
    /// The directory carrying `memory`, when the host has it.
    pub memory: Option<CgroupDir>,
}

/// A cgroup directory and the API version of its hierarchy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupDir {
    /// The directory, e.g. `/sys/fs/cgroup/memory/rswarm/<id>`.
    pub path: PathBuf,
    /// The hierarchy's version.
    pub version: Version,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CgroupError + 'a {
    move |source| CgroupError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn write(fs: &dyn CgroupFs, path: &Path, value: &str) -> Result<(), CgroupError> {
    fs.write(path, value).map_err(io_err("write", path))
}

impl Cgroup {
    /// The cgroup of container `id` under `layout` (paths only; nothing is touched).
    pub fn for_container(layout: &Layout, id: &str) -> Cgroup {
        let dir = |h: &Hierarchy| CgroupDir {
            path: h.mount.join(PARENT).join(id),
            version: h.version,
        };
        Cgroup {
            dirs: layout.hierarchies().iter().map(dir).collect(),
            memory: layout.memory.as_ref().map(dir),
        }
    }

    /// The directory of controller `c`.
    fn dir_of(layout: &Layout, id: &str, c: Controller) -> Option<PathBuf> {
        layout.get(c).map(|h| h.mount.join(PARENT).join(id))
    }

    /// Creates the cgroup of container `id` and applies `limits`.
    ///
    /// On v2 the controllers are first enabled in the parents' `subtree_control`,
    /// because a child only gets the control files its parent delegates.
    pub fn create(
        fs: &dyn CgroupFs,
        layout: &Layout,
        id: &str,
        limits: &Limits,
    ) -> Result<Cgroup, CgroupError> {
        let cg = Cgroup::for_container(layout, id);
        for h in layout.hierarchies() {
            if h.version == Version::V2 {
                let enable: Vec<String> = Controller::ALL
                    .iter()
                    .filter(|c| layout.get(**c).is_some_and(|x| x.mount == h.mount))
                    .map(|c| format!("+{}", c.name()))
                    .collect();
                let parent = h.mount.join(PARENT);
                fs.mkdir(&parent).map_err(io_err("mkdir", &parent))?;
                if !enable.is_empty() {
                    let line = enable.join(" ");
                    write(fs, &h.mount.join("cgroup.subtree_control"), &line)?;
                    write(fs, &parent.join("cgroup.subtree_control"), &line)?;
                }
            }
        }
        for d in &cg.dirs {
            fs.mkdir(&d.path).map_err(io_err("mkdir", &d.path))?;
        }
        if let Err(err) = cg.apply_limits(fs, layout, id, limits) {
            // Best effort: the cgroup is empty, so removal cannot be busy.
            let _ = cg.remove(fs, Duration::ZERO);
            return Err(err);
        }
        Ok(cg)
    }

    fn apply_limits(
        &self,
        fs: &dyn CgroupFs,
        layout: &Layout,
        id: &str,
        limits: &Limits,
    ) -> Result<(), CgroupError> {
        let need = |c: Controller| {
            Cgroup::dir_of(layout, id, c)
                .map(|d| (d, layout.get(c).map(|h| h.version)))
                .ok_or(CgroupError::MissingController(c.name()))
        };
        if let Some(bytes) = limits.memory_bytes {
            let (dir, v) = need(Controller::Memory)?;
            if v == Some(Version::V1) {
                write(fs, &dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
                // memsw is memory+swap; setting it equal forbids swap. Only present
                // when the kernel accounts swap.
                let memsw = dir.join("memory.memsw.limit_in_bytes");
                if fs.exists(&memsw) {
                    write(fs, &memsw, &bytes.to_string())?;
                }
            } else {
                write(fs, &dir.join("memory.max"), &bytes.to_string())?;
                let swap = dir.join("memory.swap.max");
                if fs.exists(&swap) {
                    write(fs, &swap, "0")?;
                }
            }
        }
        if let Some(nano) = limits.nano_cpus {
            let (dir, v) = need(Controller::Cpu)?;
            let quota = (nano.saturating_mul(CFS_PERIOD_US) / 1_000_000_000).max(1000);
            if v == Some(Version::V1) {
                write(
                    fs,
                    &dir.join("cpu.cfs_period_us"),
                    &CFS_PERIOD_US.to_string(),
                )?;
                write(fs, &dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
            } else {
                write(
                    fs,
                    &dir.join("cpu.max"),
                    &format!("{quota} {CFS_PERIOD_US}"),
                )?;
            }
        }
        if let Some(pids) = limits.pids {
            let (dir, _) = need(Controller::Pids)?;
            write(fs, &dir.join("pids.max"), &pids.to_string())?;
        }
        Ok(())
    }

    /// Moves the calling process into every directory of the cgroup.
    ///
    /// Writes `0` ("the writer") rather than a pid: the caller may sit in a new pid
    /// namespace where its own pid number means another process on the host.
    pub fn join_self(&self, fs: &dyn CgroupFs) -> Result<(), CgroupError> {
        for d in &self.dirs {
            write(fs, &d.path.join("cgroup.procs"), "0")?;
        }
        Ok(())
    }

    /// Moves process `pid` (a host pid) into every directory of the cgroup.
    pub fn add_process(&self, fs: &dyn CgroupFs, pid: u32) -> Result<(), CgroupError> {
        for d in &self.dirs {
            write(fs, &d.path.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// How many times the kernel's OOM killer killed a process of this cgroup.
    pub fn oom_kills(&self, fs: &dyn CgroupFs) -> Result<u64, CgroupError> {
        let Some(mem) = &self.memory else {
            return Ok(0);
        };
        let file = match mem.version {
            Version::V1 => mem.path.join("memory.oom_control"),
            Version::V2 => mem.path.join("memory.events"),
        };
        let text = fs.read(&file).map_err(io_err("read", &file))?;
        Ok(text
            .lines()
            .filter_map(|l| l.split_once(' '))
            .find(|(k, _)| *k == "oom_kill")
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0))
    }

    /// The host pids of every process in the cgroup (union over hierarchies; a
    /// missing directory counts as empty).
    pub fn pids(&self, fs: &dyn CgroupFs) -> Vec<u32> {
        let mut pids: Vec<u32> = Vec::new();
        for d in &self.dirs {
            if let Ok(text) = fs.read(&d.path.join("cgroup.procs")) {
                pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
            }
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Sends SIGKILL to every process of the cgroup until it is empty or `timeout`
    /// passes. Uses `cgroup.kill` where the kernel has it (v2, 5.14+), which also
    /// catches processes forked while the kill runs.
    pub fn kill_all(&self, fs: &dyn CgroupFs, timeout: Duration) -> Result<(), CgroupError> {
        let start = Instant::now();
        for d in self.dirs.iter().filter(|d| d.version == Version::V2) {
            let kill = d.path.join("cgroup.kill");
            if fs.exists(&kill) {
                write(fs, &kill, "1")?;
            }
        }
        loop {
            let pids = self.pids(fs);
            if pids.is_empty() {
                return Ok(());
            }
            for pid in &pids {
                if let Ok(pid) = i32::try_from(*pid) {
                    // ESRCH: already gone, which is what we want.
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            if start.elapsed() >= timeout {
                let path = self
                    .dirs
                    .first()
                    .map(|d| d.path.clone())
                    .unwrap_or_default();
                return Err(CgroupError::Busy {
                    path,
                    waited: start.elapsed(),
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Removes every directory of the cgroup, retrying for up to `timeout` while
    /// killed processes drain (rmdir fails with EBUSY until they are reaped).
    /// Directories already gone count as removed.
    pub fn remove(&self, fs: &dyn CgroupFs, timeout: Duration) -> Result<(), CgroupError> {
        let start = Instant::now();
        for d in &self.dirs {
            loop {
                match fs.rmdir(&d.path) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) => {
                        if start.elapsed() >= timeout {
                            return Err(CgroupError::Busy {
                                path: d.path.clone(),
                                waited: start.elapsed(),
                            });
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(source) => {
                        return Err(CgroupError::Io {
                            op: "rmdir",
                            path: d.path.clone(),
                            source,
                        });
                    }
                }
            }
        }
        Ok(())
    }
}
