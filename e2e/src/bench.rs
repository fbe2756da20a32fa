//! The frame every benchmark binary shares: refuse to run without root, parse the
//! flags, start a cluster, run, print the report (or the error and the nodes' logs).

use std::process::ExitCode;

use crate::{Cluster, skip_reason};

/// Runs benchmark `name`: `parse` reads its flags (exit code 2 on bad flags),
/// `start` forms its cluster and `run` measures and returns the report to print.
pub fn main<S>(
    name: &str,
    parse: impl FnOnce() -> anyhow::Result<S>,
    start: impl FnOnce(&S) -> anyhow::Result<Cluster>,
    run: impl FnOnce(&mut Cluster, &S) -> anyhow::Result<String>,
) -> ExitCode {
    if let Some(why) = skip_reason() {
        eprintln!("{name}: {why}");
        return ExitCode::FAILURE;
    }
    let settings = match parse() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("{name}: {err:#}");
            return ExitCode::from(2);
        }
    };
    let mut cluster = match start(&settings) {
        Ok(cluster) => cluster,
        Err(err) => {
            eprintln!("{name}: the cluster did not form: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    match run(&mut cluster, &settings) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{name}: {err:#}");
            cluster.dump_logs();
            ExitCode::FAILURE
        }
    }
}
