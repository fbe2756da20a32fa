//! `rswarm node ls`.

use rswarm_proto::api::{ClusterStatus, ManagerInfo, Node};
use serde::Serialize;

use super::{names, plain_table, render};

/// One node as `node ls` shows it; also its JSON shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeRow {
    /// Node id.
    pub id: String,
    /// Reported hostname.
    pub hostname: String,
    /// `manager` or `worker`.
    pub role: &'static str,
    /// `unknown`, `down`, `ready` or `disconnected`.
    pub status: &'static str,
    /// `active`, `pause` or `drain`.
    pub availability: &'static str,
    /// Address the node's daemon is reachable on.
    pub addr: String,
    /// `leader`, `reachable` or `unreachable` for managers; `None` for workers.
    pub manager_status: Option<&'static str>,
    /// Published ports and VIPs the node's proxy cannot listen on, with why.
    pub port_errors: Vec<String>,
}

/// Builds the rows, sorted by hostname. The Node object has no leader flag, so the
/// manager status comes from the cluster status, matched by node id (or by Raft id
/// for a manager whose node id the Raft group does not know yet).
pub fn node_rows(nodes: &[Node], cluster: &ClusterStatus) -> Vec<NodeRow> {
    let mut rows: Vec<NodeRow> = nodes
        .iter()
        .map(|node| {
            let is_manager = names::role(node.role) == "manager";
            let manager_status = is_manager.then(|| {
                find_manager(node, &cluster.managers).map_or("unreachable", |m| {
                    names::manager_status(m.leader, m.reachable)
                })
            });
            NodeRow {
                id: node.id.clone(),
                hostname: node
                    .description
                    .as_ref()
                    .map(|d| d.hostname.clone())
                    .unwrap_or_default(),
                role: names::role(node.role),
                status: names::node_state(node.status.as_ref().map_or(0, |s| s.state)),
                availability: names::availability(node.spec.as_ref().map_or(0, |s| s.availability)),
                addr: node_addr(node),
                manager_status,
                port_errors: node
                    .status
                    .as_ref()
                    .map(|s| s.port_errors.clone())
                    .unwrap_or_default(),
            }
        })
        .collect();
    rows.sort_by(|a, b| (&a.hostname, &a.id).cmp(&(&b.hostname, &b.id)));
    rows
}

/// The address the node reports, or for a manager that has not reported yet, the
/// one the Raft group knows it by.
fn node_addr(node: &Node) -> String {
    let reported = node.status.as_ref().map_or("", |s| s.addr.as_str());
    let raft = node.manager_status.as_ref().map_or("", |m| m.addr.as_str());
    if reported.is_empty() { raft } else { reported }.to_string()
}

/// The cluster-status entry describing `node`.
fn find_manager<'a>(node: &Node, managers: &'a [ManagerInfo]) -> Option<&'a ManagerInfo> {
    let raft_id = node.manager_status.as_ref().map(|m| m.raft_id);
    managers.iter().find(|m| {
        if m.node_id.is_empty() {
            raft_id.is_some_and(|id| id != 0 && id == m.raft_id)
        } else {
            m.node_id == node.id
        }
    })
}

/// Docker's `node ls` table; `self_id` (the node that answered) is marked with `*`.
/// A node whose proxy cannot serve some ports says how many in its status
/// (`node inspect` shows why).
pub fn nodes_table(rows: &[NodeRow], self_id: &str) -> String {
    let mut table = plain_table(&[
        "ID",
        "HOSTNAME",
        "STATUS",
        "AVAILABILITY",
        "MANAGER STATUS",
        "ADDR",
    ]);
    for row in rows {
        let id = if !self_id.is_empty() && row.id == self_id {
            format!("{} *", row.id)
        } else {
            row.id.clone()
        };
        let mut status = names::capitalize(row.status);
        match row.port_errors.len() {
            0 => {}
            1 => status.push_str(" (1 port not served)"),
            n => status.push_str(&format!(" ({n} ports not served)")),
        }
        table.add_row(vec![
            id,
            row.hostname.clone(),
            status,
            names::capitalize(row.availability),
            row.manager_status
                .map(names::capitalize)
                .unwrap_or_default(),
            row.addr.clone(),
        ]);
    }
    render(&table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rswarm_proto::api::{
        ManagerStatus, NodeAvailability, NodeDescription, NodeRole, NodeSpec, NodeState, NodeStatus,
    };
    use serde_json::json;

    fn node(id: &str, hostname: &str, role: NodeRole, raft_id: u64) -> Node {
        Node {
            id: id.into(),
            role: role.into(),
            spec: Some(NodeSpec {
                availability: NodeAvailability::Active.into(),
                ..Default::default()
            }),
            description: Some(NodeDescription {
                hostname: hostname.into(),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                state: NodeState::Ready.into(),
                message: String::new(),
                addr: format!("127.0.0.{raft_id}:4242"),
                port_errors: Vec::new(),
            }),
            manager_status: (role == NodeRole::Manager).then(|| ManagerStatus {
                raft_id,
                addr: format!("127.0.0.{raft_id}:4242"),
            }),
            ..Default::default()
        }
    }

    fn manager(raft_id: u64, node_id: &str, leader: bool, reachable: bool) -> ManagerInfo {
        ManagerInfo {
            raft_id,
            node_id: node_id.into(),
            addr: String::new(),
            leader,
            reachable,
        }
    }

    fn fixture() -> Vec<NodeRow> {
        let mut drained = node("w1", "worker-1", NodeRole::Worker, 4);
        drained.spec.as_mut().unwrap().availability = NodeAvailability::Drain.into();
        drained.status.as_mut().unwrap().state = NodeState::Down.into();
        let mut blocked = node("m2", "manager-2", NodeRole::Manager, 2);
        blocked.status.as_mut().unwrap().port_errors =
            vec!["cannot listen on tcp 0.0.0.0:8080: Address already in use (os error 98)".into()];
        let nodes = [
            blocked,
            drained,
            node("m1", "manager-1", NodeRole::Manager, 1),
            node("m3", "manager-3", NodeRole::Manager, 3),
            node("m9", "manager-9", NodeRole::Manager, 9),
        ];
        let cluster = ClusterStatus {
            managers: vec![
                manager(1, "m1", true, true),
                manager(2, "m2", false, true),
                // Not yet known by node id: matched by Raft id.
                manager(3, "", false, false),
            ],
            node_id: "m1".into(),
            ..Default::default()
        };
        node_rows(&nodes, &cluster)
    }

    #[test]
    fn json_shape() {
        let value = serde_json::to_value(fixture()).unwrap();
        assert_eq!(
            value[0],
            json!({
                "id": "m1",
                "hostname": "manager-1",
                "role": "manager",
                "status": "ready",
                "availability": "active",
                "addr": "127.0.0.1:4242",
                "manager_status": "leader",
                "port_errors": [],
            })
        );
        let statuses: Vec<&Value> = value
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r["manager_status"])
            .collect();
        assert_eq!(
            statuses,
            [
                &json!("leader"),
                &json!("reachable"),
                &json!("unreachable"),
                &json!("unreachable"),
                &Value::Null
            ]
        );
        assert_eq!(
            value[1]["port_errors"],
            json!(["cannot listen on tcp 0.0.0.0:8080: Address already in use (os error 98)"])
        );
        assert_eq!(value[4]["role"], "worker");
        assert_eq!(value[4]["status"], "down");
        assert_eq!(value[4]["availability"], "drain");
    }

    #[test]
    fn addr_falls_back_to_the_raft_address() {
        let mut fresh = node("m5", "manager-5", NodeRole::Manager, 5);
        fresh.status = None;
        let rows = node_rows(&[fresh], &ClusterStatus::default());
        assert_eq!(rows[0].addr, "127.0.0.5:4242");
        assert_eq!(rows[0].status, "unknown");
    }

    use serde_json::Value;

    #[test]
    fn table() {
        let text = nodes_table(&fixture(), "m1");
        let mut lines = text.lines();
        let header = lines.next().unwrap();
        for column in [
            "ID",
            "HOSTNAME",
            "STATUS",
            "AVAILABILITY",
            "MANAGER STATUS",
            "ADDR",
        ] {
            assert!(header.contains(column), "{header}");
        }
        let first = lines.next().unwrap();
        assert!(first.starts_with("m1 *"), "{first}");
        assert!(
            first.contains("Ready") && first.contains("Leader"),
            "{first}"
        );
        assert!(!first.contains("not served"), "{first}");
        let blocked = text.lines().find(|l| l.starts_with("m2")).unwrap();
        assert!(blocked.contains("Ready (1 port not served)"), "{blocked}");
        let worker = text.lines().find(|l| l.starts_with("w1")).unwrap();
        assert!(
            worker.contains("Down") && worker.contains("Drain"),
            "{worker}"
        );
        assert!(
            !worker.contains("Leader") && !worker.contains("Reachable"),
            "{worker}"
        );
    }
}
