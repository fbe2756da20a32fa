//! Finding (and building) the `rswarm` binary the nodes run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, bail};

/// Environment variable naming an `rswarm` binary to use instead of building one.
pub const BIN_ENV: &str = "RSWARM_BIN";

/// The `rswarm` binary: `$RSWARM_BIN` if set, otherwise `<target>/<profile>/rswarm`
/// for the profile this program was built with, (re)built once per process with
/// `cargo build -p rswarm -p rswarm-agent-runtime --bins --features
/// rswarm/fake-executor` so that tests never run a stale daemon (cargo does not build
/// another package's binary for a test of this one), the container shim and the test
/// image program sit next to it, and nodes can simulate tasks (`--executor fake`, see [`crate::cluster::FAKE_EXECUTOR`]).
pub fn rswarm_binary() -> anyhow::Result<PathBuf> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BINARY
        .get_or_init(|| locate().map_err(|err| format!("{err:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

/// Prefixes of the variables cargo sets for the package whose test or binary runs.
const PACKAGE_VARS: &[&str] = &[
    "CARGO_PKG_",
    "CARGO_MANIFEST_",
    "CARGO_CRATE_",
    "CARGO_BIN_",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
    "OUT_DIR",
];

fn locate() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(BIN_ENV) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("{BIN_ENV}={} is not a file", path.display());
        }
        return Ok(path);
    }
    let profile_dir = profile_dir()?;
    build(&profile_dir)?;
    let binary = profile_dir.join("rswarm");
    if !binary.is_file() {
        bail!(
            "cargo build -p rswarm --features fake-executor succeeded but {} does not exist",
            binary.display()
        );
    }
    Ok(binary)
}

/// `<target>/<profile>` of the running executable: tests live in
/// `<target>/<profile>/deps/`, binaries in `<target>/<profile>/`.
fn profile_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the running executable")?;
    let mut dir = exe
        .parent()
        .with_context(|| format!("{} has no parent directory", exe.display()))?;
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir = dir
            .parent()
            .with_context(|| format!("{} has no parent directory", dir.display()))?;
    }
    Ok(dir.to_path_buf())
}

fn build(profile_dir: &Path) -> anyhow::Result<()> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the e2e crate is not inside the workspace")?;
    let target_dir = profile_dir
        .parent()
        .with_context(|| format!("{} has no parent directory", profile_dir.display()))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .arg("--quiet")
        .arg("-p")
        .arg("rswarm")
        .arg("-p")
        .arg("rswarm-agent-runtime")
        .arg("--bins")
        .arg("--features")
        .arg("rswarm/fake-executor")
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    // Cargo describes the running test's own package in the environment; build
    // scripts that watch those variables would otherwise see them change between a
    // build from the shell and one from here, and rebuild everything each time.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if PACKAGE_VARS.iter().any(|prefix| name.starts_with(prefix)) {
            command.env_remove(name.as_ref());
        }
    }
    if profile_dir
        .file_name()
        .is_some_and(|name| name == "release")
    {
        command.arg("--release");
    }
    let status = command
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}
