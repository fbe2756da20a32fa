//! Parsing and validation of user input, shared by the CLI and the managers so that
//! a bad value gets the same message whichever side catches it first.
//!
//! Everything here is a pure function: no I/O, no clock, no randomness.

mod constraint;
mod container;
mod image;
mod publish;
mod quantity;
mod spec;

use crate::api::NodeAvailability;

pub use constraint::{Constraint, ConstraintKey, ConstraintOp, parse_constraint};
pub use container::{
    ALL_CAPABILITIES, DEFAULT_CAPABILITIES, check_volume_name, parse_capability, parse_mount,
    parse_signal, parse_user, signal_number, validate_container,
};
pub use image::normalize_image_name;
pub use publish::{
    DYNAMIC_PORTS, MAX_RANGE, parse_publish, parse_publish_range, parse_published,
    parse_published_range,
};
pub use quantity::{format_cpus, format_size, parse_cpus, parse_size};
pub use spec::validate_service_spec;

/// Why a piece of user input was refused. Every message names the offending input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// A replica count that is not a non-negative whole number.
    #[error("invalid replicas \"{0}\": must be a whole number ≥ 0")]
    Replicas(String),
    /// A memory size that does not parse or is not positive.
    #[error("invalid size \"{input}\": {reason}")]
    Size {
        /// The input as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A CPU count that does not parse or is not positive.
    #[error("invalid CPU count \"{input}\": {reason}")]
    Cpus {
        /// The input as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An environment entry that is not `KEY=VALUE`.
    #[error("invalid environment variable \"{input}\": {reason}")]
    Env {
        /// The input as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A label entry (`KEY=VALUE` or `KEY`) with a bad key.
    #[error("invalid label \"{input}\": {reason}")]
    Label {
        /// The input as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A node availability other than `active`, `pause` or `drain`.
    #[error("invalid availability \"{0}\": must be one of active, pause, drain")]
    Availability(String),
    /// A port publication that does not parse.
    #[error("invalid port publication \"{input}\": {reason}")]
    Publish {
        /// The input as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A placement constraint that does not parse.
    #[error("invalid constraint \"{input}\": {reason}")]
    Constraint {
        /// The input as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A service name that breaks Docker's naming rules.
    #[error("invalid service name \"{input}\": {reason}")]
    ServiceName {
        /// The input as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `--mount` value that does not parse or names a bad path.
    #[error("invalid mount \"{input}\": {reason}")]
    Mount {
        /// The input as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A capability name the kernel does not know.
    #[error(
        "invalid capability \"{0}\": not a Linux capability (e.g. NET_ADMIN, CAP_SYS_TIME, ALL)"
    )]
    Capability(String),
    /// A signal name or number that is not a Linux signal.
    #[error("invalid signal \"{0}\": expected a name like SIGTERM or TERM, or a number 1-31")]
    Signal(String),
    /// A `--user` value that is not `UID[:GID]` or `NAME[:GROUP]`.
    #[error("invalid user \"{input}\": {reason}")]
    User {
        /// The input as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An image reference that is not `NAME[:TAG]`.
    #[error("invalid image name \"{input}\": {reason}")]
    ImageName {
        /// The input as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A service spec without a container image.
    #[error("invalid service spec: an image is required")]
    MissingImage,
    /// A service spec that is neither replicated nor global.
    #[error("invalid service spec: a mode (replicated or global) is required")]
    MissingMode,
    /// A port number outside 1..=65535 in a stored port configuration.
    #[error("invalid {which} port {port}: must be between 1 and 65535")]
    PortRange {
        /// `published` or `target`.
        which: &'static str,
        /// The number given.
        port: u32,
    },
    /// A host-mode port without its published port (only ingress ports get one
    /// assigned).
    #[error("the host-mode port for target port {target} needs a published port")]
    HostPortMissing {
        /// Its target port.
        target: u32,
    },
    /// An ingress port on a service without a virtual IP.
    #[error(
        "the port for target port {target} is published in ingress mode, which needs the \
         service's virtual IP: with endpoint mode dnsrr publish it with mode=host"
    )]
    DnsrrIngress {
        /// Its target port.
        target: u32,
    },
    /// Two port configurations publish the same port and protocol.
    #[error("port {published}/{protocol} is published more than once")]
    DuplicatePort {
        /// The published port.
        published: u32,
        /// `tcp` or `udp`.
        protocol: &'static str,
    },
    /// An enum field holding a number the protocol does not define.
    #[error("invalid {field}: unknown value {value}")]
    UnknownEnumValue {
        /// The field's name.
        field: &'static str,
        /// The number found.
        value: i32,
    },
    /// A resource amount below what a container can run with.
    #[error("invalid {what} {value}: must be at least {minimum}")]
    ResourceTooSmall {
        /// e.g. `memory limit`.
        what: &'static str,
        /// The amount given, formatted.
        value: String,
        /// The smallest accepted amount, formatted.
        minimum: &'static str,
    },
    /// A reservation larger than the limit on the same resource.
    #[error("invalid resources: {what} reservation {reservation} is above the limit {limit}")]
    ReservationAboveLimit {
        /// `CPU` or `memory`.
        what: &'static str,
        /// The reservation, formatted.
        reservation: String,
        /// The limit, formatted.
        limit: String,
    },
}

/// Bad input is the caller's mistake: `invalid_argument`, with the message as is, so
/// that the CLI shows the same text whichever side refused the input.
impl From<ValidationError> for tonic::Status {
    fn from(err: ValidationError) -> Self {
        tonic::Status::invalid_argument(err.to_string())
    }
}

/// Parses a replica count: a whole number ≥ 0 (`"3"`, `"0"`).
pub fn parse_replicas(input: &str) -> Result<u64, ValidationError> {
    let s = input.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ValidationError::Replicas(input.to_string()));
    }
    s.parse()
        .map_err(|_| ValidationError::Replicas(input.to_string()))
}

/// Parses an environment entry `KEY=VALUE` (the value may be empty and may contain `=`).
pub fn parse_env(input: &str) -> Result<(String, String), ValidationError> {
    let err = |reason: &str| ValidationError::Env {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    let (key, value) = input
        .split_once('=')
        .ok_or_else(|| err("expected KEY=VALUE"))?;
    check_key(key).map_err(err)?;
    Ok((key.to_string(), value.to_string()))
}

/// Parses a label entry: `KEY=VALUE`, or `KEY` alone for an empty value (as Docker's
/// `--label-add foo` does).
pub fn parse_label(input: &str) -> Result<(String, String), ValidationError> {
    let (key, value) = input.split_once('=').unwrap_or((input, ""));
    check_key(key).map_err(|reason| ValidationError::Label {
        input: input.to_string(),
        reason: reason.to_string(),
    })?;
    Ok((key.to_string(), value.to_string()))
}

/// Checks a label key given alone (for removal): non-empty, no spaces, no `=`.
pub fn parse_label_key(input: &str) -> Result<String, ValidationError> {
    let err = |reason: &str| ValidationError::Label {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    if input.contains('=') {
        return Err(err("a label key must not contain '='"));
    }
    check_key(input).map_err(err)?;
    Ok(input.to_string())
}

/// The rules shared by environment and label keys.
fn check_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("the key is empty");
    }
    if key.chars().any(char::is_whitespace) {
        return Err("the key must not contain spaces");
    }
    Ok(())
}

/// Parses a node availability: `active`, `pause` or `drain` (any case).
pub fn parse_availability(input: &str) -> Result<NodeAvailability, ValidationError> {
    match input.trim().to_ascii_lowercase().as_str() {
        "active" => Ok(NodeAvailability::Active),
        "pause" => Ok(NodeAvailability::Pause),
        "drain" => Ok(NodeAvailability::Drain),
        _ => Err(ValidationError::Availability(input.to_string())),
    }
}

/// Checks a service name against Docker's rules: 1 to 63 characters,
/// `[a-zA-Z0-9][a-zA-Z0-9_.-]*`. Names end up in DNS, hence the length limit.
pub fn validate_service_name(input: &str) -> Result<(), ValidationError> {
    let err = |reason: &str| ValidationError::ServiceName {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    let mut chars = input.chars();
    let Some(first) = chars.next() else {
        return Err(err("a name is required"));
    };
    if input.chars().count() > 63 {
        return Err(err("must be at most 63 characters"));
    }
    if !first.is_ascii_alphanumeric() {
        return Err(err("must start with a letter or a digit"));
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        return Err(err("may only contain letters, digits, '_', '.' and '-'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn becomes_invalid_argument() {
        let status = tonic::Status::from(ValidationError::Replicas("-1".into()));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "invalid replicas \"-1\": must be a whole number ≥ 0"
        );
    }

    #[test]
    fn replicas_accepted() {
        assert_eq!(parse_replicas("0"), Ok(0));
        assert_eq!(parse_replicas("3"), Ok(3));
        assert_eq!(parse_replicas(" 12 "), Ok(12));
        assert_eq!(parse_replicas("18446744073709551615"), Ok(u64::MAX));
    }

    #[test]
    fn replicas_refused() {
        for bad in [
            "-1",
            "abc",
            "",
            " ",
            "1.5",
            "+3",
            "18446744073709551616",
            "3x",
        ] {
            assert_eq!(
                parse_replicas(bad),
                Err(ValidationError::Replicas(bad.to_string())),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_replicas("-1").unwrap_err().to_string(),
            "invalid replicas \"-1\": must be a whole number ≥ 0"
        );
    }

    #[test]
    fn env_accepted() {
        assert_eq!(parse_env("K=V"), Ok(("K".into(), "V".into())));
        assert_eq!(parse_env("K="), Ok(("K".into(), String::new())));
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert_eq!(
            parse_env("A=with space"),
            Ok(("A".into(), "with space".into()))
        );
    }

    #[test]
    fn env_refused() {
        for bad in ["K", "=V", "", "MY KEY=v", " K=v", "K\t=v"] {
            let err = parse_env(bad).unwrap_err();
            assert!(matches!(err, ValidationError::Env { .. }), "{bad:?}");
            assert!(err.to_string().contains(&format!("\"{bad}\"")), "{err}");
        }
        assert_eq!(
            parse_env("K").unwrap_err().to_string(),
            "invalid environment variable \"K\": expected KEY=VALUE"
        );
    }

    #[test]
    fn labels() {
        assert_eq!(parse_label("zone=eu"), Ok(("zone".into(), "eu".into())));
        assert_eq!(parse_label("ssd"), Ok(("ssd".into(), String::new())));
        assert_eq!(parse_label("a=b=c"), Ok(("a".into(), "b=c".into())));
        for bad in ["", "=eu", "my zone=eu"] {
            assert!(
                matches!(parse_label(bad), Err(ValidationError::Label { .. })),
                "{bad:?}"
            );
        }
        assert_eq!(parse_label_key("zone"), Ok("zone".into()));
        for bad in ["", "zone=eu", "a b"] {
            assert!(parse_label_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn availability() {
        assert_eq!(parse_availability("active"), Ok(NodeAvailability::Active));
        assert_eq!(parse_availability("Pause"), Ok(NodeAvailability::Pause));
        assert_eq!(parse_availability("DRAIN"), Ok(NodeAvailability::Drain));
        for bad in ["", "paused", "up"] {
            assert_eq!(
                parse_availability(bad),
                Err(ValidationError::Availability(bad.into()))
            );
        }
        assert_eq!(
            parse_availability("paused").unwrap_err().to_string(),
            "invalid availability \"paused\": must be one of active, pause, drain"
        );
    }

    #[test]
    fn service_names() {
        for good in ["web", "a", "Web-1", "my_svc.v2", "0abc", &"a".repeat(63)] {
            assert_eq!(validate_service_name(good), Ok(()), "{good:?}");
        }
        for bad in [
            "",
            "-web",
            "_web",
            ".web",
            "web app",
            "web/1",
            "wéb",
            &"a".repeat(64),
        ] {
            let err = validate_service_name(bad).unwrap_err();
            assert!(
                matches!(err, ValidationError::ServiceName { .. }),
                "{bad:?}"
            );
        }
        assert_eq!(
            validate_service_name("-web").unwrap_err().to_string(),
            "invalid service name \"-web\": must start with a letter or a digit"
        );
    }
}
