//! Answering one query: the cluster's names from the records, the rest through
//! the upstreams, the errors the rules call for, and fitting UDP's size limit.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, PoisonError};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use tokio::sync::watch;
use tracing::debug;

use super::config::DnsConfig;
use super::error::DnsError;
use super::forward;
use super::records::{Records, normalize};

/// A UDP answer's limit without EDNS (RFC 1035).
const UDP_LIMIT: usize = 512;
/// The largest UDP payload we send to an EDNS client and advertise in our OPT
/// record (the 2020 DNS flag day's value, below common path MTUs).
const EDNS_UDP_LIMIT: u16 = 1232;
/// A TCP message's limit, its length prefix.
const TCP_LIMIT: usize = u16::MAX as usize;

/// How the query came in, which decides the answer's size limit and whether a
/// truncated upstream answer is retried over TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Transport {
    /// A datagram: answers fit the client's UDP limit.
    Udp,
    /// A length-prefixed message on a TCP connection.
    Tcp,
}

/// What every query task shares.
pub(super) struct Handler {
    /// The server's settings.
    config: DnsConfig,
    /// The latest records.
    records: watch::Receiver<Arc<Records>>,
    /// Per name, the rotation of its next A answer.
    rotation: Mutex<HashMap<String, usize>>,
}

impl Handler {
    pub(super) fn new(config: DnsConfig, records: watch::Receiver<Arc<Records>>) -> Self {
        Self {
            config,
            records,
            rotation: Mutex::new(HashMap::new()),
        }
    }

    /// The query in `packet`, or `None` when it is to be dropped (malformed, or
    /// a response rather than a query).
    pub(super) fn parse(packet: &[u8]) -> Option<Message> {
        match Message::from_vec(packet) {
            Ok(message) if message.metadata.message_type == MessageType::Query => Some(message),
            Ok(_) => {
                debug!("dropped a DNS response sent to the server");
                None
            }
            Err(err) => {
                debug!(%err, len = packet.len(), "dropped a malformed DNS message");
                None
            }
        }
    }

    /// The answer to `request`, parsed from `packet`, ready to send; `None` when
    /// nothing is to be sent (the answer could not be encoded).
    pub(super) async fn answer(
        &self,
        packet: &[u8],
        request: &Message,
        transport: Transport,
    ) -> Option<Vec<u8>> {
        let limit = match transport {
            Transport::Udp if request.edns.is_some() => {
                usize::from(request.max_payload().min(EDNS_UDP_LIMIT))
            }
            Transport::Udp => UDP_LIMIT,
            Transport::Tcp => TCP_LIMIT,
        };
        let response = if request.metadata.op_code != OpCode::Query {
            self.error(request, ResponseCode::NotImp)
        } else if let [query] = request.queries.as_slice() {
            match self.local(request, query) {
                Some(response) => response,
                None => return self.forward(packet, request, transport).await,
            }
        } else {
            self.error(request, ResponseCode::FormErr)
        };
        match encode(response, limit) {
            Ok(bytes) => Some(bytes),
            Err(err) => {
                debug!(%err, "dropped an answer");
                None
            }
        }
    }

    /// The answer from the records, `None` when the name is not the cluster's.
    fn local(&self, request: &Message, query: &Query) -> Option<Message> {
        let name = normalize(&query.name().to_ascii());
        let records = Arc::clone(&*self.records.borrow());
        let addrs = records.names.get(&name)?;
        let mut response = self.response(request);
        response.metadata.authoritative = true;
        response.add_query(query.clone());
        if query.query_type() == RecordType::A && query.query_class() == DNSClass::IN {
            for addr in self.rotated(&name, addrs, &records) {
                let rdata = RData::A(A(addr));
                response.add_answer(Record::from_rdata(
                    query.name().clone(),
                    self.config.ttl,
                    rdata,
                ));
            }
        }
        Some(response)
    }

    /// `addrs` rotated by one more than the last answer for `name` was.
    fn rotated(&self, name: &str, addrs: &[Ipv4Addr], records: &Records) -> Vec<Ipv4Addr> {
        if addrs.len() < 2 {
            return addrs.to_vec();
        }
        let start = {
            let mut rotation = self.rotation.lock().unwrap_or_else(PoisonError::into_inner);
            if !rotation.contains_key(name) && rotation.len() >= records.names.len() {
                rotation.retain(|known, _| records.names.contains_key(known));
            }
            let next = rotation.entry(name.to_owned()).or_insert(0);
            let start = *next % addrs.len();
            *next = start + 1;
            start
        };
        addrs[start..]
            .iter()
            .chain(&addrs[..start])
            .copied()
            .collect()
    }

    /// The upstreams' answer to a name that is not the cluster's: NXDOMAIN
    /// without upstreams, SERVFAIL when none of them answered.
    async fn forward(
        &self,
        packet: &[u8],
        request: &Message,
        transport: Transport,
    ) -> Option<Vec<u8>> {
        let code = if self.config.upstreams.is_empty() {
            ResponseCode::NXDomain
        } else {
            let upstreams = &self.config.upstreams;
            let timeout = self.config.upstream_timeout;
            match forward::forward(packet, upstreams, timeout, transport == Transport::Tcp).await {
                Ok(reply) => return Some(reply),
                Err(err) => {
                    debug!(%err, "no upstream answered; SERVFAIL");
                    ResponseCode::ServFail
                }
            }
        };
        let mut response = self.error(request, code);
        response.add_queries(request.queries.iter().cloned());
        encode(response, UDP_LIMIT).ok()
    }

    /// An empty response to `request` with `code`.
    fn error(&self, request: &Message, code: ResponseCode) -> Message {
        let mut response = self.response(request);
        response.metadata.response_code = code;
        if code == ResponseCode::FormErr {
            response.edns = None;
        }
        response
    }

    /// The response header and OPT record `request` calls for, no sections.
    fn response(&self, request: &Message) -> Message {
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.metadata.checking_disabled = request.metadata.checking_disabled;
        response.metadata.recursion_available = !self.config.upstreams.is_empty();
        if request.edns.is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(EDNS_UDP_LIMIT);
            response.set_edns(edns);
        }
        response
    }
}

/// `response` encoded in at most `limit` bytes: the answers that do not fit are
/// left out and TC set, so the client asks again over TCP.
fn encode(mut response: Message, limit: usize) -> Result<Vec<u8>, DnsError> {
    let bytes = response.to_vec()?;
    if bytes.len() <= limit {
        return Ok(bytes);
    }
    let answers = std::mem::take(&mut response.answers);
    response.metadata.truncation = true;
    let base = response.to_vec()?.len();
    let mut keep = match answers.first() {
        Some(first) => {
            response.answers = vec![first.clone()];
            let each = response.to_vec()?.len().saturating_sub(base).max(1);
            (limit.saturating_sub(base) / each).min(answers.len())
        }
        None => 0,
    };
    loop {
        response.answers = answers[..keep].to_vec();
        let bytes = response.to_vec()?;
        if bytes.len() <= limit || keep == 0 {
            return Ok(bytes);
        }
        keep -= 1;
    }
}
