//! The image config (OCI and `docker save` use the same JSON keys) and Docker's rules
//! for turning it and a service's overrides into the process to run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::digest::Digest;

/// The PATH Docker gives a process whose image sets none.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why no process can be made from an image and a service.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// Neither the image nor the service says what to run.
    #[error(
        "image {image}: no command: the image has no Entrypoint or Cmd and the service gives none"
    )]
    NoCommand {
        /// The image, as the service names it.
        image: String,
    },
}

/// The whole config blob of an image.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigFile {
    /// When the image was built (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// CPU architecture, Go style.
    #[serde(default)]
    pub architecture: String,
    /// Operating system.
    #[serde(default)]
    pub os: String,
    /// How to run the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ImageConfig>,
    /// The uncompressed digests of the layers.
    #[serde(default)]
    pub rootfs: RootFs,
}

/// The layers' uncompressed digests (`diff_ids`), bottom-most first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always "layers".
    #[serde(rename = "type")]
    pub kind: String,
    /// The sha256 of each layer's uncompressed tar, bottom-most first.
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".into(),
            diff_ids: Vec::new(),
        }
    }
}

/// How to run the image (`config` in the config blob). Docker writes `null` for
/// unset fields, hence every field is optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    /// `user`, `uid`, `user:group` or `uid:gid`; empty means root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Ports the image listens on, as `port/proto` keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    /// `KEY=VALUE` entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// The program and its fixed leading arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Default arguments (or the program when there is no Entrypoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// The process's working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Free-form labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// The signal that asks the process to stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

/// The process a container runs, resolved from the image and the service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessSpec {
    /// Program and arguments; never empty.
    pub argv: Vec<String>,
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    /// Absolute working directory inside the container.
    pub cwd: String,
    /// The user as the image gives it (`name`, `uid`, `user:group`); empty = root.
    /// Resolving names needs the container's /etc/passwd, so it is left to the runtime.
    pub user: String,
}

/// The key of a `KEY=VALUE` entry (an entry without `=` is all key).
fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

impl ImageConfig {
    /// The ports the image exposes, as `(port, protocol)` sorted; malformed keys skipped.
    pub fn exposed_ports(&self) -> Vec<(u16, String)> {
        let mut out: Vec<(u16, String)> = self
            .exposed_ports
            .iter()
            .flatten()
            .filter_map(|(key, _)| {
                let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
                Some((port.parse().ok()?, proto.to_ascii_lowercase()))
            })
            .collect();
        out.sort();
        out
    }

    /// The process for a service using this image, by Docker's rules: a non-empty
    /// `command` replaces the Entrypoint and clears the Cmd; non-empty `args` replace
    /// the Cmd; `env` entries override the image's entries with the same key; the
    /// working directory defaults to `/`. `image` names the image in the error.
    pub fn process(
        &self,
        image: &str,
        command: &[String],
        args: &[String],
        env: &[String],
    ) -> Result<ProcessSpec, ConfigError> {
        let image_cmd = self.cmd.as_deref().unwrap_or_default();
        let (entrypoint, cmd) = if command.is_empty() {
            let cmd = if args.is_empty() { image_cmd } else { args };
            (self.entrypoint.as_deref().unwrap_or_default(), cmd)
        } else {
            (command, args)
        };
        let argv: Vec<String> = entrypoint.iter().chain(cmd).cloned().collect();
        if argv.is_empty() {
            return Err(ConfigError::NoCommand {
                image: image.to_string(),
            });
        }
        let mut merged: Vec<String> = self.env.clone().unwrap_or_default();
        for entry in env {
            let key = env_key(entry);
            match merged.iter_mut().find(|e| env_key(e) == key) {
                Some(slot) => slot.clone_from(entry),
                None => merged.push(entry.clone()),
            }
        }
        if !merged.iter().any(|e| env_key(e) == "PATH") {
            merged.insert(0, DEFAULT_PATH.to_string());
        }
        let cwd = match self.working_dir.as_deref().unwrap_or_default() {
            "" => "/".to_string(),
            dir if dir.starts_with('/') => dir.to_string(),
            dir => format!("/{dir}"),
        };
        Ok(ProcessSpec {
            argv,
            env: merged,
            cwd,
            user: self.user.clone().unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn nginx() -> ImageConfig {
        ImageConfig {
            entrypoint: Some(s(&["/docker-entrypoint.sh"])),
            cmd: Some(s(&["nginx", "-g", "daemon off;"])),
            env: Some(s(&["PATH=/usr/bin:/bin", "NGINX_VERSION=1.27"])),
            working_dir: Some("/srv".into()),
            user: Some("101:101".into()),
            ..Default::default()
        }
    }

    #[test]
    fn image_defaults() {
        let p = nginx().process("nginx", &[], &[], &[]).unwrap();
        assert_eq!(
            p.argv,
            s(&["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"])
        );
        assert_eq!(p.env, s(&["PATH=/usr/bin:/bin", "NGINX_VERSION=1.27"]));
        assert_eq!(p.cwd, "/srv");
        assert_eq!(p.user, "101:101");
    }

    #[test]
    fn args_replace_cmd_only() {
        let p = nginx().process("nginx", &[], &s(&["-v"]), &[]).unwrap();
        assert_eq!(p.argv, s(&["/docker-entrypoint.sh", "-v"]));
    }

    #[test]
    fn command_replaces_entrypoint_and_clears_cmd() {
        let p = nginx().process("nginx", &s(&["sh"]), &[], &[]).unwrap();
        assert_eq!(p.argv, s(&["sh"]));
        let p = nginx()
            .process("nginx", &s(&["sh", "-c"]), &s(&["echo hi"]), &[])
            .unwrap();
        assert_eq!(p.argv, s(&["sh", "-c", "echo hi"]));
    }

    #[test]
    fn env_overrides_by_key_and_appends() {
        let p = nginx()
            .process(
                "nginx",
                &[],
                &[],
                &s(&["NGINX_VERSION=2", "EXTRA=1", "FLAG"]),
            )
            .unwrap();
        assert_eq!(
            p.env,
            s(&["PATH=/usr/bin:/bin", "NGINX_VERSION=2", "EXTRA=1", "FLAG"])
        );
    }

    #[test]
    fn empty_image_defaults() {
        let cfg = ImageConfig::default();
        let p = cfg.process("scratch-app", &s(&["/app"]), &[], &[]).unwrap();
        assert_eq!(p.argv, s(&["/app"]));
        assert_eq!(p.cwd, "/");
        assert_eq!(p.user, "");
        assert_eq!(p.env, s(&[DEFAULT_PATH]));
        let rel = ImageConfig {
            working_dir: Some("app".into()),
            cmd: Some(s(&["x"])),
            ..Default::default()
        };
        assert_eq!(rel.process("i", &[], &[], &[]).unwrap().cwd, "/app");
    }

    #[test]
    fn no_command_is_an_error_naming_the_image() {
        // Args alone, with neither Entrypoint nor command, are the program.
        let p = ImageConfig::default()
            .process("myorg/empty:1", &[], &s(&["only-args"]), &[])
            .unwrap();
        assert_eq!(p.argv, s(&["only-args"]));
        let err = ImageConfig::default()
            .process("myorg/empty:1", &[], &[], &[])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "image myorg/empty:1: no command: the image has no Entrypoint or Cmd and the service gives none"
        );
    }

    #[test]
    fn parses_docker_config_with_nulls() {
        let json = r#"{"architecture":"amd64","os":"linux","created":"2024-01-01T00:00:00Z",
            "config":{"Env":["PATH=/bin"],"Cmd":["sh"],"Entrypoint":null,"WorkingDir":"",
            "User":"","ExposedPorts":{"80/tcp":{},"53/udp":{},"bad":{}},"Labels":null},
            "container_config":{"Cmd":["ignored"]},
            "rootfs":{"type":"layers","diff_ids":["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]}}"#;
        let cfg: ConfigFile = serde_json::from_str(json).unwrap();
        let ic = cfg.config.unwrap();
        assert_eq!(ic.cmd, Some(s(&["sh"])));
        assert_eq!(ic.entrypoint, None);
        assert_eq!(
            ic.exposed_ports(),
            vec![(53, "udp".into()), (80, "tcp".into())]
        );
        assert_eq!(cfg.rootfs.diff_ids.len(), 1);
        let p = ic.process("busybox", &[], &[], &[]).unwrap();
        assert_eq!((p.argv, p.cwd), (s(&["sh"]), "/".to_string()));
    }
}
