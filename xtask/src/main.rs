//! geofilter's developer tasks: `cargo xtask <setup|build|run|test|fuzz|bench|package|image>`.
//!
//! Every task that needs the eBPF toolchain runs `setup` first, so a fresh clone needs nothing
//! installed by hand: the nightly toolchain and a `bpf-linker` built against its LLVM are
//! installed on first use.

mod bench;
mod build;
mod cmd;
mod fuzz;
mod image;
mod matrix;
mod package;
mod run;
mod sandbox;
mod setup;
mod test;
mod test_binaries;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "geofilter developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the nightly toolchain (with rust-src) and a bpf-linker matching its LLVM into
    /// target/bpf-tools. Idempotent; rebuilds bpf-linker when the nightly's LLVM changes.
    Setup,
    /// Build the XDP program and the daemon with the program embedded.
    Build(build::Options),
    /// Build, then run `geofilter run <ARGS>` as root (through sudo when not root).
    Run(run::Options),
    /// Run every test tier: host unit tests, packet tables through BPF_PROG_TEST_RUN, and
    /// end-to-end tests in network namespaces (the last two need root).
    Test(test::Options),
    /// Run the cargo-fuzz targets (database readers, control protocol) for a time budget each.
    Fuzz(fuzz::Options),
    /// Measure geofilter against the kernel LPM trie, nftables and iptables+ipset on a
    /// world-size database: per-packet cost, live drop rate, load and change times, memory
    /// (needs root; network traffic stays inside namespaces it creates).
    Bench(bench::Options),
    /// Build the Debian package target/debian/geofilter_VERSION_amd64.deb (release binary, unit,
    /// example configuration, man pages, completions, licences).
    Package(package::Options),
    /// Build the OCI image localhost/geofilter:VERSION with podman, offline: a static (musl)
    /// release binary in a scratch image (Containerfile), for deploy/kubernetes/.
    Image,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::ensure().map(drop),
        Task::Build(opts) => build::build(&opts).map(drop),
        Task::Run(opts) => run::run(opts),
        Task::Test(opts) => test::test(&opts),
        Task::Fuzz(opts) => fuzz::fuzz(&opts),
        Task::Bench(opts) => bench::bench(&opts),
        Task::Package(opts) => package::package(&opts).map(drop),
        Task::Image => image::image().map(drop),
    }
}
