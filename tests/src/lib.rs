//! Helpers shared by the privileged test binaries: frame building, root checks, network
//! namespaces and the daemon process.
//!
//! Tests panic with a message rather than returning errors, so a failure keeps its backtrace.

pub mod daemon;
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
