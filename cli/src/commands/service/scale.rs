//! `rswarm service scale`.

use std::io::Write;

use rswarm_proto::api::ScaleServiceRequest;
use rswarm_proto::validate::parse_replicas;
use serde_json::{Value, json};

use crate::args::Format;
use crate::commands::{Context, Failures, rpc_error, write_line};

/// Parses every `NAME=N` into (service reference, replicas), refusing the whole
/// command on the first bad one.
pub fn parse_scales(scales: &[String]) -> anyhow::Result<Vec<(String, u64)>> {
    scales
        .iter()
        .map(|scale| {
            let (name, replicas) = scale
                .split_once('=')
                .filter(|(name, _)| !name.is_empty())
                .ok_or_else(|| {
                    anyhow::anyhow!("invalid scale \"{scale}\": expected NAME=N (like web=3)")
                })?;
            Ok((name.to_string(), parse_replicas(replicas)?))
        })
        .collect()
}

/// `service scale`: prints `NAME scaled to N` for each service (a JSON array of
/// `{"service", "replicas"}` with `--format json`); a failure is reported and the
/// other services are still scaled.
pub async fn scale(ctx: &Context, scales: &[String], out: &mut dyn Write) -> anyhow::Result<()> {
    let scales = parse_scales(scales)?;
    let mut control = ctx.control().await?;
    let mut scaled = Vec::new();
    let mut failures = Failures::default();
    for (reference, replicas) in scales {
        let request = ScaleServiceRequest {
            reference: reference.clone(),
            replicas,
        };
        match control.scale_service(request).await {
            Ok(_) if ctx.format == Format::Table => {
                write_line(out, &format!("{reference} scaled to {replicas}"))?;
            }
            Ok(_) => scaled.push(json!({"service": reference, "replicas": replicas})),
            Err(status) => failures.report(&rpc_error(status)),
        }
    }
    if ctx.format == Format::Json {
        crate::output::write_json(out, &Value::Array(scaled))?;
    }
    failures.finish()
}
