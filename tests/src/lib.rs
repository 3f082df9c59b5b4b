//! Helpers shared by the privileged test binaries: frame building, root checks, network
//! namespaces and the daemon process.
//!
//! Tests panic with a message rather than returning errors, so a failure keeps its backtrace.

pub mod daemon;
pub mod debroot;
pub mod frame;
pub mod model;
pub mod netns;
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
    require_root();
    eprintln!("installing {package} for `{command}`");
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
