//! The few system calls the harness makes directly: entering a network namespace
//! from a thread and signalling processes by id. Everything else (creating
//! namespaces, links, addresses) goes through `ip`.
#![allow(unsafe_code)]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

/// Moves the calling thread (only it: network namespaces are per thread) into the
/// network namespace `ns`, opened from `/run/netns/<name>`. Sockets the thread
/// creates afterwards belong to that namespace, and stay in it wherever they are used.
pub fn enter_netns(ns: &File) -> std::io::Result<()> {
    // SAFETY: setns only reads the descriptor, which `ns` keeps open for the call.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Sends `signal` to process `pid`. The caller must know the pid is still its own
/// (a child not yet waited for, so the id cannot have been reused).
pub fn signal(pid: u32, signal: libc::c_int) -> std::io::Result<()> {
    // 0 and negative values would address process groups, never one process.
    let pid = libc::pid_t::try_from(pid)
        .ok()
        .filter(|&pid| pid > 0)
        .ok_or_else(|| std::io::Error::other(format!("pid {pid} does not name one process")))?;
    // SAFETY: kill has no memory effects; a positive pid addresses one process.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether the process runs as root (owner of `/proc/self` is the effective uid).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Whether a process with this id exists.
pub fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}
