//! `rswarm service update`: changes a service's spec; the managers then replace its
//! tasks a few at a time, and the command follows that rolling update.

use std::io::Write;
use std::time::Duration;

use rswarm_proto::api::{
    GetServiceRequest, LoadBalance, Resources, ServiceSpec, UpdateConfig, UpdateServiceRequest,
    service_spec::Mode,
};
use rswarm_proto::rollout::DEFAULT_MONITOR_MS;
use rswarm_proto::validate::{
    parse_constraint, parse_cpus, parse_env, parse_publish_range, parse_published_range,
    parse_replicas, parse_size, validate_service_spec,
};

use super::print_and_follow;
use crate::args::{LoadBalanceArg, ServiceUpdateArgs, UpdateConfigArgs};
use crate::commands::{Context, rpc_error};

/// The update config with the `--update-*` flags applied to `current` (the
/// managers' defaults when the service has none: one task at a time, each watched
/// for 5 s, no delay); `None` when no flag is given and there is no config yet.
pub fn update_config(
    args: &UpdateConfigArgs,
    current: Option<UpdateConfig>,
) -> anyhow::Result<Option<UpdateConfig>> {
    if *args == UpdateConfigArgs::default() {
        return Ok(current);
    }
    let mut config = current.unwrap_or(UpdateConfig {
        parallelism: 1,
        delay_ms: 0,
        monitor_ms: DEFAULT_MONITOR_MS,
    });
    let millis = |flag: &str, d: Duration| {
        u64::try_from(d.as_millis()).map_err(|_| anyhow::anyhow!("--{flag} {d:?} is too long"))
    };
    if let Some(parallelism) = args.update_parallelism {
        config.parallelism = parallelism;
    }
    if let Some(delay) = args.update_delay {
        config.delay_ms = millis("update-delay", delay)?;
    }
    if let Some(monitor) = args.update_monitor {
        config.monitor_ms = millis("update-monitor", monitor)?;
    }
    Ok(Some(config))
}

/// Applies the options of `service update` to `spec`, refusing bad input (and a
/// command with no option at all) with a message naming the option.
pub fn apply(spec: &mut ServiceSpec, args: &ServiceUpdateArgs) -> anyhow::Result<()> {
    let name = spec.name.clone();
    let given = args.image.is_some()
        || args.replicas.is_some()
        || !args.env_add.is_empty()
        || !args.env_rm.is_empty()
        || !args.publish_add.is_empty()
        || !args.publish_rm.is_empty()
        || !args.constraint_add.is_empty()
        || !args.constraint_rm.is_empty()
        || args.lb.is_some()
        || args.endpoint_mode.is_some()
        || args.limit_memory.is_some()
        || args.limit_cpu.is_some()
        || args.update != UpdateConfigArgs::default()
        || args.force;
    if !given {
        anyhow::bail!(
            "nothing to update for service {name}: give at least one option (see `rswarm \
             service update --help`), or --force to replace its tasks as they are"
        );
    }
    if let Some(replicas) = &args.replicas {
        let replicas = parse_replicas(replicas)?;
        match spec.mode.as_mut() {
            Some(Mode::Replicated(r)) => r.replicas = replicas,
            _ => anyhow::bail!("--replicas cannot be used with global service {name}"),
        }
    }
    let task = spec.task.get_or_insert_default();
    let container = task.container.get_or_insert_default();
    if let Some(image) = &args.image {
        if image.trim().is_empty() {
            anyhow::bail!("--image must not be empty");
        }
        container.image = image.trim().to_string();
    }
    // (key, KEY=VALUE) for each variable added.
    let added = args
        .env_add
        .iter()
        .map(|entry| Ok((parse_env(entry)?.0, entry)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    fn key_of(entry: &str) -> &str {
        entry.split_once('=').map_or(entry, |(k, _)| k)
    }
    for key in &args.env_rm {
        if !container.env.iter().any(|entry| key_of(entry) == key) {
            anyhow::bail!("--env-rm {key}: service {name} has no environment variable {key:?}");
        }
        // Removed and added again: `--env-add` replaces it where it is.
        if !added.iter().any(|(k, _)| k == key) {
            container.env.retain(|entry| key_of(entry) != key);
        }
    }
    for (key, entry) in added {
        match container.env.iter_mut().find(|e| key_of(e) == key) {
            Some(existing) => existing.clone_from(entry),
            None => container.env.push(entry.clone()),
        }
    }
    if !args.constraint_add.is_empty() || !args.constraint_rm.is_empty() {
        let placement = task.placement.get_or_insert_default();
        let added = args
            .constraint_add
            .iter()
            .map(|c| Ok(parse_constraint(c)?.to_string()))
            .collect::<anyhow::Result<Vec<String>>>()?;
        let mut removed = Vec::new();
        for constraint in &args.constraint_rm {
            let canonical = parse_constraint(constraint)?.to_string();
            if !placement.constraints.contains(&canonical) {
                anyhow::bail!(
                    "--constraint-rm {constraint}: service {name} has no such constraint"
                );
            }
            removed.push(canonical);
        }
        // One removed and added again keeps its place: the list, and so the
        // tasks, stay as they are.
        placement
            .constraints
            .retain(|c| !removed.contains(c) || added.contains(c));
        for canonical in added {
            if !placement.constraints.contains(&canonical) {
                placement.constraints.push(canonical);
            }
        }
        if placement.constraints.is_empty() && placement.max_replicas_per_node == 0 {
            task.placement = None;
        }
    }
    if args.limit_memory.is_some() || args.limit_cpu.is_some() {
        let resources = task.resources.get_or_insert_default();
        set_limits(resources, args)?;
        if resources.limits.is_none() && resources.reservations.is_none() {
            task.resources = None;
        }
    }
    if args.force {
        task.force_update = task.force_update.wrapping_add(1);
    }
    if !args.publish_rm.is_empty()
        || !args.publish_add.is_empty()
        || args.lb.is_some()
        || args.endpoint_mode.is_some()
    {
        let endpoint = spec.endpoint.get_or_insert_default();
        let mut added = Vec::new();
        for port in &args.publish_add {
            added.extend(parse_publish_range(port)?);
        }
        // All checked before any is removed.
        let publishes = |published: u32, protocol: i32| {
            move |p: &rswarm_proto::api::PortConfig| {
                p.published_port == published && p.protocol == protocol
            }
        };
        let mut removed = Vec::new();
        for port in &args.publish_rm {
            for (published, protocol) in parse_published_range(port)? {
                let protocol = protocol as i32;
                if !endpoint.ports.iter().any(publishes(published, protocol)) {
                    anyhow::bail!(
                        "--publish-rm {port}: service {name} does not publish port \
                         {published}/{}",
                        crate::output::names::protocol(protocol)
                    );
                }
                removed.push(publishes(published, protocol));
            }
        }
        for is in removed {
            // Removed and added again: `--publish-add` replaces it where it is.
            if !added.iter().any(&is) {
                endpoint.ports.retain(|p| !is(p));
            }
        }
        for port in added {
            // In place, so that the same port again changes nothing; ports
            // whose number the managers choose (0) are all new.
            match endpoint.ports.iter_mut().find(|p| {
                port.published_port != 0
                    && p.published_port == port.published_port
                    && p.protocol == port.protocol
            }) {
                Some(existing) => *existing = port,
                None => endpoint.ports.push(port),
            }
        }
        if let Some(lb) = args.lb {
            endpoint.balance = match lb {
                LoadBalanceArg::RoundRobin => LoadBalance::RoundRobin,
                LoadBalanceArg::LeastConn => LoadBalance::LeastConn,
            }
            .into();
        }
        if let Some(mode) = args.endpoint_mode {
            endpoint.mode = rswarm_proto::api::EndpointMode::from(mode).into();
        }
        if endpoint.ports.is_empty()
            && endpoint.balance == LoadBalance::RoundRobin as i32
            && endpoint.mode == rswarm_proto::api::EndpointMode::Vip as i32
        {
            spec.endpoint = None;
        }
    }
    spec.update_config = update_config(&args.update, spec.update_config)?;
    validate_service_spec(spec)?;
    Ok(())
}

/// `--limit-memory` and `--limit-cpu`: a new value, or `0` for none.
fn set_limits(
    resources: &mut rswarm_proto::api::ResourceRequirements,
    args: &ServiceUpdateArgs,
) -> anyhow::Result<()> {
    let none = |input: &str| input.trim() == "0";
    let limits = resources.limits.get_or_insert_default();
    if let Some(memory) = &args.limit_memory {
        limits.memory_bytes = if none(memory) { 0 } else { parse_size(memory)? };
    }
    if let Some(cpus) = &args.limit_cpu {
        limits.nano_cpus = if none(cpus) { 0 } else { parse_cpus(cpus)? };
    }
    if *limits == Resources::default() {
        resources.limits = None;
    }
    Ok(())
}

/// `service update`: reads the service, applies the options, sends the new spec with
/// the version it was read at (so a concurrent change is refused, not undone), prints
/// the service's id (or the service with `--format json`), then unless `--detach`
/// follows the rolling update until every task runs the new spec.
pub async fn update(
    ctx: &Context,
    args: &ServiceUpdateArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut control = ctx.control().await?;
    let current = control
        .get_service(GetServiceRequest {
            reference: args.service.clone(),
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    let mut spec = current.spec.clone().unwrap_or_default();
    apply(&mut spec, args)?;
    let service = control
        .update_service(UpdateServiceRequest {
            reference: current.id.clone(),
            version: current.meta.as_ref().map_or(0, |m| m.version),
            spec: Some(spec),
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    let target = service.spec.clone();
    print_and_follow(
        ctx,
        &mut control,
        &service,
        target,
        args.detach,
        args.timeout,
        out,
    )
    .await
}

#[cfg(test)]
mod tests;
