//! The control API's errors and their one mapping to gRPC statuses.

use rswarm_proto::validate::ValidationError;
use tonic::Status;

use crate::store::{Kind, ProposeError, StoreError};

/// Why a control request failed. Nothing was written when one of these is returned.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No object matches the reference.
    #[error("{kind} {reference:?} not found")]
    NotFound {
        /// What was looked for.
        kind: Kind,
        /// The id, id prefix or name given.
        reference: String,
    },
    /// Several objects match an id prefix or hostname.
    #[error("{kind} reference {reference:?} is ambiguous: it matches {matches}")]
    Ambiguous {
        /// What was looked for.
        kind: Kind,
        /// The reference given.
        reference: String,
        /// The matching ids, comma-separated.
        matches: String,
    },
    /// Bad user input.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The request is valid but the cluster's state forbids it.
    #[error("{0}")]
    Refused(String),
    /// The store refused the write.
    #[error(transparent)]
    Store(StoreError),
    /// The write could not be committed.
    #[error("{0}")]
    Unavailable(String),
    /// The cluster has not been initialised (no cluster object).
    #[error("the cluster object is missing: this manager has not caught up with the cluster yet")]
    NoCluster,
}

impl From<ProposeError> for ControlError {
    fn from(err: ProposeError) -> Self {
        match err {
            ProposeError::Rejected(e) => ControlError::Store(e),
            ProposeError::Unavailable(e) => ControlError::Unavailable(e),
        }
    }
}

impl From<ControlError> for Status {
    fn from(err: ControlError) -> Status {
        let msg = err.to_string();
        match err {
            ControlError::NotFound { .. } => Status::not_found(msg),
            ControlError::Ambiguous { .. } | ControlError::Invalid(_) => {
                Status::invalid_argument(msg)
            }
            ControlError::Refused(_) => Status::failed_precondition(msg),
            ControlError::Store(StoreError::NotFound { .. }) => Status::not_found(msg),
            ControlError::Store(StoreError::AlreadyExists { .. })
            | ControlError::Store(StoreError::NameConflict { .. }) => Status::already_exists(msg),
            ControlError::Store(StoreError::VersionConflict { .. }) => Status::aborted(msg),
            ControlError::Unavailable(_) | ControlError::NoCluster => Status::unavailable(msg),
        }
    }
}

impl From<ProposeError> for Status {
    fn from(err: ProposeError) -> Status {
        ControlError::from(err).into()
    }
}
