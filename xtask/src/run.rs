//! `cargo xtask run -- <geofilter run args>`: build, then run the daemon as root.

use clap::Args;

use crate::{build, cmd};

#[derive(Args)]
pub struct Options {
    /// Build and run the release binary.
    #[arg(long)]
    release: bool,
    /// Arguments for `geofilter run`, e.g. `-- --iface eth0 --block RU`.
    #[arg(last = true)]
    args: Vec<String>,
}

pub fn run(opts: Options) -> anyhow::Result<()> {
    let bin = build::build(&build::Options {
        release: opts.release,
    })?;
    // Loading XDP programs needs CAP_BPF and CAP_NET_ADMIN; never `sudo cargo`, only the binary.
    let mut command = cmd::as_root(&bin);
    command.arg("run").args(&opts.args);
    cmd::run(&mut command)
}
