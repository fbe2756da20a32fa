//! Finding objects the way Docker users name them: full id, name/hostname, or an
//! unambiguous id prefix.

use rswarm_proto::api::{Node, Service};

use super::ControlError;
use crate::store::{Kind, ReadTx};

/// Resolves a node by id, hostname or id prefix.
pub fn node<'a>(tx: &ReadTx<'a>, reference: &str) -> Result<&'a Node, ControlError> {
    if let Some(n) = tx.node(reference) {
        return Ok(n);
    }
    let by_name: Vec<&Node> = tx
        .nodes()
        .filter(|n| {
            n.description
                .as_ref()
                .is_some_and(|d| d.hostname == reference)
        })
        .collect();
    let candidates = if by_name.is_empty() {
        tx.nodes()
            .filter(|n| !reference.is_empty() && n.id.starts_with(reference))
            .collect()
    } else {
        by_name
    };
    one(Kind::Node, reference, candidates, |n| &n.id)
}

/// Resolves a service by id, name or id prefix.
pub fn service<'a>(tx: &ReadTx<'a>, reference: &str) -> Result<&'a Service, ControlError> {
    if let Some(s) = tx
        .service(reference)
        .or_else(|| tx.service_by_name(reference))
    {
        return Ok(s);
    }
    let candidates = tx
        .services()
        .filter(|s| !reference.is_empty() && s.id.starts_with(reference))
        .collect();
    one(Kind::Service, reference, candidates, |s| &s.id)
}

fn one<'a, T>(
    kind: Kind,
    reference: &str,
    candidates: Vec<&'a T>,
    id: impl Fn(&T) -> &String,
) -> Result<&'a T, ControlError> {
    match candidates.as_slice() {
        [single] => Ok(single),
        [] => Err(ControlError::NotFound {
            kind,
            reference: reference.to_owned(),
        }),
        many => Err(ControlError::Ambiguous {
            kind,
            reference: reference.to_owned(),
            matches: many
                .iter()
                .map(|o| id(o).as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}
