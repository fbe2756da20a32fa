//! The only program of the runtime's test image: one subcommand per behaviour a
//! container test needs to observe (its pid, hostname, limits, signals, files).
//!
//! Kept free of dependencies beyond std and nix so the test rootfs needs only the
//! shared libraries of a plain Rust binary.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, ToSocketAddrs};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};

const USAGE: &str = "usage: testimg pid|hostname|ps|sleep SECS|exit CODE [AFTER_SECS]|alloc MIB|fork N|spin MS|\
trap-term MS|ignore-term|env|id|cat FILE|write FILE TEXT|ls DIR|owner PATH...|rm FILE|readlink PATH|echo TEXT...|echo-err TEXT...|\
lines N|serve PORT|serve-proxy PORT|get HOST:PORT...|resolve NAME";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest = &args[1..];
    match run(cmd, rest) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("testimg {cmd}: {err}");
            ExitCode::from(1)
        }
    }
}

type Res = Result<u8, Box<dyn std::error::Error>>;

fn arg(rest: &[String], i: usize) -> Result<&str, String> {
    rest.get(i)
        .map(String::as_str)
        .ok_or_else(|| format!("missing argument {}; {USAGE}", i + 1))
}

fn run(cmd: &str, rest: &[String]) -> Res {
    match cmd {
        "pid" => println!("{}", std::process::id()),
        "hostname" => println!("{}", nix::unistd::gethostname()?.to_string_lossy()),
        "ps" => ps()?,
        "sleep" => std::thread::sleep(Duration::from_secs_f64(arg(rest, 0)?.parse()?)),
        "exit" => {
            if let Some(secs) = rest.get(1) {
                std::thread::sleep(Duration::from_secs_f64(secs.parse()?));
            }
            return Ok(arg(rest, 0)?.parse()?);
        }
        "alloc" => alloc(arg(rest, 0)?.parse()?),
        "fork" => fork(arg(rest, 0)?.parse()?)?,
        "spin" => spin(arg(rest, 0)?.parse()?)?,
        "trap-term" => trap_term(arg(rest, 0)?.parse()?)?,
        "ignore-term" => ignore_term()?,
        "env" => std::env::vars().for_each(|(k, v)| println!("{k}={v}")),
        "id" => id(),
        "cat" => std::io::stdout().write_all(&std::fs::read(arg(rest, 0)?)?)?,
        "write" => std::fs::write(arg(rest, 0)?, arg(rest, 1)?)?,
        "ls" => ls(arg(rest, 0)?)?,
        "owner" => owner(rest)?,
        "rm" => std::fs::remove_file(arg(rest, 0)?)?,
        "readlink" => println!("{}", std::fs::read_link(arg(rest, 0)?)?.display()),
        "echo" => println!("{}", rest.join(" ")),
        "echo-err" => eprintln!("{}", rest.join(" ")),
        "lines" => lines(arg(rest, 0)?.parse()?)?,
        "serve" => serve(arg(rest, 0)?.parse()?)?,
        "serve-proxy" => serve_proxy(arg(rest, 0)?.parse()?)?,
        "get" => get(rest)?,
        "resolve" => resolve(arg(rest, 0)?)?,
        _ => {
            eprintln!("unknown command {cmd}; {USAGE}");
            return Ok(2);
        }
    }
    Ok(0)
}

fn ps() -> Result<(), std::io::Error> {
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        println!("{pid}");
    }
    Ok(())
}

fn ls(dir: &str) -> Result<(), std::io::Error> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    names.iter().for_each(|n| println!("{n}"));
    Ok(())
}

/// Prints `PATH UID:GID` for each path (not following a final symlink).
fn owner(paths: &[String]) -> Result<(), std::io::Error> {
    use std::os::unix::fs::MetadataExt;
    for p in paths {
        let m = std::fs::symlink_metadata(p)?;
        println!("{p} {}:{}", m.uid(), m.gid());
    }
    Ok(())
}

/// Allocates and touches `mib` MiB so the pages are really charged to the cgroup.
fn alloc(mib: usize) {
    let mut blocks = Vec::with_capacity(mib);
    for i in 0..mib {
        let mut block = vec![0u8; 1 << 20];
        for page in block.chunks_mut(4096) {
            page[0] = (i % 251) as u8 + 1;
        }
        blocks.push(block);
    }
    println!("allocated {} MiB", blocks.len());
}

/// Spawns up to `n` sleeping children and reports how many the pids limit let through.
fn fork(n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for _ in 0..n {
        match Command::new(&exe)
            .args(["sleep", "30"])
            .stdout(Stdio::null())
            .spawn()
        {
            Ok(child) => children.push(child),
            Err(_) => break,
        }
    }
    println!("forked {}", children.len());
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    Ok(())
}

/// Busy-loops for `ms` of wall time and prints the CPU time it got, in ms.
fn spin(ms: u64) -> Result<(), nix::Error> {
    let start = Instant::now();
    let mut x: u64 = 0;
    while start.elapsed() < Duration::from_millis(ms) {
        for i in 0..10_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
    }
    let usage = getrusage(UsageWho::RUSAGE_SELF)?;
    let cpu = usage.user_time() + usage.system_time();
    let cpu_ms = cpu.tv_sec() * 1000 + cpu.tv_usec() / 1000;
    println!("cpu_ms {cpu_ms}");
    Ok(())
}

fn block_term() -> Result<SigSet, nix::Error> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    Ok(set)
}

/// Waits for SIGTERM (blocked and taken with sigwait, so no handler and no unsafe),
/// then takes `ms` to "shut down" and exits 0.
fn trap_term(ms: u64) -> Result<(), Box<dyn std::error::Error>> {
    let set = block_term()?;
    println!("ready");
    std::io::stdout().flush()?;
    let sig = set.wait()?;
    println!("got {sig}");
    std::thread::sleep(Duration::from_millis(ms));
    Ok(())
}

/// Blocks SIGTERM and never takes it: only SIGKILL ends this process.
fn ignore_term() -> Result<(), Box<dyn std::error::Error>> {
    block_term()?;
    println!("ready");
    std::io::stdout().flush()?;
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn id() {
    let groups = nix::unistd::getgroups()
        .map(|g| {
            g.iter()
                .map(|g| g.to_string())
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    println!(
        "uid={} gid={} groups={groups}",
        nix::unistd::getuid(),
        nix::unistd::getgid()
    );
}

fn lines(n: usize) -> Result<(), std::io::Error> {
    let mut out = std::io::stdout().lock();
    for i in 0..n {
        writeln!(out, "line {i:06} of {n}")?;
    }
    out.flush()
}

/// A one-line HTTP server answering every request with the container's hostname.
fn serve(port: u16) -> Result<(), std::io::Error> {
    let listener = TcpListener::bind(("0.0.0.0", port))?;
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| {
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf);
        let body = format!("{host}\n");
        let _ = write!(
            stream,
            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
    Ok(())
}

/// Like `serve`, behind a proxy speaking the PROXY protocol (v1 or v2): each
/// connection starts with the header, and the reply body is `HOST CLIENT` with
/// the client address the header carries (`-` when it says LOCAL or UNKNOWN).
/// A connection without a valid header is closed without a reply.
fn serve_proxy(port: u16) -> Result<(), std::io::Error> {
    let listener = TcpListener::bind(("0.0.0.0", port))?;
    println!("listening on {} (PROXY protocol)", listener.local_addr()?);
    std::io::stdout().flush()?;
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let client = match proxy_header(&mut stream) {
            Ok(client) => client,
            Err(err) => {
                eprintln!("no PROXY header: {err}");
                continue;
            }
        };
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf);
        let body = format!("{host} {client}\n");
        let _ = write!(
            stream,
            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
    Ok(())
}

/// The v2 header's signature.
const PROXY_V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Reads a PROXY protocol header off `stream` (nothing beyond it); the client
/// address it names, `ADDR:PORT`.
fn proxy_header(stream: &mut std::net::TcpStream) -> Result<String, Box<dyn std::error::Error>> {
    let mut head = [0u8; 16];
    stream.read_exact(&mut head[..5])?;
    if &head[..5] == b"PROXY" {
        // v1: text up to CRLF, at most 107 bytes.
        let mut line = b"PROXY".to_vec();
        while !line.ends_with(b"\r\n") {
            if line.len() >= 107 {
                return Err("v1 header longer than 107 bytes".into());
            }
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte)?;
            line.push(byte[0]);
        }
        let line = String::from_utf8(line)?;
        let words: Vec<&str> = line.split_whitespace().collect();
        return match words.as_slice() {
            ["PROXY", "TCP4" | "TCP6", src, _dst, sport, _dport] => Ok(format!("{src}:{sport}")),
            ["PROXY", "UNKNOWN", ..] => Ok("-".to_string()),
            _ => Err(format!("bad v1 header {line:?}").into()),
        };
    }
    stream.read_exact(&mut head[5..])?;
    if &head[..12] != PROXY_V2_SIGNATURE || head[12] >> 4 != 2 {
        return Err("neither a v1 nor a v2 header".into());
    }
    let len = u16::from_be_bytes([head[14], head[15]]) as usize;
    let mut addrs = vec![0u8; len];
    stream.read_exact(&mut addrs)?;
    let command = head[12] & 0x0f;
    let family = head[13] >> 4;
    match (command, family) {
        (0, _) => Ok("-".to_string()),
        (1, 1) if len >= 12 => {
            let ip = std::net::Ipv4Addr::new(addrs[0], addrs[1], addrs[2], addrs[3]);
            Ok(format!("{ip}:{}", u16::from_be_bytes([addrs[8], addrs[9]])))
        }
        (1, 2) if len >= 36 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&addrs[..16]);
            let ip = std::net::Ipv6Addr::from(octets);
            Ok(format!(
                "[{ip}]:{}",
                u16::from_be_bytes([addrs[32], addrs[33]])
            ))
        }
        _ => Err(format!("v2 header with command {command}, family {family}").into()),
    }
}

/// Asks each `HOST:PORT` (a `serve`; HOST an address or a name, resolved through
/// the container's resolv.conf) for its reply, retrying for up to a minute
/// while the network comes up, and prints `HOST:PORT REPLY-BODY` for each.
fn get(addrs: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    if addrs.is_empty() {
        return Err(format!("missing ADDR:PORT; {USAGE}").into());
    }
    for addr in addrs {
        let deadline = Instant::now() + Duration::from_secs(60);
        let reply = loop {
            match fetch(addr) {
                Ok(reply) => break reply,
                Err(err) if Instant::now() >= deadline => {
                    return Err(format!("{addr}: {err}").into());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        };
        let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
        println!("{addr} {body}");
    }
    std::io::stdout().flush()?;
    Ok(())
}

/// Prints `NAME ADDR...`, the name's IPv4 addresses sorted, as the C library
/// resolves them.
fn resolve(name: &str) -> Result<(), std::io::Error> {
    let mut addrs: Vec<std::net::Ipv4Addr> = (name, 0)
        .to_socket_addrs()?
        .filter_map(|a| match a.ip() {
            std::net::IpAddr::V4(ip) => Some(ip),
            std::net::IpAddr::V6(_) => None,
        })
        .collect();
    addrs.sort();
    addrs.dedup();
    let addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    println!("{name} {}", addrs.join(" "));
    std::io::stdout().flush()
}

fn fetch(addr: &str) -> Result<String, std::io::Error> {
    let addr = addr.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, format!("{addr}: no address"))
    })?;
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply)
}
