//! mTLS for tonic: the server configuration and the client channels.
//!
//! Clients do their own TLS (tokio-rustls in a custom connector) because tonic's
//! `ClientTlsConfig` cannot take a custom verifier: managers are verified by a fixed
//! server name rather than by their address, and the bootstrap channel must accept an
//! unknown server before the CA is pinned.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tonic::transport::{Certificate, Channel, Endpoint, ServerTlsConfig};

use super::identity::{Identity, IdentityError};

/// The DNS name every manager certificate carries and every client verifies, so that
/// a manager is recognised by its certificate whatever address it was reached at.
pub const MANAGER_SERVER_NAME: &str = "rswarm-manager";

/// How long a connection attempt (TCP and TLS handshake) may take: a dead peer
/// must fail fast so callers can try the next manager.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// HTTP/2 pings detect a peer that vanished without closing the connection, which
/// would otherwise stall long-lived streams until TCP gives up (minutes).
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// A client that opens a connection but never finishes the handshake is dropped.
const SERVER_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a TLS server configuration or channel could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The identity files could not be loaded or hold bad PEM.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A PEM input does not hold what it should.
    #[error("{what} is not valid PEM: {reason}")]
    Pem {
        /// What the PEM should contain.
        what: &'static str,
        /// The parser's explanation.
        reason: String,
    },
    /// rustls refused the configuration (e.g. key and certificate do not match).
    #[error("TLS configuration rejected: {0}")]
    Config(#[from] rustls::Error),
    /// The address to connect to is not `HOST:PORT`.
    #[error("invalid address {addr:?}: {reason}")]
    Address {
        /// The address as given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Server TLS for every rswarm gRPC listener: the node's certificate, and client
/// certificates verified against the cluster CA.
///
/// Client certificates are optional at the handshake because the node CA's join calls
/// must work for a node that has none yet; every other RPC calls
/// [`caller`](super::caller), which rejects such clients. A client certificate that
/// does not chain to the cluster CA fails the handshake.
pub fn server_tls_config(identity: &Identity) -> Result<ServerTlsConfig, TlsError> {
    // tonic parses the PEM only when the server starts; check it now so a bad identity
    // is reported here, with a clear message.
    identity.check(&|name| format!("identity {name}"))?;
    Ok(ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(
            &identity.cert_pem,
            &identity.key_pem,
        ))
        .client_ca_root(Certificate::from_pem(&identity.ca_pem))
        .client_auth_optional(true)
        .timeout(SERVER_HANDSHAKE_TIMEOUT))
}

/// A lazy channel to a manager at `addr` (`HOST:PORT`) with mutual TLS: the server must
/// hold a manager certificate of the cluster CA, and the client presents `identity`.
///
/// Creating the channel does not connect; the first call does, and fails within about
/// a second if the peer is unreachable.
pub fn node_channel(addr: &str, identity: &Identity) -> Result<Channel, TlsError> {
    let config = builder()?
        .with_root_certificates(roots(&identity.ca_pem)?)
        .with_client_auth_cert(certs(&identity.cert_pem)?, key(&identity.key_pem)?)?;
    channel(addr, config)
}

/// A lazy channel that accepts any server certificate and presents none.
///
/// Only for fetching the root CA while joining: the caller must check the returned CA
/// against the join token ([`JoinToken::verify_ca`](super::JoinToken::verify_ca))
/// before trusting it, and send nothing secret over this channel.
pub fn bootstrap_channel(addr: &str) -> Result<Channel, TlsError> {
    let provider = provider();
    let config = builder()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
        .with_no_client_auth();
    channel(addr, config)
}

/// A lazy channel to a manager verified against `ca_pem`, without a client
/// certificate: used to send the join token and CSR once the CA is pinned.
pub fn pinned_channel(addr: &str, ca_pem: &str) -> Result<Channel, TlsError> {
    let config = builder()?
        .with_root_certificates(roots(ca_pem)?)
        .with_no_client_auth();
    channel(addr, config)
}

/// [`node_channel`] with the identity (usually the admin certificate) loaded from
/// `cert_dir` (`ca.crt`, `node.crt`, `node.key`).
pub fn admin_channel(addr: &str, cert_dir: &Path) -> Result<Channel, TlsError> {
    node_channel(addr, &Identity::load(cert_dir)?)
}

/// A lazy channel to the node daemon's Unix socket at `socket_path`: no TLS, the
/// server sees the caller as [`Caller::Local`](super::Caller::Local).
pub fn local_channel(socket_path: &Path) -> Result<Channel, TlsError> {
    let bad = |reason: String| TlsError::Address {
        addr: socket_path.display().to_string(),
        reason,
    };
    let path = socket_path
        .to_str()
        .ok_or_else(|| bad("socket path is not UTF-8".into()))?;
    Ok(Endpoint::from_shared(format!("unix:{path}"))
        .map_err(|e| bad(e.to_string()))?
        .connect_lazy())
}

/// ring explicitly, rather than the process default, so that nothing depends on
/// which rustls provider features other crates happen to enable.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn builder() -> Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>, TlsError> {
    Ok(ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?)
}

fn certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what: "certificate",
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what: "certificate",
            reason: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

fn key(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::Pem {
        what: "private key",
        reason: e.to_string(),
    })
}

fn roots(ca_pem: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs(ca_pem)? {
        roots.add(cert)?;
    }
    Ok(roots)
}

/// Turns `HOST:PORT` (an `http://` or `https://` prefix is tolerated) into the
/// endpoint URI; TLS is done by [`TlsConnector`], so the scheme given to tonic is
/// `http` to keep tonic from attempting its own.
fn endpoint_uri(addr: &str) -> Result<Uri, TlsError> {
    let bad = |reason: &str| TlsError::Address {
        addr: addr.to_string(),
        reason: reason.to_string(),
    };
    let authority = addr
        .strip_prefix("https://")
        .or_else(|| addr.strip_prefix("http://"))
        .unwrap_or(addr)
        .trim_end_matches('/');
    let uri: Uri = format!("http://{authority}")
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
    if uri.path() != "/" || uri.query().is_some() {
        return Err(bad("expected HOST:PORT without a path"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("missing host"));
    }
    if uri.port_u16().is_none() {
        return Err(bad("missing port"));
    }
    Ok(uri)
}

fn channel(addr: &str, mut config: ClientConfig) -> Result<Channel, TlsError> {
    config.alpn_protocols = vec![b"h2".to_vec()];
    let uri = endpoint_uri(addr)?;
    let endpoint = Endpoint::from(uri)
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    // A constant, valid DNS name (checked by the tests): this cannot fail.
    #[allow(clippy::expect_used)]
    let server_name =
        ServerName::try_from(MANAGER_SERVER_NAME).expect("MANAGER_SERVER_NAME is a DNS name");
    Ok(endpoint.connect_with_connector_lazy(TlsConnector {
        tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        server_name,
    }))
}

/// Connects TCP to the URI's host and port, then runs the TLS handshake.
#[derive(Clone)]
struct TlsConnector {
    /// Client configuration (trust anchors, verifier, client certificate).
    tls: tokio_rustls::TlsConnector,
    /// Name the server certificate is verified against.
    server_name: ServerName<'static>,
}

impl tower::Service<Uri> for TlsConnector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        let server_name = self.server_name.clone();
        Box::pin(async move {
            let invalid = |msg| std::io::Error::new(std::io::ErrorKind::InvalidInput, msg);
            // `endpoint_uri` guarantees both; the checks only turn a broken invariant
            // into an error instead of a panic.
            let host = uri.host().ok_or_else(|| invalid("address has no host"))?;
            let port = uri
                .port_u16()
                .ok_or_else(|| invalid("address has no port"))?;
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let connect = async {
                let tcp = TcpStream::connect((host.as_str(), port)).await?;
                tcp.set_nodelay(true)?;
                tls.connect(server_name, tcp).await
            };
            // The timeout is applied here rather than with `Endpoint::connect_timeout`
            // so that its error passes through tonic's connector and the call fails
            // with `Unavailable` (tonic reports its own connect timeout as `Unknown`).
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect)
                .await
                .map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("connecting to {host}:{port} timed out after {CONNECT_TIMEOUT:?}"),
                    )
                })??;
            Ok(TokioIo::new(stream))
        })
    }
}

/// Accepts any server certificate but still checks the handshake signatures, so the
/// server at least proves it holds the key of the certificate it sent.
#[derive(Debug)]
struct AnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        for ok in [
            "127.0.0.1:4242",
            "https://10.0.0.1:4242",
            "http://node-1:1/",
            "[::1]:4242",
        ] {
            assert!(endpoint_uri(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("127.0.0.1", "missing port"),
            (":4242", "missing host"),
            ("10.0.0.1:4242/x", "without a path"),
            ("a b:1", "invalid"),
        ] {
            let err = endpoint_uri(bad).unwrap_err().to_string();
            assert!(err.contains(why) || err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn bad_pem_is_reported() {
        let err = pinned_channel("127.0.0.1:1", "nope").unwrap_err();
        assert!(err.to_string().contains("certificate"), "{err}");
    }

    #[tokio::test]
    async fn dead_peer_fails_fast() {
        let cert = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
        // Bind then drop to get a port that refuses connections.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let channel = pinned_channel(&format!("127.0.0.1:{port}"), &cert.cert.pem()).unwrap();
        let mut client = crate::api::node_ca_client::NodeCaClient::new(channel);
        let started = std::time::Instant::now();
        let err = client
            .get_root_ca_certificate(crate::api::GetRootCaRequest {})
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
