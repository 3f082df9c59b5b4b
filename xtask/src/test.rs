//! `cargo xtask test`: every tier, in order, failing on the first failure.
//!
//! 1. host: unit tests of the userspace crates (any user);
//! 2. packet tables: crafted frames through the loaded program with BPF_PROG_TEST_RUN (root);
//! 3. end-to-end: the real daemon on a veth pair between two fresh network namespaces (root).
//!
//! Then every cargo-fuzz target runs briefly (`fuzz/`, see `cargo xtask fuzz`), and then the
//! kernel matrix (`matrix`): tiers 2 and 3 again in VMs booted from Debian's 5.10, 6.1 and 6.12
//! kernels. `--kernel` picks one part: `host` (tiers 1-3 and fuzzing here), a version, or `all`.
//!
//! Tiers 2 and 3 live in the `geofilter-tests` crate. They run in a private sandbox that looks
//! like a fresh machine (`sandbox`; through `sudo -E` when not root), found by cargo itself
//! (`test_binaries`: a new `tests/tests/x.rs` runs without being listed anywhere), so
//! cargo itself never runs as root.

use std::{env, process::Command};

use clap::Args;

use crate::{build, cmd, fuzz, image, matrix, package, sandbox, setup, test_binaries};

#[derive(Args)]
pub struct Options {
    /// Also run the long forms of the fuzz and torture tests (minutes, not seconds).
    #[arg(long)]
    long: bool,
    /// Which kernels: `host` (this machine's kernel only), `5.10`, `6.1`, `6.12` (one VM booted
    /// from Debian's kernel of that version) or `all` (every VM). [default: host, then all]
    #[arg(long, value_name = "KERNEL")]
    kernel: Option<String>,
    /// Extra arguments for the test binaries (e.g. a test name filter).
    #[arg(last = true)]
    args: Vec<String>,
}

pub fn test(opts: &Options) -> anyhow::Result<()> {
    let geofilter = build::build(&build::Options { release: false })?;
    let (host, kernels) = match opts.kernel.as_deref() {
        None => (true, matrix::KERNELS.to_vec()),
        Some("host") => (true, Vec::new()),
        Some(choice) => (false, matrix::kernels(choice)?),
    };
    if host {
        host_tiers(opts, &geofilter)?;
    }
    if !kernels.is_empty() {
        matrix::run(&kernels, &geofilter, &opts.args)?;
    }
    Ok(())
}

/// Tiers 1 to 3 on this machine's kernel, then the fuzz smoke.
fn host_tiers(opts: &Options, geofilter: &std::path::Path) -> anyhow::Result<()> {
    let mut totals = cmd::TestTotals::default();
    let tools_bin = setup::tools_dir().join("bin");

    eprintln!("xtask: tier 1/3: host unit tests");
    let mut host = build::cargo(&tools_bin)?;
    host.args([
        "test",
        "--workspace",
        "--exclude",
        "geofilter-tests",
        "--exclude",
        "geofilter-bench",
        "--exclude",
        "geofilter-ebpf",
    ]);
    if !opts.args.is_empty() {
        host.arg("--").args(&opts.args);
    }
    cmd::run_tests(&mut host, &mut totals)?;

    cmd::require_root_or_sudo(
        "tiers 2 and 3 load XDP programs and create network namespaces: they",
    )?;
    let runner = sandbox::runner(false)?;
    cmd::ensure_commands(&[
        ("ip", "iproute2"),
        ("curl", "curl"),
        ("unshare", "util-linux"),
        // tests/tests/dispatcher.rs: libxdp's xdp-filter and xdp-loader (and, through libxdp1,
        // the dispatcher object geofilter loads).
        ("xdp-filter", "xdp-tools"),
        ("xdp-loader", "xdp-tools"),
    ])?;
    // The package tier's inputs (an older and the current .deb, a bookworm root), built here,
    // outside the sandbox, as the invoking user.
    let package_inputs = package::test_inputs()?;
    // The container tier's image (tests/tests/container.rs), built here as the package is.
    let image = image::image()?;
    // Every test binary cargo builds for `geofilter-tests`, in name order, each through the
    // sandbox runner from the crate's folder (as `cargo test` would run it).
    let tests_dir = cmd::workspace_root().join("tests");
    for (name, exe) in test_binaries::build()? {
        eprintln!("xtask: tiers 2-3: {name}");
        let mut privileged = Command::new(&runner[0]);
        privileged
            .args(&runner[1..])
            .arg(&exe)
            .args(&opts.args)
            .current_dir(&tests_dir)
            .env("GEOFILTER_BIN", geofilter)
            .envs(package_inputs.iter().cloned())
            .env("GEOFILTER_IMAGE", &image);
        if opts.long {
            privileged.env("GEOFILTER_LONG", "1");
        }
        if env::var_os("CI").is_some() {
            // CI has no terminal to watch: show each test's output as it finishes.
            privileged.env("RUST_BACKTRACE", "1");
        }
        cmd::run_tests(&mut privileged, &mut totals)?;
    }
    // Parsers under libFuzzer, briefly (long with --long): every database reader and the control
    // protocol decoder, from the committed seeds.
    eprintln!("xtask: fuzz smoke: every cargo-fuzz target");
    let seconds = if opts.long { 300 } else { 10 };
    fuzz::fuzz(&fuzz::Options {
        seconds,
        targets: Vec::new(),
    })?;
    eprintln!("xtask: all host tiers passed");
    println!(
        "{} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    Ok(())
}
