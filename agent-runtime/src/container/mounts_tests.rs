use std::collections::HashSet;

use super::*;
use crate::container::config::ContainerConfig;

/// Records calls; `existing` holds the paths that exist, `dirs` the directories.
#[derive(Default)]
struct Recording {
    calls: Vec<String>,
    existing: HashSet<PathBuf>,
    dirs: HashSet<PathBuf>,
    kept: Option<MsFlags>,
}

impl Mounter for Recording {
    fn mount(
        &mut self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        self.calls.push(format!(
            "mount {} {} {} {} {}",
            source.map(|s| s.display().to_string()).unwrap_or_default(),
            target.display(),
            fstype.unwrap_or("-"),
            flag_names(flags),
            data.unwrap_or("-")
        ));
        Ok(())
    }
    fn exists(&mut self, path: &Path) -> bool {
        self.existing.contains(path)
    }
    fn is_dir(&mut self, path: &Path) -> bool {
        self.dirs.contains(path)
    }
    fn create_dir(&mut self, path: &Path) -> std::io::Result<()> {
        self.calls.push(format!("mkdir {}", path.display()));
        self.existing.insert(path.to_path_buf());
        Ok(())
    }
    fn create_file(&mut self, path: &Path) -> std::io::Result<()> {
        self.calls.push(format!("touch {}", path.display()));
        self.existing.insert(path.to_path_buf());
        Ok(())
    }
    fn symlink(&mut self, to: &str, path: &Path) -> std::io::Result<()> {
        self.calls
            .push(format!("symlink {} -> {to}", path.display()));
        Ok(())
    }
    fn resolve(&mut self, root: &Path, path: &Path) -> std::io::Result<PathBuf> {
        Ok(root.join(path.strip_prefix("/").unwrap_or(path)))
    }
    fn kept_flags(&mut self, _path: &Path) -> MsFlags {
        self.kept.unwrap_or(MsFlags::empty())
    }
}

fn flag_names(flags: MsFlags) -> String {
    let names: Vec<&str> = flags.iter_names().map(|(n, _)| n).collect();
    if names.is_empty() {
        "(empty)".into()
    } else {
        names.join(" | ")
    }
}

fn config() -> ContainerConfig {
    let mut c = ContainerConfig::new(
        "c1",
        vec!["/l/top".into(), "/l/base".into()],
        vec!["x".into()],
    );
    c.mounts = vec![
        MountSpec::Bind {
            source: "/host/data".into(),
            target: "/data".into(),
            readonly: true,
        },
        MountSpec::Tmpfs {
            target: "/scratch".into(),
            size_bytes: Some(1 << 20),
        },
    ];
    c
}

#[test]
fn plan_starts_private_with_the_overlay_and_ends_with_user_mounts() {
    let ops = plan(&config(), Path::new("/r/containers/c1"));
    assert_eq!(ops[0], MountOp::MakeRootPrivate);
    assert_eq!(
        ops[1],
        MountOp::Overlay {
            lower: vec!["/l/top".into(), "/l/base".into()],
            upper: "/r/containers/c1/upper".into(),
            work: "/r/containers/c1/work".into(),
        }
    );
    let sys = ops
        .iter()
        .find(|o| {
            matches!(
                o,
                MountOp::Fs {
                    fstype: "sysfs",
                    ..
                }
            )
        })
        .unwrap();
    assert!(matches!(sys, MountOp::Fs { flags, .. } if flags.contains(MsFlags::MS_RDONLY)));
    let devpts = ops
        .iter()
        .find(|o| {
            matches!(
                o,
                MountOp::Fs {
                    fstype: "devpts",
                    ..
                }
            )
        })
        .unwrap();
    assert!(matches!(devpts, MountOp::Fs { data, .. } if data.contains("newinstance")));
    for d in DEVICES {
        assert!(ops.iter().any(
            |o| matches!(o, MountOp::Bind { target, .. } if *target == Path::new("/dev").join(d))
        ));
    }
    assert!(ops.contains(&MountOp::Bind {
        source: "/r/containers/c1/etc/resolv.conf".into(),
        target: "/etc/resolv.conf".into(),
        readonly: true,
        optional: false,
    }));
    let n = ops.len();
    assert_eq!(
        ops[n - 2..],
        [
            MountOp::Bind {
                source: "/host/data".into(),
                target: "/data".into(),
                readonly: true,
                optional: false,
            },
            MountOp::Fs {
                fstype: "tmpfs",
                target: "/scratch".into(),
                flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                data: "mode=1777,size=1048576".into(),
            }
        ]
    );
    assert!(!ops.contains(&MountOp::RootReadonly));
}

#[test]
fn readonly_rootfs_is_remounted_last() {
    let mut c = config();
    c.readonly_rootfs = true;
    let ops = plan(&c, Path::new("/r/c"));
    assert_eq!(ops.last(), Some(&MountOp::RootReadonly));
}

#[test]
fn execution_mounts_the_overlay_creates_targets_and_remounts_read_only() {
    let mut c = config();
    c.mounts.truncate(1);
    c.readonly_rootfs = true;
    let ops = plan(&c, Path::new("/r/c"));
    let mut m = Recording::default();
    m.dirs.insert("/host/data".into());
    m.existing.insert("/r/c/rootfs/proc/sys".into());
    execute(&ops, Path::new("/r/c/rootfs"), &mut m).unwrap();
    let calls = m.calls;
    assert_eq!(calls[0], "mount  / - MS_REC | MS_PRIVATE -");
    assert_eq!(
        calls[1],
        "mount overlay /r/c/rootfs overlay (empty) lowerdir=/l/top:/l/base,upperdir=/r/c/upper,workdir=/r/c/work"
    );
    assert!(calls.contains(&"touch /r/c/rootfs/dev/null".to_string()));
    assert!(
        calls.contains(&"mount /dev/null /r/c/rootfs/dev/null - MS_BIND | MS_REC -".to_string())
    );
    // An optional target that exists is bound from inside the container and made
    // read-only; missing optional ones are skipped.
    assert!(calls.contains(
        &"mount /r/c/rootfs/proc/sys /r/c/rootfs/proc/sys - MS_BIND | MS_REC -".to_string()
    ));
    assert!(
        !calls.iter().any(|c| c.contains("/proc/kcore")),
        "{calls:?}"
    );
    assert!(calls.contains(&"mkdir /r/c/rootfs/data".to_string()));
    assert!(calls.contains(&"touch /r/c/rootfs/etc/hosts".to_string()));
    let ro = "mount  /r/c/rootfs/data - MS_RDONLY | MS_REMOUNT | MS_BIND -";
    assert!(calls.contains(&ro.to_string()), "{calls:#?}");
    assert_eq!(
        calls.last().unwrap(),
        "mount  /r/c/rootfs - MS_RDONLY | MS_REMOUNT | MS_BIND -"
    );
}

#[test]
fn secure_join_keeps_symlinks_inside_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::os::unix::fs::symlink("/outside/evil", root.join("etc/hosts")).unwrap();
    std::os::unix::fs::symlink("../../../../x", root.join("up")).unwrap();
    std::os::unix::fs::symlink("etc", root.join("e")).unwrap();
    assert_eq!(
        secure_join(root, Path::new("/etc/hosts")).unwrap(),
        root.join("outside/evil")
    );
    assert_eq!(
        secure_join(root, Path::new("/up/y")).unwrap(),
        root.join("x/y")
    );
    assert_eq!(
        secure_join(root, Path::new("/e/hostname")).unwrap(),
        root.join("etc/hostname")
    );
    assert_eq!(
        secure_join(root, Path::new("/../../a")).unwrap(),
        root.join("a")
    );
    std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
    assert!(secure_join(root, Path::new("/loop")).is_err());
}

#[test]
fn read_only_remounts_repeat_the_flags_the_mount_has() {
    let mut c = config();
    c.readonly_rootfs = true;
    let ops = plan(&c, Path::new("/r/c"));
    let mut m = Recording {
        kept: Some(MsFlags::MS_NOSUID | MsFlags::MS_NODEV),
        ..Recording::default()
    };
    m.dirs.insert("/host/data".into());
    execute(&ops, Path::new("/r/c/rootfs"), &mut m).unwrap();
    let ro = "mount  /r/c/rootfs/data - MS_RDONLY | MS_NOSUID | MS_NODEV | MS_REMOUNT | MS_BIND -";
    assert!(m.calls.contains(&ro.to_string()), "{:#?}", m.calls);
}

#[test]
fn a_mapped_container_gets_tmpfs_owned_by_its_root_and_mounts_split_around_the_userns() {
    let mut c = config();
    c.readonly_rootfs = true;
    c.id_map = Some("100000:200000:65536".parse().unwrap());
    let ops = plan(&c, Path::new("/r/c"));
    let data = |target: &str| {
        ops.iter()
            .find_map(|o| match o {
                MountOp::Fs {
                    fstype: "tmpfs",
                    target: t,
                    data,
                    ..
                } if t == Path::new(target) => Some(data.clone()),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(data("/dev"), "mode=755,size=65536k,uid=100000,gid=200000");
    assert_eq!(
        data("/dev/shm"),
        "mode=1777,size=65536k,uid=100000,gid=200000"
    );
    assert_eq!(
        data("/scratch"),
        "mode=1777,size=1048576,uid=100000,gid=200000"
    );

    let total = ops.len();
    let (pre, post) = split_for_userns(ops, &NetworkMode::Isolated);
    assert_eq!(pre.len() + post.len(), total);
    assert_eq!(pre[0], MountOp::MakeRootPrivate);
    assert!(matches!(pre[1], MountOp::Overlay { .. }));
    let kinds: Vec<String> = post
        .iter()
        .map(|o| match o {
            MountOp::Fs { fstype, .. } => fstype.to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["sysfs", "mqueue", "RootReadonly"]);
    assert!(
        pre.iter()
            .any(|o| matches!(o, MountOp::Fs { fstype: "proc", .. })),
        "proc belongs to the pid namespace, made before the user namespace"
    );

    // A joined network namespace is not the user namespace's: its sysfs goes first.
    let (pre, post) = split_for_userns(
        plan(&c, Path::new("/r/c")),
        &NetworkMode::Join {
            path: "/run/netns/x".into(),
        },
    );
    assert!(pre.iter().any(|o| matches!(
        o,
        MountOp::Fs {
            fstype: "sysfs",
            ..
        }
    )));
    assert_eq!(post.len(), 2);
}
