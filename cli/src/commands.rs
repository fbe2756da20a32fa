//! Client commands: each builds its request (validating user input first, so that
//! bad input is refused before any connection is made), calls the control API and
//! writes the reply.

pub mod cluster;
pub mod image;
pub mod join_token;
pub mod node;
pub mod progress;
pub mod service;
#[cfg(test)]
pub mod test_support;
pub mod volume;

use std::fmt;
use std::io::Write;
use std::path::PathBuf;

use rswarm_proto::api::control_client::ControlClient;
use rswarm_proto::api::images_client::ImagesClient;
use tonic::transport::Channel;

use crate::args::{Format, Host};
use crate::client;

/// What every client command needs besides its own arguments.
#[derive(Debug, Clone)]
pub struct Context {
    /// The manager to talk to.
    pub host: Host,
    /// The admin certificate directory, for TCP hosts.
    pub cert_dir: PathBuf,
    /// How to print results.
    pub format: Format,
    /// Whether stdout is a terminal, where progress is redrawn in place rather than
    /// printed a line per change.
    pub tty: bool,
}

impl Context {
    /// Connects to the image API.
    pub async fn images(&self) -> anyhow::Result<ImagesClient<Channel>> {
        Ok(ImagesClient::new(
            client::connect(&self.host, &self.cert_dir).await?,
        ))
    }

    /// Connects to the control API.
    pub async fn control(&self) -> anyhow::Result<ControlClient<Channel>> {
        Ok(ControlClient::new(
            client::connect(&self.host, &self.cert_dir).await?,
        ))
    }
}

/// Turns a failed call into an error carrying the server's message alone, which is
/// what the user needs to read (`Error: <message>`).
pub fn rpc_error(status: tonic::Status) -> anyhow::Error {
    if status.message().is_empty() {
        anyhow::anyhow!("{}", status.code().description())
    } else {
        anyhow::anyhow!("{}", status.message())
    }
}

/// Some of several requests failed, and each failure was already printed.
#[derive(Debug)]
pub struct Reported {
    /// How many failed.
    pub failed: usize,
}

impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} request(s) failed", self.failed)
    }
}

impl std::error::Error for Reported {}

/// Collects the failures of a command acting on several objects, so that one bad
/// reference neither stops nor hides the others (as in docker).
#[derive(Debug, Default)]
struct Failures {
    /// How many were reported.
    failed: usize,
}

impl Failures {
    /// Prints the failure on stderr now.
    fn report(&mut self, err: &anyhow::Error) {
        eprintln!("Error: {err:#}");
        self.failed += 1;
    }

    /// An error if anything failed.
    fn finish(self) -> anyhow::Result<()> {
        if self.failed == 0 {
            Ok(())
        } else {
            Err(Reported {
                failed: self.failed,
            }
            .into())
        }
    }
}

/// The time now, in Unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Writes `text` and a newline.
fn write_line(out: &mut dyn Write, text: &str) -> anyhow::Result<()> {
    writeln!(out, "{text}")?;
    Ok(())
}

/// `inspect` for any kind of object, like `docker inspect`: fetches each reference
/// with `fetch`, prints one JSON array of those found whatever the format, and
/// reports each one that failed (the command then fails).
pub async fn inspect_each<F, Fut>(
    references: &[String],
    out: &mut dyn Write,
    mut fetch: F,
) -> anyhow::Result<()>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<serde_json::Value, tonic::Status>>,
{
    let mut found = Vec::new();
    let mut failures = Failures::default();
    for reference in references {
        match fetch(reference.clone()).await {
            Ok(value) => found.push(value),
            Err(status) => failures.report(&rpc_error(status)),
        }
    }
    crate::output::write_json(out, &serde_json::Value::Array(found))?;
    failures.finish()
}

/// `rm` for any kind of object: removes each reference with `remove`, prints each
/// removed one (a JSON array of them with `--format json`), and reports each one
/// that failed (the command then fails).
pub async fn remove_each<F, Fut>(
    ctx: &Context,
    references: &[String],
    out: &mut dyn Write,
    mut remove: F,
) -> anyhow::Result<()>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(), tonic::Status>>,
{
    let mut removed = Vec::new();
    let mut failures = Failures::default();
    for reference in references {
        match remove(reference.clone()).await {
            Ok(()) if ctx.format == Format::Table => write_line(out, reference)?,
            Ok(()) => removed.push(serde_json::Value::from(reference.as_str())),
            Err(status) => failures.report(&rpc_error(status)),
        }
    }
    if ctx.format == Format::Json {
        crate::output::write_json(out, &serde_json::Value::Array(removed))?;
    }
    failures.finish()
}
