//! Files the shim writes about a running container: `state.json` once the
//! process runs, `exit.json` when it has exited. Both are replaced atomically.

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Name of the running-state file in the container directory.
pub const STATE_FILE: &str = "state.json";
/// Name of the exit record in the container directory.
pub const EXIT_FILE: &str = "exit.json";

/// Who runs the container, with start times so a reused pid is not mistaken.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    /// Host pid of the shim.
    pub shim_pid: u32,
    /// The shim's start time (clock ticks since boot, `/proc/<pid>/stat` field 22).
    pub shim_start: u64,
    /// Host pid of the container's pid 1.
    pub pid: u32,
    /// Its start time, as for the shim.
    pub pid_start: u64,
}

/// How the container's pid 1 ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// The exit code; 128 + signal number when a signal killed it.
    pub code: i32,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// Whether the kernel's OOM killer killed a process of the container.
    pub oom_killed: bool,
}

/// Writes `value` as JSON to `path` via a temporary file and a rename, so readers
/// see the old file or the whole new one.
pub fn write_atomic<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Reads a JSON file; `Ok(None)` when it does not exist.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The start time of process `pid` (clock ticks after boot), or `None` when no
/// such process exists. Zombies count as existing.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start(&stat)
}

/// Field 22 of `/proc/<pid>/stat`; the command name (field 2) may hold spaces and
/// parentheses, so fields are counted after its last `)`.
fn parse_start(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `pid` is alive (not a zombie) and is the process that started at `start`.
pub fn is_same_process(pid: u32, start: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, r)| r.split_whitespace().next());
    parse_start(&stat) == Some(start) && state != Some("Z") && state != Some("X")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_field_22_even_with_odd_command_names() {
        let stat =
            "1234 (a (b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(parse_start(stat), Some(98765));
        let me = process_start(std::process::id()).unwrap();
        assert!(is_same_process(std::process::id(), me));
        assert!(!is_same_process(std::process::id(), me + 1));
    }

    #[test]
    fn json_files_are_replaced_whole_and_missing_is_none() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(EXIT_FILE);
        assert_eq!(read_json::<ExitInfo>(&path).unwrap(), None);
        let info = ExitInfo {
            code: 137,
            signal: Some(9),
            oom_killed: true,
        };
        write_atomic(&path, &info).unwrap();
        assert_eq!(read_json::<ExitInfo>(&path).unwrap(), Some(info));
        assert!(!tmp.path().join("exit.json.tmp").exists());
    }
}
