use std::collections::HashMap;
use std::sync::Mutex;

use super::*;

/// Records every mkdir/write/rmdir; reads come from a fixed file table.
#[derive(Default)]
struct Recording {
    ops: Mutex<Vec<String>>,
    files: HashMap<PathBuf, String>,
}

impl Recording {
    fn with_file(mut self, path: &str, text: &str) -> Self {
        self.files.insert(PathBuf::from(path), text.to_string());
        self
    }
    fn ops(&self) -> Vec<String> {
        self.ops.lock().unwrap().clone()
    }
}

impl CgroupFs for Recording {
    fn mkdir(&self, path: &Path) -> io::Result<()> {
        self.ops
            .lock()
            .unwrap()
            .push(format!("mkdir {}", path.display()));
        Ok(())
    }
    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        self.ops
            .lock()
            .unwrap()
            .push(format!("write {} {value}", path.display()));
        Ok(())
    }
    fn read(&self, path: &Path) -> io::Result<String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn rmdir(&self, path: &Path) -> io::Result<()> {
        self.ops
            .lock()
            .unwrap()
            .push(format!("rmdir {}", path.display()));
        Ok(())
    }
    fn exists(&self, path: &Path) -> bool {
        self.files.contains_key(path)
    }
}

const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

const LEGACY: &str = "\
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:1 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:2 - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime shared:3 - cgroup cgroup rw,pids
";

const UNIFIED: &str = "\
25 22 0:23 / /proc rw,nosuid - proc proc rw
30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
";

fn all_limits() -> Limits {
    Limits {
        memory_bytes: Some(64 << 20),
        nano_cpus: Some(500_000_000),
        pids: Some(32),
    }
}

#[test]
fn hybrid_host_uses_v1_controllers_and_also_joins_the_unified_tree() {
    let fs = Recording::default().with_file("/sys/fs/cgroup/unified/cgroup.controllers", "\n");
    let layout = Layout::from_mountinfo(HYBRID, &fs).unwrap();
    assert_eq!(layout.kind(), LayoutKind::Hybrid);
    assert_eq!(
        layout.memory.as_ref().unwrap().mount,
        PathBuf::from("/sys/fs/cgroup/memory")
    );
    assert_eq!(layout.cpu.as_ref().unwrap().version, Version::V1);
    let fs = fs.with_file(
        "/sys/fs/cgroup/memory/rswarm/c1/memory.memsw.limit_in_bytes",
        "",
    );
    let cg = Cgroup::create(&fs, &layout, "c1", &all_limits()).unwrap();
    assert_eq!(
        fs.ops(),
        vec![
            "mkdir /sys/fs/cgroup/unified/rswarm",
            "mkdir /sys/fs/cgroup/memory/rswarm/c1",
            "mkdir /sys/fs/cgroup/cpu/rswarm/c1",
            "mkdir /sys/fs/cgroup/pids/rswarm/c1",
            "mkdir /sys/fs/cgroup/unified/rswarm/c1",
            "write /sys/fs/cgroup/memory/rswarm/c1/memory.limit_in_bytes 67108864",
            "write /sys/fs/cgroup/memory/rswarm/c1/memory.memsw.limit_in_bytes 67108864",
            "write /sys/fs/cgroup/cpu/rswarm/c1/cpu.cfs_period_us 100000",
            "write /sys/fs/cgroup/cpu/rswarm/c1/cpu.cfs_quota_us 50000",
            "write /sys/fs/cgroup/pids/rswarm/c1/pids.max 32",
        ]
    );
    assert_eq!(cg.dirs.len(), 4);
}

#[test]
fn legacy_host_with_comounted_cpu_and_no_swap_accounting() {
    let fs = Recording::default();
    let layout = Layout::from_mountinfo(LEGACY, &fs).unwrap();
    assert_eq!(layout.kind(), LayoutKind::Legacy);
    Cgroup::create(&fs, &layout, "c2", &all_limits()).unwrap();
    let ops = fs.ops();
    assert!(ops.contains(&"mkdir /sys/fs/cgroup/cpu,cpuacct/rswarm/c2".to_string()));
    assert!(ops.contains(
        &"write /sys/fs/cgroup/cpu,cpuacct/rswarm/c2/cpu.cfs_quota_us 50000".to_string()
    ));
    assert!(!ops.iter().any(|o| o.contains("memsw")), "{ops:?}");
}

#[test]
fn unified_host_enables_controllers_in_parents_then_writes_v2_files() {
    let fs = Recording::default()
        .with_file(
            "/sys/fs/cgroup/cgroup.controllers",
            "cpuset cpu io memory pids\n",
        )
        .with_file("/sys/fs/cgroup/rswarm/c3/memory.swap.max", "max\n");
    let layout = Layout::from_mountinfo(UNIFIED, &fs).unwrap();
    assert_eq!(layout.kind(), LayoutKind::Unified);
    Cgroup::create(&fs, &layout, "c3", &all_limits()).unwrap();
    assert_eq!(
        fs.ops(),
        vec![
            "mkdir /sys/fs/cgroup/rswarm",
            "write /sys/fs/cgroup/cgroup.subtree_control +memory +cpu +pids",
            "write /sys/fs/cgroup/rswarm/cgroup.subtree_control +memory +cpu +pids",
            "mkdir /sys/fs/cgroup/rswarm/c3",
            "write /sys/fs/cgroup/rswarm/c3/memory.max 67108864",
            "write /sys/fs/cgroup/rswarm/c3/memory.swap.max 0",
            "write /sys/fs/cgroup/rswarm/c3/cpu.max 50000 100000",
            "write /sys/fs/cgroup/rswarm/c3/pids.max 32",
        ]
    );
}

#[test]
fn a_limit_without_its_controller_is_an_error_and_rolls_back() {
    let fs = Recording::default().with_file("/sys/fs/cgroup/cgroup.controllers", "memory\n");
    let layout = Layout::from_mountinfo(UNIFIED, &fs).unwrap();
    let err = Cgroup::create(&fs, &layout, "c4", &all_limits()).unwrap_err();
    assert!(
        err.to_string().contains("no cpu cgroup controller"),
        "{err}"
    );
    assert!(
        fs.ops()
            .contains(&"rmdir /sys/fs/cgroup/rswarm/c4".to_string())
    );
}

#[test]
fn no_limits_writes_no_control_files() {
    let fs = Recording::default();
    let layout = Layout::from_mountinfo(LEGACY, &fs).unwrap();
    Cgroup::create(&fs, &layout, "c5", &Limits::default()).unwrap();
    assert!(fs.ops().iter().all(|o| o.starts_with("mkdir")));
}

#[test]
fn oom_kills_are_read_from_v1_and_v2_files() {
    let fs = Recording::default()
        .with_file(
            "/sys/fs/cgroup/memory/rswarm/a/memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .with_file(
            "/sys/fs/cgroup/rswarm/b/memory.events",
            "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n",
        )
        .with_file("/sys/fs/cgroup/cgroup.controllers", "memory pids\n");
    let legacy = Layout::from_mountinfo(LEGACY, &fs).unwrap();
    assert_eq!(
        Cgroup::for_container(&legacy, "a").oom_kills(&fs).unwrap(),
        2
    );
    let unified = Layout::from_mountinfo(UNIFIED, &fs).unwrap();
    assert_eq!(
        Cgroup::for_container(&unified, "b").oom_kills(&fs).unwrap(),
        1
    );
}

#[test]
fn join_self_writes_zero_to_every_hierarchy() {
    let fs = Recording::default().with_file("/sys/fs/cgroup/unified/cgroup.controllers", "");
    let layout = Layout::from_mountinfo(HYBRID, &fs).unwrap();
    let cg = Cgroup::for_container(&layout, "j");
    cg.join_self(&fs).unwrap();
    let ops = fs.ops();
    assert_eq!(ops.len(), 4);
    assert!(
        ops.iter().all(|o| o.ends_with("/rswarm/j/cgroup.procs 0")),
        "{ops:?}"
    );
}

#[test]
fn pids_are_the_union_over_hierarchies() {
    let fs = Recording::default()
        .with_file("/sys/fs/cgroup/memory/rswarm/p/cgroup.procs", "10\n11\n")
        .with_file("/sys/fs/cgroup/pids/rswarm/p/cgroup.procs", "11\n12\n");
    let layout = Layout::from_mountinfo(LEGACY, &fs).unwrap();
    assert_eq!(
        Cgroup::for_container(&layout, "p").pids(&fs),
        vec![10, 11, 12]
    );
}

#[test]
fn no_cgroup_mount_is_an_error() {
    let err = Layout::from_mountinfo(
        "25 22 0:23 / /proc rw - proc proc rw\n",
        &Recording::default(),
    )
    .unwrap_err();
    assert!(matches!(err, CgroupError::NoCgroups));
}
