//! Stage 2 of the shim: runs as pid 1 of the container's new pid namespace, builds
//! the rest of the container around itself and execs the service's command.
//!
//! Errors travel back to the shim through a close-on-exec socket that arrives as
//! stdin: EOF on it means the exec succeeded. With an id mapping, stage 2 also asks
//! the shim on it to map the user namespace it has just created (see
//! `docs/design/runtime.md`, "User namespaces").

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::unistd::{Gid, Uid};
use rustix::thread::{CapabilitySet, CapabilitySets};

use super::config::{ContainerConfig, NetworkMode};
use super::mounts::{self, Mounter};
use super::{CGROUP_FILE, CONFIG_FILE, caps, net};
use crate::cgroup::{Cgroup, HostFs};

/// The default `PATH` when the config sets none (Docker's).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A failed setup step, reported to the shim as `<step>: <error>`.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {message}")]
pub struct InitError {
    /// What was being done.
    pub step: String,
    /// Why it failed.
    pub message: String,
}

fn step<E: std::fmt::Display>(step: impl Into<String>) -> impl FnOnce(E) -> InitError {
    let step = step.into();
    move |e| InitError {
        step,
        message: e.to_string(),
    }
}

/// Entry point of `rswarm-shim init <dir>`: never returns on success (the process
/// becomes the container's command); on failure reports and returns exit code 127.
pub fn main(dir: &Path) -> i32 {
    // The error pipe is stdin; keep a close-on-exec copy (fd >= 3) so stdin can
    // become /dev/null and the copy vanishes exactly when the exec succeeds.
    let mut report: Option<File> = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .map(File::from);
    let err = match setup(dir, report.as_mut()) {
        Ok(cmd) => exec(cmd),
        Err(err) => err,
    };
    match report.as_mut() {
        Some(f) => {
            let _ = f.write_all(err.to_string().as_bytes());
        }
        None => eprintln!("container init: {err}"),
    }
    127
}

/// Everything up to the exec; returns the command ready to run.
fn setup(dir: &Path, report: Option<&mut File>) -> Result<std::process::Command, InitError> {
    let config: ContainerConfig = super::state::read_json(&dir.join(CONFIG_FILE))
        .map_err(step("read config"))?
        .ok_or_else(|| step("read config")("config.json is missing"))?;
    let cgroup: Cgroup = super::state::read_json(&dir.join(CGROUP_FILE))
        .map_err(step("read cgroup"))?
        .ok_or_else(|| step("read cgroup")("cgroup.json is missing"))?;
    cgroup.join_self(&HostFs).map_err(step("join cgroup"))?;
    // Its own session, so signals aimed at the shim's group never reach it.
    nix::unistd::setsid().map_err(step("setsid"))?;

    let rootfs = dir.join("rootfs");
    let plan = mounts::plan(&config, dir);
    let root = match &config.id_map {
        None => {
            enter_namespaces(&config, CloneFlags::CLONE_NEWNS)?;
            mounts::execute(&plan, &rootfs, &mut HostMounter).map_err(step("mounts"))?;
            rootfs
        }
        Some(_) => {
            // Host root mounts what needs host paths or the pid namespace (the
            // shim's, made before the user namespace), then the user namespace
            // is created with every other namespace owned by it.
            if let NetworkMode::Join { path } = &config.network {
                join_netns(path)?;
            }
            nix::sched::unshare(CloneFlags::CLONE_NEWNS)
                .map_err(step("unshare mount namespace"))?;
            let (before, after) = mounts::split_for_userns(plan, &config.network);
            mounts::execute(&before, &rootfs, &mut HostMounter).map_err(step("mounts"))?;
            // From here on the rootfs is reached through the working directory
            // (carried into the new mount namespace): container root may not
            // search the host directories above it.
            nix::unistd::chdir(&rootfs).map_err(step("chdir rootfs"))?;
            enter_namespaces(&config, CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS)?;
            await_id_map(report)?;
            become_root()?;
            configure_namespaces(&config)?;
            enter_root_clone()?;
            let here = PathBuf::from(".");
            mounts::execute(&after, &here, &mut HostMounter).map_err(step("mounts"))?;
            here
        }
    };
    pivot(&root)?;

    let null = File::options()
        .read(true)
        .open("/dev/null")
        .map_err(step("open /dev/null"))?;
    nix::unistd::dup2(null.as_raw_fd(), 0).map_err(step("stdin"))?;

    drop_capabilities(&config.capabilities)?;
    let p = &config.process;
    let groups: Vec<Gid> = p
        .additional_gids
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    nix::unistd::setgroups(&groups).map_err(step("setgroups"))?;
    nix::unistd::setgid(Gid::from_raw(p.gid)).map_err(step("setgid"))?;
    if !p.cwd.exists() {
        // Docker creates a missing working directory; a read-only rootfs may refuse,
        // and then chdir below names the problem.
        let _ = std::fs::create_dir_all(&p.cwd);
        let _ = nix::unistd::chown(
            &p.cwd,
            Some(Uid::from_raw(p.uid)),
            Some(Gid::from_raw(p.gid)),
        );
    }
    nix::unistd::setuid(Uid::from_raw(p.uid)).map_err(step("setuid"))?;
    rustix::thread::set_no_new_privs(true).map_err(step("no_new_privs"))?;
    std::env::set_current_dir(&p.cwd).map_err(step(format!("chdir {}", p.cwd.display())))?;

    let mut cmd = std::process::Command::new(&p.argv[0]);
    cmd.args(&p.argv[1..]).env_clear();
    for (k, v) in process_env(&p.env, &config.hostname) {
        cmd.env(k, v);
    }
    Ok(cmd)
}

/// Unshares `extra` with the UTS, IPC, cgroup and (unless joining one) network
/// namespaces. Without a user namespace the new ones are configured at once;
/// with one, only once its id map is written ([`configure_namespaces`]).
fn enter_namespaces(config: &ContainerConfig, extra: CloneFlags) -> Result<(), InitError> {
    let userns = extra.contains(CloneFlags::CLONE_NEWUSER);
    let mut flags =
        extra | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWCGROUP;
    match &config.network {
        NetworkMode::Isolated => flags |= CloneFlags::CLONE_NEWNET,
        // With a user namespace it was joined before, as host root.
        NetworkMode::Join { path } if !userns => join_netns(path)?,
        NetworkMode::Join { .. } => {}
    }
    nix::sched::unshare(flags).map_err(step("unshare namespaces"))?;
    if !userns {
        configure_namespaces(config)?;
    }
    Ok(())
}

fn join_netns(path: &Path) -> Result<(), InitError> {
    let ns = File::open(path).map_err(step(format!("open netns {}", path.display())))?;
    nix::sched::setns(ns, CloneFlags::CLONE_NEWNET)
        .map_err(step(format!("join netns {}", path.display())))
}

/// Brings loopback up and sets the hostname.
fn configure_namespaces(config: &ContainerConfig) -> Result<(), InitError> {
    if config.network == NetworkMode::Isolated {
        net::link_up("lo").map_err(step("loopback"))?;
    }
    nix::unistd::sethostname(&config.hostname).map_err(step("sethostname"))
}

/// Asks the shim to write the new user namespace's id maps and waits until it
/// has: until then this process's ids are unmapped and it can create no file.
fn await_id_map(report: Option<&mut File>) -> Result<(), InitError> {
    let channel = report.ok_or_else(|| step("user namespace")("no channel to the shim"))?;
    channel
        .write_all(&[super::shim::MAP_REQUEST])
        .map_err(step("ask for the id map"))?;
    let mut reply = [0u8; 1];
    match channel.read(&mut reply) {
        Ok(1) if reply[0] == super::shim::MAP_REQUEST => Ok(()),
        Ok(_) => Err(step("user namespace")("the shim did not write the id map")),
        Err(e) => Err(step("wait for the id map")(e)),
    }
}

/// Takes the ids of the user namespace's root (host root's own ids are unmapped
/// there), keeping every capability in the namespace.
fn become_root() -> Result<(), InitError> {
    let root_gid = Gid::from_raw(0);
    let root_uid = Uid::from_raw(0);
    nix::unistd::setresgid(root_gid, root_gid, root_gid).map_err(step("setresgid 0"))?;
    nix::unistd::setgroups(&[]).map_err(step("setgroups"))?;
    nix::unistd::setresuid(root_uid, root_uid, root_uid).map_err(step("setresuid 0"))
}

/// Puts a recursive copy of the root filesystem (the working directory) on top of
/// it and moves into the copy. The mounts inherited from the parent mount
/// namespace are locked, and `pivot_root` refuses a locked new root; the copy is
/// not locked.
fn enter_root_clone() -> Result<(), InitError> {
    use rustix::mount::{MoveMountFlags, OpenTreeFlags, move_mount, open_tree};
    let cwd = rustix::fs::CWD;
    let copy = open_tree(
        cwd,
        ".",
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::AT_RECURSIVE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )
    .map_err(step("copy the root filesystem mount"))?;
    move_mount(&copy, "", cwd, ".", MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)
        .map_err(step("attach the root filesystem copy"))?;
    rustix::process::fchdir(&copy).map_err(step("enter the root filesystem copy"))
}

/// Replaces the process image; returns only on failure.
fn exec(mut cmd: std::process::Command) -> InitError {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let err = cmd.exec();
    InitError {
        step: format!("exec {program}"),
        message: err.to_string(),
    }
}

/// The environment as (key, value) pairs, with `PATH` and `HOSTNAME` added when
/// absent, as Docker does.
pub fn process_env(env: &[String], hostname: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = env
        .iter()
        .map(|e| match e.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (e.clone(), String::new()),
        })
        .collect();
    if !out.iter().any(|(k, _)| k == "PATH") {
        out.insert(0, ("PATH".into(), DEFAULT_PATH.into()));
    }
    if !out.iter().any(|(k, _)| k == "HOSTNAME") {
        out.insert(1, ("HOSTNAME".into(), hostname.into()));
    }
    out
}

/// Makes the rootfs `/` and detaches the old root (the `pivot_root(".", ".")`
/// idiom: no put-old directory is needed in the image).
fn pivot(rootfs: &Path) -> Result<(), InitError> {
    nix::unistd::chdir(rootfs).map_err(step("chdir rootfs"))?;
    nix::unistd::pivot_root(".", ".").map_err(step("pivot_root"))?;
    nix::mount::umount2(".", MntFlags::MNT_DETACH).map_err(step("detach old root"))?;
    nix::unistd::chdir("/").map_err(step("chdir /"))?;
    Ok(())
}

/// Leaves only `keep` in the bounding set and clears the inheritable and ambient
/// sets. The exec then gives root exactly `keep` and any other user nothing, as in
/// Docker.
fn drop_capabilities(keep: &[String]) -> Result<(), InitError> {
    let mut wanted = 0u64;
    for name in keep {
        wanted |= 1 << caps::number(name).map_err(step("capabilities"))?;
    }
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(caps::NAMES.len() as u32 - 1);
    for n in (0..=last.min(63)).filter(|n| wanted & (1 << n) == 0) {
        rustix::thread::remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(
            1 << n,
        ))
        .map_err(step(format!("drop capability {n}")))?;
    }
    rustix::thread::clear_ambient_capability_set().map_err(step("clear ambient capabilities"))?;
    let current = rustix::thread::capabilities(None).map_err(step("capget"))?;
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            inheritable: CapabilitySet::empty(),
            ..current
        },
    )
    .map_err(step("capset"))?;
    Ok(())
}

/// The real [`Mounter`].
struct HostMounter;

impl Mounter for HostMounter {
    fn mount(
        &mut self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        nix::mount::mount(source, target, fstype, flags, data)
    }
    fn exists(&mut self, path: &Path) -> bool {
        path.symlink_metadata().is_ok()
    }
    fn is_dir(&mut self, path: &Path) -> bool {
        path.is_dir()
    }
    fn create_dir(&mut self, path: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(path)
    }
    fn create_file(&mut self, path: &Path) -> std::io::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map(drop)
    }
    fn symlink(&mut self, to: &str, path: &Path) -> std::io::Result<()> {
        match std::os::unix::fs::symlink(OsStr::new(to), path) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            other => other,
        }
    }
    fn resolve(&mut self, root: &Path, path: &Path) -> std::io::Result<PathBuf> {
        mounts::secure_join(root, path)
    }
    fn kept_flags(&mut self, path: &Path) -> MsFlags {
        use nix::sys::statvfs::FsFlags;
        let Ok(st) = nix::sys::statvfs::statvfs(path) else {
            // The remount then fails or succeeds on its own terms.
            return MsFlags::empty();
        };
        let have = st.flags();
        [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ]
        .into_iter()
        .filter(|(st, _)| have.contains(*st))
        .fold(MsFlags::empty(), |acc, (_, ms)| acc | ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_gets_path_and_hostname_unless_set() {
        let env = process_env(&["A=1".into(), "B=x=y".into()], "h1");
        assert_eq!(env[0], ("PATH".into(), DEFAULT_PATH.into()));
        assert_eq!(env[1], ("HOSTNAME".into(), "h1".into()));
        assert!(env.contains(&("B".into(), "x=y".into())));
        let env = process_env(&["PATH=/bin".into(), "HOSTNAME=mine".into()], "h1");
        assert_eq!(env.len(), 2);
    }
}
