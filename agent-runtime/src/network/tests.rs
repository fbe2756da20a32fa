//! Two nodes in namespaces of the test's own, joined by a veth underlay, each
//! with a task namespace: traffic between the tasks crosses the overlay, stops
//! when a peer is removed, and teardown leaves only what the test made.
//! Runs as root only; never touches the host's namespace.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rtnetlink::{LinkUnspec, LinkVeth};

use super::*;

const GREETING: &[u8] = b"rswarm";
const PORT: u16 = 7431;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The namespaces of one test, deleted on drop whatever happened.
struct Namespaces {
    dir: tempfile::TempDir,
    made: Vec<PathBuf>,
}

impl Namespaces {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            made: Vec::new(),
        }
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn create(&mut self, what: &str) -> PathBuf {
        let name = format!("rswarm-nettest-{}-{what}", std::process::id());
        let path = create_netns(self.dir.path(), &name).unwrap();
        self.made.push(path.clone());
        path
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for p in &self.made {
            let _ = delete_netns(p);
        }
        // Task namespaces made by attach_task land in the same directory.
        if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
            for e in entries.flatten() {
                let _ = delete_netns(&e.path());
            }
        }
    }
}

/// Joins `a` and `b` by a veth pair with 192.0.2.1/24 and 192.0.2.2/24.
fn underlay(a: &Path, b: &Path) {
    let b_path = b.to_path_buf();
    run_in_netns(a, move |h| async move {
        nl::add_link(&h, "ul0", LinkVeth::new("ul0", "ul1").build()).await?;
        let ul1 = nl::link_by_name(&h, "ul1").await?.unwrap();
        let f = std::fs::File::open(&b_path).unwrap();
        use std::os::fd::AsRawFd;
        nl::set_link(
            &h,
            "ul1",
            LinkUnspec::new_with_index(ul1.index)
                .setns_by_fd(f.as_raw_fd())
                .build(),
        )
        .await?;
        up_with(&h, "ul0", "192.0.2.1/24").await
    })
    .unwrap();
    run_in_netns(
        b,
        |h| async move { up_with(&h, "ul1", "192.0.2.2/24").await },
    )
    .unwrap();
}

async fn up_with(h: &rtnetlink::Handle, name: &str, addr: &str) -> Result<(), NetError> {
    let l = nl::link_by_name(h, name).await?.unwrap();
    nl::add_addr(h, l.index, addr.parse()?).await?;
    nl::set_up(h, &l).await?;
    let lo = nl::link_by_name(h, "lo").await?.unwrap();
    nl::set_up(h, &lo).await
}

fn config(underlay: [u8; 4], subnet: &str, dir: &Path) -> NodeNetworkConfig {
    let mut c = NodeNetworkConfig::new(Ipv4Addr::from(underlay), subnet.parse().unwrap());
    c.netns_dir = dir.to_path_buf();
    c
}

fn apply(ns: &Path, cfg: &NodeNetworkConfig, peers: Vec<Peer>) {
    let cfg = cfg.clone();
    run_in_netns(ns, move |h| async move {
        NodeNetwork::with_handle(cfg, h)?.apply(&peers).await
    })
    .unwrap();
}

/// Two nodes (192.0.2.1 with 10.231.1.0/24, 192.0.2.2 with 10.231.2.0/24)
/// joined by an underlay, each with the other as its peer.
fn two_nodes(ns: &mut Namespaces) -> [(PathBuf, NodeNetworkConfig); 2] {
    let n1 = ns.create("node1");
    let n2 = ns.create("node2");
    let dir = ns.dir().to_path_buf();
    underlay(&n1, &n2);
    let c1 = config([192, 0, 2, 1], "10.231.1.0/24", &dir);
    let c2 = config([192, 0, 2, 2], "10.231.2.0/24", &dir);
    apply(&n1, &c1, vec![peer(&c2)]);
    apply(&n2, &c2, vec![peer(&c1)]);
    [(n1, c1), (n2, c2)]
}

fn peer(c: &NodeNetworkConfig) -> Peer {
    Peer {
        underlay: c.underlay,
        subnet: c.subnet,
    }
}

fn attach_task(node: &Path, cfg: &NodeNetworkConfig, key: &str, addr: Ipv4Addr) -> Attachment {
    let (cfg, key) = (cfg.clone(), key.to_string());
    run_in_netns(node, move |h| async move {
        NodeNetwork::with_handle(cfg, h)?
            .attach_task(&key, addr)
            .await
    })
    .unwrap()
}

fn detach_task(node: &Path, cfg: &NodeNetworkConfig, a: Attachment) {
    let cfg = cfg.clone();
    run_in_netns(node, move |h| async move {
        NodeNetwork::with_handle(cfg, h)?.detach(&a).await
    })
    .unwrap()
}

/// The hardware address of the link `name` in `ns`.
fn mac_of(ns: &Path, name: &str) -> Option<Vec<u8>> {
    let name = name.to_string();
    run_in_netns(
        ns,
        move |h| async move { nl::link_by_name(&h, &name).await },
    )
    .unwrap()
    .and_then(|l| l.mac)
}

/// The MAC of the port [`add_low_port`] adds: lower than any random one.
const LOW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];

/// Puts a veth whose MAC is [`LOW_MAC`] on the bridge of `node`, as a task
/// veth with a random MAC may be.
fn add_low_port(node: &Path) {
    run_in_netns(node, |h| async move {
        let veth = LinkVeth::new("low0", "low1")
            .address(LOW_MAC.to_vec())
            .build();
        nl::add_link(&h, "low0", veth).await?;
        let bridge = nl::link_by_name(&h, "rsw0").await?.unwrap();
        let low = nl::link_by_name(&h, "low0").await?.unwrap();
        nl::set_link(
            &h,
            "low0",
            LinkUnspec::new_with_index(low.index)
                .controller(bridge.index)
                .up()
                .build(),
        )
        .await
    })
    .unwrap();
}

fn remove_low_port(node: &Path) {
    run_in_netns(node, |h| async move {
        let low = nl::link_by_name(&h, "low0").await?.unwrap();
        nl::del_link(&h, low.index, "low0").await
    })
    .unwrap();
}

/// A listener in `ns` greeting every connection until dropped.
struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(ns: &Path, addr: Ipv4Addr) -> Self {
        let file = std::fs::File::open(ns).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let listener = TcpListener::bind((addr, PORT)).unwrap();
            listener.set_nonblocking(true).unwrap();
            tx.send(()).unwrap();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.write_all(GREETING);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        rx.recv().unwrap();
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether a TCP connection from `ns` to `addr` gets the greeting, trying a
/// bounded number of times (the first try may wait on ARP).
fn reaches(ns: &Path, addr: Ipv4Addr, tries: u32) -> bool {
    let file = std::fs::File::open(ns).unwrap();
    std::thread::spawn(move || {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let to = SocketAddr::from((addr, PORT));
        for _ in 0..tries {
            if let Ok(mut s) = TcpStream::connect_timeout(&to, Duration::from_secs(1)) {
                s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                let mut buf = [0u8; GREETING.len()];
                if s.read_exact(&mut buf).is_ok() && buf == GREETING {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    })
    .join()
    .unwrap()
}

/// Names of the links in `ns`, sorted.
fn link_names(ns: &Path) -> Vec<String> {
    let mut names: Vec<String> = run_in_netns(ns, |h| async move { nl::links(&h).await })
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    names.sort();
    names
}

#[test]
fn two_nodes_reach_each_other_over_the_overlay() {
    if !is_root() {
        eprintln!("skipping two_nodes_reach_each_other_over_the_overlay: needs root");
        return;
    }
    let mut ns = Namespaces::new();
    let dir = ns.dir().to_path_buf();
    let [(n1, c1), (n2, c2)] = two_nodes(&mut ns);
    let p2 = peer(&c2);
    // Idempotent: a second apply keeps the devices it made.
    let indexes = |ns: &Path| {
        run_in_netns(ns, |h| async move {
            let b = nl::link_by_name(&h, "rsw0").await?.map(|l| l.index);
            let v = nl::link_by_name(&h, "rsw0-vx").await?.map(|l| l.index);
            Ok((b, v))
        })
        .unwrap()
    };
    let before = indexes(&n1);
    apply(&n1, &c1, vec![p2]);
    assert_eq!(indexes(&n1), before);
    assert!(before.0.is_some() && before.1.is_some());

    let t1_addr = Ipv4Addr::new(10, 231, 1, 2);
    let t2_addr = Ipv4Addr::new(10, 231, 2, 2);
    let a1 = attach_task(&n1, &c1, "task-one", t1_addr);
    let a2 = attach_task(&n2, &c2, "task-two", t2_addr);
    assert!(a1.owns_netns && a1.netns.starts_with(&dir));
    assert_eq!(
        link_names(&a1.netns),
        vec!["eth0".to_string(), "lo".to_string()]
    );
    assert_eq!(
        link_names(&n1),
        vec![
            "lo".to_string(),
            a1.host_veth.clone(),
            "rsw0".into(),
            "rsw0-vx".into(),
            "ul0".into()
        ]
    );

    let server = Server::start(&a2.netns, t2_addr);
    assert!(
        reaches(&a1.netns, t2_addr, 5),
        "task one does not reach task two"
    );

    // Node one forgets node two: its flood entry and route go, traffic stops.
    apply(&n1, &c1, vec![]);
    let cfg = c1.clone();
    let (floods, routes) = run_in_netns(&n1, move |h| async move {
        let vx = nl::link_by_name(&h, &cfg.vxlan).await?.unwrap();
        Ok((
            nl::flood_dsts(&h, vx.index).await?,
            nl::own_routes(&h).await?.len(),
        ))
    })
    .unwrap();
    assert!(floods.is_empty(), "flood entries left: {floods:?}");
    assert_eq!(routes, 0);
    assert!(
        !reaches(&a1.netns, t2_addr, 2),
        "task two still reachable after removing its node"
    );

    // And back.
    apply(&n1, &c1, vec![p2]);
    assert!(
        reaches(&a1.netns, t2_addr, 5),
        "task two unreachable after re-adding its node"
    );
    drop(server);

    for (node, cfg, a) in [(&n1, &c1, a1), (&n2, &c2, a2)] {
        let cfg = cfg.clone();
        let netns = a.netns.clone();
        run_in_netns(node, move |h| async move {
            let net = NodeNetwork::with_handle(cfg, h)?;
            net.detach(&a).await?;
            // Detaching twice is fine.
            net.detach(&a).await?;
            net.teardown().await
        })
        .unwrap();
        assert!(
            !netns.exists(),
            "task namespace file left: {}",
            netns.display()
        );
    }
    assert_eq!(link_names(&n1), vec!["lo".to_string(), "ul0".into()]);
    assert_eq!(link_names(&n2), vec!["lo".to_string(), "ul1".into()]);
    let routes = run_in_netns(&n1, |h| async move { nl::own_routes(&h).await }).unwrap();
    assert!(routes.is_empty());
}

/// A node's tasks stay reachable from its peers while tasks come and go on
/// it: the gateway's MAC does not follow the bridge's lowest port, and a task
/// that gets an address another task held answers with the same MAC, so the
/// peers' and the node's neighbour entries stay right. Without that, either
/// change black-holes the traffic until the neighbour entry expires (15-45 s).
#[test]
fn tasks_coming_and_going_keep_the_macs_behind_the_gateway_and_the_task_addresses() {
    if !is_root() {
        eprintln!("skipping tasks_coming_and_going_keep_the_macs...: needs root");
        return;
    }
    let mut ns = Namespaces::new();
    let [(n1, c1), (n2, c2)] = two_nodes(&mut ns);
    let gateway2 = Ipv4Addr::new(10, 231, 2, 1);
    assert_eq!(mac_of(&n2, "rsw0"), Some(mac_for_test(gateway2)));
    // A port whose MAC is lower than any other joins node two's bridge, as a
    // task veth with a random MAC may, before node one first resolves node
    // two's gateway.
    add_low_port(&n2);
    assert_eq!(mac_of(&n2, "rsw0"), Some(mac_for_test(gateway2)));
    let client = attach_task(&n1, &c1, "client", Ipv4Addr::new(10, 231, 1, 2));
    let addr = Ipv4Addr::new(10, 231, 2, 2);
    let first = attach_task(&n2, &c2, "first", addr);
    let server = Server::start(&first.netns, addr);
    assert!(
        reaches(&client.netns, addr, 5),
        "the first task is unreachable"
    );
    // The port goes (its task ended): the gateway's MAC node one holds must
    // still be node two's.
    remove_low_port(&n2);
    assert_eq!(mac_of(&n2, "rsw0"), Some(mac_for_test(gateway2)));
    assert!(
        reaches(&client.netns, addr, 2),
        "a port leaving the bridge cut its node's tasks off"
    );

    // The task goes; a new one gets its address.
    drop(server);
    detach_task(&n2, &c2, first);
    let second = attach_task(&n2, &c2, "second", addr);
    assert_eq!(mac_of(&second.netns, "eth0"), Some(mac_for_test(addr)));
    let _server = Server::start(&second.netns, addr);
    assert!(
        reaches(&client.netns, addr, 2),
        "the task that got the address again is unreachable"
    );
}

/// [`cidr::mac_for`] as the kernel reports it.
fn mac_for_test(ip: Ipv4Addr) -> Vec<u8> {
    cidr::mac_for(ip).to_vec()
}

/// A bridge made before bridges had a MAC of their own gets it when the node
/// network is applied, and its peers learn it at once (gratuitous ARP): they
/// hold the MAC it had when they resolved it, which goes with its port.
#[test]
fn a_bridge_whose_mac_moves_to_its_own_tells_the_peers() {
    if !is_root() {
        eprintln!("skipping a_bridge_whose_mac_moves_to_its_own_tells_the_peers: needs root");
        return;
    }
    let mut ns = Namespaces::new();
    let [(n1, c1), (n2, c2)] = two_nodes(&mut ns);
    // The bridge as the kernel left it: the MAC of its lowest port.
    add_low_port(&n2);
    run_in_netns(&n2, |h| async move {
        let bridge = nl::link_by_name(&h, "rsw0").await?.unwrap();
        nl::set_link(
            &h,
            "rsw0",
            LinkUnspec::new_with_index(bridge.index)
                .address(LOW_MAC.to_vec())
                .build(),
        )
        .await
    })
    .unwrap();
    let client = attach_task(&n1, &c1, "client", Ipv4Addr::new(10, 231, 1, 2));
    let addr = Ipv4Addr::new(10, 231, 2, 2);
    let task = attach_task(&n2, &c2, "task", addr);
    let _server = Server::start(&task.netns, addr);
    assert!(reaches(&client.netns, addr, 5), "the task is unreachable");

    apply(&n2, &c2, vec![peer(&c1)]);
    assert_eq!(
        mac_of(&n2, "rsw0"),
        Some(mac_for_test(Ipv4Addr::new(10, 231, 2, 1)))
    );
    remove_low_port(&n2);
    assert!(
        reaches(&client.netns, addr, 2),
        "the peer still sends to the bridge's old MAC"
    );
}

#[test]
fn teardown_removes_leftover_task_veths() {
    if !is_root() {
        eprintln!("skipping teardown_removes_leftover_task_veths: needs root");
        return;
    }
    let mut ns = Namespaces::new();
    let n = ns.create("solo");
    let t = ns.create("solo-task");
    let dir = ns.dir().to_path_buf();
    run_in_netns(&n, |h| async move {
        nl::add_link(&h, "ul0", LinkVeth::new("ul0", "ulx").build()).await?;
        up_with(&h, "ul0", "192.0.2.9/24").await
    })
    .unwrap();
    let cfg = config([192, 0, 2, 9], "10.231.9.0/24", &dir);
    let task_ns = t.clone();
    let names = run_in_netns(&n, move |h| async move {
        let net = NodeNetwork::with_handle(cfg, h)?;
        net.apply(&[]).await?;
        let a = net
            .attach("left-over", &task_ns, Ipv4Addr::new(10, 231, 9, 5))
            .await?;
        assert!(!a.owns_netns);
        // A second attach of the same task replaces the first.
        net.attach("left-over", &task_ns, Ipv4Addr::new(10, 231, 9, 5))
            .await?;
        // Addresses outside the subnet or the gateway itself are refused.
        assert!(
            net.attach("x", &task_ns, Ipv4Addr::new(10, 231, 8, 5))
                .await
                .is_err()
        );
        assert!(
            net.attach("x", &task_ns, Ipv4Addr::new(10, 231, 9, 1))
                .await
                .is_err()
        );
        // Service VIPs: exactly the listed /32s on the VIP device.
        let vip = |last: u8| Ipv4Addr::new(10, 231, 255, last);
        net.set_vips(&[vip(1), vip(2)]).await?;
        net.set_vips(&[vip(2), vip(3)]).await?;
        // Applying the node network again keeps them.
        net.apply(&[]).await?;
        let link = nl::link_by_name(net.handle(), "rsw0").await?.unwrap();
        let mut held: Vec<String> = nl::ipv4_addrs(net.handle(), link.index)
            .await?
            .into_iter()
            .map(|(n, _)| n.to_string())
            .collect();
        held.sort();
        assert_eq!(
            held,
            ["10.231.255.2/32", "10.231.255.3/32", "10.231.9.1/24"]
        );
        // A VIP is local: a socket binds it.
        let bound = std::net::TcpListener::bind((vip(3), 0));
        assert!(bound.is_ok(), "{bound:?}");
        drop(bound);
        net.teardown().await?;
        nl::links(net.handle()).await
    })
    .unwrap();
    let mut names: Vec<String> = names.into_iter().map(|l| l.name).collect();
    names.sort();
    assert_eq!(names, vec!["lo".to_string(), "ul0".into(), "ulx".into()]);
    // The task end went with the pair; the namespace file is the caller's.
    assert_eq!(link_names(&t), vec!["lo".to_string()]);
    assert!(t.exists());
}

#[test]
fn netns_files_come_and_go() {
    if !is_root() {
        eprintln!("skipping netns_files_come_and_go: needs root");
        return;
    }
    let mut ns = Namespaces::new();
    let p = ns.create("plain");
    assert!(netns::is_netns_file(&p));
    // Creating again finds the same namespace.
    let again = create_netns(ns.dir(), p.file_name().unwrap().to_str().unwrap()).unwrap();
    assert_eq!(again, p);
    assert_eq!(link_names(&p), vec!["lo".to_string()]);
    delete_netns(&p).unwrap();
    assert!(!p.exists());
    delete_netns(&p).unwrap();
    assert!(create_netns(ns.dir(), "../escape").is_err());
}
