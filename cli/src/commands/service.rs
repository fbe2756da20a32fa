//! `rswarm service ...`.

mod ps;
mod scale;

use std::io::Write;
use std::time::Duration;

use rswarm_proto::api::{
    ContainerSpec, CreateServiceRequest, EndpointSpec, GetServiceRequest, GlobalService,
    ListServicesRequest, Placement, ReplicatedService, ResourceRequirements, Resources,
    ServiceSpec, TaskSpec, service_spec::Mode,
};
use rswarm_proto::validate::{
    parse_constraint, parse_cpus, parse_env, parse_publish, parse_replicas, parse_size,
    validate_service_spec,
};
use serde_json::Value;

use super::progress::{self, Expect, Watch};
use super::{Context, Failures, rpc_error, write_line};
use crate::args::{Format, ServiceCommand, ServiceCreateArgs, ServiceMode};
use crate::output;

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
    let ports = args
        .publish
        .iter()
        .map(|p| parse_publish(p))
        .collect::<Result<Vec<_>, _>>()?;
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
        pids: 0,
    };
    let spec = ServiceSpec {
        name: args.name.clone(),
        labels: Default::default(),
        task: Some(TaskSpec {
            container: Some(ContainerSpec {
                image: args.image.clone(),
                args: args.args.clone(),
                env: args.env.clone(),
                ..Default::default()
            }),
            resources: (limits != Resources::default()).then_some(ResourceRequirements {
                limits: Some(limits),
                reservations: None,
            }),
            restart_policy: None,
            placement: (!constraints.is_empty()).then_some(Placement {
                constraints,
                max_replicas_per_node: 0,
            }),
        }),
        mode: Some(mode),
        endpoint: (!ports.is_empty()).then_some(EndpointSpec { ports }),
    };
    validate_service_spec(&spec)?;
    Ok(spec)
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
    let mut control = ctx.control().await?;
    let service = control
        .create_service(CreateServiceRequest { spec: Some(spec) })
        .await
        .map_err(rpc_error)?
        .into_inner();
    match ctx.format {
        Format::Json => output::write_json(out, &output::service_json(&service)?)?,
        Format::Table => write_line(out, &service.id)?,
    }
    if args.detach {
        return Ok(());
    }
    let spec = service.spec.unwrap_or_default();
    let watch = Watch {
        service_id: service.id,
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
        timeout: args.timeout,
        interval: POLL_INTERVAL,
        tty: ctx.tty && ctx.format == Format::Table,
    };
    let interrupted = async {
        // Without a signal handler there is nothing to wait for but the timeout.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    match ctx.format {
        Format::Table => progress::watch(&mut control, &watch, out, interrupted).await,
        Format::Json => {
            let mut stderr = std::io::stderr();
            progress::watch(&mut control, &watch, &mut stderr, interrupted).await
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
    let mut control = ctx.control().await?;
    let mut found = Vec::new();
    let mut failures = Failures::default();
    for reference in references {
        let request = GetServiceRequest {
            reference: reference.clone(),
        };
        match control.get_service(request).await {
            Ok(service) => found.push(output::service_json(&service.into_inner())?),
            Err(status) => failures.report(&rpc_error(status)),
        }
    }
    output::write_json(out, &Value::Array(found))?;
    failures.finish()
}

/// `service rm`: prints each removed reference (a JSON array of them with `--format
/// json`).
async fn rm(ctx: &Context, references: &[String], out: &mut dyn Write) -> anyhow::Result<()> {
    let mut control = ctx.control().await?;
    let mut removed = Vec::new();
    let mut failures = Failures::default();
    for reference in references {
        let request = GetServiceRequest {
            reference: reference.clone(),
        };
        match control.remove_service(request).await {
            Ok(_) if ctx.format == Format::Table => write_line(out, reference)?,
            Ok(_) => removed.push(Value::from(reference.as_str())),
            Err(status) => failures.report(&rpc_error(status)),
        }
    }
    if ctx.format == Format::Json {
        output::write_json(out, &Value::Array(removed))?;
    }
    failures.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::test_support::{start, text};
    use rswarm_proto::api::{PortConfig, PortProtocol, PublishMode};

    fn create_args(name: &str) -> ServiceCreateArgs {
        ServiceCreateArgs {
            name: name.into(),
            replicas: None,
            mode: ServiceMode::Replicated,
            env: vec![],
            constraint: vec![],
            publish: vec![],
            limit_memory: None,
            limit_cpu: None,
            detach: true,
            timeout: Duration::from_secs(120),
            image: "nginx".into(),
            args: vec![],
        }
    }

    #[test]
    fn full_spec() {
        let args = ServiceCreateArgs {
            replicas: Some("3".into()),
            env: vec!["A=1".into()],
            constraint: vec!["node.labels.zone == eu".into()],
            publish: vec![
                "8080:80".into(),
                "published=53,target=53,protocol=udp".into(),
            ],
            limit_memory: Some("64MiB".into()),
            limit_cpu: Some("0.5".into()),
            args: vec!["nginx".into(), "-g".into(), "daemon off;".into()],
            ..create_args("web")
        };
        let spec = build_spec(&args).unwrap();
        assert_eq!(spec.name, "web");
        assert_eq!(
            spec.mode,
            Some(Mode::Replicated(ReplicatedService { replicas: 3 }))
        );
        let task = spec.task.unwrap();
        let container = task.container.unwrap();
        assert_eq!(container.image, "nginx");
        assert_eq!(container.args, ["nginx", "-g", "daemon off;"]);
        assert!(container.command.is_empty());
        assert_eq!(container.env, ["A=1"]);
        assert_eq!(
            task.placement.unwrap().constraints,
            ["node.labels.zone==eu"]
        );
        assert_eq!(
            task.resources.unwrap().limits,
            Some(Resources {
                nano_cpus: 500_000_000,
                memory_bytes: 64 << 20,
                pids: 0
            })
        );
        assert_eq!(
            spec.endpoint.unwrap().ports,
            [
                PortConfig {
                    protocol: PortProtocol::Tcp.into(),
                    target_port: 80,
                    published_port: 8080,
                    publish_mode: PublishMode::Ingress.into(),
                },
                PortConfig {
                    protocol: PortProtocol::Udp.into(),
                    target_port: 53,
                    published_port: 53,
                    publish_mode: PublishMode::Ingress.into(),
                },
            ]
        );
    }

    #[test]
    fn minimal_spec() {
        let spec = build_spec(&create_args("web")).unwrap();
        assert_eq!(
            spec.mode,
            Some(Mode::Replicated(ReplicatedService { replicas: 1 }))
        );
        let task = spec.task.unwrap();
        assert_eq!(task.resources, None);
        assert_eq!(task.placement, None);
        assert_eq!(spec.endpoint, None);
        let global = build_spec(&ServiceCreateArgs {
            mode: ServiceMode::Global,
            ..create_args("agent")
        })
        .unwrap();
        assert_eq!(global.mode, Some(Mode::Global(GlobalService {})));
    }

    #[test]
    fn refused_input() {
        let err = |args: ServiceCreateArgs| build_spec(&args).unwrap_err().to_string();
        let base = || create_args("web");
        assert_eq!(
            err(ServiceCreateArgs {
                replicas: Some("-1".into()),
                ..base()
            }),
            "invalid replicas \"-1\": must be a whole number ≥ 0"
        );
        assert_eq!(
            err(ServiceCreateArgs {
                replicas: Some("2".into()),
                mode: ServiceMode::Global,
                ..base()
            }),
            "--replicas cannot be used with --mode global"
        );
        assert!(err(create_args("-web")).starts_with("invalid service name \"-web\""));
        assert!(
            err(ServiceCreateArgs {
                image: String::new(),
                ..base()
            })
            .contains("an image is required")
        );
        assert!(
            err(ServiceCreateArgs {
                env: vec!["NOPE".into()],
                ..base()
            })
            .starts_with("invalid environment variable \"NOPE\"")
        );
        assert!(
            err(ServiceCreateArgs {
                constraint: vec!["node.role==boss".into()],
                ..base()
            })
            .starts_with("invalid constraint \"node.role==boss\"")
        );
        assert!(
            err(ServiceCreateArgs {
                publish: vec!["80".into()],
                ..base()
            })
            .starts_with("invalid port publication \"80\"")
        );
        assert_eq!(
            err(ServiceCreateArgs {
                publish: vec!["80:80".into(), "published=80,target=81".into()],
                ..base()
            }),
            "port 80/tcp is published more than once"
        );
        assert!(
            err(ServiceCreateArgs {
                limit_memory: Some("-1".into()),
                ..base()
            })
            .starts_with("invalid size \"-1\"")
        );
        assert!(
            err(ServiceCreateArgs {
                limit_memory: Some("1k".into()),
                ..base()
            })
            .starts_with("invalid memory limit 1KiB")
        );
        assert!(
            err(ServiceCreateArgs {
                limit_cpu: Some("lots".into()),
                ..base()
            })
            .starts_with("invalid CPU count \"lots\"")
        );
    }

    #[tokio::test]
    async fn create_prints_the_id() {
        let (fake, ctx, _dir) = start(Format::Table);
        let mut out = Vec::new();
        let args = ServiceCreateArgs {
            replicas: Some("2".into()),
            ..create_args("web")
        };
        run(&ctx, ServiceCommand::Create(args), &mut out)
            .await
            .unwrap();
        assert_eq!(text(out), "new-service-id\n");
        let calls = fake.lock().calls.clone();
        assert!(calls[0].contains("replicas: 2"), "{calls:?}");
    }

    #[tokio::test]
    async fn create_json_prints_the_service() {
        let (_fake, ctx, _dir) = start(Format::Json);
        let mut out = Vec::new();
        run(&ctx, ServiceCommand::Create(create_args("web")), &mut out)
            .await
            .unwrap();
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["id"], "new-service-id");
        assert_eq!(value["spec"]["mode"]["replicated"]["replicas"], 1);
    }

    #[tokio::test]
    async fn invalid_create_sends_nothing() {
        let (fake, ctx, _dir) = start(Format::Table);
        let mut out = Vec::new();
        let args = ServiceCreateArgs {
            replicas: Some("-1".into()),
            ..create_args("web")
        };
        assert!(
            run(&ctx, ServiceCommand::Create(args), &mut out)
                .await
                .is_err()
        );
        assert!(out.is_empty());
        assert!(fake.lock().calls.is_empty());
    }

    #[tokio::test]
    async fn ls_json_and_table() {
        let (_fake, ctx, _dir) = start(Format::Json);
        let mut out = Vec::new();
        run(&ctx, ServiceCommand::Ls, &mut out).await.unwrap();
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            value,
            serde_json::json!([{"id": "svc1", "name": "web", "mode": "replicated",
                "image": "nginx", "replicas_desired": 2, "replicas_running": 1}])
        );
        let ctx = Context {
            format: Format::Table,
            ..ctx
        };
        let mut out = Vec::new();
        run(&ctx, ServiceCommand::Ls, &mut out).await.unwrap();
        let out = text(out);
        assert!(
            out.lines()
                .any(|l| l.starts_with("svc1") && l.contains(" 1/2 ")),
            "{out}"
        );
    }

    #[tokio::test]
    async fn inspect_and_rm() {
        let (fake, ctx, _dir) = start(Format::Table);
        let mut out = Vec::new();
        let services = vec!["web".into()];
        run(&ctx, ServiceCommand::Inspect { services }, &mut out)
            .await
            .unwrap();
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value[0]["spec"]["name"], "web");

        let mut out = Vec::new();
        let services = vec!["web".into()];
        run(&ctx, ServiceCommand::Rm { services }, &mut out)
            .await
            .unwrap();
        assert_eq!(text(out), "web\n");
        assert_eq!(fake.lock().calls, ["remove service web"]);
    }
}
