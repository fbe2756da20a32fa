//! Resource limits, mounts and read-only rootfs of real containers (root only).

mod support;

use rswarm_agent_runtime::container::MountSpec;
use support::{TestRuntime, root_or_skip};

#[tokio::test]
async fn memory_limit_is_enforced_and_the_oom_kill_reported() {
    if !root_or_skip() {
        return;
    }
    let t = TestRuntime::new();
    let mut c = t.config("oom", &["alloc", "200"]);
    c.limits.memory_bytes = Some(32 << 20);
    let (exit, _) = t.run(&c).await;
    assert!(exit.oom_killed, "{exit:?}");
    assert_eq!((exit.code, exit.signal), (137, Some(9)));

    let mut c = t.config("fits", &["alloc", "8"]);
    c.limits.memory_bytes = Some(64 << 20);
    let (exit, _) = t.run(&c).await;
    assert_eq!((exit.code, exit.oom_killed), (0, false));
    assert_eq!(t.stdout(&c.id), vec!["allocated 8 MiB"]);
}

#[tokio::test]
async fn pids_limit_stops_forks() {
    if !root_or_skip() {
        return;
    }
    let t = TestRuntime::new();
    let mut c = t.config("pids", &["fork", "20"]);
    c.limits.pids = Some(5);
    t.run(&c).await;
    let out = t.stdout(&c.id);
    let n: usize = out[0].strip_prefix("forked ").unwrap().parse().unwrap();
    assert!(n < 5, "pid 1 plus {n} children under a limit of 5");

    let c = t.config("nopids", &["fork", "20"]);
    t.run(&c).await;
    assert_eq!(t.stdout(&c.id), vec!["forked 20"]);
}

#[tokio::test]
async fn cpu_quota_halves_cpu_time() {
    if !root_or_skip() {
        return;
    }
    let t = TestRuntime::new();
    let mut c = t.config("cpu", &["spin", "1000"]);
    c.limits.nano_cpus = Some(500_000_000);
    t.run(&c).await;
    let out = t.stdout(&c.id);
    let ms: u64 = out[0].strip_prefix("cpu_ms ").unwrap().parse().unwrap();
    // The cap is the point: at most ~500 ms. The floor is loose because CI shares
    // its two cores with other builds, which can starve the container further.
    assert!(
        (100..=650).contains(&ms),
        "0.5 CPU for 1 s of wall time used {ms} ms"
    );
}

#[tokio::test]
async fn bind_mounts_tmpfs_and_read_only_rootfs() {
    if !root_or_skip() {
        return;
    }
    let t = TestRuntime::new();
    let host = t.tmp.path().join("host-data");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("in.txt"), "from host").unwrap();
    let ro = MountSpec::Bind {
        source: host.clone(),
        target: "/data".into(),
        readonly: true,
    };
    let rw = MountSpec::Bind {
        source: host.clone(),
        target: "/rw/data".into(),
        readonly: false,
    };

    let mut c = t.config("ro", &["cat", "/data/in.txt"]);
    c.mounts = vec![ro.clone()];
    t.run(&c).await;
    assert_eq!(t.stdout(&c.id), vec!["from host"]);

    let mut c = t.config("rofail", &["write", "/data/x", "y"]);
    c.mounts = vec![ro];
    let (exit, log) = t.run(&c).await;
    assert_eq!(exit.code, 1);
    assert!(log.contains("Read-only file system"), "{log}");

    let mut c = t.config("rw", &["write", "/rw/data/out.txt", "from container"]);
    c.mounts = vec![rw];
    let (exit, _) = t.run(&c).await;
    assert_eq!(exit.code, 0);
    assert_eq!(
        std::fs::read_to_string(host.join("out.txt")).unwrap(),
        "from container"
    );

    let tmpfs = MountSpec::Tmpfs {
        target: "/scratch".into(),
        size_bytes: Some(1 << 20),
    };
    let mut c = t.config("tmpfs", &["cat", "/proc/self/mountinfo"]);
    c.mounts = vec![tmpfs.clone()];
    t.run(&c).await;
    let mounts = t.stdout(&c.id);
    let line = mounts.iter().find(|l| l.contains(" /scratch ")).unwrap();
    assert!(
        line.contains("tmpfs") && line.contains("size=1024k"),
        "{line}"
    );

    let mut c = t.config("rootro", &["write", "/file", "x"]);
    c.readonly_rootfs = true;
    let (exit, log) = t.run(&c).await;
    assert_eq!(exit.code, 1);
    assert!(log.contains("Read-only file system"), "{log}");

    let mut c = t.config("rootro-tmp", &["write", "/scratch/file", "x"]);
    c.readonly_rootfs = true;
    c.mounts = vec![tmpfs];
    let (exit, _) = t.run(&c).await;
    assert_eq!(exit.code, 0, "a tmpfs stays writable on a read-only rootfs");

    // The container wrote into its upper layer, never into the shared image.
    let c = t.config("upper", &["write", "/written", "x"]);
    t.run(&c).await;
    assert!(t.rt.container_dir(&c.id).join("upper/written").exists());
    assert!(!support::rootfs().join("written").exists());
}

#[tokio::test]
async fn logs_keep_both_streams_and_rotate() {
    if !root_or_skip() {
        return;
    }
    let t = TestRuntime::new();
    let c = t.config("err", &["echo-err", "to", "stderr"]);
    t.run(&c).await;
    assert_eq!(t.log(&c.id), "stderr to stderr");

    let mut c = t.config("rotate", &["lines", "200"]);
    c.log.max_bytes = 2000;
    c.log.max_files = 2;
    t.run(&c).await;
    let dir = t.rt.log_dir(&c.id);
    let current = std::fs::read_to_string(dir.join("container.log")).unwrap();
    let older = std::fs::read_to_string(dir.join("container.log.1")).unwrap();
    assert!(current.len() <= 2000 && older.len() <= 2000);
    assert!(!dir.join("container.log.2").exists());
    assert!(
        current.trim_end().ends_with("stdout line 000199 of 200"),
        "{current}"
    );
}
