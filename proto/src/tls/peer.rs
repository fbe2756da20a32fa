//! Who is calling: the identity in a verified client certificate, or the local admin
//! on the Unix socket; and the role checks RPC handlers and interceptors apply.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, OnceLock, PoisonError};

use rustls_pki_types::CertificateDer;
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Status};
use x509_parser::prelude::{AttributeTypeAndValue, FromDer, X509Certificate};

use super::Role;

/// Why a certificate does not describe an rswarm peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// The bytes are not an X.509 certificate.
    #[error("certificate cannot be parsed: {0}")]
    Certificate(String),
    /// A subject attribute is missing, repeated or not a string.
    #[error("certificate subject needs exactly one {0}")]
    Subject(&'static str),
    /// The OrganizationalUnit is not one of the rswarm roles.
    #[error("certificate OrganizationalUnit {0:?} is not an rswarm role")]
    UnknownRole(String),
}

/// The identity a cluster certificate carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerIdentity {
    /// From the OrganizationalUnit.
    pub role: Role,
    /// From the CommonName: the node id, or "admin" for an admin certificate.
    pub node_id: String,
    /// From the Organization.
    pub cluster_id: String,
}

impl PeerIdentity {
    /// Reads role, node id and cluster id from a certificate in DER.
    ///
    /// This does not verify the certificate: it is meant for certificates that the TLS
    /// handshake has already verified against the cluster CA.
    pub fn from_der(der: &CertificateDer<'_>) -> Result<PeerIdentity, PeerError> {
        let (_, cert) = X509Certificate::from_der(der.as_ref())
            .map_err(|e| PeerError::Certificate(e.to_string()))?;
        let subject = cert.subject();
        let ou = single(subject.iter_organizational_unit(), "OrganizationalUnit")?;
        let role =
            Role::from_organizational_unit(ou).ok_or_else(|| PeerError::UnknownRole(ou.into()))?;
        Ok(PeerIdentity {
            role,
            node_id: single(subject.iter_common_name(), "CommonName")?.to_string(),
            cluster_id: single(subject.iter_organization(), "Organization")?.to_string(),
        })
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.role, self.node_id)
    }
}

/// The one string value of a subject attribute.
fn single<'a: 'b, 'b>(
    mut values: impl Iterator<Item = &'b AttributeTypeAndValue<'a>>,
    name: &'static str,
) -> Result<&'a str, PeerError> {
    match (values.next(), values.next()) {
        (Some(v), None) => v
            .as_str()
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or(PeerError::Subject(name)),
        _ => Err(PeerError::Subject(name)),
    }
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A process on this node, over the Unix socket (mode 0600, so root): the local
    /// operator, trusted like an admin certificate.
    Local,
    /// A peer that presented a certificate signed by the cluster CA.
    Peer(PeerIdentity),
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Local => f.write_str("local socket"),
            Caller::Peer(p) => p.fmt(f),
        }
    }
}

impl Caller {
    /// Ok for a manager, an admin certificate or the local socket: the control API.
    pub fn require_manager_or_admin(&self) -> Result<(), Status> {
        match self {
            Caller::Local => Ok(()),
            Caller::Peer(p) if matches!(p.role, Role::Manager | Role::Admin) => Ok(()),
            Caller::Peer(p) => Err(Status::permission_denied(format!(
                "this call needs a manager or admin certificate; caller is {p}"
            ))),
        }
    }

    /// The caller's identity if it is a manager: the Raft API, where only Raft members
    /// may speak, not even the local admin.
    pub fn require_manager(&self) -> Result<&PeerIdentity, Status> {
        match self {
            Caller::Peer(p) if p.role == Role::Manager => Ok(p),
            other => Err(Status::permission_denied(format!(
                "this call needs a manager certificate; caller is {other}"
            ))),
        }
    }

    /// The caller's identity if it is a node (manager or worker): the dispatcher,
    /// where the certificate's node id says whose tasks are concerned.
    pub fn require_node(&self) -> Result<&PeerIdentity, Status> {
        match self {
            Caller::Peer(p) if matches!(p.role, Role::Manager | Role::Worker) => Ok(p),
            other => Err(Status::permission_denied(format!(
                "this call needs a node certificate; caller is {other}"
            ))),
        }
    }
}

/// Parsed identities by certificate bytes: at most this many are kept.
const IDENTITY_CACHE_SIZE: usize = 1024;

/// [`PeerIdentity::from_der`] through a cache: a client presents the same certificate
/// on every call of a connection, and parsing it again for every request costs more
/// than the rest of the authorization. The same bytes always give the same identity.
fn identity_of(der: &CertificateDer<'_>) -> Result<PeerIdentity, PeerError> {
    static CACHE: OnceLock<Mutex<HashMap<Vec<u8>, PeerIdentity>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let lock = || cache.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(identity) = lock().get(der.as_ref()) {
        return Ok(identity.clone());
    }
    let identity = PeerIdentity::from_der(der)?;
    let mut cached = lock();
    if cached.len() >= IDENTITY_CACHE_SIZE {
        // Certificates are renewed rarely: starting over is simpler than an LRU.
        cached.clear();
    }
    cached.insert(der.as_ref().to_vec(), identity.clone());
    Ok(identity)
}

/// Who made `req`.
///
/// - a client certificate (already verified against the cluster CA by the handshake,
///   see [`server_tls_config`](super::server_tls_config)) → [`Caller::Peer`];
/// - a Unix-socket connection → [`Caller::Local`];
/// - TCP without a certificate → `unauthenticated`.
///
/// Works on `Request<()>` inside a tonic interceptor as well as in handlers: tonic puts
/// the connection info in the request extensions before either runs.
///
/// The Unix-socket server must be a separate `Server` without TLS: tonic would wrap
/// the socket's connection info in TLS info and the caller would not be seen as local.
pub fn caller<T>(req: &Request<T>) -> Result<Caller, Status> {
    if let Some(certs) = req.peer_certs()
        && let Some(leaf) = certs.first()
    {
        return identity_of(leaf).map(Caller::Peer).map_err(|e| {
            Status::unauthenticated(format!("client certificate is not an rswarm identity: {e}"))
        });
    }
    if req.extensions().get::<UdsConnectInfo>().is_some() {
        return Ok(Caller::Local);
    }
    Err(Status::unauthenticated(
        "a client certificate signed by the cluster CA is required for this call \
         (only the join calls of the node CA service accept callers without one)",
    ))
}

/// The caller of `req` if it may use the control API (manager, admin or local socket).
pub fn require_manager_or_admin<T>(req: &Request<T>) -> Result<Caller, Status> {
    let c = caller(req)?;
    c.require_manager_or_admin()?;
    Ok(c)
}

/// The caller of `req` if it is a manager (for the Raft API).
pub fn require_manager<T>(req: &Request<T>) -> Result<PeerIdentity, Status> {
    caller(req)?.require_manager().cloned()
}

/// The caller of `req` if it is a node, manager or worker (for the dispatcher).
pub fn require_node<T>(req: &Request<T>) -> Result<PeerIdentity, Status> {
    caller(req)?.require_node().cloned()
}

/// A tonic interceptor that lets only managers through, e.g.
/// `RaftTransportServer::with_interceptor(svc, manager_interceptor)`.
pub fn manager_interceptor(req: Request<()>) -> Result<Request<()>, Status> {
    require_manager(&req)?;
    Ok(req)
}

/// A tonic interceptor for the control API: managers, admins and the local socket.
pub fn manager_or_admin_interceptor(req: Request<()>) -> Result<Request<()>, Status> {
    require_manager_or_admin(&req)?;
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(role: Role) -> Caller {
        Caller::Peer(PeerIdentity {
            role,
            node_id: "n1".into(),
            cluster_id: "c1".into(),
        })
    }

    #[test]
    fn plain_request_is_unauthenticated() {
        let err = caller(&Request::new(())).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert!(err.message().contains("client certificate"), "{err}");
    }

    #[test]
    fn unix_socket_request_is_local() {
        let mut req = Request::new(());
        req.extensions_mut().insert(UdsConnectInfo {
            peer_addr: None,
            peer_cred: None,
        });
        assert_eq!(caller(&req).unwrap(), Caller::Local);
        assert!(manager_or_admin_interceptor(req).is_ok());
    }

    #[test]
    fn role_checks() {
        let denied = |r: Result<(), Status>| {
            let e = r.unwrap_err();
            assert_eq!(e.code(), tonic::Code::PermissionDenied);
            e.message().to_string()
        };
        assert!(Caller::Local.require_manager_or_admin().is_ok());
        assert!(peer(Role::Manager).require_manager_or_admin().is_ok());
        assert!(peer(Role::Admin).require_manager_or_admin().is_ok());
        let msg = denied(peer(Role::Worker).require_manager_or_admin());
        assert!(msg.contains("caller is worker n1"), "{msg}");

        assert!(peer(Role::Manager).require_manager().is_ok());
        for c in [peer(Role::Worker), peer(Role::Admin), Caller::Local] {
            let msg = denied(c.require_manager().map(|_| ()));
            assert!(msg.contains("needs a manager certificate"), "{msg}");
        }

        assert!(peer(Role::Manager).require_node().is_ok());
        assert!(peer(Role::Worker).require_node().is_ok());
        for c in [peer(Role::Admin), Caller::Local] {
            denied(c.require_node().map(|_| ()));
        }
    }

    #[test]
    fn garbage_certificate_is_rejected() {
        let err = PeerIdentity::from_der(&CertificateDer::from(vec![1, 2, 3])).unwrap_err();
        assert!(matches!(err, PeerError::Certificate(_)), "{err}");
    }

    #[test]
    fn cached_identity_matches_the_certificate() {
        let cert = |cn: &str| {
            let mut params = rcgen::CertificateParams::new(vec!["x".into()]).unwrap();
            params.distinguished_name = rcgen::DistinguishedName::new();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, "c1");
            params.distinguished_name.push(
                rcgen::DnType::OrganizationalUnitName,
                Role::Worker.organizational_unit(),
            );
            let key = rcgen::KeyPair::generate().unwrap();
            params.self_signed(&key).unwrap().der().clone()
        };
        let (a, b) = (cert("node-a"), cert("node-b"));
        for _ in 0..2 {
            assert_eq!(identity_of(&a).unwrap().node_id, "node-a");
            assert_eq!(identity_of(&b).unwrap().node_id, "node-b");
        }
        let garbage = CertificateDer::from(vec![1, 2, 3]);
        assert!(identity_of(&garbage).is_err());
        assert!(identity_of(&garbage).is_err(), "errors are not cached");
    }

    #[test]
    fn certificate_without_role_is_rejected() {
        let cert = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
        let err = PeerIdentity::from_der(cert.cert.der()).unwrap_err();
        assert_eq!(err, PeerError::Subject("OrganizationalUnit"));
    }
}
