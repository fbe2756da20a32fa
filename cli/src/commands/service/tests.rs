use super::*;
use crate::commands::test_support::{start, text};
use rswarm_proto::api::{
    EndpointMode, PortConfig, PortProtocol, PublishMode, Task, TaskState, TaskStatus,
};
use serde_json::Value;

fn create_args(name: &str) -> ServiceCreateArgs {
    ServiceCreateArgs {
        lb: Default::default(),
        endpoint_mode: Default::default(),
        name: name.into(),
        replicas: None,
        mode: ServiceMode::Replicated,
        env: vec![],
        constraint: vec![],
        publish: vec![],
        limit_memory: None,
        limit_cpu: None,
        restart: Default::default(),
        update: Default::default(),
        task: Default::default(),
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
            "9000".into(),
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
                proxy_protocol: Default::default(),
                protocol: PortProtocol::Tcp.into(),
                target_port: 80,
                published_port: 8080,
                publish_mode: PublishMode::Ingress.into(),
            },
            PortConfig {
                proxy_protocol: Default::default(),
                protocol: PortProtocol::Udp.into(),
                target_port: 53,
                published_port: 53,
                publish_mode: PublishMode::Ingress.into(),
            },
            // The managers choose its published port.
            PortConfig {
                proxy_protocol: Default::default(),
                protocol: PortProtocol::Tcp.into(),
                target_port: 9000,
                published_port: 0,
                publish_mode: PublishMode::Ingress.into(),
            },
        ]
    );
}

#[test]
fn least_conn_and_proxy_protocol_reach_the_spec() {
    let args = ServiceCreateArgs {
        lb: LoadBalanceArg::LeastConn,
        publish: vec!["published=80,target=8080,proxy-protocol=v2".into()],
        ..create_args("web")
    };
    let endpoint = build_spec(&args).unwrap().endpoint.unwrap();
    assert_eq!(endpoint.balance, LoadBalance::LeastConn as i32);
    assert_eq!(endpoint.mode, EndpointMode::Vip as i32);
    let dnsrr = ServiceCreateArgs {
        endpoint_mode: EndpointModeArg::Dnsrr,
        ..create_args("db")
    };
    let dnsrr_endpoint = build_spec(&dnsrr).unwrap().endpoint.unwrap();
    assert_eq!(dnsrr_endpoint.mode, EndpointMode::Dnsrr as i32);
    let ingress = ServiceCreateArgs {
        publish: vec!["8080:80".into()],
        ..dnsrr
    };
    assert!(
        build_spec(&ingress)
            .unwrap_err()
            .to_string()
            .contains("needs the service's virtual IP")
    );
    assert_eq!(
        endpoint.ports[0].proxy_protocol,
        rswarm_proto::api::ProxyProtocolVersion::V2 as i32
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
            publish: vec!["target=80,mode=host".into()],
            ..base()
        })
        .starts_with("invalid port publication \"target=80,mode=host\"")
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
    run(&ctx, ServiceCommand::Create(Box::new(args)), &mut out)
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
    run(
        &ctx,
        ServiceCommand::Create(Box::new(create_args("web"))),
        &mut out,
    )
    .await
    .unwrap();
    let value: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(value["id"], "new-service-id");
    assert_eq!(value["spec"]["mode"]["replicated"]["replicas"], 1);
}

fn task(slot: u64, state: TaskState, err: &str) -> Task {
    Task {
        id: format!("task-{slot}"),
        service_id: "new-service-id".into(),
        service_name: "web".into(),
        slot,
        desired_state: TaskState::Running.into(),
        status: Some(TaskStatus {
            state: state.into(),
            err: err.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn create_follows_the_rollout_until_converged() {
    let (fake, ctx, _dir) = start(Format::Table);
    fake.lock().task_script = [
        vec![task(1, TaskState::Pending, "no suitable node")],
        vec![task(1, TaskState::Running, "")],
    ]
    .into();
    let mut out = Vec::new();
    let args = ServiceCreateArgs {
        detach: false,
        ..create_args("web")
    };
    run(&ctx, ServiceCommand::Create(Box::new(args)), &mut out)
        .await
        .unwrap();
    assert_eq!(
        text(out),
        "new-service-id\n\
         overall progress: 0 out of 1 tasks\n\
         1/1: pending: no suitable node\n\
         overall progress: 1 out of 1 tasks\n\
         1/1: running\n\
         verify: Service converged\n"
    );
    assert_eq!(fake.lock().task_queries[0].service, "new-service-id");
}

#[tokio::test]
async fn create_reports_a_rollout_that_does_not_converge() {
    let (fake, ctx, _dir) = start(Format::Json);
    fake.lock().tasks = vec![task(1, TaskState::Pending, "no suitable node")];
    let mut out = Vec::new();
    let args = ServiceCreateArgs {
        detach: false,
        timeout: Duration::from_millis(300),
        ..create_args("web")
    };
    let err = run(&ctx, ServiceCommand::Create(Box::new(args)), &mut out)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "service web did not converge within 300ms: 0 of 1 tasks running\n  \
         1/1: pending: no suitable node"
    );
    // The progress went to stderr: stdout holds the service alone.
    let value: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(value["id"], "new-service-id");
}

#[tokio::test]
async fn detached_create_does_not_follow() {
    let (fake, ctx, _dir) = start(Format::Table);
    let mut out = Vec::new();
    run(
        &ctx,
        ServiceCommand::Create(Box::new(create_args("web"))),
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(text(out), "new-service-id\n");
    assert!(fake.lock().task_queries.is_empty());
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
        run(&ctx, ServiceCommand::Create(Box::new(args)), &mut out)
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

#[test]
fn restart_flags_make_a_policy() {
    use crate::args::{RestartArgs, RestartConditionArg};
    use rswarm_proto::api::{RestartCondition, RestartPolicy};
    let spec = |restart: RestartArgs| {
        let args = ServiceCreateArgs {
            restart,
            ..create_args("web")
        };
        build_spec(&args).map(|s| s.task.unwrap().restart_policy)
    };
    assert_eq!(spec(RestartArgs::default()).unwrap(), None);
    let policy = spec(RestartArgs {
        restart_condition: Some(RestartConditionArg::OnFailure),
        restart_delay: Some(Duration::from_millis(250)),
        restart_max_attempts: Some(3),
        restart_window: Some(Duration::from_secs(60)),
    })
    .unwrap();
    assert_eq!(
        policy,
        Some(RestartPolicy {
            condition: RestartCondition::OnFailure as i32,
            delay_ms: 250,
            max_attempts: 3,
            window_ms: 60_000,
        })
    );
    let none = spec(RestartArgs {
        restart_condition: Some(RestartConditionArg::None),
        ..Default::default()
    })
    .unwrap()
    .unwrap();
    assert_eq!(none.condition, RestartCondition::None as i32);
    let err = |restart| spec(restart).unwrap_err().to_string();
    assert!(
        err(RestartArgs {
            restart_window: Some(Duration::from_secs(10)),
            ..Default::default()
        })
        .contains("--restart-window needs --restart-max-attempts")
    );
    assert!(
        err(RestartArgs {
            restart_condition: Some(RestartConditionArg::None),
            restart_max_attempts: Some(2),
            ..Default::default()
        })
        .contains("no effect with --restart-condition none")
    );
    assert!(
        err(RestartArgs {
            restart_delay: Some(Duration::from_micros(10)),
            ..Default::default()
        })
        .contains("at least 1ms")
    );
}

#[test]
fn container_options_reach_the_spec_in_canonical_form() {
    let args = ServiceCreateArgs {
        task: crate::args::service::TaskArgs {
            limit_pids: Some("64".into()),
            reserve_cpu: Some("0.25".into()),
            reserve_memory: Some("32MiB".into()),
            replicas_max_per_node: Some(2),
            hostname: Some("web-host".into()),
            user: Some("1000:1000".into()),
            workdir: Some("/srv".into()),
            entrypoint: Some("/bin/server".into()),
            mount: vec![
                "type=volume,source=data,target=/data".into(),
                "type=tmpfs,target=/tmp".into(),
            ],
            cap_add: vec!["net_admin".into()],
            cap_drop: vec!["ALL".into()],
            read_only: true,
            stop_signal: Some("int".into()),
            stop_grace_period: Some(Duration::from_secs(3)),
        },
        ..create_args("web")
    };
    let spec = build_spec(&args).unwrap();
    let task = spec.task.unwrap();
    let container = task.container.unwrap();
    assert_eq!(container.command, ["/bin/server"]);
    assert_eq!(container.hostname, "web-host");
    assert_eq!(container.user, "1000:1000");
    assert_eq!(container.dir, "/srv");
    assert_eq!(container.mounts.len(), 2);
    assert_eq!(container.cap_add, ["CAP_NET_ADMIN"]);
    assert_eq!(container.cap_drop, ["ALL"]);
    assert!(container.read_only);
    assert_eq!(container.stop_signal, "SIGINT");
    assert_eq!(container.stop_grace_period_ms, 3000);
    let resources = task.resources.unwrap();
    assert_eq!(resources.limits.unwrap().pids, 64);
    let reservations = resources.reservations.unwrap();
    assert_eq!(reservations.nano_cpus, 250_000_000);
    assert_eq!(reservations.memory_bytes, 32 << 20);
    assert_eq!(task.placement.unwrap().max_replicas_per_node, 2);
}

#[test]
fn bad_container_options_are_refused_by_name() {
    let err = |task: crate::args::service::TaskArgs| {
        build_spec(&ServiceCreateArgs {
            task,
            ..create_args("web")
        })
        .unwrap_err()
        .to_string()
    };
    let base = crate::args::service::TaskArgs::default;
    for (task, needle) in [
        (
            crate::args::service::TaskArgs {
                limit_pids: Some("0".into()),
                ..base()
            },
            "invalid --limit-pids \"0\"",
        ),
        (
            crate::args::service::TaskArgs {
                mount: vec!["type=bind,source=rel,target=/x".into()],
                ..base()
            },
            "invalid mount \"type=bind,source=rel,target=/x\"",
        ),
        (
            crate::args::service::TaskArgs {
                cap_add: vec!["FLY".into()],
                ..base()
            },
            "invalid capability \"FLY\"",
        ),
        (
            crate::args::service::TaskArgs {
                stop_signal: Some("SIGNOPE".into()),
                ..base()
            },
            "invalid signal \"SIGNOPE\"",
        ),
        (
            crate::args::service::TaskArgs {
                user: Some("a:b:c".into()),
                ..base()
            },
            "invalid user \"a:b:c\"",
        ),
        (
            crate::args::service::TaskArgs {
                stop_grace_period: Some(Duration::ZERO),
                ..base()
            },
            "--stop-grace-period must be above zero",
        ),
    ] {
        let message = err(task);
        assert!(message.contains(needle), "{needle}: {message}");
    }
}
