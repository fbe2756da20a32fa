//! Test support: a minimal root filesystem around the `rswarm-testimg` program.
//!
//! The rootfs holds the program at `/bin/testimg`, the shared libraries it links
//! (found with `ldd`), the directories a container mounts over, and a small
//! `/etc/passwd` and `/etc/group` with a `user` of uid 1000.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the test program lives inside the test rootfs.
pub const TESTIMG_PATH: &str = "/bin/testimg";

/// Creates (or completes) a rootfs in `dir` around the `testimg` binary.
pub fn build_test_rootfs(dir: &Path, testimg: &Path) -> io::Result<()> {
    for d in [
        "bin",
        "proc",
        "sys",
        "dev",
        "etc",
        "tmp",
        "root",
        "home/user",
    ] {
        fs::create_dir_all(dir.join(d))?;
    }
    copy_file(testimg, &dir.join(TESTIMG_PATH.trim_start_matches('/')))?;
    for lib in shared_libraries(testimg)? {
        let rel = lib.strip_prefix("/").unwrap_or(&lib);
        copy_file(&lib, &dir.join(rel))?;
    }
    fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/testimg\nuser:x:1000:1000:user:/home/user:/bin/testimg\n",
    )?;
    fs::write(dir.join("etc/group"), "root:x:0:\nuser:x:1000:\n")?;
    // Names resolve through the container's /etc/hosts, then its resolv.conf
    // (glibc 2.34 and later carry both in libc itself).
    fs::write(dir.join("etc/nsswitch.conf"), "hosts: files dns\n")?;
    Ok(())
}

/// Writes the same rootfs as [`build_test_rootfs`] as an uncompressed tar at `out`.
pub fn test_rootfs_tar(out: &Path, testimg: &Path) -> io::Result<()> {
    let staging = out.with_extension("staging");
    if staging.exists() {
        fs::remove_dir_all(&staging)?;
    }
    build_test_rootfs(&staging, testimg)?;
    let result = (|| {
        let mut builder = tar::Builder::new(fs::File::create(out)?);
        builder.follow_symlinks(false);
        builder.append_dir_all(".", &staging)?;
        builder.into_inner()?.sync_all()
    })();
    fs::remove_dir_all(&staging)?;
    result
}

/// Whether the current process runs as root (the real runtime tests need it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The shared libraries (and the dynamic loader) `binary` needs, as absolute paths.
pub fn shared_libraries(binary: &Path) -> io::Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(binary).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // A static binary makes ldd fail with "not a dynamic executable".
        let err = String::from_utf8_lossy(&out.stderr);
        if text.contains("not a dynamic executable") || err.contains("not a dynamic executable") {
            return Ok(Vec::new());
        }
        return Err(io::Error::other(format!(
            "ldd {} failed: {err}",
            binary.display()
        )));
    }
    Ok(parse_ldd(&text))
}

/// Picks the absolute library paths out of `ldd` output, e.g.
/// `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` and
/// `/lib64/ld-linux-x86-64.so.2 (0x...)`; `linux-vdso.so.1` has no file.
fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

fn copy_file(from: &Path, to: &Path) -> io::Result<()> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)?;
    }
    // fs::copy follows symlinks (libc.so.6 -> libc-2.x.so), so the target is a
    // regular file at the path the loader asks for.
    fs::copy(from, to).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_yields_library_and_loader_paths() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(text),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }
}
