//! Small file-system helpers: unique temp names, durable renames, atomic rewrites.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Prefix of every temporary entry the store creates, so they are never taken for
/// content (a blob or layer name is always 64 hex characters).
pub const TMP_PREFIX: &str = ".tmp-";

/// A name unique among every process and thread using the store at the same time.
pub fn temp_name(what: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{TMP_PREFIX}{what}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Flushes a directory's entries, so a rename into it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The pid in a name made by [`temp_name`].
fn temp_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(TMP_PREFIX)?;
    let mut parts = rest.rsplitn(4, '-');
    let (_nanos, _counter, pid) = (parts.next()?, parts.next()?, parts.next()?);
    parts.next()?;
    pid.parse().ok()
}

/// Removes temp entries in `dir` left by processes that are gone (a crash during
/// an import or an unpack). Entries of live processes are work in progress.
pub fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = temp_owner(&name) else {
            continue;
        };
        if pid != 0 && Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let path = entry.path();
        let res = match entry.file_type() {
            Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
            _ => fs::remove_file(&path),
        };
        match res {
            Ok(()) => tracing::info!(path = %path.display(), "stale temporary entry removed"),
            Err(err) => {
                tracing::warn!(path = %path.display(), %err, "cannot remove stale temporary entry")
            }
        }
    }
}

/// A temporary file or directory removed on drop unless it was kept (renamed).
pub struct TempPath {
    /// Where it is.
    path: PathBuf,
    /// False once the entry was moved to its final place.
    armed: bool,
}

impl TempPath {
    /// Guards `path`, which the caller is about to create.
    pub fn new(path: PathBuf) -> Self {
        TempPath { path, armed: true }
    }

    /// Where the temporary entry is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the entry to `dest`, after which nothing is removed on drop.
    pub fn persist(mut self, dest: &Path) -> io::Result<()> {
        fs::rename(&self.path, dest)?;
        self.armed = false;
        Ok(())
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let res = match fs::symlink_metadata(&self.path) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&self.path),
            Ok(_) => fs::remove_file(&self.path),
            Err(_) => Ok(()),
        };
        if let Err(err) = res {
            tracing::warn!(path = %self.path.display(), %err, "cannot remove temporary entry");
        }
    }
}

/// Replaces `path` with `bytes` so readers see the old or the new content, never a
/// mix: written to a temp file next to it, flushed, renamed, directory flushed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = TempPath::new(dir.join(temp_name(&file_name)));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp.path())?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    tmp.persist(path)?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("refs.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn temp_names_carry_the_pid() {
        let name = temp_name("rm-ab-cd");
        assert_eq!(temp_owner(&name), Some(std::process::id()));
        assert_eq!(temp_owner("blob"), None);
        assert_eq!(temp_owner(".tmp-x"), None);
    }

    #[test]
    fn temp_path_removed_unless_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join(temp_name("a"));
        fs::create_dir(&a).unwrap();
        fs::write(a.join("f"), b"x").unwrap();
        drop(TempPath::new(a.clone()));
        assert!(!a.exists());

        let b = dir.path().join(temp_name("b"));
        fs::write(&b, b"x").unwrap();
        TempPath::new(b.clone())
            .persist(&dir.path().join("final"))
            .unwrap();
        assert!(dir.path().join("final").exists());
        assert_ne!(temp_name("x"), temp_name("x"));
    }
}
