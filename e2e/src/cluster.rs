//! A test cluster: a segment, its nodes, and the operations tests compose.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use tempfile::TempDir;

use crate::binary::rswarm_binary;
use crate::client::ClientRuntime;
use crate::network::{Attachment, Network, PREFIX, process_prefix};
use crate::node::{Node, Role};
use crate::wait::{Probe, poll_until};

/// Set (to anything) to keep every cluster's files after it is dropped.
pub const KEEP_ENV: &str = "RSWARM_E2E_KEEP";
/// Host number of the test's own client namespace on the segment.
const CLIENT_HOST: u8 = 250;
/// Lines of each daemon log printed when a test fails.
const LOG_TAIL_LINES: usize = 60;
/// Node flags that make nodes simulate their tasks (the binary the harness builds
/// has the fake executor; the task's image picks its behaviour, e.g.
/// `fake/crash:1:300` or `fake/missing`).
pub const FAKE_EXECUTOR: &[&str] = &["--executor", "fake"];
/// How long a fresh node may take to come up and join.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One cluster at a time per process: tests of a binary run in parallel threads, and
/// several clusters on a small machine would starve each other's Raft timers.
static ONE_CLUSTER: Mutex<()> = Mutex::new(());

/// Why these tests cannot run here, if they cannot (they need root for network
/// namespaces, and iproute2).
pub fn skip_reason() -> Option<String> {
    if !crate::sys::is_root() {
        return Some("needs root (network namespaces)".into());
    }
    match std::process::Command::new("ip").arg("-V").output() {
        Ok(output) if output.status.success() => None,
        _ => Some("needs iproute2 (`ip`)".into()),
    }
}

/// Nodes in their own namespaces on a private segment, plus a client namespace for
/// the test's own connections. Dropping the cluster stops every daemon (SIGTERM, then
/// SIGKILL), deletes every namespace and removes every file; if the thread is
/// panicking (a failed test), it first prints the tail of every node's log.
pub struct Cluster {
    /// The nodes, in creation order (index = `node-<index+1>`).
    nodes: Vec<Node>,
    /// The test's own namespace on the segment.
    client: Attachment,
    /// The segment; dropped after the nodes so that daemons die before their
    /// namespaces go.
    network: Network,
    /// Holds every node's directory.
    root: TempDir,
    /// What the nodes run.
    binary: PathBuf,
    /// Extra flags given to every node's `init` or `join`.
    node_flags: Vec<String>,
    /// Held for the cluster's lifetime; see [`ONE_CLUSTER`].
    _exclusive: MutexGuard<'static, ()>,
}

impl Cluster {
    /// An empty cluster: the segment and the client namespace, no nodes yet.
    pub fn new() -> anyhow::Result<Cluster> {
        // Before creating anything, so that a build failure leaves nothing behind.
        Cluster::with_binary(rswarm_binary()?)
    }

    /// [`Cluster::new`] with nodes running `binary` instead of `rswarm` (the
    /// harness's own tests use a stand-in).
    pub fn with_binary(binary: PathBuf) -> anyhow::Result<Cluster> {
        let exclusive = ONE_CLUSTER.lock().unwrap_or_else(PoisonError::into_inner);
        let mut network = Network::new()?;
        let client = network.attach(CLIENT_HOST)?;
        let root = tempfile::Builder::new()
            .prefix(&process_prefix())
            .tempdir()
            .context("cannot create the cluster directory")?;
        Ok(Cluster {
            nodes: Vec::new(),
            client,
            network,
            root,
            binary,
            node_flags: Vec::new(),
            _exclusive: exclusive,
        })
    }

    /// A running cluster: `managers` managers (the first one initialises it) and
    /// `workers` workers, all reported ready by the managers.
    pub fn start(managers: usize, workers: usize) -> anyhow::Result<Cluster> {
        Cluster::start_with(managers, workers, &[])
    }

    /// [`Cluster::start`] with extra flags for every `init` and `join` (such as
    /// `--election-min-ms 300`).
    pub fn start_with(
        managers: usize,
        workers: usize,
        node_flags: &[String],
    ) -> anyhow::Result<Cluster> {
        if managers == 0 {
            bail!("a cluster needs at least one manager");
        }
        let mut cluster = Cluster::new()?;
        cluster.node_flags = node_flags.to_vec();
        match cluster.bootstrap(managers, workers) {
            Ok(()) => Ok(cluster),
            Err(err) => {
                // The caller never sees this cluster, so show why it did not form.
                cluster.dump_logs();
                Err(err)
            }
        }
    }

    /// [`Cluster::start`] with every node running tasks through the fake executor
    /// ([`FAKE_EXECUTOR`]), plus `node_flags`.
    pub fn start_fake(
        managers: usize,
        workers: usize,
        node_flags: &[&str],
    ) -> anyhow::Result<Cluster> {
        let flags: Vec<String> = FAKE_EXECUTOR
            .iter()
            .chain(node_flags)
            .map(|f| f.to_string())
            .collect();
        Cluster::start_with(managers, workers, &flags)
    }

    fn bootstrap(&mut self, managers: usize, workers: usize) -> anyhow::Result<()> {
        for _ in 0..managers + workers {
            self.add_node()?;
        }
        self.init(0)?;
        for index in 1..managers {
            self.join(index, Role::Manager, 0)?;
            // Raft changes membership one node at a time: wait until this manager is
            // a voter before adding the next.
            self.wait_managers(0, index + 1, START_TIMEOUT)?;
        }
        for index in managers..managers + workers {
            self.join(index, Role::Worker, 0)?;
        }
        self.wait_nodes_ready(0, managers + workers, START_TIMEOUT)?;
        Ok(())
    }

    /// Adds a node (namespace and directory, no process); returns its index.
    pub fn add_node(&mut self) -> anyhow::Result<usize> {
        let index = self.nodes.len();
        let host = u8::try_from(index + 1)
            .ok()
            .filter(|&host| host < CLIENT_HOST)
            .context("too many nodes")?;
        let attachment = self.network.attach(host)?;
        let name = format!("node-{host}");
        let dir = self.root.path().join(&name);
        let mut node = Node::new(
            name,
            &attachment,
            self.network.hub(),
            dir,
            self.binary.clone(),
        )?;
        node.extra_args = self.node_flags.clone();
        self.nodes.push(node);
        Ok(index)
    }

    /// The nodes.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Node `index`.
    pub fn node(&self, index: usize) -> &Node {
        &self.nodes[index]
    }

    /// Node `index`, to start, stop or cut it.
    pub fn node_mut(&mut self, index: usize) -> &mut Node {
        &mut self.nodes[index]
    }

    /// The test's own namespace (see [`Cluster::client_runtime`]).
    pub fn client_netns(&self) -> &str {
        &self.client.netns
    }

    /// The directory holding every node's files.
    pub fn root_dir(&self) -> &Path {
        self.root.path()
    }

    /// The client namespace's address.
    pub fn client_ip(&self) -> std::net::Ipv4Addr {
        self.client.ip
    }

    /// The segment's namespaces, hub and client included.
    pub fn namespaces(&self) -> Vec<String> {
        self.network.namespaces()
    }

    /// A runtime whose threads can reach the nodes' addresses.
    pub fn client_runtime(&self, threads: usize) -> anyhow::Result<ClientRuntime> {
        ClientRuntime::new(&self.client.netns, threads)
    }

    /// `rswarm init` on node `index`; waits until it answers as the leader.
    pub fn init(&mut self, index: usize) -> anyhow::Result<()> {
        self.nodes[index].start_init()?;
        let node = &mut self.nodes[index];
        poll_until(
            START_TIMEOUT,
            &format!("{} to lead the new cluster", node.name),
            || {
                if !node.is_running() {
                    let log = node.log_tail(10);
                    return Err(Probe::Fail(format!("the daemon exited: {log}")));
                }
                let status = node
                    .cli_json(&["cluster", "status"])
                    .map_err(|e| Probe::Retry(format!("{e:#}")))?;
                let leader = leader_addr(&status);
                if leader.as_deref() == Some(node.addr.to_string().as_str()) {
                    Ok(())
                } else {
                    Err(Probe::Retry(format!("cluster status: {status}")))
                }
            },
        )
    }

    /// The join token for `role`, from node `via`.
    pub fn join_token(&self, via: usize, role: Role) -> anyhow::Result<String> {
        let token = self.nodes[via].cli_ok(&["join-token", role.as_str(), "-q"])?;
        Ok(token.trim().to_string())
    }

    /// Starts `rswarm join` on node `index` as `role`, through manager `via`.
    pub fn join(&mut self, index: usize, role: Role, via: usize) -> anyhow::Result<()> {
        let token = self.join_token(via, role)?;
        let manager = self.nodes[via].addr;
        self.nodes[index].start_join(&token, manager, role)
    }

    /// `rswarm cluster status` through node `via`.
    pub fn status(&self, via: usize) -> anyhow::Result<Value> {
        self.nodes[via].cli_json(&["cluster", "status"])
    }

    /// `rswarm node ls` through node `via`.
    pub fn node_ls(&self, via: usize) -> anyhow::Result<Value> {
        self.nodes[via].cli_json(&["node", "ls"])
    }

    /// `rswarm service ls` through node `via`.
    pub fn service_ls(&self, via: usize) -> anyhow::Result<Value> {
        self.nodes[via].cli_json(&["service", "ls"])
    }

    /// `rswarm service ps SERVICE` (every task, history included) through node `via`.
    pub fn service_ps(&self, via: usize, service: &str) -> anyhow::Result<Vec<Value>> {
        let tasks = self.nodes[via].cli_json(&["service", "ps", service])?;
        match tasks {
            Value::Array(tasks) => Ok(tasks),
            other => bail!("service ps {service} printed no JSON array: {other}"),
        }
    }

    /// The index of the node whose hostname is `name`.
    pub fn index_of_name(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// The index of the node listening on `addr`.
    pub fn index_of(&self, addr: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.addr.to_string() == addr)
    }

    /// Indices of the nodes started as managers whose daemon is running.
    pub fn running_managers(&mut self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].role == Some(Role::Manager) && self.nodes[i].is_running())
            .collect()
    }

    /// Waits until `via` reports `count` managers, all reachable, one of them leader.
    pub fn wait_managers(
        &self,
        via: usize,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let what = format!("{count} reachable managers with a leader");
        poll_until(timeout, &what, || {
            self.check_alive()?;
            let status = self.status(via).map_err(|e| format!("{e:#}"))?;
            let managers = status["managers"].as_array().cloned().unwrap_or_default();
            let reachable = managers.iter().filter(|m| m["reachable"] == true).count();
            let leaders = managers.iter().filter(|m| m["leader"] == true).count();
            if managers.len() == count && reachable == count && leaders == 1 {
                Ok(status)
            } else {
                Err(format!("cluster status: {status}").into())
            }
        })
    }

    /// Waits until `via` lists `count` nodes, all `ready`.
    pub fn wait_nodes_ready(
        &self,
        via: usize,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        poll_until(timeout, &format!("{count} ready nodes"), || {
            self.check_alive()?;
            let nodes = self.node_ls(via).map_err(|e| format!("{e:#}"))?;
            let list = nodes.as_array().cloned().unwrap_or_default();
            if list.len() == count && list.iter().all(|n| n["status"] == "ready") {
                Ok(nodes)
            } else {
                Err(format!("node ls: {nodes}").into())
            }
        })
    }

    /// Waits until every running manager reports the same leader, which is not one of
    /// `exclude`; returns its index.
    pub fn wait_leader(&mut self, exclude: &[usize], timeout: Duration) -> anyhow::Result<usize> {
        let managers = self.running_managers();
        if managers.is_empty() {
            bail!("no manager is running");
        }
        poll_until(timeout, "the running managers to agree on a leader", || {
            self.check_alive()?;
            let mut agreed: Option<String> = None;
            for &index in &managers {
                let status = self.status(index).map_err(|e| format!("{e:#}"))?;
                let leader = leader_addr(&status).ok_or_else(|| {
                    format!("{} knows no leader: {status}", self.nodes[index].name)
                })?;
                match &agreed {
                    Some(seen) if *seen != leader => {
                        return Err(format!("leaders differ: {seen} and {leader}").into());
                    }
                    _ => agreed = Some(leader),
                }
            }
            let leader = agreed.unwrap_or_default();
            let index = self
                .index_of(&leader)
                .ok_or_else(|| format!("leader {leader} is not a node of this cluster"))?;
            if exclude.contains(&index) {
                return Err(format!("leader is still {}", self.nodes[index].name).into());
            }
            Ok(index)
        })
    }

    /// [`Probe::Fail`] naming the first node whose daemon died, with its log.
    fn check_alive(&self) -> Result<(), Probe> {
        match self.nodes.iter().find(|node| node.died()) {
            Some(node) => Err(Probe::Fail(format!(
                "the daemon of {} exited: {}",
                node.name,
                node.log_tail(10)
            ))),
            None => Ok(()),
        }
    }

    /// The current leader, as the first running manager that answers reports it.
    pub fn leader(&mut self) -> anyhow::Result<usize> {
        let mut errors = Vec::new();
        for index in self.running_managers() {
            match self.status(index) {
                Ok(status) => {
                    if let Some(index) = leader_addr(&status).and_then(|a| self.index_of(&a)) {
                        return Ok(index);
                    }
                    errors.push(format!(
                        "{}: no known leader: {status}",
                        self.nodes[index].name
                    ));
                }
                Err(err) => errors.push(format!("{err:#}")),
            }
        }
        bail!("no running manager names a leader: {}", errors.join("; "))
    }

    /// The nodes' addresses, for clients that spread requests over them.
    pub fn addrs(&self, indices: &[usize]) -> Vec<SocketAddr> {
        indices.iter().map(|&i| self.nodes[i].addr).collect()
    }

    /// Prints the tail of every node's log to stderr.
    pub fn dump_logs(&self) {
        for node in &self.nodes {
            eprintln!(
                "----- {} ({}, {}) last {LOG_TAIL_LINES} log lines -----\n{}",
                node.name,
                node.addr,
                node.log_path().display(),
                node.log_tail(LOG_TAIL_LINES)
            );
        }
    }

    /// Moves the nodes' files (data dirs, logs) out of the way of cleanup, to
    /// `$TMPDIR/rswarm-e2e-kept-<pid>-<name>`, which stale-run removal leaves alone.
    fn keep_files(&mut self) {
        let Some(name) = self.root.path().file_name() else {
            return;
        };
        let kept = std::env::temp_dir().join(format!(
            "{PREFIX}kept-{}",
            name.to_string_lossy().trim_start_matches(PREFIX)
        ));
        match std::fs::rename(self.root.path(), &kept) {
            Ok(()) => eprintln!("e2e: node files kept in {}", kept.display()),
            Err(err) => eprintln!("e2e: cannot keep the node files: {err}"),
        }
    }

    /// Stops every daemon: SIGTERM to all, then SIGKILL to those still running
    /// after the grace period.
    pub fn stop_all(&mut self) {
        for node in &mut self.nodes {
            node.send_term();
        }
        let deadline = Instant::now() + crate::node::TERM_GRACE;
        for node in &mut self.nodes {
            if let Err(err) = node.finish_stop(deadline) {
                eprintln!("e2e: {}: cannot stop the daemon: {err:#}", node.name);
            }
        }
        for node in &self.nodes {
            match crate::containers::remove_left(&node.data_dir(), &self.binary) {
                Ok(removed) if !removed.is_empty() => {
                    eprintln!("e2e: {}: removed containers {removed:?}", node.name);
                }
                Ok(_) => {}
                Err(err) => eprintln!("e2e: {}: cannot remove its containers: {err:#}", node.name),
            }
        }
    }

    /// The `rswarm` binary the nodes run (the shim and test program sit next to it).
    pub fn binary(&self) -> &Path {
        &self.binary
    }
}

/// The address of the manager that `status` (cluster status JSON) marks as leader.
pub fn leader_addr(status: &Value) -> Option<String> {
    status["managers"]
        .as_array()?
        .iter()
        .find(|m| m["leader"] == true)
        .and_then(|m| m["addr"].as_str())
        .map(str::to_string)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        self.stop_all();
        if std::env::var_os(KEEP_ENV).is_some() {
            self.keep_files();
        }
        // Fields drop next: nodes, then the network (namespaces), then the directory.
    }
}
