//! `rswarm node ...`.

use std::io::Write;

use rswarm_proto::api::{
    GetClusterStatusRequest, GetNodeRequest, ListNodesRequest, RemoveNodeRequest, UpdateNodeRequest,
};
use rswarm_proto::validate::{parse_availability, parse_label, parse_label_key};
use serde_json::Value;

use super::{Context, Failures, inspect_each, remove_each, rpc_error, write_line};
use crate::args::{Format, NodeCommand, NodeUpdateArgs};
use crate::output;

/// Runs a `node` sub-command.
pub async fn run(ctx: &Context, command: NodeCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match command {
        NodeCommand::Ls => ls(ctx, out).await,
        NodeCommand::Inspect { nodes } => inspect(ctx, &nodes, out).await,
        NodeCommand::Update(args) => update(ctx, &args, out).await,
        NodeCommand::Promote { nodes } => change_role(ctx, &nodes, RoleChange::Promote, out).await,
        NodeCommand::Demote { nodes } => change_role(ctx, &nodes, RoleChange::Demote, out).await,
        NodeCommand::Rm { force, nodes } => rm(ctx, &nodes, force, out).await,
    }
}

/// `node ls`: the nodes, with each manager's status taken from the cluster status.
async fn ls(ctx: &Context, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut control = ctx.control().await?;
    let nodes = control
        .list_nodes(ListNodesRequest {})
        .await
        .map_err(rpc_error)?
        .into_inner()
        .nodes;
    let cluster = control
        .get_cluster_status(GetClusterStatusRequest {})
        .await
        .map_err(rpc_error)?
        .into_inner();
    let rows = output::node_rows(&nodes, &cluster);
    match ctx.format {
        Format::Json => output::write_json(out, &serde_json::to_value(&rows)?),
        Format::Table => write_line(out, &output::nodes_table(&rows, &cluster.node_id)),
    }
}

/// `node inspect`: a JSON array whatever the format, like `docker inspect`.
async fn inspect(ctx: &Context, references: &[String], out: &mut dyn Write) -> anyhow::Result<()> {
    let control = ctx.control().await?;
    inspect_each(references, out, |reference| {
        let mut control = control.clone();
        async move {
            let node = control
                .get_node(GetNodeRequest { reference })
                .await?
                .into_inner();
            output::node_json(&node).map_err(|e| tonic::Status::internal(e.to_string()))
        }
    })
    .await
}

/// Checks the flags of `node update` and builds the request.
pub fn build_update(args: &NodeUpdateArgs) -> anyhow::Result<UpdateNodeRequest> {
    if args.availability.is_none() && args.label_add.is_empty() && args.label_rm.is_empty() {
        anyhow::bail!("nothing to update: give --availability, --label-add or --label-rm");
    }
    let availability = match &args.availability {
        Some(value) => {
            parse_availability(value)?;
            value.trim().to_ascii_lowercase()
        }
        None => String::new(),
    };
    for label in &args.label_add {
        parse_label(label)?;
    }
    for key in &args.label_rm {
        parse_label_key(key)?;
    }
    Ok(UpdateNodeRequest {
        reference: args.node.clone(),
        availability,
        label_add: args.label_add.clone(),
        label_rm: args.label_rm.clone(),
    })
}

/// `node update`: prints the node reference (table) or the updated node (JSON).
async fn update(ctx: &Context, args: &NodeUpdateArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let request = build_update(args)?;
    let node = ctx
        .control()
        .await?
        .update_node(request)
        .await
        .map_err(rpc_error)?
        .into_inner();
    match ctx.format {
        Format::Json => output::write_json(out, &output::node_json(&node)?),
        Format::Table => write_line(out, &args.node),
    }
}

/// Which way a role changes.
#[derive(Debug, Clone, Copy)]
enum RoleChange {
    /// Worker to manager.
    Promote,
    /// Manager to worker.
    Demote,
}

/// `node promote` / `node demote`.
async fn change_role(
    ctx: &Context,
    references: &[String],
    change: RoleChange,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut control = ctx.control().await?;
    let mut changed = Vec::new();
    let mut failures = Failures::default();
    for reference in references {
        let request = GetNodeRequest {
            reference: reference.clone(),
        };
        let reply = match change {
            RoleChange::Promote => control.promote_node(request).await,
            RoleChange::Demote => control.demote_node(request).await,
        };
        let node = match reply {
            Ok(node) => node.into_inner(),
            Err(status) => {
                failures.report(&rpc_error(status));
                continue;
            }
        };
        match ctx.format {
            Format::Json => changed.push(output::node_json(&node)?),
            Format::Table => write_line(
                out,
                &match change {
                    RoleChange::Promote => {
                        format!("Node {reference} promoted to a manager in the cluster.")
                    }
                    RoleChange::Demote => format!("Manager {reference} demoted in the cluster."),
                },
            )?,
        }
    }
    if ctx.format == Format::Json {
        output::write_json(out, &Value::Array(changed))?;
    }
    failures.finish()
}

/// `node rm`: prints each removed reference (a JSON array of them with `--format json`).
async fn rm(
    ctx: &Context,
    references: &[String],
    force: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let control = ctx.control().await?;
    remove_each(ctx, references, out, |reference| {
        let mut control = control.clone();
        async move {
            control
                .remove_node(RemoveNodeRequest { reference, force })
                .await
                .map(|_| ())
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::Reported;
    use crate::commands::test_support::{start, text};
    use serde_json::json;

    fn update_args(availability: Option<&str>, add: &[&str], rm: &[&str]) -> NodeUpdateArgs {
        NodeUpdateArgs {
            availability: availability.map(Into::into),
            label_add: add.iter().map(|s| s.to_string()).collect(),
            label_rm: rm.iter().map(|s| s.to_string()).collect(),
            node: "beta".into(),
        }
    }

    #[test]
    fn update_requests() {
        let request =
            build_update(&update_args(Some("Drain"), &["zone=eu", "ssd"], &["old"])).unwrap();
        assert_eq!(
            request,
            UpdateNodeRequest {
                reference: "beta".into(),
                availability: "drain".into(),
                label_add: vec!["zone=eu".into(), "ssd".into()],
                label_rm: vec!["old".into()],
            }
        );
        let err = |args| build_update(&args).unwrap_err().to_string();
        assert_eq!(
            err(update_args(Some("paused"), &[], &[])),
            "invalid availability \"paused\": must be one of active, pause, drain"
        );
        assert!(err(update_args(None, &["=x"], &[])).starts_with("invalid label \"=x\""));
        assert!(err(update_args(None, &[], &["a=b"])).starts_with("invalid label \"a=b\""));
        assert!(err(update_args(None, &[], &[])).starts_with("nothing to update"));
    }

    #[tokio::test]
    async fn ls_json_merges_manager_status() {
        let (_fake, ctx, _dir) = start(Format::Json);
        let mut out = Vec::new();
        run(&ctx, NodeCommand::Ls, &mut out).await.unwrap();
        let value: Value = serde_json::from_slice(&out).unwrap();
        let statuses: Vec<&Value> = value
            .as_array()
            .unwrap()
            .iter()
            .map(|n| &n["manager_status"])
            .collect();
        assert_eq!(
            statuses,
            [&json!("reachable"), &json!("leader"), &Value::Null]
        );
        assert_eq!(value[2]["role"], "worker");
    }

    #[tokio::test]
    async fn ls_table() {
        let (_fake, ctx, _dir) = start(Format::Table);
        let mut out = Vec::new();
        run(&ctx, NodeCommand::Ls, &mut out).await.unwrap();
        let out = text(out);
        assert!(out.starts_with("ID "), "{out}");
        assert!(out.lines().any(|l| l.starts_with("node-1 *")), "{out}");
        assert!(
            out.lines()
                .any(|l| l.starts_with("node-2") && l.contains("Leader")),
            "{out}"
        );
    }

    #[tokio::test]
    async fn inspect_reports_missing_nodes_but_prints_the_others() {
        let (_fake, ctx, _dir) = start(Format::Table);
        let mut out = Vec::new();
        let nodes = vec!["gamma".into(), "nope".into()];
        let err = run(&ctx, NodeCommand::Inspect { nodes }, &mut out)
            .await
            .unwrap_err();
        assert_eq!(err.downcast_ref::<Reported>().map(|r| r.failed), Some(1));
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value.as_array().unwrap().len(), 1);
        assert_eq!(value[0]["id"], "node-3");
        assert_eq!(value[0]["role"], "worker");
    }

    #[tokio::test]
    async fn update_sends_the_request() {
        let (fake, ctx, _dir) = start(Format::Table);
        let mut out = Vec::new();
        let args = update_args(Some("pause"), &["zone=eu"], &[]);
        run(&ctx, NodeCommand::Update(args), &mut out)
            .await
            .unwrap();
        assert_eq!(text(out), "beta\n");
        let calls = fake.lock().calls.clone();
        assert_eq!(calls.len(), 1);
        assert!(calls[0].contains("availability: \"pause\""), "{calls:?}");
    }

    #[tokio::test]
    async fn invalid_update_is_refused_before_connecting() {
        let (fake, ctx, _dir) = start(Format::Table);
        let mut out = Vec::new();
        let args = update_args(Some("off"), &[], &[]);
        let err = run(&ctx, NodeCommand::Update(args), &mut out)
            .await
            .unwrap_err();
        assert!(err.to_string().starts_with("invalid availability \"off\""));
        assert!(fake.lock().calls.is_empty());
    }

    #[tokio::test]
    async fn promote_demote_rm() {
        let (fake, ctx, _dir) = start(Format::Table);
        let mut out = Vec::new();
        run(
            &ctx,
            NodeCommand::Promote {
                nodes: vec!["gamma".into()],
            },
            &mut out,
        )
        .await
        .unwrap();
        run(
            &ctx,
            NodeCommand::Demote {
                nodes: vec!["beta".into()],
            },
            &mut out,
        )
        .await
        .unwrap();
        let nodes = vec!["gamma".into()];
        run(&ctx, NodeCommand::Rm { force: true, nodes }, &mut out)
            .await
            .unwrap();
        assert_eq!(
            text(out),
            "Node gamma promoted to a manager in the cluster.\n\
             Manager beta demoted in the cluster.\ngamma\n"
        );
        let calls = fake.lock().calls.clone();
        assert_eq!(calls[0], "promote gamma");
        assert_eq!(calls[1], "demote beta");
        assert!(calls[2].contains("force: true"), "{calls:?}");
    }

    #[tokio::test]
    async fn rm_json_lists_removed_references() {
        let (_fake, ctx, _dir) = start(Format::Json);
        let mut out = Vec::new();
        let nodes = vec!["gamma".into(), "missing".into()];
        let err = run(
            &ctx,
            NodeCommand::Rm {
                force: false,
                nodes,
            },
            &mut out,
        )
        .await;
        assert!(err.is_err());
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value, json!(["gamma"]));
    }
}
