//! Helpers shared by the privileged test binaries: frame building, root checks, network
//! namespaces, the daemon process and its container image.
//!
//! Tests panic with a message rather than returning errors, so a failure keeps its backtrace.

pub mod daemon;
pub mod debroot;
pub mod fleet;
pub mod frame;
pub mod model;
pub mod netns;
pub mod npm;
pub mod podman;
pub mod policy_server;
pub mod probe;
pub mod rng;
pub mod scenario;
pub mod traffic;

/// Fails the test unless we are root. Privileged tests never skip silently: without root they
/// fail and say why (CI runs as root).
pub fn require_root() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        panic!(
            "this test loads XDP programs and creates network namespaces: it needs root. \
             Run it with `cargo xtask test` (which uses sudo when not root)."
        );
    }
}

/// Installs `package` with apt unless `command` is already on the PATH: a check that skipped
/// because its tool is missing would pass silently (CI runs as root on Debian).
pub fn ensure_command(command: &str, package: &str) {
    use std::process::Command;
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {command}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return;
    }
    eprintln!("installing {package} for `{command}`");
    apt_install(package);
}

/// Installs a Debian package with apt (as root; fetching the package lists first when apt knows
/// no such package).
pub fn apt_install(package: &str) {
    use std::process::Command;
    require_root();
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    // An image whose package lists were never fetched knows no package at all.
    if !install() {
        let updated = Command::new("apt-get")
            .args(["update", "-q"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(updated && install(), "apt-get install {package} failed");
    }
}

/// Set inside the sandbox that [`on_a_fresh_host`] re-runs a test in.
const FRESH_HOST: &str = "GEOFILTER_TEST_FRESH_HOST";

/// Runs the calling test as on a fresh machine: re-runs `test` (its name in this binary) in a
/// mount and PID namespace of its own with every bpffs on /sys/fs/bpf unmounted, and asserts
/// that it passed there. Returns `true` inside that sandbox (go on with the test), `false` in
/// the outer run once the inner one passed (return).
///
/// Needed because a bpffs, once mounted, stays, and the other tests of a binary mount one in the
/// xtask sandbox they share (possibly several, stacked, when their daemons race).
pub fn on_a_fresh_host(test: &str) -> bool {
    require_root();
    if std::env::var_os(FRESH_HOST).is_some() {
        let mount_point = std::path::Path::new("/sys/fs/bpf");
        assert!(
            !geofilter_daemon::datapath::bpffs::is_bpffs(mount_point).unwrap_or(false),
            "the sandbox still has a bpffs at /sys/fs/bpf"
        );
        return true;
    }
    let me = std::env::current_exe().expect("test binary");
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--pid", "--fork", "--mount-proc"])
        .args(["--propagation", "private", "sh", "-c"])
        // Every stacked instance: the first umount only uncovers the one below.
        .arg(
            "while [ \"$(stat -f -c %T /sys/fs/bpf 2>/dev/null)\" = bpf_fs ]; do \
             umount -l /sys/fs/bpf || exit 125; done; \"$@\"",
        )
        .arg("sh")
        .arg(me)
        .args(["--exact", test, "--nocapture"])
        .env(FRESH_HOST, "1")
        .output()
        .expect("running the sandboxed test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{test} on a host without bpffs failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    false
}
