//! Containers in a user namespace (`--userns-remap`): root inside, an unprivileged
//! range outside (root only).

mod support;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rswarm_agent_runtime::cgroup::{Cgroup, HostFs};
use rswarm_agent_runtime::container::{ContainerConfig, MountSpec};
use rswarm_agent_runtime::idmap::IdMap;
use rswarm_agent_runtime::image::{self, ImageStore};
use rswarm_agent_runtime::testing::test_rootfs_tar;
use support::{TestRuntime, root_or_skip};

/// A host range no real user of the build machine has.
const MAP: IdMap = IdMap {
    host_uid: 1_500_000,
    host_gid: 1_600_000,
    size: 65_536,
};

/// The test image imported into a store under the runtime's root, its layers
/// shifted for [`MAP`].
///
/// The runtime's root is made private (0700), as a node's data directory may be:
/// container root must not need to search it.
fn mapped_layers(t: &TestRuntime) -> (ImageStore, Vec<PathBuf>) {
    std::fs::set_permissions(t.tmp.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let store = ImageStore::with_fs(t.tmp.path().join("images"), Arc::new(image::HostFs)).unwrap();
    let tar = t.tmp.path().join("rootfs.tar");
    test_rootfs_tar(&tar, Path::new(env!("CARGO_BIN_EXE_rswarm-testimg"))).unwrap();
    let image = store.import_path(&tar, Some("testimg")).unwrap().remove(0);
    let dirs = store.lower_dirs_mapped(&image, Some(&MAP)).unwrap();
    (store, dirs)
}

fn mapped_config(t: &TestRuntime, lower: &[PathBuf], name: &str, args: &[&str]) -> ContainerConfig {
    let mut c = t.config(name, args);
    c.lower_dirs = lower.to_vec();
    c.id_map = Some(MAP);
    c
}

#[tokio::test]
async fn a_remapped_container_is_root_inside_and_unprivileged_outside() {
    if !root_or_skip() {
        return;
    }
    let t = TestRuntime::new();
    let (_store, lower) = mapped_layers(&t);
    let owner = |p: &Path| {
        let m = std::fs::symlink_metadata(p).unwrap();
        (m.uid(), m.gid())
    };
    assert_eq!(owner(&lower[0].join("bin/testimg")), (1_500_000, 1_600_000));

    let c = mapped_config(&t, &lower, "id", &["id"]);
    let (exit, log) = t.run(&c).await;
    assert_eq!(exit.code, 0, "{log}");
    assert_eq!(t.stdout(&c.id), vec!["uid=0 gid=0 groups="]);

    for (name, host) in [("uid_map", 1_500_000), ("gid_map", 1_600_000)] {
        let file = format!("/proc/self/{name}");
        let c = mapped_config(&t, &lower, name, &["cat", &file]);
        let (exit, log) = t.run(&c).await;
        assert_eq!(exit.code, 0, "{log}");
        let fields: Vec<String> = t.stdout(&c.id)[0]
            .split_whitespace()
            .map(str::to_string)
            .collect();
        assert_eq!(fields, ["0".to_string(), host.to_string(), "65536".into()]);
    }

    // The image's files, the container's /, /etc files, /dev and tmpfs are root's.
    let mut c = mapped_config(
        &t,
        &lower,
        "own",
        &[
            "owner",
            "/",
            "/bin/testimg",
            "/etc/passwd",
            "/etc/hosts",
            "/dev",
            "/dev/shm",
            "/scratch",
        ],
    );
    c.mounts.push(MountSpec::Tmpfs {
        target: "/scratch".into(),
        size_bytes: None,
    });
    let (exit, log) = t.run(&c).await;
    assert_eq!(exit.code, 0, "{log}");
    for line in t.stdout(&c.id) {
        assert!(line.ends_with(" 0:0"), "{line} in {log}");
    }

    // Namespaces owned by the user namespace: sysfs of its own network, pid 1.
    let c = mapped_config(&t, &lower, "net", &["ls", "/sys/class/net"]);
    let (exit, log) = t.run(&c).await;
    assert_eq!(
        (exit.code, t.stdout(&c.id)),
        (0, vec!["lo".to_string()]),
        "{log}"
    );
    let c = mapped_config(&t, &lower, "pid", &["pid"]);
    t.run(&c).await;
    assert_eq!(t.stdout(&c.id), vec!["1"]);

    // A file written by container root belongs to the mapped uid on the host.
    let c = mapped_config(&t, &lower, "write", &["write", "/created", "hi"]);
    let (exit, log) = t.run(&c).await;
    assert_eq!(exit.code, 0, "{log}");
    let upper = t.rt.container_dir(&c.id).join("upper");
    assert_eq!(owner(&upper.join("created")), (1_500_000, 1_600_000));
    assert_eq!(owner(&upper), (1_500_000, 1_600_000));

    // Changing and deleting the image's files: copy-up and whiteouts in the upper
    // layer, as under host root.
    let c = mapped_config(&t, &lower, "copyup", &["write", "/etc/passwd", "x"]);
    let (exit, log) = t.run(&c).await;
    assert_eq!(exit.code, 0, "{log}");
    let upper = t.rt.container_dir(&c.id).join("upper");
    assert_eq!(owner(&upper.join("etc/passwd")), (1_500_000, 1_600_000));
    let c = mapped_config(&t, &lower, "rm", &["rm", "/etc/group"]);
    let (exit, log) = t.run(&c).await;
    assert_eq!(exit.code, 0, "{log}");
    let upper = t.rt.container_dir(&c.id).join("upper");
    let whiteout = std::fs::symlink_metadata(upper.join("etc/group")).unwrap();
    assert!(
        whiteout.file_type().is_char_device() && whiteout.rdev() == 0,
        "a whiteout device"
    );

    // Another user of the image maps too.
    let mut c = mapped_config(&t, &lower, "user", &["id"]);
    (c.process.uid, c.process.gid) = (1000, 1000);
    t.run(&c).await;
    assert_eq!(t.stdout(&c.id), vec!["uid=1000 gid=1000 groups="]);

    // A read-only root stays read-only.
    let mut c = mapped_config(&t, &lower, "ro", &["write", "/x", "y"]);
    c.readonly_rootfs = true;
    let (exit, log) = t.run(&c).await;
    assert_ne!(exit.code, 0, "{log}");
    assert!(log.contains("Read-only file system"), "{log}");
}

#[tokio::test]
async fn container_root_cannot_write_a_host_file_of_real_root() {
    if !root_or_skip() {
        return;
    }
    let t = TestRuntime::new();
    let (_store, lower) = mapped_layers(&t);
    let host_file = t.tmp.path().join("host-owned");
    std::fs::write(&host_file, "original\n").unwrap();
    std::fs::set_permissions(&host_file, std::fs::Permissions::from_mode(0o644)).unwrap();

    let mut c = mapped_config(&t, &lower, "bind", &["write", "/mnt/file", "changed"]);
    c.mounts.push(MountSpec::Bind {
        source: host_file.clone(),
        target: "/mnt/file".into(),
        readonly: false,
    });
    let (exit, log) = t.run(&c).await;
    assert_ne!(exit.code, 0, "{log}");
    assert!(log.contains("Permission denied"), "{log}");
    assert_eq!(std::fs::read_to_string(&host_file).unwrap(), "original\n");
    // The same container reads it fine (mode 0644), as "nobody"'s file.
    let mut c = mapped_config(&t, &lower, "read", &["owner", "/mnt/file"]);
    c.mounts.push(MountSpec::Bind {
        source: host_file.clone(),
        target: "/mnt/file".into(),
        readonly: false,
    });
    let (exit, log) = t.run(&c).await;
    assert_eq!(exit.code, 0, "{log}");
    assert_eq!(t.stdout(&c.id), vec!["/mnt/file 65534:65534"]);

    // Without the mapping the same write succeeds: the refusal is the mapping's.
    let mut c = t.config("unmapped", &["write", "/mnt/file", "changed"]);
    c.mounts.push(MountSpec::Bind {
        source: host_file.clone(),
        target: "/mnt/file".into(),
        readonly: false,
    });
    let (exit, log) = t.run(&c).await;
    assert_eq!(exit.code, 0, "{log}");
    assert_eq!(std::fs::read_to_string(&host_file).unwrap(), "changed");
}

#[tokio::test]
async fn a_remapped_container_leaves_nothing_behind_and_volumes_are_its_roots() {
    if !root_or_skip() {
        return;
    }
    let t = TestRuntime::new();
    let (_store, lower) = mapped_layers(&t);
    let vol = t.rt.volume_dir_for("data", Some(&MAP)).unwrap();
    let m = std::fs::metadata(&vol).unwrap();
    assert_eq!((m.uid(), m.gid()), (1_500_000, 1_600_000));

    let mut c = mapped_config(&t, &lower, "vol", &["write", "/data/f", "v"]);
    c.mounts.push(MountSpec::Bind {
        source: vol.clone(),
        target: "/data".into(),
        readonly: false,
    });
    let (exit, log) = t.run(&c).await;
    assert_eq!(exit.code, 0, "{log}");
    assert_eq!(std::fs::metadata(vol.join("f")).unwrap().uid(), 1_500_000);

    let c = mapped_config(&t, &lower, "leave", &["sleep", "60"]);
    t.rt.create(&c).await.unwrap();
    let pid = t.rt.start(&c.id).await.unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line.contains("1500000"),
        "host view of pid 1: {uid_line}"
    );
    let cgroup = Cgroup::for_container(t.rt.layout(), &c.id);
    assert_eq!(cgroup.pids(&HostFs), vec![pid]);
    t.rt.remove(&c.id).await.unwrap();
    for d in &cgroup.dirs {
        assert!(!d.path.exists(), "{} left", d.path.display());
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(&c.id), "a mount mentions {}", c.id);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "pid 1 still runs"
    );
    assert!(!t.rt.container_dir(&c.id).exists());
}

/// The managers are out of reach: the executor uses the node's own store.
struct Offline;

#[async_trait::async_trait]
impl rswarm_agent_runtime::ImageSource for Offline {
    async fn resolve(
        &self,
        _name: &str,
    ) -> Result<rswarm_proto::api::Image, rswarm_agent_runtime::SourceError> {
        Err(rswarm_agent_runtime::SourceError::Unavailable(
            "offline".into(),
        ))
    }
    async fn fetch_blob(
        &self,
        _digest: &str,
        _sink: rswarm_agent_runtime::BlobSink,
    ) -> Result<(), rswarm_agent_runtime::SourceError> {
        Err(rswarm_agent_runtime::SourceError::Unavailable(
            "offline".into(),
        ))
    }
}

#[tokio::test]
async fn the_executor_runs_a_nodes_tasks_with_its_mapping() {
    use rswarm_agent_runtime::Executor;
    use rswarm_agent_runtime::container::Runtime;
    use rswarm_agent_runtime::executor::ContainerExecutor;
    use rswarm_proto::api::{ContainerSpec, Task, TaskSpec};

    if !root_or_skip() {
        return;
    }
    let t = TestRuntime::new();
    let (store, _) = mapped_layers(&t);
    let runtime = Arc::new(Runtime::new(t.tmp.path(), env!("CARGO_BIN_EXE_rswarm-shim")).unwrap());
    let executor = ContainerExecutor::new(runtime.clone(), Arc::new(store), Arc::new(Offline))
        .with_id_map(Some(MAP));
    let task = Task {
        id: format!("exec-{}", std::process::id()),
        service_name: "svc".into(),
        slot: 1,
        spec: Some(TaskSpec {
            container: Some(ContainerSpec {
                image: "testimg".into(),
                command: vec!["/bin/testimg".into(), "id".into()],
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let controller = executor.controller(&task).unwrap();
    controller.prepare().await.unwrap();
    let config: ContainerConfig = serde_json::from_slice(
        &std::fs::read(runtime.container_dir(&task.id).join("config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config.id_map, Some(MAP));
    assert!(
        config.lower_dirs[0]
            .to_string_lossy()
            .ends_with("@1500000-1600000-65536"),
        "{:?}",
        config.lower_dirs
    );
    controller.start().await.unwrap();
    let exit = controller.wait().await.unwrap();
    assert_eq!(exit.code, 0, "{}", t.log(&task.id));
    assert_eq!(t.stdout(&task.id), vec!["uid=0 gid=0 groups="]);
    controller.remove().await.unwrap();
    assert!(!runtime.container_dir(&task.id).exists());
}

#[tokio::test]
async fn whiteouts_and_opaque_directories_of_shifted_layers_work() {
    use rswarm_agent_runtime::image::layerfs::ShiftedFs;
    use rswarm_agent_runtime::image::unpack::unpack_tar;

    if !root_or_skip() {
        return;
    }
    let t = TestRuntime::new();
    let (_store, mut lower) = mapped_layers(&t);
    // A top layer hiding /tmp and replacing /etc by a directory with only `motd`.
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in [
        ("etc/.wh..wh..opq", &b""[..]),
        ("etc/motd", b"hi\n"),
        (".wh.tmp", b""),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data).unwrap();
    }
    let top = t.tmp.path().join("top-layer");
    std::fs::create_dir(&top).unwrap();
    let fs = ShiftedFs {
        inner: &image::HostFs,
        map: MAP,
    };
    unpack_tar(&b.into_inner().unwrap()[..], &top, &fs).unwrap();
    lower.insert(0, top);

    let c = mapped_config(&t, &lower, "opaque", &["ls", "/etc"]);
    let (exit, log) = t.run(&c).await;
    assert_eq!(exit.code, 0, "{log}");
    let etc = t.stdout(&c.id);
    assert!(etc.contains(&"motd".to_string()), "{etc:?}");
    assert!(!etc.contains(&"passwd".to_string()), "opaque /etc: {etc:?}");
    let c = mapped_config(&t, &lower, "whiteout", &["ls", "/"]);
    let (exit, log) = t.run(&c).await;
    assert_eq!(exit.code, 0, "{log}");
    let root = t.stdout(&c.id);
    assert!(root.contains(&"bin".to_string()), "{root:?}");
    assert!(
        !root.contains(&"tmp".to_string()),
        "whiteout /tmp: {root:?}"
    );
}
