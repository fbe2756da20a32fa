use std::time::Duration;

use super::service::parse_timeout;
use super::*;
use clap::CommandFactory;

fn parse(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("rswarm").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn service_create(args: &[&str]) -> ServiceCreateArgs {
    match parse(args).command {
        Command::Service {
            command: ServiceCommand::Create(create),
        } => *create,
        other => panic!("{other:?}"),
    }
}

#[test]
fn definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn defaults() {
    let cli = parse(&["node", "ls"]);
    assert_eq!(cli.host, Host::Unix("/var/lib/rswarm/rswarm.sock".into()));
    assert_eq!(cli.cert_dir, PathBuf::from(DEFAULT_CERT_DIR));
    assert_eq!(cli.format, Format::Table);
    assert_eq!(
        cli.command,
        Command::Node {
            command: NodeCommand::Ls
        }
    );
}

#[test]
fn format_after_the_subcommand() {
    let cli = parse(&["node", "ls", "--format", "json"]);
    assert_eq!(cli.format, Format::Json);
    let cli = parse(&["--format", "json", "service", "ls"]);
    assert_eq!(cli.format, Format::Json);
    assert!(Cli::try_parse_from(["rswarm", "node", "ls", "--format", "yaml"]).is_err());
}

#[test]
fn hosts() {
    assert_eq!(
        parse(&["--host", "unix:///tmp/n1/rswarm.sock", "node", "ls"]).host,
        Host::Unix("/tmp/n1/rswarm.sock".into())
    );
    assert_eq!(
        parse(&["node", "ls", "--host", "127.0.0.1:4242"]).host,
        Host::Tcp("127.0.0.1:4242".parse().unwrap())
    );
    assert_eq!(
        "tcp://[::1]:4242".parse::<Host>(),
        Ok(Host::Tcp("[::1]:4242".parse().unwrap()))
    );
    for bad in [
        "unix://relative.sock",
        "localhost",
        "10.0.0.1",
        "http://x:1",
    ] {
        assert!(bad.parse::<Host>().is_err(), "{bad}");
    }
    assert_eq!(
        Host::Unix("/a/b.sock".into()).to_string(),
        "unix:///a/b.sock"
    );
}

#[test]
fn negative_replicas_reach_our_validation() {
    let create = service_create(&[
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        "-1",
        "nginx",
    ]);
    assert_eq!(create.replicas.as_deref(), Some("-1"));
    assert_eq!(create.image, "nginx");
}

#[test]
fn command_after_image_keeps_its_flags() {
    let create = service_create(&[
        "service",
        "create",
        "--name",
        "web",
        "-e",
        "A=1",
        "--env",
        "B=2",
        "-p",
        "8080:80",
        "--detach",
        "alpine",
        "sh",
        "-c",
        "echo hi --name x",
    ]);
    assert_eq!(create.name, "web");
    assert_eq!(create.env, ["A=1", "B=2"]);
    assert_eq!(create.publish, ["8080:80"]);
    assert!(create.detach);
    assert_eq!(create.image, "alpine");
    assert_eq!(create.args, ["sh", "-c", "echo hi --name x"]);

    let create = service_create(&[
        "service", "create", "--name", "w", "busybox", "sleep", "--", "-x",
    ]);
    assert_eq!(create.args, ["sleep", "--", "-x"]);
}

#[test]
fn service_create_options() {
    let create = service_create(&[
        "service",
        "create",
        "--name",
        "web",
        "--mode",
        "global",
        "--constraint",
        "node.role!=manager",
        "--constraint",
        "node.labels.zone==eu",
        "--limit-memory",
        "64MiB",
        "--limit-cpu",
        "0.5",
        "nginx",
    ]);
    assert_eq!(create.mode, ServiceMode::Global);
    assert_eq!(create.replicas, None);
    assert_eq!(
        create.constraint,
        ["node.role!=manager", "node.labels.zone==eu"]
    );
    assert_eq!(create.limit_memory.as_deref(), Some("64MiB"));
    assert_eq!(create.limit_cpu.as_deref(), Some("0.5"));
    assert!(Cli::try_parse_from(["rswarm", "service", "create", "nginx"]).is_err());
    assert!(Cli::try_parse_from(["rswarm", "service", "create", "--name", "w"]).is_err());
}

#[test]
fn node_commands() {
    let cli = parse(&[
        "node",
        "update",
        "--availability",
        "drain",
        "--label-add",
        "zone=eu",
        "--label-add",
        "ssd",
        "--label-rm",
        "old",
        "n1",
    ]);
    let Command::Node {
        command: NodeCommand::Update(update),
    } = cli.command
    else {
        panic!("{:?}", cli.command);
    };
    assert_eq!(update.availability.as_deref(), Some("drain"));
    assert_eq!(update.label_add, ["zone=eu", "ssd"]);
    assert_eq!(update.label_rm, ["old"]);
    assert_eq!(update.node, "n1");

    assert_eq!(
        parse(&["node", "rm", "-f", "a", "b"]).command,
        Command::Node {
            command: NodeCommand::Rm {
                force: true,
                nodes: vec!["a".into(), "b".into()]
            }
        }
    );
    assert!(Cli::try_parse_from(["rswarm", "node", "promote"]).is_err());
    assert!(Cli::try_parse_from(["rswarm", "node", "inspect"]).is_err());
}

#[test]
fn join_token() {
    let cli = parse(&["join-token", "manager", "-q", "--rotate"]);
    assert_eq!(
        cli.command,
        Command::JoinToken(JoinTokenArgs {
            role: TokenRole::Manager,
            quiet: true,
            rotate: true
        })
    );
    assert!(Cli::try_parse_from(["rswarm", "join-token", "admin"]).is_err());
}

#[test]
fn init_and_join() {
    let Command::Init(init) = parse(&["init"]).command else {
        panic!()
    };
    assert_eq!(init.node.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    assert_eq!(init.node.listen, "0.0.0.0:4242".parse().unwrap());
    assert_eq!(init.node.advertise, None);
    assert_eq!(
        init.raft,
        RaftArgs {
            heartbeat_ms: 100,
            election_min_ms: 500,
            election_max_ms: 1000
        }
    );
    assert!(init.raft.validate().is_ok());

    let Command::Join(join) = parse(&[
        "join",
        "--token",
        "SWMTKN-1-abc",
        "--data-dir",
        "/tmp/n2",
        "--listen",
        "127.0.0.2:4242",
        "--advertise",
        "127.0.0.2:4242",
        "--hostname",
        "n2",
        "--heartbeat-ms",
        "50",
        "127.0.0.1:4242",
    ])
    .command
    else {
        panic!()
    };
    assert_eq!(join.token, "SWMTKN-1-abc");
    assert_eq!(join.node.data_dir, PathBuf::from("/tmp/n2"));
    assert_eq!(join.node.hostname.as_deref(), Some("n2"));
    assert_eq!(join.raft.heartbeat_ms, 50);
    assert_eq!(join.manager_addr, "127.0.0.1:4242".parse().unwrap());
    assert_eq!(join.node.userns_remap, None, "off by default");
    let Command::Init(init) = parse(&["init", "--userns-remap", "default"]).command else {
        panic!()
    };
    assert_eq!(init.node.userns_remap.as_deref(), Some("default"));
    assert!(Cli::try_parse_from(["rswarm", "join", "127.0.0.1:4242"]).is_err());
    assert!(Cli::try_parse_from(["rswarm", "init", "--listen", "nowhere"]).is_err());
    assert!(Cli::try_parse_from(["rswarm", "init", "--heartbeat-ms", "0"]).is_err());
}

#[test]
fn raft_timing_must_be_ordered() {
    let raft = |heartbeat_ms, election_min_ms, election_max_ms| RaftArgs {
        heartbeat_ms,
        election_min_ms,
        election_max_ms,
    };
    assert!(raft(100, 500, 1000).validate().is_ok());
    assert!(raft(500, 500, 1000).validate().is_err());
    assert!(raft(100, 1000, 1000).validate().is_err());
    assert!(raft(100, 1000, 500).validate().is_err());
}

#[test]
fn service_ps_and_scale() {
    let cli = parse(&[
        "service",
        "ps",
        "-f",
        "desired-state=running",
        "--filter",
        "desired-state=shutdown",
        "web",
        "db",
    ]);
    assert_eq!(
        cli.command,
        Command::Service {
            command: ServiceCommand::Ps(ServicePsArgs {
                filter: vec![
                    "desired-state=running".into(),
                    "desired-state=shutdown".into()
                ],
                services: vec!["web".into(), "db".into()],
            })
        }
    );
    assert!(Cli::try_parse_from(["rswarm", "service", "ps"]).is_err());
    let cli = parse(&["service", "scale", "web=3", "db=-1"]);
    assert_eq!(
        cli.command,
        Command::Service {
            command: ServiceCommand::Scale {
                scales: vec!["web=3".into(), "db=-1".into()]
            }
        }
    );
    assert!(Cli::try_parse_from(["rswarm", "service", "scale"]).is_err());
}

#[test]
fn create_timeout() {
    assert_eq!(
        service_create(&["service", "create", "--name", "web", "nginx"]).timeout,
        Duration::from_secs(120)
    );
    assert_eq!(
        service_create(&[
            "service",
            "create",
            "--name",
            "web",
            "--timeout",
            "2m",
            "nginx"
        ])
        .timeout,
        Duration::from_secs(120)
    );
    assert_eq!(parse_timeout("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_timeout("30"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_timeout("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(
        parse_timeout("0s"),
        Err("invalid duration \"0s\": must be above zero".into())
    );
    for bad in ["", "s", "1.5s", "10d", "-1s"] {
        assert!(parse_timeout(bad).is_err(), "{bad}");
    }
}

#[test]
fn restart_flags() {
    let create = service_create(&[
        "service",
        "create",
        "--name",
        "web",
        "--restart-condition",
        "on-failure",
        "--restart-delay",
        "0",
        "--restart-max-attempts",
        "4",
        "--restart-window",
        "2m",
        "nginx",
    ]);
    assert_eq!(
        create.restart,
        RestartArgs {
            restart_condition: Some(RestartConditionArg::OnFailure),
            restart_delay: Some(Duration::ZERO),
            restart_max_attempts: Some(4),
            restart_window: Some(Duration::from_secs(120)),
        }
    );
    let bad = |args: &[&str]| {
        let mut all = vec!["rswarm", "service", "create", "--name", "web"];
        all.extend_from_slice(args);
        all.push("nginx");
        Cli::try_parse_from(all).unwrap_err().to_string()
    };
    assert!(bad(&["--restart-condition", "sometimes"]).contains("invalid value"));
    assert!(bad(&["--restart-delay", "5x"]).contains("invalid duration"));
    assert!(bad(&["--restart-max-attempts", "many"]).contains("invalid value"));
    assert!(parse_timeout("0").is_err());
}
