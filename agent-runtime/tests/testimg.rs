//! The test rootfs around `rswarm-testimg` (no root needed).

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use rswarm_agent_runtime::testing::{build_test_rootfs, shared_libraries, test_rootfs_tar};

#[test]
fn rootfs_and_tar_contain_the_program_and_its_libraries() {
    let testimg = PathBuf::from(env!("CARGO_BIN_EXE_rswarm-testimg"));
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("rootfs");
    build_test_rootfs(&root, &testimg).unwrap();
    assert!(root.join("bin/testimg").is_file());
    let libs = shared_libraries(&testimg).unwrap();
    assert!(!libs.is_empty(), "a std Rust binary links libc");
    for lib in libs {
        assert!(
            root.join(lib.strip_prefix("/").unwrap()).is_file(),
            "{lib:?}"
        );
    }
    for d in ["proc", "sys", "dev", "etc", "tmp"] {
        assert!(root.join(d).is_dir(), "{d}");
    }
    let out = Command::new(root.join("bin/testimg"))
        .args(["echo", "hi", "there"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"hi there\n");
    let out = Command::new(root.join("bin/testimg"))
        .args(["exit", "7"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));

    let tar_path = tmp.path().join("rootfs.tar");
    test_rootfs_tar(&tar_path, &testimg).unwrap();
    let mut archive = tar::Archive::new(fs::File::open(&tar_path).unwrap());
    let names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.trim_start_matches("./") == "bin/testimg"),
        "{names:?}"
    );
    assert!(!tmp.path().join("rootfs.staging").exists());
}
