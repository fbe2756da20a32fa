//! End-to-end task throughput: three managers (release build) in network namespaces
//! and many simulated worker sessions in the test process.
//!
//! Each simulated worker joins like a real one (key and CSR, root CA pinned, node
//! certificate issued with the worker join token), holds its own mutual-TLS
//! connection to the leader, heartbeats, follows its assignments and reports every
//! task with desired state running as RUNNING, one status batch per assignments
//! message. Services totalling the requested replicas are then created through the
//! admin channel (placed on workers only), and the clock runs from the first create
//! until every task is RUNNING in the store.
//!
//! `cargo run --release -p rswarm-e2e --bin bench-tasks [-- --workers N --replicas N
//! --services N]` (defaults: 1,000 workers, 20,000 replicas over 200 services).
//! Needs root.

mod sim;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rswarm_e2e::{Cluster, Role};
use rswarm_proto::api::control_client::ControlClient;
use rswarm_proto::api::service_spec::Mode;
use rswarm_proto::api::{
    ContainerSpec, CreateServiceRequest, ListTasksRequest, Placement, ReplicatedService,
    ServiceSpec, TaskSpec, TaskState,
};
use rswarm_proto::tls;
use sim::{Counters, JOIN_CONCURRENCY, join_all, simulated_worker, unix_ms};
use tokio::task::JoinSet;
use tonic::transport::Channel;

/// Number of managers.
const MANAGERS: usize = 3;
/// Target from the issue.
const TARGET_TASKS_PER_SEC: f64 = 2_000.0;
/// Every phase together must finish within this.
const BUDGET: Duration = Duration::from_secs(5 * 60);
/// How often the store is polled for running tasks.
const POLL_EVERY: Duration = Duration::from_millis(200);
/// Messages can hold every task of a service.
pub(crate) const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// Command-line settings.
struct Settings {
    /// Simulated worker sessions.
    workers: usize,
    /// Replicas over all services.
    replicas: u64,
    /// Number of services the replicas are split over.
    services: u64,
}

fn parse_args() -> anyhow::Result<Settings> {
    let mut settings = Settings {
        workers: 1_000,
        replicas: 20_000,
        services: 200,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--workers" => settings.workers = value.parse()?,
            "--replicas" => settings.replicas = value.parse()?,
            "--services" => settings.services = value.parse::<u64>()?.max(1),
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(settings)
}

fn main() -> ExitCode {
    rswarm_e2e::bench::main(
        "bench-tasks",
        parse_args,
        |_settings: &Settings| {
            eprintln!("starting {MANAGERS} managers...");
            Cluster::start_fake(MANAGERS, 0, &[])
        },
        run,
    )
}

fn run(cluster: &mut Cluster, settings: &Settings) -> anyhow::Result<String> {
    let started = Instant::now();
    let runtime = cluster.client_runtime(2)?;
    let leader = cluster.leader()?;
    let leader_addr = cluster.node(leader).addr.to_string();
    let admin = cluster.node(0).admin_dir();
    let token = cluster.join_token(0, Role::Worker)?;

    eprintln!("joining {} simulated workers...", settings.workers);
    let joined = Instant::now();
    let identities = {
        let (addr, token, workers) = (leader_addr.clone(), token.clone(), settings.workers);
        runtime.run(async move { join_all(addr, token, workers).await })??
    };
    let join_time = joined.elapsed();
    eprintln!(
        "{} workers joined in {:.1} s; starting their sessions...",
        identities.len(),
        join_time.as_secs_f64()
    );

    let counters = Arc::new(Counters::default());
    {
        // Channels spawn their connection tasks, so they are made on the runtime.
        let (addr, counters) = (leader_addr.clone(), Arc::clone(&counters));
        runtime.run(async move {
            for (index, identity) in identities.into_iter().enumerate() {
                let channel = tls::node_channel(&addr, &identity)?;
                tokio::spawn(simulated_worker(index, channel, Arc::clone(&counters)));
            }
            Ok::<_, tls::TlsError>(())
        })??;
    }
    let remaining = BUDGET.saturating_sub(started.elapsed());
    cluster.wait_nodes_ready(0, MANAGERS + settings.workers, remaining)?;
    eprintln!(
        "all {} nodes ready; creating {} services with {} replicas in all...",
        MANAGERS + settings.workers,
        settings.services,
        settings.replicas
    );

    let total = settings.replicas;
    let deadline = started + BUDGET;
    let measured = {
        let (counters, addr, services) = (Arc::clone(&counters), leader_addr, settings.services);
        runtime.run(async move {
            create_and_wait(addr, admin, services, total, deadline, counters).await
        })??
    };
    let rate = total as f64 / measured.running.as_secs_f64().max(1e-9);
    let ratio = rate / TARGET_TASKS_PER_SEC;
    let mut out = String::new();
    out += &format!(
        "\nrswarm task benchmark: {MANAGERS} managers in network namespaces, release build, \
         {} simulated workers (one mutual-TLS connection each to the leader)\n\n",
        settings.workers
    );
    out += &format!(
        "joins (IssueNodeCertificate, {JOIN_CONCURRENCY} at once): {:.1} s\n",
        join_time.as_secs_f64()
    );
    out += &format!(
        "tasks: {total} in {} services, all RUNNING in the store {:.2} s after the first create\n",
        settings.services,
        measured.running.as_secs_f64()
    );
    let seconds =
        |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.2} s", d.as_secs_f64()));
    out += &format!(
        "store (polled every {POLL_EVERY:?}): all tasks created at {}, all assigned at {}\n",
        seconds(measured.created),
        seconds(measured.assigned)
    );
    out += &format!(
        "workers: last task received at {:.2} s, last RUNNING report acknowledged at {:.2} s, \
         {} failed calls ({} of them before the first create)\n",
        counters.last_assigned_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        counters.last_reported_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        counters.errors.load(Ordering::Relaxed),
        counters.errors_before.load(Ordering::Relaxed)
    );
    if let Some(first) = counters
        .first_error
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
    {
        out += &format!("first worker error: {first}\n");
    }
    out += &format!(
        "\n{:<34} {:>12} {:>12} {:>8}\n",
        "metric", "measured", "target", "ratio"
    );
    out += &format!(
        "{:<34} {:>12.0} {:>12} {:>7.2}x  {}\n",
        "tasks/s committed RUNNING",
        rate,
        ">= 2000",
        ratio,
        if ratio >= 1.0 {
            "meets the target"
        } else {
            "MISSES the target"
        }
    );
    Ok(out)
}

/// A service of `replicas` fake tasks, kept off the managers.
fn spec(name: String, replicas: u64) -> ServiceSpec {
    ServiceSpec {
        name,
        task: Some(TaskSpec {
            container: Some(ContainerSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            placement: Some(Placement {
                constraints: vec!["node.role!=manager".into()],
                ..Default::default()
            }),
            ..Default::default()
        }),
        mode: Some(Mode::Replicated(ReplicatedService { replicas })),
        ..Default::default()
    }
}

/// Creates the services (all at once, without waiting for tasks), then polls the
/// store until `total` tasks are RUNNING; returns the time from the first create.
async fn create_and_wait(
    addr: String,
    admin: PathBuf,
    services: u64,
    total: u64,
    deadline: Instant,
    counters: Arc<Counters>,
) -> anyhow::Result<Stages> {
    let channel = tls::admin_channel(&addr, &admin)?;
    let control = ControlClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    // Connects before the clock starts.
    control
        .clone()
        .list_tasks(ListTasksRequest::default())
        .await
        .context("warm-up ListTasks failed")?;
    let start = Instant::now();
    counters.start_unix_ms.store(unix_ms(), Ordering::Relaxed);
    counters
        .errors_before
        .store(counters.errors.load(Ordering::Relaxed), Ordering::Relaxed);
    let mut creates = JoinSet::new();
    for number in 0..services {
        let replicas = total / services + u64::from(number < total % services);
        let mut client = control.clone();
        creates.spawn(async move {
            client
                .create_service(CreateServiceRequest {
                    spec: Some(spec(format!("bench-{number}"), replicas)),
                })
                .await
        });
    }
    while let Some(created) = creates.join_next().await {
        created?.context("CreateService failed")?;
    }
    let created = start.elapsed();
    eprintln!("services created in {:.2} s", created.as_secs_f64());
    let mut last_print = Instant::now();
    let mut stages = Stages::default();
    loop {
        if Instant::now() > deadline {
            let census = census(&control).await?;
            bail!(
                "only {} of {total} tasks RUNNING before the time budget of {BUDGET:?} ran out \
                 ({} created, {} assigned in the store; workers saw {} assigned, {} reported)",
                census.running,
                census.created,
                census.assigned,
                counters.assigned.load(Ordering::Relaxed),
                counters.reported.load(Ordering::Relaxed)
            );
        }
        let census = census(&control).await?;
        let now = start.elapsed();
        if census.created >= total {
            stages.created.get_or_insert(now);
        }
        if census.assigned >= total {
            stages.assigned.get_or_insert(now);
        }
        if census.running >= total {
            stages.running = now;
            return Ok(stages);
        }
        if last_print.elapsed() >= Duration::from_secs(2) {
            last_print = Instant::now();
            eprintln!(
                "{:>6.1} s: store has {} created, {} assigned, {} RUNNING; workers saw {} \
                 assigned, {} reported",
                now.as_secs_f64(),
                census.created,
                census.assigned,
                census.running,
                counters.assigned.load(Ordering::Relaxed),
                counters.reported.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Tasks with desired state running in the store: how many exist, how many are
/// assigned to a node (or further), how many are RUNNING.
async fn census(control: &ControlClient<Channel>) -> anyhow::Result<Census> {
    let tasks = control
        .clone()
        .list_tasks(ListTasksRequest {
            service: String::new(),
            desired_state: "running".into(),
        })
        .await
        .context("ListTasks failed")?
        .into_inner()
        .tasks;
    let state = |t: &rswarm_proto::api::Task| t.status.as_ref().map_or(0, |s| s.state);
    Ok(Census {
        created: tasks.len() as u64,
        assigned: tasks
            .iter()
            .filter(|t| state(t) >= TaskState::Assigned as i32)
            .count() as u64,
        running: tasks
            .iter()
            .filter(|t| state(t) == TaskState::Running as i32)
            .count() as u64,
    })
}

/// Counts of one [`census`].
struct Census {
    /// Tasks in the store.
    created: u64,
    /// Tasks the scheduler placed.
    assigned: u64,
    /// Tasks reported RUNNING.
    running: u64,
}

/// When each stage first covered every task, from the first create.
#[derive(Default)]
struct Stages {
    /// All tasks created by the orchestrator.
    created: Option<Duration>,
    /// All tasks placed by the scheduler.
    assigned: Option<Duration>,
    /// All tasks RUNNING.
    running: Duration,
}
