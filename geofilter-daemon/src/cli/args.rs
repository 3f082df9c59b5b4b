//! Command-line types (clap derive). Every verb other than `run` and `db` is a thin client of the
//! daemon's control socket.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::{datapath::XdpModeChoice, geoip::Format, paths, policy::UnknownAction};

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
    /// Show interfaces, XDP mode, database, policy, exceptions, ports and uptime.
    Status(ClientArgs),
    /// Show per-country packets and bytes passed, dropped and would-drop, with rates.
    Stats(StatsArgs),
    /// Start dropping traffic from these countries (ISO 3166-1 alpha-2 codes, any case).
    Block(CountriesArgs),
    /// Stop dropping traffic from these countries.
    Unblock(CountriesArgs),
    /// Choose how listed countries are treated, and what happens to unknown addresses.
    Policy(PolicyArgs),
    /// Dry run: count what would be dropped per country, drop nothing.
    Monitor(MonitorArgs),
    /// Per-address exceptions, checked before the country policy.
    Except(ExceptArgs),
    /// Limit geo-filtering to some destination ports, or exempt ports from it.
    Ports(PortsArgs),
    /// Keep the change made with `--confirm` (otherwise it rolls back when its time is up).
    Confirm(ClientArgs),
    /// Explain what the running filter does with packets from these addresses (`-`: read one
    /// address per line from standard input). The verdict comes from the loaded XDP program.
    Why(WhyArgs),
    /// Detach from every interface and remove everything pinned; stops the daemon if it runs.
    Unload(SocketArgs),
}

#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    /// Interface to filter; repeat for several. [default: the interfaces in --config or the
    /// state file]
    #[arg(long = "iface", value_name = "IFACE")]
    pub ifaces: Vec<String>,
    /// Country database file; repeat to merge several (e.g. an IPv4 and an IPv6 file). Later
    /// files win ties between equally specific ranges.
    #[arg(long = "db", value_name = "FILE")]
    pub dbs: Vec<PathBuf>,
    /// Database format of every --db file [default: detected per file].
    #[arg(long, value_name = "FORMAT")]
    pub db_format: Option<Format>,
    /// Countries to drop, comma-separated or repeated (e.g. `--block RU,BY`). Replaces the
    /// countries of --config or the state file.
    #[arg(long = "block", value_name = "CC[,CC...]", value_delimiter = ',')]
    pub block: Vec<String>,
    /// Control socket path.
    #[arg(long, default_value = paths::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// XDP attach mode. `auto` tries native and falls back to skb mode with a warning; `native`
    /// fails on interfaces whose driver lacks XDP support.
    #[arg(long, value_enum)]
    pub xdp_mode: Option<XdpModeChoice>,
    /// Initial state (TOML: interfaces, dbs, policy...) instead of the state file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the desired state is saved after every change and restored from at start-up.
    #[arg(long, default_value = paths::STATE_FILE)]
    pub state_file: PathBuf,
    /// On exit, leave the filter attached and pinned (for restarts and upgrades: the next
    /// `geofilter run` adopts it without a gap). Without it, exiting detaches and unpins.
    #[arg(long)]
    pub keep: bool,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9753).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<std::net::SocketAddr>,
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

/// Options of every verb that changes the policy.
#[derive(Args, Clone, Debug)]
pub struct ChangeArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Apply even if the change would drop the address of this SSH session (lockout check).
    #[arg(long)]
    pub force: bool,
    /// Roll the change back after SECONDS unless `geofilter confirm` follows (commit-confirm).
    #[arg(long, value_name = "SECONDS")]
    pub confirm: Option<u64>,
}

#[derive(Args, Clone, Debug)]
pub struct CountriesArgs {
    /// Country codes, e.g. `RU BY` or `ru,by`.
    #[arg(required = true, value_delimiter = ',')]
    pub countries: Vec<String>,
    #[command(flatten)]
    pub change: ChangeArgs,
}

#[derive(Args, Clone, Debug)]
pub struct StatsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Redraw a live table every second, with per-second rates, until interrupted.
    #[arg(long)]
    pub watch: bool,
}

#[derive(Args, Clone, Debug)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
    #[command(flatten)]
    pub change: ChangeArgs,
}

#[derive(Subcommand, Clone, Debug)]
pub enum PolicyCommand {
    /// Drop the listed countries, pass the rest (the default).
    Deny,
    /// Pass only the listed countries (and pass-exceptions), drop the rest. Check
    /// `policy unknown` too: addresses no database places are dropped only if it says drop.
    AllowOnly,
    /// What to do with addresses no database places.
    Unknown {
        #[arg(value_enum)]
        action: UnknownAction,
    },
}

#[derive(Args, Clone, Debug)]
pub struct MonitorArgs {
    #[arg(value_parser = ["on", "off"])]
    pub state: String,
    #[command(flatten)]
    pub change: ChangeArgs,
}

#[derive(Args, Clone, Debug)]
pub struct ExceptArgs {
    #[command(subcommand)]
    pub command: ExceptCommand,
}

#[derive(Subcommand, Clone, Debug)]
pub enum ExceptCommand {
    /// Always pass (or with --drop, always drop) these addresses or networks.
    Add {
        #[arg(required = true, value_name = "CIDR")]
        cidrs: Vec<String>,
        /// Always drop instead of always pass.
        #[arg(long)]
        drop: bool,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Remove exceptions.
    Del {
        #[arg(required = true, value_name = "CIDR")]
        cidrs: Vec<String>,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// List exceptions.
    List(ClientArgs),
}

#[derive(Args, Clone, Debug)]
pub struct PortsArgs {
    #[command(subcommand)]
    pub command: PortsCommand,
}

#[derive(Subcommand, Clone, Debug)]
pub enum PortsCommand {
    /// Set the port scope. Non-first IP fragments and TCP/UDP packets whose port cannot be read
    /// are always geo-filtered; with --only, protocols without ports (ICMP...) are not.
    Set {
        /// Geo-filter only these destination ports (`tcp:22,udp:53,tcp:8000-8100`).
        #[arg(long, value_delimiter = ',', value_name = "PROTO:PORT")]
        only: Vec<String>,
        /// Never geo-filter these destination ports (e.g. `tcp:80` for ACME renewals).
        #[arg(long, value_delimiter = ',', value_name = "PROTO:PORT")]
        exempt: Vec<String>,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Geo-filter every port again.
    Clear {
        #[command(flatten)]
        change: ChangeArgs,
    },
}

#[derive(Args, Clone, Debug)]
pub struct WhyArgs {
    /// IPv4 or IPv6 addresses, or `-` for standard input.
    #[arg(required = true)]
    pub addresses: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}
