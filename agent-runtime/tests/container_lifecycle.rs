//! Stopping, removing and re-adopting real containers (root only).

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rswarm_agent_runtime::cgroup::{Cgroup, HostFs};
use rswarm_agent_runtime::container::{ContainerState, Runtime};
use support::{TestRuntime, root_or_skip};

async fn wait_for_line(t: &TestRuntime, id: &str, line: &str) {
    let start = Instant::now();
    while !t.stdout(id).iter().any(|l| l == line) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no {line:?} from {id}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn stop_waits_for_a_graceful_exit_and_kills_after_the_grace() {
    if !root_or_skip() {
        return;
    }
    let t = TestRuntime::new();
    let c = t.config("trap", &["trap-term", "200"]);
    t.rt.create(&c).await.unwrap();
    t.rt.start(&c.id).await.unwrap();
    wait_for_line(&t, &c.id, "ready").await;
    let start = Instant::now();
    let exit = t.rt.stop(&c.id, Duration::from_secs(5)).await.unwrap();
    assert_eq!((exit.code, exit.signal), (0, None));
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(t.stdout(&c.id).contains(&"got SIGTERM".to_string()));

    let c = t.config("ignore", &["ignore-term"]);
    t.rt.create(&c).await.unwrap();
    t.rt.start(&c.id).await.unwrap();
    wait_for_line(&t, &c.id, "ready").await;
    let start = Instant::now();
    let exit = t.rt.stop(&c.id, Duration::from_millis(500)).await.unwrap();
    assert_eq!((exit.code, exit.signal), (137, Some(9)));
    assert!(start.elapsed() >= Duration::from_millis(500));

    // Stopping again (already exited) returns the same exit at once.
    let again = t.rt.stop(&c.id, Duration::from_secs(5)).await.unwrap();
    assert_eq!(again, exit);
}

#[tokio::test]
async fn remove_leaves_nothing_behind() {
    if !root_or_skip() {
        return;
    }
    let t = TestRuntime::new();
    let c = t.config("leave", &["sleep", "60"]);
    t.rt.create(&c).await.unwrap();
    assert_eq!(t.rt.state(&c.id).await.unwrap(), ContainerState::Created);
    let pid = t.rt.start(&c.id).await.unwrap();
    assert_eq!(
        t.rt.state(&c.id).await.unwrap(),
        ContainerState::Running { pid }
    );
    assert_eq!(t.rt.start(&c.id).await.unwrap(), pid, "start is idempotent");
    let cgroup = Cgroup::for_container(t.rt.layout(), &c.id);
    assert_eq!(cgroup.pids(&HostFs), vec![pid]);

    t.rt.remove(&c.id).await.unwrap();
    for d in &cgroup.dirs {
        assert!(!d.path.exists(), "{} left", d.path.display());
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(&c.id), "a mount mentions {}", c.id);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "pid 1 still runs"
    );
    assert!(!t.rt.container_dir(&c.id).exists());
    assert!(t.rt.state(&c.id).await.is_err());
    t.rt.remove(&c.id).await.unwrap();
}

#[tokio::test]
async fn a_new_runtime_re_adopts_a_running_container() {
    if !root_or_skip() {
        return;
    }
    let t = TestRuntime::new();
    let c = t.config("adopt", &["exit", "5", "1"]);
    {
        let old = Runtime::new(t.tmp.path(), env!("CARGO_BIN_EXE_rswarm-shim")).unwrap();
        old.create(&c).await.unwrap();
        old.start(&c.id).await.unwrap();
    }
    // The old runtime is gone, as after a daemon restart.
    let new = Runtime::new(t.tmp.path(), env!("CARGO_BIN_EXE_rswarm-shim")).unwrap();
    assert!(matches!(
        new.state(&c.id).await.unwrap(),
        ContainerState::Running { .. }
    ));
    let exit = tokio::time::timeout(Duration::from_secs(10), new.wait(&c.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code, 5);
    assert_eq!(
        new.state(&c.id).await.unwrap(),
        ContainerState::Exited(exit)
    );
    new.remove(&c.id).await.unwrap();
}

#[tokio::test]
async fn cleanup_removes_containers_and_cgroups_not_kept() {
    if !root_or_skip() {
        return;
    }
    let t = TestRuntime::new();
    let keep = t.config("keep", &["sleep", "60"]);
    let gone = t.config("gone", &["sleep", "60"]);
    for c in [&keep, &gone] {
        t.rt.create(c).await.unwrap();
        t.rt.start(&c.id).await.unwrap();
    }
    // A create interrupted before config.json was written: directory and cgroup.
    let stray = format!("stray-{}", std::process::id());
    let stray_cg = Cgroup::create(&HostFs, t.rt.layout(), &stray, &Default::default()).unwrap();
    std::fs::create_dir_all(t.rt.container_dir(&stray).join("upper")).unwrap();

    let kept: HashSet<String> = [keep.id.clone()].into();
    let removed = t.rt.cleanup_orphans(&kept).await.unwrap();
    let mut expected = vec![gone.id.clone(), stray.clone()];
    expected.sort();
    assert_eq!(removed, expected);
    assert_eq!(t.rt.list().await.unwrap(), vec![keep.id.clone()]);
    assert!(stray_cg.dirs.iter().all(|d| !d.path.exists()));
    assert!(matches!(
        t.rt.state(&keep.id).await.unwrap(),
        ContainerState::Running { .. }
    ));
    t.rt.remove(&keep.id).await.unwrap();
}

#[tokio::test]
async fn create_start_exit_remove_timing() {
    if !root_or_skip() {
        return;
    }
    let t = TestRuntime::new();
    let mut times = Vec::new();
    let mut phases = [Duration::ZERO; 4];
    for i in 0..20 {
        let c = t.config(&format!("time{i}"), &["exit", "0"]);
        let start = Instant::now();
        t.rt.create(&c).await.unwrap();
        let created = Instant::now();
        t.rt.start(&c.id).await.unwrap();
        let started = Instant::now();
        let exit = t.rt.wait(&c.id).await.unwrap();
        let exited = Instant::now();
        t.rt.remove(&c.id).await.unwrap();
        times.push(start.elapsed());
        phases[0] += created - start;
        phases[1] += started - created;
        phases[2] += exited - started;
        phases[3] += exited.elapsed();
        assert_eq!(exit.code, 0);
    }
    times.sort();
    eprintln!(
        "create+start+exit+remove: median {:?}, min {:?}, max {:?}; mean create {:?} start {:?} exit {:?} remove {:?}",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        phases[0] / 20,
        phases[1] / 20,
        phases[2] / 20,
        phases[3] / 20,
    );
}

/// A field of `/proc/<pid>/smaps_rollup`, in KiB.
fn smaps_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn the_shim_stays_small() {
    if !root_or_skip() {
        return;
    }
    let t = TestRuntime::new();
    let c = t.config("mem", &["sleep", "60"]);
    t.rt.create(&c).await.unwrap();
    t.rt.start(&c.id).await.unwrap();
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(t.rt.container_dir(&c.id).join("state.json")).unwrap(),
    )
    .unwrap();
    let shim = state["shim_pid"].as_u64().unwrap() as u32;
    let status = std::fs::read_to_string(format!("/proc/{shim}/status")).unwrap();
    let rss = status.lines().find(|l| l.starts_with("VmRSS")).unwrap();
    let threads = status.lines().find(|l| l.starts_with("Threads")).unwrap();
    let pss = smaps_kib(shim, "Pss:");
    // What each further shim adds: its dirty pages (heap, stack, data). The
    // binary's text is shared page cache, paid once for all shims.
    let private = smaps_kib(shim, "Private_Dirty:");
    eprintln!("shim memory: Pss {pss} kB, Private_Dirty {private} kB, {rss}, {threads}");
    assert!(
        threads.ends_with("\t1"),
        "the shim is single-threaded: {threads}"
    );
    assert!(private < 1024, "shim private memory {private} kB");
    t.rt.remove(&c.id).await.unwrap();
}
