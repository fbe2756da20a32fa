//! Security plumbing shared by managers, workers and the CLI: certificate roles,
//! join tokens, node identities on disk, and mTLS for tonic servers and channels.
//!
//! # Layout
//! - [`token`]: `RSWTKN-1-<ca digest>-<secret>` join tokens and the CA digest.
//! - [`identity`]: a node's CA, certificate and key, stored as files in a directory.
//! - [`peer`]: who is calling an RPC ([`Caller`]) and role checks for handlers and
//!   interceptors.
//! - [`connect`]: the server TLS configuration and the client channels (node, bootstrap,
//!   pinned, admin) and the local Unix-socket channel.
//!
//! # Trust model
//! `rswarm init` creates a cluster CA. Every certificate it signs carries the node id
//! in CN, the cluster id in O and the [`Role`] in OU; the role is what each RPC checks.
//! A joining node has no certificate yet: it fetches the CA over a
//! [`bootstrap_channel`], checks its digest against the join token, then sends a CSR
//! with the token over a [`pinned_channel`]. Only those join RPCs accept callers
//! without a certificate.

use std::fmt;
use std::str::FromStr;

pub mod connect;
pub mod identity;
pub mod peer;
pub mod token;

pub use connect::{
    MANAGER_SERVER_NAME, TlsError, admin_channel, bootstrap_channel, local_channel, node_channel,
    pinned_channel, server_tls_config,
};
pub use identity::{Identity, IdentityError, new_key_and_csr};
pub use peer::{
    Caller, PeerError, PeerIdentity, caller, manager_interceptor, manager_or_admin_interceptor,
    require_manager, require_manager_or_admin, require_node,
};
pub use token::{JoinToken, TokenError, ca_digest, new_secret, secrets_equal};

/// What a certificate allows its holder to do. Stored in the certificate's
/// OrganizationalUnit so that every server can check it without a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A Raft member running the control plane (and tasks).
    Manager,
    /// A node that only runs tasks.
    Worker,
    /// An operator's client certificate: may call the control API, is not a node.
    Admin,
}

impl Role {
    /// All roles, for iteration in tests and validation.
    pub const ALL: [Role; 3] = [Role::Manager, Role::Worker, Role::Admin];

    /// The OrganizationalUnit value that encodes this role in a certificate.
    pub fn organizational_unit(self) -> &'static str {
        match self {
            Role::Manager => "rswarm-manager",
            Role::Worker => "rswarm-worker",
            Role::Admin => "rswarm-admin",
        }
    }

    /// The role encoded by a certificate's OrganizationalUnit, if it is one of ours.
    pub fn from_organizational_unit(ou: &str) -> Option<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.organizational_unit() == ou)
    }

    /// Lowercase name used in messages ("manager", "worker", "admin").
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Manager => "manager",
            Role::Worker => "worker",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<crate::api::NodeRole> for Role {
    fn from(role: crate::api::NodeRole) -> Role {
        match role {
            crate::api::NodeRole::Worker => Role::Worker,
            crate::api::NodeRole::Manager => Role::Manager,
        }
    }
}

/// Error returned when parsing an unknown role name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected manager, worker or admin")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_round_trip() {
        for role in Role::ALL {
            assert_eq!(
                Role::from_organizational_unit(role.organizational_unit()),
                Some(role)
            );
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert_eq!(Role::from_organizational_unit("manager"), None);
        assert_eq!(Role::from(crate::api::NodeRole::Manager), Role::Manager);
        assert_eq!(Role::from(crate::api::NodeRole::Worker), Role::Worker);
        let err = "root".parse::<Role>().unwrap_err();
        assert!(err.to_string().contains("\"root\""), "{err}");
    }
}
