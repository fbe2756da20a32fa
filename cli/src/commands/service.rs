//! `rswarm service ...`.

mod logs;
mod ps;
mod scale;
mod update;

use std::io::Write;
use std::time::Duration;

use rswarm_proto::api::control_client::ControlClient;
use rswarm_proto::api::{
    ContainerSpec, CreateServiceRequest, EndpointSpec, GetServiceRequest, GlobalService,
    ListServicesRequest, LoadBalance, Placement, ReplicatedService, ResourceRequirements,
    Resources, RestartCondition, RestartPolicy, Service, ServiceSpec, TaskSpec, service_spec::Mode,
};
use rswarm_proto::validate::{
    parse_capability, parse_constraint, parse_cpus, parse_env, parse_mount, parse_publish_range,
    parse_replicas, parse_signal, parse_size, parse_user, validate_service_spec,
};

use super::progress::{self, Expect, Watch};
use super::{Context, inspect_each, remove_each, rpc_error, write_line};
use crate::args::{
    EndpointModeArg, Format, LoadBalanceArg, RestartArgs, RestartConditionArg, ServiceCommand,
    ServiceCreateArgs, ServiceMode,
};
use crate::output;
use tonic::transport::Channel;

/// Runs a `service` sub-command.
pub async fn run(
    ctx: &Context,
    command: ServiceCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        ServiceCommand::Create(args) => create(ctx, &args, out).await,
        ServiceCommand::Ls => ls(ctx, out).await,
        ServiceCommand::Inspect { services } => inspect(ctx, &services, out).await,
        ServiceCommand::Rm { services } => rm(ctx, &services, out).await,
        ServiceCommand::Ps(args) => ps::ps(ctx, &args, out).await,
        ServiceCommand::Logs(args) => logs::logs(ctx, &args, out).await,
        ServiceCommand::Update(args) => update::update(ctx, &args, out).await,
        ServiceCommand::Scale { scales } => scale::scale(ctx, &scales, out).await,
    }
}

/// Turns the flags of `service create` into a spec, refusing bad input with the
/// messages the managers would give.
pub fn build_spec(args: &ServiceCreateArgs) -> anyhow::Result<ServiceSpec> {
    let mode = match (args.mode, &args.replicas) {
        (ServiceMode::Global, Some(_)) => {
            anyhow::bail!("--replicas cannot be used with --mode global")
        }
        (ServiceMode::Global, None) => Mode::Global(GlobalService {}),
        (ServiceMode::Replicated, replicas) => Mode::Replicated(ReplicatedService {
            replicas: replicas
                .as_deref()
                .map(parse_replicas)
                .transpose()?
                .unwrap_or(1),
        }),
    };
    for entry in &args.env {
        parse_env(entry)?;
    }
    let constraints = args
        .constraint
        .iter()
        .map(|c| parse_constraint(c).map(|c| c.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ports = Vec::new();
    for publish in &args.publish {
        ports.extend(parse_publish_range(publish)?);
    }
    let task = &args.task;
    let limits = Resources {
        nano_cpus: args
            .limit_cpu
            .as_deref()
            .map(parse_cpus)
            .transpose()?
            .unwrap_or(0),
        memory_bytes: args
            .limit_memory
            .as_deref()
            .map(parse_size)
            .transpose()?
            .unwrap_or(0),
        pids: task
            .limit_pids
            .as_deref()
            .map(parse_pids)
            .transpose()?
            .unwrap_or(0),
    };
    let reservations = Resources {
        nano_cpus: task
            .reserve_cpu
            .as_deref()
            .map(parse_cpus)
            .transpose()?
            .unwrap_or(0),
        memory_bytes: task
            .reserve_memory
            .as_deref()
            .map(parse_size)
            .transpose()?
            .unwrap_or(0),
        pids: 0,
    };
    let max_replicas_per_node = task.replicas_max_per_node.unwrap_or(0);
    let spec = ServiceSpec {
        name: args.name.clone(),
        labels: Default::default(),
        task: Some(TaskSpec {
            container: Some(container_spec(args)?),
            resources: (limits != Resources::default() || reservations != Resources::default())
                .then(|| ResourceRequirements {
                    limits: (limits != Resources::default()).then_some(limits),
                    reservations: (reservations != Resources::default()).then_some(reservations),
                }),
            restart_policy: restart_policy(&args.restart)?,
            force_update: 0,
            placement: (!constraints.is_empty() || max_replicas_per_node != 0).then_some(
                Placement {
                    constraints,
                    max_replicas_per_node,
                },
            ),
        }),
        mode: Some(mode),
        endpoint: (!ports.is_empty()
            || args.lb != LoadBalanceArg::RoundRobin
            || args.endpoint_mode != EndpointModeArg::Vip)
            .then_some(EndpointSpec {
                ports,
                balance: match args.lb {
                    LoadBalanceArg::RoundRobin => LoadBalance::RoundRobin,
                    LoadBalanceArg::LeastConn => LoadBalance::LeastConn,
                }
                .into(),
                mode: rswarm_proto::api::EndpointMode::from(args.endpoint_mode).into(),
            }),
        update_config: update::update_config(&args.update, None)?,
    };
    validate_service_spec(&spec)?;
    Ok(spec)
}

/// The container part of the spec: image, command, environment and the options of
/// [`TaskArgs`](crate::args::TaskArgs), with names put in canonical form.
fn container_spec(args: &ServiceCreateArgs) -> anyhow::Result<ContainerSpec> {
    let task = &args.task;
    if let Some(user) = &task.user {
        parse_user(user)?;
    }
    let stop_grace_period_ms = match task.stop_grace_period {
        Some(grace) if grace.is_zero() => {
            anyhow::bail!("--stop-grace-period must be above zero (the default is 10s)")
        }
        Some(grace) => u64::try_from(grace.as_millis())
            .map_err(|_| anyhow::anyhow!("--stop-grace-period {grace:?} is too long"))?
            .max(1),
        None => 0,
    };
    let command = match &task.entrypoint {
        Some(entrypoint) if entrypoint.trim().is_empty() => {
            anyhow::bail!("--entrypoint must not be empty")
        }
        Some(entrypoint) => vec![entrypoint.clone()],
        None => Vec::new(),
    };
    Ok(ContainerSpec {
        image: args.image.clone(),
        command,
        args: args.args.clone(),
        env: args.env.clone(),
        hostname: task.hostname.clone().unwrap_or_default(),
        user: task.user.clone().unwrap_or_default(),
        dir: task.workdir.clone().unwrap_or_default(),
        mounts: task
            .mount
            .iter()
            .map(|m| parse_mount(m))
            .collect::<Result<_, _>>()?,
        cap_add: task
            .cap_add
            .iter()
            .map(|c| parse_capability(c))
            .collect::<Result<_, _>>()?,
        cap_drop: task
            .cap_drop
            .iter()
            .map(|c| parse_capability(c))
            .collect::<Result<_, _>>()?,
        read_only: task.read_only,
        stop_signal: task
            .stop_signal
            .as_deref()
            .map(parse_signal)
            .transpose()?
            .unwrap_or_default(),
        stop_grace_period_ms,
    })
}

/// Parses `--limit-pids`: a whole number above zero.
fn parse_pids(input: &str) -> anyhow::Result<u64> {
    match input.trim().parse::<u64>() {
        Ok(pids) if pids > 0 => Ok(pids),
        _ => anyhow::bail!("invalid --limit-pids \"{input}\": must be a whole number above 0"),
    }
}

/// The restart policy of the `--restart-*` flags: `None` when none is given, so that
/// the managers' defaults apply.
fn restart_policy(args: &RestartArgs) -> anyhow::Result<Option<RestartPolicy>> {
    if *args == RestartArgs::default() {
        return Ok(None);
    }
    let millis = |flag: &str, d: Option<Duration>| -> anyhow::Result<u64> {
        let d = d.unwrap_or_default();
        u64::try_from(d.as_millis()).map_err(|_| anyhow::anyhow!("--{flag} {d:?} is too long"))
    };
    let delay_ms = millis("restart-delay", args.restart_delay)?;
    if args
        .restart_delay
        .is_some_and(|d| !d.is_zero() && delay_ms == 0)
    {
        anyhow::bail!("--restart-delay must be at least 1ms (or 0 for the default)");
    }
    let window_ms = millis("restart-window", args.restart_window)?;
    if args
        .restart_window
        .is_some_and(|d| !d.is_zero() && window_ms == 0)
    {
        anyhow::bail!("--restart-window must be at least 1ms (or 0 for none)");
    }
    if args.restart_window.is_some_and(|d| !d.is_zero()) && args.restart_max_attempts.is_none() {
        anyhow::bail!(
            "--restart-window needs --restart-max-attempts: it is the span they are counted over"
        );
    }
    let condition = match args.restart_condition.unwrap_or(RestartConditionArg::Any) {
        RestartConditionArg::Any => RestartCondition::Any,
        RestartConditionArg::OnFailure => RestartCondition::OnFailure,
        RestartConditionArg::None => RestartCondition::None,
    };
    if condition == RestartCondition::None
        && (args.restart_max_attempts.is_some() || args.restart_window.is_some())
    {
        anyhow::bail!(
            "--restart-max-attempts and --restart-window have no effect with --restart-condition none"
        );
    }
    Ok(Some(RestartPolicy {
        condition: condition as i32,
        delay_ms,
        max_attempts: args.restart_max_attempts.unwrap_or(0),
        window_ms,
    }))
}

/// Time between two looks at a rollout.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// `service create`: prints the new service's id (table) or the service (JSON), then
/// unless `--detach`, follows the rollout until the tasks run (on stdout, or stderr
/// with `--format json`, whose stdout holds the service alone).
async fn create(
    ctx: &Context,
    args: &ServiceCreateArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let spec = build_spec(args)?;
    let to_assign = spec
        .endpoint
        .iter()
        .flat_map(|e| &e.ports)
        .any(|p| p.published_port == 0);
    let mut control = ctx.control().await?;
    let service = control
        .create_service(CreateServiceRequest { spec: Some(spec) })
        .await
        .map_err(rpc_error)?
        .into_inner();
    if to_assign {
        // The numbers the managers chose; stdout keeps the id (or JSON) alone.
        let ports: Vec<String> = service
            .spec
            .iter()
            .filter_map(|s| s.endpoint.as_ref())
            .flat_map(|e| &e.ports)
            .map(output::port_text)
            .collect();
        eprintln!("published ports: {}", ports.join(", "));
    }
    print_and_follow(
        ctx,
        &mut control,
        &service,
        None,
        args.detach,
        args.timeout,
        out,
    )
    .await
}

/// Prints the service's id (the service with `--format json`), then unless
/// `detach`, follows its rollout (to `target`, after an update).
async fn print_and_follow(
    ctx: &Context,
    control: &mut ControlClient<Channel>,
    service: &Service,
    target: Option<ServiceSpec>,
    detach: bool,
    timeout: Duration,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match ctx.format {
        Format::Json => output::write_json(out, &output::service_json(service)?)?,
        Format::Table => write_line(out, &service.id)?,
    }
    if detach {
        return Ok(());
    }
    let mut watch = watch_of(ctx, service, timeout);
    watch.target = target;
    follow(ctx, control, &watch, out).await
}

/// How to follow `service`'s rollout.
fn watch_of(ctx: &Context, service: &Service, timeout: Duration) -> Watch {
    let spec = service.spec.clone().unwrap_or_default();
    Watch {
        service_id: service.id.clone(),
        expect: match spec.mode {
            Some(Mode::Global(_)) => Expect::Global,
            Some(Mode::Replicated(r)) => Expect::Replicated(r.replicas),
            None => Expect::Replicated(1),
        },
        constraints: spec
            .task
            .and_then(|t| t.placement)
            .map(|p| p.constraints)
            .unwrap_or_default(),
        service_name: spec.name,
        timeout,
        interval: POLL_INTERVAL,
        tty: ctx.tty && ctx.format == Format::Table,
        target: None,
    }
}

/// Follows a rollout until it converges, fails, times out or is interrupted
/// (Ctrl-C); the progress goes to `out`, or to stderr with `--format json`, whose
/// stdout holds the service alone.
async fn follow(
    ctx: &Context,
    control: &mut ControlClient<Channel>,
    watch: &Watch,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let interrupted = async {
        // Without a signal handler there is nothing to wait for but the timeout.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    match ctx.format {
        Format::Table => progress::watch(control, watch, out, interrupted).await,
        Format::Json => {
            let mut stderr = std::io::stderr();
            progress::watch(control, watch, &mut stderr, interrupted).await
        }
    }
}

/// `service ls`.
async fn ls(ctx: &Context, out: &mut dyn Write) -> anyhow::Result<()> {
    let services = ctx
        .control()
        .await?
        .list_services(ListServicesRequest {})
        .await
        .map_err(rpc_error)?
        .into_inner()
        .services;
    let rows = output::service_rows(&services);
    match ctx.format {
        Format::Json => output::write_json(out, &serde_json::to_value(&rows)?),
        Format::Table => write_line(out, &output::services_table(&rows)),
    }
}

/// `service inspect`: a JSON array whatever the format, like `docker inspect`.
async fn inspect(ctx: &Context, references: &[String], out: &mut dyn Write) -> anyhow::Result<()> {
    let control = ctx.control().await?;
    inspect_each(references, out, |reference| {
        let mut control = control.clone();
        async move {
            let service = control
                .get_service(GetServiceRequest { reference })
                .await?
                .into_inner();
            output::service_json(&service).map_err(|e| tonic::Status::internal(e.to_string()))
        }
    })
    .await
}

/// `service rm`: prints each removed reference (a JSON array of them with `--format
/// json`).
async fn rm(ctx: &Context, references: &[String], out: &mut dyn Write) -> anyhow::Result<()> {
    let control = ctx.control().await?;
    remove_each(ctx, references, out, |reference| {
        let mut control = control.clone();
        async move {
            control
                .remove_service(GetServiceRequest { reference })
                .await
                .map(|_| ())
        }
    })
    .await
}

#[cfg(test)]
mod tests;
