//! `rswarm service ps`.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;

use rswarm_proto::api::{ListNodesRequest, ListTasksRequest};

use crate::args::{Format, ServicePsArgs};
use crate::commands::{Context, Failures, now_ms, rpc_error, write_line};
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::test_support::{start, text};
    use rswarm_proto::api::{Meta, Task, TaskState, TaskStatus};
    use serde_json::{Value, json};

    fn args(filter: &[&str], services: &[&str]) -> ServicePsArgs {
        ServicePsArgs {
            filter: filter.iter().map(|f| f.to_string()).collect(),
            services: services.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn task(id: &str, slot: u64, node: &str, created: u64, desired: TaskState) -> Task {
        Task {
            id: id.into(),
            meta: Some(Meta {
                created_at: created,
                ..Default::default()
            }),
            service_id: "svc1".into(),
            service_name: "web".into(),
            slot,
            node_id: node.into(),
            desired_state: desired.into(),
            status: Some(TaskStatus {
                state: if desired == TaskState::Running {
                    TaskState::Running.into()
                } else {
                    TaskState::Failed.into()
                },
                timestamp: created,
                err: if desired == TaskState::Running {
                    String::new()
                } else {
                    "exit code 3".into()
                },
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn tasks() -> Vec<Task> {
        vec![
            task("t1-old", 1, "node-3", 1_000, TaskState::Shutdown),
            task("t2", 2, "node-2", 3_000, TaskState::Running),
            task("t1", 1, "node-1", 2_000, TaskState::Running),
            Task {
                service_id: "other".into(),
                ..task("x", 1, "node-1", 2_000, TaskState::Running)
            },
        ]
    }

    #[test]
    fn filters() {
        let ok = |f: &[&str]| {
            parse_filters(&f.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .map(|s| s.into_iter().collect::<Vec<_>>())
                .map_err(|e| e.to_string())
        };
        assert_eq!(ok(&[]), Ok(vec![]));
        assert_eq!(
            ok(&["desired-state=running", "desired-state=shutdown"]),
            Ok(vec!["running", "shutdown"])
        );
        assert_eq!(
            ok(&["node=n1"]),
            Err(
                "invalid filter \"node=n1\": unknown key \"node\" (supported: desired-state)"
                    .into()
            )
        );
        assert_eq!(
            ok(&["running"]),
            Err("invalid filter \"running\": expected KEY=VALUE".into())
        );
        assert!(
            ok(&["desired-state=bogus"]).unwrap_err().starts_with(
                "invalid filter \"desired-state=bogus\": unknown task state \"bogus\""
            )
        );
    }

    #[tokio::test]
    async fn table_maps_nodes_to_hostnames() {
        let (fake, ctx, _dir) = start(Format::Table);
        fake.lock().tasks = tasks();
        let mut out = Vec::new();
        ps(&ctx, &args(&[], &["web"]), &mut out).await.unwrap();
        let out = text(out);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert!(lines[0].starts_with("ID "), "{out}");
        assert!(
            lines[1].starts_with("t1 ") && lines[1].contains(" web.1 "),
            "{out}"
        );
        assert!(lines[1].contains(" alpha "), "{out}");
        assert!(lines[1].contains("Running "), "{out}");
        assert!(
            lines[2].starts_with("t1-old ") && lines[2].contains(r" \_ web.1 "),
            "{out}"
        );
        assert!(lines[2].contains(" gamma "), "{out}");
        assert!(lines[2].ends_with("exit code 3"), "{out}");
        assert!(
            lines[3].starts_with("t2 ") && lines[3].contains(" beta "),
            "{out}"
        );
        let queries = fake.lock().task_queries.clone();
        assert_eq!(
            queries,
            [ListTasksRequest {
                service: "web".into(),
                desired_state: String::new()
            }]
        );
    }

    #[tokio::test]
    async fn json_with_one_filter_asks_the_manager() {
        let (fake, ctx, _dir) = start(Format::Json);
        fake.lock().tasks = tasks();
        let mut out = Vec::new();
        ps(&ctx, &args(&["desired-state=running"], &["svc1"]), &mut out)
            .await
            .unwrap();
        let value: Value = serde_json::from_slice(&out).unwrap();
        let ids: Vec<&str> = value
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["t1", "t2"]);
        assert_eq!(
            value[0],
            json!({"id": "t1", "name": "web.1", "slot": 1, "image": "", "node": "node-1",
                   "desired_state": "running", "state": "running",
                   "since": "1970-01-01T00:00:02Z", "error": "", "address": ""})
        );
        assert_eq!(fake.lock().task_queries[0].desired_state, "running");
    }

    #[tokio::test]
    async fn several_filters_match_any() {
        let (fake, ctx, _dir) = start(Format::Json);
        fake.lock().tasks = tasks();
        let mut out = Vec::new();
        let filters = ["desired-state=shutdown", "desired-state=complete"];
        ps(&ctx, &args(&filters, &["web"]), &mut out).await.unwrap();
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value.as_array().unwrap().len(), 1, "{value}");
        assert_eq!(value[0]["id"], "t1-old");
        assert_eq!(fake.lock().task_queries[0].desired_state, "");
    }

    #[tokio::test]
    async fn bad_filter_asks_nothing() {
        let (fake, ctx, _dir) = start(Format::Table);
        let mut out = Vec::new();
        let err = ps(&ctx, &args(&["name=web"], &["web"]), &mut out)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("unknown key \"name\""), "{err}");
        assert!(out.is_empty());
        assert!(fake.lock().task_queries.is_empty());
    }

    #[tokio::test]
    async fn unknown_service_fails_but_the_others_are_listed() {
        let (fake, ctx, _dir) = start(Format::Json);
        fake.lock().tasks = tasks();
        let mut out = Vec::new();
        let err = ps(&ctx, &args(&[], &["nope", "web"]), &mut out)
            .await
            .unwrap_err();
        assert!(err.is::<crate::commands::Reported>(), "{err}");
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value.as_array().unwrap().len(), 3, "{value}");
    }
}
