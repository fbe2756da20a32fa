//! Named volumes: directories under `<root>/volumes` that outlive the containers
//! mounting them, listed and removed per node (as `docker volume` does).

use std::path::{Path, PathBuf};

use super::runtime::Runtime;
use super::{CONFIG_FILE, ContainerConfig, ContainerError, MountSpec, state};

/// One named volume on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeInfo {
    /// The volume's name.
    pub name: String,
    /// Its directory on the host.
    pub path: PathBuf,
    /// Bytes used by its files.
    pub size_bytes: u64,
    /// Containers (task ids) on this node that mount it, running or not.
    pub used_by: Vec<String>,
}

/// Bytes of the regular files under `dir`, not following symlinks.
fn disk_usage(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => disk_usage(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

impl Runtime {
    fn volumes_root(&self) -> PathBuf {
        self.root.join("volumes")
    }

    /// Containers that mount `path`.
    async fn users_of(&self, path: &Path) -> Result<Vec<String>, ContainerError> {
        let mut users = Vec::new();
        for id in self.list().await? {
            let config_path = self.container_dir(&id).join(CONFIG_FILE);
            let Ok(Some(config)) = state::read_json::<ContainerConfig>(&config_path) else {
                continue;
            };
            let mounts_it = config
                .mounts
                .iter()
                .any(|m| matches!(m, MountSpec::Bind { source, .. } if source == path));
            if mounts_it {
                users.push(id);
            }
        }
        Ok(users)
    }

    /// Every named volume on this node, by name.
    pub async fn volumes(&self) -> Result<Vec<VolumeInfo>, ContainerError> {
        let root = self.volumes_root();
        let mut names: Vec<String> = match std::fs::read_dir(&root) {
            Ok(entries) => entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().into_string().ok())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(ContainerError::Io {
                    op: "list",
                    path: root,
                    source,
                });
            }
        };
        names.sort();
        let mut volumes = Vec::with_capacity(names.len());
        for name in names {
            let path = root.join(&name);
            let used_by = self.users_of(&path).await?;
            let size_bytes = {
                let p = path.clone();
                tokio::task::spawn_blocking(move || disk_usage(&p))
                    .await
                    .unwrap_or(0)
            };
            volumes.push(VolumeInfo {
                name,
                path,
                size_bytes,
                used_by,
            });
        }
        Ok(volumes)
    }

    /// Removes volume `name` and its data; refused while a container on this node
    /// mounts it.
    pub async fn remove_volume(&self, name: &str) -> Result<(), ContainerError> {
        super::config::validate_id(name).map_err(ContainerError::InvalidConfig)?;
        let path = self.volumes_root().join(name);
        if !path.is_dir() {
            return Err(ContainerError::NotFound {
                id: format!("volume {name}"),
            });
        }
        let users = self.users_of(&path).await?;
        if !users.is_empty() {
            return Err(ContainerError::VolumeInUse {
                name: name.to_string(),
                users: users.join(", "),
            });
        }
        let p = path.clone();
        tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&p))
            .await
            .map_err(|e| ContainerError::Task(e.to_string()))?
            .map_err(|source| ContainerError::Io {
                op: "remove",
                path,
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_usage_counts_nested_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/one"), [0u8; 100]).unwrap();
        std::fs::write(dir.path().join("a/b/two"), [0u8; 50]).unwrap();
        assert_eq!(disk_usage(dir.path()), 150);
        assert_eq!(disk_usage(&dir.path().join("missing")), 0);
    }
}
