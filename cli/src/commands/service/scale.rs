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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::Reported;
    use crate::commands::test_support::{start, text};
    use rswarm_proto::api::{
        GlobalService, Service, ServiceSpec, ServiceSummary, service_spec::Mode,
    };

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_name_equals_count() {
        assert_eq!(
            parse_scales(&strings(&["web=3", "db=0"])).unwrap(),
            [("web".to_string(), 3), ("db".to_string(), 0)]
        );
        let err = |s: &[&str]| parse_scales(&strings(s)).unwrap_err().to_string();
        assert_eq!(
            err(&["web"]),
            "invalid scale \"web\": expected NAME=N (like web=3)"
        );
        assert_eq!(
            err(&["=3"]),
            "invalid scale \"=3\": expected NAME=N (like web=3)"
        );
        assert_eq!(
            err(&["web=3", "db=-1"]),
            "invalid replicas \"-1\": must be a whole number ≥ 0"
        );
    }

    #[tokio::test]
    async fn invalid_input_sends_nothing() {
        let (fake, ctx, _dir) = start(Format::Table);
        let mut out = Vec::new();
        assert!(
            scale(&ctx, &strings(&["web=2", "db=x"]), &mut out)
                .await
                .is_err()
        );
        assert!(out.is_empty());
        assert!(fake.lock().calls.is_empty());
    }

    #[tokio::test]
    async fn failures_are_reported_and_the_rest_is_scaled() {
        let (fake, ctx, _dir) = start(Format::Table);
        fake.lock().services.push(ServiceSummary {
            service: Some(Service {
                endpoint: None,
                id: "svc2".into(),
                meta: None,
                spec: Some(ServiceSpec {
                    name: "agent".into(),
                    mode: Some(Mode::Global(GlobalService {})),
                    ..Default::default()
                }),
            }),
            replicas_desired: 3,
            replicas_running: 3,
        });
        let mut out = Vec::new();
        let err = scale(&ctx, &strings(&["agent=2", "nope=1", "web=5"]), &mut out)
            .await
            .unwrap_err();
        assert_eq!(err.downcast_ref::<Reported>().unwrap().failed, 2);
        assert_eq!(text(out), "web scaled to 5\n");
        assert_eq!(fake.lock().calls, ["scale web 5"]);
    }

    #[tokio::test]
    async fn json_lists_the_scaled_services() {
        let (_fake, ctx, _dir) = start(Format::Json);
        let mut out = Vec::new();
        scale(&ctx, &strings(&["web=4"]), &mut out).await.unwrap();
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value, json!([{"service": "web", "replicas": 4}]));
    }
}
