//! The simulated workers: each joins like a real one and keeps a session with the
//! leader over its own mutual-TLS connection.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use rswarm_proto::api::dispatcher_client::DispatcherClient;
use rswarm_proto::api::node_ca_client::NodeCaClient;
use rswarm_proto::api::{
    AssignmentsRequest, GetRootCaRequest, HeartbeatRequest, IssueNodeCertificateRequest,
    NodeDescription, TaskState, TaskStatus, TaskStatusUpdate, UpdateTaskStatusRequest,
};
use rswarm_proto::tls::{self, Identity};
use tokio::task::JoinSet;
use tonic::transport::Channel;

use crate::MAX_MESSAGE;

/// Joins in flight at once (each is a Raft write on the leader).
pub const JOIN_CONCURRENCY: usize = 32;

/// What the simulated workers saw, shared by all of them.
#[derive(Default)]
pub struct Counters {
    /// Distinct tasks received with desired state running.
    pub assigned: AtomicU64,
    /// Tasks reported RUNNING and acknowledged by the leader.
    pub reported: AtomicU64,
    /// Failed heartbeats, assignments streams or status reports.
    pub errors: AtomicU64,
    /// Milliseconds after the first create when the last task reached a worker.
    pub last_assigned_ms: AtomicU64,
    /// Milliseconds after the first create when the last report was acknowledged.
    pub last_reported_ms: AtomicU64,
    /// Errors counted before the first create (sessions connecting).
    pub errors_before: AtomicU64,
    /// Unix milliseconds of the first create (0 until then).
    pub start_unix_ms: AtomicU64,
    /// The first error, to show what kind they are. A std mutex: never held across
    /// an await.
    pub first_error: Mutex<Option<String>>,
}

impl Counters {
    /// Counts a failed call.
    fn error(&self, what: &str, status: &dyn std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(|| format!("{what}: {status}"));
    }

    /// Milliseconds since the first create, or 0 before it.
    pub fn since_start(&self) -> u64 {
        let start = self.start_unix_ms.load(Ordering::Relaxed);
        if start == 0 {
            0
        } else {
            unix_ms().saturating_sub(start)
        }
    }
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Joins `workers` simulated workers through the manager at `addr`, a few at once.
pub async fn join_all(
    addr: String,
    token: String,
    workers: usize,
) -> anyhow::Result<Vec<Identity>> {
    let mut ca = NodeCaClient::new(tls::bootstrap_channel(&addr)?);
    let ca_pem = ca
        .get_root_ca_certificate(GetRootCaRequest {})
        .await
        .context("cannot fetch the root CA")?
        .into_inner()
        .cert_pem;
    token
        .parse::<tls::JoinToken>()
        .context("bad join token")?
        .verify_ca(&ca_pem)
        .context("the root CA does not match the join token")?;
    let pinned = tls::pinned_channel(&addr, &ca_pem)?;
    let mut identities = Vec::with_capacity(workers);
    let mut joins = JoinSet::new();
    let mut next = 0usize;
    while identities.len() < workers {
        while next < workers && joins.len() < JOIN_CONCURRENCY {
            let (channel, token, ca_pem) = (pinned.clone(), token.clone(), ca_pem.clone());
            joins.spawn(join_one(next, channel, token, ca_pem));
            next += 1;
        }
        match joins.join_next().await {
            Some(joined) => identities.push(joined??),
            None => bail!("joins ended early"),
        }
    }
    Ok(identities)
}

/// One worker join: a fresh key, and a certificate issued for it.
async fn join_one(
    index: usize,
    channel: Channel,
    token: String,
    ca_pem: String,
) -> anyhow::Result<Identity> {
    let (key_pem, csr_pem) = tls::new_key_and_csr()?;
    let issued = NodeCaClient::new(channel)
        .issue_node_certificate(IssueNodeCertificateRequest {
            token,
            csr_pem,
            hostname: format!("sim-{index}"),
            advertise_addr: format!("10.99.{}.{}:4242", index / 250, index % 250 + 1),
            nano_cpus: 4_000_000_000,
            memory_bytes: 8 << 30,
        })
        .await
        .with_context(|| format!("sim-{index} could not join"))?
        .into_inner();
    Ok(Identity {
        ca_pem,
        cert_pem: issued.cert_pem,
        key_pem,
    })
}

/// A simulated worker session: heartbeats on the period the leader asks for, and
/// reports each newly assigned running task as RUNNING. Runs until the runtime stops.
pub async fn simulated_worker(index: usize, channel: Channel, counters: Arc<Counters>) {
    let heartbeat = HeartbeatRequest {
        description: Some(NodeDescription {
            hostname: format!("sim-{index}"),
            nano_cpus: 4_000_000_000,
            memory_bytes: 8 << 30,
            os: "linux".into(),
            arch: "x86_64".into(),
        }),
        addr: format!("10.99.{}.{}:4242", index / 250, index % 250 + 1),
        port_errors: Vec::new(),
    };
    let mut dispatcher = DispatcherClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    {
        let mut client = dispatcher.clone();
        let counters = Arc::clone(&counters);
        tokio::spawn(async move {
            loop {
                let period = match client.heartbeat(heartbeat.clone()).await {
                    Ok(resp) => Duration::from_millis(resp.into_inner().period_ms.clamp(100, 1000)),
                    Err(status) => {
                        counters.error("heartbeat", &status);
                        Duration::from_millis(200)
                    }
                };
                tokio::time::sleep(period).await;
            }
        });
    }
    let mut seen: HashSet<String> = HashSet::new();
    loop {
        let mut stream = match dispatcher.assignments(AssignmentsRequest {}).await {
            Ok(resp) => resp.into_inner(),
            Err(status) => {
                counters.error("opening assignments", &status);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        loop {
            let message = match stream.message().await {
                Ok(Some(message)) => message,
                Ok(None) => {
                    counters.error("assignments", &"stream ended");
                    break;
                }
                Err(status) => {
                    counters.error("assignments", &status);
                    break;
                }
            };
            let mut updates = Vec::new();
            for task in message.changed {
                if task.desired_state != TaskState::Running as i32 {
                    continue;
                }
                let current = task.status.as_ref().map_or(0, |s| s.state);
                if seen.insert(task.id.clone()) {
                    counters.assigned.fetch_add(1, Ordering::Relaxed);
                    counters
                        .last_assigned_ms
                        .fetch_max(counters.since_start(), Ordering::Relaxed);
                }
                if current < TaskState::Running as i32 {
                    updates.push(TaskStatusUpdate {
                        task_id: task.id,
                        status: Some(TaskStatus {
                            state: TaskState::Running as i32,
                            timestamp: unix_ms(),
                            message: "started".into(),
                            ..Default::default()
                        }),
                    });
                }
            }
            if updates.is_empty() {
                continue;
            }
            let count = updates.len() as u64;
            match dispatcher
                .update_task_status(UpdateTaskStatusRequest { updates })
                .await
            {
                Ok(_) => {
                    counters.reported.fetch_add(count, Ordering::Relaxed);
                    counters
                        .last_reported_ms
                        .fetch_max(counters.since_start(), Ordering::Relaxed);
                }
                Err(status) => counters.error("UpdateTaskStatus", &status),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
