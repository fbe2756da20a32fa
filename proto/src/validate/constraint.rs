//! Placement constraints (`node.labels.zone==eu`, `node.role!=manager`), parsed once
//! and matched against nodes by the scheduler.

use std::fmt;

use super::ValidationError;
use crate::api::{Node, NodeRole};

/// The node attribute a constraint looks at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConstraintKey {
    /// `node.id`: the node's full id.
    NodeId,
    /// `node.hostname`: the hostname the node reports.
    NodeHostname,
    /// `node.role`: the role the node currently holds (`manager` or `worker`).
    NodeRole,
    /// `node.labels.<name>`: an operator-set label of the node.
    NodeLabel(String),
}

/// How a constraint compares the attribute with its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConstraintOp {
    /// `==`
    Eq,
    /// `!=`
    NotEq,
}

/// One placement constraint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Constraint {
    /// What is compared.
    pub key: ConstraintKey,
    /// How it is compared.
    pub op: ConstraintOp,
    /// What it is compared with (lower case for `node.role`).
    pub value: String,
}

/// The label prefix, matched case-insensitively like the other keys.
const LABEL_PREFIX: &str = "node.labels.";

/// Parses `KEY==VALUE` or `KEY!=VALUE`, spaces around the operator allowed. Keys:
/// `node.id`, `node.hostname`, `node.role` (value `manager` or `worker`),
/// `node.labels.<name>`.
pub fn parse_constraint(input: &str) -> Result<Constraint, ValidationError> {
    let err = |reason: String| ValidationError::Constraint {
        input: input.to_string(),
        reason,
    };
    let (at, op) = [("==", ConstraintOp::Eq), ("!=", ConstraintOp::NotEq)]
        .into_iter()
        .filter_map(|(token, op)| input.find(token).map(|at| (at, op)))
        .min_by_key(|(at, _)| *at)
        .ok_or_else(|| err("missing operator: expected KEY==VALUE or KEY!=VALUE".into()))?;
    let key = input[..at].trim();
    let value = input[at + 2..].trim();
    if value.contains("==") || value.contains("!=") {
        return Err(err("only one operator is allowed".into()));
    }
    if value.is_empty() {
        return Err(err("the value is empty".into()));
    }
    let lower = key.to_ascii_lowercase();
    let key = match lower.as_str() {
        "node.id" => ConstraintKey::NodeId,
        "node.hostname" => ConstraintKey::NodeHostname,
        "node.role" => ConstraintKey::NodeRole,
        _ if lower.starts_with(LABEL_PREFIX) => {
            // The label name keeps its case: labels are stored as given.
            let name = &key[LABEL_PREFIX.len()..];
            if name.is_empty() {
                return Err(err("the label name is empty".into()));
            }
            ConstraintKey::NodeLabel(name.to_string())
        }
        _ => {
            return Err(err(format!(
                "unknown key \"{key}\": expected node.id, node.hostname, node.role or \
                 node.labels.<name>"
            )));
        }
    };
    let value = if key == ConstraintKey::NodeRole {
        let role = value.to_ascii_lowercase();
        if role != "manager" && role != "worker" {
            return Err(err(format!(
                "node.role must be manager or worker, not \"{value}\""
            )));
        }
        role
    } else {
        value.to_string()
    };
    Ok(Constraint { key, op, value })
}

impl Constraint {
    /// Whether `node` satisfies the constraint. Values compare case-insensitively (as
    /// in Swarm); a node without the label satisfies `!=` and fails `==`.
    pub fn matches(&self, node: &Node) -> bool {
        let actual: Option<&str> = match &self.key {
            ConstraintKey::NodeId => Some(&node.id),
            ConstraintKey::NodeHostname => node.description.as_ref().map(|d| d.hostname.as_str()),
            ConstraintKey::NodeRole => match NodeRole::try_from(node.role) {
                Ok(NodeRole::Manager) => Some("manager"),
                Ok(NodeRole::Worker) => Some("worker"),
                Err(_) => None,
            },
            ConstraintKey::NodeLabel(name) => node
                .spec
                .as_ref()
                .and_then(|spec| spec.labels.get(name))
                .map(String::as_str),
        };
        let equal = actual.is_some_and(|actual| actual.to_lowercase() == self.value.to_lowercase());
        match self.op {
            ConstraintOp::Eq => equal,
            ConstraintOp::NotEq => !equal,
        }
    }
}

impl fmt::Display for ConstraintKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NodeId => f.write_str("node.id"),
            Self::NodeHostname => f.write_str("node.hostname"),
            Self::NodeRole => f.write_str("node.role"),
            Self::NodeLabel(name) => write!(f, "{LABEL_PREFIX}{name}"),
        }
    }
}

impl fmt::Display for ConstraintOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Eq => "==",
            Self::NotEq => "!=",
        })
    }
}

/// Prints the canonical form, which [`parse_constraint`] reads back.
impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.key, self.op, self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{NodeDescription, NodeSpec};
    use proptest::prelude::*;

    fn c(key: ConstraintKey, op: ConstraintOp, value: &str) -> Constraint {
        Constraint {
            key,
            op,
            value: value.into(),
        }
    }

    #[test]
    fn accepted() {
        use ConstraintKey::*;
        use ConstraintOp::*;
        let cases = [
            (
                "node.labels.zone==eu",
                c(NodeLabel("zone".into()), Eq, "eu"),
            ),
            (
                "node.labels.zone == eu",
                c(NodeLabel("zone".into()), Eq, "eu"),
            ),
            (
                "node.labels.Zone!=EU",
                c(NodeLabel("Zone".into()), NotEq, "EU"),
            ),
            (
                "Node.Labels.zone==eu",
                c(NodeLabel("zone".into()), Eq, "eu"),
            ),
            ("node.role!=manager", c(NodeRole, NotEq, "manager")),
            ("node.role == Worker", c(NodeRole, Eq, "worker")),
            ("node.hostname==host-1", c(NodeHostname, Eq, "host-1")),
            ("node.id!=abc", c(NodeId, NotEq, "abc")),
            (
                "node.labels.a.b==x=y",
                c(NodeLabel("a.b".into()), Eq, "x=y"),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_constraint(input), Ok(expected), "{input:?}");
        }
    }

    #[test]
    fn refused() {
        for bad in [
            "",
            "node.role",
            "node.role=manager",
            "node.role==",
            "node.role== ",
            "node.role==admin",
            "node.labels.==eu",
            "node.labels==eu",
            "engine.labels.x==y",
            "node.name==x",
            "==x",
            "node.id==a==b",
            "node.id==a!=b",
        ] {
            let err = parse_constraint(bad).unwrap_err();
            assert!(matches!(err, ValidationError::Constraint { .. }), "{bad:?}");
            assert!(err.to_string().contains(&format!("\"{bad}\"")), "{err}");
        }
        assert_eq!(
            parse_constraint("node.role==admin")
                .unwrap_err()
                .to_string(),
            "invalid constraint \"node.role==admin\": node.role must be manager or worker, \
             not \"admin\""
        );
        assert!(
            parse_constraint("node.name==x")
                .unwrap_err()
                .to_string()
                .contains("unknown key \"node.name\"")
        );
    }

    fn node(id: &str, hostname: &str, role: NodeRole, labels: &[(&str, &str)]) -> Node {
        Node {
            id: id.into(),
            role: role.into(),
            description: Some(NodeDescription {
                hostname: hostname.into(),
                ..Default::default()
            }),
            spec: Some(NodeSpec {
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn matching() {
        let eu_worker = node("n1", "host-1", NodeRole::Worker, &[("zone", "eu")]);
        let manager = node("n2", "Host-2", NodeRole::Manager, &[]);
        let check = |expr: &str, n: &Node| parse_constraint(expr).unwrap().matches(n);

        assert!(check("node.labels.zone==eu", &eu_worker));
        assert!(check("node.labels.zone==EU", &eu_worker));
        assert!(!check("node.labels.zone==us", &eu_worker));
        assert!(check("node.labels.zone!=us", &eu_worker));
        // A missing label fails == and satisfies !=.
        assert!(!check("node.labels.zone==eu", &manager));
        assert!(check("node.labels.zone!=eu", &manager));
        assert!(check("node.role==worker", &eu_worker));
        assert!(!check("node.role==worker", &manager));
        assert!(check("node.role!=worker", &manager));
        assert!(check("node.hostname==host-2", &manager));
        assert!(check("node.id==n1", &eu_worker));
        assert!(!check("node.id==n", &eu_worker));
        let bare = Node::default();
        assert!(!check("node.hostname==x", &bare));
        assert!(check("node.hostname!=x", &bare));
    }

    fn key_strategy() -> impl Strategy<Value = ConstraintKey> {
        prop_oneof![
            Just(ConstraintKey::NodeId),
            Just(ConstraintKey::NodeHostname),
            "[a-zA-Z0-9_.-]{1,12}".prop_map(ConstraintKey::NodeLabel),
        ]
    }

    proptest! {
        #[test]
        fn display_round_trips(
            key in key_strategy(),
            eq in any::<bool>(),
            value in "[a-zA-Z0-9_.-]{0,10}[a-zA-Z0-9]",
        ) {
            let op = if eq { ConstraintOp::Eq } else { ConstraintOp::NotEq };
            let constraint = Constraint { key, op, value };
            prop_assert_eq!(parse_constraint(&constraint.to_string()), Ok(constraint));
        }

        #[test]
        fn role_round_trips(manager in any::<bool>(), eq in any::<bool>()) {
            let value = if manager { "manager" } else { "worker" };
            let op = if eq { ConstraintOp::Eq } else { ConstraintOp::NotEq };
            let constraint = Constraint { key: ConstraintKey::NodeRole, op, value: value.into() };
            prop_assert_eq!(parse_constraint(&constraint.to_string()), Ok(constraint));
        }
    }
}
