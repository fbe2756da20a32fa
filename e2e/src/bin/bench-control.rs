//! Control-plane benchmark: three managers (release build) in network namespaces.
//!
//! Measures Raft-replicated writes per second and their latency with 1 and 64
//! concurrent gRPC clients spread over the three managers (followers forward to the
//! leader), then leader failover over 20 rounds: kill -9 of the leader until the next
//! acknowledged write, the killed manager restarted with `rswarm daemon` and back in
//! the group before the next round.
//!
//! `cargo run --release -p rswarm-e2e --bin bench-control [-- --seconds S --rounds N
//! --clients N,N --election-min-ms MS --election-max-ms MS --heartbeat-ms MS]`.
//! Needs root.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rswarm_e2e::{ClientRuntime, Cluster, wait_until};
use rswarm_proto::api::control_client::ControlClient;
use rswarm_proto::api::service_spec::Mode;
use rswarm_proto::api::{
    ContainerSpec, CreateServiceRequest, ReplicatedService, ServiceSpec, TaskSpec,
};
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use tonic::transport::Channel;

/// Number of managers.
const MANAGERS: usize = 3;
/// Targets from the issue.
const TARGET_WRITES_PER_SEC: f64 = 5_000.0;
const TARGET_FAILOVER: Duration = Duration::from_secs(1);
/// Docker Swarm's failover with its default Raft settings (10 ticks of 1 s).
const SWARM_FAILOVER: Duration = Duration::from_secs(10);
/// During failover a new attempt starts this often, on the next surviving manager.
const RETRY_EVERY: Duration = Duration::from_millis(15);
/// One failover attempt is abandoned after this (a follower may hold a request
/// while it looks for the new leader).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// A failover round that has not recovered after this fails the benchmark.
const FAILOVER_GIVE_UP: Duration = Duration::from_secs(30);
/// How long a restarted manager may take to be back in the group.
const REJOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// The whole benchmark stops with an error past this.
const BUDGET: Duration = Duration::from_secs(15 * 60);

/// Command-line settings.
struct Settings {
    /// Length of each throughput phase.
    phase: Duration,
    /// Failover rounds.
    rounds: usize,
    /// Client counts of the throughput phases.
    clients: Vec<usize>,
    /// Flags passed to `init`/`join` (Raft timing).
    node_flags: Vec<String>,
}

fn parse_args() -> anyhow::Result<Settings> {
    let mut settings = Settings {
        phase: Duration::from_secs(5),
        rounds: 20,
        clients: vec![1, 64],
        node_flags: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--seconds" => settings.phase = Duration::try_from_secs_f64(value.parse()?)?,
            "--rounds" => settings.rounds = value.parse()?,
            "--clients" => {
                settings.clients = value.split(',').map(str::parse).collect::<Result<_, _>>()?;
            }
            "--heartbeat-ms" | "--election-min-ms" | "--election-max-ms" => {
                settings.node_flags.extend([flag, value]);
            }
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(settings)
}

fn main() -> ExitCode {
    rswarm_e2e::bench::main(
        "bench-control",
        parse_args,
        |settings: &Settings| {
            eprintln!("starting {MANAGERS} managers...");
            Cluster::start_with(MANAGERS, 0, &settings.node_flags)
        },
        run,
    )
}

/// Results of one throughput phase.
struct Phase {
    /// Concurrent clients.
    clients: usize,
    /// Acknowledged writes.
    writes: u64,
    /// Failed writes, and the first failure.
    errors: u64,
    first_error: Option<String>,
    /// Time from the start signal to the last client finishing.
    elapsed: Duration,
    /// Latency of every acknowledged write, sorted.
    latencies: Vec<Duration>,
}

fn run(cluster: &mut Cluster, settings: &Settings) -> anyhow::Result<String> {
    let started = Instant::now();
    let runtime = cluster.client_runtime(2)?;
    let admin = cluster.node(0).admin_dir();
    let addrs: Vec<String> = (0..MANAGERS)
        .map(|i| cluster.node(i).addr.to_string())
        .collect();

    let mut phases = Vec::new();
    for (number, &clients) in settings.clients.iter().enumerate() {
        eprintln!(
            "writes with {clients} client(s) for {:?}...",
            settings.phase
        );
        let (addrs, admin) = (addrs.clone(), admin.clone());
        let phase = settings.phase;
        let result = runtime
            .run(async move { throughput(addrs, admin, clients, phase, number).await })??;
        phases.push(result);
    }

    let failovers = failover_rounds(cluster, &runtime, &addrs, &admin, settings.rounds, started)?;
    Ok(report(&phases, &failovers, settings))
}

/// A service that schedules nothing (0 replicas), so that a write is one Raft entry.
fn spec(name: String) -> ServiceSpec {
    ServiceSpec {
        name,
        task: Some(TaskSpec {
            container: Some(ContainerSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        mode: Some(Mode::Replicated(ReplicatedService { replicas: 0 })),
        ..Default::default()
    }
}

async fn create(client: &mut ControlClient<Channel>, name: String) -> Result<(), tonic::Status> {
    client
        .create_service(CreateServiceRequest {
            spec: Some(spec(name)),
        })
        .await
        .map(drop)
}

/// `clients` clients, client `i` on manager `i % 3` with its own connection, each
/// writing in a loop for `duration` after a warm-up write and a common start.
async fn throughput(
    addrs: Vec<String>,
    admin: PathBuf,
    clients: usize,
    duration: Duration,
    phase: usize,
) -> anyhow::Result<Phase> {
    let barrier = Arc::new(Barrier::new(clients + 1));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for id in 0..clients {
        let channel = rswarm_proto::tls::admin_channel(&addrs[id % addrs.len()], &admin)?;
        let (barrier, errors) = (Arc::clone(&barrier), Arc::clone(&errors));
        tasks.spawn(async move {
            let mut client = ControlClient::new(channel);
            // Connects (TCP, TLS) before the clock starts.
            let warm = create(&mut client, format!("w{phase}-{id}")).await;
            barrier.wait().await;
            warm.map_err(|s| format!("warm-up write failed: {s}"))?;
            let deadline = Instant::now() + duration;
            let mut latencies = Vec::new();
            let mut first_error = None;
            let mut seq = 0u64;
            while Instant::now() < deadline {
                seq += 1;
                let sent = Instant::now();
                match create(&mut client, format!("b{phase}-{id}-{seq}")).await {
                    Ok(()) => latencies.push(sent.elapsed()),
                    Err(status) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.get_or_insert_with(|| status.to_string());
                    }
                }
            }
            Ok::<_, String>((latencies, first_error))
        });
    }
    barrier.wait().await;
    let start = Instant::now();
    let mut latencies = Vec::new();
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let (mut mine, error) = joined?.map_err(anyhow::Error::msg)?;
        latencies.append(&mut mine);
        first_error = first_error.or(error);
    }
    let elapsed = start.elapsed();
    latencies.sort();
    Ok(Phase {
        clients,
        writes: latencies.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        first_error,
        elapsed,
        latencies,
    })
}

/// One failover round's outcome.
struct Failover {
    /// From SIGKILL of the leader to the first acknowledged write.
    recovered: Duration,
    /// Attempts that failed or timed out before that.
    failed_attempts: u64,
}

fn failover_rounds(
    cluster: &mut Cluster,
    runtime: &ClientRuntime,
    addrs: &[String],
    admin: &std::path::Path,
    rounds: usize,
    started: Instant,
) -> anyhow::Result<Vec<Failover>> {
    // One channel per manager for the whole benchmark: tonic reconnects by itself
    // once a restarted manager listens again.
    let channels = {
        let (addrs, admin) = (addrs.to_vec(), admin.to_path_buf());
        runtime.run(async move {
            addrs
                .iter()
                .map(|addr| rswarm_proto::tls::admin_channel(addr, &admin))
                .collect::<Result<Vec<_>, _>>()
        })??
    };
    let mut results = Vec::new();
    for round in 0..rounds {
        if started.elapsed() > BUDGET {
            bail!("over the time budget of {BUDGET:?} after {round} failover rounds");
        }
        let leader = cluster.wait_leader(&[], REJOIN_TIMEOUT)?;
        let survivors: Vec<Channel> = (0..MANAGERS)
            .filter(|&i| i != leader)
            .map(|i| channels[i].clone())
            .collect();
        cluster
            .node_mut(leader)
            .log_note(&format!("benchmark round {round}: SIGKILL"));
        cluster.node_mut(leader).kill9()?;
        let killed = Instant::now();
        let failover = runtime.run(first_ack(survivors, killed, round))??;
        cluster.node_mut(leader).start_daemon()?;
        let restarted = Instant::now();
        wait_rejoined(cluster, leader)?;
        eprintln!(
            "round {:>2}: {} killed, write acknowledged after {:>7.1} ms ({} failed attempts); \
             restarted and caught up in {:>7.1} ms",
            round + 1,
            cluster.node(leader).name,
            ms(failover.recovered),
            failover.failed_attempts,
            ms(restarted.elapsed()),
        );
        results.push(failover);
    }
    Ok(results)
}

/// Starts a write attempt every [`RETRY_EVERY`] on the survivors in turn, without
/// waiting for earlier ones, until one is acknowledged.
async fn first_ack(
    survivors: Vec<Channel>,
    killed: Instant,
    round: usize,
) -> anyhow::Result<Failover> {
    let mut attempts = JoinSet::new();
    let mut tick = tokio::time::interval(RETRY_EVERY);
    let mut started = 0usize;
    let mut failed = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if killed.elapsed() > FAILOVER_GIVE_UP {
                    bail!("no write acknowledged {FAILOVER_GIVE_UP:?} after killing the leader (round {round})");
                }
                let mut client = ControlClient::new(survivors[started % survivors.len()].clone());
                let name = format!("f{round}-{started}");
                started += 1;
                attempts.spawn(async move {
                    tokio::time::timeout(ATTEMPT_TIMEOUT, create(&mut client, name)).await
                });
            }
            Some(joined) = attempts.join_next() => {
                if matches!(joined, Ok(Ok(Ok(())))) {
                    return Ok(Failover { recovered: killed.elapsed(), failed_attempts: failed });
                }
                failed += 1;
            }
        }
    }
}

/// Waits until the restarted manager `index` is back in the group: the leader sees
/// every manager reachable, and the restarted one follows the leader's term and has
/// applied everything the leader had applied once it was back. (Reachable alone is
/// not enough: a manager that receives no entries yet times out and disrupts the
/// next round with an election of its own.)
fn wait_rejoined(cluster: &mut Cluster, index: usize) -> anyhow::Result<()> {
    let name = cluster.node(index).name.clone();
    wait_until(
        REJOIN_TIMEOUT,
        &format!("{name} to answer with a leader"),
        || {
            let status = cluster.status(index).map_err(|e| format!("{e:#}"))?;
            rswarm_e2e::leader_addr(&status)
                .map(drop)
                .ok_or_else(|| format!("{name} knows no leader: {status}"))
        },
    )?;
    let leader = cluster.leader()?;
    let leader_status = cluster.wait_managers(leader, MANAGERS, REJOIN_TIMEOUT)?;
    let target = leader_status["last_applied"].as_u64().unwrap_or(0);
    wait_until(
        REJOIN_TIMEOUT,
        &format!("{name} to catch up to entry {target}"),
        || {
            let status = cluster.status(index).map_err(|e| format!("{e:#}"))?;
            let applied = status["last_applied"].as_u64().unwrap_or(0);
            // The leader it follows must agree (same term), wherever elections went.
            let leader = rswarm_e2e::leader_addr(&status)
                .and_then(|addr| cluster.index_of(&addr))
                .ok_or_else(|| format!("{name} knows no leader: {status}"))?;
            let leader_status = cluster.status(leader).map_err(|e| format!("{e:#}"))?;
            if applied >= target && leader_status["raft_term"] == status["raft_term"] {
                Ok(())
            } else {
                Err(format!("{name}: {status}; leader: {leader_status}"))
            }
        },
    )?;
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `q` quantile (nearest rank) of sorted `values`.
fn quantile(values: &[Duration], q: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

fn report(phases: &[Phase], failovers: &[Failover], settings: &Settings) -> String {
    let mut out = String::new();
    let flags = if settings.node_flags.is_empty() {
        "default Raft timing".to_string()
    } else {
        settings.node_flags.join(" ")
    };
    out += &format!(
        "\nrswarm control-plane benchmark: {MANAGERS} managers in network namespaces, release build, {flags}\n\n"
    );
    out +=
        "Writes (CreateService, 0 replicas; clients spread over all managers, followers forward)\n";
    out += &format!(
        "{:>8} {:>9} {:>7} {:>10} {:>10} {:>10} {:>10}\n",
        "clients", "writes", "errors", "writes/s", "p50 ms", "p99 ms", "max ms"
    );
    for p in phases {
        let rate = p.writes as f64 / p.elapsed.as_secs_f64().max(1e-9);
        out += &format!(
            "{:>8} {:>9} {:>7} {:>10.0} {:>10.2} {:>10.2} {:>10.2}\n",
            p.clients,
            p.writes,
            p.errors,
            rate,
            ms(quantile(&p.latencies, 0.50)),
            ms(quantile(&p.latencies, 0.99)),
            ms(p.latencies.last().copied().unwrap_or_default()),
        );
        if let Some(err) = &p.first_error {
            out += &format!("         first error: {err}\n");
        }
    }
    let mut recovered: Vec<Duration> = failovers.iter().map(|f| f.recovered).collect();
    recovered.sort();
    let failover_p99 = quantile(&recovered, 0.99);
    out += &format!(
        "\nLeader failover: kill -9 of the leader -> first acknowledged write ({} rounds)\n",
        recovered.len()
    );
    out += &format!(
        "{:>10} {:>10} {:>10} {:>10} {:>16}\n",
        "min ms", "p50 ms", "p99 ms", "max ms", "failed attempts"
    );
    out += &format!(
        "{:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>16}\n",
        ms(recovered.first().copied().unwrap_or_default()),
        ms(quantile(&recovered, 0.50)),
        ms(failover_p99),
        ms(recovered.last().copied().unwrap_or_default()),
        failovers.iter().map(|f| f.failed_attempts).sum::<u64>(),
    );

    out += "\nTargets (ratio > 1 is better than the target)\n";
    out += &format!(
        "{:<34} {:>12} {:>12} {:>8}  {}\n",
        "metric", "measured", "target", "ratio", ""
    );
    if let Some(p) = phases.iter().find(|p| p.clients == 64) {
        let rate = p.writes as f64 / p.elapsed.as_secs_f64().max(1e-9);
        let ratio = rate / TARGET_WRITES_PER_SEC;
        out += &format!(
            "{:<34} {:>12.0} {:>12} {:>7.2}x  {}\n",
            "writes/s with 64 clients",
            rate,
            ">= 5000",
            ratio,
            verdict(ratio)
        );
    }
    if !recovered.is_empty() {
        let ratio = TARGET_FAILOVER.as_secs_f64() / failover_p99.as_secs_f64().max(1e-9);
        out += &format!(
            "{:<34} {:>9.0} ms {:>12} {:>7.2}x  {}\n",
            "failover p99",
            ms(failover_p99),
            "<= 1000 ms",
            ratio,
            verdict(ratio)
        );
        let swarm = SWARM_FAILOVER.as_secs_f64() / failover_p99.as_secs_f64().max(1e-9);
        out += &format!(
            "{:<34} {:>9.0} ms {:>12} {:>7.2}x  {}\n",
            "failover p99 vs Swarm default",
            ms(failover_p99),
            "~10000 ms",
            swarm,
            "faster than Swarm's default"
        );
    }
    out
}

fn verdict(ratio: f64) -> &'static str {
    if ratio >= 1.0 {
        "meets the target"
    } else {
        "MISSES the target"
    }
}
