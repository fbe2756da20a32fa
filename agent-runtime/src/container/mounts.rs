//! The container's mounts: a pure plan, executed through the [`Mounter`] seam.
//!
//! Everything here runs in the container's own mount namespace (stage 2), so the
//! overlay and every other mount vanish with the namespace: nothing is mounted on
//! the host.

use std::path::{Component, Path, PathBuf};

use nix::mount::MsFlags;

use super::config::{ContainerConfig, MountSpec, NetworkMode};

/// Host device nodes bind-mounted into the container's `/dev`.
pub const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// `/proc` entries made read-only (Docker's list).
const PROC_READONLY: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// `/proc` files hidden behind `/dev/null` (Docker's list, files only).
const PROC_MASKED: [&str; 6] = [
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
];

/// One step of the mount plan. Targets are absolute paths inside the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountOp {
    /// Make every mount in the namespace private, so nothing propagates to the host.
    MakeRootPrivate,
    /// Mount the overlay root filesystem on the rootfs directory.
    Overlay {
        /// Layers, top-most first.
        lower: Vec<PathBuf>,
        /// The container's writable layer.
        upper: PathBuf,
        /// Overlayfs' scratch directory (same filesystem as `upper`).
        work: PathBuf,
    },
    /// Mount a kernel filesystem (proc, sysfs, tmpfs, devpts, mqueue).
    Fs {
        /// The filesystem type, also used as the source name.
        fstype: &'static str,
        /// Where it goes.
        target: PathBuf,
        /// Mount flags.
        flags: MsFlags,
        /// Filesystem options.
        data: String,
    },
    /// Bind-mount a host path, then remount read-only when asked.
    Bind {
        /// The host path.
        source: PathBuf,
        /// Where it goes.
        target: PathBuf,
        /// Remount read-only.
        readonly: bool,
        /// Skip silently when the target does not exist (instead of creating it).
        optional: bool,
    },
    /// Create a symlink `target -> to`.
    Symlink {
        /// The link's path.
        target: PathBuf,
        /// What it points to.
        to: &'static str,
    },
    /// Remount the root filesystem read-only (last, after everything mounted on it).
    RootReadonly,
}

/// The whole mount plan of a container whose state directory is `dir`.
///
/// With a user namespace mapping the tmpfs mounts belong to the container's root
/// (they are mounted before the user namespace exists, see [`split_for_userns`]).
pub fn plan(config: &ContainerConfig, dir: &Path) -> Vec<MountOp> {
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let owner = match &config.id_map {
        Some(map) => format!(",uid={},gid={}", map.host_uid, map.host_gid),
        None => String::new(),
    };
    let fs = |fstype, target: &str, flags, data: &str| MountOp::Fs {
        fstype,
        target: PathBuf::from(target),
        flags,
        data: data.to_string(),
    };
    let mut ops = vec![
        MountOp::MakeRootPrivate,
        MountOp::Overlay {
            lower: config.lower_dirs.clone(),
            upper: dir.join("upper"),
            work: dir.join("work"),
        },
        fs("proc", "/proc", nosuid_nodev_noexec, ""),
        fs(
            "sysfs",
            "/sys",
            nosuid_nodev_noexec | MsFlags::MS_RDONLY,
            "",
        ),
        fs(
            "tmpfs",
            "/dev",
            MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
            &format!("mode=755,size=65536k{owner}"),
        ),
    ];
    ops.extend(DEVICES.iter().map(|d| MountOp::Bind {
        source: Path::new("/dev").join(d),
        target: Path::new("/dev").join(d),
        readonly: false,
        optional: false,
    }));
    ops.push(fs(
        "devpts",
        "/dev/pts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620",
    ));
    ops.push(fs(
        "tmpfs",
        "/dev/shm",
        nosuid_nodev_noexec,
        &format!("mode=1777,size=65536k{owner}"),
    ));
    ops.push(fs("mqueue", "/dev/mqueue", nosuid_nodev_noexec, ""));
    for (target, to) in [
        ("/dev/ptmx", "pts/ptmx"),
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        ops.push(MountOp::Symlink {
            target: PathBuf::from(target),
            to,
        });
    }
    for p in PROC_READONLY {
        ops.push(MountOp::Bind {
            source: PathBuf::from(p),
            target: PathBuf::from(p),
            readonly: true,
            optional: true,
        });
    }
    for p in PROC_MASKED {
        ops.push(MountOp::Bind {
            source: PathBuf::from("/dev/null"),
            target: PathBuf::from(p),
            readonly: true,
            optional: true,
        });
    }
    for name in ["hosts", "hostname", "resolv.conf"] {
        ops.push(MountOp::Bind {
            source: dir.join("etc").join(name),
            target: Path::new("/etc").join(name),
            readonly: true,
            optional: false,
        });
    }
    for m in &config.mounts {
        ops.push(match m {
            MountSpec::Bind {
                source,
                target,
                readonly,
            } => MountOp::Bind {
                source: source.clone(),
                target: target.clone(),
                readonly: *readonly,
                optional: false,
            },
            MountSpec::Tmpfs { target, size_bytes } => MountOp::Fs {
                fstype: "tmpfs",
                target: target.clone(),
                flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                data: match size_bytes {
                    Some(size) => format!("mode=1777,size={size}{owner}"),
                    None => format!("mode=1777{owner}"),
                },
            },
        });
    }
    if config.readonly_rootfs {
        ops.push(MountOp::RootReadonly);
    }
    ops
}

/// Splits `ops` for a container with its own user namespace into what is mounted
/// before the user namespace exists (as host root, which can reach the host paths
/// bound in and whose overlay keeps working with the layers' trusted xattrs) and
/// what needs the container's namespaces owned by the user namespace: sysfs (of
/// the new network namespace), mqueue (of the new IPC namespace) and the read-only
/// root. Order is kept within each part.
///
/// A joined network namespace is not owned by the container's user namespace, so
/// its sysfs is mounted before, like the rest.
pub fn split_for_userns(ops: Vec<MountOp>, network: &NetworkMode) -> (Vec<MountOp>, Vec<MountOp>) {
    let after = |op: &MountOp| match op {
        MountOp::Fs { fstype, .. } => {
            *fstype == "mqueue" || (*fstype == "sysfs" && *network == NetworkMode::Isolated)
        }
        MountOp::RootReadonly => true,
        _ => false,
    };
    let (post, pre): (Vec<MountOp>, Vec<MountOp>) = ops.into_iter().partition(after);
    (pre, post)
}

/// The privileged filesystem calls the plan needs.
pub trait Mounter {
    /// `mount(2)`.
    fn mount(
        &mut self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()>;
    /// Whether `path` exists (without following a final symlink).
    fn exists(&mut self, path: &Path) -> bool;
    /// Whether `path` is a directory (following symlinks).
    fn is_dir(&mut self, path: &Path) -> bool;
    /// Creates a directory and its parents.
    fn create_dir(&mut self, path: &Path) -> std::io::Result<()>;
    /// Creates an empty file (and its parents) to bind a file onto.
    fn create_file(&mut self, path: &Path) -> std::io::Result<()>;
    /// Creates a symlink at `path` pointing to `to`.
    fn symlink(&mut self, to: &str, path: &Path) -> std::io::Result<()>;
    /// Resolves `path` (absolute inside the container) under `root`, following
    /// symlinks as if `root` were `/`, so an image cannot point a mount outside.
    fn resolve(&mut self, root: &Path, path: &Path) -> std::io::Result<PathBuf>;
    /// The flags of the mount at `path` a bind remount must repeat (nosuid,
    /// nodev, noexec, atime): a remount dropping them clears them, which a user
    /// namespace may not do to mounts it inherited.
    fn kept_flags(&mut self, path: &Path) -> MsFlags;
}

/// Why a mount step failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// `mount(2)` failed.
    #[error("mount {what} on {target}: {source}")]
    Mount {
        /// What was mounted.
        what: String,
        /// Where.
        target: PathBuf,
        /// The errno.
        source: nix::Error,
    },
    /// Preparing a mount point or symlink failed.
    #[error("prepare {path}: {source}")]
    Prepare {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Runs `ops` with the container's root filesystem at `rootfs` (a host path).
pub fn execute(ops: &[MountOp], rootfs: &Path, m: &mut dyn Mounter) -> Result<(), MountError> {
    let prep = |path: &Path| {
        let path = path.to_path_buf();
        move |source| MountError::Prepare { path, source }
    };
    let mnt = |what: &str, target: &Path| {
        let (what, target) = (what.to_string(), target.to_path_buf());
        move |source| MountError::Mount {
            what,
            target,
            source,
        }
    };
    for op in ops {
        match op {
            MountOp::MakeRootPrivate => m
                .mount(
                    None,
                    Path::new("/"),
                    None,
                    MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                    None,
                )
                .map_err(mnt("private propagation", Path::new("/")))?,
            MountOp::Overlay { lower, upper, work } => {
                let lower: Vec<String> = lower.iter().map(|p| p.display().to_string()).collect();
                let data = format!(
                    "lowerdir={},upperdir={},workdir={}",
                    lower.join(":"),
                    upper.display(),
                    work.display()
                );
                m.mount(
                    Some(Path::new("overlay")),
                    rootfs,
                    Some("overlay"),
                    MsFlags::empty(),
                    Some(&data),
                )
                .map_err(mnt("overlay", rootfs))?;
            }
            MountOp::Fs {
                fstype,
                target,
                flags,
                data,
            } => {
                let at = m.resolve(rootfs, target).map_err(prep(target))?;
                m.create_dir(&at).map_err(prep(&at))?;
                let data = (!data.is_empty()).then_some(data.as_str());
                m.mount(Some(Path::new(fstype)), &at, Some(fstype), *flags, data)
                    .map_err(mnt(fstype, &at))?;
            }
            MountOp::Bind {
                source,
                target,
                readonly,
                optional,
            } => {
                // Binds whose source lies under /proc or /dev come from the
                // container's own fresh mounts, so the source resolves in the rootfs.
                let from_container = source.starts_with("/proc");
                let source = if from_container {
                    m.resolve(rootfs, source).map_err(prep(source))?
                } else {
                    source.clone()
                };
                let at = m.resolve(rootfs, target).map_err(prep(target))?;
                if !m.exists(&at) {
                    if *optional {
                        continue;
                    }
                    if m.is_dir(&source) {
                        m.create_dir(&at).map_err(prep(&at))?;
                    } else {
                        m.create_file(&at).map_err(prep(&at))?;
                    }
                }
                let what = source.display().to_string();
                let flags = MsFlags::MS_BIND | MsFlags::MS_REC;
                m.mount(Some(&source), &at, None, flags, None)
                    .map_err(mnt(&what, &at))?;
                if *readonly {
                    let flags = MsFlags::MS_BIND
                        | MsFlags::MS_REMOUNT
                        | MsFlags::MS_RDONLY
                        | m.kept_flags(&at);
                    m.mount(None, &at, None, flags, None)
                        .map_err(mnt("read-only remount", &at))?;
                }
            }
            MountOp::Symlink { target, to } => {
                let at = m.resolve(rootfs, target).map_err(prep(target))?;
                m.symlink(to, &at).map_err(prep(&at))?;
            }
            MountOp::RootReadonly => {
                let flags = MsFlags::MS_BIND
                    | MsFlags::MS_REMOUNT
                    | MsFlags::MS_RDONLY
                    | m.kept_flags(rootfs);
                m.mount(None, rootfs, None, flags, None)
                    .map_err(mnt("read-only remount", rootfs))?;
            }
        }
    }
    Ok(())
}

/// Resolves `path` under `root` following symlinks as if `root` were `/`: `..` and
/// absolute link targets never leave `root`. Missing components are kept as they
/// are (they are created later).
pub fn secure_join(root: &Path, path: &Path) -> std::io::Result<PathBuf> {
    let mut resolved = PathBuf::new();
    let mut pending: Vec<std::ffi::OsString> = Vec::new();
    push_components(&mut pending, path);
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&part);
        let full = root.join(&candidate);
        match std::fs::symlink_metadata(&full) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(std::io::Error::other(format!(
                        "too many symlinks resolving {}",
                        path.display()
                    )));
                }
                let link = std::fs::read_link(&full)?;
                if link.is_absolute() {
                    resolved = PathBuf::new();
                }
                push_components(&mut pending, &link);
            }
            _ => resolved = candidate,
        }
    }
    Ok(root.join(resolved))
}

/// Pushes the normal and `..` components of `path` so that the first is popped first.
fn push_components(stack: &mut Vec<std::ffi::OsString>, path: &Path) {
    let parts: Vec<std::ffi::OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    stack.extend(parts.into_iter().rev());
}

#[cfg(test)]
#[path = "mounts_tests.rs"]
mod tests;
