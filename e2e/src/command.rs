//! Running a command to completion with a time limit.

use std::io::{Read, Seek};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// How often a running command is checked for exit: short, because client commands
/// usually take milliseconds and waits feed into measured times.
const EXIT_POLL: Duration = Duration::from_millis(10);

/// Runs `command` with stdin closed, capturing stdout and stderr (in files, so a
/// chatty command cannot block on a full pipe). A command still running after
/// `timeout` is killed and reported as an error with what it printed so far.
pub fn run_with_timeout(command: &mut Command, timeout: Duration) -> anyhow::Result<Output> {
    let mut stdout = tempfile::tempfile().context("cannot create a capture file")?;
    let mut stderr = tempfile::tempfile().context("cannot create a capture file")?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(stdout.try_clone()?)
        .stderr(stderr.try_clone()?)
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if started.elapsed() >= timeout {
            // Killing an exited-but-unreaped child is harmless; wait reaps it.
            let _ = child.kill();
            child.wait()?;
            break None;
        }
        std::thread::sleep(EXIT_POLL);
    };
    let read = |file: &mut std::fs::File| -> anyhow::Result<Vec<u8>> {
        file.rewind()?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    let (stdout, stderr) = (read(&mut stdout)?, read(&mut stderr)?);
    match status {
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        None => anyhow::bail!(
            "{command:?} still running after {timeout:?}, killed; stdout: {}; stderr: {}",
            String::from_utf8_lossy(&stdout).trim(),
            String::from_utf8_lossy(&stderr).trim()
        ),
    }
}

/// `stdout` and `stderr` of `output` as one readable string, for error messages.
pub fn describe(output: &Output) -> String {
    format!(
        "{}; stdout: {}; stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout).trim(),
        String::from_utf8_lossy(&output.stderr).trim()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_status() {
        let output = run_with_timeout(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(output.status.code(), Some(3));
        assert_eq!(output.stdout, b"out\n");
        assert_eq!(output.stderr, b"err\n");
        assert!(describe(&output).contains("stderr: err"));
    }

    #[test]
    fn kills_a_command_that_runs_too_long() {
        let started = Instant::now();
        let err = run_with_timeout(
            Command::new("sh").args(["-c", "echo started; exec sleep 30"]),
            Duration::from_millis(300),
        )
        .unwrap_err()
        .to_string();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(err.contains("still running after"), "{err}");
        assert!(err.contains("stdout: started"), "{err}");
    }
}
