//! The harness's own tests: segment, process control and cleanup, with a stand-in
//! for the daemon. One test function, so that "nothing of this pid is left" is exact
//! (tests of one binary share the pid).

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rswarm_e2e::network::{ip, list_netns, process_prefix};
use rswarm_e2e::{ClientRuntime, Cluster, Role, skip_reason, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Stands in for `rswarm`: `init` runs until SIGTERM, `join` fails at once, anything
/// else runs until killed. Prints its arguments, so the log shows what it was given.
const FAKE_RSWARM: &str = r#"#!/bin/sh
echo "fake rswarm $*"
case "$1" in
  init) trap 'kill $!; echo "got TERM"; exit 0' TERM; sleep 1000 & wait ;;
  join) echo "join refused: bad token" >&2; exit 3 ;;
  *) exec sleep 1000 ;;
esac
"#;

fn fake_binary(dir: &Path) -> PathBuf {
    let path = dir.join("fake-rswarm");
    std::fs::write(&path, FAKE_RSWARM).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn ours() -> Vec<String> {
    let prefix = process_prefix();
    list_netns()
        .unwrap()
        .into_iter()
        .filter(|ns| ns.starts_with(&prefix))
        .collect()
}

fn netns_of(pid: u32) -> String {
    ip(&["netns", "identify", &pid.to_string()])
        .unwrap()
        .trim()
        .to_string()
}

/// Accepts one connection on `listen` (in `server`'s namespace) while `client`
/// connects to it; true if a byte made it across within a second.
fn can_connect(server: &ClientRuntime, client: &ClientRuntime, listen: SocketAddr) -> bool {
    let listener = server
        .run(async move { TcpListener::bind(listen).await })
        .unwrap();
    let listener = listener.unwrap_or_else(|err| panic!("bind {listen}: {err}"));
    let accept = server.handle().spawn(async move {
        let (mut stream, _) = listener.accept().await?;
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await?;
        Ok::<u8, std::io::Error>(byte[0])
    });
    let sent = client
        .run(async move {
            let connect = async {
                let mut stream = TcpStream::connect(listen).await?;
                stream.write_all(b"x").await
            };
            tokio::time::timeout(Duration::from_secs(1), connect).await
        })
        .unwrap();
    let ok = matches!(sent, Ok(Ok(())));
    if ok {
        let byte = server.run(accept).unwrap().unwrap().unwrap();
        assert_eq!(byte, b'x');
    } else {
        accept.abort();
    }
    ok
}

#[test]
fn harness() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping the harness tests: {why}");
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let fake = fake_binary(scratch.path());

    stale_namespaces_are_removed(&fake);
    segment_connects_nodes_and_cuts_them_off(&fake);
    processes_run_in_their_namespace_and_are_controlled(&fake);
    a_panicking_test_leaves_nothing_behind(&fake);
    real_binary_is_found();

    assert_eq!(ours(), Vec::<String>::new(), "namespaces left behind");
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&process_prefix())
        })
        .map(|e| e.path())
        .collect();
    assert!(
        leftovers.is_empty(),
        "directories left behind: {leftovers:?}"
    );
}

fn stale_namespaces_are_removed(fake: &Path) {
    // A pid that existed and is gone.
    let mut gone = Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let stale_ns = format!("rswarm-e2e-{dead_pid}-0");
    let stale_dir = std::env::temp_dir().join(format!("rswarm-e2e-{dead_pid}-leftover"));
    ip(&["netns", "add", &stale_ns]).unwrap();
    std::fs::create_dir_all(stale_dir.join("node-1")).unwrap();
    // A process left running inside, as a daemon of a crashed run would be.
    let mut orphan = Command::new("ip")
        .args(["netns", "exec", &stale_ns, "sleep", "1000"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();

    let cluster = Cluster::with_binary(fake.to_path_buf()).unwrap();
    assert!(
        !list_netns().unwrap().contains(&stale_ns),
        "stale namespace kept"
    );
    assert!(!stale_dir.exists(), "stale directory kept");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = orphan.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "orphan not killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    // Namespaces of live processes, this one's included, are kept.
    for ns in cluster.namespaces() {
        assert!(list_netns().unwrap().contains(&ns), "{ns} removed");
    }
    drop(cluster);
}

fn segment_connects_nodes_and_cuts_them_off(fake: &Path) {
    let mut cluster = Cluster::with_binary(fake.to_path_buf()).unwrap();
    let a = cluster.add_node().unwrap();
    let b = cluster.add_node().unwrap();
    let (node_a, node_b) = (cluster.node(a), cluster.node(b));
    assert_ne!(node_a.netns, node_b.netns);
    assert_ne!(node_a.ip, node_b.ip);
    assert!(
        node_a.netns.starts_with(&process_prefix()),
        "{}",
        node_a.netns
    );
    assert_eq!(node_a.addr.port(), 4242);
    let mut namespaces = cluster.namespaces();
    namespaces.sort();
    let mut listed = ours();
    listed.sort();
    assert_eq!(namespaces, listed);

    // The host gains neither an address nor a route on the segment.
    let subnet_prefix = format!(
        "{}.",
        node_a.ip.octets()[..3]
            .iter()
            .map(u8::to_string)
            .collect::<Vec<_>>()
            .join(".")
    );
    let host_addrs = ip(&["-4", "addr"]).unwrap();
    assert!(!host_addrs.contains(&subnet_prefix), "{host_addrs}");
    let host_routes = ip(&["-4", "route"]).unwrap();
    assert!(!host_routes.contains(&subnet_prefix), "{host_routes}");
    // Inside a node: lo up, eth0 with its address.
    let inside = ip(&["-n", &node_a.netns, "-4", "addr"]).unwrap();
    assert!(inside.contains("127.0.0.1"), "{inside}");
    assert!(inside.contains(&format!("{}/24", node_a.ip)), "{inside}");

    let in_a = ClientRuntime::new(&node_a.netns, 1).unwrap();
    let in_b = ClientRuntime::new(&node_b.netns, 1).unwrap();
    let client = cluster.client_runtime(1).unwrap();
    let addr_a = SocketAddr::new(node_a.ip.into(), 5000);
    assert!(can_connect(&in_a, &in_b, addr_a), "b cannot reach a");
    // The client namespace reaches the nodes too (that is what it is for).
    assert!(can_connect(
        &in_a,
        &client,
        SocketAddr::new(node_a.ip.into(), 5001)
    ));
    // Runtime threads really are in the namespace: a's address exists only there.
    let bind_outside = client
        .run(async move {
            TcpListener::bind(SocketAddr::new(addr_a.ip(), 0))
                .await
                .map(drop)
        })
        .unwrap();
    assert!(
        bind_outside.is_err(),
        "bound a's address outside a's namespace"
    );

    cluster.node(a).cut_network().unwrap();
    assert!(
        !can_connect(&in_a, &in_b, SocketAddr::new(node_a.ip.into(), 5002)),
        "cut node still reachable"
    );
    cluster.node(a).restore_network().unwrap();
    let mut port = 5003;
    wait_until(Duration::from_secs(10), "a to be reachable again", || {
        port += 1;
        if can_connect(&in_a, &in_b, SocketAddr::new(addr_a.ip(), port)) {
            Ok(())
        } else {
            Err("no connection".into())
        }
    })
    .unwrap();
    drop((in_a, in_b, client));

    let names = cluster.namespaces();
    let root = cluster.root_dir().to_path_buf();
    drop(cluster);
    let after = list_netns().unwrap();
    for ns in names {
        assert!(!after.contains(&ns), "{ns} left behind");
    }
    assert!(!root.exists(), "{} left behind", root.display());
}

fn processes_run_in_their_namespace_and_are_controlled(fake: &Path) {
    let mut cluster = Cluster::with_binary(fake.to_path_buf()).unwrap();
    let a = cluster.add_node().unwrap();
    let b = cluster.add_node().unwrap();
    let c = cluster.add_node().unwrap();

    // init: runs in its namespace with the node's arguments, logs to its file.
    let node = cluster.node_mut(a);
    node.start_init().unwrap();
    assert_eq!(node.role, Some(Role::Manager));
    let pid = node.pid().unwrap();
    // `ip netns exec` enters the namespace just after it starts.
    let netns = node.netns.clone();
    wait_until(
        Duration::from_secs(10),
        "the daemon to enter its namespace",
        || {
            let actual = netns_of(pid);
            if actual == netns { Ok(()) } else { Err(actual) }
        },
    )
    .unwrap();
    assert!(node.start_daemon().is_err(), "second process started");
    let expected = format!(
        "fake rswarm init --data-dir {} --listen 0.0.0.0:{} --advertise {} --hostname {}",
        node.data_dir().display(),
        node.addr.port(),
        node.addr,
        node.name,
    );
    wait_until(Duration::from_secs(10), "the log line", || {
        let log = node.log_tail(5);
        if log.contains(&expected) {
            Ok(())
        } else {
            Err(log)
        }
    })
    .unwrap();
    // SIGTERM: the stand-in exits cleanly on its own.
    let status = node.sigterm().unwrap().expect("exited by itself");
    assert!(status.success(), "{status}");
    assert!(node.log_tail(5).contains("got TERM"));
    assert!(!node.is_running());
    assert!(!node.died(), "a daemon the harness stopped counts as died");

    // daemon, kill -9, restart: the log keeps both runs.
    node.start_daemon().unwrap();
    assert!(!node.died());
    let first = node.pid().unwrap();
    node.kill9().unwrap();
    assert!(!node.is_running());
    assert!(!node.died());
    node.start_daemon().unwrap();
    assert_ne!(node.pid().unwrap(), first);
    let log = std::fs::read_to_string(node.log_path()).unwrap();
    // The harness's header of each run (the stand-in may or may not have echoed its
    // arguments before the kill).
    let runs = log
        .lines()
        .filter(|l| l.starts_with("===== e2e:") && l.contains("rswarm daemon --data-dir"))
        .count();
    assert_eq!(runs, 2, "{log}");

    // A refused join: the output comes back, nothing keeps running.
    let manager = cluster.node(a).addr;
    let output = cluster
        .node(b)
        .try_join("RSWTKN-1-x", manager, Duration::from_secs(10))
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&output.stderr).contains("join refused"));
    assert!(!cluster.node(b).has_state());

    // A daemon that exits by itself is seen as died, before and after reaping.
    let node_c = cluster.node_mut(c);
    node_c
        .start_join("RSWTKN-1-x", manager, Role::Worker)
        .unwrap();
    wait_until(
        Duration::from_secs(10),
        "the refused join to be seen",
        || {
            if node_c.died() {
                Ok(())
            } else {
                Err("still alive".to_string())
            }
        },
    )
    .unwrap();
    assert!(node_c.wait_exit(Duration::from_secs(10)).unwrap().code() == Some(3));
    assert!(node_c.died());

    // A command that keeps running is killed at the time limit and reported.
    let err = node_c
        .exec_in_netns(&["daemon"], Duration::from_millis(300))
        .unwrap_err()
        .to_string();
    assert!(err.contains("still running"), "{err}");

    // Drop stops what still runs (the restarted daemon of a).
    let pid = cluster.node_mut(a).pid().unwrap();
    drop(cluster);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "daemon {pid} survived"
    );
}

fn a_panicking_test_leaves_nothing_behind(fake: &Path) {
    let fake = fake.to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::thread::spawn(move || {
        let mut cluster = Cluster::with_binary(fake).unwrap();
        let a = cluster.add_node().unwrap();
        cluster.node_mut(a).start_init().unwrap();
        let pid = cluster.node_mut(a).pid().unwrap();
        tx.send((cluster.namespaces(), cluster.root_dir().to_path_buf(), pid))
            .unwrap();
        panic!("deliberate failure inside a test");
    })
    .join();
    assert!(result.is_err());
    let (namespaces, root, pid) = rx.recv().unwrap();
    let after = list_netns().unwrap();
    for ns in namespaces {
        assert!(!after.contains(&ns), "{ns} left behind");
    }
    assert!(!root.exists());
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "daemon {pid} survived"
    );
}

fn real_binary_is_found() {
    let binary = rswarm_e2e::binary::rswarm_binary().unwrap();
    let output = Command::new(&binary).arg("--version").output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("rswarm "));
}
