//! Container runtime benchmark: our runtime against `runc run`, in the same run, on
//! the same root filesystem (the test image: `rswarm-testimg` and its libraries).
//!
//! - Latency of one container's whole life — create, start, its command (`testimg
//!   exit 0`) exits, cleanup — as median and p99 over `--runs` containers, ours and
//!   runc's interleaved so both see the same machine load. Ours puts an overlay over
//!   the rootfs (as a one-layer image) and keeps its state in its root directory
//!   (`--root`, on disk like a node's data dir); runc uses the rootfs directly and
//!   keeps its state in /run/runc (tmpfs).
//! - Memory per running task: `--tasks` containers running `testimg sleep`, the
//!   shims' proportional set size (PSS, which shares the shim's code fairly) plus
//!   the growth of this process, which plays the worker (it holds the runtime).
//!
//! `cargo run --release -p rswarm-e2e --bin bench-runtime [-- --runs N --tasks N
//! --root DIR]`. Needs root and runc (`apt-get install -y runc`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use rswarm_agent_runtime::container::{ContainerConfig, Runtime};
use rswarm_agent_runtime::testing::{TESTIMG_PATH, build_test_rootfs};
use rswarm_e2e::binary::rswarm_binary;

/// Targets from the issue.
const LATENCY_TARGET: f64 = 0.5;
const MEMORY_TARGET: u64 = 1 << 20;
/// What a containerd shim takes per container (the figure).
const CONTAINERD_SHIM: u64 = 13 << 20;

struct Settings {
    runs: usize,
    tasks: usize,
    root: Option<PathBuf>,
}

fn parse() -> anyhow::Result<Settings> {
    let mut settings = Settings {
        runs: 100,
        tasks: 50,
        root: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--runs" => settings.runs = value()?.parse().context("--runs")?,
            "--tasks" => settings.tasks = value()?.parse().context("--tasks")?,
            "--root" => settings.root = Some(PathBuf::from(value()?)),
            other => bail!("unknown flag {other}; expected --runs N, --tasks N, --root DIR"),
        }
    }
    ensure!(
        settings.runs > 0 && settings.tasks > 0,
        "--runs and --tasks must be above 0"
    );
    Ok(settings)
}

fn main() -> ExitCode {
    if !rswarm_agent_runtime::testing::is_root() {
        eprintln!("bench-runtime: needs root (namespaces, cgroups, mounts)");
        return ExitCode::FAILURE;
    }
    let settings = match parse() {
        Ok(s) => s,
        Err(err) => {
            eprintln!("bench-runtime: {err:#}");
            return ExitCode::from(2);
        }
    };
    match run(&settings) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("bench-runtime: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Removes every container of the benchmark's runtime, also when it fails.
struct Cleanup<'a> {
    runtime: &'a Runtime,
    tokio: &'a tokio::runtime::Runtime,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self
            .tokio
            .block_on(self.runtime.cleanup_orphans(&HashSet::new()));
    }
}

fn run(settings: &Settings) -> anyhow::Result<String> {
    let runc = which("runc").context("runc is not installed: apt-get install -y runc")?;
    let rswarm = rswarm_binary()?;
    let shim = rswarm.with_file_name("rswarm-shim");
    let testimg = rswarm.with_file_name("rswarm-testimg");
    let work = match &settings.root {
        Some(dir) => tempfile::Builder::new()
            .prefix("bench-runtime.")
            .tempdir_in(dir)?,
        None => tempfile::Builder::new()
            .prefix("bench-runtime.")
            .tempdir_in("/var/tmp")?,
    };
    let rootfs = work.path().join("rootfs");
    build_test_rootfs(&rootfs, &testimg)?;
    let bundle = runc_bundle(&runc, work.path(), &rootfs)?;

    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let runtime = Runtime::new(work.path().join("runtime"), &shim)?;
    let _cleanup = Cleanup {
        runtime: &runtime,
        tokio: &tokio,
    };
    let config = |id: String, argv: &[&str]| {
        ContainerConfig::new(
            id,
            vec![rootfs.clone()],
            argv.iter().map(|a| a.to_string()).collect(),
        )
    };

    // Warm up both (page cache, binaries), then measure interleaved.
    let mut ours = Vec::with_capacity(settings.runs);
    let mut theirs = Vec::with_capacity(settings.runs);
    let mut phases: [Vec<Duration>; 4] = Default::default();
    for i in 0..settings.runs + 3 {
        let id = format!("bench-{i}");
        let started = Instant::now();
        let steps = tokio.block_on(async {
            let c = config(id.clone(), &[TESTIMG_PATH, "exit", "0"]);
            let t0 = Instant::now();
            runtime.create(&c).await?;
            let t1 = Instant::now();
            runtime.start(&id).await?;
            let t2 = Instant::now();
            let exit = runtime.wait(&id).await?;
            let t3 = Instant::now();
            runtime.remove(&id).await?;
            let t4 = Instant::now();
            ensure!(exit.code == 0, "our container exited with {exit:?}");
            anyhow::Ok([t1 - t0, t2 - t1, t3 - t2, t4 - t3])
        })?;
        let own = started.elapsed();
        if i >= 3 {
            for (all, step) in phases.iter_mut().zip(steps) {
                all.push(step);
            }
        }
        let started = Instant::now();
        let status = Command::new(&runc)
            .args(["run", "--bundle"])
            .arg(&bundle)
            .arg(format!("runc-bench-{}-{i}", std::process::id()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()?;
        let runc_time = started.elapsed();
        ensure!(status.success(), "runc run failed: {status}");
        if i >= 3 {
            ours.push(own);
            theirs.push(runc_time);
        }
    }
    let (own_median, own_p99) = (percentile(&mut ours, 50.0), percentile(&mut ours, 99.0));
    let (runc_median, runc_p99) = (percentile(&mut theirs, 50.0), percentile(&mut theirs, 99.0));
    let ratio = own_median.as_secs_f64() / runc_median.as_secs_f64();
    let [create, start, wait, remove] = phases.map(|mut p| ms(percentile(&mut p, 50.0)));

    // Memory per running task.
    let before = own_rss()?;
    for i in 0..settings.tasks {
        let id = format!("sleeper-{i}");
        tokio.block_on(async {
            runtime
                .create(&config(id.clone(), &[TESTIMG_PATH, "sleep", "600"]))
                .await?;
            runtime.start(&id).await?;
            anyhow::Ok(())
        })?;
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = own_rss()?;
    let shims = shim_pids(&shim, work.path())?;
    ensure!(
        shims.len() == settings.tasks,
        "{} shims run for {} tasks",
        shims.len(),
        settings.tasks
    );
    let (mut pss, mut private) = (0u64, 0u64);
    for pid in &shims {
        let (p, u) = smaps_rollup(*pid)?;
        pss += p;
        private += u;
    }
    let tasks = settings.tasks as u64;
    let worker_growth = after.saturating_sub(before);
    let per_task = (pss + worker_growth) / tasks;

    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    Ok(format!(
        "container create+start+exit+cleanup ({} runs each, interleaved)\n\
         \x20 rswarm runtime  median {:>7.2} ms   p99 {:>7.2} ms   (overlay rootfs, state in {})\n\
         \x20   steps (median): create {create:.2} ms, start {start:.2} ms, run to exit {wait:.2} ms, remove {remove:.2} ms\n\
         \x20 runc run        median {:>7.2} ms   p99 {:>7.2} ms   (plain rootfs, state in /run/runc)\n\
         \x20 ratio (median)  {ratio:.2}x runc   target <= {LATENCY_TARGET}x: {}\n\
         memory per running task ({} containers running `testimg sleep`)\n\
         \x20 shim PSS        {:>7.1} KiB per task (private {:.1} KiB)\n\
         \x20 worker growth   {:>7.1} KiB per task\n\
         \x20 total           {:>7.1} KiB per task   target <= 1024 KiB: {}   containerd shim ~{} KiB: {:.0}x less",
        settings.runs,
        ms(own_median),
        ms(own_p99),
        work.path().display(),
        ms(runc_median),
        ms(runc_p99),
        verdict(ratio <= LATENCY_TARGET),
        settings.tasks,
        pss as f64 / tasks as f64 / 1024.0,
        private as f64 / tasks as f64 / 1024.0,
        worker_growth as f64 / tasks as f64 / 1024.0,
        per_task as f64 / 1024.0,
        verdict(per_task <= MEMORY_TARGET),
        CONTAINERD_SHIM / 1024,
        CONTAINERD_SHIM as f64 / per_task.max(1) as f64,
    ))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `p`th percentile (nearest rank) of `samples`.
fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

/// An OCI bundle for runc around `rootfs`, running `testimg exit 0`.
fn runc_bundle(runc: &Path, work: &Path, rootfs: &Path) -> anyhow::Result<PathBuf> {
    let bundle = work.join("bundle");
    std::fs::create_dir_all(&bundle)?;
    let status = Command::new(runc)
        .arg("spec")
        .arg("--bundle")
        .arg(&bundle)
        .status()?;
    ensure!(status.success(), "runc spec failed: {status}");
    let path = bundle.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!([TESTIMG_PATH, "exit", "0"]);
    spec["root"]["path"] = rootfs.display().to_string().into();
    spec["root"]["readonly"] = true.into();
    std::fs::write(&path, serde_json::to_vec_pretty(&spec)?)?;
    Ok(bundle)
}

/// This process's resident set size in bytes.
fn own_rss() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/self/status")?;
    Ok(kib * 1024)
}

/// Pids of the shims running containers under `root`.
fn shim_pids(shim: &Path, root: &Path) -> anyhow::Result<Vec<u32>> {
    let shim = std::fs::canonicalize(shim)?;
    let root = root.display().to_string();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let exe = std::fs::read_link(entry.path().join("exe")).ok();
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        // Stage 2 execs the container's command, so only shims still run the shim.
        if exe.as_deref() == Some(shim.as_path()) && cmdline.contains(&root) {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// (PSS, private) bytes of a process.
fn smaps_rollup(pid: u32) -> anyhow::Result<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    Ok((
        field("Pss:"),
        field("Private_Clean:") + field("Private_Dirty:"),
    ))
}
