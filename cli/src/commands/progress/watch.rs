//! Polling a rollout and printing its progress.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::future::Future;
use std::io::Write;
use std::time::Duration;

use rswarm_proto::api::control_client::ControlClient;
use rswarm_proto::api::{ListNodesRequest, ListTasksRequest, NodeAvailability, ServiceSpec, Task};
use rswarm_proto::validate::parse_constraint;
use tokio::time::Instant;
use tonic::Code;
use tonic::transport::Channel;

use super::{Assessment, Expect, Target, Verdict, assess};
use crate::commands::{now_ms, rpc_error};
use crate::output::names;

/// What to follow and how.
#[derive(Debug, Clone)]
pub struct Watch {
    /// The service's id (what ListTasks is asked for).
    pub service_id: String,
    /// The service's name, for messages.
    pub service_name: String,
    /// How many tasks it should have.
    pub expect: Expect,
    /// Its placement constraints, to tell whether a global service has any node to
    /// run on.
    pub constraints: Vec<String>,
    /// How long to wait for convergence.
    pub timeout: Duration,
    /// Time between two looks.
    pub interval: Duration,
    /// Redraw the progress in place (a terminal) rather than print a line per change.
    pub tty: bool,
    /// For an update: the new spec, which each slot's running task must be made
    /// from. `None` after a creation (every task is).
    pub target: Option<ServiceSpec>,
}

/// Follows the rollout until it converges (`Ok`), keeps failing, passes the
/// timeout or `stop` completes (errors naming the tasks that failed and why).
pub async fn watch(
    control: &mut ControlClient<Channel>,
    watch: &Watch,
    out: &mut dyn Write,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + watch.timeout;
    let mut screen = Screen::new(watch.tty);
    let mut last: Option<Assessment> = None;
    tokio::pin!(stop);
    loop {
        let looked = match list_tasks(control, &watch.service_id).await {
            Ok(tasks) if watch.expect == Expect::Global => {
                global_nodes(control, &watch.constraints)
                    .await
                    .map(|nodes| (tasks, Some(nodes)))
            }
            Ok(tasks) => Ok((tasks, None)),
            Err(status) => Err(status),
        };
        match looked {
            Ok((tasks, nodes)) => {
                let has_live = tasks.iter().any(super::is_live);
                let eligible = nodes.as_ref().filter(|_| !has_live).map(|n| n.eligible);
                let held = nodes.map(|n| n.held).unwrap_or_default();
                let target = watch.target.as_ref().map(|spec| Target {
                    spec,
                    now_ms: now_ms(),
                    held: &held,
                });
                let assessment = assess(watch.expect, &tasks, eligible, target);
                screen.show(out, &assessment)?;
                match &assessment.verdict {
                    Verdict::Converged => {
                        writeln!(out, "verify: Service converged")?;
                        let held: Vec<&str> = assessment.held().map(|l| l.label.as_str()).collect();
                        if !held.is_empty() {
                            writeln!(
                                out,
                                "note: {} task(s) keep the previous spec on nodes that are paused \
                                 or not ready ({}); the managers replace them once their node is \
                                 active and ready",
                                held.len(),
                                held.join(", ")
                            )?;
                        }
                        return Ok(());
                    }
                    Verdict::NoEligibleNode => {
                        writeln!(
                            out,
                            "verify: no node is eligible for global service {}: it has no tasks",
                            watch.service_name
                        )?;
                        return Ok(());
                    }
                    Verdict::Failing(labels) => {
                        anyhow::bail!("{}", failing_message(watch, labels, &assessment));
                    }
                    Verdict::InProgress => last = Some(assessment),
                }
            }
            // A leader change makes the API briefly unavailable: look again later.
            Err(status) if transient(status.code()) => {}
            Err(status) => return Err(rpc_error(status)),
        }
        if Instant::now() >= deadline {
            anyhow::bail!("{}", timeout_message(watch, last.as_ref()));
        }
        let next = (Instant::now() + watch.interval).min(deadline);
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = &mut stop => anyhow::bail!(
                "interrupted: service {name} was {done} and its rollout goes on; follow it \
                 with `rswarm service ps {name}`",
                name = watch.service_name,
                done = if watch.target.is_some() { "updated" } else { "created" },
            ),
        }
    }
}

/// Whether a failed call is worth repeating.
fn transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::Aborted | Code::ResourceExhausted
    )
}

async fn list_tasks(
    control: &mut ControlClient<Channel>,
    service_id: &str,
) -> Result<Vec<Task>, tonic::Status> {
    let request = ListTasksRequest {
        service: service_id.to_string(),
        desired_state: String::new(),
    };
    Ok(control.list_tasks(request).await?.into_inner().tasks)
}

/// The nodes as a global service's rollout sees them.
struct GlobalNodes {
    /// How many nodes a new global task could go to: ready, active and matching
    /// every constraint (as the orchestrator places them).
    eligible: usize,
    /// Nodes that keep their task but get no new one (paused, or not ready without
    /// being down), each with why: the orchestrator does not replace a task there.
    held: BTreeMap<String, String>,
}

async fn global_nodes(
    control: &mut ControlClient<Channel>,
    constraints: &[String],
) -> Result<GlobalNodes, tonic::Status> {
    let constraints = constraints
        .iter()
        .map(|c| parse_constraint(c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| tonic::Status::invalid_argument(err.to_string()))?;
    let nodes = control
        .list_nodes(ListNodesRequest {})
        .await?
        .into_inner()
        .nodes;
    let mut view = GlobalNodes {
        eligible: 0,
        held: BTreeMap::new(),
    };
    for node in &nodes {
        if node.takes_new_tasks() {
            view.eligible += usize::from(constraints.iter().all(|c| c.matches(node)));
        } else if node.keeps_tasks() {
            // Not drained, so not active means paused.
            let paused = node
                .spec
                .as_ref()
                .is_some_and(|s| s.availability != NodeAvailability::Active as i32);
            let why = if paused {
                "paused"
            } else {
                names::node_state(node.status.as_ref().map_or(0, |s| s.state))
            };
            view.held.insert(node.id.clone(), why.to_string());
        }
    }
    Ok(view)
}

fn failing_message(watch: &Watch, labels: &[String], assessment: &Assessment) -> String {
    let mut message = format!(
        "tasks of service {} keep failing ({}); failed tasks:",
        watch.service_name,
        labels.join(", ")
    );
    for failure in assessment
        .failures
        .iter()
        .filter(|f| labels.contains(&f.label))
    {
        let _ = write!(
            message,
            "\n  {} ({}): {}: {}",
            failure.task_id, failure.label, failure.state, failure.error
        );
    }
    message
}

fn timeout_message(watch: &Watch, last: Option<&Assessment>) -> String {
    let mut message = format!(
        "service {} did not converge within {:?}",
        watch.service_name, watch.timeout
    );
    let Some(last) = last else {
        message.push_str(": its tasks could not be listed");
        return message;
    };
    let _ = write!(
        message,
        ": {} of {} tasks running",
        last.running(),
        last.lines.len()
    );
    for line in last.lines.iter().filter(|l| !l.running) {
        let _ = write!(message, "\n  {}: {}", line.label, line.text);
    }
    if !last.failures.is_empty() {
        message.push_str("\nfailed tasks:");
        for failure in &last.failures {
            let _ = write!(
                message,
                "\n  {} ({}): {}: {}",
                failure.task_id, failure.label, failure.state, failure.error
            );
        }
    }
    message
}

/// What was printed, to redraw it (terminal) or print only what changed.
#[derive(Debug)]
struct Screen {
    tty: bool,
    /// Lines drawn last time (terminal).
    drawn: usize,
    /// Last text per label, and the last overall line (otherwise).
    seen: HashMap<String, String>,
    overall: String,
}

impl Screen {
    fn new(tty: bool) -> Self {
        Self {
            tty,
            drawn: 0,
            seen: HashMap::new(),
            overall: String::new(),
        }
    }

    fn show(&mut self, out: &mut dyn Write, assessment: &Assessment) -> anyhow::Result<()> {
        let overall = format!(
            "overall progress: {} out of {} tasks",
            assessment.running(),
            assessment.lines.len()
        );
        let lines = assessment
            .lines
            .iter()
            .map(|l| (l.label.as_str(), format!("{}: {}", l.label, l.text)));
        if self.tty {
            if self.drawn > 0 {
                // Back to the first line drawn, and clear everything below.
                write!(out, "\x1b[{}A\x1b[J", self.drawn)?;
            }
            writeln!(out, "{overall}")?;
            for (_, line) in lines {
                writeln!(out, "{line}")?;
            }
            self.drawn = assessment.lines.len() + 1;
        } else {
            if overall != self.overall {
                writeln!(out, "{overall}")?;
                self.overall = overall;
            }
            for (label, line) in lines {
                if self.seen.get(label) != Some(&line) {
                    writeln!(out, "{line}")?;
                    self.seen.insert(label.to_string(), line);
                }
            }
        }
        out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
