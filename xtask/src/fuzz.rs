//! `cargo xtask fuzz`: the cargo-fuzz targets in `fuzz/` (every database reader and the control
//! protocol decoder), each for a time budget, starting from the committed seeds in `fuzz/seeds/`.
//!
//! cargo-fuzz is installed from crates.io into `target/fuzz-tools` on first use; libFuzzer builds
//! need the nightly toolchain, which `setup` already provides.

use std::{fs, process::Command};

use anyhow::Context as _;
use clap::Args;

use crate::{cmd, setup};

const CARGO_FUZZ_VERSION: &str = "0.13.2";

#[derive(Args)]
pub struct Options {
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Targets to run [default: all].
    pub targets: Vec<String>,
}

/// Installs cargo-fuzz when missing; returns the folder holding it (for PATH).
fn ensure_cargo_fuzz() -> anyhow::Result<std::path::PathBuf> {
    let root = cmd::workspace_root().join("target/fuzz-tools");
    let bin = root.join("bin/cargo-fuzz");
    if !bin.is_file() {
        eprintln!(
            "xtask: installing cargo-fuzz {CARGO_FUZZ_VERSION} into {}",
            root.display()
        );
        cmd::run(
            Command::new("cargo")
                .args([
                    "install",
                    "cargo-fuzz",
                    "--version",
                    CARGO_FUZZ_VERSION,
                    "--locked",
                    "--root",
                ])
                .arg(&root)
                .env("CARGO_TARGET_DIR", root.join("build")),
        )?;
    }
    Ok(root.join("bin"))
}

/// The targets declared in fuzz/Cargo.toml.
fn all_targets() -> anyhow::Result<Vec<String>> {
    let manifest = fs::read_to_string(cmd::workspace_root().join("fuzz/Cargo.toml"))
        .context("reading fuzz/Cargo.toml")?;
    Ok(manifest
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|name| *name != "geofilter-fuzz")
        .map(str::to_owned)
        .collect())
}

pub fn fuzz(opts: &Options) -> anyhow::Result<()> {
    setup::ensure()?;
    let tools = ensure_cargo_fuzz()?;
    let mut path = vec![tools];
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let path = std::env::join_paths(path)?;
    let targets = if opts.targets.is_empty() {
        all_targets()?
    } else {
        opts.targets.clone()
    };
    let root = cmd::workspace_root();
    for target in &targets {
        let corpus = root.join("target/fuzz-corpus").join(target);
        fs::create_dir_all(&corpus)?;
        eprintln!("xtask: fuzzing {target} for {} s", opts.seconds);
        cmd::run(
            Command::new("cargo")
                .current_dir(&root)
                .env("PATH", &path)
                .args(["+nightly", "fuzz", "run", "--fuzz-dir", "fuzz", target])
                .arg(&corpus)
                .arg(root.join("fuzz/seeds").join(target))
                .args([
                    "--",
                    &format!("-max_total_time={}", opts.seconds),
                    "-max_len=65536",
                    "-rss_limit_mb=2048",
                ])
                // Parsers only: the daemon's build script need not build the XDP program.
                .env("AYA_BUILD_SKIP", "1"),
        )
        .with_context(|| {
            format!("fuzz target {target} found a failure (see fuzz/artifacts/{target}/)")
        })?;
    }
    Ok(())
}
