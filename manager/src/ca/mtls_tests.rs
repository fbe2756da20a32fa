//! End-to-end mTLS over loopback: the real CA, the server configuration, the client
//! channels and `caller()` in handlers and interceptors.

use std::net::SocketAddr;
use std::time::Duration;

use rswarm_proto::api::node_ca_client::NodeCaClient;
use rswarm_proto::api::node_ca_server::{NodeCa, NodeCaServer};
use rswarm_proto::api::{
    GetRootCaRequest, GetRootCaResponse, IssueNodeCertificateRequest, IssueNodeCertificateResponse,
    RenewNodeCertificateRequest,
};
use rswarm_proto::tls::{
    Caller, Identity, JoinToken, Role, bootstrap_channel, caller, local_channel,
    manager_interceptor, node_channel, pinned_channel, server_tls_config,
};
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::service::Routes;
use tonic::transport::{Channel, Server};
use tonic::{Code, Request, Response, Status};

use super::RootCa;

const CLUSTER: &str = "cluster-1";

/// A node CA whose root-CA call is open (as in production) and whose other call
/// stands in for a protected RPC: it requires an authenticated caller and echoes it.
struct EchoCa {
    ca_pem: String,
}

#[tonic::async_trait]
impl NodeCa for EchoCa {
    async fn get_root_ca_certificate(
        &self,
        _req: Request<GetRootCaRequest>,
    ) -> Result<Response<GetRootCaResponse>, Status> {
        Ok(Response::new(GetRootCaResponse {
            cert_pem: self.ca_pem.clone(),
        }))
    }

    async fn issue_node_certificate(
        &self,
        req: Request<IssueNodeCertificateRequest>,
    ) -> Result<Response<IssueNodeCertificateResponse>, Status> {
        let resp = match caller(&req)? {
            Caller::Local => IssueNodeCertificateResponse {
                node_id: "<local>".into(),
                ..Default::default()
            },
            Caller::Peer(p) => IssueNodeCertificateResponse {
                node_id: p.node_id,
                cluster_id: p.cluster_id,
                role: match p.role {
                    Role::Worker => 0,
                    Role::Manager => 1,
                    Role::Admin => 2,
                },
                ..Default::default()
            },
        };
        Ok(Response::new(resp))
    }

    async fn renew_node_certificate(
        &self,
        _req: Request<RenewNodeCertificateRequest>,
    ) -> Result<Response<IssueNodeCertificateResponse>, Status> {
        Err(Status::unimplemented("not used by these tests"))
    }
}

struct Cluster {
    ca: RootCa,
    manager: Identity,
    worker: Identity,
    admin: Identity,
}

fn cluster() -> Cluster {
    let ca = RootCa::generate(CLUSTER).unwrap();
    Cluster {
        manager: ca.issue_identity("m1", Role::Manager, CLUSTER).unwrap(),
        worker: ca.issue_identity("w1", Role::Worker, CLUSTER).unwrap(),
        admin: ca.issue_identity("admin", Role::Admin, CLUSTER).unwrap(),
        ca,
    }
}

fn echo(ca: &RootCa) -> NodeCaServer<EchoCa> {
    NodeCaServer::new(EchoCa {
        ca_pem: ca.cert_pem.clone(),
    })
}

/// Serves `routes` with TLS as `identity` on 127.0.0.1, port chosen by the kernel.
async fn serve_tls(identity: &Identity, routes: Routes) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let server = Server::builder()
        .tls_config(server_tls_config(identity).unwrap())
        .unwrap()
        .add_routes(routes)
        .serve_with_incoming(TcpListenerStream::new(listener));
    tokio::spawn(server);
    addr.to_string()
}

async fn whoami(channel: Channel) -> Result<IssueNodeCertificateResponse, Status> {
    NodeCaClient::new(channel)
        .issue_node_certificate(IssueNodeCertificateRequest::default())
        .await
        .map(Response::into_inner)
}

async fn root_ca(channel: Channel) -> Result<String, Status> {
    NodeCaClient::new(channel)
        .get_root_ca_certificate(GetRootCaRequest {})
        .await
        .map(|r| r.into_inner().cert_pem)
}

#[tokio::test]
async fn node_certificates_identify_the_caller() {
    let c = cluster();
    let addr = serve_tls(&c.manager, Routes::new(echo(&c.ca))).await;
    for (identity, node_id, role) in [
        (&c.worker, "w1", 0),
        (&c.manager, "m1", 1),
        (&c.admin, "admin", 2),
    ] {
        let resp = whoami(node_channel(&addr, identity).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.node_id, node_id);
        assert_eq!(resp.role, role);
        assert_eq!(resp.cluster_id, CLUSTER);
    }
}

#[tokio::test]
async fn no_client_certificate_passes_the_handshake_but_not_protected_calls() {
    let c = cluster();
    let addr = serve_tls(&c.manager, Routes::new(echo(&c.ca))).await;
    let channel = pinned_channel(&addr, &c.ca.cert_pem).unwrap();
    // The open call works: the handshake succeeded without a client certificate.
    assert_eq!(root_ca(channel.clone()).await.unwrap(), c.ca.cert_pem);
    let err = whoami(channel).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    assert!(
        err.message()
            .contains("client certificate signed by the cluster CA"),
        "{err}"
    );
}

#[tokio::test]
async fn client_certificate_from_another_ca_is_refused_at_the_handshake() {
    let c = cluster();
    let addr = serve_tls(&c.manager, Routes::new(echo(&c.ca))).await;
    // Another cluster's CA, and an impostor CA with the same subject as ours.
    for other_cluster in ["cluster-2", CLUSTER] {
        let other = RootCa::generate(other_cluster).unwrap();
        let foreign = Identity {
            // Trusts our server, but presents a certificate our CA did not sign.
            ca_pem: c.ca.cert_pem.clone(),
            ..other
                .issue_identity("m9", Role::Manager, other_cluster)
                .unwrap()
        };
        // Even the open call fails: the server aborts the handshake with a TLS alert.
        // With TLS 1.3 the client learns it on its first read, hence a transport error
        // rather than a connect error.
        let err = root_ca(node_channel(&addr, &foreign).unwrap())
            .await
            .unwrap_err();
        assert!(
            format!("{err:?}").contains("received fatal alert"),
            "{err:?}"
        );
    }
    // The same server still serves a legitimate node.
    assert!(
        whoami(node_channel(&addr, &c.worker).unwrap())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn servers_without_a_manager_certificate_are_refused() {
    let c = cluster();
    // A worker certificate lacks the rswarm-manager name; a foreign CA is not trusted.
    let worker_addr = serve_tls(&c.worker, Routes::new(echo(&c.ca))).await;
    let err = whoami(node_channel(&worker_addr, &c.manager).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");

    let other = RootCa::generate(CLUSTER).unwrap();
    let impostor = other.issue_identity("m1", Role::Manager, CLUSTER).unwrap();
    let impostor_addr = serve_tls(&impostor, Routes::new(echo(&other))).await;
    let err = whoami(node_channel(&impostor_addr, &c.worker).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
}

#[tokio::test]
async fn join_flow_pins_the_ca_from_the_token() {
    let c = cluster();
    let addr = serve_tls(&c.manager, Routes::new(echo(&c.ca))).await;
    let token = JoinToken::generate(&c.ca.cert_pem).unwrap();

    let fetched = root_ca(bootstrap_channel(&addr).unwrap()).await.unwrap();
    token.verify_ca(&fetched).unwrap();
    assert!(
        root_ca(pinned_channel(&addr, &fetched).unwrap())
            .await
            .is_ok()
    );

    let wrong = RootCa::generate(CLUSTER).unwrap();
    let err = root_ca(pinned_channel(&addr, &wrong.cert_pem).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    // A token for another CA refuses what this server hands out.
    let other_token = JoinToken::generate(&wrong.cert_pem).unwrap();
    assert!(other_token.verify_ca(&fetched).is_err());
}

#[tokio::test]
async fn interceptors_see_the_peer_certificate() {
    let c = cluster();
    let svc = NodeCaServer::with_interceptor(
        EchoCa {
            ca_pem: c.ca.cert_pem.clone(),
        },
        manager_interceptor,
    );
    let addr = serve_tls(&c.manager, Routes::new(svc)).await;
    assert_eq!(
        whoami(node_channel(&addr, &c.manager).unwrap())
            .await
            .unwrap()
            .node_id,
        "m1"
    );
    let err = whoami(node_channel(&addr, &c.worker).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert!(err.message().contains("caller is worker w1"), "{err}");
    let err = root_ca(pinned_channel(&addr, &c.ca.cert_pem).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
}

#[tokio::test]
async fn unix_socket_callers_are_local() {
    let c = cluster();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rswarm.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    tokio::spawn(
        Server::builder()
            .add_service(echo(&c.ca))
            .serve_with_incoming(UnixListenerStream::new(listener)),
    );
    let channel = local_channel(&path).unwrap();
    assert_eq!(whoami(channel).await.unwrap().node_id, "<local>");
}

#[tokio::test]
async fn admin_channel_loads_the_identity_from_disk() {
    let c = cluster();
    let addr = serve_tls(&c.manager, Routes::new(echo(&c.ca))).await;
    let dir = tempfile::tempdir().unwrap();
    c.admin.save(dir.path()).unwrap();
    let channel = rswarm_proto::tls::admin_channel(&addr, dir.path()).unwrap();
    assert_eq!(whoami(channel).await.unwrap().role, 2);

    let missing = rswarm_proto::tls::admin_channel(&addr, &dir.path().join("nope")).unwrap_err();
    assert!(missing.to_string().contains("nope"), "{missing}");
}

#[tokio::test]
async fn unreachable_manager_fails_within_the_connect_timeout() {
    let c = cluster();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // Accepts TCP (the backlog) but never answers the TLS handshake.
    let started = std::time::Instant::now();
    let err = whoami(node_channel(&addr, &c.worker).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    drop(listener);
}
