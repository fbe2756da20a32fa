//! Content digests (`sha256:<hex>`) and readers that hash what passes through them.

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Why a string is not a digest.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    /// Only sha256 digests are supported.
    #[error("digest {0:?}: unsupported algorithm (only sha256 is supported)")]
    Algorithm(String),
    /// The hex part is not 64 lowercase hex characters.
    #[error("digest {0:?}: expected 64 lowercase hex characters after \"sha256:\"")]
    Hex(String),
}

/// A sha256 content digest, written `sha256:<64 lowercase hex>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest {
    /// The 64 lowercase hex characters of the sha256 sum.
    hex: String,
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_sha(Sha256::digest(bytes).into())
    }

    /// The digest of a finished sha256 sum.
    fn from_sha(sum: [u8; 32]) -> Digest {
        Digest {
            hex: hex::encode(sum),
        }
    }

    /// The digest whose hex part is `hex` (64 lowercase hex characters).
    pub fn from_hex(hex: &str) -> Result<Digest, DigestError> {
        let valid = hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if valid {
            Ok(Digest {
                hex: hex.to_string(),
            })
        } else {
            Err(DigestError::Hex(format!("sha256:{hex}")))
        }
    }

    /// The hex part, which is also the blob's file name in the store.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex characters, the short id shown to people.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Digest, DigestError> {
        match s.split_once(':') {
            Some(("sha256", hex)) => Digest::from_hex(hex).map_err(|_| DigestError::Hex(s.into())),
            _ => Err(DigestError::Algorithm(s.into())),
        }
    }
}

impl TryFrom<String> for Digest {
    type Error = DigestError;

    fn try_from(s: String) -> Result<Digest, DigestError> {
        s.parse()
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.to_string()
    }
}

/// A reader that hashes and counts every byte read through it.
pub struct HashingReader<R> {
    /// The wrapped reader.
    inner: R,
    /// The running sum of what was read so far.
    hasher: Sha256,
    /// How many bytes were read so far.
    len: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// Reads what is left (so the sum covers the whole stream) and returns the digest
    /// and the byte count.
    pub fn finish(mut self) -> io::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((Digest::from_sha(self.hasher.finalize().into()), self.len))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// A reader that fails at end of stream when what it read does not hash to the
/// expected digest, so nobody acts on a corrupted blob believing it complete.
pub struct VerifiedReader<R> {
    /// The wrapped reader, hashing as it goes.
    inner: HashingReader<R>,
    /// The digest the stream must have.
    expected: Digest,
    /// Set once the end was reached and the digest matched.
    verified: bool,
}

impl<R: Read> VerifiedReader<R> {
    /// Wraps `inner`, which must hash to `expected`.
    pub fn new(inner: R, expected: Digest) -> Self {
        VerifiedReader {
            inner: HashingReader::new(inner),
            expected,
            verified: false,
        }
    }

    /// Reads what is left and fails when the whole stream does not match.
    ///
    /// Callers that stop reading before the end (a tar reader stops at the end-of-
    /// archive marker) call this so the check still covers every byte.
    pub fn finish(mut self) -> io::Result<()> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(())
    }
}

impl<R: Read> Read for VerifiedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() && !self.verified {
            let actual = Digest::from_sha(self.inner.hasher.clone().finalize().into());
            if actual != self.expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "blob content does not match its digest: expected {}, got {actual}",
                        self.expected
                    ),
                ));
            }
            self.verified = true;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_prints() {
        let d: Digest = format!("sha256:{EMPTY}").parse().unwrap();
        assert_eq!(d, Digest::of(b""));
        assert_eq!(d.to_string(), format!("sha256:{EMPTY}"));
        assert_eq!(d.short(), "e3b0c44298fc");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"sha256:{EMPTY}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
    }

    #[test]
    fn refuses_bad_digests() {
        assert!(matches!(
            "sha512:abc".parse::<Digest>(),
            Err(DigestError::Algorithm(_))
        ));
        assert!(matches!(
            "sha256:ABC".parse::<Digest>(),
            Err(DigestError::Hex(_))
        ));
        let upper = format!("sha256:{}", EMPTY.to_uppercase());
        assert!(upper.parse::<Digest>().is_err());
        assert!(serde_json::from_str::<Digest>("\"sha256:../../etc\"").is_err());
    }

    #[test]
    fn verified_reader_checks_at_end() {
        let data = b"hello world".to_vec();
        let mut ok = VerifiedReader::new(&data[..], Digest::of(&data));
        let mut out = Vec::new();
        ok.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);

        let mut bad = VerifiedReader::new(&b"hello worle"[..], Digest::of(&data));
        let err = bad.read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains(&Digest::of(&data).to_string()));

        let partial = VerifiedReader::new(&b"hello worle"[..], Digest::of(&data));
        assert!(partial.finish().is_err());
    }

    #[test]
    fn hashing_reader_counts() {
        let (d, n) = HashingReader::new(&b"abc"[..]).finish().unwrap();
        assert_eq!(n, 3);
        assert_eq!(d, Digest::of(b"abc"));
    }
}
