//! Command-line arguments. Values that rswarm validates itself (replicas, sizes,
//! ports, constraints...) are taken as plain strings here and checked with
//! `rswarm_proto::validate`, so that the CLI prints the same messages as the managers.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Where the node daemon listens for local clients by default.
pub const DEFAULT_HOST: &str = "unix:///var/lib/rswarm/rswarm.sock";
/// Where a node keeps its state by default.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/rswarm";
/// Where the admin client certificate lives by default (for TCP hosts).
pub const DEFAULT_CERT_DIR: &str = "/var/lib/rswarm/admin";
/// The node daemon's default listen address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:4242";

/// rswarm: a container cluster manager. `init`, `join` and `daemon` run a node; the
/// other commands are clients of a manager's control API.
#[derive(Debug, Parser)]
#[command(name = "rswarm", version, about, propagate_version = true)]
pub struct Cli {
    /// Manager to talk to: `unix:///PATH` (a node's local socket) or `IP:PORT` (mTLS).
    #[arg(long, global = true, env = "RSWARM_HOST", default_value = DEFAULT_HOST)]
    pub host: Host,
    /// Directory holding the admin certificate, key and CA used for TCP hosts.
    #[arg(long, global = true, env = "RSWARM_CERT_DIR", default_value = DEFAULT_CERT_DIR)]
    pub cert_dir: PathBuf,
    /// Output format of client commands.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The address of a manager's control API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A Unix socket path (from `unix:///PATH`).
    Unix(PathBuf),
    /// A TCP address, reached over mutual TLS.
    Tcp(SocketAddr),
}

impl FromStr for Host {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "invalid host \"{s}\": a unix socket path must be absolute (unix:///PATH)"
                ));
            }
            return Ok(Host::Unix(PathBuf::from(path)));
        }
        let addr = s.strip_prefix("tcp://").unwrap_or(s);
        addr.parse()
            .map(Host::Tcp)
            .map_err(|_| format!("invalid host \"{s}\": expected unix:///PATH or IP:PORT"))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Unix(path) => write!(f, "unix://{}", path.display()),
            Host::Tcp(addr) => write!(f, "{addr}"),
        }
    }
}

/// How client commands print their results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable tables and messages.
    Table,
    /// Exactly one JSON value on stdout.
    Json,
}

/// The sub-commands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Create a new cluster with this node as its first manager, and run the node.
    Init(InitArgs),
    /// Join an existing cluster as a worker or manager (the token decides), and run
    /// the node.
    Join(JoinArgs),
    /// Run an already initialised or joined node again (after a restart).
    Daemon(DaemonArgs),
    /// Print (or rotate) the token for joining workers or managers.
    JoinToken(JoinTokenArgs),
    /// Inspect the cluster.
    Cluster {
        /// What to do.
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Manage nodes.
    Node {
        /// What to do.
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// Manage services.
    Service {
        /// What to do.
        #[command(subcommand)]
        command: ServiceCommand,
    },
    /// Manage the cluster's images.
    Image {
        /// What to do.
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Manage this node's named volumes.
    Volume {
        /// What to do.
        #[command(subcommand)]
        command: VolumeCommand,
    },
}

/// `rswarm volume ...`: the named volumes of the node whose socket is used.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum VolumeCommand {
    /// List this node's volumes.
    #[command(alias = "list")]
    Ls,
    /// Remove volumes and their data (refused while a container mounts them).
    #[command(alias = "remove")]
    Rm {
        /// Volume names.
        #[arg(required = true)]
        volumes: Vec<String>,
    },
}

/// `rswarm image ...`.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ImageCommand {
    /// Import an image into the cluster: a root filesystem tarball (as `docker
    /// import`), a `docker save` archive or an OCI image layout (tar), from FILE or
    /// `-` (stdin). Every node can then run it.
    Import {
        /// The image's name, `NAME[:TAG]` (required when the archive names none).
        #[arg(long)]
        name: Option<String>,
        /// The archive, or `-` for stdin.
        file: String,
    },
    /// List the cluster's images.
    #[command(alias = "list")]
    Ls,
    /// Remove images by name or id (refused while a service uses them).
    #[command(alias = "remove")]
    Rm {
        /// Names (`NAME[:TAG]`) or ids.
        #[arg(required = true)]
        images: Vec<String>,
    },
}

impl Command {
    /// Whether the command runs a node daemon (rather than a client request).
    pub fn is_daemon(&self) -> bool {
        matches!(
            self,
            Command::Init(_) | Command::Join(_) | Command::Daemon(_)
        )
    }
}

/// Raft timing, fixed for the cluster at `init`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct RaftArgs {
    /// Interval between the leader's heartbeats, in milliseconds.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub heartbeat_ms: u64,
    /// Lower bound of the randomised election timeout, in milliseconds.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    pub election_min_ms: u64,
    /// Upper bound of the randomised election timeout, in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub election_max_ms: u64,
}

impl RaftArgs {
    /// Checks heartbeat < election minimum < election maximum: otherwise followers
    /// would start elections while the leader is healthy.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.heartbeat_ms >= self.election_min_ms {
            anyhow::bail!(
                "--heartbeat-ms ({}) must be below --election-min-ms ({})",
                self.heartbeat_ms,
                self.election_min_ms
            );
        }
        if self.election_min_ms >= self.election_max_ms {
            anyhow::bail!(
                "--election-min-ms ({}) must be below --election-max-ms ({})",
                self.election_min_ms,
                self.election_max_ms
            );
        }
        Ok(())
    }
}

/// What `init` and `join` both take: where the node keeps its state, how other
/// nodes reach it, and what runs its tasks.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct NodeArgs {
    /// Directory for the node's state, certificates and control socket.
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Address the node listens on for other nodes (IP:PORT).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Address other nodes reach this one on; defaults to the listen address.
    #[arg(long)]
    pub advertise: Option<SocketAddr>,
    /// Hostname the node reports; defaults to the system's.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Runtime for this node's tasks: `container` runs them (root); `none` refuses
    /// them; `fake` simulates them (cluster tests; needs the `fake-executor` build
    /// feature).
    #[arg(long, default_value = "container")]
    pub executor: String,
    /// Run every container of this node in a user namespace (like Docker's
    /// `--userns-remap`): container root is an unprivileged host uid. `default`
    /// maps container ids 0-65535 to the `rswarm` range of /etc/subuid and
    /// /etc/subgid (else 100000-165535); `UID:GID:SIZE` gives the host range.
    /// Off when absent; fixed when the node is created.
    #[arg(long, value_name = "default|UID:GID:SIZE")]
    pub userns_remap: Option<String>,
}

/// `rswarm init`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct InitArgs {
    /// Where the node keeps its state and how it is reached.
    #[command(flatten)]
    pub node: NodeArgs,
    /// Raft timing.
    #[command(flatten)]
    pub raft: RaftArgs,
    /// The IPv4 pool the nodes' task subnets are cut from, one /24 per node
    /// (prefix length 8 to 24).
    #[arg(long, value_name = "CIDR", default_value = rswarm_manager::network::DEFAULT_POOL,
          value_parser = parse_pool)]
    pub pool: String,
}

fn parse_pool(s: &str) -> Result<String, String> {
    rswarm_manager::network::parse_pool(s)
        .map(|p| p.to_string())
        .map_err(|e| e.to_string())
}

/// `rswarm join`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct JoinArgs {
    /// The join token printed by `rswarm join-token worker|manager`.
    #[arg(long)]
    pub token: String,
    /// Where the node keeps its state and how it is reached.
    #[command(flatten)]
    pub node: NodeArgs,
    /// Raft timing (used if the node joins as a manager).
    #[command(flatten)]
    pub raft: RaftArgs,
    /// A manager of the cluster (IP:PORT).
    pub manager_addr: SocketAddr,
}

/// `rswarm daemon`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct DaemonArgs {
    /// Directory holding the node's state, as given to `init` or `join`.
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
}

/// Which join token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TokenRole {
    /// The token that makes a joining node a worker.
    Worker,
    /// The token that makes a joining node a manager.
    Manager,
}

impl TokenRole {
    /// The name the control API expects.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRole::Worker => "worker",
            TokenRole::Manager => "manager",
        }
    }
}

/// `rswarm join-token`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct JoinTokenArgs {
    /// Which token.
    #[arg(value_enum)]
    pub role: TokenRole,
    /// Print the token only.
    #[arg(short, long)]
    pub quiet: bool,
    /// Replace the token with a new one; the old one stops working.
    #[arg(long)]
    pub rotate: bool,
}

/// `rswarm cluster ...`.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ClusterCommand {
    /// Show the cluster's id, Raft state and managers.
    Status,
}

/// `rswarm node ...`.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum NodeCommand {
    /// List the nodes.
    #[command(visible_alias = "list")]
    Ls,
    /// Show nodes in detail.
    Inspect {
        /// Node ids, id prefixes or hostnames.
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Change a node's availability or labels.
    Update(NodeUpdateArgs),
    /// Make workers managers.
    Promote {
        /// Node ids, id prefixes or hostnames.
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Make managers workers.
    Demote {
        /// Node ids, id prefixes or hostnames.
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Remove nodes from the cluster.
    #[command(visible_alias = "remove")]
    Rm {
        /// Remove a node even if it is not down.
        #[arg(short, long)]
        force: bool,
        /// Node ids, id prefixes or hostnames.
        #[arg(required = true)]
        nodes: Vec<String>,
    },
}

/// `rswarm node update`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct NodeUpdateArgs {
    /// `active`, `pause` (no new tasks) or `drain` (tasks move elsewhere).
    #[arg(long, allow_hyphen_values = true)]
    pub availability: Option<String>,
    /// Add or change a label (`KEY=VALUE`, or `KEY` for an empty value).
    #[arg(long, allow_hyphen_values = true)]
    pub label_add: Vec<String>,
    /// Remove a label by key.
    #[arg(long, allow_hyphen_values = true)]
    pub label_rm: Vec<String>,
    /// Node id, id prefix or hostname.
    pub node: String,
}

pub mod service;
#[cfg(test)]
mod tests;

pub use service::{
    EndpointModeArg, LoadBalanceArg, RestartArgs, RestartConditionArg, ServiceCommand,
    ServiceCreateArgs, ServiceLogsArgs, ServiceMode, ServicePsArgs, ServiceUpdateArgs,
    UpdateConfigArgs,
};
