//! Join tokens: `RSWTKN-1-<ca digest>-<secret>`.
//!
//! The digest pins the cluster CA (a joining node refuses a CA whose digest differs),
//! the secret authorises the certificate signing request. Managers keep one secret
//! for workers and one for managers; the secret decides the role a node joins as.

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};

/// Prefix of every join token.
const PREFIX: &str = "RSWTKN";
/// The only token format version this code reads and writes.
const VERSION: &str = "1";
/// Length of a hex SHA-256 digest.
const DIGEST_LEN: usize = 64;
/// Length of secrets made by [`new_secret`].
const SECRET_LEN: usize = 32;
/// Shortest secret accepted: about 129 bits of entropy in base 36.
const MIN_SECRET_LEN: usize = 25;
/// Longest secret accepted, so a token stays a reasonable command-line argument.
const MAX_SECRET_LEN: usize = 64;
const SECRET_ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// Why a join token or CA digest could not be produced or checked.
///
/// Messages never contain the token's secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token does not start with `RSWTKN-`.
    #[error("join token must start with \"RSWTKN-\"")]
    WrongPrefix,
    /// The token has a version other than 1.
    #[error("join token version {0:?} is not supported (expected \"1\")")]
    WrongVersion(String),
    /// The token does not have four dash-separated parts.
    #[error("join token must look like RSWTKN-1-<ca digest>-<secret>, found {0} parts")]
    WrongShape(usize),
    /// The CA digest part has the wrong length.
    #[error("join token CA digest must be 64 hex characters, found {0}")]
    DigestLength(usize),
    /// The CA digest part has characters other than lowercase hex.
    #[error("join token CA digest must be lowercase hex (0-9, a-f)")]
    DigestCharset,
    /// The secret part has the wrong length.
    #[error("join token secret must be {MIN_SECRET_LEN} to {MAX_SECRET_LEN} characters, found {0}")]
    SecretLength(usize),
    /// The secret part has characters other than lowercase letters and digits.
    #[error("join token secret must be lowercase letters and digits")]
    SecretCharset,
    /// The CA certificate given to compute a digest is not a PEM certificate.
    #[error("CA certificate is not a PEM certificate: {0}")]
    CaCertificate(String),
    /// The CA presented by the cluster is not the one the token pins.
    #[error(
        "the cluster's CA certificate (sha256 {actual}) does not match the join token \
         (sha256 {expected}): wrong token or a machine pretending to be a manager"
    )]
    CaMismatch {
        /// Digest named by the token.
        expected: String,
        /// Digest of the CA that was presented.
        actual: String,
    },
}

/// A parsed join token.
///
/// `Debug` hides the secret; `Display` gives the full token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Lowercase hex SHA-256 of the cluster CA certificate (DER).
    pub ca_digest: String,
    /// Secret that authorises a certificate signing request.
    pub secret: String,
}

impl JoinToken {
    /// A token for the given CA with a fresh random secret.
    pub fn generate(ca_cert_pem: &str) -> Result<JoinToken, TokenError> {
        Ok(JoinToken {
            ca_digest: ca_digest(ca_cert_pem)?,
            secret: new_secret(),
        })
    }

    /// Checks that `ca_cert_pem` is the CA this token pins. A joining node calls this
    /// before trusting a CA fetched over an unauthenticated connection.
    pub fn verify_ca(&self, ca_cert_pem: &str) -> Result<(), TokenError> {
        let actual = ca_digest(ca_cert_pem)?;
        // Digests are public: a plain comparison leaks nothing.
        if actual == self.ca_digest {
            Ok(())
        } else {
            Err(TokenError::CaMismatch {
                expected: self.ca_digest.clone(),
                actual,
            })
        }
    }

    /// Whether this token's secret equals `expected`, compared in constant time.
    pub fn secret_matches(&self, expected: &str) -> bool {
        secrets_equal(&self.secret, expected)
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}-{VERSION}-{}-{}", self.ca_digest, self.secret)
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("ca_digest", &self.ca_digest)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl FromStr for JoinToken {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let parts: Vec<&str> = s.split('-').collect();
        if parts[0] != PREFIX {
            return Err(TokenError::WrongPrefix);
        }
        if parts.len() >= 2 && parts[1] != VERSION {
            return Err(TokenError::WrongVersion(parts[1].to_string()));
        }
        let [_, _, digest, secret] = parts.as_slice() else {
            return Err(TokenError::WrongShape(parts.len()));
        };
        if digest.len() != DIGEST_LEN {
            return Err(TokenError::DigestLength(digest.len()));
        }
        if !digest
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(TokenError::DigestCharset);
        }
        if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&secret.len()) {
            return Err(TokenError::SecretLength(secret.len()));
        }
        if !secret.bytes().all(|b| SECRET_ALPHABET.contains(&b)) {
            return Err(TokenError::SecretCharset);
        }
        Ok(JoinToken {
            ca_digest: digest.to_string(),
            secret: secret.to_string(),
        })
    }
}

/// Lowercase hex SHA-256 of the (first) certificate in `ca_cert_pem`, in DER form.
pub fn ca_digest(ca_cert_pem: &str) -> Result<String, TokenError> {
    let der = CertificateDer::from_pem_slice(ca_cert_pem.as_bytes())
        .map_err(|e| TokenError::CaCertificate(e.to_string()))?;
    Ok(hex::encode(Sha256::digest(der.as_ref())))
}

/// A fresh random secret: 32 characters of lowercase base 36 (about 165 bits) from
/// the thread-local CSPRNG.
pub fn new_secret() -> String {
    let mut rng = rand::rng();
    (0..SECRET_LEN)
        .map(|_| char::from(SECRET_ALPHABET[rng.random_range(0..SECRET_ALPHABET.len())]))
        .collect()
}

/// Compares two secrets in time that depends only on their lengths, so that a
/// caller guessing a token learns nothing from response times.
pub fn secrets_equal(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        // Lengths are not secret: every token secret we issue has the same length.
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> String {
        "0123456789abcdef".repeat(4)
    }

    fn token_str(digest: &str, secret: &str) -> String {
        format!("RSWTKN-1-{digest}-{secret}")
    }

    #[test]
    fn token_round_trips() {
        let token = JoinToken {
            ca_digest: digest(),
            secret: new_secret(),
        };
        let text = token.to_string();
        assert!(text.starts_with("RSWTKN-1-"));
        assert_eq!(text.parse::<JoinToken>(), Ok(token.clone()));
        // Surrounding whitespace from copy and paste is tolerated.
        assert_eq!(format!("  {text}\n").parse::<JoinToken>(), Ok(token));
    }

    #[test]
    fn malformed_tokens_name_the_problem() {
        let secret = "a".repeat(32);
        let cases = [
            (
                token_str(&digest(), &secret).replace("RSWTKN", "SWMTKN"),
                TokenError::WrongPrefix,
            ),
            (String::new(), TokenError::WrongPrefix),
            (
                token_str(&digest(), &secret).replacen("-1-", "-2-", 1),
                TokenError::WrongVersion("2".into()),
            ),
            (format!("RSWTKN-1-{}", digest()), TokenError::WrongShape(3)),
            (
                format!("{}-extra", token_str(&digest(), &secret)),
                TokenError::WrongShape(5),
            ),
            (token_str("abc", &secret), TokenError::DigestLength(3)),
            (
                token_str(&digest().to_uppercase(), &secret),
                TokenError::DigestCharset,
            ),
            (
                token_str(&"g".repeat(64), &secret),
                TokenError::DigestCharset,
            ),
            (token_str(&digest(), "short"), TokenError::SecretLength(5)),
            (
                token_str(&digest(), &"a".repeat(65)),
                TokenError::SecretLength(65),
            ),
            (
                token_str(&digest(), &"A".repeat(30)),
                TokenError::SecretCharset,
            ),
            (
                token_str(&digest(), &format!("{}_", "a".repeat(29))),
                TokenError::SecretCharset,
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(input.parse::<JoinToken>(), Err(expected), "input {input:?}");
        }
    }

    #[test]
    fn errors_and_debug_do_not_leak_the_secret() {
        let secret = "s3cr3t".repeat(5);
        let token = JoinToken {
            ca_digest: digest(),
            secret: secret.clone(),
        };
        assert!(!format!("{token:?}").contains(&secret));
        let bad = token_str(&digest(), &format!("{secret}X"));
        let err = bad.parse::<JoinToken>().unwrap_err().to_string();
        assert!(!err.contains(&secret), "{err}");
    }

    #[test]
    fn new_secrets_are_valid_and_distinct() {
        let a = new_secret();
        let b = new_secret();
        assert_eq!(a.len(), SECRET_LEN);
        assert!(a.bytes().all(|c| SECRET_ALPHABET.contains(&c)));
        assert_ne!(a, b);
    }

    #[test]
    fn secret_comparison() {
        assert!(secrets_equal("abc", "abc"));
        assert!(!secrets_equal("abc", "abd"));
        assert!(!secrets_equal("abc", "abcd"));
        assert!(!secrets_equal("", "a"));
        let token = JoinToken {
            ca_digest: digest(),
            secret: "x".repeat(30),
        };
        assert!(token.secret_matches(&"x".repeat(30)));
        assert!(!token.secret_matches(&"y".repeat(30)));
    }

    #[test]
    fn ca_digest_is_sha256_of_der_and_pins_the_ca() {
        let ca = rcgen::generate_simple_self_signed(vec!["ca".into()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["ca".into()]).unwrap();
        let pem = ca.cert.pem();
        let digest = ca_digest(&pem).unwrap();
        assert_eq!(digest, hex::encode(Sha256::digest(ca.cert.der())));
        assert_eq!(digest.len(), DIGEST_LEN);

        let token = JoinToken::generate(&pem).unwrap();
        let token: JoinToken = token.to_string().parse().unwrap();
        assert_eq!(token.verify_ca(&pem), Ok(()));
        let err = token.verify_ca(&other.cert.pem()).unwrap_err();
        assert!(matches!(err, TokenError::CaMismatch { .. }), "{err}");
        assert!(err.to_string().contains(&digest), "{err}");
    }

    #[test]
    fn ca_digest_rejects_non_pem() {
        assert!(matches!(
            ca_digest("not a certificate"),
            Err(TokenError::CaCertificate(_))
        ));
    }
}
