//! Network namespace files and running netlink code inside a namespace.
//!
//! A namespace file is a bind mount of a thread's `/proc/thread-self/ns/net`,
//! as `ip netns add` makes: the namespace lives as long as the mount does, with
//! no process in it, and a container joins it by path
//! (`NetworkMode::Join`). Containers made later copy these mounts into their
//! mount namespace, but the runtime's `pivot_root` detaches the old root, so the
//! copies do not keep a deleted namespace alive.
//!
//! Netlink sockets belong to the namespace of the thread that creates them, and
//! `setns` changes only the calling thread: code for another namespace runs on
//! a dedicated thread with its own current-thread tokio runtime, never on a
//! pooled thread that would keep the foreign namespace afterwards.

use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::statfs::statfs;
use rtnetlink::Handle;

use super::NetError;

/// Where the node keeps the namespace files of its tasks.
pub const NETNS_DIR: &str = "/run/rswarm/netns";

/// The magic number of nsfs, the file system of namespace files.
const NSFS_MAGIC: u64 = 0x6e73_6673;

/// Whether `path` is a namespace file (a mounted nsfs inode).
pub fn is_netns_file(path: &Path) -> bool {
    match statfs(path) {
        // The field's integer type differs between libcs; the magic fits all.
        #[allow(clippy::unnecessary_cast)]
        Ok(st) => st.filesystem_type().0 as u64 == NSFS_MAGIC,
        Err(_) => false,
    }
}

/// Creates (or finds) the network namespace file `dir/name` holding a fresh,
/// empty network namespace (only a down `lo`), and returns its path.
pub fn create_netns(dir: &Path, name: &str) -> Result<PathBuf, NetError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(NetError::Config(format!(
            "{name:?} is not a usable namespace name"
        )));
    }
    fs::create_dir_all(dir).map_err(|e| NetError::io("create the namespace directory", dir, e))?;
    let path = dir.join(name);
    if is_netns_file(&path) {
        return Ok(path);
    }
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| NetError::io("create the namespace file", &path, e))?;
    let target = path.clone();
    let made = std::thread::spawn(move || -> Result<(), NetError> {
        // The thread's own namespace changes, then the thread ends: the mount
        // keeps the namespace.
        unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| NetError::sys("unshare a network namespace", e))?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| NetError::sys("bind-mount the network namespace", e))
    })
    .join()
    .map_err(|_| NetError::Thread("the namespace-creating thread panicked".into()))?;
    if let Err(e) = made {
        let _ = fs::remove_file(&path);
        return Err(e);
    }
    Ok(path)
}

/// Deletes a namespace file made by [`create_netns`]; the namespace goes away
/// once nothing else (a process, an open file) holds it. A missing file is not
/// an error.
pub fn delete_netns(path: &Path) -> Result<(), NetError> {
    match umount2(path, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (a half-made file); ENOENT: already gone.
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(NetError::sys("unmount the namespace file", e)),
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NetError::io("remove the namespace file", path, e)),
    }
}

/// Runs `f` with a netlink handle of the namespace at `path`, on a thread of its
/// own that entered the namespace, and waits for it without blocking the
/// caller's runtime.
pub async fn in_netns<F, Fut, T>(path: &Path, f: F) -> Result<T, NetError>
where
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, NetError>>,
    T: Send + 'static,
{
    let path = path.to_path_buf();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("rswarm-netns".into())
        .spawn(move || {
            let _ = tx.send(block_in_netns(&path, f));
        })
        .map_err(|e| NetError::Thread(format!("cannot start a namespace thread: {e}")))?;
    rx.await
        .map_err(|_| NetError::Thread("the namespace thread panicked".into()))?
}

/// The blocking form of [`in_netns`]: enters the namespace on the calling
/// thread, so it must only be called on a thread made for it.
fn block_in_netns<F, Fut, T>(path: &Path, f: F) -> Result<T, NetError>
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = Result<T, NetError>>,
{
    let file = File::open(path).map_err(|e| NetError::io("open the namespace file", path, e))?;
    setns(&file, CloneFlags::CLONE_NEWNET)
        .map_err(|e| NetError::sys("enter the network namespace", e))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| NetError::io("start a runtime in the namespace", path, e))?;
    rt.block_on(async move {
        let handle = super::nl::connect()?;
        f(handle).await
    })
}

/// Runs `f` on a new thread inside the namespace at `path` with a
/// current-thread runtime and a netlink handle of that namespace, and waits for
/// it: for callers that are not async themselves (tests, tools).
pub fn run_in_netns<F, Fut, T>(path: &Path, f: F) -> Result<T, NetError>
where
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, NetError>>,
    T: Send + 'static,
{
    let path = path.to_path_buf();
    std::thread::spawn(move || block_in_netns(&path, f))
        .join()
        .map_err(|_| NetError::Thread("the namespace thread panicked".into()))?
}
