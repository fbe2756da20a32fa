use std::os::unix::fs::{FileTypeExt, MetadataExt};

use super::super::layerfs::{FsOp, RecordingFs};
use super::super::testutil::TarBuilder;
use super::*;

fn unpack(tar: &[u8]) -> (tempfile::TempDir, RecordingFs, Result<(), UnpackError>) {
    let dir = tempfile::tempdir().unwrap();
    let fs = RecordingFs::default();
    let res = unpack_tar(tar, dir.path(), &fs);
    (dir, fs, res)
}

fn refused(tar: &[u8], entry: &str, reason: &str) {
    let (_dir, _fs, res) = unpack(tar);
    let err = res.expect_err("layer should be refused");
    let msg = err.to_string();
    assert!(
        matches!(err, UnpackError::Refused { .. }),
        "not a refusal: {msg}"
    );
    assert!(
        msg.contains(&format!("{entry:?}")),
        "{msg} does not name {entry}"
    );
    assert!(msg.contains(reason), "{msg} does not say {reason}");
}

#[test]
fn unpacks_files_dirs_links_and_modes() {
    let tar = TarBuilder::new()
        .dir("./")
        .raw(EntryType::Directory, "usr/", None, 0o750, 0, 0, b"")
        .raw(EntryType::Regular, "usr/su", None, 0o4755, 0, 0, b"suid")
        .raw(
            EntryType::Regular,
            "home/u/f",
            None,
            0o600,
            1000,
            1001,
            b"mine",
        )
        .symlink("usr/link", "su")
        .symlink("abs", "/etc/passwd")
        .symlink("usr/up", "../home/u/f")
        .hardlink("usr/su2", "usr/su")
        .raw(EntryType::Fifo, "run/fifo", None, 0o640, 0, 0, b"")
        .finish();
    let (dir, fs, res) = unpack(&tar);
    res.unwrap();
    let root = dir.path();
    assert_eq!(fs::read(root.join("usr/su")).unwrap(), b"suid");
    let su = fs::metadata(root.join("usr/su")).unwrap();
    assert_eq!(su.mode() & 0o7777, 0o4755, "setuid kept");
    assert_eq!(su.mtime(), 1_700_000_000);
    assert_eq!(
        fs::metadata(root.join("usr")).unwrap().mode() & 0o7777,
        0o750
    );
    // Implicit parents get 0755.
    assert_eq!(
        fs::metadata(root.join("home/u")).unwrap().mode() & 0o7777,
        0o755
    );
    assert_eq!(
        fs::read_link(root.join("abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        fs::read_link(root.join("usr/link")).unwrap(),
        Path::new("su")
    );
    assert_eq!(
        fs::metadata(root.join("usr/su2")).unwrap().ino(),
        su.ino(),
        "hard link shares the inode"
    );
    assert!(
        fs::symlink_metadata(root.join("run/fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    let ops = fs.ops();
    assert!(
        ops.contains(&FsOp::Chown("home/u/f".into(), 1000, 1001)),
        "{ops:?}"
    );
    assert!(
        ops.contains(&FsOp::Chown("usr/link".into(), 0, 0)),
        "{ops:?}"
    );
}

#[test]
fn later_entries_replace_earlier_ones() {
    let tar = TarBuilder::new()
        .file("a", b"one")
        .file("a", b"two")
        .dir("d/")
        .file("d/x", b"x")
        .file("d", b"now a file")
        .symlink("s", "a")
        .dir("s/")
        .finish();
    let (dir, _fs, res) = unpack(&tar);
    res.unwrap();
    assert_eq!(fs::read(dir.path().join("a")).unwrap(), b"two");
    assert_eq!(fs::read(dir.path().join("d")).unwrap(), b"now a file");
    assert!(fs::symlink_metadata(dir.path().join("s")).unwrap().is_dir());
}

#[test]
fn whiteouts_become_overlay_intent() {
    let tar = TarBuilder::new()
        .dir("etc/")
        .file("etc/.wh.motd", b"")
        .file("var/cache/.wh..wh..opq", b"")
        .file(".wh.tmp", b"")
        .file("x/.wh..wh.plnk", b"")
        .finish();
    let (dir, fs, res) = unpack(&tar);
    res.unwrap();
    let ops: Vec<FsOp> = fs
        .ops()
        .into_iter()
        .filter(|op| !matches!(op, FsOp::Chown(..)))
        .collect();
    assert_eq!(
        ops,
        vec![
            FsOp::Whiteout("etc/motd".into()),
            FsOp::Opaque("var/cache".into()),
            FsOp::Whiteout("tmp".into()),
        ]
    );
    // No `.wh.` file itself lands in the layer.
    assert!(!dir.path().join("etc/.wh.motd").exists());
    assert!(!dir.path().join("var/cache/.wh..wh..opq").exists());
    assert!(dir.path().join("var/cache").is_dir());
}

#[test]
fn allowed_xattrs_only() {
    let tar = TarBuilder::new()
        .pax(&[
            ("SCHILY.xattr.security.capability", b"\x01\x02"),
            ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
        ])
        .file("bin/ping", b"elf")
        .finish();
    let (_dir, fs, res) = unpack(&tar);
    res.unwrap();
    let xattrs: Vec<FsOp> = fs
        .ops()
        .into_iter()
        .filter(|op| matches!(op, FsOp::Xattr(..)))
        .collect();
    assert_eq!(
        xattrs,
        vec![FsOp::Xattr(
            "bin/ping".into(),
            "security.capability".into(),
            vec![1, 2]
        )]
    );
}

#[test]
fn refuses_parent_components() {
    refused(
        &TarBuilder::new().file("../evil", b"x").finish(),
        "../evil",
        "\"..\" component",
    );
    refused(
        &TarBuilder::new().file("a/../../evil", b"x").finish(),
        "a/../../evil",
        "\"..\" component",
    );
}

#[test]
fn refuses_absolute_paths() {
    refused(
        &TarBuilder::new().file("/etc/passwd", b"x").finish(),
        "/etc/passwd",
        "absolute path",
    );
}

#[test]
fn refuses_paths_through_symlinks() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().to_string_lossy().into_owned();
    let tar = TarBuilder::new()
        .symlink("etc", &target)
        .file("etc/passwd", b"pwned")
        .finish();
    refused(&tar, "etc/passwd", "goes through the symlink \"etc\"");
    assert!(!outside.path().join("passwd").exists());
    // Also a relative symlink inside the layer is not followed.
    let tar = TarBuilder::new()
        .dir("real/")
        .symlink("alias", "real")
        .file("alias/f", b"x")
        .finish();
    refused(&tar, "alias/f", "symlink");
    // And whiteouts are no way around it.
    let tar = TarBuilder::new()
        .symlink("etc", "/etc")
        .file("etc/.wh.passwd", b"")
        .finish();
    refused(&tar, "etc/.wh.passwd", "symlink");
}

#[test]
fn refuses_escaping_symlinks() {
    refused(
        &TarBuilder::new().symlink("lib/x", "../../etc").finish(),
        "lib/x",
        "escapes the layer root",
    );
    refused(
        &TarBuilder::new().symlink("x", "..").finish(),
        "x",
        "escapes the layer root",
    );
    // Climbing back down inside the layer is fine.
    let (_d, _f, res) = unpack(&TarBuilder::new().symlink("a/b/c", "../../d/../e").finish());
    res.unwrap();
}

#[test]
fn refuses_escaping_hard_links() {
    refused(
        &TarBuilder::new().hardlink("x", "../outside").finish(),
        "x",
        "\"..\" component",
    );
    refused(
        &TarBuilder::new().hardlink("x", "/etc/passwd").finish(),
        "x",
        "absolute path",
    );
    refused(
        &TarBuilder::new().hardlink("x", "missing").finish(),
        "x",
        "not in the layer",
    );
    let tar = TarBuilder::new()
        .symlink("lnk", "/etc")
        .hardlink("x", "lnk/passwd")
        .finish();
    refused(&tar, "x", "goes through a symlink");
    // A hard link to a symlink moves its relative target: re-checked.
    let tar = TarBuilder::new()
        .symlink("a/b/up", "../../c")
        .hardlink("top", "a/b/up")
        .finish();
    refused(&tar, "top", "escape the layer root");
}

#[test]
fn refuses_device_nodes() {
    refused(
        &TarBuilder::new()
            .raw(EntryType::Char, "dev/mem", None, 0o600, 0, 0, b"")
            .finish(),
        "dev/mem",
        "device nodes",
    );
    refused(
        &TarBuilder::new()
            .raw(EntryType::Block, "dev/sda", None, 0o600, 0, 0, b"")
            .finish(),
        "dev/sda",
        "device nodes",
    );
}

#[test]
fn corrupt_archive_is_an_archive_error() {
    let mut tar = TarBuilder::new().file("a", b"hello").finish();
    tar[0..512].fill(0xff); // breaks the header checksum
    let (_d, _f, res) = unpack(&tar);
    assert!(matches!(res, Err(UnpackError::Archive(_))), "{res:?}");
}

#[test]
fn escape_check_is_lexical() {
    assert!(!escapes(Path::new("a/b"), Path::new("../../x")));
    assert!(escapes(Path::new("a/b"), Path::new("../../../x")));
    assert!(escapes(Path::new(""), Path::new("./..")));
    assert!(!escapes(Path::new(""), Path::new("/..")));
}
