//! Linux capability names, Docker's default set and the add/drop rules.

use std::collections::BTreeSet;

/// Why a capability list is invalid.
#[derive(Debug, thiserror::Error)]
pub enum CapError {
    /// A name that is no Linux capability.
    #[error("unknown capability {0:?} (expected e.g. CAP_NET_ADMIN or NET_ADMIN, or ALL)")]
    Unknown(String),
}

/// Capability names by number (`CAP_CHOWN` is 0), as far as Linux 6.x defines them.
pub use rswarm_proto::validate::ALL_CAPABILITIES as NAMES;
/// The capabilities Docker gives a container by default.
pub use rswarm_proto::validate::DEFAULT_CAPABILITIES as DOCKER_DEFAULT;

/// The canonical name (`CAP_X`) of `name`, given with or without the prefix, in
/// any case.
pub fn canonical(name: &str) -> Result<&'static str, CapError> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    NAMES
        .iter()
        .find(|n| **n == full)
        .copied()
        .ok_or_else(|| CapError::Unknown(name.to_string()))
}

/// The number of capability `name`.
pub fn number(name: &str) -> Result<u32, CapError> {
    let c = canonical(name)?;
    // `canonical` only returns entries of NAMES, so the position exists.
    Ok(NAMES.iter().position(|n| *n == c).unwrap_or(0) as u32)
}

/// Docker's default set with `drop` removed and then `add` added (Docker's order,
/// so `drop ALL` + `add X` leaves exactly X). `ALL` means every capability.
/// Returns sorted canonical names; an unknown name is an error naming it.
pub fn with_changes(add: &[String], drop: &[String]) -> Result<Vec<String>, CapError> {
    let mut set: BTreeSet<&'static str> = DOCKER_DEFAULT.iter().copied().collect();
    for d in drop {
        if d.trim().eq_ignore_ascii_case("ALL") {
            set.clear();
        } else {
            set.remove(canonical(d)?);
        }
    }
    for a in add {
        if a.trim().eq_ignore_ascii_case("ALL") {
            set.extend(NAMES.iter().copied());
        } else {
            set.insert(canonical(a)?);
        }
    }
    Ok(set.into_iter().map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_accepted_with_or_without_prefix_in_any_case() {
        assert_eq!(canonical("net_admin").unwrap(), "CAP_NET_ADMIN");
        assert_eq!(canonical("CAP_SYS_ADMIN").unwrap(), "CAP_SYS_ADMIN");
        assert_eq!(number("chown").unwrap(), 0);
        assert_eq!(number("CAP_CHECKPOINT_RESTORE").unwrap(), 40);
    }

    #[test]
    fn add_and_drop_apply_to_the_docker_default() {
        let caps = with_changes(&["NET_ADMIN".into()], &["cap_chown".into()]).unwrap();
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
        assert_eq!(caps.len(), DOCKER_DEFAULT.len());
        let only = with_changes(&["kill".into()], &["ALL".into()]).unwrap();
        assert_eq!(only, vec!["CAP_KILL".to_string()]);
        assert_eq!(
            with_changes(&["ALL".into()], &[]).unwrap().len(),
            NAMES.len()
        );
    }

    #[test]
    fn an_unknown_name_is_an_error_naming_it() {
        let err = with_changes(&["NET_ADMN".into()], &[]).unwrap_err();
        assert!(err.to_string().contains("NET_ADMN"), "{err}");
        assert!(with_changes(&[], &["bogus".into()]).is_err());
    }
}
