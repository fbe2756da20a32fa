//! Connecting to a manager's control API.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::args::Host;

/// Opens a channel to the control API at `host`: a node's local Unix socket, or a
/// manager's TCP address over mutual TLS with the admin certificate in `cert_dir`.
/// Connects eagerly, so that an unreachable daemon is reported here, by address.
pub async fn connect(host: &Host, cert_dir: &Path) -> anyhow::Result<Channel> {
    match host {
        Host::Unix(path) => connect_unix(path).await.map_err(|cause| {
            anyhow::anyhow!(
                "cannot reach the rswarm daemon at {host}: {cause} — is it running? \
                 (`rswarm daemon`)"
            )
        }),
        Host::Tcp(addr) => {
            let channel = rswarm_proto::tls::admin_channel(&addr.to_string(), cert_dir)
                .map_err(|err| anyhow::anyhow!("cannot connect to {host}: {err}"))?;
            Ok(channel)
        }
    }
}

/// gRPC over a Unix socket; the URI is a placeholder that the connector ignores.
async fn connect_unix(path: &Path) -> Result<Channel, String> {
    let path: PathBuf = path.to_path_buf();
    let connector = tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
    });
    Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(connector)
        .await
        .map_err(|err| {
            // tonic wraps the socket's error ("Connection refused") in layers whose
            // own messages ("transport error") say nothing useful.
            let mut cause: &dyn std::error::Error = &err;
            while let Some(source) = cause.source() {
                cause = source;
            }
            cause.to_string()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rswarm_proto::api::GetClusterStatusRequest;
    use rswarm_proto::api::control_client::ControlClient;
    use tokio::net::UnixListener;
    use tokio_stream::wrappers::UnixListenerStream;

    use crate::commands::test_support::{FakeControl, serve};

    #[tokio::test]
    async fn missing_socket_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rswarm.sock");
        let err = connect(&Host::Unix(path.clone()), dir.path())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "cannot reach the rswarm daemon at unix://{}: ",
                path.display()
            )),
            "{err}"
        );
        assert!(err.contains("No such file or directory"), "{err}");
        assert!(err.ends_with("is it running? (`rswarm daemon`)"), "{err}");
    }

    #[tokio::test]
    async fn refused_connection_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rswarm.sock");
        // The socket file outlives the listener: connecting is refused.
        drop(UnixListener::bind(&path).unwrap());
        let err = connect(&Host::Unix(path), dir.path())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("Connection refused"), "{err}");
    }

    #[tokio::test]
    async fn talks_grpc_over_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rswarm.sock");
        let listener = UnixListener::bind(&path).unwrap();
        tokio::spawn(serve(
            FakeControl::default(),
            UnixListenerStream::new(listener),
        ));
        let channel = connect(&Host::Unix(path), dir.path()).await.unwrap();
        let status = ControlClient::new(channel)
            .get_cluster_status(GetClusterStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(status.cluster_id, "fake-cluster");
    }

    #[tokio::test]
    async fn tcp_without_admin_certificate_names_the_directory() {
        let host = Host::Tcp("127.0.0.1:4242".parse().unwrap());
        let err = connect(&host, Path::new("/nonexistent-rswarm-certs"))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent-rswarm-certs"),
            "{err}"
        );
    }
}
