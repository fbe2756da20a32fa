//! Removed containers' directories: renamed out of the way at once, deleted in the
//! background.

use std::path::{Path, PathBuf};

use super::ContainerError;
use super::runtime::io_err;

/// Where removed containers' directories wait to be deleted, under the root.
pub(super) const TRASH: &str = "trash";

/// Takes a container directory out of the way at once (one rename) and deletes
/// it in the background: deleting an upper layer file by file can take tens of
/// milliseconds on a busy disk, and nothing waits for it. What a crash leaves in
/// the trash is deleted when the next runtime opens the root.
pub(super) fn discard(dir: &Path, trash: &Path) -> Result<(), ContainerError> {
    std::fs::create_dir_all(trash).map_err(io_err("create", trash))?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = dir
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let target = trash.join(format!("{name}.{stamp}"));
    match std::fs::rename(dir, &target) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("remove", dir)(e)),
    }
    std::thread::spawn(move || {
        if let Err(err) = std::fs::remove_dir_all(&target) {
            tracing::warn!(path = %target.display(), %err, "deleting a removed container's files failed");
        }
    });
    Ok(())
}

/// Deletes what earlier runtimes left in the trash, in the background.
pub(super) fn empty_trash(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root.join(TRASH)) else {
        return;
    };
    // Entry by entry: the trash directory itself stays for removals to come.
    let left: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    if !left.is_empty() {
        std::thread::spawn(move || {
            for path in left {
                let _ = std::fs::remove_dir_all(&path);
            }
        });
    }
}
