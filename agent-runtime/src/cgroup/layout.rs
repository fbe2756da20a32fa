//! Which cgroup hierarchy carries each controller on this host.
//!
//! Read from `/proc/self/mountinfo`: a v1 hierarchy (`cgroup` mount) names its
//! controllers in the super options; a `cgroup2` mount lists the controllers it
//! can delegate in `cgroup.controllers`. On a hybrid host the v1 hierarchies own the
//! controllers and the cgroup2 mount has none of ours, so v1 wins whenever a
//! controller is mounted there.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{CgroupError, CgroupFs};

/// A cgroup API version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Version {
    /// The legacy per-controller hierarchies.
    V1,
    /// The unified hierarchy.
    V2,
}

/// The kind of host, for logs and reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutKind {
    /// Every controller we use is on the unified hierarchy.
    Unified,
    /// Every controller we use is on a v1 hierarchy.
    Legacy,
    /// Controllers on v1 hierarchies next to a cgroup2 mount.
    Hybrid,
}

/// One mounted hierarchy holding at least one controller we use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hierarchy {
    /// Where the hierarchy is mounted, e.g. `/sys/fs/cgroup/memory`.
    pub mount: PathBuf,
    /// Its API version.
    pub version: Version,
}

/// The controllers the runtime limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Controller {
    /// `memory`: memory limit and OOM kills.
    Memory,
    /// `cpu`: CFS bandwidth (quota/period).
    Cpu,
    /// `pids`: process count limit.
    Pids,
}

impl Controller {
    /// All controllers the runtime uses.
    pub const ALL: [Controller; 3] = [Controller::Memory, Controller::Cpu, Controller::Pids];

    /// The kernel's name for the controller.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Pids => "pids",
        }
    }
}

/// Where each controller lives on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The hierarchy of `memory`, if the host has the controller.
    pub memory: Option<Hierarchy>,
    /// The hierarchy of `cpu`, if the host has the controller.
    pub cpu: Option<Hierarchy>,
    /// The hierarchy of `pids`, if the host has the controller.
    pub pids: Option<Hierarchy>,
    /// The cgroup2 mount, even when it carries none of our controllers (processes
    /// are placed there too so the unified tree sees the container as a unit).
    pub unified: Option<PathBuf>,
}

impl Layout {
    /// Reads the host layout from `/proc/self/mountinfo`.
    pub fn detect(fs: &dyn CgroupFs) -> Result<Layout, CgroupError> {
        let path = Path::new("/proc/self/mountinfo");
        let text = fs.read(path).map_err(|source| CgroupError::Io {
            op: "read",
            path: path.to_path_buf(),
            source,
        })?;
        Layout::from_mountinfo(&text, fs)
    }

    /// Builds the layout from mountinfo text; `fs` reads the cgroup2 controllers.
    pub fn from_mountinfo(text: &str, fs: &dyn CgroupFs) -> Result<Layout, CgroupError> {
        let mut layout = Layout {
            memory: None,
            cpu: None,
            pids: None,
            unified: None,
        };
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let Some(mount) = left.split(' ').nth(4) else {
                continue;
            };
            let mut right = right.split(' ');
            let (Some(fstype), Some(_source), Some(opts)) =
                (right.next(), right.next(), right.next())
            else {
                continue;
            };
            let mount = PathBuf::from(mount);
            match fstype {
                "cgroup" => {
                    for c in Controller::ALL {
                        if opts.split(',').any(|o| o == c.name()) {
                            *layout.slot(c) = Some(Hierarchy {
                                mount: mount.clone(),
                                version: Version::V1,
                            });
                        }
                    }
                }
                "cgroup2" if layout.unified.is_none() => layout.unified = Some(mount),
                _ => {}
            }
        }
        if let Some(unified) = layout.unified.clone() {
            let path = unified.join("cgroup.controllers");
            let available = fs.read(&path).unwrap_or_default();
            for c in Controller::ALL {
                let slot = layout.slot(c);
                if slot.is_none() && available.split_whitespace().any(|a| a == c.name()) {
                    *slot = Some(Hierarchy {
                        mount: unified.clone(),
                        version: Version::V2,
                    });
                }
            }
        }
        if layout.hierarchies().is_empty() && layout.unified.is_none() {
            return Err(CgroupError::NoCgroups);
        }
        Ok(layout)
    }

    fn slot(&mut self, c: Controller) -> &mut Option<Hierarchy> {
        match c {
            Controller::Memory => &mut self.memory,
            Controller::Cpu => &mut self.cpu,
            Controller::Pids => &mut self.pids,
        }
    }

    /// The hierarchy of controller `c`, if the host has it.
    pub fn get(&self, c: Controller) -> Option<&Hierarchy> {
        match c {
            Controller::Memory => self.memory.as_ref(),
            Controller::Cpu => self.cpu.as_ref(),
            Controller::Pids => self.pids.as_ref(),
        }
    }

    /// Every distinct hierarchy a container gets a cgroup in: those of our
    /// controllers plus the cgroup2 mount.
    pub fn hierarchies(&self) -> Vec<Hierarchy> {
        let mut out: Vec<Hierarchy> = Vec::new();
        let unified = self.unified.iter().map(|m| Hierarchy {
            mount: m.clone(),
            version: Version::V2,
        });
        for h in Controller::ALL
            .iter()
            .filter_map(|c| self.get(*c).cloned())
            .chain(unified)
        {
            if !out.iter().any(|o| o.mount == h.mount) {
                out.push(h);
            }
        }
        out
    }

    /// What kind of host this is.
    pub fn kind(&self) -> LayoutKind {
        let v1 = Controller::ALL
            .iter()
            .any(|c| self.get(*c).is_some_and(|h| h.version == Version::V1));
        match (v1, self.unified.is_some()) {
            (true, true) => LayoutKind::Hybrid,
            (true, false) => LayoutKind::Legacy,
            (false, _) => LayoutKind::Unified,
        }
    }
}
