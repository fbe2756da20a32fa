//! The processes the benchmark starts: two nginx HTTP backends, and the three
//! proxies in front of them (rswarm's, HAProxy in TCP mode with one thread, nginx
//! stream with one worker). Every process is killed when its handle is dropped,
//! also when the benchmark fails half-way.

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Where Debian's nginx keeps the stream module (package libnginx-mod-stream).
pub const NGINX_STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";
/// How long a started process may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The programs the benchmark needs and the Debian package of each.
pub const REQUIRED: [(&str, &str); 4] = [
    ("wrk", "wrk"),
    ("haproxy", "haproxy"),
    ("nginx", "nginx-light"),
    (NGINX_STREAM_MODULE, "libnginx-mod-stream"),
];

/// The Debian packages of the required programs that are missing.
pub fn missing_packages() -> Vec<&'static str> {
    REQUIRED
        .iter()
        .filter(|(program, _)| !installed(program))
        .map(|(_, package)| *package)
        .collect()
}

fn installed(program: &str) -> bool {
    if program.starts_with('/') {
        return Path::new(program).exists();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    // nginx and haproxy live in sbin, which a non-login PATH may lack.
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|dir| dir.join(program).is_file())
}

/// A free loopback port (bound, read and released; nothing else races for
/// loopback ports on this machine but other benchmarks' ephemeral ones).
pub fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free loopback port")?;
    Ok(listener.local_addr()?)
}

/// A started process, killed and reaped on drop.
pub struct Process {
    /// What it is, for messages.
    pub name: String,
    /// Where it accepts connections.
    pub addr: SocketAddr,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `command` (output to `log`) and waits until `addr` accepts.
    fn start(
        name: &str,
        mut command: Command,
        addr: SocketAddr,
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        let out =
            fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let child = command
            .stdin(Stdio::piped())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {name}: {command:?}"))?;
        let mut process = Process {
            name: name.to_string(),
            addr,
            child,
            log,
        };
        process.wait_ready()?;
        Ok(process)
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited ({status}) before listening: {}",
                    self.name,
                    self.log_tail()
                );
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                bail!(
                    "{} not listening on {} after {READY_TIMEOUT:?}: {}",
                    self.name,
                    self.addr,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The first line of the process's output that starts with `prefix`.
    pub fn output_line(&self, prefix: &str) -> Option<String> {
        fs::read_to_string(&self.log)
            .ok()?
            .lines()
            .find(|line| line.starts_with(prefix))
            .map(str::to_string)
    }

    /// The end of the process's output, for error messages.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(2000);
        text.get(start..).unwrap_or(&text).trim().to_string()
    }

    /// CPU time the process has used so far, user and system, all threads
    /// (from /proc; the kernel reports it in USER_HZ ticks, 100 per second).
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .with_context(|| format!("cannot read the CPU time of {}", self.name))?;
        // The command name may hold spaces: fields count from after its ')'.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        // utime and stime are fields 14 and 15; `fields` starts at field 3.
        let tick = |i: usize| -> anyhow::Result<u64> {
            fields
                .get(i - 3)
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("no field {i} in /proc stat of {}", self.name))
        };
        Ok(Duration::from_millis((tick(14)? + tick(15)?) * 10))
    }

    /// Resident memory now and at its peak, in KiB (from /proc).
    pub fn memory_kib(&self) -> anyhow::Result<(u64, u64)> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .with_context(|| format!("cannot read the memory of {}", self.name))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|value| value.parse::<u64>().ok())
                .with_context(|| format!("no {name} in /proc status of {}", self.name))
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An nginx HTTP server answering every request with a short 200, one process
/// (no master, so killing it leaves nothing behind).
pub fn nginx_backend(dir: &Path, index: usize, addr: SocketAddr) -> anyhow::Result<Process> {
    let prefix = dir.join(format!("backend-{index}"));
    fs::create_dir_all(&prefix)?;
    let config = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {prefix}/nginx.pid;\n\
         error_log {prefix}/error.log warn;\nevents {{ worker_connections 8192; }}\n\
         http {{\n  access_log off;\n  keepalive_requests 1000000;\n  keepalive_timeout 60s;\n\
         client_body_temp_path {prefix}/body;\n  proxy_temp_path {prefix}/proxy;\n\
         fastcgi_temp_path {prefix}/fastcgi;\n  uwsgi_temp_path {prefix}/uwsgi;\n\
         scgi_temp_path {prefix}/scgi;\n\
         server {{\n    listen {addr} backlog=4096;\n    location / {{ return 200 \"ok\\n\"; }}\n  }}\n}}\n",
        prefix = prefix.display()
    );
    nginx(&prefix, "backend", &config, addr)
}

/// nginx stream proxying to `backends` round-robin, one process.
pub fn nginx_stream(
    dir: &Path,
    listen: SocketAddr,
    backends: &[SocketAddr],
) -> anyhow::Result<Process> {
    let prefix = dir.join("nginx-stream");
    fs::create_dir_all(&prefix)?;
    let servers: String = backends
        .iter()
        .map(|addr| format!("    server {addr};\n"))
        .collect();
    let config = format!(
        "load_module {NGINX_STREAM_MODULE};\ndaemon off;\nmaster_process off;\nworker_processes 1;\n\
         pid {prefix}/nginx.pid;\nerror_log {prefix}/error.log warn;\n\
         events {{ worker_connections 8192; }}\n\
         stream {{\n  upstream backends {{\n{servers}  }}\n\
         server {{\n    listen {listen} backlog=4096;\n    proxy_pass backends;\n  }}\n}}\n",
        prefix = prefix.display()
    );
    nginx(&prefix, "nginx stream", &config, listen)
}

fn nginx(prefix: &Path, name: &str, config: &str, addr: SocketAddr) -> anyhow::Result<Process> {
    let file = prefix.join("nginx.conf");
    fs::write(&file, config)?;
    let mut command = Command::new(find("nginx"));
    command
        .arg("-p")
        .arg(prefix)
        .arg("-e")
        .arg(prefix.join("error.log"))
        .arg("-c")
        .arg(&file);
    Process::start(name, command, addr, prefix.join("output.log"))
}

/// HAProxy in TCP mode with one thread, round-robin over `backends`.
pub fn haproxy(dir: &Path, listen: SocketAddr, backends: &[SocketAddr]) -> anyhow::Result<Process> {
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(index, addr)| format!("  server s{index} {addr}\n"))
        .collect();
    let config = format!(
        "global\n  nbthread 1\n  maxconn 4096\n\ndefaults\n  mode tcp\n  timeout connect 5s\n\
         timeout client 60s\n  timeout server 60s\n\nfrontend bench\n  bind {listen}\n\
         default_backend backends\n\nbackend backends\n  balance roundrobin\n{servers}"
    );
    let file = dir.join("haproxy.cfg");
    fs::write(&file, config)?;
    let mut command = Command::new(find("haproxy"));
    // -db: stay in the foreground, one process.
    command.arg("-db").arg("-f").arg(&file);
    Process::start("haproxy", command, listen, dir.join("haproxy.log"))
}

/// rswarm's proxy in a child process (this binary in `serve-proxy` mode), so its
/// memory is its own; it also exits when its stdin closes (the benchmark is gone).
/// `runtime`: a number of multi-thread runtime workers, or the engine of the
/// proxy's own thread (auto, epoll, io_uring).
pub fn rswarm_proxy(
    dir: &Path,
    listen: SocketAddr,
    backends: &[SocketAddr],
    runtime: &str,
) -> anyhow::Result<Process> {
    let exe = std::env::current_exe().context("cannot find this benchmark's binary")?;
    let mut command = Command::new(exe);
    let list: Vec<String> = backends.iter().map(ToString::to_string).collect();
    command
        .arg("serve-proxy")
        .arg(listen.to_string())
        .arg(list.join(","))
        .arg(runtime);
    Process::start(
        "rswarm proxy",
        command,
        listen,
        dir.join("rswarm-proxy.log"),
    )
}

/// `program` from PATH or the sbin directories.
fn find(program: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/sbin", "/usr/bin"] {
        let path = Path::new(dir).join(program);
        if path.is_file() {
            return path;
        }
    }
    PathBuf::from(program)
}
