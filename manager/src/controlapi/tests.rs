use std::sync::Arc;

use rswarm_proto::api::control_server::Control;
use rswarm_proto::api::*;
use tonic::{Code, Request};

use super::*;
use crate::store::{DirectProposer, StoreAction};

struct FakeRaft;

impl RaftView for FakeRaft {
    fn status(&self) -> RaftStatus {
        RaftStatus {
            term: 3,
            last_applied: 10,
            leader: Some(1),
            self_id: 1,
            voters: vec![(1, "10.0.0.1:4242".into()), (2, "10.0.0.2:4242".into())],
        }
    }
    async fn ping(&self, addr: &str) -> bool {
        addr == "10.0.0.1:4242"
    }
    async fn remove_voter(&self, _raft_id: u64) -> Result<(), String> {
        Err("not in unit tests".into())
    }
}

fn api() -> (ControlApi<DirectProposer, FakeRaft>, Store) {
    let store = Store::new();
    let proposer = Arc::new(DirectProposer::new(store.clone()));
    let seed = vec![
        StoreAction::CreateCluster(Cluster {
            id: "c1".into(),
            ca_cert_pem: crate::ca::RootCa::generate("c1").unwrap().cert_pem,
            worker_token_secret: "w".repeat(32),
            manager_token_secret: "m".repeat(32),
            ..Default::default()
        }),
        StoreAction::CreateNode(node(
            "abc111",
            "alpha",
            NodeRole::Manager,
            NodeState::Ready,
            1,
        )),
        StoreAction::CreateNode(node(
            "abc222",
            "beta",
            NodeRole::Worker,
            NodeState::Ready,
            0,
        )),
        StoreAction::CreateNode(node(
            "def333",
            "gamma",
            NodeRole::Worker,
            NodeState::Down,
            0,
        )),
    ];
    store.apply(1, &seed).unwrap();
    (
        ControlApi::new(store.clone(), proposer, Arc::new(FakeRaft)),
        store,
    )
}

fn node(id: &str, host: &str, role: NodeRole, state: NodeState, raft_id: u64) -> Node {
    Node {
        id: id.into(),
        role: role as i32,
        spec: Some(NodeSpec {
            desired_role: role as i32,
            ..Default::default()
        }),
        description: Some(NodeDescription {
            hostname: host.into(),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            state: state as i32,
            ..Default::default()
        }),
        manager_status: (raft_id != 0).then(|| ManagerStatus {
            raft_id,
            addr: "10.0.0.1:4242".into(),
        }),
        ..Default::default()
    }
}

fn spec(name: &str) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        task: Some(TaskSpec {
            container: Some(ContainerSpec {
                image: "demo".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        mode: Some(service_spec::Mode::Replicated(ReplicatedService {
            replicas: 3,
        })),
        ..Default::default()
    }
}

/// Requests in unit tests come through no transport: give them the local-socket
/// marker the real Unix listener adds.
fn local<T>(msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    req.extensions_mut()
        .insert(tonic::transport::server::UdsConnectInfo {
            peer_addr: None,
            peer_cred: None,
        });
    req
}

#[tokio::test]
async fn a_tcp_caller_without_certificate_is_refused() {
    let (api, _) = api();
    let err = Control::list_nodes(&api, Request::new(ListNodesRequest {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn create_list_and_duplicate_service() {
    let (api, store) = api();
    let svc = Control::create_service(
        &api,
        local(CreateServiceRequest {
            spec: Some(spec("web")),
        }),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(svc.id.len(), 25);
    let err = Control::create_service(
        &api,
        local(CreateServiceRequest {
            spec: Some(spec("web")),
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("\"web\" already exists"),
        "{}",
        err.message()
    );
    let list = Control::list_services(&api, local(ListServicesRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.services.len(), 1);
    assert_eq!(list.services[0].replicas_desired, 3);
    assert_eq!(list.services[0].replicas_running, 0);
    assert_eq!(store.view(|tx| tx.services().count()), 1);
}

#[tokio::test]
async fn invalid_spec_writes_nothing() {
    let (api, store) = api();
    let mut bad = spec("web");
    bad.task.as_mut().unwrap().placement = Some(Placement {
        constraints: vec!["node.labels.zone=eu".into()],
        ..Default::default()
    });
    let err = Control::create_service(&api, local(CreateServiceRequest { spec: Some(bad) }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("node.labels.zone=eu"),
        "{}",
        err.message()
    );
    assert_eq!(store.view(|tx| tx.services().count()), 0);
}

#[tokio::test]
async fn nodes_resolve_by_id_prefix_and_hostname() {
    let (api, _) = api();
    let get = |r: &str| {
        Control::get_node(
            &api,
            local(GetNodeRequest {
                reference: r.into(),
            }),
        )
    };
    assert_eq!(get("beta").await.unwrap().into_inner().id, "abc222");
    assert_eq!(get("def").await.unwrap().into_inner().id, "def333");
    let err = get("abc").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("ambiguous"));
    assert_eq!(get("nope").await.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn update_node_labels_and_availability() {
    let (api, store) = api();
    let n = Control::update_node(
        &api,
        local(UpdateNodeRequest {
            reference: "beta".into(),
            availability: "drain".into(),
            label_add: vec!["zone=eu".into()],
            label_rm: vec![],
        }),
    )
    .await
    .unwrap()
    .into_inner();
    let spec = n.spec.unwrap();
    assert_eq!(spec.availability, NodeAvailability::Drain as i32);
    assert_eq!(spec.labels["zone"], "eu");
    let err = Control::update_node(
        &api,
        local(UpdateNodeRequest {
            reference: "beta".into(),
            availability: "sleepy".into(),
            label_add: vec!["a=b".into()],
            label_rm: vec![],
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("sleepy"));
    let labels = store.view(|tx| tx.node("abc222").unwrap().spec.clone().unwrap().labels);
    assert!(
        !labels.contains_key("a"),
        "a refused update must write nothing"
    );
}

#[tokio::test]
async fn remove_node_rules() {
    let (api, store) = api();
    let rm = |r: &str, force| {
        Control::remove_node(
            &api,
            local(RemoveNodeRequest {
                reference: r.into(),
                force,
            }),
        )
    };
    let err = rm("alpha", true).await.unwrap_err();
    assert!(
        err.message().contains("demote it first"),
        "{}",
        err.message()
    );
    let err = rm("beta", false).await.unwrap_err();
    assert!(err.message().contains("--force"), "{}", err.message());
    rm("gamma", false).await.unwrap();
    rm("beta", true).await.unwrap();
    assert_eq!(store.view(|tx| tx.nodes().count()), 1);
}

#[tokio::test]
async fn demoting_the_quorum_away_is_refused() {
    let (api, _) = api();
    // Voters 1 and 2; 2 is unreachable: demoting 1 would leave 0 reachable of 1.
    let err = Control::demote_node(
        &api,
        local(GetNodeRequest {
            reference: "alpha".into(),
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("quorum"), "{}", err.message());
}

#[tokio::test]
async fn status_marks_leader_and_reachability() {
    let (api, _) = api();
    let s = Control::get_cluster_status(&api, local(GetClusterStatusRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.cluster_id, "c1");
    assert_eq!(s.raft_term, 3);
    assert_eq!(s.node_id, "abc111");
    assert_eq!(s.managers.len(), 2);
    assert!(s.managers[0].leader && s.managers[0].reachable);
    assert!(!s.managers[1].leader && !s.managers[1].reachable);
}

#[tokio::test]
async fn rotating_a_token_changes_only_that_token() {
    let (api, _) = api();
    let get = |role: &str, rotate| {
        Control::get_join_token(
            &api,
            local(JoinTokenRequest {
                role: role.into(),
                rotate,
            }),
        )
    };
    let w1 = get("worker", false).await.unwrap().into_inner();
    let m1 = get("manager", false).await.unwrap().into_inner().token;
    assert!(w1.token.starts_with("RSWTKN-1-"));
    assert_eq!(w1.manager_addrs[0], "10.0.0.1:4242");
    let w2 = get("worker", true).await.unwrap().into_inner().token;
    assert_ne!(w1.token, w2);
    assert_eq!(get("manager", false).await.unwrap().into_inner().token, m1);
}

fn published(name: &str, ports: &[(u32, PortProtocol, PublishMode)]) -> ServiceSpec {
    let mut s = spec(name);
    s.endpoint = Some(EndpointSpec {
        ports: ports
            .iter()
            .map(|(port, protocol, mode)| PortConfig {
                protocol: (*protocol).into(),
                target_port: 80,
                published_port: *port,
                publish_mode: (*mode).into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    });
    s
}

async fn create(
    api: &ControlApi<DirectProposer, FakeRaft>,
    spec: ServiceSpec,
) -> Result<Service, tonic::Status> {
    Control::create_service(api, local(CreateServiceRequest { spec: Some(spec) }))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn a_published_port_taken_in_the_cluster_is_refused_and_nothing_is_written() {
    use PortProtocol::{Tcp, Udp};
    use PublishMode::{Host, Ingress};
    let (api, store) = api();
    create(&api, published("web", &[(8080, Tcp, Ingress)]))
        .await
        .unwrap();
    create(&api, published("dns", &[(53, Udp, Host)]))
        .await
        .unwrap();
    for (name, ports, holder) in [
        ("web2", vec![(8080, Tcp, Ingress)], "web"),
        ("web3", vec![(9000, Tcp, Ingress), (8080, Tcp, Host)], "web"),
        ("dns2", vec![(53, Udp, Ingress)], "dns"),
    ] {
        let err = create(&api, published(name, &ports)).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{name}");
        assert!(
            err.message().contains("is already published by service")
                && err.message().contains(&format!("{holder:?}")),
            "{}",
            err.message()
        );
    }
    // Nor the port a node's daemon listens on (the manager alpha's 4242).
    for mode in [Ingress, Host] {
        let err = create(&api, published("api", &[(4242, Tcp, mode)]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        assert_eq!(
            err.message(),
            "port 4242/tcp is where the rswarm daemon of node alpha listens (10.0.0.1:4242); \
             choose another published port"
        );
    }
    // Another protocol, or host mode beside host mode, is fine.
    create(&api, published("web-udp", &[(8080, Udp, Ingress)]))
        .await
        .unwrap();
    create(&api, published("dns-b", &[(53, Udp, Host)]))
        .await
        .unwrap();
    create(&api, published("api-udp", &[(4242, Udp, Ingress)]))
        .await
        .unwrap();
    assert_eq!(store.view(|tx| tx.services().count()), 5);
}

/// The published ports of a stored service, in order.
fn published_ports(service: &Service) -> Vec<(u32, u32, i32)> {
    let ports = service.spec.as_ref().and_then(|s| s.endpoint.as_ref());
    ports
        .map(|e| &e.ports)
        .into_iter()
        .flatten()
        .map(|p| (p.published_port, p.target_port, p.protocol))
        .collect()
}

#[tokio::test]
async fn an_ingress_port_without_a_number_gets_the_lowest_free_one_and_keeps_it() {
    use PortProtocol::{Tcp, Udp};
    use PublishMode::{Host, Ingress};
    let (tcp, udp) = (Tcp as i32, Udp as i32);
    let (api, store) = api();
    let a = create(&api, published("a", &[(0, Tcp, Ingress)]))
        .await
        .unwrap();
    assert_eq!(published_ports(&a), [(30000, 80, tcp)]);
    create(&api, published("b", &[(30001, Tcp, Ingress)]))
        .await
        .unwrap();
    let c = create(
        &api,
        published("c", &[(0, Tcp, Ingress), (0, Udp, Ingress)]),
    )
    .await
    .unwrap();
    assert_eq!(published_ports(&c), [(30002, 80, tcp), (30000, 80, udp)]);
    // A number of its own beside one assigned, for the same target.
    let d = create(
        &api,
        published("d", &[(8080, Tcp, Ingress), (0, Tcp, Ingress)]),
    )
    .await
    .unwrap();
    assert_eq!(published_ports(&d), [(8080, 80, tcp), (30003, 80, tcp)]);

    // The spec as first written, sent again: the port keeps its number and
    // nothing changes.
    let version = |name: &str| {
        store.view(|tx| {
            let service = tx
                .services()
                .find(|s| s.spec.as_ref().unwrap().name == name);
            service.unwrap().meta.as_ref().unwrap().version
        })
    };
    let before = version("a");
    let again = update(&api, "a", 0, published("a", &[(0, Tcp, Ingress)]))
        .await
        .unwrap();
    assert_eq!(published_ports(&again), [(30000, 80, tcp)]);
    assert_eq!(version("a"), before, "an unchanged spec writes nothing");
    // `--publish-add 80` beside the port assigned for 80: the same publication.
    let added = update(
        &api,
        "a",
        0,
        published("a", &[(30000, Tcp, Ingress), (0, Tcp, Ingress)]),
    )
    .await
    .unwrap();
    assert_eq!(published_ports(&added), [(30000, 80, tcp)]);
    assert_eq!(version("a"), before);
    // A second one for the same target is a new port.
    let second = update(
        &api,
        "a",
        0,
        published(
            "a",
            &[(30000, Tcp, Ingress), (0, Tcp, Ingress), (0, Tcp, Ingress)],
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        published_ports(&second),
        [(30000, 80, tcp), (30004, 80, tcp)]
    );

    // Host mode needs its number.
    let err = create(&api, published("e", &[(0, Tcp, Host)]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .contains("the host-mode port for target port 80 needs a published port"),
        "{}",
        err.message()
    );

    // None left in the range: refused, naming it.
    let mut spec = published("f", &[(0, Tcp, Ingress)]);
    let err = store
        .view(|tx| ports::assign_in(tx, &mut spec, None, None, 30000..=30002))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no published port is left in 30000-30002 for target port 80/tcp: publish it on a \
         port of your choice or remove a service first"
    );
    // The daemons' port is never handed out.
    let mut spec = published("g", &[(0, Tcp, Ingress)]);
    store
        .view(|tx| ports::assign_in(tx, &mut spec, None, None, 4242..=4243))
        .unwrap();
    assert_eq!(spec.endpoint.unwrap().ports[0].published_port, 4243);
    assert_eq!(store.view(|tx| tx.services().count()), 4);
}

#[tokio::test]
async fn a_chosen_number_is_kept_only_for_its_own_target() {
    use PortProtocol::Tcp;
    use PublishMode::Ingress;
    let tcp = Tcp as i32;
    let (api, _store) = api();
    let x = create(&api, published("x", &[(0, Tcp, Ingress)]))
        .await
        .unwrap();
    assert_eq!(published_ports(&x), [(30000, 80, tcp)]);
    // 30000 now for target 90, and a chosen number for 80: a new one.
    let mut moved = published("x", &[(30000, Tcp, Ingress), (0, Tcp, Ingress)]);
    moved.endpoint.as_mut().unwrap().ports[0].target_port = 90;
    let x = update(&api, "x", 0, moved).await.unwrap();
    assert_eq!(published_ports(&x), [(30000, 90, tcp), (30001, 80, tcp)]);
    // A number the user gave is not kept for a port left to the managers.
    create(&api, published("y", &[(8090, Tcp, Ingress)]))
        .await
        .unwrap();
    let y = update(&api, "y", 0, published("y", &[(0, Tcp, Ingress)]))
        .await
        .unwrap();
    assert_eq!(published_ports(&y), [(30002, 80, tcp)]);
}

#[tokio::test]
async fn a_dnsrr_service_has_no_virtual_ip_and_an_update_of_the_mode_moves_it() {
    let (api, store) = api();
    let mut cluster = store.view(|tx| tx.cluster().cloned()).unwrap();
    cluster.network_pool = "10.231.0.0/16".into();
    DirectProposer::new(store.clone())
        .propose(vec![StoreAction::UpdateCluster(cluster)])
        .await
        .unwrap();
    let dnsrr = |name: &str, ports: &[(u32, PortProtocol, PublishMode)]| {
        let mut spec = published(name, ports);
        spec.endpoint.get_or_insert_default().mode = EndpointMode::Dnsrr.into();
        spec
    };
    let vip = |s: &Service| s.endpoint.as_ref().map(|e| e.virtual_ip.clone());
    let db = create(
        &api,
        dnsrr("db", &[(5432, PortProtocol::Tcp, PublishMode::Host)]),
    )
    .await
    .unwrap();
    assert_eq!(vip(&db), None);
    // An ingress port needs the VIP: refused, nothing written.
    let err = create(
        &api,
        dnsrr("web", &[(8080, PortProtocol::Tcp, PublishMode::Ingress)]),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .contains("with endpoint mode dnsrr publish it with mode=host")
    );
    assert_eq!(store.view(|tx| tx.services().count()), 1);

    // To VIP mode: it gets one; back to DNSRR: it is taken away and free again.
    let mut to_vip = dnsrr("db", &[(5432, PortProtocol::Tcp, PublishMode::Host)]);
    to_vip.endpoint.as_mut().unwrap().mode = EndpointMode::Vip.into();
    let db = update(&api, "db", 0, to_vip).await.unwrap();
    assert_eq!(vip(&db).as_deref(), Some("10.231.255.1"));
    let db = update(
        &api,
        "db",
        0,
        dnsrr("db", &[(5432, PortProtocol::Tcp, PublishMode::Host)]),
    )
    .await
    .unwrap();
    assert_eq!(vip(&db), None);
    let other = create(&api, spec("other")).await.unwrap();
    assert_eq!(vip(&other).as_deref(), Some("10.231.255.1"));
}

#[tokio::test]
async fn services_get_distinct_virtual_ips_from_the_pool() {
    let (api, store) = api();
    let no_pool = create(&api, spec("before")).await.unwrap();
    assert_eq!(no_pool.endpoint, None, "no task network, no VIP");
    let mut cluster = store.view(|tx| tx.cluster().cloned()).unwrap();
    cluster.network_pool = "10.231.0.0/16".into();
    DirectProposer::new(store.clone())
        .propose(vec![StoreAction::UpdateCluster(cluster)])
        .await
        .unwrap();
    let a = create(&api, spec("a")).await.unwrap();
    let b = create(&api, spec("b")).await.unwrap();
    let vip = |s: &Service| s.endpoint.as_ref().unwrap().virtual_ip.clone();
    assert_eq!(vip(&a), "10.231.255.1");
    assert_eq!(vip(&b), "10.231.255.2");
    Control::remove_service(
        &api,
        local(GetServiceRequest {
            reference: "a".into(),
        }),
    )
    .await
    .unwrap();
    let c = create(&api, spec("c")).await.unwrap();
    assert_eq!(
        vip(&c),
        "10.231.255.1",
        "a removed service's VIP is free again"
    );
}

async fn update(
    api: &ControlApi<DirectProposer, FakeRaft>,
    reference: &str,
    version: u64,
    spec: ServiceSpec,
) -> Result<Service, tonic::Status> {
    let request = UpdateServiceRequest {
        reference: reference.into(),
        version,
        spec: Some(spec),
    };
    Control::update_service(api, local(request))
        .await
        .map(|r| r.into_inner())
}

fn version(service: &Service) -> u64 {
    service.meta.as_ref().unwrap().version
}

#[tokio::test]
async fn update_replaces_the_spec_and_keeps_the_virtual_ip() {
    let (api, store) = api();
    let web = create(&api, spec("web")).await.unwrap();
    let mut new = spec("web");
    new.task.as_mut().unwrap().container.as_mut().unwrap().image = "demo:2".into();
    let updated = update(&api, "web", version(&web), new.clone())
        .await
        .unwrap();
    assert_eq!(updated.id, web.id);
    assert_eq!(updated.spec.as_ref(), Some(&new));
    assert_eq!(updated.endpoint, web.endpoint);
    assert!(version(&updated) > version(&web));
    // The same spec again writes nothing: the version stays.
    let again = update(&api, &web.id, 0, new).await.unwrap();
    assert_eq!(version(&again), version(&updated));
    assert_eq!(store.view(|tx| tx.services().count()), 1);
}

#[tokio::test]
async fn an_update_from_a_stale_version_is_refused_and_nothing_is_written() {
    let (api, store) = api();
    let web = create(&api, spec("web")).await.unwrap();
    let mut first = spec("web");
    first.task.as_mut().unwrap().container.as_mut().unwrap().env = vec!["A=1".into()];
    update(&api, "web", version(&web), first.clone())
        .await
        .unwrap();
    let mut second = spec("web");
    second
        .task
        .as_mut()
        .unwrap()
        .container
        .as_mut()
        .unwrap()
        .env = vec!["B=2".into()];
    let err = update(&api, "web", version(&web), second)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let stored = store.view(|tx| tx.service(&web.id).cloned()).unwrap();
    assert_eq!(
        err.message(),
        format!(
            "service \"web\" changed since version {} was read (it is at version {} now): \
             read it again and retry",
            version(&web),
            version(&stored)
        )
    );
    assert_eq!(stored.spec, Some(first), "the first update stays");
}

#[tokio::test]
async fn an_update_cannot_rename_change_mode_break_the_spec_or_take_a_port() {
    use PortProtocol::Tcp;
    use PublishMode::{Host, Ingress};
    let (api, store) = api();
    create(&api, published("web", &[(8080, Tcp, Ingress)]))
        .await
        .unwrap();
    let api_svc = create(&api, published("api", &[(9000, Tcp, Host)]))
        .await
        .unwrap();
    let mut global = published("api", &[(9000, Tcp, Host)]);
    global.mode = Some(service_spec::Mode::Global(GlobalService {}));
    let mut no_image = published("api", &[(9000, Tcp, Host)]);
    no_image
        .task
        .as_mut()
        .unwrap()
        .container
        .as_mut()
        .unwrap()
        .image
        .clear();
    for (spec, expected) in [
        (published("api2", &[(9000, Tcp, Host)]), "cannot be renamed"),
        (
            global,
            "service \"api\" is replicated: its mode cannot change to global (create a new \
             service instead)",
        ),
        (no_image, "image"),
        (
            published("api", &[(9000, Tcp, Host), (8080, Tcp, Host)]),
            "port 8080/tcp is already published by service \"web\"",
        ),
    ] {
        let err = update(&api, "api", 0, spec).await.unwrap_err();
        assert!(
            matches!(err.code(), Code::FailedPrecondition | Code::InvalidArgument),
            "{err:?}"
        );
        assert!(err.message().contains(expected), "{}", err.message());
    }
    let stored = store.view(|tx| tx.service(&api_svc.id).cloned()).unwrap();
    assert_eq!(stored, api_svc, "nothing was written");
    // Its own ports, moved to another number and to ingress mode, are fine.
    let moved = update(&api, "api", 0, published("api", &[(9001, Tcp, Ingress)]))
        .await
        .unwrap();
    assert_eq!(
        moved.spec.unwrap().endpoint.unwrap().ports[0].published_port,
        9001
    );
    let err = update(&api, "nope", 0, spec("nope")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}
