//! What a container is: the configuration the runtime stores as `config.json`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cgroup::Limits;
use crate::idmap::IdMap;

/// Everything needed to run one container, computed by the caller from the image
/// config and the service spec. Stored as `<root>/containers/<id>/config.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// The container id (the task id): `[A-Za-z0-9_.-]`, at most 128 characters.
    pub id: String,
    /// The image layers' directories, top-most first (overlay lowerdir order).
    pub lower_dirs: Vec<PathBuf>,
    /// The process to run as the container's pid 1.
    pub process: ProcessSpec,
    /// The container's hostname (its own UTS namespace).
    pub hostname: String,
    /// The capabilities the process keeps (canonical `CAP_X` names; see
    /// [`super::caps::with_changes`]). Everything else is dropped from the bounding set.
    pub capabilities: Vec<String>,
    /// Mounts the root filesystem read-only (mounts on top stay as asked).
    pub readonly_rootfs: bool,
    /// Extra mounts, applied in order after the standard ones.
    pub mounts: Vec<MountSpec>,
    /// Resource limits (the container's cgroup).
    pub limits: Limits,
    /// The signal `stop` sends first, e.g. `SIGTERM`.
    pub stop_signal: String,
    /// Which network namespace the container gets.
    pub network: NetworkMode,
    /// Contents of the container's `/etc/hosts`.
    pub etc_hosts: String,
    /// Contents of the container's `/etc/resolv.conf`.
    pub resolv_conf: String,
    /// How much of the container's output is kept.
    pub log: LogConfig,
    /// Runs the container in its own user namespace with this mapping (the
    /// node's `--userns-remap`). Its layers (`lower_dirs`) must then be unpacked
    /// with ownership shifted by the same mapping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_map: Option<IdMap>,
}

/// The container's process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// Program and arguments; the program is looked up in the env's `PATH` when it
    /// has no `/`.
    pub argv: Vec<String>,
    /// Environment as `KEY=value` entries. `HOSTNAME` and `PATH` are added when absent.
    pub env: Vec<String>,
    /// Working directory inside the container (created if missing).
    pub cwd: PathBuf,
    /// User id the process runs as.
    pub uid: u32,
    /// Group id the process runs as.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
}

/// A mount the caller asks for, besides the standard ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MountSpec {
    /// A host path (or a named volume's directory) bind-mounted into the container.
    Bind {
        /// The host path.
        source: PathBuf,
        /// Absolute path inside the container.
        target: PathBuf,
        /// Mount read-only.
        readonly: bool,
    },
    /// A fresh tmpfs.
    Tmpfs {
        /// Absolute path inside the container.
        target: PathBuf,
        /// Size limit in bytes; `None` uses the kernel default (half of RAM).
        size_bytes: Option<u64>,
    },
}

/// The container's network namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NetworkMode {
    /// A new, empty network namespace with only loopback, brought up.
    #[default]
    Isolated,
    /// Join an existing network namespace, e.g. `/run/netns/<name>`.
    Join {
        /// Path of the namespace file.
        path: PathBuf,
    },
}

/// Log size cap and rotation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    /// Maximum size of one log file in bytes before it is rotated.
    pub max_bytes: u64,
    /// How many files are kept, the current one included (at least 1).
    pub max_files: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            max_bytes: 10 << 20,
            max_files: 3,
        }
    }
}

impl ContainerConfig {
    /// A configuration with Docker's defaults for everything but the id, the
    /// layers and the command: root user, cwd `/`, default capabilities, no limits,
    /// isolated network, SIGTERM to stop.
    pub fn new(id: impl Into<String>, lower_dirs: Vec<PathBuf>, argv: Vec<String>) -> Self {
        let id = id.into();
        let hostname: String = id.chars().take(12).collect();
        ContainerConfig {
            etc_hosts: format!(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
            ),
            hostname,
            id,
            lower_dirs,
            process: ProcessSpec {
                argv,
                env: Vec::new(),
                cwd: PathBuf::from("/"),
                uid: 0,
                gid: 0,
                additional_gids: Vec::new(),
            },
            capabilities: super::caps::DOCKER_DEFAULT
                .iter()
                .map(|c| c.to_string())
                .collect(),
            readonly_rootfs: false,
            mounts: Vec::new(),
            limits: Limits::default(),
            stop_signal: "SIGTERM".into(),
            network: NetworkMode::Isolated,
            resolv_conf: String::new(),
            log: LogConfig::default(),
            id_map: None,
        }
    }

    /// Checks what the kernel would otherwise reject late and obscurely.
    pub fn validate(&self) -> Result<(), String> {
        validate_id(&self.id)?;
        if self.lower_dirs.is_empty() {
            return Err("no image layers (lower_dirs is empty)".into());
        }
        if let Some(d) = self.lower_dirs.iter().find(|d| !d.is_absolute()) {
            return Err(format!("layer path {} is not absolute", d.display()));
        }
        // Overlay options separate layers with ':' and options with ','.
        if let Some(d) = self
            .lower_dirs
            .iter()
            .find(|d| d.to_string_lossy().contains([':', ',']))
        {
            return Err(format!(
                "layer path {} contains ':' or ',', which overlayfs cannot take",
                d.display()
            ));
        }
        if self.process.argv.is_empty() || self.process.argv[0].is_empty() {
            return Err("no command to run (argv is empty)".into());
        }
        if !self.process.cwd.is_absolute() {
            return Err(format!(
                "cwd {} is not absolute",
                self.process.cwd.display()
            ));
        }
        if self.hostname.is_empty() || self.hostname.len() > 64 {
            return Err(format!(
                "hostname {:?} must be 1 to 64 bytes",
                self.hostname
            ));
        }
        for cap in &self.capabilities {
            super::caps::canonical(cap).map_err(|e| e.to_string())?;
        }
        super::signal_from_name(&self.stop_signal)?;
        for m in &self.mounts {
            let target = match m {
                MountSpec::Bind { source, target, .. } => {
                    if !source.is_absolute() {
                        return Err(format!("bind source {} is not absolute", source.display()));
                    }
                    target
                }
                MountSpec::Tmpfs { target, .. } => target,
            };
            if !target.is_absolute() || target == &PathBuf::from("/") {
                return Err(format!(
                    "mount target {} must be an absolute path other than /",
                    target.display()
                ));
            }
        }
        if self.log.max_files == 0 || self.log.max_bytes == 0 {
            return Err("log max_files and max_bytes must be at least 1".into());
        }
        if let Some(map) = &self.id_map {
            map.validate().map_err(|e| e.to_string())?;
            let p = &self.process;
            let unmapped = std::iter::once(p.uid)
                .filter(|u| map.host_uid_of(*u).is_none())
                .chain(
                    std::iter::once(p.gid)
                        .chain(p.additional_gids.iter().copied())
                        .filter(|g| map.host_gid_of(*g).is_none()),
                )
                .next();
            if let Some(id) = unmapped {
                return Err(format!(
                    "user/group id {id} is outside the user namespace mapping {map} (ids 0 to {})",
                    map.size - 1
                ));
            }
        }
        Ok(())
    }
}

/// Checks a container id: it names directories and cgroups, so no `/` or `..`.
pub fn validate_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid container id {id:?}: use 1-128 of [A-Za-z0-9_.-], not starting with '.'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ContainerConfig {
        ContainerConfig::new("abc", vec!["/l1".into()], vec!["/bin/sh".into()])
    }

    #[test]
    fn defaults_are_valid_and_round_trip_through_json() {
        let c = cfg();
        c.validate().unwrap();
        let json = serde_json::to_string(&c).unwrap();
        let back: ContainerConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn invalid_configs_are_rejected_with_the_reason() {
        let mut c = cfg();
        c.id = "../x".into();
        assert!(c.validate().unwrap_err().contains("invalid container id"));
        let mut c = cfg();
        c.lower_dirs.clear();
        assert!(c.validate().unwrap_err().contains("layers"));
        let mut c = cfg();
        c.lower_dirs.push("/a:b".into());
        assert!(c.validate().unwrap_err().contains("/a:b"));
        let mut c = cfg();
        c.process.argv.clear();
        assert!(c.validate().unwrap_err().contains("argv"));
        let mut c = cfg();
        c.capabilities.push("CAP_NOPE".into());
        assert!(c.validate().unwrap_err().contains("CAP_NOPE"));
        let mut c = cfg();
        c.stop_signal = "SIGNOPE".into();
        assert!(c.validate().unwrap_err().contains("SIGNOPE"));
        let mut c = cfg();
        c.mounts.push(MountSpec::Tmpfs {
            target: "relative".into(),
            size_bytes: None,
        });
        assert!(c.validate().unwrap_err().contains("relative"));
        let mut c = cfg();
        c.id_map = Some("100000:100000:1000".parse().unwrap());
        c.validate().unwrap();
        c.process.additional_gids = vec![1000];
        assert!(c.validate().unwrap_err().contains("id 1000 is outside"));
        c.id_map = Some(crate::idmap::IdMap {
            host_uid: 0,
            host_gid: 1,
            size: 1,
        });
        assert!(c.validate().unwrap_err().contains("host's root"));
    }

    #[test]
    fn configs_without_a_mapping_keep_their_json() {
        let json = serde_json::to_value(cfg()).unwrap();
        assert!(json.get("id_map").is_none());
        let mut c = cfg();
        c.id_map = Some("100000:100000:65536".parse().unwrap());
        let back: ContainerConfig =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }
}
