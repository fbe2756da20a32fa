//! A bounded HTTP request loop, run on a [`crate::client::ClientRuntime`], that
//! records every request's outcome: which task answered, or why it failed.
//!
//! One request at a time, each on a new connection, so at most one request is in
//! flight whenever something is killed; the loop ends by itself after its
//! duration or its request count, whichever comes first.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How a loop runs.
#[derive(Debug, Clone, Copy)]
pub struct LoadSpec {
    /// Where requests go.
    pub target: SocketAddr,
    /// How long the loop runs at most.
    pub duration: Duration,
    /// How many requests it sends at most.
    pub max_requests: usize,
    /// Pause between one reply and the next request.
    pub pause: Duration,
    /// Limit on one request, connect to last byte.
    pub timeout: Duration,
}

/// One request's outcome.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// When it was sent, from the loop's start.
    pub sent: Duration,
    /// When it ended.
    pub ended: Duration,
    /// The reply body (the test image's `serve` answers its task name), or the error.
    pub reply: Result<String, String>,
}

impl Outcome {
    /// Whether the request was in flight at `at` (from the loop's start).
    pub fn in_flight_at(&self, at: Duration) -> bool {
        self.sent <= at && at <= self.ended
    }
}

/// One `GET /` over a new connection; the body of a `200` reply.
pub async fn request(target: SocketAddr) -> Result<String, String> {
    let mut stream = TcpStream::connect(target)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .write_all(b"GET / HTTP/1.0\r\n\r\n")
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut reply = Vec::new();
    stream
        .read_to_end(&mut reply)
        .await
        .map_err(|e| format!("receive: {e}"))?;
    let reply = String::from_utf8_lossy(&reply);
    let Some((head, body)) = reply.split_once("\r\n\r\n") else {
        return Err(format!("incomplete reply {reply:?}"));
    };
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return Err(format!("reply {head:?}"));
    }
    Ok(body.trim().to_string())
}

/// A finished loop.
#[derive(Debug, Clone)]
pub struct LoadRun {
    /// When it started (what [`Outcome`]'s times count from).
    pub start: Instant,
    /// Every request's outcome, in order.
    pub outcomes: Vec<Outcome>,
}

impl LoadRun {
    /// The requests that failed.
    pub fn failures(&self) -> Vec<&Outcome> {
        self.outcomes.iter().filter(|o| o.reply.is_err()).collect()
    }

    /// Request latencies (sent to ended) sorted, for percentiles.
    pub fn latencies(&self) -> Vec<Duration> {
        let mut latencies: Vec<Duration> = self.outcomes.iter().map(|o| o.ended - o.sent).collect();
        latencies.sort();
        latencies
    }
}

/// Runs the loop.
pub async fn http_loop(spec: LoadSpec) -> LoadRun {
    let start = Instant::now();
    let mut outcomes = Vec::new();
    while outcomes.len() < spec.max_requests && start.elapsed() < spec.duration {
        let sent = start.elapsed();
        let reply = match tokio::time::timeout(spec.timeout, request(spec.target)).await {
            Ok(reply) => reply,
            Err(_) => Err(format!("no reply within {:?}", spec.timeout)),
        };
        outcomes.push(Outcome {
            sent,
            ended: start.elapsed(),
            reply,
        });
        tokio::time::sleep(spec.pause).await;
    }
    LoadRun { start, outcomes }
}
