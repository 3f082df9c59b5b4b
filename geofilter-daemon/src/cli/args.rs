//! Command-line types (clap derive). Every verb other than `run` and `db` is a thin client of the
//! daemon's control socket.
//!
//! `--socket` and `--json` are global: accepted before or after the verb (`geofilter --socket S
//! block RU` and `geofilter block RU --socket S`), as operators type `ip -n`, `git -C` or
//! `kubectl --context` first. Each verb checks that the ones given apply to it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use super::list::ListCommand;
use crate::{
    asn::AsnFormat,
    datapath::{XdpAttach, XdpModeChoice},
    geoip::{Format, update::Preset},
    paths,
    policy::UnknownAction,
};

#[derive(Parser)]
#[command(
    name = "geofilter",
    version,
    about = "Drop traffic from chosen countries at line rate (XDP)"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options accepted before or after any verb.
#[derive(Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct GlobalArgs {
    /// Control socket: the one `run` serves, the one the other verbs talk to. Accepted before or
    /// after the verb. [default: /run/geofilter/geofilter.sock]
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Print JSON instead of text (every verb except `run` and `db pack`). Accepted before or
    /// after the verb.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum Command {
    /// Load the filter, attach it to interfaces and serve the control socket until SIGINT/SIGTERM.
    Run(RunArgs),
    /// Show interfaces, XDP mode, database, policy, exceptions, ports and uptime.
    Status,
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
    Confirm,
    /// Explain what the running filter does with packets from these addresses (`-`: read one
    /// address per line from standard input). The verdict comes from the loaded XDP program.
    Why(WhyArgs),
    /// Sampled drop events (time, source, country, protocol, port, verdict): the recent ones the
    /// daemon kept, or with --follow, events as they come.
    Log(LogArgs),
    /// The most-dropped source prefixes (/24, /48) and countries over a window, from the sampled
    /// events.
    Top(TopArgs),
    /// Detach from every interface and remove everything pinned; stops the daemon if it runs.
    Unload,
    /// Country databases: inspect, validate, fetch fresh data, reload the daemon's tables.
    Db(DbArgs),
    /// Named blocklists (Spamhaus DROP, FireHOL level 1, ipsum, your files and URLs): add,
    /// remove, update, show.
    #[command(subcommand)]
    List(ListCommand),
    /// Print the shell completion script to standard output, e.g.
    /// `geofilter completions bash > /usr/share/bash-completion/completions/geofilter`.
    Completions(CompletionsArgs),
    /// Write the man pages (geofilter.8 and one page per verb) into DIR (for packagers; see
    /// README.md).
    #[command(hide = true)]
    Manpages(ManpagesArgs),
}

#[derive(Args, Clone, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Clone, Debug)]
pub struct ManpagesArgs {
    /// Folder to write the pages into (created if missing; existing pages are replaced).
    pub dir: PathBuf,
}

#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    /// Interface to filter; repeat for several. [default: the interfaces in --config or the
    /// state file]
    #[arg(long = "iface", value_name = "IFACE")]
    pub ifaces: Vec<String>,
    /// Country database file; repeat to merge several (e.g. an IPv4 and an IPv6 file). Later
    /// files win ties between equally specific ranges. [default: the databases in --config or
    /// the state file, else the embedded geo-whois-asn-country database]
    #[arg(long = "db", value_name = "FILE")]
    pub dbs: Vec<PathBuf>,
    /// Database format of every --db file [default: detected per file].
    #[arg(long, value_name = "FORMAT")]
    pub db_format: Option<Format>,
    /// ASN database file (MaxMind GeoLite2/GeoIP2-ASN mmdb, ip-location-db asn CSV, iptoasn
    /// TSV; detected); repeat to merge. Loaded into the tables at start, so blocking an ASN is
    /// a policy swap. [default: those of --config or the state file; the embedded
    /// @ip-location-db/asn once the policy names an ASN]
    #[arg(long = "asn-db", value_name = "FILE")]
    pub asn_dbs: Vec<PathBuf>,
    /// Countries and ASNs to drop, comma-separated or repeated (e.g. `--block RU,BY,AS13335`).
    /// Replaces the countries and ASNs of --config or the state file.
    #[arg(long = "block", value_name = "CC|ASn[,...]", value_delimiter = ',')]
    pub block: Vec<String>,
    /// The control socket to serve: the global `--socket` (filled in by [`super::main`]).
    #[arg(skip = PathBuf::from(paths::DEFAULT_SOCKET))]
    pub socket: PathBuf,
    /// XDP attach mode. `auto` tries native and falls back to skb mode with a warning; `native`
    /// fails on interfaces whose driver lacks XDP support.
    #[arg(long, value_enum)]
    pub xdp_mode: Option<XdpModeChoice>,
    /// How to share interfaces with other XDP programs. `dispatcher` joins libxdp's
    /// multi-program dispatcher (creating one where nothing runs), so xdp-loader, xdp-filter and
    /// other libxdp users can add programs beside geofilter; `exclusive` attaches geofilter alone
    /// with a BPF link; `auto` [default] joins a dispatcher where one is attached, exclusive
    /// otherwise. Needs libxdp's dispatcher object (package libxdp1) for `dispatcher`. Saved in
    /// the state file (config: `xdp_attach`).
    #[arg(long, value_enum)]
    pub xdp_attach: Option<XdpAttach>,
    /// Run priority in a libxdp dispatcher: lower runs first. The default, 5, puts the
    /// geo-filter before xdp-filter (10) and libxdp's default (50), so later programs never
    /// see the packets it drops (README "Other XDP programs"). [default: 5; saved in the state
    /// file, config: `xdp_priority`]
    #[arg(long, value_name = "N")]
    pub xdp_priority: Option<u32>,
    /// Initial state for a first start (TOML: interfaces, xdp_mode, dbs, policy; see
    /// dist/geofilter.toml). Once a state file exists, it is restored instead.
    #[arg(long, value_name = "FILE", conflicts_with = "policy")]
    pub config: Option<PathBuf>,
    /// Follow a policy published for a fleet: a file (watched; a Kubernetes ConfigMap volume
    /// works) or an http(s):// URL (polled). The document is the --config TOML without the
    /// per-host fields (interfaces, xdp_*); its `dbs` may be URLs with a `sha256`. Every
    /// revision is validated whole and applied as one change; a bad one, or a dead source,
    /// changes nothing. Local policy changes are refused while following (README "A fleet").
    #[arg(long, value_name = "FILE|URL", conflicts_with_all = ["block", "dbs", "db_format"])]
    pub policy: Option<crate::fleet::PolicySource>,
    /// Seconds between polls of a --policy URL (jittered by ±10 %; after failures, backing off
    /// up to 8 times this); for a file, the fallback re-read when no change was seen.
    #[arg(long, value_name = "SECONDS", default_value_t = crate::fleet::DEFAULT_INTERVAL_S,
          value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub policy_interval: u64,
    /// Where the desired state is saved after every change and restored from at start-up.
    #[arg(long, default_value = paths::STATE_FILE)]
    pub state_file: PathBuf,
    /// Replace an XDP program another tool attached to an interface (`ip link`, xdp-loader).
    /// Without it, such an interface is refused. Programs held by another process's BPF link
    /// cannot be replaced either way.
    #[arg(long)]
    pub force: bool,
    /// On exit, leave the filter attached and pinned (for restarts and upgrades: the next
    /// `geofilter run` adopts it without a gap). Without it, exiting detaches and unpins.
    #[arg(long)]
    pub keep: bool,
    /// Refuse databases whose table for one address family would exceed this many MiB of kernel
    /// memory (a world database needs about 3 MiB per family). Loading is bounded by it too:
    /// the ranges read and the prefixes compiled per family may each take at most this much
    /// memory, checked while reading. A refused reload keeps the current tables.
    #[arg(long, value_name = "MIB", default_value_t = crate::geoip::DEFAULT_MAX_TABLE_MIB)]
    pub max_table_mib: usize,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9753).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Only check: read the config, state file and flags, load and compile the databases, print
    /// a summary and exit (0: all good; 1: the error, naming file and line). Touches nothing in
    /// the kernel: no pins, no attachment (systemd's ExecStartPre in dist/geofilter.service).
    #[arg(long)]
    pub check: bool,
    /// Sampled drop events for `geofilter log` and `top`: at most this many per second per CPU,
    /// limited in the kernel. 0 turns events off (`log` and `top` then refuse).
    #[arg(long, value_name = "N", default_value_t = crate::datapath::events::DEFAULT_RATE)]
    pub event_rate: u32,
    /// Events a CPU may emit at once after a quiet spell, on top of --event-rate. [default: the
    /// rate]
    #[arg(long, value_name = "N")]
    pub event_burst: Option<u32>,
    /// Record events even when no `log --follow` client is connected, so `log` and `top` always
    /// have the last minute or so. Costs the event path (a few hundred ns per sampled drop, up
    /// to the rate) while nobody watches; without it, an unwatched filter pays one array read.
    #[arg(long)]
    pub event_history: bool,
}

impl RunArgs {
    pub fn event_settings(&self) -> crate::datapath::events::EventSettings {
        crate::datapath::events::EventSettings {
            rate: self.event_rate,
            burst: self.event_burst.unwrap_or(self.event_rate).max(1),
            always: self.event_history,
        }
    }
}

/// What a client verb does with the global options: which socket, and whether to print JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientArgs {
    pub socket: PathBuf,
    pub json: bool,
}

impl GlobalArgs {
    /// The options for a verb that talks to the daemon.
    pub fn client(&self) -> ClientArgs {
        ClientArgs {
            socket: self
                .socket
                .clone()
                .unwrap_or_else(|| PathBuf::from(paths::DEFAULT_SOCKET)),
            json: self.json,
        }
    }

    /// Refuses the global options `verb` has no use for: a silently ignored `--socket` or
    /// `--json` would let the operator believe it did something.
    pub fn refuse(&self, verb: &str, socket: bool, json: bool) -> Result<(), String> {
        if socket && let Some(path) = &self.socket {
            return Err(format!(
                "`geofilter {verb}` does not talk to the daemon: --socket {} does not apply",
                path.display()
            ));
        }
        if json && self.json {
            return Err(format!(
                "`geofilter {verb}` has no JSON output: --json does not apply"
            ));
        }
        Ok(())
    }
}

/// Options of every verb that changes the policy.
#[derive(Args, Clone, Debug)]
pub struct ChangeArgs {
    /// Apply even if the change would drop the address of this SSH session (lockout check).
    #[arg(long)]
    pub force: bool,
    /// Roll the change back after SECONDS (1 to 86400) unless `geofilter confirm` follows
    /// (commit-confirm). The rollback undoes this change only; later changes stay.
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
    /// Redraw a live table every second, with per-second rates, until interrupted.
    #[arg(long)]
    pub watch: bool,
}

#[derive(Args, Clone, Debug)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

#[derive(Subcommand, Clone, Debug)]
pub enum PolicyCommand {
    /// Drop the listed countries, pass the rest (the default).
    Deny(ChangeArgs),
    /// Pass only the listed countries (and pass-exceptions), drop the rest. Check
    /// `policy unknown` too: addresses no database places are dropped only if it says drop.
    AllowOnly(ChangeArgs),
    /// What to do with addresses no database places.
    Unknown {
        #[arg(value_enum)]
        action: UnknownAction,
        #[command(flatten)]
        change: ChangeArgs,
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
    List,
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
}

#[derive(Args, Clone, Debug)]
pub struct DbArgs {
    #[command(subcommand)]
    pub command: DbCommand,
}

#[derive(Subcommand, Clone, Debug)]
pub enum DbCommand {
    /// Show a database's sources, build dates, ranges, prefixes per family and countries (or AS
    /// numbers, for ASN files), and warn when it is older than 90 days. Reads the files itself;
    /// no daemon needed.
    Info {
        /// Database file, country or ASN (told apart by content); repeat to merge several, as for
        /// `run`. [default: the embedded country and ASN databases]
        #[arg(long = "db", value_name = "FILE")]
        dbs: Vec<PathBuf>,
        /// Database format of every --db file [default: detected per file].
        #[arg(long, value_name = "FORMAT")]
        db_format: Option<Format>,
        /// Read every --db file as an ASN database of this format [default: detected per file].
        #[arg(long, value_enum, value_name = "FORMAT", conflicts_with = "db_format")]
        asn_format: Option<AsnFormat>,
    },
    /// Validate database files, country or ASN (told apart by content), without loading them
    /// into the kernel: each is read whole and compiled. Exits non-zero, naming file, line and
    /// text, if any is invalid.
    Check {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Database format of every file [default: detected per file].
        #[arg(long, value_name = "FORMAT")]
        db_format: Option<Format>,
        /// Read every file as an ASN database of this format [default: detected per file].
        #[arg(long, value_enum, value_name = "FORMAT", conflicts_with = "db_format")]
        asn_format: Option<AsnFormat>,
    },
    /// Download a fresh database, validate it completely, store it atomically in --dest, and
    /// tell a running daemon to load it (the daemon keeps its tables if anything fails).
    Update {
        /// Where to download from [default: dbip-lite, unless --url is given].
        #[arg(long, value_enum, conflicts_with = "urls")]
        preset: Option<Preset>,
        /// Download this URL instead of a preset (https://, or http:// on a trusted network);
        /// repeat for several files (e.g. IPv4 and IPv6). Stored under the URL's file name.
        #[arg(long = "url", value_name = "URL")]
        urls: Vec<String>,
        /// Folder to store the files in; replaced files are swapped atomically.
        #[arg(long, value_name = "DIR", default_value = crate::geoip::update::DEFAULT_DB_DIR)]
        dest: PathBuf,
        /// Database format of the downloaded files [default: detected per file].
        #[arg(long, value_name = "FORMAT")]
        db_format: Option<Format>,
        /// Only download and store; do not ask the daemon to reload.
        #[arg(long)]
        no_reload: bool,
        /// Download ASN databases instead (validated as ASN files; the daemon reloads them as
        /// its `--asn-db`): from `--url`, or this preset.
        #[arg(long, value_enum, value_name = "PRESET", num_args = 0..=1,
              default_missing_value = "ip-location-db", conflicts_with_all = ["preset", "db_format"])]
        asn: Option<crate::asn::update::AsnPreset>,
    },
    /// Make the running daemon re-read its databases (or these files instead) and swap its
    /// tables; an invalid database changes nothing.
    Reload {
        /// Database file to load instead of the current ones; repeat for several. [default: the
        /// daemon's current databases; the embedded one if it has none]
        #[arg(long = "db", value_name = "FILE", conflicts_with = "embedded")]
        dbs: Vec<PathBuf>,
        /// Switch to the database built into the binary.
        #[arg(long)]
        embedded: bool,
        /// ASN database file to load instead of the current ones; repeat for several.
        /// [default: the daemon's current ASN files, re-read, when it has ASN data loaded]
        #[arg(long = "asn-db", value_name = "FILE")]
        asn_dbs: Vec<PathBuf>,
        /// Reload even if the new database would drop the address of this SSH session (lockout
        /// check).
        #[arg(long)]
        force: bool,
    },
    /// Compile databases into the packed form the embedded database uses (maintainers only;
    /// see geofilter-daemon/data/README.md).
    #[command(hide = true)]
    Pack {
        /// Database files to compile, in `--db` order.
        #[arg(long = "db", value_name = "FILE", required = true)]
        dbs: Vec<PathBuf>,
        /// Output file.
        #[arg(long, value_name = "FILE")]
        output: PathBuf,
        /// Dataset name, e.g. geo-whois-asn-country.
        #[arg(long)]
        name: String,
        /// Upstream version, e.g. the npm package version.
        #[arg(long)]
        data_version: String,
        /// The day the upstream data was built (YYYY-MM-DD).
        #[arg(long)]
        built: String,
        /// Where the data came from.
        #[arg(long)]
        origin: String,
        /// Licence and required attribution.
        #[arg(long)]
        licence: String,
    },
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser as _};

    use super::*;

    /// Every verb that takes the global options, with the arguments it needs.
    const VERBS: &[&[&str]] = &[
        &["run", "--iface", "eth0"],
        &["status"],
        &["stats"],
        &["stats", "--watch"],
        &["block", "RU"],
        &["unblock", "RU,BY"],
        &["policy", "deny"],
        &["policy", "allow-only", "--force"],
        &["policy", "unknown", "drop"],
        &["monitor", "on"],
        &["except", "add", "192.0.2.1", "--drop"],
        &["except", "del", "192.0.2.1"],
        &["except", "list"],
        &["ports", "set", "--exempt", "tcp:80"],
        &["ports", "clear", "--confirm", "30"],
        &["confirm"],
        &["why", "192.0.2.1"],
        &["unload"],
        &["db", "info"],
        &["db", "check", "a.csv"],
        &["db", "update", "--no-reload"],
        &["db", "reload", "--embedded"],
        &["completions", "bash"],
        &["manpages", "/tmp/man"],
    ];

    fn parse(args: &[&str]) -> GlobalArgs {
        let argv = std::iter::once("geofilter").chain(args.iter().copied());
        match Cli::try_parse_from(argv) {
            Ok(cli) => cli.global,
            Err(e) => panic!("geofilter {}: {e}", args.join(" ")),
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn socket_and_json_are_accepted_before_and_after_every_verb() {
        let given = GlobalArgs {
            socket: Some("/tmp/s.sock".into()),
            json: true,
        };
        for verb in VERBS {
            let before = [&["--socket", "/tmp/s.sock", "--json"], *verb].concat();
            let after = [*verb, &["--socket", "/tmp/s.sock", "--json"]].concat();
            let split = [&["--json"], *verb, &["--socket=/tmp/s.sock"]].concat();
            for args in [before, after, split] {
                assert_eq!(parse(&args), given, "geofilter {}", args.join(" "));
            }
            assert_eq!(parse(verb), GlobalArgs::default(), "{verb:?}");
        }
    }

    #[test]
    fn the_default_socket_and_options_that_do_not_apply() {
        assert_eq!(
            GlobalArgs::default().client().socket,
            PathBuf::from(paths::DEFAULT_SOCKET)
        );
        let json = parse(&["--json", "run", "--iface", "eth0"]);
        assert_eq!(
            json.refuse("run", false, true).unwrap_err(),
            "`geofilter run` has no JSON output: --json does not apply"
        );
        let socket = parse(&["--socket", "/s", "db", "info"]);
        assert!(
            socket
                .refuse("db info", true, false)
                .unwrap_err()
                .contains("--socket /s does not apply")
        );
        assert_eq!(GlobalArgs::default().refuse("db pack", true, true), Ok(()));
    }
}

#[derive(Args, Clone, Debug)]
pub struct LogArgs {
    /// Keep printing events as they come until interrupted. While a follower is connected the
    /// kernel emits events (at most `run --event-rate` per second per CPU).
    #[arg(long, short)]
    pub follow: bool,
    /// Only events from these countries (comma-separated or repeated).
    #[arg(long = "country", value_name = "CC[,CC...]", value_delimiter = ',')]
    pub countries: Vec<String>,
    /// With --follow: report passed packets too, not only drops and would-drops.
    #[arg(long, requires = "follow")]
    pub passed: bool,
}

#[derive(Args, Clone, Debug)]
pub struct TopArgs {
    /// How far back to look, e.g. `60s`, `5m` (seconds without a unit). [default: 60s]
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_window)]
    pub window: u64,
}

/// Seconds in `60`, `60s`, `5m` or `1h`.
fn parse_window(s: &str) -> Result<u64, String> {
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?}: expected a number of seconds, or with s, m or h"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(format!("{s:?}: the unit must be s, m or h")),
    };
    n.checked_mul(scale)
        .filter(|&secs| secs > 0)
        .ok_or_else(|| format!("{s:?}: the window must be 1 second to far less than forever"))
}
