//! `rswarm service logs`: the lines of a service's tasks, as docker prints them
//! (`web.1.<task id>@<host>    | line`), stdout lines on stdout and stderr lines on
//! stderr.

use std::collections::HashMap;
use std::io::Write;

use rswarm_proto::api::logs_client::LogsClient;
use rswarm_proto::api::{ListNodesRequest, LogEntry, LogStream, ServiceLogsRequest};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::args::{Format, ServiceLogsArgs};
use crate::client;
use crate::commands::{Context, rpc_error};

pub async fn logs(
    ctx: &Context,
    args: &ServiceLogsArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if args.follow && ctx.format == Format::Json {
        anyhow::bail!("--follow cannot be used with --format json (which prints one JSON value)");
    }
    let channel = client::connect(&ctx.host, &ctx.cert_dir).await?;
    let hostnames: HashMap<String, String> = ctx
        .control()
        .await?
        .list_nodes(ListNodesRequest {})
        .await
        .map_err(rpc_error)?
        .into_inner()
        .nodes
        .into_iter()
        .map(|n| {
            let host = n.description.map(|d| d.hostname).unwrap_or_default();
            (n.id, host)
        })
        .collect();
    let mut stream = LogsClient::new(channel)
        .service_logs(ServiceLogsRequest {
            service: args.service.clone(),
            follow: args.follow,
            tail: args.tail,
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    let mut collected = Vec::new();
    while let Some(message) = stream.message().await.map_err(rpc_error)? {
        if !message.warning.is_empty() {
            eprintln!("Warning: {}", message.warning);
        }
        for entry in message.entries {
            match ctx.format {
                Format::Json => collected.push(entry_json(&entry, &hostnames)),
                Format::Table => {
                    let line = format_line(&entry, &hostnames, args.timestamps);
                    if entry.stream == LogStream::Stderr as i32 {
                        eprintln!("{line}");
                    } else {
                        writeln!(out, "{line}")?;
                        out.flush()?;
                    }
                }
            }
        }
    }
    if ctx.format == Format::Json {
        crate::output::write_json(out, &serde_json::Value::Array(collected))?;
    }
    Ok(())
}

fn timestamp(entry: &LogEntry) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(entry.timestamp_ns))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn source(entry: &LogEntry, hostnames: &HashMap<String, String>) -> String {
    let host = hostnames
        .get(&entry.node_id)
        .filter(|h| !h.is_empty())
        .unwrap_or(&entry.node_id);
    format!("{}.{}@{host}", entry.task_name, entry.task_id)
}

/// `web.1.<task id>@<host>    | [timestamp ]line`.
pub fn format_line(
    entry: &LogEntry,
    hostnames: &HashMap<String, String>,
    timestamps: bool,
) -> String {
    let text = String::from_utf8_lossy(&entry.data);
    if timestamps {
        format!(
            "{}    | {} {text}",
            source(entry, hostnames),
            timestamp(entry)
        )
    } else {
        format!("{}    | {text}", source(entry, hostnames))
    }
}

fn entry_json(entry: &LogEntry, hostnames: &HashMap<String, String>) -> serde_json::Value {
    serde_json::json!({
        "task_id": entry.task_id,
        "task_name": entry.task_name,
        "node_id": entry.node_id,
        "node": hostnames.get(&entry.node_id).cloned().unwrap_or_default(),
        "timestamp": timestamp(entry),
        "stream": if entry.stream == LogStream::Stderr as i32 { "stderr" } else { "stdout" },
        "line": String::from_utf8_lossy(&entry.data),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_their_task_and_host() {
        let entry = LogEntry {
            task_id: "abc".into(),
            task_name: "web.1".into(),
            node_id: "n1".into(),
            timestamp_ns: 1_700_000_000_123_456_789,
            stream: LogStream::Stdout as i32,
            data: b"hello".to_vec(),
        };
        let hosts = HashMap::from([("n1".to_string(), "node-a".to_string())]);
        assert_eq!(
            format_line(&entry, &hosts, false),
            "web.1.abc@node-a    | hello"
        );
        let stamped = format_line(&entry, &hosts, true);
        assert_eq!(
            stamped,
            "web.1.abc@node-a    | 2023-11-14T22:13:20.123456789Z hello"
        );
        assert_eq!(
            format_line(&entry, &HashMap::new(), false),
            "web.1.abc@n1    | hello"
        );
        assert_eq!(entry_json(&entry, &hosts)["stream"], "stdout");
    }
}
