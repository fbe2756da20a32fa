//! A container's isolation: pid 1, hostname, processes, network, env, users,
//! capabilities (root only).

mod support;

use std::time::{Duration, Instant};

use rswarm_agent_runtime::container::{ContainerError, NetworkMode, caps};
use support::{TestRuntime, root_or_skip};

#[tokio::test]
async fn command_is_pid_1_with_its_own_hostname_and_no_host_processes() {
    if !root_or_skip() {
        return;
    }
    let t = TestRuntime::new();
    let mut c = t.config("pid1", &["pid"]);
    c.hostname = "box-one".into();
    let (exit, _) = t.run(&c).await;
    assert_eq!(exit.code, 0);
    assert_eq!(t.stdout(&c.id), vec!["1"]);

    let c = {
        let mut c = t.config("host", &["hostname"]);
        c.hostname = "box-two".into();
        c
    };
    t.run(&c).await;
    assert_eq!(t.stdout(&c.id), vec!["box-two"]);

    let c = t.config("ps", &["ps"]);
    t.run(&c).await;
    assert_eq!(
        t.stdout(&c.id),
        vec!["1"],
        "only the container's own process is visible"
    );
}

#[tokio::test]
async fn exit_codes_env_and_isolated_loopback() {
    if !root_or_skip() {
        return;
    }
    let t = TestRuntime::new();
    let c = t.config("exit", &["exit", "3"]);
    let (exit, _) = t.run(&c).await;
    assert_eq!((exit.code, exit.signal, exit.oom_killed), (3, None, false));

    let mut c = t.config("env", &["env"]);
    c.process.env = vec!["GREETING=hello world".into()];
    t.run(&c).await;
    let env = t.stdout(&c.id);
    assert!(env.contains(&"GREETING=hello world".to_string()), "{env:?}");
    assert!(env.iter().any(|e| e.starts_with("PATH=")), "{env:?}");
    assert!(env.contains(&format!("HOSTNAME={}", c.hostname)), "{env:?}");

    let c = t.config("net", &["ls", "/sys/class/net"]);
    t.run(&c).await;
    assert_eq!(
        t.stdout(&c.id),
        vec!["lo"],
        "a new network namespace has only lo"
    );
    let c = t.config("lo", &["cat", "/sys/class/net/lo/flags"]);
    t.run(&c).await;
    let flags = u32::from_str_radix(t.stdout(&c.id)[0].trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo is up");

    let mut c = t.config("etc", &["cat", "/etc/hosts"]);
    c.etc_hosts = "10.0.0.1 db\n".into();
    t.run(&c).await;
    assert_eq!(t.stdout(&c.id), vec!["10.0.0.1 db"]);
}

#[tokio::test]
async fn a_user_and_a_capability_set_are_applied() {
    if !root_or_skip() {
        return;
    }
    let t = TestRuntime::new();
    let mut c = t.config("user", &["id"]);
    c.process.uid = 1000;
    c.process.gid = 1000;
    c.process.additional_gids = vec![2000];
    t.run(&c).await;
    assert_eq!(t.stdout(&c.id), vec!["uid=1000 gid=1000 groups=2000"]);

    let mut c = t.config("usercaps", &["cat", "/proc/self/status"]);
    c.process.uid = 1000;
    t.run(&c).await;
    let status = t.stdout(&c.id);
    let field = |name: &str| {
        status
            .iter()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap()
    };
    assert_eq!(field("CapEff:"), "0000000000000000");
    assert_eq!(field("NoNewPrivs:"), "1");

    let mut c = t.config("rootcaps", &["cat", "/proc/self/status"]);
    c.capabilities = caps::with_changes(&["NET_BIND_SERVICE".into()], &["ALL".into()]).unwrap();
    t.run(&c).await;
    let status = t.stdout(&c.id);
    let field = |name: &str| {
        status
            .iter()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap()
    };
    assert_eq!(
        field("CapEff:"),
        "0000000000000400",
        "only CAP_NET_BIND_SERVICE"
    );
    assert_eq!(field("CapBnd:"), "0000000000000400");
    assert_eq!(field("CapInh:"), "0000000000000000");
}

#[tokio::test]
async fn a_missing_program_fails_start_with_the_reason() {
    if !root_or_skip() {
        return;
    }
    let t = TestRuntime::new();
    let mut c = t.config("nope", &[]);
    c.process.argv = vec!["/bin/nope".into()];
    t.rt.create(&c).await.unwrap();
    let err = t.rt.start(&c.id).await.unwrap_err();
    assert!(matches!(err, ContainerError::Start { .. }), "{err}");
    assert!(err.to_string().contains("exec /bin/nope"), "{err}");
    t.rt.remove(&c.id).await.unwrap();
}

#[tokio::test]
async fn a_container_can_join_an_existing_network_namespace() {
    if !root_or_skip() {
        return;
    }
    let t = TestRuntime::new();
    let mut holder = std::process::Command::new("unshare")
        .args(["-n", "sleep", "30"])
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let ns = format!("/proc/{}/ns/net", holder.id());
    let holder = Kill(&mut holder);
    let own = std::fs::read_link("/proc/self/ns/net").unwrap();
    let start = Instant::now();
    let target = loop {
        let link = std::fs::read_link(&ns).unwrap();
        if link != own {
            break link;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "unshare -n did not run"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let mut c = t.config("joinnet", &["readlink", "/proc/self/ns/net"]);
    c.network = NetworkMode::Join { path: ns.into() };
    let (exit, log) = t.run(&c).await;
    assert_eq!(exit.code, 0, "{log}");
    assert_eq!(t.stdout(&c.id), vec![target.display().to_string()]);
    drop(holder);
}

#[tokio::test]
async fn serve_answers_with_the_hostname_inside_a_joined_namespace() {
    if !root_or_skip() {
        return;
    }
    let t = TestRuntime::new();
    let mut holder = std::process::Command::new("unshare")
        .args(["-n", "sleep", "30"])
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let ns = std::path::PathBuf::from(format!("/proc/{}/ns/net", holder.id()));
    let holder = Kill(&mut holder);
    let own = std::fs::read_link("/proc/self/ns/net").unwrap();
    let start = Instant::now();
    while std::fs::read_link(&ns).unwrap() == own {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "unshare -n did not run"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut c = t.config("serve", &["serve", "8080"]);
    c.hostname = "web-1".into();
    c.network = NetworkMode::Join { path: ns.clone() };
    t.rt.create(&c).await.unwrap();
    t.rt.start(&c.id).await.unwrap();

    // setns(CLONE_NEWNET) applies to the calling thread only: a plain thread
    // enters the namespace, brings lo up and asks the server.
    let body = std::thread::spawn(move || {
        let file = std::fs::File::open(&ns).unwrap();
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        rswarm_agent_runtime::container::net::link_up("lo").unwrap();
        let start = Instant::now();
        loop {
            match std::net::TcpStream::connect("127.0.0.1:8080") {
                Ok(mut s) => {
                    use std::io::{Read, Write};
                    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
                    let mut out = String::new();
                    s.read_to_string(&mut out).unwrap();
                    break out;
                }
                Err(e) => {
                    assert!(start.elapsed() < Duration::from_secs(5), "connect: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    })
    .join()
    .unwrap();
    assert!(body.starts_with("HTTP/1.0 200 OK"), "{body}");
    assert!(body.ends_with("\r\n\r\nweb-1\n"), "{body}");
    t.rt.remove(&c.id).await.unwrap();
    drop(holder);
}
