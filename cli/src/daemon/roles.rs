//! Changing role in place: the node asks the managers for a certificate of the role
//! they now want it to have, then restarts its services in that role (a promoted
//! node joins the Raft group as a voter; a demoted one drops its Raft state).

use std::time::Duration;

use anyhow::Context as _;
use rswarm_proto::api::NodeRole;
use rswarm_proto::api::RenewNodeCertificateRequest;
use rswarm_proto::api::node_ca_client::NodeCaClient;
use rswarm_proto::tls::{Identity, new_key_and_csr, node_channel};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::serve::Start;
use super::state::{DataDir, NodeRecord};

/// Pause between attempts while no manager can renew the certificate.
const RETRY: Duration = Duration::from_secs(1);

/// Gets a certificate for the wanted role and returns the node's new record,
/// identity and how to start it. Retries until a manager answers or `stop` fires.
pub async fn change(
    dir: &DataDir,
    mut record: NodeRecord,
    identity: Identity,
    stop: &CancellationToken,
) -> anyhow::Result<(NodeRecord, Identity, Start)> {
    let (key_pem, csr_pem) = new_key_and_csr()?;
    let issued = loop {
        if stop.is_cancelled() {
            anyhow::bail!("stopped while changing role");
        }
        match renew(&record.manager_addrs, &identity, &csr_pem).await {
            Ok(issued) => break issued,
            Err(err) => {
                warn!(%err, "cannot renew the node certificate yet");
                tokio::time::sleep(RETRY).await;
            }
        }
    };
    let identity = Identity {
        ca_pem: identity.ca_pem,
        cert_pem: issued.cert_pem,
        key_pem,
    };
    identity.save(&dir.certs())?;
    if !issued.manager_addrs.is_empty() {
        record.manager_addrs = issued.manager_addrs;
    }
    // Raft state of an earlier membership must not be reused: a re-admitted manager
    // starts empty and receives the group's log or snapshot from the leader.
    let raft_dir = dir.raft();
    if raft_dir.exists() {
        std::fs::remove_dir_all(&raft_dir)
            .with_context(|| format!("cannot remove {}", raft_dir.display()))?;
    }
    if issued.role == NodeRole::Manager as i32 {
        record.role = "manager".into();
        record.raft_id = issued.raft_id;
        info!(raft_id = record.raft_id, "promoted: joining the managers");
        // The record is saved once the Raft group has admitted this node.
        Ok((record, identity, Start::Join))
    } else {
        record.role = "worker".into();
        record.raft_id = 0;
        dir.save(&record)?;
        info!("demoted: running as a worker");
        Ok((record, identity, Start::Restart))
    }
}

async fn renew(
    managers: &[String],
    identity: &Identity,
    csr_pem: &str,
) -> anyhow::Result<rswarm_proto::api::IssueNodeCertificateResponse> {
    let mut last = anyhow::anyhow!("no manager address known");
    for addr in managers {
        let channel = node_channel(addr, identity)?;
        match NodeCaClient::new(channel)
            .renew_node_certificate(RenewNodeCertificateRequest {
                csr_pem: csr_pem.to_owned(),
            })
            .await
        {
            Ok(resp) => return Ok(resp.into_inner()),
            Err(status) => last = anyhow::anyhow!("{addr}: {}", status.message()),
        }
    }
    Err(last)
}
