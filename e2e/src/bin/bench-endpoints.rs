//! Endpoint propagation benchmark: how soon a change to the cluster's endpoint
//! table is served by every node's proxy. One manager and two workers (release
//! build, container executor, so every node has a task network and runs the
//! routing mesh) in network namespaces.
//!
//! Each round publishes a port with a service of no replicas (every node's proxy
//! starts listening on it) and removes the service again (every proxy stops
//! listening). The client namespace probes the port on every node every
//! millisecond. Per change, the slowest node counts, timed from the command's
//! start (the CLI and the Raft commit included: an upper bound) and from its
//! return (after the commit: what the change took to reach the proxies).
//! Target from the issue: every node's proxy within 100 ms.
//!
//! `cargo run --release -p rswarm-e2e --bin bench-endpoints [-- --rounds N]`
//! (default 20). Needs root.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rswarm_e2e::Cluster;
use rswarm_e2e::client::ClientRuntime;
use tokio::net::TcpStream;

/// Target from the issue.
const TARGET: Duration = Duration::from_millis(100);
/// A probe that has not seen the change after this fails the benchmark.
const GIVE_UP: Duration = Duration::from_secs(10);
/// Between two connects of one probe.
const PROBE_EVERY: Duration = Duration::from_millis(1);
/// One connect attempt (on the local segment an answer takes microseconds).
const CONNECT_LIMIT: Duration = Duration::from_millis(200);
/// The published port.
const PORT: u16 = 8300;
const SERVICE: &str = "probe";

/// Command-line settings.
struct Settings {
    rounds: usize,
}

fn parse_args() -> anyhow::Result<Settings> {
    let mut settings = Settings { rounds: 20 };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--rounds" => settings.rounds = value.parse()?,
            other => bail!("unknown flag {other}: expected --rounds N"),
        }
    }
    if settings.rounds == 0 {
        bail!("--rounds must be above zero");
    }
    Ok(settings)
}

fn main() -> ExitCode {
    rswarm_e2e::bench::main(
        "bench-endpoints",
        parse_args,
        |_settings: &Settings| {
            eprintln!("starting 1 manager and 2 workers...");
            Cluster::start(1, 2)
        },
        run,
    )
}

/// Whether the port should be listening or refusing once the change is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Listening,
    Refused,
}

/// Probes `addr` until it is as `want`ed; when that was first seen.
async fn probe(addr: SocketAddr, want: Want) -> anyhow::Result<Instant> {
    let start = Instant::now();
    loop {
        let outcome = tokio::time::timeout(CONNECT_LIMIT, TcpStream::connect(addr)).await;
        let seen = Instant::now();
        match (want, outcome) {
            (Want::Listening, Ok(Ok(_))) => return Ok(seen),
            (Want::Refused, Ok(Err(err)))
                if err.kind() == std::io::ErrorKind::ConnectionRefused =>
            {
                return Ok(seen);
            }
            _ if seen - start > GIVE_UP => bail!("{addr} not {want:?} after {GIVE_UP:?}"),
            _ => tokio::time::sleep(PROBE_EVERY).await,
        }
    }
}

/// The slowest node's times for one change: from the command's start and from
/// its return.
#[derive(Debug, Clone, Copy)]
struct Change {
    from_start: Duration,
    from_return: Duration,
}

/// Runs `command` through the manager while every node is probed for `want`.
fn timed_change(
    cluster: &Cluster,
    client: &ClientRuntime,
    command: &[&str],
    want: Want,
) -> anyhow::Result<Change> {
    let probes: Vec<_> = cluster
        .nodes()
        .iter()
        .map(|node| {
            let addr = SocketAddr::new(node.addr.ip(), PORT);
            client.handle().spawn(probe(addr, want))
        })
        .collect();
    let start = Instant::now();
    cluster.node(0).cli_ok(command)?;
    let returned = Instant::now();
    let mut slowest = start;
    for probe in probes {
        let seen = client.run(probe)?.context("a probe panicked")??;
        slowest = slowest.max(seen);
    }
    Ok(Change {
        from_start: slowest - start,
        from_return: slowest.saturating_duration_since(returned),
    })
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn summary(label: &str, changes: &[Change]) -> String {
    let mut from_start: Vec<Duration> = changes.iter().map(|c| c.from_start).collect();
    let mut from_return: Vec<Duration> = changes.iter().map(|c| c.from_return).collect();
    from_start.sort();
    from_return.sort();
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    let worst = *from_start.last().unwrap_or(&Duration::ZERO);
    format!(
        "{label:<22} from the command's start: p50 {} p99 {} max {}; after it returned: p50 {} p99 {} max {}; \
         max/target {:.2}x",
        ms(percentile(&from_start, 50)),
        ms(percentile(&from_start, 99)),
        ms(worst),
        ms(percentile(&from_return, 50)),
        ms(percentile(&from_return, 99)),
        ms(*from_return.last().unwrap_or(&Duration::ZERO)),
        worst.as_secs_f64() / TARGET.as_secs_f64(),
    )
}

fn run(cluster: &mut Cluster, settings: &Settings) -> anyhow::Result<String> {
    let client = cluster.client_runtime(1)?;
    let published = format!("{PORT}:80");
    let create = [
        "service",
        "create",
        "--detach",
        "--name",
        SERVICE,
        "--replicas",
        "0",
        "--publish",
        &published,
        "probe:none",
    ];
    let remove = ["service", "rm", SERVICE];
    // The first table reaches the nodes' proxies once their endpoint streams are
    // open: one change unmeasured.
    timed_change(cluster, &client, &create, Want::Listening)?;
    timed_change(cluster, &client, &remove, Want::Refused)?;
    let mut published_changes = Vec::new();
    let mut removed_changes = Vec::new();
    for round in 0..settings.rounds {
        let up = timed_change(cluster, &client, &create, Want::Listening)?;
        let down = timed_change(cluster, &client, &remove, Want::Refused)?;
        eprintln!(
            "round {}: published on every node {:.1} ms ({:.1} ms after the command), removed {:.1} ms ({:.1} ms)",
            round + 1,
            up.from_start.as_secs_f64() * 1e3,
            up.from_return.as_secs_f64() * 1e3,
            down.from_start.as_secs_f64() * 1e3,
            down.from_return.as_secs_f64() * 1e3,
        );
        published_changes.push(up);
        removed_changes.push(down);
    }
    let all: Vec<Change> = published_changes
        .iter()
        .chain(&removed_changes)
        .copied()
        .collect();
    let worst = all.iter().map(|c| c.from_start).max().unwrap_or_default();
    Ok(format!(
        "endpoint propagation: {} nodes, {} rounds, slowest node per change\n{}\n{}\ntarget (every node within {} ms): {}",
        cluster.nodes().len(),
        settings.rounds,
        summary("port published", &published_changes),
        summary("service removed", &removed_changes),
        TARGET.as_millis(),
        if worst <= TARGET { "met" } else { "NOT met" },
    ))
}
