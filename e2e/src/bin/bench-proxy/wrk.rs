//! Running wrk and reading its report.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use rswarm_e2e::command::{describe, run_with_timeout};

/// How each request reaches the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Connections are reused for many requests.
    KeepAlive,
    /// `Connection: close`: one TCP connection (through the proxy: two) per request.
    NewConnection,
}

impl Mode {
    /// The label in the report.
    pub fn label(self) -> &'static str {
        match self {
            Mode::KeepAlive => "keep-alive",
            Mode::NewConnection => "new connection per request",
        }
    }
}

/// One wrk run's figures.
#[derive(Debug, Clone, Copy)]
pub struct Figures {
    /// Completed requests per second.
    pub requests_per_sec: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Socket errors (connect, read, write, timeout) plus non-2xx answers.
    pub errors: u64,
    /// The proxy's CPU time (user and system) per completed request; filled in
    /// by the caller, which watches the proxy's process.
    pub cpu_per_request: Duration,
}

/// How a wrk run is shaped.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// wrk threads.
    pub threads: usize,
    /// Open connections.
    pub connections: usize,
    /// Length of the run.
    pub duration: Duration,
}

/// Runs wrk against `addr` and parses its report.
pub fn run(addr: SocketAddr, load: Load, mode: Mode) -> anyhow::Result<Figures> {
    let mut command = Command::new("wrk");
    command
        .arg(format!("-t{}", load.threads))
        .arg(format!("-c{}", load.connections))
        .arg(format!("-d{}s", load.duration.as_secs().max(1)))
        .arg("--timeout")
        .arg("5s")
        .arg("--latency");
    if mode == Mode::NewConnection {
        command.arg("-H").arg("Connection: close");
    }
    command.arg(format!("http://{addr}/"));
    let output = run_with_timeout(&mut command, load.duration + Duration::from_secs(30))?;
    if !output.status.success() {
        bail!("wrk failed: {}", describe(&output));
    }
    let report = String::from_utf8_lossy(&output.stdout);
    parse(&report).with_context(|| format!("cannot read wrk's report:\n{report}"))
}

/// Reads requests/s, the 50th and 99th percentile and the errors from wrk's output.
pub fn parse(report: &str) -> anyhow::Result<Figures> {
    let mut requests_per_sec = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut errors = 0u64;
    for line in report.lines() {
        let line = line.trim();
        if let Some(value) = line.strip_prefix("Requests/sec:") {
            requests_per_sec = Some(value.trim().parse::<f64>().context("requests/s")?);
        } else if let Some(value) = line.strip_prefix("50%") {
            p50 = Some(duration(value.trim())?);
        } else if let Some(value) = line.strip_prefix("99%") {
            p99 = Some(duration(value.trim())?);
        } else if let Some(counts) = line.strip_prefix("Socket errors:") {
            for part in counts.split(',') {
                let count = part
                    .split_whitespace()
                    .last()
                    .context("socket error count")?;
                errors += count.parse::<u64>().context("socket error count")?;
            }
        } else if let Some(count) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += count.trim().parse::<u64>().context("non-2xx count")?;
        }
    }
    Ok(Figures {
        requests_per_sec: requests_per_sec.context("no Requests/sec line")?,
        p50: p50.context("no 50% line (was --latency passed?)")?,
        p99: p99.context("no 99% line")?,
        errors,
        cpu_per_request: Duration::ZERO,
    })
}

/// wrk's durations: `635.00us`, `1.01ms`, `2.00s`, `1.50m`.
fn duration(text: &str) -> anyhow::Result<Duration> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("no unit in {text:?}"))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .with_context(|| format!("bad number in {text:?}"))?;
    let seconds = match unit {
        "us" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => bail!("unknown unit in {text:?}"),
    };
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_report() {
        let report = "Running 10s test @ http://127.0.0.1:8080/\n\
  1 threads and 50 connections\n\
  Thread Stats   Avg      Stdev     Max   +/- Stdev\n\
    Latency     1.20ms  300.00us   9.00ms   90.00%\n\
    Req/Sec    40.00k     1.00k   42.00k    70.00%\n\
  Latency Distribution\n\
     50%  635.00us\n\
     75%    1.01ms\n\
     90%    1.60ms\n\
     99%    4.01ms\n\
  400000 requests in 10.00s, 50.00MB read\n\
  Socket errors: connect 0, read 3, write 0, timeout 2\n\
  Non-2xx or 3xx responses: 1\n\
Requests/sec:  40000.50\n\
Transfer/sec:      5.00MB\n";
        let figures = parse(report).unwrap();
        assert_eq!(figures.requests_per_sec, 40000.50);
        assert_eq!(figures.p50, Duration::from_micros(635));
        assert_eq!(figures.p99, Duration::from_micros(4010));
        assert_eq!(figures.errors, 6);
    }

    #[test]
    fn missing_latency_is_an_error() {
        assert!(parse("Requests/sec: 1.0\n").is_err());
    }
}
