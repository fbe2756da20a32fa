//! Container options: mounts, capabilities, stop signal, user.

use std::collections::HashSet;
use std::path::{Component, Path};

use super::{ValidationError, parse_size};
use crate::api::{ContainerSpec, Mount, MountType};

/// Every capability Linux 6.x knows, by number (`CAP_CHOWN` is 0).
pub const ALL_CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The capabilities a container keeps by default: Docker's set.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Signals a container may be stopped with, by number (index + 1).
const SIGNALS: [&str; 31] = [
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
    "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
    "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
];

/// Parses a capability name (`NET_ADMIN`, `cap_net_admin`, `ALL`) into its canonical
/// form (`CAP_NET_ADMIN`, `ALL`).
pub fn parse_capability(input: &str) -> Result<String, ValidationError> {
    let upper = input.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(upper);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if ALL_CAPABILITIES.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(ValidationError::Capability(input.to_string()))
    }
}

/// Parses a signal (`SIGTERM`, `term`, `15`) into its canonical name (`SIGTERM`).
pub fn parse_signal(input: &str) -> Result<String, ValidationError> {
    let trimmed = input.trim();
    let name = match trimmed.parse::<usize>() {
        Ok(number) => number
            .checked_sub(1)
            .and_then(|i| SIGNALS.get(i))
            .map(|s| s.to_string()),
        Err(_) => {
            let upper = trimmed.to_ascii_uppercase();
            let bare = upper.strip_prefix("SIG").unwrap_or(&upper).to_string();
            SIGNALS.contains(&bare.as_str()).then_some(bare)
        }
    };
    name.map(|n| format!("SIG{n}"))
        .ok_or_else(|| ValidationError::Signal(input.to_string()))
}

/// The number of a canonical signal name, e.g. 15 for `SIGTERM`.
pub fn signal_number(name: &str) -> Option<i32> {
    let bare = name.strip_prefix("SIG")?;
    let index = SIGNALS.iter().position(|s| *s == bare)?;
    i32::try_from(index + 1).ok()
}

/// Checks a `--user` value: `UID[:GID]` or `NAME[:GROUP]` (names are looked up in
/// the image when the task starts).
pub fn parse_user(input: &str) -> Result<(), ValidationError> {
    let bad = |reason: &str| ValidationError::User {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    let mut parts = input.split(':');
    let user = parts.next().unwrap_or_default();
    let group = parts.next();
    if parts.next().is_some() {
        return Err(bad("expected UID[:GID]"));
    }
    for part in std::iter::once(user).chain(group) {
        if part.is_empty() {
            return Err(bad("expected UID[:GID]"));
        }
        if let Ok(id) = part.parse::<u64>() {
            if id >= u64::from(u32::MAX) {
                return Err(bad("ids must be below 4294967295"));
            }
        } else if !part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(bad("names may hold letters, digits, `_`, `-` and `.`"));
        }
    }
    Ok(())
}

/// Parses a `--mount` value: `type=bind|volume|tmpfs,source=S,target=T[,readonly]
/// [,tmpfs-size=SIZE]` (`src`, `dst`, `destination`, `ro` are accepted too; the
/// type defaults to volume, as in Docker).
pub fn parse_mount(input: &str) -> Result<Mount, ValidationError> {
    let bad = |reason: String| ValidationError::Mount {
        input: input.to_string(),
        reason,
    };
    let mut mount = Mount::default();
    let mut kind = MountType::Volume;
    for field in input.split(',') {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (field.trim(), None),
        };
        match (key, value) {
            ("type", Some(v)) => {
                kind = match v {
                    "bind" => MountType::Bind,
                    "volume" => MountType::Volume,
                    "tmpfs" => MountType::Tmpfs,
                    other => {
                        return Err(bad(format!(
                            "unknown type \"{other}\": must be bind, volume or tmpfs"
                        )));
                    }
                }
            }
            ("source" | "src", Some(v)) => mount.source = v.to_string(),
            ("target" | "dst" | "destination", Some(v)) => mount.target = v.to_string(),
            ("readonly" | "ro", None) => mount.read_only = true,
            ("readonly" | "ro", Some(v)) => {
                mount.read_only = match v {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    other => {
                        return Err(bad(format!(
                            "readonly must be true or false, not \"{other}\""
                        )));
                    }
                }
            }
            ("tmpfs-size", Some(v)) => {
                mount.tmpfs_size_bytes = parse_size(v).map_err(|e| bad(e.to_string()))?;
            }
            ("", None) => return Err(bad("empty field".into())),
            (key, _) => return Err(bad(format!("unknown field \"{key}\""))),
        }
    }
    mount.r#type = kind as i32;
    validate_mount(&mount).map_err(bad)?;
    Ok(mount)
}

/// Why a stored mount is wrong, if it is.
fn validate_mount(mount: &Mount) -> Result<(), String> {
    let kind = MountType::try_from(mount.r#type)
        .map_err(|_| format!("unknown mount type {}", mount.r#type))?;
    if mount.target.is_empty() {
        return Err("a target is required".into());
    }
    check_container_path(&mount.target)?;
    match kind {
        MountType::Bind => {
            let source = Path::new(&mount.source);
            if mount.source.is_empty() || !source.is_absolute() {
                return Err("a bind mount needs an absolute source path on the host".into());
            }
            if source.components().any(|c| c == Component::ParentDir) {
                return Err("the source path must not contain `..`".into());
            }
        }
        MountType::Volume => {
            if mount.source.is_empty() {
                return Err("a volume mount needs a source: the volume's name".into());
            }
            check_volume_name(&mount.source)?;
        }
        MountType::Tmpfs => {
            if !mount.source.is_empty() {
                return Err("a tmpfs mount takes no source".into());
            }
        }
    }
    if kind != MountType::Tmpfs && mount.tmpfs_size_bytes != 0 {
        return Err("tmpfs-size applies to tmpfs mounts only".into());
    }
    Ok(())
}

/// A volume name: a letter or digit, then letters, digits, `_`, `.` or `-`.
pub fn check_volume_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        || name.len() > 255
    {
        return Err(format!(
            "invalid volume name \"{name}\": must start with a letter or digit and hold only letters, digits, `_`, `.` and `-`"
        ));
    }
    Ok(())
}

/// An absolute path inside the container, without `..`, other than `/` itself.
fn check_container_path(target: &str) -> Result<(), String> {
    let path = Path::new(target);
    if !path.is_absolute() {
        return Err(format!("the target \"{target}\" must be an absolute path"));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(format!("the target \"{target}\" must not contain `..`"));
    }
    if path.components().all(|c| c == Component::RootDir) {
        return Err("the target cannot be `/`".into());
    }
    Ok(())
}

/// Checks a stored container spec's options: mounts (valid, no target twice),
/// capabilities, stop signal and user.
pub fn validate_container(container: &ContainerSpec) -> Result<(), ValidationError> {
    let mut targets = HashSet::new();
    for mount in &container.mounts {
        validate_mount(mount).map_err(|reason| ValidationError::Mount {
            input: format!("{}:{}", mount.source, mount.target),
            reason,
        })?;
        let normalized: std::path::PathBuf = Path::new(&mount.target).components().collect();
        if !targets.insert(normalized) {
            return Err(ValidationError::Mount {
                input: mount.target.clone(),
                reason: "the target is mounted more than once".into(),
            });
        }
    }
    for cap in container.cap_add.iter().chain(&container.cap_drop) {
        if parse_capability(cap)? != *cap {
            return Err(ValidationError::Capability(cap.clone()));
        }
    }
    if !container.stop_signal.is_empty()
        && parse_signal(&container.stop_signal)? != container.stop_signal
    {
        return Err(ValidationError::Signal(container.stop_signal.clone()));
    }
    if !container.user.is_empty() {
        parse_user(&container.user)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_canonicalised_and_unknown_ones_refused() {
        assert_eq!(parse_capability("net_admin").unwrap(), "CAP_NET_ADMIN");
        assert_eq!(parse_capability("CAP_SYS_ADMIN").unwrap(), "CAP_SYS_ADMIN");
        assert_eq!(parse_capability("all").unwrap(), "ALL");
        let err = parse_capability("NET_WIZARD").unwrap_err().to_string();
        assert!(err.contains("NET_WIZARD"), "{err}");
    }

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("term").unwrap(), "SIGTERM");
        assert_eq!(parse_signal("SIGUSR1").unwrap(), "SIGUSR1");
        assert_eq!(parse_signal("9").unwrap(), "SIGKILL");
        assert!(parse_signal("0").is_err());
        assert!(
            parse_signal("SIGNOPE")
                .unwrap_err()
                .to_string()
                .contains("SIGNOPE")
        );
        assert_eq!(signal_number("SIGTERM"), Some(15));
        assert_eq!(signal_number("SIGSYS"), Some(31));
        assert_eq!(signal_number("TERM"), None);
    }

    #[test]
    fn users_are_ids_or_names() {
        assert!(parse_user("1000").is_ok());
        assert!(parse_user("1000:100").is_ok());
        assert!(parse_user("nobody:nogroup").is_ok());
        for bad in ["", ":", "1000:", "a:b:c", "ro ot", "4294967295"] {
            let err = parse_user(bad).unwrap_err().to_string();
            assert!(err.contains("invalid user"), "{bad}: {err}");
        }
    }

    #[test]
    fn mounts_parse_all_three_types() {
        let bind = parse_mount("type=bind,source=/srv/data,target=/data,readonly").unwrap();
        assert_eq!(bind.r#type, MountType::Bind as i32);
        assert_eq!(
            (bind.source.as_str(), bind.target.as_str()),
            ("/srv/data", "/data")
        );
        assert!(bind.read_only);
        let volume = parse_mount("src=cache,dst=/cache").unwrap();
        assert_eq!(volume.r#type, MountType::Volume as i32);
        assert!(!volume.read_only);
        let tmpfs = parse_mount("type=tmpfs,target=/scratch,tmpfs-size=64MiB").unwrap();
        assert_eq!(tmpfs.tmpfs_size_bytes, 64 << 20);
    }

    #[test]
    fn bad_mounts_name_the_problem() {
        for (input, needle) in [
            ("type=bind,source=rel,target=/x", "absolute source"),
            ("type=bind,source=/a/../b,target=/x", "`..`"),
            ("type=volume,target=/x", "volume's name"),
            ("type=volume,source=-bad,target=/x", "invalid volume name"),
            ("type=tmpfs,source=/a,target=/x", "takes no source"),
            ("type=bind,source=/a,target=x", "absolute path"),
            ("type=bind,source=/a,target=/", "cannot be `/`"),
            ("type=nfs,target=/x", "unknown type"),
            ("type=bind,source=/a,target=/x,colour=red", "unknown field"),
            (
                "type=bind,source=/a,target=/x,readonly=maybe",
                "true or false",
            ),
            ("type=bind,source=/a", "target is required"),
            (
                "type=volume,source=v,target=/x,tmpfs-size=1m",
                "tmpfs mounts only",
            ),
        ] {
            let err = parse_mount(input).unwrap_err().to_string();
            assert!(err.contains(input), "{err}");
            assert!(err.contains(needle), "{input}: {err}");
        }
    }

    #[test]
    fn a_container_spec_is_checked_whole() {
        let mut spec = ContainerSpec {
            image: "web".into(),
            mounts: vec![
                parse_mount("type=tmpfs,target=/a").unwrap(),
                parse_mount("type=tmpfs,target=/a/").unwrap(),
            ],
            ..Default::default()
        };
        let err = validate_container(&spec).unwrap_err().to_string();
        assert!(err.contains("more than once"), "{err}");
        spec.mounts.pop();
        assert!(validate_container(&spec).is_ok());
        spec.cap_add = vec!["net_admin".into()];
        assert!(
            validate_container(&spec).is_err(),
            "stored names must be canonical"
        );
        spec.cap_add = vec!["CAP_NET_ADMIN".into()];
        spec.stop_signal = "SIGTERM".into();
        spec.user = "1000:1000".into();
        assert!(validate_container(&spec).is_ok());
        spec.stop_signal = "SIGWHAT".into();
        assert!(validate_container(&spec).is_err());
    }
}
