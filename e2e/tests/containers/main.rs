//! Services of real containers on real nodes: the test image (built from
//! `rswarm-testimg`, nothing downloaded) imported on a manager, fetched by the
//! workers, run with namespaces and cgroups, its logs read back, and nothing left
//! on the nodes once the service is gone.
//!
//! Root only (network namespaces, containers); skipped with a notice otherwise.

use std::time::Duration;

use anyhow::{Context, ensure};
use rswarm_e2e::services;
use rswarm_e2e::{Cluster, skip_reason, wait_until};

mod mesh;

/// Tasks must get where they are asked within this (the image is fetched and
/// unpacked first; the machine may be busy).
const CONVERGE: Duration = Duration::from_secs(90);

fn with_cluster(test: &str, scenario: impl FnOnce(&mut Cluster) -> anyhow::Result<()>) {
    with_cluster_flags(test, &[], scenario);
}

/// [`with_cluster`] with `flags` given to every node's `init` or `join`.
fn with_cluster_flags(
    test: &str,
    flags: &[&str],
    scenario: impl FnOnce(&mut Cluster) -> anyhow::Result<()>,
) {
    if let Some(why) = skip_reason() {
        eprintln!("skipping {test}: {why}");
        return;
    }
    let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    let mut cluster = Cluster::start_with(1, 2, &flags)
        .unwrap_or_else(|err| panic!("{test}: cluster did not form: {err:#}"));
    if let Err(err) = scenario(&mut cluster) {
        panic!("{test}: {err:#}");
    }
}

/// Imports the test image as `testimg:1` through the first manager.
fn import_test_image(cluster: &Cluster) -> anyhow::Result<()> {
    let tar = cluster.root_dir().join("testimg.tar");
    rswarm_e2e::containers::test_image_tar(cluster.binary(), &tar)
        .context("building the test image")?;
    cluster.node(0).cli_ok(&[
        "image".as_ref(),
        "import".as_ref(),
        "--name".as_ref(),
        "testimg:1".as_ref(),
        tar.as_os_str(),
    ])?;
    Ok(())
}

/// `service create --detach --name NAME --replicas N REST...` through the first
/// manager.
fn create(cluster: &Cluster, name: &str, replicas: u64, rest: &[&str]) -> anyhow::Result<()> {
    let replicas = replicas.to_string();
    let mut args = vec![
        "service",
        "create",
        "--detach",
        "--name",
        name,
        "--replicas",
        &replicas,
    ];
    args.extend_from_slice(rest);
    cluster.node(0).cli_ok(&args)?;
    Ok(())
}

/// The index of the node a task runs on.
fn node_of(cluster: &Cluster, task: &services::TaskView) -> anyhow::Result<usize> {
    cluster
        .index_of_name(&task.node)
        .with_context(|| format!("unknown node {}", task.node))
}

/// Containers a node holds now.
fn containers_on(cluster: &Cluster, index: usize) -> Vec<String> {
    std::fs::read_dir(cluster.node(index).data_dir().join("runtime/containers"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Tasks holding an address of a node's task network now.
fn addresses_on(cluster: &Cluster, index: usize) -> Vec<String> {
    std::fs::read_dir(cluster.node(index).data_dir().join("runtime/network"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_replicated_service_runs_in_containers_and_leaves_nothing_behind() {
    with_cluster("containers", |cluster| {
        import_test_image(cluster)?;
        // The image has no command: the service gives one.
        create(
            cluster,
            "echo",
            3,
            &["testimg:1", "/bin/testimg", "serve", "8080"],
        )?;
        let tasks = services::wait_converged(cluster, 0, "echo", 3, CONVERGE, |_| Ok(()))?;
        let ids: Vec<String> = tasks.iter().map(|t| t.id.clone()).collect();

        let logs = cluster.node(0).cli_ok(&["service", "logs", "echo"])?;
        ensure!(
            logs.lines()
                .filter(|l| l.ends_with("| listening on 0.0.0.0:8080"))
                .count()
                == 3,
            "expected a start line from each task: {logs}"
        );

        cluster.node(0).cli_ok(&["service", "rm", "echo"])?;
        wait_until(CONVERGE, "every container removed", || {
            let left: Vec<String> = (0..3)
                .flat_map(|i| [containers_on(cluster, i), addresses_on(cluster, i)].concat())
                .filter(|c| ids.contains(c))
                .collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("left: {left:?}"))
            }
        })?;
        for id in &ids {
            for hierarchy in ["memory", "pids", "cpu,cpuacct", "unified"] {
                let dir = std::path::Path::new("/sys/fs/cgroup")
                    .join(hierarchy)
                    .join("rswarm")
                    .join(id);
                ensure!(!dir.exists(), "cgroup left behind: {}", dir.display());
            }
        }
        Ok(())
    });
}

#[test]
fn an_oom_kill_is_reported_with_the_limit() {
    with_cluster("oom", |cluster| {
        import_test_image(cluster)?;
        create(
            cluster,
            "hog",
            1,
            &[
                "--limit-memory",
                "16MiB",
                "--restart-condition",
                "none",
                "testimg:1",
                "/bin/testimg",
                "alloc",
                "64",
            ],
        )?;
        wait_until(CONVERGE, "the task failed by OOM", || {
            let tasks = services::tasks(cluster, 0, "hog").map_err(|e| format!("{e:#}"))?;
            match tasks.iter().find(|t| t.state == "failed") {
                Some(t) if t.error.contains("OOM killed (limit 16MiB)") => Ok(()),
                Some(t) => Err(format!("failed without the OOM reason: {t:?}")),
                None => Err(format!("{tasks:?}")),
            }
        })?;
        Ok(())
    });
}

#[test]
fn a_missing_image_rejects_the_task() {
    with_cluster("missing image", |cluster| {
        create(cluster, "ghost", 1, &["nosuch:1"])?;
        wait_until(CONVERGE, "a rejected task saying why", || {
            let tasks = services::tasks(cluster, 0, "ghost").map_err(|e| format!("{e:#}"))?;
            match tasks.iter().find(|t| t.state == "rejected") {
                Some(t) if t.error.contains("image not found") => Ok(()),
                _ => Err(format!("{tasks:?}")),
            }
        })?;
        Ok(())
    });
}

#[test]
fn a_named_volume_outlives_its_task_and_is_removed_once_unused() {
    with_cluster("volumes", |cluster| {
        import_test_image(cluster)?;
        create(
            cluster,
            "writer",
            1,
            &[
                "--restart-condition",
                "none",
                "--mount",
                "type=volume, source=data, target=/data",
                "testimg:1",
                "/bin/testimg",
                "write",
                "/data/hello",
                "world",
            ],
        )?;
        let task = wait_until(CONVERGE, "the writer finished", || {
            let tasks = services::tasks(cluster, 0, "writer").map_err(|e| format!("{e:#}"))?;
            match tasks.iter().find(|t| t.state == "complete") {
                Some(t) => Ok(t.clone()),
                None => Err(format!("{tasks:?}")),
            }
        })?;
        let index = node_of(cluster, &task)?;
        let node = cluster.node(index);
        let volumes = node.cli_json(&["volume", "ls"])?;
        ensure!(
            volumes[0]["name"] == "data" && volumes[0]["size_bytes"] == 5,
            "{volumes}"
        );
        let written = std::fs::read_to_string(node.data_dir().join("runtime/volumes/data/hello"))?;
        ensure!(written == "world", "volume holds {written:?}");

        let refused = node.cli(&["volume", "rm", "data"])?;
        ensure!(
            !refused.status.success(),
            "removed a volume a container mounts"
        );
        ensure!(
            String::from_utf8_lossy(&refused.stderr).contains("in use"),
            "unclear refusal: {}",
            String::from_utf8_lossy(&refused.stderr)
        );
        cluster.node(0).cli_ok(&["service", "rm", "writer"])?;
        wait_until(CONVERGE, "the volume removable", || {
            let out = node
                .cli(&["volume", "rm", "data"])
                .map_err(|e| format!("{e:#}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        })?;
        let left = node.cli_json(&["volume", "ls"])?;
        ensure!(left.as_array().is_some_and(Vec::is_empty), "{left}");
        Ok(())
    });
}

/// The host pid of a container's pid 1, from the state its shim recorded.
fn container_pid(cluster: &Cluster, index: usize, task: &str) -> anyhow::Result<u64> {
    let path = cluster
        .node(index)
        .data_dir()
        .join("runtime/containers")
        .join(task)
        .join("state.json");
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    state["pid"]
        .as_u64()
        .with_context(|| format!("no pid in {}", path.display()))
}

#[test]
fn a_daemon_restart_keeps_its_containers_running() {
    with_cluster("live restore", |cluster| {
        import_test_image(cluster)?;
        create(
            cluster,
            "keep",
            2,
            &[
                "--constraint",
                "node.role==worker",
                "testimg:1",
                "/bin/testimg",
                "sleep",
                "600",
            ],
        )?;
        let tasks = services::wait_converged(cluster, 0, "keep", 2, CONVERGE, |_| Ok(()))?;
        let task = &tasks[0];
        let index = node_of(cluster, task)?;
        let pid = container_pid(cluster, index, &task.id)?;

        let node = cluster.node_mut(index);
        node.sigterm()?;
        ensure!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "the container died with its daemon"
        );
        node.start_daemon()?;

        // The same task keeps running in the same process: nothing was restarted.
        std::thread::sleep(Duration::from_secs(3));
        let after = services::wait_converged(cluster, 0, "keep", 2, CONVERGE, |_| Ok(()))?;
        ensure!(
            after.iter().any(|t| t.id == task.id && t.is_running()),
            "the task was replaced: {after:?}"
        );
        ensure!(
            container_pid(cluster, index, &task.id)? == pid,
            "the container was restarted"
        );
        let history = services::tasks(cluster, 0, "keep")?;
        ensure!(history.len() == 2, "tasks were replaced: {history:?}");
        Ok(())
    });
}

#[test]
fn remapped_nodes_run_container_root_as_an_unprivileged_host_user() {
    const MAP: &str = "1700000:1700000:65536";
    with_cluster_flags("userns", &["--userns-remap", MAP], |cluster| {
        import_test_image(cluster)?;
        create(
            cluster,
            "mapped",
            1,
            &["testimg:1", "/bin/testimg", "sleep", "600"],
        )?;
        let tasks = services::wait_converged(cluster, 0, "mapped", 1, CONVERGE, |_| Ok(()))?;
        let index = node_of(cluster, &tasks[0])?;
        let pid = container_pid(cluster, index, &tasks[0].id)?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next())
            .context("no Uid line")?;
        ensure!(uid == "1700000", "container root runs as host uid {uid}");
        let map = std::fs::read_to_string(format!("/proc/{pid}/uid_map"))?;
        ensure!(
            map.split_whitespace().collect::<Vec<_>>() == ["0", "1700000", "65536"],
            "uid_map: {map}"
        );
        Ok(())
    });
}

#[test]
fn a_daemon_removes_containers_of_tasks_removed_while_it_was_down() {
    with_cluster("leftovers", |cluster| {
        import_test_image(cluster)?;
        create(
            cluster,
            "gone",
            1,
            &[
                "--constraint",
                "node.role==worker",
                "--stop-grace-period",
                "1s",
                "testimg:1",
                "/bin/testimg",
                "sleep",
                "600",
            ],
        )?;
        let tasks = services::wait_converged(cluster, 0, "gone", 1, CONVERGE, |_| Ok(()))?;
        let index = node_of(cluster, &tasks[0])?;
        let pid = container_pid(cluster, index, &tasks[0].id)?;

        cluster.node_mut(index).sigterm()?;
        cluster.node(0).cli_ok(&["service", "rm", "gone"])?;
        ensure!(
            containers_on(cluster, index).contains(&tasks[0].id),
            "the container went while its daemon was down"
        );
        cluster.node_mut(index).start_daemon()?;
        wait_until(
            CONVERGE,
            "the leftover container and its address removed",
            || {
                let left = containers_on(cluster, index);
                let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
                let addresses = addresses_on(cluster, index);
                if left.is_empty() && !alive && addresses.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "containers {left:?}, process alive: {alive}, addresses held by {addresses:?}"
                    ))
                }
            },
        )?;
        Ok(())
    });
}

#[test]
fn tasks_on_different_nodes_reach_each_other_over_the_overlay() {
    with_cluster("overlay", |cluster| {
        import_test_image(cluster)?;
        let create = |args: &[&str]| -> anyhow::Result<()> {
            let mut argv = vec!["service", "create", "--detach"];
            argv.extend_from_slice(args);
            let out = cluster.node(0).cli(&argv)?;
            ensure!(
                out.status.success(),
                "create failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(())
        };
        create(&[
            "--name",
            "web",
            "--replicas",
            "2",
            "--replicas-max-per-node",
            "1",
            "--constraint",
            "node.role==worker",
            "testimg:1",
            "/bin/testimg",
            "serve",
            "8080",
        ])?;
        let all = services::wait_converged(cluster, 0, "web", 2, CONVERGE, |tasks| {
            if services::running(tasks)
                .iter()
                .all(|t| !t.address.is_empty())
            {
                Ok(())
            } else {
                Err(format!("a task has no address yet: {tasks:?}"))
            }
        })?;
        let tasks: Vec<&services::TaskView> = services::running(&all);
        let subnets: Vec<String> = tasks
            .iter()
            .map(|t| {
                let octets: Vec<&str> = t.address.split('.').collect();
                octets[..3].join(".")
            })
            .collect();
        ensure!(
            tasks
                .iter()
                .all(|t| t.address.starts_with("10.231.") && !t.address.starts_with("10.231.0.")),
            "worker tasks outside the workers' subnets of the default pool: {tasks:?}"
        );
        ensure!(
            subnets[0] != subnets[1],
            "both tasks in one subnet: {tasks:?}"
        );

        // The manager's task asks both workers' tasks, across the overlay.
        let targets: Vec<String> = tasks
            .iter()
            .map(|t| format!("{}:8080", t.address))
            .collect();
        let mut args = vec![
            "--name",
            "client",
            "--replicas",
            "1",
            "--restart-condition",
            "none",
            "--constraint",
            "node.role==manager",
            "testimg:1",
            "/bin/testimg",
            "get",
        ];
        args.extend(targets.iter().map(String::as_str));
        create(&args)?;
        let expected: Vec<String> = tasks
            .iter()
            // A task's hostname is `SERVICE.SLOT`.
            .map(|t| format!("{}:8080 web.{}", t.address, t.slot))
            .collect();
        wait_until(CONVERGE, "the client's replies from both tasks", || {
            let logs = cluster
                .node(0)
                .cli_ok(&["service", "logs", "client"])
                .map_err(|e| e.to_string())?;
            let missing: Vec<&String> = expected
                .iter()
                .filter(|line| !logs.lines().any(|l| l.ends_with(line.as_str())))
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("missing {missing:?} in logs: {logs}"))
            }
        })?;

        // The overlay follows the node list: a worker marked down loses its route
        // on the manager's node, and gets it back once it is up again.
        let worker = cluster
            .index_of_name(&tasks[0].node)
            .with_context(|| format!("unknown node {}", tasks[0].node))?;
        let subnet = format!("{}.0/24", subnets[0]);
        let has_route = |cluster: &Cluster| -> anyhow::Result<bool> {
            let routes = rswarm_e2e::network::ip(&[
                "-n",
                cluster.node(0).netns_name(),
                "route",
                "show",
                "proto",
                "114",
            ])?;
            Ok(routes.lines().any(|l| l.starts_with(&subnet)))
        };
        ensure!(has_route(cluster)?, "no route to {subnet} on the manager");
        cluster.node_mut(worker).sigterm()?;
        wait_until(
            CONVERGE,
            "the stopped worker's route removed",
            || match has_route(cluster) {
                Ok(false) => Ok(()),
                Ok(true) => Err(format!("still a route to {subnet}")),
                Err(e) => Err(e.to_string()),
            },
        )?;
        cluster.node_mut(worker).start_daemon()?;
        wait_until(
            CONVERGE,
            "the restarted worker's route back",
            || match has_route(cluster) {
                Ok(true) => Ok(()),
                Ok(false) => Err(format!("no route to {subnet}")),
                Err(e) => Err(e.to_string()),
            },
        )?;
        Ok(())
    });
}

/// Asks `addr` `count` times from the test's client namespace (one connection
/// each) and returns the reply bodies.
fn get_from_client(cluster: &Cluster, addr: &str, count: usize) -> anyhow::Result<Vec<String>> {
    let testimg = rswarm_e2e::containers::testimg_binary(cluster.binary());
    let mut command = std::process::Command::new("ip");
    command
        .args(["netns", "exec", cluster.client_netns()])
        .arg(&testimg)
        .arg("get");
    for _ in 0..count {
        command.arg(addr);
    }
    let out = command.output().context("running testimg get")?;
    ensure!(
        out.status.success(),
        "get {addr} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(_, body)| body.to_string()))
        .collect())
}

/// Waits until requests to `addr` from the client namespace have been answered
/// by every task in `expected` (the proxies learn tasks shortly after they run).
/// Waits until `service` runs `replicas` tasks, each with an address.
fn wait_addressed(
    cluster: &Cluster,
    service: &str,
    replicas: u64,
) -> anyhow::Result<Vec<services::TaskView>> {
    let tasks = services::wait_converged(cluster, 0, service, replicas, CONVERGE, |tasks| {
        match services::running(tasks)
            .iter()
            .find(|t| t.address.is_empty())
        {
            Some(t) => Err(format!("{} has no address yet", t.id)),
            None => Ok(()),
        }
    })?;
    Ok(services::running(&tasks).into_iter().cloned().collect())
}

/// The tasks' addresses, sorted as the test image prints a name's addresses.
fn sorted_addresses(tasks: &[services::TaskView]) -> anyhow::Result<Vec<std::net::Ipv4Addr>> {
    let mut addresses: Vec<std::net::Ipv4Addr> = tasks
        .iter()
        .map(|t| t.address.parse())
        .collect::<Result<_, _>>()?;
    addresses.sort();
    Ok(addresses)
}

/// Runs a service `lookup` whose task resolves `name` (again until it can) and
/// waits until it has printed exactly `addresses`.
fn wait_resolves(
    cluster: &Cluster,
    lookup: &str,
    name: &str,
    addresses: &[std::net::Ipv4Addr],
) -> anyhow::Result<()> {
    let listed: Vec<String> = addresses.iter().map(ToString::to_string).collect();
    let wanted = format!("{name} {}", listed.join(" "));
    create(
        cluster,
        lookup,
        1,
        &[
            "--restart-condition",
            "on-failure",
            "testimg:1",
            "/bin/testimg",
            "resolve",
            name,
        ],
    )?;
    wait_until(CONVERGE, &format!("{name} to resolve to its tasks"), || {
        let logs = cluster
            .node(0)
            .cli_ok(&["service", "logs", lookup])
            .map_err(|e| e.to_string())?;
        if logs.lines().any(|l| l.trim_end().ends_with(&wanted)) {
            Ok(())
        } else {
            Err(format!("no {wanted:?} in logs: {logs}"))
        }
    })?;
    Ok(())
}

fn wait_reaches(cluster: &Cluster, addr: &str, expected: &[&str]) -> anyhow::Result<()> {
    wait_until(CONVERGE, &format!("{addr} to reach {expected:?}"), || {
        let replies =
            get_from_client(cluster, addr, 2 * expected.len()).map_err(|e| e.to_string())?;
        let missing: Vec<&&str> = expected
            .iter()
            .filter(|name| !replies.iter().any(|r| r == *name))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("no reply from {missing:?}: {replies:?}"))
        }
    })
}

#[test]
fn a_published_port_on_every_node_reaches_every_task() {
    with_cluster("published port", |cluster| {
        import_test_image(cluster)?;
        create(
            cluster,
            "web",
            3,
            &[
                "--replicas-max-per-node",
                "1",
                "--publish",
                "8000:8080",
                "testimg:1",
                "/bin/testimg",
                "serve",
                "8080",
            ],
        )?;
        let task_addresses = sorted_addresses(&wait_addressed(cluster, "web", 3)?)?;
        for node in cluster.nodes() {
            let addr = format!("{}:8000", node.addr.ip());
            wait_reaches(cluster, &addr, &["web.1", "web.2", "web.3"])?;
        }

        // Another service publishes web's target port, as `-p 8080:8080`
        // usually is: its listener (`0.0.0.0:8080`) and web's VIP listener
        // (`VIP:8080`) share the port on every node, and each connection goes
        // to the service whose address it was made to. It also publishes TCP
        // port 53, beside the node's DNS server on the bridge gateway's port
        // 53 (which the name lookups below still use).
        create(
            cluster,
            "api",
            1,
            &[
                "--publish",
                "8080:8080",
                "--publish",
                "53:8080",
                "testimg:1",
                "/bin/testimg",
                "serve",
                "8080",
            ],
        )?;
        for node in cluster.nodes() {
            for port in [8080, 53] {
                wait_reaches(cluster, &format!("{}:{port}", node.addr.ip()), &["api.1"])?;
            }
        }

        // A task reaches the service by name and through its VIP (the name
        // resolves to it through the node's DNS server), served by its own
        // node's proxy, on the target port.
        let inspected = cluster.node(0).cli_json(&["service", "inspect", "web"])?;
        let service = inspected.get(0).unwrap_or(&inspected);
        let vip = service["endpoint"]["virtual_ip"]
            .as_str()
            .filter(|v| !v.is_empty())
            .with_context(|| format!("web has no VIP: {service}"))?
            .to_string();
        let target = format!("{vip}:8080");
        // A service whose target port is the one the managers' daemons listen
        // on (`0.0.0.0:4242`): its VIP listener shares the port with the
        // daemon of the client's node, a manager. Its published port is left
        // to the managers, who take the first of 30000-32767.
        let daemon_target = rswarm_e2e::node::PORT.to_string();
        create(
            cluster,
            "daemonport",
            1,
            &[
                "--publish",
                &daemon_target,
                "testimg:1",
                "/bin/testimg",
                "serve",
                &daemon_target,
            ],
        )?;
        services::wait_converged(cluster, 0, "daemonport", 1, CONVERGE, |_| Ok(()))?;
        let inspected = cluster
            .node(0)
            .cli_json(&["service", "inspect", "daemonport"])?;
        let service = inspected.get(0).unwrap_or(&inspected);
        let assigned = &service["spec"]["endpoint"]["ports"][0]["published_port"];
        ensure!(
            assigned == 30000,
            "published port {assigned} assigned, not 30000"
        );
        for node in cluster.nodes() {
            wait_reaches(
                cluster,
                &format!("{}:30000", node.addr.ip()),
                &["daemonport.1"],
            )?;
        }
        let daemon_port = format!("daemonport:{}", rswarm_e2e::node::PORT);
        create(
            cluster,
            "client",
            1,
            &[
                "--restart-condition",
                "none",
                "--constraint",
                "node.role==manager",
                "testimg:1",
                "/bin/testimg",
                "get",
                &target,
                "web:8080",
                "web:8080",
                "web:8080",
                &daemon_port,
            ],
        )?;
        wait_until(CONVERGE, "the client's replies by VIP and by name", || {
            let logs = cluster
                .node(0)
                .cli_ok(&["service", "logs", "client"])
                .map_err(|e| e.to_string())?;
            let count = |host: &str| {
                logs.lines()
                    .filter(|l| l.contains(&format!("{host} web.")))
                    .count()
            };
            let beside_daemon = logs
                .lines()
                .filter(|l| l.contains(&format!("{daemon_port} daemonport.1")))
                .count();
            match (count(&target), count("web:8080"), beside_daemon) {
                (1, 3, 1) => Ok(()),
                (vip, name, beside_daemon) => Err(format!(
                    "{vip} of 1 replies through the VIP, {name} of 3 by name, \
                     {beside_daemon} of 1 on the daemon's port: {logs}"
                )),
            }
        })?;
        // `tasks.web` answers the addresses of the three tasks.
        wait_resolves(cluster, "lookup", "tasks.web", &task_addresses)?;

        // A DNSRR service has no VIP: its name itself answers its tasks'
        // addresses (a host-mode port, which would otherwise give it a VIP).
        create(
            cluster,
            "db",
            2,
            &[
                "--endpoint-mode",
                "dnsrr",
                "--publish",
                "published=8600,target=8080,mode=host",
                "testimg:1",
                "/bin/testimg",
                "serve",
                "8080",
            ],
        )?;
        let db_addresses = sorted_addresses(&wait_addressed(cluster, "db", 2)?)?;
        let inspected = cluster.node(0).cli_json(&["service", "inspect", "db"])?;
        let service = inspected.get(0).unwrap_or(&inspected);
        ensure!(
            service["endpoint"]["virtual_ip"]
                .as_str()
                .unwrap_or_default()
                .is_empty()
                && service["spec"]["endpoint"]["mode"] == "dnsrr",
            "db is not a DNSRR service without a VIP: {service}"
        );
        wait_resolves(cluster, "lookup-db", "db", &db_addresses)?;

        // The port is the cluster's: another service cannot take it.
        let out = cluster.node(0).cli(&[
            "service",
            "create",
            "--detach",
            "--name",
            "other",
            "--publish",
            "8000:80",
            "testimg:1",
        ])?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success() && stderr.contains("port 8000/tcp is already published"),
            "the conflicting service was not refused clearly: {stderr}"
        );
        ensure!(
            !cluster
                .node(0)
                .cli_ok(&["service", "ls"])?
                .contains("other"),
            "the refused service was written"
        );
        // Nor can an update take it.
        let before = cluster.node(0).cli_ok(&["service", "inspect", "lookup"])?;
        let out = cluster.node(0).cli(&[
            "service",
            "update",
            "--detach",
            "--publish-add",
            "8000:80",
            "lookup",
        ])?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success()
                && stderr.contains("port 8000/tcp is already published by service \"web\""),
            "the conflicting update was not refused clearly: {stderr}"
        );
        ensure!(
            cluster.node(0).cli_ok(&["service", "inspect", "lookup"])? == before,
            "the refused update was written"
        );
        Ok(())
    });
}

/// A program on a node holding a published port: the node reports the port its
/// proxy cannot serve, `node ls` and `node inspect` show it, and once the port
/// is free the proxy binds it and the report clears.
#[test]
fn a_port_a_node_cannot_serve_is_reported() {
    with_cluster("port not served", |cluster| {
        import_test_image(cluster)?;
        let node = cluster.node(2);
        let (name, netns) = (node.name.clone(), node.netns.clone());
        let testimg = rswarm_e2e::containers::testimg_binary(cluster.binary());
        let mut blocker = Blocker(
            std::process::Command::new("ip")
                .args(["netns", "exec", &netns])
                .arg(&testimg)
                .args(["serve", "8500"])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .context("starting the program that holds port 8500")?,
        );
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(blocker.0.stdout.as_mut().context("no stdout")?),
            &mut line,
        )?;
        ensure!(
            line.starts_with("listening"),
            "the blocker did not listen: {line:?}"
        );
        create(
            cluster,
            "blocked",
            1,
            &[
                "--publish",
                "8500:8080",
                "testimg:1",
                "/bin/testimg",
                "serve",
                "8080",
            ],
        )?;
        let errors = |cluster: &Cluster| -> Result<Vec<String>, String> {
            let inspected = cluster
                .node(0)
                .cli_json(&["node", "inspect", &name])
                .map_err(|e| e.to_string())?;
            let node = inspected.get(0).unwrap_or(&inspected);
            Ok(node["status"]["port_errors"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|e| e.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default())
        };
        wait_until(CONVERGE, "the node to report port 8500", || {
            let errors = errors(cluster)?;
            if errors
                .iter()
                .any(|e| e.contains("0.0.0.0:8500") && e.contains("in use"))
            {
                Ok(())
            } else {
                Err(format!("reported: {errors:?}"))
            }
        })?;
        let table = cluster.node(0).cli_ok(&["node", "ls"])?;
        ensure!(
            table
                .lines()
                .any(|l| l.contains(&name) && l.contains("Ready (1 port not served)")),
            "node ls does not show it: {table}"
        );
        ensure!(
            errors(cluster).map_err(anyhow::Error::msg)?.len() == 1,
            "other nodes' ports?"
        );
        for other in [0, 1] {
            let other = cluster.node(other).name.clone();
            ensure!(
                !table
                    .lines()
                    .any(|l| l.contains(&other) && l.contains("not served")),
                "{other} reports a port it serves: {table}"
            );
        }
        drop(blocker);
        wait_until(CONVERGE, "the report to clear", || match errors(cluster) {
            Ok(errors) if errors.is_empty() => Ok(()),
            Ok(errors) => Err(format!("still reported: {errors:?}")),
            Err(e) => Err(e),
        })?;
        let addr = format!("{}:8500", cluster.node(2).addr.ip());
        wait_reaches(cluster, &addr, &["blocked.1"])?;
        Ok(())
    });
}

/// A process killed (and reaped) when dropped, also when the test fails.
struct Blocker(std::process::Child);

impl Drop for Blocker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
