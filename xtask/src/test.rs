//! `cargo xtask test`: every tier, in order, failing on the first failure.
//!
//! 1. host: unit tests of the userspace crates (any user);
//! 2. packet tables: crafted frames through the loaded program with BPF_PROG_TEST_RUN (root);
//! 3. end-to-end: the real daemon on a veth pair between two fresh network namespaces (root).
//!
//! Then every cargo-fuzz target runs briefly (`fuzz/`, see `cargo xtask fuzz`).
//!
//! Tiers 2 and 3 live in the `geofilter-tests` crate. When not root they run through `sudo -E`
//! (cargo's target runner), so cargo itself never runs as root.

use std::{env, process::Command};

use anyhow::bail;
use clap::Args;

use crate::{build, cmd, fuzz, package, setup};

#[derive(Args)]
pub struct Options {
    /// Also run the long forms of the fuzz and torture tests (minutes, not seconds).
    #[arg(long)]
    long: bool,
    /// Extra arguments for the test binaries (e.g. a test name filter).
    #[arg(last = true)]
    args: Vec<String>,
}

pub fn test(opts: &Options) -> anyhow::Result<()> {
    let geofilter = build::build(&build::Options { release: false })?;
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

    let runner_var = "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER";
    let runner = if cmd::is_root() {
        None
    } else if Command::new("sudo")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|s| s.success())
    {
        Some("sudo -E")
    } else {
        bail!(
            "tiers 2 and 3 load XDP programs and create network namespaces: they need root. \
             Run `cargo xtask test` as root or give this user passwordless sudo. NOT skipping them."
        );
    };
    cmd::ensure_commands(&[("ip", "iproute2"), ("curl", "curl")])?;
    let package_inputs = package::test_inputs()?;
    for (tier, test) in [
        ("2/3: packet tables (BPF_PROG_TEST_RUN)", "packets"),
        (
            "2/3: differential fuzzing against the reference model",
            "fuzz_datapath",
        ),
        ("2/3: database exactness (kernel vs reference)", "exactness"),
        (
            "2/3: stride tables vs the kernel LPM trie, exception marks",
            "lookup",
        ),
        ("3/3: end-to-end (network namespaces)", "e2e"),
        ("3/3: databases: embedded, db update, bad files", "db"),
        ("3/3: control plane end-to-end", "control"),
        ("3/3: control plane defects (issue 10)", "control_defects"),
        (
            "3/3: usability: CLI options, refusals of bad input",
            "usability",
        ),
        ("3/3: torture (kills, concurrency, restarts)", "torture"),
        ("3/3: man pages and shell completions", "docs"),
        (
            "3/3: Debian package: lintian, install/upgrade/purge in bookworm",
            "package",
        ),
    ] {
        eprintln!("xtask: tier {tier}");
        let mut privileged = build::cargo(&tools_bin)?;
        privileged
            .args(["test", "--package", "geofilter-tests", "--test", test])
            .env("GEOFILTER_BIN", &geofilter)
            .envs(package_inputs.iter().cloned());
        if let Some(runner) = runner {
            privileged.env(runner_var, runner);
        }
        if opts.long {
            privileged.env("GEOFILTER_LONG", "1");
        }
        if env::var_os("CI").is_some() {
            // CI has no terminal to watch: show each test's output as it finishes.
            privileged.env("RUST_BACKTRACE", "1");
        }
        if !opts.args.is_empty() {
            privileged.arg("--").args(&opts.args);
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
    eprintln!("xtask: all tiers passed");
    println!(
        "{} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    Ok(())
}
