//! A tokio runtime whose threads live in a network namespace, so that the test
//! process can open gRPC connections to node addresses (which exist only on the
//! segment) without touching the host's own network.

use std::fs::File;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, bail};
use tokio::runtime::{Builder, Runtime};

use crate::sys;

/// A multi-threaded runtime whose worker threads entered a namespace.
///
/// Only work spawned on the runtime runs in the namespace; [`ClientRuntime::run`]
/// spawns the future rather than polling it on the calling thread for that reason.
pub struct ClientRuntime {
    /// The runtime.
    runtime: Runtime,
    /// The first failure to enter the namespace from a runtime thread. A std mutex:
    /// held only to copy a string, never across an await.
    failure: Arc<Mutex<Option<String>>>,
}

impl ClientRuntime {
    /// A runtime with `threads` worker threads in namespace `netns`.
    pub fn new(netns: &str, threads: usize) -> anyhow::Result<ClientRuntime> {
        let path = format!("/run/netns/{netns}");
        let ns = Arc::new(File::open(&path).with_context(|| format!("cannot open {path}"))?);
        let failure = Arc::new(Mutex::new(None::<String>));
        let on_start = {
            let failure = Arc::clone(&failure);
            let netns = netns.to_string();
            move || {
                if let Err(err) = sys::enter_netns(&ns) {
                    let mut failure = failure.lock().unwrap_or_else(PoisonError::into_inner);
                    failure.get_or_insert(format!("cannot enter namespace {netns}: {err}"));
                }
            }
        };
        let runtime = Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("e2e-client")
            .enable_all()
            .on_thread_start(on_start)
            .build()
            .context("cannot build the client runtime")?;
        let client = ClientRuntime { runtime, failure };
        client.check()?;
        Ok(client)
    }

    /// Runs `future` to completion on the runtime's threads.
    pub fn run<F>(&self, future: F) -> anyhow::Result<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.check()?;
        let handle = self.runtime.spawn(future);
        let output = self
            .runtime
            .block_on(handle)
            .context("client task panicked or was cancelled")?;
        self.check()?;
        Ok(output)
    }

    /// The runtime, to spawn tasks that outlive one [`ClientRuntime::run`].
    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime.handle()
    }

    fn check(&self) -> anyhow::Result<()> {
        let failure = self
            .failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match failure {
            Some(failure) => bail!("{failure}"),
            None => Ok(()),
        }
    }
}
