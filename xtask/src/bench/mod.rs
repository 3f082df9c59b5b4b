//! `cargo xtask bench [--db FILE ...] [--json]`: geofilter against the field, in one run.
//!
//! xtask only prepares and starts the run: it fetches the default database, installs the peers
//! (nftables, iptables, ipset) and tools the run needs, builds the release daemon and the
//! measuring program, and runs the latter as root (through `sudo -E` when not root). The
//! measuring program is the `geofilter-bench` crate (`bench/`), because it needs the daemon
//! library, aya and the namespace helpers, which xtask must not depend on (xtask builds them). It
//! prints the table, and with `--json` one JSON object as the last line of stdout; everything else
//! goes to stderr.
//!
//! Default database: the world-size GeoLite2 Country CSVs (IPv4 + IPv6, ~1.18M prefixes), the npm
//! package pinned below, fetched once with `npm pack` into `target/bench-data/`. Held out: the
//! daemon's embedded database and the exactness tests use geo-whois-asn-country, so the table
//! structure was never tuned on this one (issue 12's targets are stated on a held-out world
//! database). Fetching it means accepting MaxMind's GeoLite2 EULA, which the package carries.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use clap::Args;

use crate::{build, cmd, setup};

/// The default database: this exact release, so runs on different days compare.
const NPM_PACKAGE: &str = "@ip-location-db/geolite2-country";
const NPM_VERSION: &str = "2.3.2026061719";
const CSV_FILES: [&str; 2] = ["geolite2-country-ipv4.csv", "geolite2-country-ipv6.csv"];

#[derive(Args)]
pub struct Options {
    /// Database file; repeat for several (e.g. an IPv4 and an IPv6 file), any format the daemon
    /// reads. [default: the world-size GeoLite2 Country CSVs, fetched with npm into
    /// target/bench-data/]
    #[arg(long = "db", value_name = "FILE")]
    dbs: Vec<PathBuf>,
    /// Also print one JSON object as the last line of standard output.
    #[arg(long)]
    json: bool,
    /// A quick smoke run (3 rounds instead of 11, one live run per receiver): noisier figures.
    #[arg(long)]
    quick: bool,
    /// Only the fleet section (1, 10 and 50 daemons following one policy source; about two
    /// minutes): needs no database and no peers.
    #[arg(long)]
    fleet_only: bool,
}

pub fn bench(opts: &Options) -> anyhow::Result<()> {
    let dbs = if opts.fleet_only {
        Vec::new()
    } else if opts.dbs.is_empty() {
        default_database()?
    } else {
        opts.dbs
            .iter()
            .map(|p| {
                p.canonicalize()
                    .with_context(|| format!("database {}", p.display()))
            })
            .collect::<anyhow::Result<_>>()?
    };
    let tools: &[(&str, &str)] = &[
        ("ip", "iproute2"),
        ("nft", "nftables"),
        ("iptables", "iptables"),
        ("ipset", "ipset"),
        ("ethtool", "ethtool"),
    ];
    // The fleet section needs namespaces only.
    cmd::ensure_commands(if opts.fleet_only { &tools[..1] } else { tools })?;

    // Release builds: the figures are about the shipped code (the daemon's CLI and its table
    // compiler are measured too).
    let daemon = build::build(&build::Options { release: true })?;
    let tools_bin = setup::tools_dir().join("bin");
    let mut cargo = build::cargo(&tools_bin)?;
    cargo.args([
        "build",
        "--release",
        "--package",
        "geofilter-bench",
        "--bin",
        "geofilter-bench",
    ]);
    cmd::run(&mut cargo)?;
    let engine = cmd::workspace_root().join("target/release/geofilter-bench");

    let mut command = cmd::as_root(&engine);
    for db in &dbs {
        command.arg("--db").arg(db);
    }
    if opts.json {
        command.arg("--json");
    }
    if opts.quick {
        command.arg("--quick");
    }
    if opts.fleet_only {
        command.arg("--fleet-only");
    }
    command.env("GEOFILTER_BIN", &daemon);
    cmd::run(&mut command)
}

/// The default database's CSV files, fetched and unpacked on first use.
fn default_database() -> anyhow::Result<Vec<PathBuf>> {
    // One folder per package and version: packages of one publisher share version numbers.
    let package = NPM_PACKAGE.rsplit('/').next().unwrap_or(NPM_PACKAGE);
    let dir = cmd::workspace_root()
        .join("target/bench-data")
        .join(package)
        .join(NPM_VERSION);
    let files: Vec<PathBuf> = CSV_FILES.iter().map(|f| dir.join(f)).collect();
    if files.iter().all(|f| f.is_file()) {
        return Ok(files);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    eprintln!(
        "xtask: fetching {NPM_PACKAGE}@{NPM_VERSION} (about 12 MB) into {}",
        dir.display()
    );
    let spec = format!("{NPM_PACKAGE}@{NPM_VERSION}");
    let out = Command::new("npm")
        .args(["pack", "--silent", &spec, "--pack-destination"])
        .arg(&dir)
        .output()
        .context("running npm (install Node.js/npm, or pass --db FILE)")?;
    if !out.status.success() {
        bail!(
            "npm pack {spec} failed: {}\n(pass --db FILE to use a local database)",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tarball = String::from_utf8(out.stdout)?.trim().to_owned();
    unpack(&dir.join(&tarball), &dir)?;
    std::fs::remove_file(dir.join(&tarball)).ok();
    for f in &files {
        if !f.is_file() {
            bail!("{} is not in {spec}", f.display());
        }
    }
    Ok(files)
}

/// Extracts the CSV files of the npm tarball (`package/<file>`) into `dir`.
fn unpack(tarball: &Path, dir: &Path) -> anyhow::Result<()> {
    let members: Vec<String> = CSV_FILES.iter().map(|f| format!("package/{f}")).collect();
    cmd::run(
        Command::new("tar")
            .arg("-xzf")
            .arg(tarball)
            .arg("-C")
            .arg(dir)
            .arg("--strip-components=1")
            .args(&members),
    )
}
