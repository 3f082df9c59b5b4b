//! Command-line types (clap derive). Every verb other than `run` is a thin client of the daemon's
//! control socket.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::{datapath::XdpModeChoice, geoip::Format, paths};

#[derive(Parser)]
#[command(
    name = "geofilter",
    version,
    about = "Drop traffic from chosen countries at line rate (XDP)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Load the filter, attach it to interfaces and serve the control socket until SIGINT/SIGTERM.
    Run(RunArgs),
    /// Show interfaces, XDP mode, database, policy and uptime of the running daemon.
    Status(ClientArgs),
    /// Show per-country packets and bytes passed, dropped and would-drop.
    Stats(ClientArgs),
    /// Start dropping traffic from these countries (ISO 3166-1 alpha-2 codes, any case).
    Block(CountriesArgs),
    /// Stop dropping traffic from these countries.
    Unblock(CountriesArgs),
    /// Explain what the running filter does with packets from these addresses (`-`: read one
    /// address per line from standard input). The verdict comes from the loaded XDP program.
    Why(WhyArgs),
    /// Detach from every interface and remove everything pinned; stops the daemon if it runs.
    Unload(SocketArgs),
}

#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    /// Interface to filter; repeat for several.
    #[arg(long = "iface", required = true, value_name = "IFACE")]
    pub ifaces: Vec<String>,
    /// Country database file; repeat to merge several (e.g. an IPv4 and an IPv6 file). Later
    /// files win ties between equally specific ranges.
    #[arg(long = "db", value_name = "FILE")]
    pub dbs: Vec<PathBuf>,
    /// Database format of every --db file [default: detected per file].
    #[arg(long, value_name = "FORMAT")]
    pub db_format: Option<Format>,
    /// Countries to drop, comma-separated or repeated (e.g. `--block RU,BY`).
    #[arg(long = "block", value_name = "CC[,CC...]", value_delimiter = ',')]
    pub block: Vec<String>,
    /// Control socket path.
    #[arg(long, default_value = paths::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// XDP attach mode. `auto` tries native and falls back to skb mode with a warning; `native`
    /// fails on interfaces whose driver lacks XDP support.
    #[arg(long, value_enum, default_value_t = XdpModeChoice::Auto)]
    pub xdp_mode: XdpModeChoice,
}

#[derive(Args, Clone, Debug)]
pub struct SocketArgs {
    /// Control socket of the daemon.
    #[arg(long, default_value = paths::DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

#[derive(Args, Clone, Debug)]
pub struct ClientArgs {
    #[command(flatten)]
    pub socket: SocketArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Clone, Debug)]
pub struct CountriesArgs {
    /// Country codes, e.g. `RU BY` or `ru,by`.
    #[arg(required = true, value_delimiter = ',')]
    pub countries: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Clone, Debug)]
pub struct WhyArgs {
    /// IPv4 or IPv6 addresses, or `-` for standard input.
    #[arg(required = true)]
    pub addresses: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}
