//! `rswarm service ls`.

use rswarm_proto::api::{PortConfig, ServiceSummary};
use serde::Serialize;

use super::{names, plain_table, render};

/// One service as `service ls` shows it; also its JSON shape (without the ports).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceRow {
    /// Service id.
    pub id: String,
    /// Service name.
    pub name: String,
    /// `replicated` or `global`.
    pub mode: &'static str,
    /// Container image.
    pub image: String,
    /// Tasks the service should have.
    pub replicas_desired: u64,
    /// Tasks running now.
    pub replicas_running: u64,
    /// Published ports, as in docker (`*:8080->80/tcp`); table only.
    #[serde(skip)]
    pub ports: String,
}

/// Builds the rows, sorted by name.
pub fn service_rows(summaries: &[ServiceSummary]) -> Vec<ServiceRow> {
    let mut rows: Vec<ServiceRow> = summaries
        .iter()
        .map(|summary| {
            let service = summary.service.as_ref();
            let spec = service.and_then(|s| s.spec.as_ref());
            ServiceRow {
                id: service.map(|s| s.id.clone()).unwrap_or_default(),
                name: spec.map(|s| s.name.clone()).unwrap_or_default(),
                mode: names::service_mode(spec.and_then(|s| s.mode.as_ref())),
                image: spec
                    .and_then(|s| s.task.as_ref())
                    .and_then(|t| t.container.as_ref())
                    .map(|c| c.image.clone())
                    .unwrap_or_default(),
                replicas_desired: summary.replicas_desired,
                replicas_running: summary.replicas_running,
                ports: spec
                    .and_then(|s| s.endpoint.as_ref())
                    .map(|e| e.ports.iter().map(port).collect::<Vec<_>>().join(", "))
                    .unwrap_or_default(),
            }
        })
        .collect();
    rows.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    rows
}

/// `*:8080->80/tcp`, or `8080->80/tcp (host)` for host-mode publications.
pub fn port(port: &PortConfig) -> String {
    let text = format!(
        "{}->{}/{}",
        port.published_port,
        port.target_port,
        names::protocol(port.protocol)
    );
    match names::publish_mode(port.publish_mode) {
        "ingress" => format!("*:{text}"),
        mode => format!("{text} ({mode})"),
    }
}

/// Docker's `service ls` table; REPLICAS is `running/desired`.
pub fn services_table(rows: &[ServiceRow]) -> String {
    let mut table = plain_table(&["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"]);
    for row in rows {
        table.add_row(vec![
            row.id.clone(),
            row.name.clone(),
            row.mode.to_string(),
            format!("{}/{}", row.replicas_running, row.replicas_desired),
            row.image.clone(),
            row.ports.clone(),
        ]);
    }
    render(&table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rswarm_proto::api::{
        ContainerSpec, EndpointSpec, GlobalService, PortProtocol, PublishMode, ReplicatedService,
        Service, ServiceSpec, TaskSpec, service_spec::Mode,
    };
    use serde_json::json;

    fn summary(id: &str, name: &str, mode: Mode, running: u64, desired: u64) -> ServiceSummary {
        ServiceSummary {
            service: Some(Service {
                endpoint: None,
                id: id.into(),
                meta: None,
                spec: Some(ServiceSpec {
                    name: name.into(),
                    task: Some(TaskSpec {
                        container: Some(ContainerSpec {
                            image: "nginx:1.27".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    mode: Some(mode),
                    endpoint: Some(EndpointSpec {
                        balance: Default::default(),
                        mode: Default::default(),
                        ports: vec![
                            PortConfig {
                                proxy_protocol: Default::default(),
                                protocol: PortProtocol::Tcp.into(),
                                target_port: 80,
                                published_port: 8080,
                                publish_mode: PublishMode::Ingress.into(),
                            },
                            PortConfig {
                                proxy_protocol: Default::default(),
                                protocol: PortProtocol::Udp.into(),
                                target_port: 53,
                                published_port: 5353,
                                publish_mode: PublishMode::Host.into(),
                            },
                        ],
                    }),
                    ..Default::default()
                }),
            }),
            replicas_desired: desired,
            replicas_running: running,
        }
    }

    fn fixture() -> Vec<ServiceRow> {
        service_rows(&[
            summary(
                "s2",
                "web",
                Mode::Replicated(ReplicatedService { replicas: 3 }),
                2,
                3,
            ),
            summary("s1", "agent", Mode::Global(GlobalService {}), 4, 4),
        ])
    }

    #[test]
    fn json_shape() {
        assert_eq!(
            serde_json::to_value(fixture()).unwrap(),
            json!([
                {"id": "s1", "name": "agent", "mode": "global", "image": "nginx:1.27",
                 "replicas_desired": 4, "replicas_running": 4},
                {"id": "s2", "name": "web", "mode": "replicated", "image": "nginx:1.27",
                 "replicas_desired": 3, "replicas_running": 2},
            ])
        );
    }

    #[test]
    fn table() {
        let text = services_table(&fixture());
        let header = text.lines().next().unwrap();
        for column in ["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"] {
            assert!(header.contains(column), "{header}");
        }
        let web = text.lines().find(|l| l.starts_with("s2")).unwrap();
        assert!(web.contains(" 2/3 "), "{web}");
        assert!(web.contains("*:8080->80/tcp, 5353->53/udp (host)"), "{web}");
    }
}
