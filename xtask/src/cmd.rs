//! Running child processes: print what runs, fail with the command line on a non-zero exit.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent folder")
        .to_path_buf()
}

/// Runs `cmd` with inherited stdio, echoing it first.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: $ {}", display(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("failed to start {}", display(cmd)))?;
    if !status.success() {
        bail!("{} failed: {status}", display(cmd));
    }
    Ok(())
}

/// Runs `cmd` and returns its stdout, failing with its stderr.
pub fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("failed to start {}", display(cmd)))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}\n{}",
            display(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

pub fn display(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Totals over the `test result:` lines of cargo test runs.
#[derive(Default)]
pub struct TestTotals {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

/// Runs a `cargo test` command, echoing its output, and adds its `test result:` lines to `totals`.
pub fn run_tests(cmd: &mut Command, totals: &mut TestTotals) -> anyhow::Result<()> {
    use std::{
        io::{BufRead as _, BufReader},
        process::Stdio,
    };
    eprintln!("xtask: $ {}", display(cmd));
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("failed to start {}", display(cmd)))?;
    let stdout = child.stdout.take().context("stdout piped")?;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some(result) = test_result(&line) {
            totals.passed += result.passed;
            totals.failed += result.failed;
            totals.ignored += result.ignored;
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{} failed: {status}", display(cmd));
    }
    Ok(())
}

/// The counts of a libtest `test result:` line, e.g. "test result: ok. 6 passed; 0 failed; 1
/// ignored; 0 measured; 0 filtered out; finished in 2s".
pub fn test_result(line: &str) -> Option<TestTotals> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let tokens: Vec<&str> = rest.split([' ', ';']).filter(|t| !t.is_empty()).collect();
    let number_before = |word: &str| -> u64 {
        tokens
            .windows(2)
            .find(|w| w[1] == word)
            .and_then(|w| w[0].parse().ok())
            .unwrap_or(0)
    };
    Some(TestTotals {
        passed: number_before("passed"),
        failed: number_before("failed"),
        ignored: number_before("ignored"),
    })
}

/// Installs Debian packages for commands that are missing (as root; otherwise says what to do).
pub fn ensure_commands(needed: &[(&str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<&str> = needed
        .iter()
        .filter(|(command, _)| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {command}")])
                .stdout(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(|&(_, package)| package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    apt_install(&missing)
}

/// Installs Debian packages (as root; otherwise says what to do).
pub fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    if !is_root() {
        bail!(
            "missing commands; install the Debian packages: {}",
            packages.join(" ")
        );
    }
    eprintln!("xtask: installing {}", packages.join(" "));
    run(Command::new("apt-get").arg("update").arg("-q"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(packages))
}
