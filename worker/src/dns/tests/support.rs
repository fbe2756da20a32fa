//! A running server, clients and fake upstreams for the tests; loopback only,
//! and every wait is bounded.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::dns::{DnsConfig, DnsServer, Records};

/// Longest any single step of a test may take.
pub const STEP: Duration = Duration::from_secs(5);

/// Fails the test when `future` takes longer than [`STEP`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: no result within {STEP:?}"),
    }
}

/// Records from `(name, addresses)` pairs.
pub fn records(entries: &[(&str, &[Ipv4Addr])]) -> Records {
    let mut records = Records::default();
    for (name, addrs) in entries {
        records.insert(name, addrs.to_vec());
    }
    records
}

/// `n` distinct addresses in 10.0.0.0/16 (record data only, never contacted).
pub fn addrs(n: usize) -> Vec<Ipv4Addr> {
    (0..n)
        .map(|i| Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250 + 2) as u8))
        .collect()
}

/// A server on loopback ports.
pub struct Running {
    /// Its UDP address.
    pub udp: SocketAddr,
    /// Its TCP address.
    pub tcp: SocketAddr,
    /// Replaces its records.
    pub records: watch::Sender<Arc<Records>>,
    /// Stops it.
    shutdown: CancellationToken,
    /// Its `run`.
    task: JoinHandle<()>,
}

impl Running {
    /// Starts a server with `config` and `records`.
    pub async fn start(config: DnsConfig, records: Records) -> Self {
        let udp_socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let tcp_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let udp = udp_socket.local_addr().unwrap();
        let tcp = tcp_listener.local_addr().unwrap();
        let (sender, receiver) = watch::channel(Arc::new(records));
        let shutdown = CancellationToken::new();
        let server = DnsServer::new(config);
        let task = tokio::spawn(server.run(udp_socket, tcp_listener, receiver, shutdown.clone()));
        Self {
            udp,
            tcp,
            records: sender,
            shutdown,
            task,
        }
    }

    /// Stops the server and waits for `run` to return.
    pub async fn stop(self) {
        self.shutdown.cancel();
        within("server stop", self.task).await.unwrap();
    }

    /// Asks over UDP and parses the answer.
    pub async fn ask(&self, query: &Message) -> Message {
        let bytes = self.ask_raw(&query.to_vec().unwrap()).await;
        Message::from_vec(&bytes.expect("an answer")).unwrap()
    }

    /// Asks over UDP and waits up to [`STEP`] for the answer (forwarded ones).
    pub async fn ask_raw_slow(&self, query: &Message) -> Message {
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(self.udp).await.unwrap();
        within("udp send", client.send(&query.to_vec().unwrap()))
            .await
            .unwrap();
        let mut buf = vec![0u8; 65_535];
        let len = within("udp answer", client.recv(&mut buf)).await.unwrap();
        Message::from_vec(&buf[..len]).unwrap()
    }

    /// Sends `bytes` over UDP; the answer's bytes, or `None` when none came
    /// within `quiet` (half a second).
    pub async fn ask_raw(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(self.udp).await.unwrap();
        within("udp send", client.send(bytes)).await.unwrap();
        let mut buf = vec![0u8; 65_535];
        let quiet = Duration::from_millis(500);
        let len = tokio::time::timeout(quiet, client.recv(&mut buf))
            .await
            .ok()?;
        buf.truncate(len.unwrap());
        Some(buf)
    }
}

/// A query for `name` and `rtype` with recursion desired.
pub fn query(name: &str, rtype: RecordType) -> Message {
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    let mut name = Name::from_ascii(name).unwrap();
    name.set_fqdn(true);
    message.add_query(Query::query(name, rtype));
    message
}

/// `query` with an EDNS OPT record advertising `payload` bytes.
pub fn with_edns(mut query: Message, payload: u16) -> Message {
    let mut edns = Edns::new();
    edns.set_max_payload(payload);
    query.set_edns(edns);
    query
}

/// The A addresses among `message`'s answers, in order.
pub fn a_answers(message: &Message) -> Vec<Ipv4Addr> {
    message
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(A(addr)) => Some(*addr),
            _ => None,
        })
        .collect()
}

/// Writes `bytes` as one length-prefixed message.
pub async fn tcp_send(stream: &mut TcpStream, bytes: &[u8]) {
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    within("tcp write", stream.write_all(&framed))
        .await
        .unwrap();
}

/// Reads one length-prefixed message and parses it.
pub async fn tcp_recv(stream: &mut TcpStream) -> Message {
    let len = within("tcp read length", stream.read_u16()).await.unwrap();
    let mut bytes = vec![0u8; usize::from(len)];
    within("tcp read message", stream.read_exact(&mut bytes))
        .await
        .unwrap();
    Message::from_vec(&bytes).unwrap()
}

/// A fake upstream on a loopback port that answers every A query with `addr`,
/// copying the query's id; or, when `addr` is `None`, reads nothing at all.
pub struct FakeUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its loop (or, when silent, the socket's keeper).
    task: JoinHandle<()>,
}

impl FakeUpstream {
    /// Starts one.
    pub async fn start(answer: Option<Ipv4Addr>) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let Some(answer) = answer else {
                // Keeps the port bound (no ICMP refusal) and never answers.
                tokio::time::sleep(STEP * 4).await;
                drop(socket);
                return;
            };
            let mut buf = vec![0u8; 65_535];
            while let Ok((len, from)) = socket.recv_from(&mut buf).await {
                let reply = reply_to(&buf[..len], Some(answer));
                socket
                    .send_to(&reply.to_vec().unwrap(), from)
                    .await
                    .unwrap();
            }
        });
        Self { addr, task }
    }
}

impl FakeUpstream {
    /// Starts one whose UDP answers are empty and truncated (TC) and whose TCP
    /// answers, on the same port, carry `answer`.
    pub async fn start_truncating(answer: Ipv4Addr) -> Self {
        let (socket, listener) = udp_and_tcp_on_one_port().await;
        let addr = socket.local_addr().unwrap();
        let udp = async move {
            let mut buf = vec![0u8; 65_535];
            while let Ok((len, from)) = socket.recv_from(&mut buf).await {
                let mut reply = reply_to(&buf[..len], None);
                reply.metadata.truncation = true;
                socket
                    .send_to(&reply.to_vec().unwrap(), from)
                    .await
                    .unwrap();
            }
        };
        let tcp = async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let len = stream.read_u16().await.unwrap();
                let mut query = vec![0u8; usize::from(len)];
                stream.read_exact(&mut query).await.unwrap();
                let reply = reply_to(&query, Some(answer)).to_vec().unwrap();
                tcp_send(&mut stream, &reply).await;
            }
        };
        let task = tokio::spawn(async move {
            tokio::join!(udp, tcp);
        });
        Self { addr, task }
    }
}

/// A UDP socket and a TCP listener on the same loopback port (a few tries, in
/// case the UDP socket's port is taken for TCP).
async fn udp_and_tcp_on_one_port() -> (UdpSocket, TcpListener) {
    for _ in 0..10 {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        if let Ok(listener) = TcpListener::bind(socket.local_addr().unwrap()).await {
            return (socket, listener);
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}

/// A reply to the query in `bytes`, with `answer` as its A answer if any.
fn reply_to(bytes: &[u8], answer: Option<Ipv4Addr>) -> Message {
    let query = Message::from_vec(bytes).unwrap();
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.recursion_available = true;
    reply.add_queries(query.queries.iter().cloned());
    if let Some(answer) = answer {
        let name = query.queries[0].name().clone();
        reply.add_answer(Record::from_rdata(name, 300, RData::A(A(answer))));
    }
    reply
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Asserts `message` is a response with `code` and the id of `query`.
pub fn assert_response(message: &Message, query: &Message, code: ResponseCode) {
    assert_eq!(message.metadata.id, query.metadata.id, "id");
    assert_eq!(message.metadata.response_code, code, "{message:?}");
}
