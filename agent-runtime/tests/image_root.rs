//! Root-only checks of layer unpacking with the real privileged operations:
//! overlayfs whiteouts, opaque directories, ownership, setuid bits and file
//! capabilities, and an overlay mount of the unpacked layers. Skipped with a notice
//! when not run as root.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use rswarm_agent_runtime::image::ImageStore;
use tar::{EntryType, Header};

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

macro_rules! require_root {
    ($test:literal) => {
        if !is_root() {
            eprintln!("skipping {}::{}: needs root", module_path!(), $test);
            return;
        }
    };
}

/// Appends one entry with full control of owner and mode.
fn entry(
    b: &mut tar::Builder<Vec<u8>>,
    kind: EntryType,
    path: &str,
    link: Option<&str>,
    (mode, uid, gid): (u32, u64, u64),
    data: &[u8],
) {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_mtime(1_700_000_000);
    h.set_size(data.len() as u64);
    if let Some(link) = link {
        h.set_link_name(link).unwrap();
    }
    b.append_data(&mut h, path, data).unwrap();
}

/// A PAX header carrying `security.capability` (CAP_NET_RAW permitted, effective)
/// for the next entry.
fn capability_pax(b: &mut tar::Builder<Vec<u8>>) {
    let mut cap = Vec::new();
    cap.extend_from_slice(&(0x0200_0000u32 | 1).to_le_bytes()); // revision 2, effective
    cap.extend_from_slice(&(1u32 << 13).to_le_bytes()); // permitted: CAP_NET_RAW
    cap.extend_from_slice(&0u32.to_le_bytes());
    cap.extend_from_slice(&[0; 8]);
    let key = "SCHILY.xattr.security.capability";
    let body = key.len() + cap.len() + 3;
    let mut len = body + 2;
    while len.to_string().len() + body != len {
        len = len.to_string().len() + body;
    }
    let mut data = format!("{len} {key}=").into_bytes();
    data.extend_from_slice(&cap);
    data.push(b'\n');
    let mut h = Header::new_ustar();
    h.set_entry_type(EntryType::XHeader);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, "PaxHeader/ping", &data[..]).unwrap();
}

fn base_layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    entry(
        &mut b,
        EntryType::Directory,
        "etc",
        None,
        (0o755, 0, 0),
        b"",
    );
    entry(
        &mut b,
        EntryType::Regular,
        "etc/gone",
        None,
        (0o644, 0, 0),
        b"base",
    );
    entry(
        &mut b,
        EntryType::Regular,
        "etc/kept",
        None,
        (0o644, 0, 0),
        b"base",
    );
    entry(
        &mut b,
        EntryType::Directory,
        "var/cache",
        None,
        (0o755, 0, 0),
        b"",
    );
    entry(
        &mut b,
        EntryType::Regular,
        "var/cache/old",
        None,
        (0o644, 0, 0),
        b"old",
    );
    b.into_inner().unwrap()
}

fn top_layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    entry(
        &mut b,
        EntryType::Directory,
        "etc",
        None,
        (0o755, 0, 0),
        b"",
    );
    entry(
        &mut b,
        EntryType::Regular,
        "etc/.wh.gone",
        None,
        (0o644, 0, 0),
        b"",
    );
    entry(
        &mut b,
        EntryType::Directory,
        "var/cache",
        None,
        (0o755, 0, 0),
        b"",
    );
    entry(
        &mut b,
        EntryType::Regular,
        "var/cache/.wh..wh..opq",
        None,
        (0o644, 0, 0),
        b"",
    );
    entry(
        &mut b,
        EntryType::Regular,
        "var/cache/new",
        None,
        (0o644, 0, 0),
        b"new",
    );
    entry(
        &mut b,
        EntryType::Directory,
        "home/app",
        None,
        (0o750, 1000, 1001),
        b"",
    );
    entry(
        &mut b,
        EntryType::Regular,
        "home/app/tool",
        None,
        (0o4755, 1000, 1001),
        b"x",
    );
    entry(
        &mut b,
        EntryType::Symlink,
        "home/app/link",
        Some("tool"),
        (0o777, 1000, 1001),
        b"",
    );
    capability_pax(&mut b);
    entry(
        &mut b,
        EntryType::Regular,
        "bin/ping",
        None,
        (0o755, 0, 0),
        b"elf",
    );
    b.into_inner().unwrap()
}

/// Unmounts on drop, so a failing assertion leaves no mount behind.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 64];
    let n = rustix::fs::lgetxattr(path, name, &mut buf[..]).ok()?;
    buf.truncate(n);
    Some(buf)
}

#[test]
fn real_whiteouts_ownership_and_overlay() {
    require_root!("real_whiteouts_ownership_and_overlay");
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path().join("images")).unwrap();
    store.import(&base_layer()[..], Some("base")).unwrap();
    let top = store
        .import(&top_layer()[..], Some("top"))
        .unwrap()
        .remove(0);
    let base = store.resolve("base").unwrap().unwrap();
    let top_dir = store.lower_dirs(&top).unwrap().remove(0);
    let base_dir = store.lower_dirs(&base).unwrap().remove(0);

    let wh = fs::symlink_metadata(top_dir.join("etc/gone")).unwrap();
    assert!(wh.file_type().is_char_device(), "whiteout is a char device");
    assert_eq!(wh.rdev(), 0, "whiteout is device 0:0");
    assert!(!top_dir.join("etc/.wh.gone").exists());
    assert_eq!(
        xattr(&top_dir.join("var/cache"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );

    let home = fs::metadata(top_dir.join("home/app")).unwrap();
    assert_eq!(
        (home.uid(), home.gid(), home.mode() & 0o7777),
        (1000, 1001, 0o750)
    );
    let tool = fs::metadata(top_dir.join("home/app/tool")).unwrap();
    assert_eq!((tool.uid(), tool.gid()), (1000, 1001));
    assert_eq!(tool.mode() & 0o7777, 0o4755, "setuid survives the chown");
    let link = fs::symlink_metadata(top_dir.join("home/app/link")).unwrap();
    assert_eq!((link.uid(), link.gid()), (1000, 1001));
    let cap = xattr(&top_dir.join("bin/ping"), "security.capability").unwrap();
    assert_eq!(cap.len(), 20);

    // The layers work as overlay lower dirs: whiteout and opaque dir hide the base.
    let target = tmp.path().join("mnt");
    fs::create_dir(&target).unwrap();
    let lower = format!("lowerdir={}:{}", top_dir.display(), base_dir.display());
    let status = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &lower])
        .arg(&target)
        .status()
        .unwrap();
    assert!(status.success(), "overlay mount failed");
    let _mount = Mount(target.clone());
    assert!(!target.join("etc/gone").exists(), "whited out");
    assert_eq!(fs::read(target.join("etc/kept")).unwrap(), b"base");
    assert!(
        !target.join("var/cache/old").exists(),
        "opaque dir hides base"
    );
    assert_eq!(fs::read(target.join("var/cache/new")).unwrap(), b"new");
}

#[test]
fn device_layer_refused_as_root_too() {
    require_root!("device_layer_refused_as_root_too");
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(tmp.path().join("images")).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Char);
    h.set_mode(0o666);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(0);
    h.set_device_major(1).unwrap();
    h.set_device_minor(1).unwrap();
    b.append_data(&mut h, "dev/mem", &b""[..]).unwrap();
    let image = store
        .import(&b.into_inner().unwrap()[..], Some("dev"))
        .unwrap()
        .remove(0);
    let err = store.lower_dirs(&image).unwrap_err().to_string();
    assert!(
        err.contains("\"dev/mem\"") && err.contains("device nodes"),
        "{err}"
    );
    let layers = tmp.path().join("images/layers/sha256");
    assert_eq!(fs::read_dir(layers).unwrap().count(), 0);
}
