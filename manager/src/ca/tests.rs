use rcgen::{CertificateParams, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use rswarm_proto::tls::{PeerIdentity, Role, ca_digest, new_key_and_csr};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::*;

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

#[test]
fn generated_ca_is_a_ca_for_the_cluster() {
    let ca = RootCa::generate("cluster-1").unwrap();
    let der = der(&ca.cert_pem);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert!(cert.is_ca());
    assert_eq!(
        cert.subject().iter_organization().next().unwrap().as_str(),
        Ok("cluster-1")
    );
    let years = (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp())
        / (365 * 86400);
    assert_eq!(years, 20);
    cert.verify_signature(None).unwrap();
    assert_eq!(RootCa::from_pem(&ca.cert_pem, &ca.key_pem).unwrap(), ca);
    assert!(!format!("{ca:?}").contains(&ca.key_pem));
    assert_eq!(ca_digest(&ca.cert_pem).unwrap().len(), 64);
}

#[test]
fn from_pem_rejects_mismatched_or_bad_material() {
    let a = RootCa::generate("c").unwrap();
    let b = RootCa::generate("c").unwrap();
    let err = RootCa::from_pem(&a.cert_pem, &b.key_pem).unwrap_err();
    assert!(err.to_string().contains("does not belong"), "{err}");
    let err = RootCa::from_pem("garbage", &a.key_pem).unwrap_err();
    assert!(err.to_string().contains("not PEM"), "{err}");
    let err = RootCa::from_pem(&a.cert_pem, "garbage").unwrap_err();
    assert!(err.to_string().contains("private key"), "{err}");

    // A node certificate is not a CA, even with its own key.
    let node = a.issue_identity("n1", Role::Manager, "c").unwrap();
    let err = RootCa::from_pem(&node.cert_pem, &node.key_pem).unwrap_err();
    assert!(err.to_string().contains("not a CA"), "{err}");
}

#[test]
fn signed_certificates_carry_the_identity_for_each_role() {
    let ca = RootCa::generate("cluster-1").unwrap();
    let ca_der = der(&ca.cert_pem);
    let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
    for role in Role::ALL {
        let node_id = if role == Role::Admin {
            "admin"
        } else {
            "node-7"
        };
        let (_key, csr) = new_key_and_csr().unwrap();
        let pem = ca.sign_node_csr(&csr, node_id, role, "cluster-1").unwrap();
        let cert_der = der(&pem);
        assert_eq!(
            PeerIdentity::from_der(&cert_der).unwrap(),
            PeerIdentity {
                role,
                node_id: node_id.into(),
                cluster_id: "cluster-1".into()
            }
        );

        let (_, cert) = X509Certificate::from_der(&cert_der).unwrap();
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();
        assert_eq!(cert.issuer(), ca_cert.subject());
        assert!(!cert.is_ca());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        let days = (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp())
            / 86400;
        assert_eq!(days, 90);
        let sans: Vec<String> = cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => d.to_string(),
                other => panic!("unexpected SAN {other:?}"),
            })
            .collect();
        assert_eq!(
            sans,
            vec![role.organizational_unit().to_string(), node_id.to_string()]
        );
    }
}

#[test]
fn csr_subject_and_extensions_are_ignored() {
    let ca = RootCa::generate("cluster-1").unwrap();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    // A worker asking to be a manager of another cluster, with a CA flag.
    let mut params = CertificateParams::new(vec!["rswarm-manager".to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "evil");
    params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, "rswarm-manager");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "other");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();

    let pem = ca
        .sign_node_csr(&csr, "w1", Role::Worker, "cluster-1")
        .unwrap();
    let cert_der = der(&pem);
    let peer = PeerIdentity::from_der(&cert_der).unwrap();
    assert_eq!(peer.role, Role::Worker);
    assert_eq!(peer.node_id, "w1");
    assert_eq!(peer.cluster_id, "cluster-1");
    let (_, cert) = X509Certificate::from_der(&cert_der).unwrap();
    assert!(!cert.is_ca());
    // The certificate is for the CSR's key.
    assert_eq!(
        cert.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw()
    );
}

#[test]
fn bad_requests_are_rejected_with_clear_errors() {
    let ca = RootCa::generate("cluster-1").unwrap();
    let err = ca
        .sign_node_csr("not a csr", "n1", Role::Worker, "cluster-1")
        .unwrap_err();
    assert!(matches!(err, CaError::InvalidCsr(_)), "{err}");
    assert!(
        err.to_string().contains("certificate signing request"),
        "{err}"
    );

    // A CSR whose signature does not match its content: change one base64 character
    // a few bytes before the end, which lies inside the signature value.
    let (_, csr) = new_key_and_csr().unwrap();
    let body_end = csr.find("-----END").unwrap();
    let mut chars: Vec<char> = csr.chars().collect();
    let pos = (0..body_end)
        .rev()
        .filter(|&i| chars[i].is_ascii_alphanumeric())
        .nth(5)
        .unwrap();
    chars[pos] = if chars[pos] == 'A' { 'B' } else { 'A' };
    let tampered: String = chars.into_iter().collect();
    let err = ca
        .sign_node_csr(&tampered, "n1", Role::Worker, "cluster-1")
        .unwrap_err();
    assert!(matches!(err, CaError::InvalidCsr(_)), "{err}");

    let (_, csr) = new_key_and_csr().unwrap();
    for bad in ["", "Node1", "-n", "n_1", "n 1", &"a".repeat(64)] {
        let err = ca
            .sign_node_csr(&csr, bad, Role::Worker, "cluster-1")
            .unwrap_err();
        assert!(
            matches!(
                err,
                CaError::InvalidName {
                    field: "node id",
                    ..
                }
            ),
            "{bad:?}: {err}"
        );
    }
    for bad in ["", "a b", &"c".repeat(65)] {
        let err = ca.sign_node_csr(&csr, "n1", Role::Worker, bad).unwrap_err();
        assert!(
            matches!(
                err,
                CaError::InvalidName {
                    field: "cluster id",
                    ..
                }
            ),
            "{bad:?}: {err}"
        );
    }
    assert!(RootCa::generate("").is_err());
}

#[test]
fn issued_identity_uses_this_ca_and_a_fresh_key() {
    let ca = RootCa::generate("cluster-1").unwrap();
    let a = ca
        .issue_identity("admin", Role::Admin, "cluster-1")
        .unwrap();
    let b = ca
        .issue_identity("admin", Role::Admin, "cluster-1")
        .unwrap();
    assert_eq!(a.ca_pem, ca.cert_pem);
    assert_ne!(a.key_pem, b.key_pem);
    assert_eq!(a.peer_identity().unwrap().role, Role::Admin);
    // Serial numbers differ even for the same subject.
    let serial = |pem: &str| {
        let d = der(pem);
        X509Certificate::from_der(&d)
            .unwrap()
            .1
            .raw_serial()
            .to_vec()
    };
    assert_ne!(serial(&a.cert_pem), serial(&b.cert_pem));
}
