//! `rswarm service ps`.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use rswarm_proto::api::{ListNodesRequest, ListTasksRequest};

use crate::args::{Format, ServicePsArgs};
use crate::commands::{Context, Failures, rpc_error, write_line};
use crate::output::{self, names};

/// The only filter key `--filter` knows so far.
const DESIRED_STATE: &str = "desired-state";

/// Parses the `--filter` values into the desired states asked for (empty: all).
/// Several values select tasks matching any of them, as in docker.
pub fn parse_filters(filters: &[String]) -> anyhow::Result<BTreeSet<&'static str>> {
    let mut states = BTreeSet::new();
    for filter in filters {
        let Some((key, value)) = filter.split_once('=') else {
            anyhow::bail!("invalid filter \"{filter}\": expected KEY=VALUE");
        };
        if key != DESIRED_STATE {
            anyhow::bail!(
                "invalid filter \"{filter}\": unknown key \"{key}\" (supported: {DESIRED_STATE})"
            );
        }
        let state = names::parse_task_state(value).ok_or_else(|| {
            anyhow::anyhow!(
                "invalid filter \"{filter}\": unknown task state \"{value}\": expected one of \
                 new, pending, assigned, accepted, preparing, ready, starting, running, \
                 complete, shutdown, failed, rejected, remove, orphaned"
            )
        })?;
        states.insert(names::task_state(state as i32));
    }
    Ok(states)
}

/// `service ps`: the tasks of each service, one table (or JSON array) for all.
pub async fn ps(ctx: &Context, args: &ServicePsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let states = parse_filters(&args.filter)?;
    // One state is filtered by the managers; several are fetched together and
    // filtered here.
    let desired_state = match states.len() {
        1 => states.iter().next().copied().unwrap_or_default(),
        _ => "",
    };
    let mut control = ctx.control().await?;
    let mut rows = Vec::new();
    let mut failures = Failures::default();
    for service in &args.services {
        let request = ListTasksRequest {
            service: service.clone(),
            desired_state: desired_state.to_string(),
        };
        match control.list_tasks(request).await {
            Ok(reply) => {
                let tasks: Vec<_> = reply
                    .into_inner()
                    .tasks
                    .into_iter()
                    .filter(|t| {
                        states.is_empty() || states.contains(names::task_state(t.desired_state))
                    })
                    .collect();
                rows.extend(output::task_rows(&tasks, service));
            }
            Err(status) => failures.report(&rpc_error(status)),
        }
    }
    match ctx.format {
        Format::Json => output::write_json(out, &serde_json::to_value(&rows)?)?,
        // Nothing to show: the errors say why.
        Format::Table if rows.is_empty() && failures.failed > 0 => {}
        Format::Table => {
            let nodes = control
                .list_nodes(ListNodesRequest {})
                .await
                .map_err(rpc_error)?
                .into_inner()
                .nodes;
            let hostnames: HashMap<String, String> = nodes
                .into_iter()
                .filter_map(|n| Some((n.id, n.description?.hostname)))
                .collect();
            write_line(out, &output::tasks_table(&rows, &hostnames, now_ms()))?;
        }
    }
    failures.finish()
}

/// The time now, in Unix milliseconds (0 if the clock is before 1970).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
