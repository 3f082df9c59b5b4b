use std::process::ExitCode;

use clap::Parser as _;
use geofilter_daemon::cli::{self, args::Cli};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("GEOFILTER_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli::main(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("geofilter: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
