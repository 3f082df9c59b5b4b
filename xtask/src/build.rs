//! `cargo xtask build`: the XDP program and the daemon with the program embedded.

use std::{env, path::PathBuf, process::Command};

use anyhow::Context as _;
use clap::Args;

use crate::{cmd, setup};

#[derive(Args)]
pub struct Options {
    /// Build with the release profile (leaves target/release/geofilter).
    #[arg(long)]
    pub release: bool,
}

/// A `cargo` command whose PATH finds the project-owned bpf-linker first, and whose daemon build
/// script fails instead of embedding a placeholder when the program cannot be built.
pub fn cargo(tools_bin: &std::path::Path) -> anyhow::Result<Command> {
    let path = env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![tools_bin.to_path_buf()];
    dirs.extend(env::split_paths(&path));
    let mut cargo = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .current_dir(cmd::workspace_root())
        .env(
            "PATH",
            env::join_paths(dirs).context("PATH holds an invalid folder")?,
        )
        .env("GEOFILTER_REQUIRE_EBPF", "1");
    Ok(cargo)
}

/// Builds everything; returns the path of the `geofilter` binary.
pub fn build(opts: &Options) -> anyhow::Result<PathBuf> {
    build_for(opts, None)
}

/// [`build`] for a Rust target other than the host's (`--target`, e.g. the musl target of the
/// static binary `cargo xtask image` ships); returns the path of the `geofilter` binary.
pub fn build_for(opts: &Options, target: Option<&str>) -> anyhow::Result<PathBuf> {
    let tools_bin = setup::ensure()?;
    let mut cargo = cargo(&tools_bin)?;
    cargo.args([
        "build",
        "--package",
        "geofilter-daemon",
        "--bin",
        "geofilter",
    ]);
    if opts.release {
        cargo.arg("--release");
    }
    let mut dir = cmd::workspace_root().join("target");
    if let Some(target) = target {
        cargo.args(["--target", target]);
        dir.push(target);
    }
    cmd::run(&mut cargo)?;
    let profile = if opts.release { "release" } else { "debug" };
    let bin = dir.join(profile).join("geofilter");
    eprintln!("xtask: built {}", bin.display());
    Ok(bin)
}
