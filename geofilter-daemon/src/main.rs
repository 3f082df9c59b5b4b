use std::{io::IsTerminal as _, process::ExitCode};

use clap::Parser as _;
use geofilter_daemon::cli::{self, args::Cli};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("GEOFILTER_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: the journal, `kubectl logs` and log files get plain text
        // (NO_COLOR turns them off on a terminal too, as everywhere).
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
    match cli::main(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("geofilter: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
