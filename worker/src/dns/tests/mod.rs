//! The DNS server against real sockets on 127.0.0.1.

mod support;

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{OpCode, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::{DnsConfig, Records, upstreams_from_resolv_conf};
use support::*;

const WEB: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const UPSTREAM_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

fn upstreams(config_upstreams: &[SocketAddr], timeout: Duration) -> DnsConfig {
    DnsConfig {
        upstreams: config_upstreams.to_vec(),
        upstream_timeout: timeout,
        ..DnsConfig::default()
    }
}

#[tokio::test]
async fn a_query_for_a_known_name_is_answered() {
    let server = Running::start(DnsConfig::default(), records(&[("web", &[WEB])])).await;
    let query = query("web.", RecordType::A);
    let answer = within("answer", server.ask(&query)).await;
    assert_response(&answer, &query, ResponseCode::NoError);
    assert!(answer.metadata.authoritative);
    assert!(answer.metadata.recursion_desired);
    assert_eq!(answer.queries, query.queries);
    assert_eq!(a_answers(&answer), vec![WEB]);
    assert_eq!(answer.answers[0].ttl, 0);
    server.stop().await;
}

#[tokio::test]
async fn addresses_rotate_per_name_across_queries() {
    let three = addrs(3);
    let two = addrs(2);
    let server = Running::start(
        DnsConfig::default(),
        records(&[("web", &three), ("db", &two)]),
    )
    .await;
    let mut firsts = Vec::new();
    for _ in 0..3 {
        let answer = within("web", server.ask(&query("web", RecordType::A))).await;
        let got = a_answers(&answer);
        assert_eq!(got.iter().collect::<HashSet<_>>(), three.iter().collect());
        firsts.push(got[0]);
        // Queries for another name in between do not disturb web's rotation.
        within("db", server.ask(&query("db", RecordType::A))).await;
    }
    assert_eq!(firsts, three, "each query starts one further");
    server.stop().await;
}

#[tokio::test]
async fn names_match_whatever_their_case_and_trailing_dot() {
    let server = Running::start(DnsConfig::default(), records(&[("Tasks.Web.", &[WEB])])).await;
    assert_eq!(server.records.borrow().get("TASKS.WEB"), Some(&[WEB][..]));
    for name in ["tasks.web", "TASKS.Web.", "tAsKs.wEb"] {
        let query = query(name, RecordType::A);
        let answer = within(name, server.ask(&query)).await;
        assert_response(&answer, &query, ResponseCode::NoError);
        assert_eq!(a_answers(&answer), vec![WEB], "{name}");
        // The name comes back as the client spelt it.
        let answered = &answer.answers[0].name;
        assert!(answered.eq_case(query.queries[0].name()), "{answered}");
    }
    server.stop().await;
}

#[tokio::test]
async fn other_types_of_a_known_name_get_nodata() {
    let server = Running::start(DnsConfig::default(), records(&[("web", &[WEB])])).await;
    for rtype in [RecordType::AAAA, RecordType::MX, RecordType::TXT] {
        let query = query("web", rtype);
        let answer = within("nodata", server.ask(&query)).await;
        assert_response(&answer, &query, ResponseCode::NoError);
        assert!(answer.metadata.authoritative);
        assert!(answer.answers.is_empty(), "{rtype}: {answer:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn swapped_records_are_used_by_the_next_query() {
    let server = Running::start(DnsConfig::default(), records(&[("web", &[WEB])])).await;
    let other = Ipv4Addr::new(10, 0, 9, 9);
    server
        .records
        .send(Arc::new(records(&[("web", &[other]), ("api", &[WEB])])))
        .unwrap();
    let answer = within("web", server.ask(&query("web", RecordType::A))).await;
    assert_eq!(a_answers(&answer), vec![other]);
    let answer = within("api", server.ask(&query("api", RecordType::A))).await;
    assert_eq!(a_answers(&answer), vec![WEB]);
    server.records.send(Arc::new(Records::default())).unwrap();
    let query = query("web", RecordType::A);
    let answer = within("gone", server.ask(&query)).await;
    assert_response(&answer, &query, ResponseCode::NXDomain);
    server.stop().await;
}

#[tokio::test]
async fn unknown_names_get_nxdomain_without_upstreams() {
    let server = Running::start(DnsConfig::default(), records(&[("web", &[WEB])])).await;
    for name in ["example.com", "web.example.com", "other"] {
        let query = query(name, RecordType::A);
        let answer = within(name, server.ask(&query)).await;
        assert_response(&answer, &query, ResponseCode::NXDomain);
        assert!(!answer.metadata.authoritative);
        assert!(!answer.metadata.recursion_available);
        assert_eq!(answer.queries, query.queries);
    }
    server.stop().await;
}

#[tokio::test]
async fn unknown_names_are_forwarded_to_the_upstream() {
    let upstream = FakeUpstream::start(Some(UPSTREAM_ANSWER)).await;
    let config = upstreams(&[upstream.addr], Duration::from_secs(2));
    let server = Running::start(config, records(&[("web", &[WEB])])).await;
    for _ in 0..2 {
        let query = query("example.com", RecordType::A);
        let answer = within("forwarded", server.ask(&query)).await;
        assert_response(&answer, &query, ResponseCode::NoError);
        assert!(answer.metadata.recursion_available);
        assert_eq!(a_answers(&answer), vec![UPSTREAM_ANSWER]);
        assert_eq!(
            answer.answers[0].ttl, 300,
            "the upstream's bytes as they are"
        );
    }
    // The cluster's names are still ours.
    let answer = within("local", server.ask(&query("web", RecordType::A))).await;
    assert_eq!(a_answers(&answer), vec![WEB]);
    server.stop().await;
}

#[tokio::test]
async fn a_truncated_upstream_answer_is_asked_again_over_tcp_for_tcp_clients() {
    let upstream = FakeUpstream::start_truncating(UPSTREAM_ANSWER).await;
    let config = upstreams(&[upstream.addr], Duration::from_secs(2));
    let server = Running::start(config, Records::default()).await;

    // A UDP client gets the truncated answer as it is, and retries over TCP.
    let query1 = query("big.example.com", RecordType::A);
    let answer = within("udp", server.ask_raw_slow(&query1)).await;
    assert_response(&answer, &query1, ResponseCode::NoError);
    assert!(answer.metadata.truncation);
    assert!(answer.answers.is_empty());

    let mut stream = within("connect", TcpStream::connect(server.tcp))
        .await
        .unwrap();
    tcp_send(&mut stream, &query1.to_vec().unwrap()).await;
    let answer = tcp_recv(&mut stream).await;
    assert_response(&answer, &query1, ResponseCode::NoError);
    assert!(!answer.metadata.truncation);
    assert_eq!(a_answers(&answer), vec![UPSTREAM_ANSWER]);
    server.stop().await;
}

#[tokio::test]
async fn upstreams_are_tried_in_turn_and_servfail_when_none_answers() {
    let silent = FakeUpstream::start(None).await;
    let answering = FakeUpstream::start(Some(UPSTREAM_ANSWER)).await;
    let timeout = Duration::from_millis(300);

    let config = upstreams(&[silent.addr, answering.addr], timeout);
    let server = Running::start(config, Records::default()).await;
    let query1 = query("example.com", RecordType::A);
    let bytes = within("second upstream", server.ask_raw_slow(&query1)).await;
    assert_response(&bytes, &query1, ResponseCode::NoError);
    assert_eq!(a_answers(&bytes), vec![UPSTREAM_ANSWER]);
    server.stop().await;

    let config = upstreams(&[silent.addr], timeout);
    let server = Running::start(config, records(&[("web", &[WEB])])).await;
    let query2 = query("example.com", RecordType::A);
    let started = Instant::now();
    let slow = server.ask_raw_slow(&query2);
    // A slow upstream holds up only its own query.
    let fast = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let answer = server.ask(&query("web", RecordType::A)).await;
        (answer, started.elapsed())
    };
    let (failed, (local, local_took)) = within("both", async { tokio::join!(slow, fast) }).await;
    assert_response(&failed, &query2, ResponseCode::ServFail);
    assert!(started.elapsed() >= timeout);
    assert_eq!(a_answers(&local), vec![WEB]);
    assert!(local_took < timeout, "local answer took {local_took:?}");
    server.stop().await;
}

#[tokio::test]
async fn tcp_carries_several_queries_per_connection() {
    let server = Running::start(DnsConfig::default(), records(&[("web", &[WEB])])).await;
    let mut stream = within("connect", TcpStream::connect(server.tcp))
        .await
        .unwrap();
    let known = query("web", RecordType::A);
    let unknown = query("nope", RecordType::A);
    tcp_send(&mut stream, &known.to_vec().unwrap()).await;
    let answer = tcp_recv(&mut stream).await;
    assert_response(&answer, &known, ResponseCode::NoError);
    assert_eq!(a_answers(&answer), vec![WEB]);
    tcp_send(&mut stream, &unknown.to_vec().unwrap()).await;
    let answer = tcp_recv(&mut stream).await;
    assert_response(&answer, &unknown, ResponseCode::NXDomain);

    // A malformed message closes the connection.
    tcp_send(&mut stream, &[1, 2, 3]).await;
    let mut rest = Vec::new();
    let read = within("close", stream.read_to_end(&mut rest))
        .await
        .unwrap();
    assert_eq!(read, 0);
    server.stop().await;
}

#[tokio::test]
async fn udp_answers_too_large_are_truncated() {
    let many = addrs(100);
    let server = Running::start(DnsConfig::default(), records(&[("web", &many)])).await;
    let query1 = query("web", RecordType::A);
    let bytes = within("udp", server.ask_raw(&query1.to_vec().unwrap()))
        .await
        .unwrap();
    assert!(bytes.len() <= 512, "{} bytes", bytes.len());
    let answer = hickory_proto::op::Message::from_vec(&bytes).unwrap();
    assert!(answer.metadata.truncation);
    let kept = a_answers(&answer).len();
    assert!(kept > 0 && kept < many.len(), "{kept} answers kept");

    // EDNS raises the limit, to 1232 at most.
    let query2 = with_edns(query("web", RecordType::A), 4096);
    let bytes = within("edns", server.ask_raw(&query2.to_vec().unwrap()))
        .await
        .unwrap();
    assert!(
        bytes.len() > 512 && bytes.len() <= 1232,
        "{} bytes",
        bytes.len()
    );
    let answer = hickory_proto::op::Message::from_vec(&bytes).unwrap();
    assert!(answer.metadata.truncation);
    assert!(answer.edns.is_some());

    // TCP gets them all.
    let mut stream = within("connect", TcpStream::connect(server.tcp))
        .await
        .unwrap();
    tcp_send(&mut stream, &query1.to_vec().unwrap()).await;
    let answer = tcp_recv(&mut stream).await;
    assert!(!answer.metadata.truncation);
    assert_eq!(a_answers(&answer).len(), many.len());
    server.stop().await;
}

#[tokio::test]
async fn bad_requests_get_notimp_formerr_or_nothing() {
    let server = Running::start(DnsConfig::default(), records(&[("web", &[WEB])])).await;
    let mut notify = query("web", RecordType::A);
    notify.metadata.op_code = OpCode::Notify;
    let answer = within("notimp", server.ask(&notify)).await;
    assert_response(&answer, &notify, ResponseCode::NotImp);

    let mut two = query("web", RecordType::A);
    two.add_query(query("db", RecordType::A).queries[0].clone());
    let answer = within("formerr", server.ask(&two)).await;
    assert_response(&answer, &two, ResponseCode::FormErr);

    assert_eq!(within("garbage", server.ask_raw(&[0xde, 0xad])).await, None);
    let mut response = query("web", RecordType::A);
    response.metadata.message_type = hickory_proto::op::MessageType::Response;
    let bytes = response.to_vec().unwrap();
    assert_eq!(within("response", server.ask_raw(&bytes)).await, None);

    // And the server goes on answering.
    let answer = within("after", server.ask(&query("web", RecordType::A))).await;
    assert_eq!(a_answers(&answer), vec![WEB]);
    server.stop().await;
}

#[test]
fn resolv_conf_nameservers_become_upstreams() {
    let text = "\
# generated
search example.com
nameserver 127.0.0.53
nameserver 192.0.2.1 # primary
nameserver   2001:db8::1
nameserver ::1
nameserver 0.0.0.0
nameserver fe80::1%eth0
nameserver not-an-address
;nameserver 192.0.2.9
nameserver 192.0.2.1
options edns0 trust-ad
nameserver 192.0.2.2
nameserver 192.0.2.3
";
    let got = upstreams_from_resolv_conf(text);
    let want: Vec<SocketAddr> = ["192.0.2.1:53", "[2001:db8::1]:53", "192.0.2.2:53"]
        .iter()
        .map(|addr| addr.parse().unwrap())
        .collect();
    assert_eq!(got, want);
    assert!(upstreams_from_resolv_conf("nameserver 127.0.0.1\n").is_empty());
    assert!(upstreams_from_resolv_conf("").is_empty());
}
