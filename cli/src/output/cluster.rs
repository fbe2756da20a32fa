//! `rswarm cluster status`.

use rswarm_proto::api::{ClusterStatus, ManagerInfo};
use serde_json::{Value, json};

use super::{names, plain_table, render};

/// The manager's node id, or its Raft id while the node id is not known yet.
fn manager_id(manager: &ManagerInfo) -> String {
    if manager.node_id.is_empty() {
        manager.raft_id.to_string()
    } else {
        manager.node_id.clone()
    }
}

/// `{"cluster_id","raft_term","last_applied","node_id","managers":[{"id","addr",
/// "leader","reachable"}]}`.
pub fn cluster_status_json(status: &ClusterStatus) -> Value {
    let managers: Vec<Value> = status
        .managers
        .iter()
        .map(|m| {
            json!({
                "id": manager_id(m),
                "addr": m.addr,
                "leader": m.leader,
                "reachable": m.reachable,
            })
        })
        .collect();
    json!({
        "cluster_id": status.cluster_id,
        "raft_term": status.raft_term,
        "last_applied": status.last_applied,
        "node_id": status.node_id,
        "managers": managers,
    })
}

/// A summary followed by a table of the managers.
pub fn cluster_status_table(status: &ClusterStatus) -> String {
    let mut table = plain_table(&["MANAGER ID", "ADDR", "STATUS"]);
    for manager in &status.managers {
        let mut id = manager_id(manager);
        if !status.node_id.is_empty() && manager.node_id == status.node_id {
            // Marks the manager that answered, as docker marks the local node.
            id.push_str(" *");
        }
        table.add_row(vec![
            id,
            manager.addr.clone(),
            names::capitalize(names::manager_status(manager.leader, manager.reachable)),
        ]);
    }
    format!(
        "Cluster ID:    {}\nNode ID:       {}\nRaft term:     {}\nLast applied:  {}\n\n{}",
        status.cluster_id,
        status.node_id,
        status.raft_term,
        status.last_applied,
        render(&table)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> ClusterStatus {
        ClusterStatus {
            cluster_id: "c1".into(),
            raft_term: 4,
            last_applied: 17,
            node_id: "node-a".into(),
            managers: vec![
                ManagerInfo {
                    raft_id: 1,
                    node_id: "node-a".into(),
                    addr: "127.0.0.1:4242".into(),
                    leader: true,
                    reachable: true,
                },
                ManagerInfo {
                    raft_id: 2,
                    node_id: String::new(),
                    addr: "127.0.0.2:4242".into(),
                    leader: false,
                    reachable: false,
                },
            ],
        }
    }

    #[test]
    fn json_shape() {
        assert_eq!(
            cluster_status_json(&status()),
            json!({
                "cluster_id": "c1",
                "raft_term": 4,
                "last_applied": 17,
                "node_id": "node-a",
                "managers": [
                    {"id": "node-a", "addr": "127.0.0.1:4242", "leader": true, "reachable": true},
                    {"id": "2", "addr": "127.0.0.2:4242", "leader": false, "reachable": false},
                ],
            })
        );
    }

    #[test]
    fn table() {
        let text = cluster_status_table(&status());
        assert!(text.starts_with("Cluster ID:    c1\n"), "{text}");
        assert!(text.contains("Raft term:     4\n"), "{text}");
        assert!(text.contains("MANAGER ID"), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("node-a *") && l.ends_with("Leader")),
            "{text}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("2 ") && l.ends_with("Unreachable")),
            "{text}"
        );
    }
}
