//! Proxy benchmark: wrk through rswarm's proxy, HAProxy in TCP mode (one thread)
//! and nginx stream (one worker), in turn, to the same two nginx HTTP backends in
//! the same run, with keep-alive and with a new connection per request. Prints
//! requests/s, p50/p99 latency, each proxy's CPU time per request, the ratios to
//! the other two and each proxy's memory. On a small machine wrk, the backends and
//! the proxy share the cores, so requests/s is partly the machine's; CPU per
//! request is the proxy's own cost.
//! Target from the issue: at least HAProxy's requests/s with a p99 no worse.
//!
//! `cargo run --release -p rswarm-e2e --bin bench-proxy [-- --seconds S
//! --connections N[,N...] --rounds N --proxy-engine auto|epoll|io_uring
//! --proxy-threads N --wrk-threads N]` (defaults: 10 s, 10 and 50
//! connections, 1 round; each connection count is measured in the same
//! rounds and gets its own table and verdict, since the engines rank
//! differently at the two (docs/design/networking.md, "Measured"); the proxy on its
//! own thread with the engine the daemon uses (epoll; auto: io_uring when the
//! kernel allows it, else epoll; the report names the one used), 1 wrk thread;
//! `--proxy-threads N` > 0 runs it on a multi-thread runtime of N workers with
//! epoll instead).
//! Needs wrk, haproxy, nginx and its stream module (Debian packages wrk haproxy
//! nginx-light libnginx-mod-stream); installs nothing. Everything listens on
//! 127.0.0.1; every process it starts is killed when it ends.

mod peers;
mod wrk;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use peers::Process;
use rswarm_worker::proxy::Engine;
use wrk::{Figures, Load, Mode};

/// Command-line settings.
#[derive(Debug)]
struct Settings {
    /// Length of each measured wrk run.
    duration: Duration,
    /// wrk connections, one measurement per count.
    connections: Vec<usize>,
    /// wrk threads.
    wrk_threads: usize,
    /// Rounds over every peer and mode; medians are reported.
    rounds: usize,
    /// Runtime threads of rswarm's proxy; 0 runs it on its own thread with
    /// `proxy_engine`, as the daemon does.
    proxy_threads: usize,
    /// The I/O of the proxy's own thread.
    proxy_engine: Engine,
}

/// Warm-up before the measured runs of each peer (not counted).
const WARMUP: Duration = Duration::from_secs(1);
/// The peers, in the order of the report.
const PEERS: [&str; 3] = ["rswarm proxy", "haproxy", "nginx stream"];
const MODES: [Mode; 2] = [Mode::KeepAlive, Mode::NewConnection];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve-proxy") {
        return match serve_proxy(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("bench-proxy serve-proxy: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
    let settings = match parse(&args) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("bench-proxy: {err:#}");
            return ExitCode::from(2);
        }
    };
    let missing = peers::missing_packages();
    if !missing.is_empty() {
        eprintln!(
            "bench-proxy: missing programs; install them with: apt-get install -y {}",
            missing.join(" ")
        );
        return ExitCode::FAILURE;
    }
    match run(&settings) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("bench-proxy: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn parse(args: &[String]) -> anyhow::Result<Settings> {
    let mut settings = Settings {
        duration: Duration::from_secs(10),
        connections: vec![10, 50],
        wrk_threads: 1,
        rounds: 1,
        proxy_threads: 0,
        proxy_engine: Engine::default(),
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let number_in = |value: &str| -> anyhow::Result<usize> {
            let number: usize = value
                .parse()
                .with_context(|| format!("{flag}: not a number: {value}"))?;
            if number == 0 {
                bail!("{flag} must be at least 1");
            }
            Ok(number)
        };
        let number = || number_in(value);
        match flag.as_str() {
            "--seconds" => settings.duration = Duration::from_secs(number()? as u64),
            "--connections" => {
                settings.connections = value
                    .split(',')
                    .map(number_in)
                    .collect::<anyhow::Result<_>>()?
            }
            "--wrk-threads" => settings.wrk_threads = number()?,
            "--rounds" => settings.rounds = number()?,
            "--proxy-threads" => {
                settings.proxy_threads = value
                    .parse()
                    .with_context(|| format!("{flag}: not a number: {value}"))?
            }
            "--proxy-engine" => {
                settings.proxy_engine = value.parse().map_err(anyhow::Error::msg)?;
            }
            _ => bail!("unknown flag {flag}"),
        }
    }
    Ok(settings)
}

fn run(settings: &Settings) -> anyhow::Result<String> {
    let dir = tempfile::Builder::new()
        .prefix("rswarm-bench-proxy-")
        .tempdir()
        .context("cannot create a scratch directory")?;
    let backend_addrs = [peers::free_port()?, peers::free_port()?];
    // Held until the end: dropping a Process kills it.
    let _backends: Vec<Process> = backend_addrs
        .iter()
        .enumerate()
        .map(|(index, addr)| peers::nginx_backend(dir.path(), index, *addr))
        .collect::<anyhow::Result<_>>()?;
    let started = [
        peers::rswarm_proxy(
            dir.path(),
            peers::free_port()?,
            &backend_addrs,
            &match settings.proxy_threads {
                0 => settings.proxy_engine.to_string(),
                threads => threads.to_string(),
            },
        )?,
        peers::haproxy(dir.path(), peers::free_port()?, &backend_addrs)?,
        peers::nginx_stream(dir.path(), peers::free_port()?, &backend_addrs)?,
    ];
    let load = |connections: usize| Load {
        threads: settings.wrk_threads,
        connections,
        duration: settings.duration,
    };
    for peer in &started {
        wrk::run(
            peer.addr,
            Load {
                duration: WARMUP,
                ..load(settings.connections[0])
            },
            Mode::KeepAlive,
        )
        .with_context(|| format!("warming up {}", peer.name))?;
    }
    // results[level][mode][peer] holds one figure per round; every round
    // measures every connection count, so the machine's drift spreads over all.
    let mut results =
        vec![vec![vec![Vec::new(); PEERS.len()]; MODES.len()]; settings.connections.len()];
    for round in 0..settings.rounds {
        for (level, &connections) in settings.connections.iter().enumerate() {
            let load = load(connections);
            for (mode_index, mode) in MODES.iter().enumerate() {
                // A different peer goes first each round, so none always runs on the
                // machine as the previous run left it.
                for offset in 0..PEERS.len() {
                    let peer = (round + offset) % PEERS.len();
                    let cpu_before = started[peer].cpu_time()?;
                    let mut figures =
                        wrk::run(started[peer].addr, load, *mode).with_context(|| {
                            format!(
                                "{} {} at {connections} connections",
                                started[peer].name,
                                mode.label()
                            )
                        })?;
                    let cpu = started[peer].cpu_time()?.saturating_sub(cpu_before);
                    let requests = figures.requests_per_sec * load.duration.as_secs_f64();
                    if requests >= 1.0 {
                        figures.cpu_per_request = cpu.div_f64(requests);
                    }
                    eprintln!(
                        "round {} c{:<4} {:<27} {:<13} {:>9.0} req/s p50 {:>8} p99 {:>8} cpu/req {:>7} errors {}",
                        round + 1,
                        connections,
                        mode.label(),
                        PEERS[peer],
                        figures.requests_per_sec,
                        show(figures.p50),
                        show(figures.p99),
                        show(figures.cpu_per_request),
                        figures.errors
                    );
                    results[level][mode_index][peer].push(figures);
                }
            }
        }
    }
    let memory = started
        .iter()
        .map(Process::memory_kib)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let runtime = started[0]
        .output_line("engine ")
        .unwrap_or_else(|| "engine not reported".to_string());
    Ok(report(
        &results,
        &memory,
        &backend_addrs,
        settings,
        &runtime,
    ))
}

/// The median of each figure over the rounds.
fn median(runs: &[Figures]) -> Figures {
    let pick = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        let middle = values.len() / 2;
        if values.len().is_multiple_of(2) {
            (values[middle - 1] + values[middle]) / 2.0
        } else {
            values[middle]
        }
    };
    Figures {
        requests_per_sec: pick(runs.iter().map(|f| f.requests_per_sec).collect()),
        p50: Duration::from_secs_f64(pick(runs.iter().map(|f| f.p50.as_secs_f64()).collect())),
        p99: Duration::from_secs_f64(pick(runs.iter().map(|f| f.p99.as_secs_f64()).collect())),
        errors: runs.iter().map(|f| f.errors).sum(),
        cpu_per_request: Duration::from_secs_f64(pick(
            runs.iter()
                .map(|f| f.cpu_per_request.as_secs_f64())
                .collect(),
        )),
    }
}

fn show(duration: Duration) -> String {
    let micros = duration.as_secs_f64() * 1e6;
    if micros < 100.0 {
        format!("{micros:.1}us")
    } else if micros < 1000.0 {
        format!("{micros:.0}us")
    } else {
        format!("{:.2}ms", micros / 1000.0)
    }
}

fn report(
    results: &[Vec<Vec<Vec<Figures>>>],
    memory: &[(u64, u64)],
    backends: &[SocketAddr],
    settings: &Settings,
    runtime: &str,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "proxy benchmark: wrk -t{} -c{} -d{}s, {} round(s) (medians), nginx backends {}; \
         rswarm proxy {}, haproxy nbthread 1, nginx 1 worker",
        settings.wrk_threads,
        joined(&settings.connections, ","),
        settings.duration.as_secs(),
        settings.rounds,
        joined(backends, " "),
        runtime
    );
    for (&connections, per_mode) in settings.connections.iter().zip(results) {
        if settings.connections.len() > 1 {
            let _ = writeln!(out, "{connections} connections:");
        }
        report_level(&mut out, connections, per_mode, settings.rounds);
    }
    let memory: Vec<String> = PEERS
        .iter()
        .zip(memory)
        .map(|(peer, (rss, peak))| format!("{peer} {rss} KiB (peak {peak} KiB)"))
        .collect();
    let _ = write!(out, "resident memory at the end: {}", memory.join(", "));
    out
}

/// One connection count's table, ratios and verdict (`per_mode[mode][peer]`
/// holds one figure per round).
fn report_level(
    out: &mut String,
    connections: usize,
    per_mode: &[Vec<Vec<Figures>>],
    rounds: usize,
) {
    let _ = writeln!(
        out,
        "{:<27} {:<13} {:>10} {:>9} {:>9} {:>9} {:>7}",
        "mode", "peer", "req/s", "p50", "p99", "cpu/req", "errors"
    );
    let mut verdicts = Vec::new();
    for (mode, per_peer) in MODES.iter().zip(per_mode) {
        let figures: Vec<Figures> = per_peer.iter().map(|runs| median(runs)).collect();
        for (peer, f) in PEERS.iter().zip(&figures) {
            let _ = writeln!(
                out,
                "{:<27} {:<13} {:>10.0} {:>9} {:>9} {:>9} {:>7}",
                mode.label(),
                peer,
                f.requests_per_sec,
                show(f.p50),
                show(f.p99),
                show(f.cpu_per_request),
                f.errors
            );
        }
        let ours = figures[0];
        for (peer, theirs) in PEERS.iter().zip(&figures).skip(1) {
            let _ = writeln!(
                out,
                "{:<27} rswarm/{:<13} req/s {:.2}x  p50 {:.2}x  p99 {:.2}x  cpu/req {:.2}x",
                "",
                peer,
                ours.requests_per_sec / theirs.requests_per_sec,
                ours.p50.as_secs_f64() / theirs.p50.as_secs_f64(),
                ours.p99.as_secs_f64() / theirs.p99.as_secs_f64(),
                ours.cpu_per_request.as_secs_f64() / theirs.cpu_per_request.as_secs_f64()
            );
        }
        // The same ratios round by round (each round ran both in turn): how
        // much of a difference the machine's own noise makes.
        let per_round = |value: fn(&Figures) -> f64| {
            let mut ratios: Vec<f64> = per_peer[0]
                .iter()
                .zip(&per_peer[1])
                .map(|(ours, theirs)| value(ours) / value(theirs))
                .collect();
            ratios.sort_by(f64::total_cmp);
            (ratios[0], ratios[ratios.len() - 1])
        };
        if rounds > 1 {
            let rps = per_round(|f| f.requests_per_sec);
            let p99 = per_round(|f| f.p99.as_secs_f64());
            let _ = writeln!(
                out,
                "{:<27} rswarm/haproxy round by round: req/s {:.2}-{:.2}x  p99 {:.2}-{:.2}x",
                "", rps.0, rps.1, p99.0, p99.1
            );
        }
        let haproxy = figures[1];
        let met = ours.requests_per_sec >= haproxy.requests_per_sec && ours.p99 <= haproxy.p99;
        verdicts.push(format!(
            "{} {}",
            mode.label(),
            if met { "met" } else { "NOT met" }
        ));
    }
    let _ = writeln!(
        out,
        "target (>= 1.0x haproxy req/s with p99 no worse) at {connections} connections: {}",
        verdicts.join(", ")
    );
}

/// `items` as text, separated by `separator`.
fn joined<T: ToString>(items: &[T], separator: &str) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(separator)
}

/// The child mode: rswarm's proxy on `listen` over the given backends until stdin
/// closes.
fn serve_proxy(args: &[String]) -> anyhow::Result<()> {
    let [listen, backends, runtime] = args else {
        bail!("usage: serve-proxy LISTEN BACKEND[,BACKEND...] THREADS|auto|epoll|io_uring");
    };
    let listen: SocketAddr = listen.parse().context("listen address")?;
    let backends = backends
        .split(',')
        .enumerate()
        .map(|(index, addr)| {
            Ok(rswarm_worker::proxy::Backend::new(
                format!("backend-{index}"),
                addr.parse()
                    .with_context(|| format!("backend address {addr}"))?,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    use rswarm_worker::proxy::{Engine, ListenerSpec, ListenerState, Protocol, Proxy, ProxyConfig};
    let config = ProxyConfig {
        listeners: vec![ListenerSpec::new(listen, Protocol::Tcp, backends)],
    };
    let (_config_tx, config_rx) = tokio::sync::watch::channel(config);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let proxy = Proxy::new();
    let mut status = proxy.status();
    // A number: a multi-thread runtime of that many workers (epoll); an engine:
    // the proxy's own thread, as the daemon runs it.
    let (thread, runtime) = match runtime.parse::<usize>() {
        Ok(threads) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .build()?;
            let serving = runtime.spawn(proxy.run(config_rx, shutdown.clone()));
            println!("engine epoll, multi-thread runtime of {threads} worker(s)");
            (Err(serving), runtime)
        }
        Err(_) => {
            let engine: Engine = runtime.parse().map_err(anyhow::Error::msg)?;
            let thread = proxy.spawn_thread_on(engine, config_rx, shutdown.clone())?;
            println!("engine {}, its own thread", thread.engine);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            (Ok(thread), runtime)
        }
    };
    runtime.block_on(async move {
        let applied = status
            .wait_for(|status| status.generation >= 1)
            .await?
            .clone();
        if let Some(failed) = applied
            .listeners
            .iter()
            .find(|l| !matches!(l.state, ListenerState::Listening { .. }))
        {
            bail!("listener not serving: {failed:?}");
        }
        // The benchmark holds our stdin; it closes when the benchmark ends.
        let mut sink = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut sink).await;
        shutdown.cancel();
        match thread {
            Ok(thread) => tokio::task::spawn_blocking(move || thread.handle.join())
                .await?
                .map_err(|_| anyhow::anyhow!("the proxy thread panicked"))?,
            Err(serving) => serving.await?,
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn connection_counts_are_a_comma_separated_list_of_positive_numbers() {
        assert_eq!(parse(&[]).unwrap().connections, vec![10, 50]);
        assert_eq!(
            parse(&args("--connections 50")).unwrap().connections,
            vec![50]
        );
        assert_eq!(
            parse(&args("--connections 10,50")).unwrap().connections,
            vec![10, 50]
        );
        let err = parse(&args("--connections 10,x")).unwrap_err();
        assert_eq!(err.to_string(), "--connections: not a number: x");
        let err = parse(&args("--connections 10,0")).unwrap_err();
        assert_eq!(err.to_string(), "--connections must be at least 1");
        let err = parse(&args("--connections")).unwrap_err();
        assert_eq!(err.to_string(), "--connections needs a value");
    }
}
