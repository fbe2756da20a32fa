//! The cluster's certificate authority: creates the root CA at `init` and signs node
//! and admin certificates.
//!
//! A certificate's subject is decided here, never taken from the request: CN is the
//! node id, OU the [`Role`], O the cluster id (see [`rswarm_proto::tls`]).

use rand::Rng;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use rswarm_proto::tls::{Identity, IdentityError, Role, new_key_and_csr};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

#[cfg(test)]
mod mtls_tests;
#[cfg(test)]
mod tests;

/// Validity of the root CA: long enough to outlive the cluster, since rotating it means
/// re-issuing every node certificate and new join tokens.
const CA_VALIDITY: Duration = Duration::days(20 * 365);
/// Validity of node and admin certificates.
const NODE_VALIDITY: Duration = Duration::days(90);
/// Certificates start this far in the past so that nodes whose clocks lag a little
/// behind the signing manager's still accept them.
const BACKDATE: Duration = Duration::hours(1);
/// Subject CommonName of the root CA.
const CA_COMMON_NAME: &str = "rswarm-root-ca";
/// RFC 5280's upper bound for an Organization name, which holds the cluster id.
const MAX_CLUSTER_ID_LEN: usize = 64;
/// A node id is also a DNS name in the certificate, so it must be one DNS label.
const MAX_NODE_ID_LEN: usize = 63;

/// Why the CA could not be loaded or could not sign.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The certificate signing request cannot be parsed or its signature is wrong.
    #[error("invalid certificate signing request: {0}")]
    InvalidCsr(String),
    /// The CA certificate or key cannot be used.
    #[error("invalid root CA: {0}")]
    InvalidCa(String),
    /// A node id or cluster id cannot be put in a certificate.
    #[error("{field} {value:?} cannot be used in a certificate: {reason}")]
    InvalidName {
        /// "node id" or "cluster id".
        field: &'static str,
        /// The rejected value.
        value: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// Key generation or signing failed.
    #[error("signing a certificate failed: {0}")]
    Sign(#[from] rcgen::Error),
    /// A key and CSR for an issued identity could not be generated.
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

/// The cluster's root CA: certificate and private key in PEM.
///
/// `Debug` hides the key.
#[derive(Clone, PartialEq, Eq)]
pub struct RootCa {
    /// Self-signed CA certificate; every node trusts exactly this certificate.
    pub cert_pem: String,
    /// The CA's private key (PKCS#8). Replicated to managers only.
    pub key_pem: String,
}

impl std::fmt::Debug for RootCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootCa")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl RootCa {
    /// A new self-signed CA for `cluster_id` (ECDSA P-256, valid 20 years), allowed to
    /// sign end-entity certificates only.
    pub fn generate(cluster_id: &str) -> Result<RootCa, CaError> {
        check_cluster_id(cluster_id)?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, CA_COMMON_NAME);
        dn.push(DnType::OrganizationName, cluster_id);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, CA_VALIDITY);
        let cert = params.self_signed(&key)?;
        Ok(RootCa {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A CA from stored PEM, checking that both parse and that the key belongs to the
    /// certificate.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<RootCa, CaError> {
        let ca = RootCa {
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
        };
        let key = ca.key()?;
        let der = pem_der(cert_pem)?;
        let (_, cert) = X509Certificate::from_der(&der)
            .map_err(|e| CaError::InvalidCa(format!("certificate cannot be parsed: {e}")))?;
        if !cert.is_ca() {
            return Err(CaError::InvalidCa("certificate is not a CA".into()));
        }
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(CaError::InvalidCa(
                "the private key does not belong to the certificate".into(),
            ));
        }
        Ok(ca)
    }

    /// Signs `csr_pem` for `node_id` with `role` in `cluster_id` (valid 90 days, usable
    /// for both TLS server and client authentication).
    ///
    /// Only the CSR's public key is used: its subject and extensions are ignored, since
    /// the identity is what the manager decided, not what the joining node asked for.
    /// SANs: `rswarm-<role>` (so managers carry
    /// [`MANAGER_SERVER_NAME`](rswarm_proto::tls::MANAGER_SERVER_NAME)) and the node id.
    pub fn sign_node_csr(
        &self,
        csr_pem: &str,
        node_id: &str,
        role: Role,
        cluster_id: &str,
    ) -> Result<String, CaError> {
        check_node_id(node_id)?;
        check_cluster_id(cluster_id)?;
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| CaError::InvalidCsr(e.to_string()))?;

        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node_id);
        dn.push(DnType::OrganizationalUnitName, role.organizational_unit());
        dn.push(DnType::OrganizationName, cluster_id);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![
            SanType::DnsName(role.organizational_unit().try_into()?),
            SanType::DnsName(node_id.try_into()?),
        ];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, NODE_VALIDITY);

        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, self.key()?)
            .map_err(|e| CaError::InvalidCa(format!("certificate cannot be parsed: {e}")))?;
        let cert = params.signed_by(&csr.public_key, &issuer)?;
        tracing::info!(node_id, %role, cluster_id, "signed node certificate");
        Ok(cert.pem())
    }

    /// A complete identity (new key, signed certificate, this CA) for `node_id`: used
    /// by `init` for the first manager and for admin certificates.
    pub fn issue_identity(
        &self,
        node_id: &str,
        role: Role,
        cluster_id: &str,
    ) -> Result<Identity, CaError> {
        let (key_pem, csr_pem) = new_key_and_csr()?;
        let cert_pem = self.sign_node_csr(&csr_pem, node_id, role, cluster_id)?;
        Ok(Identity {
            ca_pem: self.cert_pem.clone(),
            cert_pem,
            key_pem,
        })
    }

    fn key(&self) -> Result<KeyPair, CaError> {
        KeyPair::from_pem(&self.key_pem)
            .map_err(|e| CaError::InvalidCa(format!("private key cannot be parsed: {e}")))
    }
}

fn pem_der(cert_pem: &str) -> Result<Vec<u8>, CaError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map(|der| der.to_vec())
        .map_err(|e| CaError::InvalidCa(format!("certificate is not PEM: {e}")))
}

/// Validity from [`BACKDATE`] ago for `validity`, and a random serial number so that
/// re-issued certificates never share one.
fn set_validity(params: &mut CertificateParams, validity: Duration) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + validity;
    let mut serial = [0u8; 16];
    rand::rng().fill(&mut serial);
    // DER integers are signed: clear the top bit so the serial stays positive, and set
    // one bit so it never starts with a zero byte that would be stripped.
    serial[0] = (serial[0] & 0x7f) | 0x40;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
}

fn check_node_id(node_id: &str) -> Result<(), CaError> {
    let bad = |reason| CaError::InvalidName {
        field: "node id",
        value: node_id.to_string(),
        reason,
    };
    if node_id.is_empty() || node_id.len() > MAX_NODE_ID_LEN {
        return Err(bad("must be 1 to 63 characters"));
    }
    if !node_id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        || node_id.starts_with('-')
        || node_id.ends_with('-')
    {
        return Err(bad(
            "must be lowercase letters, digits and inner dashes (it is also a DNS name)",
        ));
    }
    Ok(())
}

fn check_cluster_id(cluster_id: &str) -> Result<(), CaError> {
    let bad = |reason| CaError::InvalidName {
        field: "cluster id",
        value: cluster_id.to_string(),
        reason,
    };
    if cluster_id.is_empty() || cluster_id.len() > MAX_CLUSTER_ID_LEN {
        return Err(bad("must be 1 to 64 characters"));
    }
    if !cluster_id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("must be printable ASCII without spaces"));
    }
    Ok(())
}
