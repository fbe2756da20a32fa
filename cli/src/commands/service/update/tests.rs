use std::time::Duration;

use rswarm_proto::api::{Meta, PortProtocol, PublishMode, Task, TaskState, TaskStatus};

use rswarm_proto::validate::parse_publish;

use super::*;

/// The spec's ports as (published, target) pairs, in order.
fn port_pairs(spec: &ServiceSpec) -> Vec<(u32, u32)> {
    let ports = spec.endpoint.as_ref().map(|e| e.ports.as_slice());
    ports
        .unwrap_or_default()
        .iter()
        .map(|p| (p.published_port, p.target_port))
        .collect()
}
use crate::args::{EndpointModeArg, Format};
use crate::commands::test_support::{FakeControl, start, text};

fn given(service: &str) -> ServiceUpdateArgs {
    ServiceUpdateArgs {
        image: None,
        replicas: None,
        env_add: vec![],
        env_rm: vec![],
        publish_add: vec![],
        publish_rm: vec![],
        constraint_add: vec![],
        constraint_rm: vec![],
        lb: None,
        endpoint_mode: None,
        limit_memory: None,
        limit_cpu: None,
        update: UpdateConfigArgs::default(),
        force: false,
        detach: true,
        timeout: Duration::from_secs(5),
        service: service.into(),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The fake's `web` spec (nginx, 2 replicas) with an environment and a port.
fn web() -> ServiceSpec {
    let fake = FakeControl::default();
    let mut spec = fake.lock().services[0]
        .service
        .as_ref()
        .unwrap()
        .spec
        .clone()
        .unwrap();
    let container = spec.task.as_mut().unwrap().container.as_mut().unwrap();
    container.env = strings(&["A=1", "B=2"]);
    spec.endpoint = Some(rswarm_proto::api::EndpointSpec {
        ports: vec![parse_publish("8080:80").unwrap()],
        ..Default::default()
    });
    spec
}

#[test]
fn each_option_changes_its_part_of_the_spec() {
    let mut spec = web();
    let args = ServiceUpdateArgs {
        image: Some("nginx:2".into()),
        replicas: Some("5".into()),
        env_add: strings(&["B=3", "C=4"]),
        env_rm: strings(&["A"]),
        publish_rm: strings(&["8080"]),
        publish_add: strings(&["8080:81", "published=53,target=53,protocol=udp,mode=host"]),
        constraint_add: strings(&["node.labels.zone == eu"]),
        lb: Some(LoadBalanceArg::LeastConn),
        limit_memory: Some("64MiB".into()),
        update: UpdateConfigArgs {
            update_parallelism: Some(2),
            update_delay: Some(Duration::from_secs(10)),
            update_monitor: None,
        },
        ..given("web")
    };
    apply(&mut spec, &args).unwrap();
    assert_eq!(
        spec.mode,
        Some(Mode::Replicated(rswarm_proto::api::ReplicatedService {
            replicas: 5
        }))
    );
    let task = spec.task.as_ref().unwrap();
    let container = task.container.as_ref().unwrap();
    assert_eq!(container.image, "nginx:2");
    assert_eq!(container.env, ["B=3", "C=4"]);
    assert_eq!(
        task.placement.as_ref().unwrap().constraints,
        ["node.labels.zone==eu"]
    );
    assert_eq!(
        task.resources
            .as_ref()
            .unwrap()
            .limits
            .unwrap()
            .memory_bytes,
        64 << 20
    );
    let endpoint = spec.endpoint.as_ref().unwrap();
    assert_eq!(endpoint.balance, LoadBalance::LeastConn as i32);
    let ports: Vec<(u32, u32, i32, i32)> = endpoint
        .ports
        .iter()
        .map(|p| (p.published_port, p.target_port, p.protocol, p.publish_mode))
        .collect();
    assert_eq!(
        ports,
        [
            (
                8080,
                81,
                PortProtocol::Tcp as i32,
                PublishMode::Ingress as i32
            ),
            (53, 53, PortProtocol::Udp as i32, PublishMode::Host as i32),
        ]
    );
    assert_eq!(
        spec.update_config,
        Some(UpdateConfig {
            parallelism: 2,
            delay_ms: 10_000,
            monitor_ms: DEFAULT_MONITOR_MS,
        })
    );
    assert_eq!(task.force_update, 0);

    // Removing the last port, limit and constraint leaves no empty parts behind.
    let args = ServiceUpdateArgs {
        publish_rm: strings(&["8080/tcp", "53/udp"]),
        constraint_rm: strings(&["node.labels.zone==eu"]),
        limit_memory: Some("0".into()),
        lb: Some(LoadBalanceArg::RoundRobin),
        force: true,
        ..given("web")
    };
    apply(&mut spec, &args).unwrap();
    let task = spec.task.as_ref().unwrap();
    assert_eq!(
        (&spec.endpoint, &task.placement, &task.resources),
        (&None, &None, &None)
    );
    assert_eq!(task.force_update, 1, "--force bumps the counter");

    // Ports whose numbers the managers choose are each kept.
    let mut chosen = web();
    apply(
        &mut chosen,
        &ServiceUpdateArgs {
            publish_add: strings(&["90-91", "92"]),
            ..given("web")
        },
    )
    .unwrap();
    let ports = port_pairs(&chosen);
    assert_eq!(ports, [(8080, 80), (0, 90), (0, 91), (0, 92)]);

    // A range is added and removed port by port.
    let range = ServiceUpdateArgs {
        publish_add: strings(&["9000-9001:90-91/udp"]),
        ..given("web")
    };
    apply(&mut spec, &range).unwrap();
    let ports = port_pairs(&spec);
    assert_eq!(ports, [(9000, 90), (9001, 91)]);
    let err = apply(
        &mut spec,
        &ServiceUpdateArgs {
            publish_rm: strings(&["9000-9002/udp"]),
            ..given("web")
        },
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "--publish-rm 9000-9002/udp: service web does not publish port 9002/udp"
    );
    apply(
        &mut spec,
        &ServiceUpdateArgs {
            publish_rm: strings(&["9000-9001/udp"]),
            ..given("web")
        },
    )
    .unwrap();
    assert_eq!(spec.endpoint, None);

    // The endpoint mode alone keeps an endpoint; back to vip, none is left.
    let dnsrr = ServiceUpdateArgs {
        endpoint_mode: Some(EndpointModeArg::Dnsrr),
        ..given("web")
    };
    apply(&mut spec, &dnsrr).unwrap();
    assert_eq!(
        spec.endpoint.as_ref().map(|e| e.mode),
        Some(rswarm_proto::api::EndpointMode::Dnsrr as i32)
    );
    let vip = ServiceUpdateArgs {
        endpoint_mode: Some(EndpointModeArg::Vip),
        ..given("web")
    };
    apply(&mut spec, &vip).unwrap();
    assert_eq!(spec.endpoint, None);
}

#[test]
fn bad_options_are_refused_naming_the_problem() {
    let cases = [
        (given("web"), "nothing to update for service web"),
        (
            ServiceUpdateArgs {
                env_rm: strings(&["NOPE"]),
                ..given("web")
            },
            "--env-rm NOPE: service web has no environment variable \"NOPE\"",
        ),
        (
            // web publishes 8080 in ingress mode.
            ServiceUpdateArgs {
                endpoint_mode: Some(EndpointModeArg::Dnsrr),
                ..given("web")
            },
            "with endpoint mode dnsrr publish it with mode=host",
        ),
        (
            ServiceUpdateArgs {
                publish_rm: strings(&["9090"]),
                ..given("web")
            },
            "--publish-rm 9090: service web does not publish port 9090/tcp",
        ),
        (
            ServiceUpdateArgs {
                constraint_rm: strings(&["node.role==worker"]),
                ..given("web")
            },
            "--constraint-rm node.role==worker: service web has no such constraint",
        ),
        (
            ServiceUpdateArgs {
                publish_add: strings(&["80/sctp"]),
                ..given("web")
            },
            "invalid port publication \"80/sctp\"",
        ),
        (
            ServiceUpdateArgs {
                image: Some(" ".into()),
                ..given("web")
            },
            "--image must not be empty",
        ),
        (
            ServiceUpdateArgs {
                replicas: Some("-1".into()),
                ..given("web")
            },
            "invalid replicas \"-1\"",
        ),
    ];
    for (args, expected) in cases {
        let mut spec = web();
        let err = apply(&mut spec, &args).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
    }
    let mut global = web();
    global.mode = Some(Mode::Global(Default::default()));
    let err = apply(
        &mut global,
        &ServiceUpdateArgs {
            replicas: Some("2".into()),
            ..given("web")
        },
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "--replicas cannot be used with global service web"
    );
}

#[test]
fn an_option_leaves_the_rest_of_the_spec_as_it_was() {
    let mut before = web();
    let endpoint = before.endpoint.as_mut().unwrap();
    endpoint.ports.push(parse_publish("9090:90").unwrap());
    let mut spec = before.clone();
    apply(
        &mut spec,
        &ServiceUpdateArgs {
            env_add: strings(&["A=1"]),
            publish_add: strings(&["8080:80"]),
            constraint_add: vec![],
            ..given("web")
        },
    )
    .unwrap();
    assert_eq!(
        spec, before,
        "the same value again changes nothing, not even the order of the ports"
    );
}

#[tokio::test]
async fn sends_the_spec_with_the_version_it_was_read_at() {
    let (fake, ctx, _dir) = start(Format::Table);
    fake.lock().services[0].service.as_mut().unwrap().meta = Some(Meta {
        version: 41,
        ..Default::default()
    });
    let mut out = Vec::new();
    let args = ServiceUpdateArgs {
        image: Some("nginx:2".into()),
        ..given("web")
    };
    update(&ctx, &args, &mut out).await.unwrap();
    assert_eq!(text(out), "svc1\n");
    assert_eq!(fake.lock().calls, ["update svc1 41"]);
    let stored = fake.lock().services[0].service.clone().unwrap();
    let image = stored.spec.unwrap().task.unwrap().container.unwrap().image;
    assert_eq!(image, "nginx:2");

    // Bad input sends nothing.
    let mut out = Vec::new();
    let bad = ServiceUpdateArgs {
        env_rm: strings(&["NOPE"]),
        ..given("web")
    };
    assert!(update(&ctx, &bad, &mut out).await.is_err());
    assert_eq!(fake.lock().calls.len(), 1);
    let err = update(
        &ctx,
        &ServiceUpdateArgs {
            image: Some("x".into()),
            ..given("nope")
        },
        &mut out,
    )
    .await
    .unwrap_err();
    assert_eq!(err.to_string(), "service nope not found");
}

#[tokio::test]
async fn follows_the_rolling_update_until_every_task_runs_the_new_spec() {
    let (fake, ctx, _dir) = start(Format::Table);
    let new_spec = {
        let mut spec = fake.lock().services[0]
            .service
            .as_ref()
            .unwrap()
            .spec
            .clone()
            .unwrap();
        spec.task
            .as_mut()
            .unwrap()
            .container
            .as_mut()
            .unwrap()
            .image = "nginx:2".into();
        spec
    };
    let task = |id: &str, slot: u64, created: u64, image: &str, state: TaskState| {
        let mut spec = new_spec.task.clone().unwrap();
        spec.container.as_mut().unwrap().image = image.into();
        Task {
            id: id.into(),
            service_id: "svc1".into(),
            slot,
            meta: Some(Meta {
                created_at: created,
                ..Default::default()
            }),
            spec: Some(spec),
            desired_state: TaskState::Running.into(),
            status: Some(TaskStatus {
                state: state.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    };
    let stopped = |mut t: Task| {
        t.desired_state = TaskState::Shutdown.into();
        t
    };
    fake.lock().task_script = [
        vec![
            task("a1", 1, 1, "nginx", TaskState::Running),
            task("b1", 2, 1, "nginx", TaskState::Running),
        ],
        vec![
            stopped(task("a1", 1, 1, "nginx", TaskState::Running)),
            task("a2", 1, 2, "nginx:2", TaskState::Running),
            task("b1", 2, 1, "nginx", TaskState::Running),
        ],
        vec![
            stopped(task("a1", 1, 1, "nginx", TaskState::Shutdown)),
            task("a2", 1, 2, "nginx:2", TaskState::Running),
            stopped(task("b1", 2, 1, "nginx", TaskState::Shutdown)),
            task("b2", 2, 3, "nginx:2", TaskState::Running),
        ],
    ]
    .into();
    let mut out = Vec::new();
    let args = ServiceUpdateArgs {
        image: Some("nginx:2".into()),
        detach: false,
        ..given("web")
    };
    update(&ctx, &args, &mut out).await.unwrap();
    assert_eq!(
        text(out),
        "svc1\n\
         overall progress: 0 out of 2 tasks\n\
         1/2: running (previous spec, to be replaced)\n\
         2/2: running (previous spec, to be replaced)\n\
         overall progress: 1 out of 2 tasks\n\
         1/2: running\n\
         overall progress: 2 out of 2 tasks\n\
         2/2: running\n\
         verify: Service converged\n"
    );
}

#[test]
fn a_constraint_removed_and_added_again_keeps_its_place() {
    let mut spec = web();
    spec.task.as_mut().unwrap().placement = Some(rswarm_proto::api::Placement {
        constraints: strings(&["node.role==worker", "node.labels.zone==eu"]),
        ..Default::default()
    });
    let unchanged = spec.clone();
    let args = ServiceUpdateArgs {
        constraint_rm: strings(&["node.role == worker"]),
        constraint_add: strings(&["node.role==worker"]),
        ..given("web")
    };
    apply(&mut spec, &args).unwrap();
    assert_eq!(spec, unchanged, "the same constraints in the same order");
    // Removed with another one added: the rest keep their order, the new one last.
    let args = ServiceUpdateArgs {
        constraint_rm: strings(&["node.role==worker"]),
        constraint_add: strings(&["node.labels.disk==ssd"]),
        ..given("web")
    };
    apply(&mut spec, &args).unwrap();
    assert_eq!(
        spec.task
            .as_ref()
            .unwrap()
            .placement
            .as_ref()
            .unwrap()
            .constraints,
        ["node.labels.zone==eu", "node.labels.disk==ssd"]
    );
}

#[test]
fn a_variable_or_port_removed_and_added_again_keeps_its_place() {
    let mut spec = web();
    spec.endpoint
        .as_mut()
        .unwrap()
        .ports
        .push(parse_publish("9090:90").unwrap());
    let args = ServiceUpdateArgs {
        env_rm: strings(&["A"]),
        env_add: strings(&["A=5"]),
        publish_rm: strings(&["8080"]),
        publish_add: strings(&["8080:81"]),
        ..given("web")
    };
    apply(&mut spec, &args).unwrap();
    let container = spec.task.as_ref().unwrap().container.as_ref().unwrap();
    assert_eq!(container.env, ["A=5", "B=2"]);
    let ports = port_pairs(&spec);
    assert_eq!(ports, [(8080, 81), (9090, 90)]);
    // Still refused when there is nothing to remove.
    let args = ServiceUpdateArgs {
        env_rm: strings(&["Z"]),
        env_add: strings(&["Z=1"]),
        ..given("web")
    };
    let err = apply(&mut spec, &args).unwrap_err().to_string();
    assert!(err.contains("--env-rm Z"), "{err}");
}
