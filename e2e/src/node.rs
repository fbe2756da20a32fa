//! One node: a data directory, a network namespace, and the `rswarm` daemon process
//! running in it (if any).

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::command::{describe, run_with_timeout};
use crate::network::{Attachment, set_hub_link};
use crate::sys;

/// The port every node listens on (each has its own address).
pub const PORT: u16 = 4242;
/// How long a client command may take before it counts as hung.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a daemon gets to exit after SIGTERM before it is killed.
pub const TERM_GRACE: Duration = Duration::from_secs(3);

/// The role a node was started with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Takes part in Raft and answers control commands.
    Manager,
    /// Runs tasks only.
    Worker,
}

impl Role {
    /// `manager` or `worker`, as the CLI spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Manager => "manager",
            Role::Worker => "worker",
        }
    }
}

/// A node of the test cluster. Dropping it kills its daemon.
#[derive(Debug)]
pub struct Node {
    /// Hostname the node reports (`node-<n>`).
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    /// Its address on the segment.
    pub ip: Ipv4Addr,
    /// The address it listens on and advertises.
    pub addr: SocketAddr,
    /// The role it was initialised or joined with; `None` before that.
    pub role: Option<Role>,
    /// Holds the data directory and the daemon log.
    dir: PathBuf,
    /// The hub namespace and the hub's end of this node's veth.
    hub: String,
    /// See [`Attachment::hub_link`].
    hub_link: String,
    /// The `rswarm` binary.
    bin: PathBuf,
    /// The running daemon.
    child: Option<Child>,
    /// Extra flags for `init` and `join` (Raft timing, for instance).
    pub extra_args: Vec<String>,
    /// Set when a daemon starts, cleared when the harness stops it: a daemon that is
    /// gone while this is set died on its own.
    expect_running: bool,
}

impl Node {
    /// A node without a process, living in `attachment` with its files under `dir`.
    pub fn new(
        name: String,
        attachment: &Attachment,
        hub: &str,
        dir: PathBuf,
        bin: PathBuf,
    ) -> anyhow::Result<Node> {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Node {
            name,
            netns: attachment.netns.clone(),
            ip: attachment.ip,
            addr: SocketAddr::new(attachment.ip.into(), PORT),
            role: None,
            dir,
            hub: hub.to_string(),
            hub_link: attachment.hub_link.clone(),
            bin,
            child: None,
            extra_args: Vec::new(),
            expect_running: false,
        })
    }

    /// The node's `--data-dir`.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The daemon's control socket.
    pub fn socket_path(&self) -> PathBuf {
        self.data_dir().join("rswarm.sock")
    }

    /// The admin certificate directory (`--cert-dir` for TCP clients).
    pub fn admin_dir(&self) -> PathBuf {
        self.data_dir().join("admin")
    }

    /// Where the daemon's stdout and stderr go (appended across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }

    /// The `rswarm` binary the node runs.
    pub fn binary(&self) -> &Path {
        &self.bin
    }

    /// `rswarm init`: bootstraps a new cluster with this node as its first manager.
    pub fn start_init(&mut self) -> anyhow::Result<()> {
        let args = self.node_args("init");
        self.spawn(args)?;
        self.role = Some(Role::Manager);
        Ok(())
    }

    /// `rswarm join`: joins through `manager` with `token`, whose role is `role`.
    pub fn start_join(
        &mut self,
        token: &str,
        manager: SocketAddr,
        role: Role,
    ) -> anyhow::Result<()> {
        let args = self.join_args(token, manager);
        self.spawn(args)?;
        self.role = Some(role);
        Ok(())
    }

    /// `rswarm daemon`: runs the node again from its data directory.
    pub fn start_daemon(&mut self) -> anyhow::Result<()> {
        let data_dir = self.data_dir();
        self.spawn(vec!["daemon".into(), "--data-dir".into(), data_dir.into()])
    }

    /// The arguments of `rswarm join` for this node.
    pub fn join_args(&self, token: &str, manager: SocketAddr) -> Vec<OsString> {
        let mut args = self.node_args("join");
        args.extend(["--token".into(), token.into(), manager.to_string().into()]);
        args
    }

    /// Runs `rswarm join` in the foreground, expecting it to fail: returns its output
    /// once it exits, or an error if it is still running after `timeout` (then it
    /// joined, wrongly, and has been killed).
    pub fn try_join(
        &self,
        token: &str,
        manager: SocketAddr,
        timeout: Duration,
    ) -> anyhow::Result<Output> {
        self.exec_in_netns(&self.join_args(token, manager), timeout)
    }

    /// Runs `rswarm init` in the foreground, expecting it to be refused: returns its
    /// output once it exits, or an error if it still runs after `timeout` (killed).
    pub fn try_init(&self, timeout: Duration) -> anyhow::Result<Output> {
        self.exec_in_netns(&self.node_args("init"), timeout)
    }

    /// `SUBCOMMAND --data-dir D --listen 0.0.0.0:PORT --advertise A --hostname NAME
    /// EXTRA...`: the daemon listens on every address of its namespace, as by
    /// default.
    fn node_args(&self, subcommand: &str) -> Vec<OsString> {
        vec![
            subcommand.into(),
            "--data-dir".into(),
            self.data_dir().into(),
            "--listen".into(),
            SocketAddr::from(([0, 0, 0, 0], self.addr.port()))
                .to_string()
                .into(),
            "--advertise".into(),
            self.addr.to_string().into(),
            "--hostname".into(),
            self.name.clone().into(),
        ]
        .into_iter()
        .chain(self.extra_args.iter().map(Into::into))
        .collect()
    }

    /// Starts `rswarm ARGS` in the node's namespace, output appended to the log.
    fn spawn(&mut self, args: Vec<OsString>) -> anyhow::Result<()> {
        if self.is_running() {
            bail!("{}: a daemon is already running", self.name);
        }
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .with_context(|| format!("cannot open {}", self.log_path().display()))?;
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        writeln!(
            log,
            "===== e2e: {:.3} rswarm {}",
            since_epoch.as_secs_f64(),
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        )?;
        let mut command = self.netns_command();
        command
            .args(&args)
            .env("RUST_BACKTRACE", "1")
            // Plain text: the log is read in files and test output, not on a terminal.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info");
        }
        // `ip netns exec` execs the command, so the child's pid is the daemon's.
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {command:?}"))?;
        self.child = Some(child);
        self.expect_running = true;
        Ok(())
    }

    /// `ip netns exec <ns> rswarm`, ready for arguments.
    fn netns_command(&self) -> Command {
        // nsenter enters the network namespace only; `ip netns exec` would also
        // remount /sys, hiding the cgroup hierarchies the node's containers need.
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg("--")
            .arg(&self.bin);
        command
    }

    /// Whether the daemon process is alive (reaps it if it exited).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Whether the daemon the harness started exited without being stopped by the
    /// harness (it crashed or refused to start). Takes `&self`: it looks at the
    /// process in /proc, where an exited child stays (a zombie) until reaped.
    pub fn died(&self) -> bool {
        let Some(child) = self.child.as_ref().filter(|_| self.expect_running) else {
            return false;
        };
        match std::fs::read_to_string(format!("/proc/{}/stat", child.id())) {
            // `pid (comm) STATE ...`; comm may contain spaces and parentheses.
            Ok(stat) => stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
                .is_some_and(|state| state == 'Z'),
            // Already reaped (by `is_running`): it exited.
            Err(_) => true,
        }
    }

    /// The daemon's pid, while it runs.
    pub fn pid(&mut self) -> Option<u32> {
        if self.is_running() {
            self.child.as_ref().map(Child::id)
        } else {
            None
        }
    }

    /// Waits for the daemon to exit on its own, for at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let Some(child) = &mut self.child else {
            bail!("{}: no daemon was started", self.name);
        };
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if started.elapsed() >= timeout {
                bail!("{}: daemon still running after {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, then reaps the process. A no-op if no daemon runs.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        self.expect_running = false;
        if let Some(child) = &mut self.child {
            if child.try_wait()?.is_none() {
                child.kill()?;
            }
            child.wait()?;
        }
        Ok(())
    }

    /// Sends SIGTERM (if the daemon runs); see [`Node::finish_stop`].
    pub fn send_term(&mut self) {
        self.expect_running = false;
        if let Some(pid) = self.pid() {
            // The child is not reaped yet, so the pid is still ours.
            if let Err(err) = sys::signal(pid, libc::SIGTERM) {
                eprintln!("e2e: {}: cannot send SIGTERM to {pid}: {err}", self.name);
            }
        }
    }

    /// Waits until `deadline` for the daemon to exit, then kills it. Returns its exit
    /// status, or `None` if it had to be killed (or none was running).
    pub fn finish_stop(&mut self, deadline: Instant) -> anyhow::Result<Option<ExitStatus>> {
        self.expect_running = false;
        let Some(child) = &mut self.child else {
            return Ok(None);
        };
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                child.kill()?;
                child.wait()?;
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then SIGKILL if the daemon is still running after [`TERM_GRACE`].
    /// Returns the exit status if it exited by itself.
    pub fn sigterm(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        self.send_term();
        self.finish_stop(Instant::now() + TERM_GRACE)
    }

    /// Cuts the node off the segment (its veth goes down at the hub); nothing inside
    /// the node's namespace changes.
    pub fn cut_network(&self) -> anyhow::Result<()> {
        set_hub_link(&self.hub, &self.hub_link, false)
    }

    /// Reconnects the node after [`Node::cut_network`].
    pub fn restore_network(&self) -> anyhow::Result<()> {
        set_hub_link(&self.hub, &self.hub_link, true)
    }

    /// `rswarm --host unix://<socket> ARGS`, run outside the namespace (the socket is
    /// a file, reachable from anywhere).
    pub fn cli<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> anyhow::Result<Output> {
        self.cli_with_timeout(args, CLI_TIMEOUT)
    }

    /// [`Node::cli`] with its own time limit (an error if the command still runs
    /// after `timeout`; it is killed).
    pub fn cli_with_timeout<S: AsRef<std::ffi::OsStr>>(
        &self,
        args: &[S],
        timeout: Duration,
    ) -> anyhow::Result<Output> {
        let mut command = Command::new(&self.bin);
        command
            .arg("--host")
            .arg(format!("unix://{}", self.socket_path().display()))
            .args(args);
        run_with_timeout(&mut command, timeout)
    }

    /// [`Node::cli`], requiring success; returns stdout.
    pub fn cli_ok<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> anyhow::Result<String> {
        let output = self.cli(args)?;
        if !output.status.success() {
            bail!(
                "{}: rswarm {} failed: {}",
                self.name,
                show(args),
                describe(&output)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// [`Node::cli_ok`] with `--format json`, parsed.
    pub fn cli_json<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> anyhow::Result<Value> {
        let mut all: Vec<OsString> = vec!["--format".into(), "json".into()];
        all.extend(args.iter().map(|a| a.as_ref().to_os_string()));
        let stdout = self.cli_ok(&all)?;
        serde_json::from_str(&stdout).with_context(|| {
            format!(
                "{}: rswarm {} printed invalid JSON: {stdout}",
                self.name,
                show(args)
            )
        })
    }

    /// The name of the node's network namespace (for `ip -n NAME ...`).
    pub fn netns_name(&self) -> &str {
        &self.netns
    }

    /// `rswarm ARGS` inside the node's namespace (for TCP clients and joins).
    pub fn exec_in_netns<S: AsRef<std::ffi::OsStr>>(
        &self,
        args: &[S],
        timeout: Duration,
    ) -> anyhow::Result<Output> {
        let mut command = self.netns_command();
        command.args(args);
        run_with_timeout(&mut command, timeout)
    }

    /// The last `lines` lines of the daemon log.
    pub fn log_tail(&self, lines: usize) -> String {
        match std::fs::read(self.log_path()) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let all: Vec<&str> = text.lines().collect();
                all[all.len().saturating_sub(lines)..].join("\n")
            }
            Err(err) => format!("(no log: {err})"),
        }
    }

    /// Whether the data directory holds anything (it may not exist at all).
    pub fn has_state(&self) -> bool {
        std::fs::read_dir(self.data_dir()).is_ok_and(|mut entries| entries.next().is_some())
    }

    /// Appends a marker line to the daemon log, so that events the test caused can be
    /// found among the daemon's own lines.
    pub fn log_note(&self, note: &str) {
        let appended = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .and_then(|mut log: File| writeln!(log, "===== e2e: {note}"));
        if let Err(err) = appended {
            eprintln!("e2e: {}: cannot write to the log: {err}", self.name);
        }
    }
}

/// Arguments as one string, for messages.
fn show<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> String {
    args.iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Err(err) = self.kill9() {
            eprintln!("e2e: {}: cannot kill the daemon: {err:#}", self.name);
        }
    }
}
