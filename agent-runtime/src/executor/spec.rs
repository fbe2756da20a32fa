//! A task's container configuration, from its spec and its image: a pure function
//! so the Docker rules it applies are unit-tested without root.

use std::path::PathBuf;

use rswarm_proto::api::{MountType, Task};
use rswarm_proto::validate::format_size;

use crate::cgroup::Limits;
use crate::container::{ContainerConfig, MountSpec};
use crate::exec::{ExecError, ExitStatus};
use crate::idmap::IdMap;
use crate::image::ImageConfig;

use super::users;

/// Longest hostname the kernel takes.
const MAX_HOSTNAME: usize = 64;

pub use rswarm_proto::names::task_name;

/// What the executor knows about the image and the node when it builds a config.
pub struct Inputs<'a> {
    /// The image reference as the spec gives it (for messages).
    pub image: &'a str,
    /// The image's run config (Entrypoint, Cmd, Env, WorkingDir, User).
    pub run: &'a ImageConfig,
    /// The image's unpacked layers, top-most first.
    pub lower_dirs: Vec<PathBuf>,
    /// The host directory of a named volume (created on first use).
    pub volume_dir: &'a dyn Fn(&str) -> Result<PathBuf, String>,
    /// The node's user namespace mapping (`--userns-remap`), if any; `lower_dirs`
    /// are then the layers shifted for it.
    pub id_map: Option<IdMap>,
}

/// The container configuration of `task`: Docker's rules for command, env, working
/// directory and user; mounts, capabilities, limits and stop signal from the spec.
pub fn container_config(task: &Task, inputs: Inputs<'_>) -> Result<ContainerConfig, ExecError> {
    let invalid = |msg: String| ExecError::InvalidSpec(msg);
    let spec = task.spec.as_ref();
    let container = spec
        .and_then(|s| s.container.as_ref())
        .ok_or_else(|| invalid(format!("task {} has no container", task.id)))?;
    let process = inputs
        .run
        .process(
            inputs.image,
            &container.command,
            &container.args,
            &container.env,
        )
        .map_err(|e| invalid(e.to_string()))?;
    let user = if container.user.is_empty() {
        process.user.as_str()
    } else {
        container.user.as_str()
    };
    let ids = users::resolve(user, &inputs.lower_dirs).map_err(|e| invalid(e.to_string()))?;
    let cwd = if container.dir.is_empty() {
        process.cwd.clone()
    } else {
        container.dir.clone()
    };
    if !cwd.starts_with('/') {
        return Err(invalid(format!(
            "working directory {cwd:?} is not absolute"
        )));
    }
    let mut config = ContainerConfig::new(task.id.clone(), inputs.lower_dirs, process.argv);
    config.process.env = process.env;
    config.process.cwd = PathBuf::from(cwd);
    config.process.uid = ids.uid;
    config.process.gid = ids.gid;
    config.process.additional_gids = ids.additional_gids;
    config.hostname = if container.hostname.is_empty() {
        task_name(task).chars().take(MAX_HOSTNAME).collect()
    } else {
        container.hostname.clone()
    };
    config.etc_hosts = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{}\n",
        config.hostname
    );
    config.capabilities =
        crate::container::caps::with_changes(&container.cap_add, &container.cap_drop)
            .map_err(|e| invalid(e.to_string()))?;
    config.readonly_rootfs = container.read_only;
    if !container.stop_signal.is_empty() {
        config.stop_signal = container.stop_signal.clone();
    } else if let Some(signal) = inputs.run.stop_signal.as_deref() {
        config.stop_signal = rswarm_proto::validate::parse_signal(signal)
            .map_err(|e| invalid(format!("the image's StopSignal: {e}")))?;
    }
    for mount in &container.mounts {
        let target = PathBuf::from(&mount.target);
        config.mounts.push(match MountType::try_from(mount.r#type) {
            Ok(MountType::Bind) => MountSpec::Bind {
                source: PathBuf::from(&mount.source),
                target,
                readonly: mount.read_only,
            },
            Ok(MountType::Volume) => MountSpec::Bind {
                source: (inputs.volume_dir)(&mount.source)
                    .map_err(|e| ExecError::Prepare(format!("volume {}: {e}", mount.source)))?,
                target,
                readonly: mount.read_only,
            },
            Ok(MountType::Tmpfs) => MountSpec::Tmpfs {
                target,
                size_bytes: (mount.tmpfs_size_bytes > 0).then_some(mount.tmpfs_size_bytes),
            },
            Err(_) => return Err(invalid(format!("unknown mount type {}", mount.r#type))),
        });
    }
    if let Some(limits) = spec
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.limits.as_ref())
    {
        config.limits = Limits {
            memory_bytes: (limits.memory_bytes > 0).then_some(limits.memory_bytes),
            nano_cpus: (limits.nano_cpus > 0).then_some(limits.nano_cpus),
            pids: (limits.pids > 0).then_some(limits.pids),
        };
    }
    config.id_map = inputs.id_map;
    config.validate().map_err(invalid)?;
    Ok(config)
}

/// The `/etc/resolv.conf` of a task on the node's task network: the node's DNS
/// server on the bridge gateway answers the cluster's names and forwards the
/// rest. `ndots:0`, as Docker writes it, asks every name as it is first, so a
/// service name is not tried against search domains before the cluster answers.
pub fn task_resolv_conf(nameserver: std::net::Ipv4Addr) -> String {
    format!("nameserver {nameserver}\noptions ndots:0\n")
}

/// How a container's exit reads as a task's exit: the code, and "OOM killed (limit
/// 64MiB)" when the kernel's OOM killer ended it.
pub fn exit_status(exit: &crate::container::ExitInfo, limits: &Limits) -> ExitStatus {
    let reason = if exit.oom_killed {
        match limits.memory_bytes {
            Some(limit) => format!("OOM killed (limit {})", format_size(limit)),
            None => "OOM killed".to_string(),
        }
    } else if let Some(signal) = exit.signal {
        format!("killed by signal {signal}")
    } else {
        String::new()
    };
    ExitStatus {
        code: exit.code,
        reason,
    }
}
