//! The cgroup module against this host's real hierarchies (root only).

use std::process::Command;
use std::time::Duration;

use rswarm_agent_runtime::cgroup::{Cgroup, Controller, HostFs, Layout, Limits, Version};
use rswarm_agent_runtime::testing::is_root;

#[test]
fn limits_processes_kill_and_remove_on_the_host() {
    if !is_root() {
        eprintln!("skipping: the real cgroup test needs root");
        return;
    }
    let fs = HostFs;
    let layout = Layout::detect(&fs).unwrap();
    eprintln!("cgroup layout: {:?}", layout.kind());
    let id = format!("cgtest-{}", std::process::id());
    let limits = Limits {
        memory_bytes: Some(32 << 20),
        nano_cpus: Some(250_000_000),
        pids: Some(7),
    };
    let cg = Cgroup::create(&fs, &layout, &id, &limits).unwrap();
    struct Guard(Cgroup);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.kill_all(&HostFs, Duration::from_secs(2));
            let _ = self.0.remove(&HostFs, Duration::from_secs(2));
        }
    }
    let guard = Guard(cg.clone());

    let pids_dir = &layout.get(Controller::Pids).unwrap().mount;
    let max = std::fs::read_to_string(pids_dir.join("rswarm").join(&id).join("pids.max")).unwrap();
    assert_eq!(max.trim(), "7");
    let mem = layout.get(Controller::Memory).unwrap();
    let mem_file = match mem.version {
        Version::V1 => "memory.limit_in_bytes",
        Version::V2 => "memory.max",
    };
    let got = std::fs::read_to_string(mem.mount.join("rswarm").join(&id).join(mem_file)).unwrap();
    assert_eq!(got.trim(), (32u64 << 20).to_string());

    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    cg.add_process(&fs, child.id()).unwrap();
    assert_eq!(cg.pids(&fs), vec![child.id()]);
    assert_eq!(cg.oom_kills(&fs).unwrap(), 0);
    // The killed child may stay listed as a zombie until reaped, so the first
    // kill_all can time out; it must succeed once the child is reaped.
    let _ = cg.kill_all(&fs, Duration::from_millis(100));
    let status = child.wait().unwrap();
    assert!(!status.success());
    cg.kill_all(&fs, Duration::from_secs(2)).unwrap();
    cg.remove(&fs, Duration::from_secs(2)).unwrap();
    for d in &cg.dirs {
        assert!(!d.path.exists(), "{} left behind", d.path.display());
    }
    drop(guard);
}
