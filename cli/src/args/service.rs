//! The flags of `rswarm service ...` and the duration parsers they share.

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

/// `rswarm service ...`.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ServiceCommand {
    /// Create a service.
    Create(Box<ServiceCreateArgs>),
    /// List the services.
    #[command(visible_alias = "list")]
    Ls,
    /// Show services in detail.
    Inspect {
        /// Service ids, id prefixes or names.
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Remove services and their tasks.
    #[command(visible_alias = "remove")]
    Rm {
        /// Service ids, id prefixes or names.
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// List the tasks of services, each slot's current task first, then its history.
    Ps(ServicePsArgs),
    /// Show the output of a service's tasks, gathered from every node.
    Logs(ServiceLogsArgs),
    /// Change a service: its image, environment, ports, placement or limits. Tasks
    /// made from the old spec are replaced a few at a time (a rolling update).
    Update(Box<ServiceUpdateArgs>),
    /// Change the number of tasks of replicated services.
    Scale {
        /// `NAME=N`: a service id, id prefix or name, and its new number of tasks.
        #[arg(required = true, allow_hyphen_values = true, value_name = "NAME=N")]
        scales: Vec<String>,
    },
}

/// `rswarm service ps`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ServicePsArgs {
    /// Only some tasks: `desired-state=STATE` (repeatable; tasks matching any).
    #[arg(short, long, allow_hyphen_values = true)]
    pub filter: Vec<String>,
    /// Service ids, id prefixes or names.
    #[arg(required = true)]
    pub services: Vec<String>,
}

/// How a service's tasks are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServiceMode {
    /// A fixed number of tasks (`--replicas`).
    Replicated,
    /// One task on every eligible node.
    Global,
}

/// `rswarm service create`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ServiceCreateArgs {
    /// The service's name (letters, digits, `_`, `.`, `-`; up to 63 characters).
    #[arg(long, allow_hyphen_values = true)]
    pub name: String,
    /// Number of tasks (replicated mode only; default 1).
    #[arg(long, allow_hyphen_values = true)]
    pub replicas: Option<String>,
    /// Replicated or global.
    #[arg(long, value_enum, default_value_t = ServiceMode::Replicated)]
    pub mode: ServiceMode,
    /// Environment variable `KEY=VALUE` (repeatable).
    #[arg(short, long, allow_hyphen_values = true)]
    pub env: Vec<String>,
    /// Placement constraint like `node.labels.zone==eu` (repeatable).
    #[arg(long, allow_hyphen_values = true)]
    pub constraint: Vec<String>,
    /// Publish a port: `PUBLISHED:TARGET[/udp]`, `TARGET[/udp]` (the managers
    /// choose the published port, from 30000-32767), a range in either form
    /// (`8080-8081:80-81`) or
    /// `published=P,target=T,protocol=tcp|udp,mode=ingress|host` (repeatable).
    #[arg(short, long, allow_hyphen_values = true)]
    pub publish: Vec<String>,
    /// How the proxy spreads new connections over the service's tasks.
    #[arg(long, value_enum, default_value_t = LoadBalanceArg::RoundRobin)]
    pub lb: LoadBalanceArg,
    /// How other tasks reach the service by name: its virtual IP, or (dnsrr) the
    /// addresses of its tasks, with host-mode ports only.
    #[arg(long, value_enum, default_value_t = EndpointModeArg::Vip)]
    pub endpoint_mode: EndpointModeArg,
    /// Memory limit, like `64MiB` or `1g`.
    #[arg(long, allow_hyphen_values = true)]
    pub limit_memory: Option<String>,
    /// CPU limit, like `0.5` or `2`.
    #[arg(long, allow_hyphen_values = true)]
    pub limit_cpu: Option<String>,
    /// When and how often the service's tasks are restarted.
    #[command(flatten)]
    pub restart: RestartArgs,
    /// How a later change of the spec is rolled out.
    #[command(flatten)]
    pub update: UpdateConfigArgs,
    /// The container's options, resources and placement beyond the common ones.
    #[command(flatten)]
    pub task: TaskArgs,
    /// Return once the service is created, without following its rollout.
    #[arg(short, long)]
    pub detach: bool,
    /// How long to follow the rollout before giving up (`90s`, `2m`, `500ms`, or
    /// seconds); the service stays either way.
    #[arg(long, default_value = "120s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// The container image.
    pub image: String,
    /// Command and arguments, passed to the image's entrypoint (as `docker service
    /// create IMAGE ARG...` does).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub args: Vec<String>,
}

/// How `service update` replaces a service's tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct UpdateConfigArgs {
    /// Tasks replaced at once by an update (0: all at once; default 1).
    #[arg(long)]
    pub update_parallelism: Option<u64>,
    /// Pause after a replaced task has passed its monitor period, before the next
    /// is replaced (`10s`, `500ms`...; default 0).
    #[arg(long, value_parser = parse_duration)]
    pub update_delay: Option<Duration>,
    /// How long a replaced task must keep running to count as updated; one that
    /// fails sooner holds the update (`5s`...; default 5s, 0: as soon as it runs).
    #[arg(long, value_parser = parse_duration)]
    pub update_monitor: Option<Duration>,
}

/// `rswarm service update`: each option changes one thing of the current spec.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ServiceUpdateArgs {
    /// A new container image.
    #[arg(long, allow_hyphen_values = true)]
    pub image: Option<String>,
    /// A new number of tasks (replicated mode only).
    #[arg(long, allow_hyphen_values = true)]
    pub replicas: Option<String>,
    /// Add or change an environment variable `KEY=VALUE` (repeatable).
    #[arg(long, allow_hyphen_values = true)]
    pub env_add: Vec<String>,
    /// Remove an environment variable by key (repeatable).
    #[arg(long, allow_hyphen_values = true)]
    pub env_rm: Vec<String>,
    /// Publish a port, in the syntax of `service create --publish`; replaces the
    /// port published on the same number and protocol (repeatable).
    #[arg(long, allow_hyphen_values = true)]
    pub publish_add: Vec<String>,
    /// Stop publishing a port: `PUBLISHED[/tcp|/udp]` or a range `FIRST-LAST`
    /// (repeatable; applied before `--publish-add`).
    #[arg(long, allow_hyphen_values = true)]
    pub publish_rm: Vec<String>,
    /// Add a placement constraint like `node.labels.zone==eu` (repeatable).
    #[arg(long, allow_hyphen_values = true)]
    pub constraint_add: Vec<String>,
    /// Remove a placement constraint, written as it was added (repeatable).
    #[arg(long, allow_hyphen_values = true)]
    pub constraint_rm: Vec<String>,
    /// How the proxy spreads new connections over the service's tasks.
    #[arg(long, value_enum)]
    pub lb: Option<LoadBalanceArg>,
    /// A new endpoint mode: `vip` or `dnsrr` (the service's VIP is given or
    /// taken away).
    #[arg(long, value_enum)]
    pub endpoint_mode: Option<EndpointModeArg>,
    /// A new memory limit, like `64MiB` (`0`: none).
    #[arg(long, allow_hyphen_values = true)]
    pub limit_memory: Option<String>,
    /// A new CPU limit, like `0.5` (`0`: none).
    #[arg(long, allow_hyphen_values = true)]
    pub limit_cpu: Option<String>,
    /// How this and later updates are rolled out.
    #[command(flatten)]
    pub update: UpdateConfigArgs,
    /// Replace the tasks even if nothing else changes.
    #[arg(long)]
    pub force: bool,
    /// Return once the spec is updated, without following the rolling update.
    #[arg(short, long)]
    pub detach: bool,
    /// How long to follow the rolling update before giving up (`90s`, `2m`...); the
    /// update goes on either way.
    #[arg(long, default_value = "120s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Service id, id prefix or name.
    pub service: String,
}

/// `rswarm service logs`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ServiceLogsArgs {
    /// Keep printing new lines until interrupted.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines of each task (`all` for every line).
    #[arg(short = 'n', long, default_value = "all", value_parser = parse_tail)]
    pub tail: i64,
    /// Show when each line was written.
    #[arg(short, long)]
    pub timestamps: bool,
    /// Service id, id prefix or name.
    pub service: String,
}

/// Parses `--tail`: `all` (-1) or a whole number.
pub fn parse_tail(input: &str) -> Result<i64, String> {
    match input.trim() {
        "all" => Ok(-1),
        n => n
            .parse::<u32>()
            .map(i64::from)
            .map_err(|_| format!("invalid tail \"{input}\": expected a number of lines or `all`")),
    }
}

/// The container options, reservations and placement limits of `service create`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct TaskArgs {
    /// Limit on the number of processes, like `100`.
    #[arg(long, allow_hyphen_values = true)]
    pub limit_pids: Option<String>,
    /// CPU a node must have free for each task, like `0.25`.
    #[arg(long, allow_hyphen_values = true)]
    pub reserve_cpu: Option<String>,
    /// Memory a node must have free for each task, like `128MiB`.
    #[arg(long, allow_hyphen_values = true)]
    pub reserve_memory: Option<String>,
    /// Most tasks of this service on one node (0: no limit).
    #[arg(long)]
    pub replicas_max_per_node: Option<u64>,
    /// The container's hostname (default: the task's name).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Run as `UID[:GID]` or `NAME[:GROUP]` (default: the image's user).
    #[arg(short, long)]
    pub user: Option<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Replace the image's entrypoint (one word; arguments go after the image).
    #[arg(long, allow_hyphen_values = true)]
    pub entrypoint: Option<String>,
    /// `type=bind|volume|tmpfs,source=S,target=T[,readonly][,tmpfs-size=SIZE]`
    /// (repeatable).
    #[arg(long, allow_hyphen_values = true)]
    pub mount: Vec<String>,
    /// Add a Linux capability, like `NET_ADMIN` or `ALL` (repeatable).
    #[arg(long)]
    pub cap_add: Vec<String>,
    /// Drop a Linux capability, like `CHOWN` or `ALL` (repeatable).
    #[arg(long)]
    pub cap_drop: Vec<String>,
    /// Mount the container's root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,
    /// The signal that asks the container to stop (default SIGTERM).
    #[arg(long)]
    pub stop_signal: Option<String>,
    /// Time between the stop signal and SIGKILL (`10s`, `500ms`...; default 10s).
    #[arg(long, value_parser = parse_duration)]
    pub stop_grace_period: Option<Duration>,
}

/// When a task that ended is replaced (`--restart-condition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RestartConditionArg {
    /// Whatever the exit code.
    Any,
    /// Only after a non-zero exit code or a failure to start.
    OnFailure,
    /// Never.
    None,
}

/// The restart policy flags of `service create`; a policy is sent only when one is
/// given (the managers' default is to restart any task, after 100 ms, forever).
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct RestartArgs {
    /// Restart tasks when they end: any, on-failure or none (default any).
    #[arg(long, value_enum)]
    pub restart_condition: Option<RestartConditionArg>,
    /// First wait before a restart (`5s`, `100ms`...; doubled on each failure).
    #[arg(long, value_parser = parse_duration)]
    pub restart_delay: Option<Duration>,
    /// Restarts allowed within `--restart-window` (0: unlimited).
    #[arg(long)]
    pub restart_max_attempts: Option<u64>,
    /// The window `--restart-max-attempts` is counted over (`1m`...).
    #[arg(long, value_parser = parse_duration)]
    pub restart_window: Option<Duration>,
}

/// Parses a duration like `120s`, `2m`, `500ms` or `30` (seconds); zero is refused,
/// since it would give up before the first look.
pub fn parse_timeout(input: &str) -> Result<Duration, String> {
    let duration = parse_duration(input)?;
    if duration.is_zero() {
        return Err(format!(
            "invalid duration \"{}\": must be above zero",
            input.trim()
        ));
    }
    Ok(duration)
}

/// Parses a duration like `120s`, `2m`, `500ms` or `30` (seconds), zero included.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let input = input.trim();
    let split = input
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(input.len());
    let (number, unit) = input.split_at(split);
    let invalid = || format!("invalid duration \"{input}\": expected a number with ms, s, m or h");
    let number: u64 = number.parse().map_err(|_| invalid())?;
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "" | "s" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number.saturating_mul(60))),
        "h" => Ok(Duration::from_secs(number.saturating_mul(3600))),
        _ => Err(invalid()),
    }
}

/// `--endpoint-mode`: what the service's name resolves to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum EndpointModeArg {
    /// A virtual IP, served by every node's proxy.
    #[default]
    Vip,
    /// The addresses of the service's tasks (DNS round-robin), no virtual IP.
    Dnsrr,
}

impl From<EndpointModeArg> for rswarm_proto::api::EndpointMode {
    fn from(mode: EndpointModeArg) -> Self {
        match mode {
            EndpointModeArg::Vip => rswarm_proto::api::EndpointMode::Vip,
            EndpointModeArg::Dnsrr => rswarm_proto::api::EndpointMode::Dnsrr,
        }
    }
}

/// `--lb`: the proxy's choice of a task for a new connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LoadBalanceArg {
    /// Each new connection goes to the next task in turn.
    #[default]
    RoundRobin,
    /// Each new connection goes to the task with the fewest open connections.
    LeastConn,
}
