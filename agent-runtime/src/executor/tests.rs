//! A task's container configuration from its spec and image.

use std::path::PathBuf;

use rswarm_proto::api::{
    ContainerSpec, Mount, MountType, ResourceRequirements, Resources, Task, TaskSpec,
};

use super::spec::{Inputs, container_config, exit_status, task_name};
use crate::cgroup::Limits;
use crate::container::{ExitInfo, MountSpec};
use crate::exec::ExecError;
use crate::image::ImageConfig;

fn task(container: ContainerSpec) -> Task {
    Task {
        id: "task1".into(),
        service_name: "web".into(),
        slot: 2,
        spec: Some(TaskSpec {
            container: Some(container),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn image() -> ImageConfig {
    ImageConfig {
        entrypoint: Some(vec!["/bin/server".into()]),
        cmd: Some(vec!["--port".into(), "80".into()]),
        env: Some(vec!["MODE=prod".into()]),
        working_dir: Some("/srv".into()),
        ..Default::default()
    }
}

fn build(task: &Task, run: &ImageConfig) -> Result<crate::container::ContainerConfig, ExecError> {
    build_mapped(task, run, None)
}

fn build_mapped(
    task: &Task,
    run: &ImageConfig,
    id_map: Option<crate::idmap::IdMap>,
) -> Result<crate::container::ContainerConfig, ExecError> {
    let volumes = |name: &str| Ok(PathBuf::from("/data/volumes").join(name));
    container_config(
        task,
        Inputs {
            image: "web:1",
            run,
            lower_dirs: vec![
                PathBuf::from("/layers/top"),
                PathBuf::from("/layers/bottom"),
            ],
            volume_dir: &volumes,
            id_map,
        },
    )
}

#[test]
fn the_node_mapping_goes_into_the_config_and_unmapped_users_are_refused() {
    let map: crate::idmap::IdMap = "100000:100000:1000".parse().unwrap();
    let spec = |user: &str| {
        task(ContainerSpec {
            image: "web:1".into(),
            user: user.into(),
            ..Default::default()
        })
    };
    let config = build_mapped(&spec(""), &image(), Some(map)).unwrap();
    assert_eq!(config.id_map, Some(map));
    assert_eq!(build(&spec(""), &image()).unwrap().id_map, None);
    let err = build_mapped(&spec("5000:5000"), &image(), Some(map)).unwrap_err();
    assert!(matches!(err, ExecError::InvalidSpec(_)), "{err}");
    assert!(err.to_string().contains("5000 is outside"), "{err}");
}

#[test]
fn the_image_config_gives_the_defaults() {
    let config = build(
        &task(ContainerSpec {
            image: "web:1".into(),
            ..Default::default()
        }),
        &image(),
    )
    .unwrap();
    assert_eq!(config.id, "task1");
    assert_eq!(config.process.argv, ["/bin/server", "--port", "80"]);
    assert!(config.process.env.contains(&"MODE=prod".to_string()));
    assert_eq!(config.process.cwd, PathBuf::from("/srv"));
    assert_eq!((config.process.uid, config.process.gid), (0, 0));
    assert_eq!(config.hostname, "web.2", "the task's name by default");
    assert!(config.etc_hosts.contains("web.2"));
    assert_eq!(config.stop_signal, "SIGTERM");
    assert_eq!(config.capabilities.len(), 14, "Docker's default set");
    assert_eq!(config.lower_dirs[0], PathBuf::from("/layers/top"));
}

#[test]
fn the_service_spec_overrides_the_image() {
    let spec = ContainerSpec {
        image: "web:1".into(),
        args: vec!["--port".into(), "8080".into()],
        env: vec!["MODE=dev".into()],
        hostname: "custom".into(),
        user: "1000:1000".into(),
        dir: "/work".into(),
        mounts: vec![
            Mount {
                r#type: MountType::Volume as i32,
                source: "cache".into(),
                target: "/cache".into(),
                ..Default::default()
            },
            Mount {
                r#type: MountType::Bind as i32,
                source: "/etc/ssl".into(),
                target: "/ssl".into(),
                read_only: true,
                ..Default::default()
            },
            Mount {
                r#type: MountType::Tmpfs as i32,
                target: "/scratch".into(),
                tmpfs_size_bytes: 1 << 20,
                ..Default::default()
            },
        ],
        cap_add: vec!["CAP_NET_ADMIN".into()],
        cap_drop: vec!["ALL".into()],
        read_only: true,
        stop_signal: "SIGINT".into(),
        ..Default::default()
    };
    let mut task = task(spec);
    if let Some(spec) = task.spec.as_mut() {
        spec.resources = Some(ResourceRequirements {
            limits: Some(Resources {
                nano_cpus: 500_000_000,
                memory_bytes: 64 << 20,
                pids: 32,
            }),
            reservations: None,
        });
    }
    let config = build(&task, &image()).unwrap();
    assert_eq!(config.process.argv, ["/bin/server", "--port", "8080"]);
    assert!(config.process.env.contains(&"MODE=dev".to_string()));
    assert!(!config.process.env.contains(&"MODE=prod".to_string()));
    assert_eq!(config.hostname, "custom");
    assert_eq!((config.process.uid, config.process.gid), (1000, 1000));
    assert_eq!(config.process.cwd, PathBuf::from("/work"));
    assert_eq!(config.capabilities, ["CAP_NET_ADMIN"]);
    assert!(config.readonly_rootfs);
    assert_eq!(config.stop_signal, "SIGINT");
    assert_eq!(
        config.mounts,
        vec![
            MountSpec::Bind {
                source: PathBuf::from("/data/volumes/cache"),
                target: PathBuf::from("/cache"),
                readonly: false,
            },
            MountSpec::Bind {
                source: PathBuf::from("/etc/ssl"),
                target: PathBuf::from("/ssl"),
                readonly: true,
            },
            MountSpec::Tmpfs {
                target: PathBuf::from("/scratch"),
                size_bytes: Some(1 << 20),
            },
        ]
    );
    assert_eq!(
        config.limits,
        Limits {
            memory_bytes: Some(64 << 20),
            nano_cpus: Some(500_000_000),
            pids: Some(32),
        }
    );
}

#[test]
fn an_image_without_a_command_or_an_unknown_user_is_refused_by_name() {
    let bare = ImageConfig::default();
    let err = build(
        &task(ContainerSpec {
            image: "web:1".into(),
            ..Default::default()
        }),
        &bare,
    )
    .unwrap_err();
    assert!(matches!(err, ExecError::InvalidSpec(_)));
    assert!(err.to_string().contains("web:1"), "{err}");
    let err = build(
        &task(ContainerSpec {
            image: "web:1".into(),
            user: "ghost".into(),
            ..Default::default()
        }),
        &image(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("unable to find user ghost"),
        "{err}"
    );
}

#[test]
fn the_image_stop_signal_applies_when_the_spec_has_none() {
    let run = ImageConfig {
        stop_signal: Some("SIGQUIT".into()),
        ..image()
    };
    let config = build(
        &task(ContainerSpec {
            image: "web:1".into(),
            ..Default::default()
        }),
        &run,
    )
    .unwrap();
    assert_eq!(config.stop_signal, "SIGQUIT");
}

#[test]
fn oom_kills_name_the_limit() {
    let limits = Limits {
        memory_bytes: Some(64 << 20),
        ..Default::default()
    };
    let oom = ExitInfo {
        code: 137,
        signal: Some(9),
        oom_killed: true,
    };
    assert_eq!(
        exit_status(&oom, &limits).reason,
        "OOM killed (limit 64MiB)"
    );
    let killed = ExitInfo {
        oom_killed: false,
        ..oom
    };
    assert_eq!(exit_status(&killed, &limits).reason, "killed by signal 9");
    assert_eq!(exit_status(&killed, &limits).code, 137);
}

#[test]
fn global_tasks_are_named_after_their_node() {
    let mut t = task(ContainerSpec::default());
    t.slot = 0;
    t.node_id = "node7".into();
    assert_eq!(task_name(&t), "web.node7");
}
