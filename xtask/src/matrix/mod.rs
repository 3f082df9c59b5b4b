//! The kernel matrix: the privileged test tiers inside VMs booted from Debian's own kernels
//! (`cargo xtask test --kernel 5.10|6.1|6.12|all`).
//!
//! The test binaries are built once on the host; each VM shares the host's filesystem, runs the
//! chosen binaries through the same sandbox runner as the host tiers (`sandbox`), and writes
//! its log and exit status into target/kernel-matrix/run-<version>/. Which tiers run in the VMs
//! is [`TIERS`]; the README's "Kernel matrix" section says why.

mod kernel;
mod vm;

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
pub use kernel::KERNELS;
use kernel::{Kernel, matrix_dir};

use crate::{cmd, sandbox, test_binaries};

/// A tier of the matrix: one test binary of `geofilter-tests`, with a name filter.
struct Tier {
    test: &'static str,
    /// libtest filters (a test runs if its name contains any); empty: every test.
    filters: &'static [&'static str],
}

/// What runs on every kernel. Under TCG (no usable KVM here) a guest runs several times slower
/// than the host, so the matrix runs the tiers that exercise what differs between kernels (the
/// verifier, BPF_PROG_TEST_RUN, map-in-map swaps, links, XDP on veth, bpffs) and leaves the long
/// tiers that only repeat kernel-independent logic with more data (exactness over the world
/// database, torture, control, db) to the host.
const TIERS: [Tier; 7] = [
    // Every verdict, counter and parse case through the verified program.
    Tier {
        test: "packets",
        filters: &[],
    },
    // Random frames and policies against the reference model (2 s on the host, its short form).
    Tier {
        test: "fuzz_datapath",
        filters: &[],
    },
    // The stride walk against the kernel's own LPM trie, and pin handling.
    Tier {
        test: "lookup",
        filters: &[],
    },
    // ASN and list verdicts, their order and counters (the net pages of the table).
    Tier {
        test: "nets",
        filters: &["decide_in_order", "counted"],
    },
    // The real daemon on veth: a drop test, and the daemon started under `ip netns exec` (a
    // fresh mount namespace), including after `kill -9`.
    Tier {
        test: "e2e",
        filters: &[
            "udp_from_blocked_country",
            "ip_netns_exec",
            "stop_detaches_and_removes_every_pin",
            // Where pins outlive the daemon, and the parser's VLAN and IPv4-in-IPv6 rules on
            // real veth (8021q is a module in Debian's kernels, so the VLAN-interface test runs
            // here even where the host kernel lacks it).
            "filter_outlives",
            // Daemons starting together mount one bpffs (flock on a sysfs directory).
            "share_one_bpffs",
            "vlan",
            "ipv6_sources_embedding",
        ],
    },
    // Drop events: the ring buffer (BPF_MAP_TYPE_RINGBUF, 5.8+) read by the daemon through
    // epoll, and the kernel's per-CPU token bucket, under a veth flood.
    Tier {
        test: "events",
        filters: &["a_flood_gives_events"],
    },
    // Sharing the interface with Debian's xdp-filter through libxdp's dispatcher (freplace
    // re-attachment: 5.10+), both load orders.
    Tier {
        test: "dispatcher",
        filters: &[],
    },
];

/// A tier, or some of its tests, that cannot run on a kernel, and why. Printed in the matrix.
struct Limit {
    kernel: &'static str,
    test: &'static str,
    /// A libtest `--skip` filter; `None`: the whole tier.
    skip: Option<&'static str>,
    reason: &'static str,
}

/// None today: `why` probes once needed 5.14 (an XDP test-run context) and were skipped on 5.10;
/// they now carry their record in the frame (geofilter-ebpf `filter::why`).
const LIMITS: [Limit; 0] = [];

/// The longest a VM may run before it is killed (the whole matrix under TCG takes minutes).
const VM_LIMIT: Duration = Duration::from_secs(30 * 60);

/// `--kernel`'s value as kernels: one version, or `all`.
pub fn kernels(choice: &str) -> anyhow::Result<Vec<Kernel>> {
    if choice == "all" {
        return Ok(KERNELS.to_vec());
    }
    match KERNELS.iter().find(|k| k.version == choice) {
        Some(kernel) => Ok(vec![*kernel]),
        None => bail!(
            "unknown kernel {choice:?}: expected host, all or one of {}",
            KERNELS.map(|k| k.version).join(", ")
        ),
    }
}

/// One tier's outcome in one VM.
struct Outcome {
    kernel: &'static str,
    tier: &'static str,
    passed: u64,
    failed: u64,
    /// The test binary's exit status in the guest, if it got to run.
    exit: Option<i32>,
    /// What was left out, and why (see [`LIMITS`]).
    skipped: Option<String>,
}

/// Runs the matrix tiers on `kernels`; `args` replace the tiers' own filters when given.
pub fn run(kernels: &[Kernel], geofilter: &Path, args: &[String]) -> anyhow::Result<()> {
    let started = Instant::now();
    let vng_bin = vm::ensure_tools()?;
    vm::check_path(&cmd::workspace_root())?;
    let binaries = test_binaries::build()?;
    let mut outcomes = Vec::new();
    let mut failures = Vec::new();
    let mut accel = None;
    for &kernel in kernels {
        let unpacked = kernel::ensure(kernel)?;
        let accel = match accel {
            Some(accel) => accel,
            None => *accel.insert(vm::probe_accel(&vng_bin, &unpacked)?),
        };
        let vm_started = Instant::now();
        eprintln!(
            "xtask: kernel {} ({}): booting with {accel:?}",
            kernel.version, unpacked.release
        );
        let dir = matrix_dir().join(format!("run-{}", kernel.version));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let log = dir.join("guest.log");
        let status = dir.join("status");
        let script = dir.join("guest.sh");
        fs::write(
            &script,
            guest_script(kernel.version, &binaries, geofilter, args, &log, &status)?,
        )
        .with_context(|| format!("writing {}", script.display()))?;
        let boot = vm::boot(
            &vng_bin,
            &unpacked,
            accel,
            &script,
            &dir,
            VM_LIMIT,
            Some(&log),
        )?;
        let text = fs::read_to_string(&log).unwrap_or_default();
        let mut found = parse(kernel.version, &text);
        let console = dir.join("console.log");
        match (boot, fs::read_to_string(&status)) {
            (vm::Boot::TimedOut, _) => failures.push(format!(
                "kernel {}: the VM ran over {} s and was killed (console: {})",
                kernel.version,
                VM_LIMIT.as_secs(),
                console.display()
            )),
            (vm::Boot::Exited, Err(_)) => failures.push(format!(
                "kernel {}: the guest script did not finish (console: {})",
                kernel.version,
                console.display()
            )),
            (vm::Boot::Exited, Ok(s)) if s.trim() != "0" => {
                failures.push(format!("kernel {}: a tier failed", kernel.version))
            }
            _ => {}
        }
        if found.len() < TIERS.len() {
            failures.push(format!(
                "kernel {}: {} of {} tiers ran",
                kernel.version,
                found.len(),
                TIERS.len()
            ));
        }
        eprintln!(
            "xtask: kernel {} done in {:.0} s",
            kernel.version,
            vm_started.elapsed().as_secs_f64()
        );
        outcomes.append(&mut found);
    }
    print!("{}", report(&outcomes));
    println!(
        "kernel matrix: {:.0} s in all",
        started.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        bail!("kernel matrix failed:\n  {}", failures.join("\n  "));
    }
    Ok(())
}

/// The guest's TMPDIR (see `guest_script`).
const GUEST_TMP: &str = "/dev/xtask-tmp";

const MARK: &str = "xtask-guest:";

/// The guest's script: a VM-local TMPDIR, then each tier through the sandbox runner, each tier's
/// exit status marked in the log, and the overall status written last.
fn guest_script(
    kernel: &str,
    binaries: &[(String, PathBuf)],
    geofilter: &Path,
    args: &[String],
    log: &Path,
    status: &Path,
) -> anyhow::Result<String> {
    let runner = sandbox::runner(true)?.join(" ");
    let mut s = String::new();
    writeln!(s, "exec > {} 2>&1", log.display())?;
    // Binding a Unix socket on the shared 9p filesystem fails with ENXIO: the daemons' control
    // sockets (under TMPDIR) need a VM-local filesystem: a tmpfs on a folder of the guest's own
    // devtmpfs (a short path: socket paths are limited to 108 bytes). Not on /tmp: the
    // workspace itself may live under /tmp (a CI clone), and a tmpfs there would hide it.
    writeln!(
        s,
        "mkdir -p {GUEST_TMP} && mount -t tmpfs tmpfs {GUEST_TMP} || exit 1"
    )?;
    writeln!(
        s,
        // GEOFILTER_REQUIRE_DISPATCHER: every matrix kernel runs libxdp's dispatcher, so the
        // dispatcher tier fails there instead of skipping (tests/tests/dispatcher.rs).
        "export TMPDIR={GUEST_TMP} RUST_BACKTRACE=1 GEOFILTER_REQUIRE_DISPATCHER=1 GEOFILTER_BIN={}",
        geofilter.display()
    )?;
    writeln!(s, "echo \"{MARK} kernel $(uname -r)\"")?;
    writeln!(
        s,
        "grep ' /sys/fs/bpf ' /proc/mounts && echo '{MARK} /sys/fs/bpf is mounted at boot: the sandbox unmounts it'"
    )?;
    writeln!(s, "status=0")?;
    for tier in &TIERS {
        let exe = binaries
            .iter()
            .find(|(name, _)| name == tier.test)
            .map(|(_, exe)| exe)
            .with_context(|| format!("cargo built no `{}` test binary", tier.test))?;
        let filters: Vec<&str> = if args.is_empty() {
            tier.filters.to_vec()
        } else {
            args.iter().map(String::as_str).collect()
        };
        writeln!(s, "echo '{MARK} tier {}'", tier.test)?;
        let mut skips = String::new();
        for limit in LIMITS
            .iter()
            .filter(|l| l.kernel == kernel && l.test == tier.test)
        {
            match limit.skip {
                Some(skip) => {
                    writeln!(s, "echo '{MARK} skip {skip}*: {}'", limit.reason)?;
                    write!(skips, " --skip {skip}")?;
                }
                None => writeln!(s, "echo '{MARK} skip all: {}'", limit.reason)?,
            }
        }
        if LIMITS
            .iter()
            .any(|l| l.kernel == kernel && l.test == tier.test && l.skip.is_none())
        {
            continue;
        }
        writeln!(
            s,
            "{runner} {} --test-threads=1{skips} {}",
            exe.display(),
            filters
                .iter()
                .map(|f| format!("'{}'", f.replace('\'', "")))
                .collect::<Vec<_>>()
                .join(" ")
        )?;
        writeln!(s, "rc=$?; echo \"{MARK} exit {} $rc\"", tier.test)?;
        writeln!(s, "[ $rc = 0 ] || status=1")?;
    }
    writeln!(s, "echo $status > {}", status.display())?;
    Ok(s)
}

/// The tiers found in a guest log, with their `test result:` counts and exit status.
fn parse(kernel: &'static str, log: &str) -> Vec<Outcome> {
    let mut out: Vec<Outcome> = Vec::new();
    for line in log.lines() {
        let line = line.trim();
        if let Some(test) = line.strip_prefix(&format!("{MARK} tier ")) {
            if let Some(tier) = TIERS.iter().find(|t| t.test == test) {
                out.push(Outcome {
                    kernel,
                    tier: tier.test,
                    passed: 0,
                    failed: 0,
                    exit: None,
                    skipped: None,
                });
            }
        } else if let Some(skip) = line.strip_prefix(&format!("{MARK} skip ")) {
            if let Some(last) = out.last_mut() {
                if skip.starts_with("all:") {
                    last.exit = Some(0);
                }
                last.skipped = Some(skip.to_owned());
            }
        } else if let Some(rest) = line.strip_prefix(&format!("{MARK} exit ")) {
            if let (Some(last), Some(code)) = (out.last_mut(), rest.split(' ').nth(1)) {
                last.exit = code.parse().ok();
            }
        } else if let (Some(last), Some(result)) = (out.last_mut(), cmd::test_result(line)) {
            last.passed += result.passed;
            last.failed += result.failed;
        }
    }
    out
}

/// The matrix, kernel × tier × result.
fn report(outcomes: &[Outcome]) -> String {
    let mut s = String::from("\nkernel matrix:\n  kernel  tier           result\n");
    for o in outcomes {
        let verdict = match o.exit {
            Some(0) if o.skipped.as_deref().is_some_and(|s| s.starts_with("all:")) => {
                "skipped".to_owned()
            }
            Some(0) if o.failed == 0 && o.passed > 0 => "ok".to_owned(),
            Some(0) if o.passed == 0 => "FAILED (no test ran)".to_owned(),
            Some(code) => format!("FAILED (exit {code})"),
            None => "FAILED (did not finish)".to_owned(),
        };
        let _ = write!(
            s,
            "  {:<7} {:<14} {verdict}: {} passed, {} failed",
            o.kernel, o.tier, o.passed, o.failed
        );
        let _ = match &o.skipped {
            Some(skipped) => writeln!(s, " (skipped {skipped})"),
            None => writeln!(s),
        };
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guest_log_becomes_a_matrix_row_per_tier() {
        let log = "xtask-guest: kernel 6.1.0-57-amd64\n\
                   xtask-guest: tier packets\n\
                   test result: ok. 40 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out\n\
                   xtask-guest: exit packets 0\n\
                   xtask-guest: tier lookup\n\
                   test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out\n\
                   xtask-guest: exit lookup 101\n\
                   xtask-guest: tier e2e\n";
        let rows = parse("6.1", log);
        assert_eq!(rows.len(), 3);
        let skipped = parse(
            "5.10",
            "xtask-guest: tier lookup\nxtask-guest: skip all: too old\n",
        );
        assert!(
            report(&skipped)
                .contains("lookup         skipped: 0 passed, 0 failed (skipped all: too old)"),
            "{}",
            report(&skipped)
        );
        assert_eq!(
            (rows[0].passed, rows[0].failed, rows[0].exit),
            (40, 0, Some(0))
        );
        assert_eq!(
            (rows[1].passed, rows[1].failed, rows[1].exit),
            (3, 1, Some(101))
        );
        assert_eq!(rows[2].exit, None, "a tier cut short has no exit status");
        let table = report(&rows);
        assert!(
            table.contains("6.1     packets        ok: 40 passed"),
            "{table}"
        );
        assert!(
            table.contains("lookup         FAILED (exit 101)"),
            "{table}"
        );
        assert!(
            table.contains("e2e            FAILED (did not finish)"),
            "{table}"
        );
    }
}
