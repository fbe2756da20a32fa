//! Creating a cluster (`init`) and joining one (`join`). Nothing is kept in the data
//! dir unless the whole step succeeds (the caller discards partial files).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rswarm_manager::ca::RootCa;
use rswarm_manager::controlapi::{new_id, now_ms};
use rswarm_manager::raft::{ConnectError, Connector, RaftNode, RaftSettings};
use rswarm_manager::store::StoreAction;
use rswarm_proto::api::node_ca_client::NodeCaClient;
use rswarm_proto::api::{
    Cluster, GetRootCaRequest, IssueNodeCertificateRequest, ManagerStatus, Meta, Node,
    NodeAvailability, NodeNetwork, NodeRole, NodeSpec, NodeState, NodeStatus,
};
use rswarm_proto::tls::{
    Identity, JoinToken, Role, bootstrap_channel, new_key_and_csr, new_secret, node_channel,
    pinned_channel,
};

use super::state::{DataDir, NodeRecord};
use super::system;
use crate::args::{InitArgs, JoinArgs, NodeArgs, RaftArgs};

/// How long `init` waits for its one-member group to elect itself.
const SELF_ELECTION_WAIT: Duration = Duration::from_secs(10);

/// What `join` produced.
pub enum Joined {
    /// A worker, ready to run.
    Worker(NodeRecord, Identity),
    /// A manager admitted into the Raft group.
    Manager(NodeRecord, Identity, RaftNode),
}

fn settings(record: &NodeRecord) -> RaftSettings {
    RaftSettings {
        heartbeat_ms: record.heartbeat_ms,
        election_min_ms: record.election_min_ms,
        election_max_ms: record.election_max_ms,
        ..RaftSettings::default()
    }
}

/// mTLS channels to other managers with this node's certificate.
pub fn connector(identity: &Identity) -> Connector {
    let identity = identity.clone();
    Arc::new(move |addr: &str| {
        node_channel(addr, &identity).map_err(|e| ConnectError {
            addr: addr.to_owned(),
            reason: e.to_string(),
        })
    })
}

/// Opens this manager's Raft member from its data dir.
pub async fn open_raft(
    dir: &DataDir,
    record: &NodeRecord,
    identity: &Identity,
) -> anyhow::Result<RaftNode> {
    RaftNode::open(
        &dir.raft(),
        record.raft_id,
        record.node_id.clone(),
        &settings(record),
        connector(identity),
    )
    .await
    .with_context(|| format!("cannot open the Raft state in {}", dir.raft().display()))
}

/// Who the node is; the rest of its record comes from the command line.
struct Identified<'a> {
    node_id: &'a str,
    cluster_id: &'a str,
    role: Role,
    raft_id: u64,
    manager_addrs: Vec<String>,
}

fn record(
    who: Identified<'_>,
    listen: std::net::SocketAddr,
    advertise: std::net::SocketAddr,
    hostname: &str,
    raft: &RaftArgs,
    node: &NodeArgs,
) -> anyhow::Result<NodeRecord> {
    let userns_remap = super::executor::userns_remap(node)?.map(|map| map.to_string());
    Ok(NodeRecord {
        node_id: who.node_id.to_owned(),
        cluster_id: who.cluster_id.to_owned(),
        role: who.role.as_str().to_owned(),
        raft_id: who.raft_id,
        listen,
        advertise,
        hostname: hostname.to_owned(),
        manager_addrs: who.manager_addrs,
        heartbeat_ms: raft.heartbeat_ms,
        election_min_ms: raft.election_min_ms,
        election_max_ms: raft.election_max_ms,
        executor: node.executor.clone(),
        userns_remap,
    })
}

/// `rswarm init`: a CA, this manager's and the admin's certificates, a one-member
/// Raft group holding the cluster object and this node.
pub async fn init(
    dir: &DataDir,
    args: &InitArgs,
) -> anyhow::Result<(NodeRecord, Identity, RaftNode)> {
    let advertise = system::advertise_addr(args.node.advertise, args.node.listen)?;
    let hostname = args.node.hostname.clone().unwrap_or_else(system::hostname);
    dir.create()?;
    let cluster_id = new_id();
    let node_id = new_id();
    let raft_id = rand_raft_id();
    let ca = RootCa::generate(&cluster_id).context("cannot create the cluster CA")?;
    let identity = ca.issue_identity(&node_id, Role::Manager, &cluster_id)?;
    identity.save(&dir.certs())?;
    let admin = ca.issue_identity("admin", Role::Admin, &cluster_id)?;
    admin.save(&dir.admin())?;
    let record = record(
        Identified {
            node_id: &node_id,
            cluster_id: &cluster_id,
            role: Role::Manager,
            raft_id,
            manager_addrs: vec![advertise.to_string()],
        },
        args.node.listen,
        advertise,
        &hostname,
        &args.raft,
        &args.node,
    )?;
    let raft = open_raft(dir, &record, &identity).await?;
    raft.initialize(&advertise.to_string())
        .await
        .context("cannot initialise the Raft group")?;
    raft.raft()
        .wait(Some(SELF_ELECTION_WAIT))
        .current_leader(raft_id, "init: electing itself")
        .await
        .context("the new one-member Raft group did not elect this node")?;
    let now = now_ms();
    let meta = Some(Meta {
        version: 0,
        created_at: now,
        updated_at: now,
    });
    let cluster = Cluster {
        id: cluster_id.clone(),
        meta,
        name: "default".into(),
        ca_cert_pem: ca.cert_pem.clone(),
        ca_key_pem: ca.key_pem.clone(),
        worker_token_secret: new_secret(),
        manager_token_secret: new_secret(),
        raft: Some(rswarm_proto::api::RaftSettings {
            heartbeat_ms: args.raft.heartbeat_ms,
            election_min_ms: args.raft.election_min_ms,
            election_max_ms: args.raft.election_max_ms,
            snapshot_interval: RaftSettings::default().snapshot_every,
        }),
        network_pool: args.pool.clone(),
    };
    let node = Node {
        id: node_id.clone(),
        meta,
        spec: Some(NodeSpec {
            desired_role: NodeRole::Manager as i32,
            availability: NodeAvailability::Active as i32,
            labels: Default::default(),
        }),
        role: NodeRole::Manager as i32,
        description: Some(system::describe(&hostname)),
        status: Some(NodeStatus {
            state: NodeState::Ready as i32,
            message: String::new(),
            addr: advertise.to_string(),
            port_errors: Vec::new(),
        }),
        manager_status: Some(ManagerStatus {
            raft_id,
            addr: advertise.to_string(),
        }),
        network: Some(NodeNetwork {
            subnet: first_subnet(&args.pool)?,
        }),
    };
    raft.propose(vec![
        StoreAction::CreateCluster(cluster),
        StoreAction::CreateNode(node),
    ])
    .await
    .context("cannot write the cluster object")?
    .context("the store refused the cluster object")?;
    dir.save(&record)?;
    Ok((record, identity, raft))
}

/// The first node's subnet: the pool's lowest /24.
fn first_subnet(pool: &str) -> anyhow::Result<String> {
    let pool = rswarm_manager::network::parse_pool(pool)?;
    rswarm_manager::network::free_subnet(&pool, [])
        .ok_or_else(|| anyhow::anyhow!("the pool {pool} holds no /24"))
}

fn rand_raft_id() -> u64 {
    use rand::Rng;
    rand::rng().random_range(1..u64::MAX >> 1)
}

/// `rswarm join`: pin the CA with the token, get a certificate, and (managers)
/// become a Raft voter.
pub async fn join(dir: &DataDir, args: &JoinArgs) -> anyhow::Result<Joined> {
    let token: JoinToken = args
        .token
        .parse()
        .map_err(|e| anyhow::anyhow!("invalid join token: {e}"))?;
    let manager = args.manager_addr.to_string();
    let hostname = args.node.hostname.clone().unwrap_or_else(system::hostname);
    let advertise = match (args.node.advertise, args.node.listen.ip().is_unspecified()) {
        (None, true) => {
            // The address this host uses towards the manager is the one it can be
            // reached on from there.
            let probe = tokio::net::TcpStream::connect(args.manager_addr)
                .await
                .with_context(|| format!("cannot reach the manager at {manager}"))?;
            std::net::SocketAddr::new(probe.local_addr()?.ip(), args.node.listen.port())
        }
        (advertise, _) => system::advertise_addr(advertise, args.node.listen)?,
    };
    let ca_pem = NodeCaClient::new(bootstrap_channel(&manager)?)
        .get_root_ca_certificate(GetRootCaRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("cannot get the cluster CA from {manager}: {}", s.message()))?
        .into_inner()
        .cert_pem;
    token
        .verify_ca(&ca_pem)
        .map_err(|e| anyhow::anyhow!("refusing to join {manager}: {e}"))?;
    let (key_pem, csr_pem) = new_key_and_csr()?;
    let description = system::describe(&hostname);
    let issued = NodeCaClient::new(pinned_channel(&manager, &ca_pem)?)
        .issue_node_certificate(IssueNodeCertificateRequest {
            token: args.token.clone(),
            csr_pem,
            hostname: hostname.clone(),
            advertise_addr: advertise.to_string(),
            nano_cpus: description.nano_cpus,
            memory_bytes: description.memory_bytes,
        })
        .await
        .map_err(|s| anyhow::anyhow!("the manager at {manager} refused the join: {}", s.message()))?
        .into_inner();
    let role = if issued.role == NodeRole::Manager as i32 {
        Role::Manager
    } else {
        Role::Worker
    };
    let mut managers = issued.manager_addrs.clone();
    if managers.is_empty() {
        managers.push(manager.clone());
    }
    dir.create()?;
    let identity = Identity {
        ca_pem,
        cert_pem: issued.cert_pem,
        key_pem,
    };
    identity.save(&dir.certs())?;
    let record = record(
        Identified {
            node_id: &issued.node_id,
            cluster_id: &issued.cluster_id,
            role,
            raft_id: issued.raft_id,
            manager_addrs: managers,
        },
        args.node.listen,
        advertise,
        &hostname,
        &args.raft,
        &args.node,
    )?;
    if role == Role::Worker {
        dir.save(&record)?;
        return Ok(Joined::Worker(record, identity));
    }
    let raft = open_raft(dir, &record, &identity).await?;
    Ok(Joined::Manager(record, identity, raft))
}

/// Asks the cluster (through `via`) to admit this manager as a voter; the Raft
/// endpoint must already be served, since the leader replicates to it first.
pub async fn admit(raft: &RaftNode, record: &NodeRecord, via: &[String]) -> anyhow::Result<()> {
    let own = record.advertise.to_string();
    let mut last = None;
    for addr in via {
        match raft.join_via(addr, &own).await {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => Err(anyhow::anyhow!("cannot join the managers' Raft group: {e}")),
        None => anyhow::bail!("cannot join the managers' Raft group: no manager address"),
    }
}
