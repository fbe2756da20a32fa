//! Bounded polling.

use std::time::{Duration, Instant};

/// How often conditions are polled: often enough that waits add little to what they
/// measure, rarely enough not to load the nodes being watched.
pub const POLL_INTERVAL: Duration = Duration::from_millis(75);

/// Why a probe did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Not yet: poll again (the text says what was seen).
    Retry(String),
    /// It never will (a daemon exited): stop waiting now.
    Fail(String),
}

/// Lets probes use `?` on results explained by a string (a retry).
impl From<String> for Probe {
    fn from(seen: String) -> Probe {
        Probe::Retry(seen)
    }
}

/// Calls `probe` every [`POLL_INTERVAL`] until it returns `Ok`, for at most `timeout`.
/// `probe` explains each failure; on timeout the error names `what` and gives the last
/// explanation, which is usually what a failing test needs to show.
pub fn wait_until<T>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<T, String>,
) -> anyhow::Result<T> {
    poll_until(timeout, what, || probe().map_err(Probe::Retry))
}

/// [`wait_until`] with a probe that can also end the wait at once
/// ([`Probe::Fail`]), e.g. when the daemon it waits for has exited.
pub fn poll_until<T>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<T, Probe>,
) -> anyhow::Result<T> {
    let started = Instant::now();
    loop {
        match probe() {
            Ok(value) => return Ok(value),
            Err(Probe::Fail(why)) => {
                anyhow::bail!(
                    "gave up waiting for {what} after {:?}: {why}",
                    started.elapsed()
                )
            }
            Err(Probe::Retry(last)) => {
                if started.elapsed() >= timeout {
                    anyhow::bail!("timed out after {timeout:?} waiting for {what}; last: {last}");
                }
            }
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_success() {
        let mut calls = 0;
        let value = wait_until(Duration::from_secs(5), "three calls", || {
            calls += 1;
            if calls == 3 {
                Ok(calls)
            } else {
                Err(format!("call {calls}"))
            }
        })
        .unwrap();
        assert_eq!(value, 3);
    }

    #[test]
    fn timeout_reports_the_last_failure() {
        let started = Instant::now();
        let err = wait_until::<()>(Duration::from_millis(200), "nothing", || {
            Err("still nothing".to_string())
        })
        .unwrap_err()
        .to_string();
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(err.contains("waiting for nothing"), "{err}");
        assert!(err.ends_with("last: still nothing"), "{err}");
    }

    #[test]
    fn a_failed_probe_stops_the_wait() {
        let started = Instant::now();
        let err = poll_until::<()>(Duration::from_secs(30), "a dead daemon", || {
            Err(Probe::Fail("exited".into()))
        })
        .unwrap_err()
        .to_string();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(err.contains("gave up waiting for a dead daemon"), "{err}");
        assert!(err.ends_with("exited"), "{err}");
    }
}
