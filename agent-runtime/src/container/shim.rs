//! Stage 1 of the shim: the small per-container process the daemon starts.
//!
//! It leaves the daemon's session (so it outlives a daemon restart), makes the
//! next child pid 1 of a new pid namespace, starts stage 2 ([`super::init`]) (and,
//! for a container with an id mapping, writes the id maps of the user namespace
//! stage 2 creates) and reports `started <pid>` or `error: <why>` on stdout. Then it copies the
//! container's output to the log and, when pid 1 exits, writes `exit.json`.
//! Single-threaded with fixed small buffers: it lives as long as the container.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::time::SystemTime;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::CloneFlags;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};

use super::config::ContainerConfig;
use super::log::{LogWriter, Stream};
use super::state::{self, ExitInfo, RunState};
use super::{CGROUP_FILE, CONFIG_FILE};
use crate::cgroup::{Cgroup, HostFs};
use crate::idmap::IdMap;

/// Longest line kept whole; longer output is split into lines of this size.
const MAX_LINE: usize = 16 * 1024;

/// Entry point of `rswarm-shim run <dir>`; returns the shim's exit code.
pub fn main(dir: &Path) -> i32 {
    // Fails only if already a session leader, which is fine too.
    let _ = nix::unistd::setsid();
    match run(dir) {
        Ok(()) => 0,
        Err(err) => {
            let mut out = std::io::stdout();
            let _ = writeln!(out, "error: {err}");
            let _ = out.flush();
            1
        }
    }
}

fn run(dir: &Path) -> Result<(), String> {
    let config: ContainerConfig = state::read_json(&dir.join(CONFIG_FILE))
        .map_err(|e| format!("read config: {e}"))?
        .ok_or("config.json is missing")?;
    let cgroup: Cgroup = state::read_json(&dir.join(CGROUP_FILE))
        .map_err(|e| format!("read cgroup: {e}"))?
        .ok_or("cgroup.json is missing")?;
    let mut log = LogWriter::open(
        &dir.join("logs"),
        config.log.max_bytes,
        config.log.max_files,
    )
    .map_err(|e| format!("open log: {e}"))?;

    nix::sched::unshare(CloneFlags::CLONE_NEWPID)
        .map_err(|e| format!("unshare pid namespace: {e}"))?;
    // Stage 2's report channel: close-on-exec on its side, so EOF without a
    // message means the exec succeeded. A socket, as the shim answers on it when
    // stage 2 asks for its user namespace's id map.
    let (channel, child_end) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| format!("socketpair: {e}"))?;
    let exe = std::env::current_exe().map_err(|e| format!("find own executable: {e}"))?;
    let mut child = Command::new(exe)
        .arg("init")
        .arg(dir)
        .stdin(Stdio::from(child_end))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn container init: {e}"))?;

    let message = match serve_init(
        UnixStream::from(channel),
        child.id(),
        config.id_map.as_ref(),
    ) {
        Ok(message) => message,
        Err(err) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(err);
        }
    };
    if !message.is_empty() {
        let _ = child.wait();
        return Err(message);
    }
    let pid = child.id();
    let me = std::process::id();
    let run_state = RunState {
        shim_pid: me,
        shim_start: state::process_start(me).unwrap_or(0),
        pid,
        pid_start: state::process_start(pid).unwrap_or(0),
    };
    if let Err(e) = state::write_atomic(&dir.join(state::STATE_FILE), &run_state) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("write state: {e}"));
    }
    report_started(pid);

    pump(&mut child, &mut log);
    let status = child.wait().map_err(|e| format!("wait for pid 1: {e}"))?;
    let signal = status.signal();
    let exit = ExitInfo {
        code: status.code().unwrap_or_else(|| 128 + signal.unwrap_or(0)),
        signal,
        oom_killed: cgroup.oom_kills(&HostFs).unwrap_or(0) > 0,
    };
    state::write_atomic(&dir.join(state::EXIT_FILE), &exit).map_err(|e| format!("write exit: {e}"))
}

/// What stage 2 sends (and gets back once done) when it needs its user namespace's
/// id map written. Error reports are text and never start with it.
pub const MAP_REQUEST: u8 = 0;

/// Reads stage 2's channel until it closes, writing the id map when asked, and
/// returns the error it reported (empty: its exec succeeded).
fn serve_init(mut channel: UnixStream, pid: u32, id_map: Option<&IdMap>) -> Result<String, String> {
    let mut message = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match channel.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // A broken channel reads as EOF: stage 2 is gone or exec'd.
            Err(_) => 0,
        };
        if n == 0 {
            return Ok(String::from_utf8_lossy(&message).into_owned());
        }
        if message.is_empty() && buf[..n] == [MAP_REQUEST] {
            let map = id_map.ok_or("container init asked for an id map, but none is configured")?;
            write_id_map(pid, map)?;
            channel
                .write_all(&[MAP_REQUEST])
                .map_err(|e| format!("answer container init: {e}"))?;
            continue;
        }
        message.extend_from_slice(&buf[..n]);
    }
}

/// Writes `/proc/<pid>/{setgroups,uid_map,gid_map}` for stage 2's new user namespace.
fn write_id_map(pid: u32, map: &IdMap) -> Result<(), String> {
    for (path, text) in map.proc_writes(pid) {
        std::fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Tells the daemon the container runs, then points stdout at /dev/null: the
/// daemon stops reading after this line and may be gone any time.
fn report_started(pid: u32) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "started {pid}");
    let _ = out.flush();
    if let Ok(null) = File::options().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
    }
}

/// One output stream's pending partial line.
struct Pipe<R> {
    reader: Option<R>,
    stream: Stream,
    partial: Vec<u8>,
}

impl<R: Read> Pipe<R> {
    /// Reads what is available and logs every complete line; false at EOF.
    fn drain(&mut self, buf: &mut [u8], log: &mut LogWriter) -> bool {
        let Some(r) = self.reader.as_mut() else {
            return false;
        };
        let n = match r.read(buf) {
            Ok(0) | Err(_) => 0,
            Ok(n) => n,
        };
        if n == 0 {
            self.reader = None;
            self.flush(log);
            return false;
        }
        let now = SystemTime::now();
        let mut data = &buf[..n];
        while let Some(pos) = data.iter().position(|b| *b == b'\n') {
            self.partial.extend_from_slice(&data[..pos]);
            // Log write failures (disk full) must not stop the draining, or the
            // container would block on a full pipe.
            let _ = log.line(self.stream, &self.partial, now);
            self.partial.clear();
            data = &data[pos + 1..];
        }
        self.partial.extend_from_slice(data);
        while self.partial.len() >= MAX_LINE {
            let _ = log.line(self.stream, &self.partial[..MAX_LINE], now);
            self.partial.drain(..MAX_LINE);
        }
        true
    }

    fn flush(&mut self, log: &mut LogWriter) {
        if !self.partial.is_empty() {
            let _ = log.line(self.stream, &self.partial, SystemTime::now());
            self.partial.clear();
        }
    }
}

/// Copies stdout and stderr to the log until both are closed (pid 1's exit
/// closes them: the kernel kills the whole pid namespace with it).
fn pump(child: &mut Child, log: &mut LogWriter) {
    let mut out: Pipe<ChildStdout> = Pipe {
        reader: child.stdout.take(),
        stream: Stream::Stdout,
        partial: Vec::new(),
    };
    let mut err: Pipe<ChildStderr> = Pipe {
        reader: child.stderr.take(),
        stream: Stream::Stderr,
        partial: Vec::new(),
    };
    let mut buf = vec![0u8; 8192];
    while out.reader.is_some() || err.reader.is_some() {
        let (out_ready, err_ready) = {
            let mut fds = Vec::with_capacity(2);
            if let Some(r) = &out.reader {
                fds.push(PollFd::new(r.as_fd(), PollFlags::POLLIN));
            }
            if let Some(r) = &err.reader {
                fds.push(PollFd::new(r.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                // poll itself failing leaves nothing to wait on; stop copying.
                Err(_) => break,
            }
            let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
            let mut it = fds.iter();
            let o = out.reader.is_some() && it.next().is_some_and(ready);
            let e = err.reader.is_some() && it.next().is_some_and(ready);
            (o, e)
        };
        if out_ready {
            out.drain(&mut buf, log);
        }
        if err_ready {
            err.drain(&mut buf, log);
        }
    }
}
