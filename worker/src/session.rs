//! The node's session with the dispatcher on the leader.
//!
//! Heartbeats go to the manager believed to lead. A follower answers with the
//! leader's address (metadata `rswarm-leader`) and the session moves there at once;
//! an unreachable manager makes the session try the next one after a short pause, so
//! a failover costs about one election plus a retry, not a heartbeat period.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rswarm_proto::api::dispatcher_client::DispatcherClient;
use rswarm_proto::api::{HeartbeatRequest, NetworkPeer, NodeDescription, NodeRole};
use rswarm_proto::tls::{Identity, node_channel};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tracing::{debug, info, warn};

use crate::proxy::ProxyStatus;

/// Metadata key a follower uses to name the leader (kept in step with the dispatcher).
const LEADER_METADATA: &str = "rswarm-leader";
/// Pause before trying another manager after a failure.
const RETRY_DELAY: Duration = Duration::from_millis(100);
/// Bound on one heartbeat call, so a dead manager is left quickly.
const CALL_TIMEOUT: Duration = Duration::from_millis(800);

/// The managers' addresses as the node last heard them, shared with the daemon
/// (which persists them and shows them in "this node is a worker" errors).
pub type ManagerList = Arc<RwLock<Vec<String>>>;

/// What the session tells the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionState {
    /// The managers' addresses, leader first.
    pub managers: Vec<String>,
    /// The role the managers want this node to have.
    pub desired_role: NodeRole,
    /// This node's task subnet (`10.231.3.0/24`); empty until allocated.
    pub subnet: String,
    /// The other nodes of the task network's overlay.
    pub peers: Vec<NetworkPeer>,
}

/// A node's dispatcher session.
pub struct Session {
    /// This node's certificate, presented to the managers.
    identity: Identity,
    /// Where other nodes reach this one.
    addr: String,
    /// What this node reports about itself.
    description: NodeDescription,
    /// Known managers; updated from every heartbeat answer.
    managers: ManagerList,
    /// Published after each successful heartbeat.
    state: watch::Sender<Option<SessionState>>,
    /// The manager that answered the last heartbeat (the leader), or None while
    /// no manager answers.
    leader: watch::Sender<Option<String>>,
    /// The node's proxy, whose listeners that cannot listen are sent with each
    /// heartbeat.
    proxy: Option<watch::Receiver<ProxyStatus>>,
}

impl Session {
    /// A session for the node with `identity`, advertised at `addr`.
    pub fn new(
        identity: Identity,
        addr: String,
        description: NodeDescription,
        managers: ManagerList,
    ) -> (Session, watch::Receiver<Option<SessionState>>) {
        let (state, rx) = watch::channel(None);
        let (leader, _) = watch::channel(None);
        (
            Session {
                identity,
                addr,
                description,
                managers,
                state,
                leader,
                proxy: None,
            },
            rx,
        )
    }

    /// Reports the listeners of the node's proxy (its `status`) that cannot
    /// listen, each with why, to the managers with every heartbeat.
    pub fn report_port_errors(&mut self, status: watch::Receiver<ProxyStatus>) {
        self.proxy = Some(status);
    }

    /// Follows the leader this session talks to.
    pub fn leader(&self) -> watch::Receiver<Option<String>> {
        self.leader.subscribe()
    }

    fn managers(&self) -> Vec<String> {
        self.managers
            .read()
            .map(|m| m.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn channel(&self, cache: &mut HashMap<String, Channel>, addr: &str) -> Option<Channel> {
        if let Some(c) = cache.get(addr) {
            return Some(c.clone());
        }
        match node_channel(addr, &self.identity) {
            Ok(c) => {
                cache.insert(addr.to_owned(), c.clone());
                Some(c)
            }
            Err(err) => {
                warn!(manager = addr, %err, "cannot build a channel to manager");
                None
            }
        }
    }

    /// Heartbeats until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut cache: HashMap<String, Channel> = HashMap::new();
        let mut target: Option<String> = None;
        let mut next = 0usize;
        let mut connected = false;
        loop {
            let managers = self.managers();
            let addr = match target.clone() {
                Some(a) => a,
                None if managers.is_empty() => {
                    warn!("no manager address known");
                    if sleep_or_stop(&shutdown, Duration::from_secs(1)).await {
                        return;
                    }
                    continue;
                }
                None => {
                    next %= managers.len();
                    managers[next].clone()
                }
            };
            let Some(channel) = self.channel(&mut cache, &addr) else {
                target = None;
                next += 1;
                if sleep_or_stop(&shutdown, RETRY_DELAY).await {
                    return;
                }
                continue;
            };
            let req = HeartbeatRequest {
                description: Some(self.description.clone()),
                addr: self.addr.clone(),
                port_errors: self
                    .proxy
                    .as_ref()
                    .map(|status| status.borrow().errors())
                    .unwrap_or_default(),
            };
            let mut client = DispatcherClient::new(channel);
            let call = client.heartbeat(req);
            let result = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = tokio::time::timeout(CALL_TIMEOUT, call) => r,
            };
            let wait = match result {
                Ok(Ok(resp)) => {
                    let resp = resp.into_inner();
                    if !connected {
                        info!(manager = %addr, "session established with the leader");
                        connected = true;
                    }
                    self.leader.send_if_modified(|l| {
                        let changed = l.as_deref() != Some(addr.as_str());
                        *l = Some(addr.clone());
                        changed
                    });
                    target = Some(addr);
                    if !resp.manager_addrs.is_empty()
                        && let Ok(mut m) = self.managers.write()
                        && *m != resp.manager_addrs
                    {
                        *m = resp.manager_addrs.clone();
                    }
                    let desired_role =
                        NodeRole::try_from(resp.desired_role).unwrap_or(NodeRole::Worker);
                    self.state.send_replace(Some(SessionState {
                        managers: resp.manager_addrs,
                        desired_role,
                        subnet: resp.subnet,
                        peers: resp.peers,
                    }));
                    Duration::from_millis(resp.period_ms.clamp(100, 60_000))
                }
                Ok(Err(status)) => {
                    connected = false;
                    self.leader.send_replace(None);
                    let leader = status
                        .metadata()
                        .get(LEADER_METADATA)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    debug!(manager = %addr, %status, ?leader, "heartbeat refused");
                    if status.code() == tonic::Code::PermissionDenied {
                        warn!(manager = %addr, error = status.message(), "heartbeat refused");
                    }
                    match leader {
                        Some(l) if l != addr => {
                            target = Some(l);
                            Duration::ZERO
                        }
                        _ => {
                            target = None;
                            next += 1;
                            RETRY_DELAY
                        }
                    }
                }
                Err(_elapsed) => {
                    connected = false;
                    self.leader.send_replace(None);
                    debug!(manager = %addr, "heartbeat timed out");
                    target = None;
                    next += 1;
                    RETRY_DELAY
                }
            };
            if sleep_or_stop(&shutdown, wait).await {
                return;
            }
        }
    }
}

/// Sleeps for `d`; true if `shutdown` fired first.
async fn sleep_or_stop(shutdown: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}
