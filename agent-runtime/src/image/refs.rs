//! Image names (`name[:tag]`) and `refs.json`, the map from names to manifest digests.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use super::digest::Digest;
use super::fsutil::write_atomic;

/// What went wrong with a name or with `refs.json`.
#[derive(Debug, thiserror::Error)]
pub enum RefsError {
    /// The name is not a valid image reference.
    #[error("invalid image name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `refs.json` could not be read, written or locked.
    #[error("image refs {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// `refs.json` does not parse.
    #[error("image refs {path}: {source}")]
    Json {
        /// The file involved.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
}

/// The tag a name without one gets.
pub const DEFAULT_TAG: &str = "latest";

/// Checks `name` and returns it with an explicit tag (`busybox` → `busybox:latest`).
pub fn normalize(name: &str) -> Result<String, RefsError> {
    let bad = |reason| RefsError::InvalidName {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("contains whitespace or control characters"));
    }
    if name.contains('@') {
        return Err(bad("digest references (name@sha256:...) cannot be names"));
    }
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], &name[last_slash + i + 1..]),
        None => (name, DEFAULT_TAG),
    };
    if repo.is_empty() || repo.split('/').any(str::is_empty) {
        return Err(bad("empty path component"));
    }
    if repo.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(bad("repository name must be lowercase"));
    }
    if repo == "sha256" {
        return Err(bad("looks like an image id"));
    }
    let tag_ok = !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !tag_ok {
        return Err(bad(
            "tag must be 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'",
        ));
    }
    Ok(format!("{repo}:{tag}"))
}

/// The name → manifest digest map, as stored.
pub type RefMap = BTreeMap<String, Digest>;

/// `refs.json` and the lock that serialises its read-modify-write cycles.
#[derive(Clone, Debug)]
pub struct Refs {
    /// `refs.json`.
    path: PathBuf,
    /// `refs.lock`, flocked while a cycle runs.
    lock_path: PathBuf,
}

/// Holds the refs lock; released on drop (closing the file releases the flock).
pub struct RefsLock {
    /// The locked file.
    _file: File,
}

impl Refs {
    /// The refs of the image store in `dir`.
    pub fn new(dir: &Path) -> Self {
        Refs {
            path: dir.join("refs.json"),
            lock_path: dir.join("refs.lock"),
        }
    }

    /// Takes the exclusive lock, waiting for other processes and threads (flock
    /// locks conflict between separate opens, even in one process). Blocks: call
    /// from a blocking context.
    pub fn lock(&self) -> Result<RefsLock, RefsError> {
        let io = |source| RefsError::Io {
            path: self.lock_path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)
            .map_err(io)?;
        flock(&file, FlockOperation::LockExclusive).map_err(|e| io(e.into()))?;
        Ok(RefsLock { _file: file })
    }

    /// Reads the map; a missing file is an empty map.
    pub fn load(&self) -> Result<RefMap, RefsError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| RefsError::Json {
                path: self.path.clone(),
                source,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(RefMap::new()),
            Err(source) => Err(RefsError::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Replaces the map atomically; the caller holds the lock.
    pub fn save(&self, _lock: &RefsLock, refs: &RefMap) -> Result<(), RefsError> {
        let mut bytes = serde_json::to_vec_pretty(refs).map_err(|source| RefsError::Json {
            path: self.path.clone(),
            source,
        })?;
        bytes.push(b'\n');
        write_atomic(&self.path, &bytes).map_err(|source| RefsError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_names() {
        for (given, want) in [
            ("busybox", "busybox:latest"),
            ("busybox:1.36", "busybox:1.36"),
            ("library/nginx", "library/nginx:latest"),
            ("localhost:5000/app", "localhost:5000/app:latest"),
            ("localhost:5000/app:v2", "localhost:5000/app:v2"),
            ("a.b/c_d-e:V1.0_x", "a.b/c_d-e:V1.0_x"),
        ] {
            assert_eq!(normalize(given).unwrap(), want, "{given}");
        }
    }

    #[test]
    fn refuses_bad_names() {
        for bad in [
            "",
            "Busybox",
            "a b",
            "app:",
            "app:-x",
            "/app",
            "a//b",
            "app@sha256:00",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            let err = normalize(bad).unwrap_err();
            assert!(
                err.to_string().contains("invalid image name"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn load_save_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let refs = Refs::new(dir.path());
        assert!(refs.load().unwrap().is_empty());
        let lock = refs.lock().unwrap();
        let mut map = RefMap::new();
        map.insert("a:latest".into(), Digest::of(b"m"));
        refs.save(&lock, &map).unwrap();
        drop(lock);
        assert_eq!(refs.load().unwrap(), map);
        std::fs::write(dir.path().join("refs.json"), b"{broken").unwrap();
        assert!(matches!(refs.load(), Err(RefsError::Json { .. })));
    }
}
