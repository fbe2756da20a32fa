//! A node's TLS identity (cluster CA, own certificate, own key) and its files.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::peer::{PeerError, PeerIdentity};

/// File name of the cluster CA certificate inside an identity directory.
pub const CA_FILE: &str = "ca.crt";
/// File name of the node (or admin) certificate inside an identity directory.
pub const CERT_FILE: &str = "node.crt";
/// File name of the private key inside an identity directory.
pub const KEY_FILE: &str = "node.key";

/// Why an identity could not be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A file or directory could not be read, written or synced.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("read", "write", "create directory", ...).
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file does not hold the PEM object it should.
    #[error("{what} is not valid PEM ({path}): {reason}")]
    Pem {
        /// What the PEM should contain ("CA certificate", "private key", ...).
        what: &'static str,
        /// Where it came from: a file path, or "memory" for in-memory PEM.
        path: String,
        /// The parser's explanation.
        reason: String,
    },
    /// Key or certificate signing request generation failed.
    #[error("generating a key and certificate signing request failed: {0}")]
    KeyGen(#[from] rcgen::Error),
}

/// A node's TLS material, all in PEM.
///
/// `Debug` hides the private key.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    /// The cluster CA certificate: the only trust anchor for peers.
    pub ca_pem: String,
    /// This node's (or admin's) certificate, signed by the cluster CA.
    pub cert_pem: String,
    /// The private key of `cert_pem` (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("ca_pem", &self.ca_pem)
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl Identity {
    /// Reads `ca.crt`, `node.crt` and `node.key` from `dir` and checks that each
    /// holds the PEM object it should.
    pub fn load(dir: &Path) -> Result<Identity, IdentityError> {
        let read = |name: &str| {
            let path = dir.join(name);
            fs::read_to_string(&path).map_err(|source| IdentityError::Io {
                action: "read",
                path,
                source,
            })
        };
        let identity = Identity {
            ca_pem: read(CA_FILE)?,
            cert_pem: read(CERT_FILE)?,
            key_pem: read(KEY_FILE)?,
        };
        identity.check(&|name| dir.join(name).display().to_string())?;
        Ok(identity)
    }

    /// Writes the three files into `dir` (created with mode 0700 if missing).
    ///
    /// Each file is written to a temporary name, synced and renamed over the old one,
    /// then the directory is synced: a crash leaves either the old or the new file,
    /// never a torn one. The key is created with mode 0600.
    pub fn save(&self, dir: &Path) -> Result<(), IdentityError> {
        let io_err = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| IdentityError::Io {
                action,
                path,
                source,
            }
        };
        fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(io_err("set permissions of", dir))?;
        write_atomic(dir, CA_FILE, &self.ca_pem, 0o644)?;
        write_atomic(dir, CERT_FILE, &self.cert_pem, 0o644)?;
        write_atomic(dir, KEY_FILE, &self.key_pem, 0o600)?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("sync directory", dir))
    }

    /// Role, node id and cluster id of this identity's own certificate.
    pub fn peer_identity(&self) -> Result<PeerIdentity, PeerError> {
        let der = CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
            .map_err(|e| PeerError::Certificate(e.to_string()))?;
        PeerIdentity::from_der(&der)
    }

    /// Parses the three PEM objects, naming the source of the first bad one.
    pub(crate) fn check(&self, source: &dyn Fn(&str) -> String) -> Result<(), IdentityError> {
        let pem_err = |what, name: &str| {
            let path = source(name);
            move |e: rustls_pki_types::pem::Error| IdentityError::Pem {
                what,
                path,
                reason: e.to_string(),
            }
        };
        CertificateDer::from_pem_slice(self.ca_pem.as_bytes())
            .map_err(pem_err("CA certificate", CA_FILE))?;
        CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
            .map_err(pem_err("certificate", CERT_FILE))?;
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(pem_err("private key", KEY_FILE))?;
        Ok(())
    }
}

/// Writes `contents` to `dir/name` through a synced temporary file and a rename.
fn write_atomic(dir: &Path, name: &str, contents: &str, mode: u32) -> Result<(), IdentityError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        // A stale temporary file from a crash may have other permissions; start fresh
        // so that `mode` applies (it is only used when the file is created).
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, &path)
    })();
    result.map_err(|source| {
        let _ = fs::remove_file(&tmp);
        IdentityError::Io {
            action: "write",
            path,
            source,
        }
    })
}

/// A fresh ECDSA P-256 key and a certificate signing request for it, both in PEM.
///
/// The request carries no subject: the signing manager decides the node id, role and
/// cluster, so nothing the joining node claims about itself ends up in its certificate.
pub fn new_key_and_csr() -> Result<(String, String), IdentityError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Identity {
        let ca = rcgen::generate_simple_self_signed(vec!["ca".into()]).unwrap();
        let node = rcgen::generate_simple_self_signed(vec!["node".into()]).unwrap();
        Identity {
            ca_pem: ca.cert.pem(),
            cert_pem: node.cert.pem(),
            key_pem: node.signing_key.serialize_pem(),
        }
    }

    #[test]
    fn save_then_load_round_trips_with_private_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        let identity = sample();
        identity.save(&dir).unwrap();
        assert_eq!(Identity::load(&dir).unwrap(), identity);

        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");

        // Saving again replaces the files.
        let other = sample();
        other.save(&dir).unwrap();
        assert_eq!(Identity::load(&dir).unwrap(), other);
    }

    #[test]
    fn load_errors_name_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let err = Identity::load(tmp.path()).unwrap_err().to_string();
        assert!(
            err.contains(&tmp.path().join(CA_FILE).display().to_string()),
            "{err}"
        );

        sample().save(tmp.path()).unwrap();
        fs::write(tmp.path().join(KEY_FILE), "garbage").unwrap();
        let err = Identity::load(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("private key"), "{err}");
        assert!(err.contains(KEY_FILE), "{err}");
    }

    #[test]
    fn debug_hides_the_key() {
        let identity = sample();
        assert!(!format!("{identity:?}").contains(&identity.key_pem));
    }

    #[test]
    fn csr_is_signed_by_the_returned_key() {
        let (key_pem, csr_pem) = new_key_and_csr().unwrap();
        let key = KeyPair::from_pem(&key_pem).unwrap();
        // from_pem verifies the request's signature.
        let csr = rcgen::CertificateSigningRequestParams::from_pem(&csr_pem).unwrap();
        use rcgen::PublicKeyData;
        assert_eq!(csr.public_key.der_bytes(), key.der_bytes());
    }
}
