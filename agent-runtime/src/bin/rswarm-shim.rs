//! `rswarm-shim`: the per-container process of the rswarm runtime.
//!
//! - `rswarm-shim run <container-dir>`: started by the daemon; runs the container
//!   and stays with it (logs, exit record).
//! - `rswarm-shim init <container-dir>`: stage 2, started by `run` as pid 1 of the
//!   container's pid namespace; becomes the container's command.
#![forbid(unsafe_code)]

use std::path::Path;
use std::process::ExitCode;

use rswarm_agent_runtime::container::{init, shim};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let code = match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("run"), Some(dir)) => shim::main(Path::new(dir)),
        (Some("init"), Some(dir)) => init::main(Path::new(dir)),
        _ => {
            eprintln!("usage: rswarm-shim run|init <container-dir>");
            2
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
