use which::which;

/// Rebuilds the program when the linker changes: aya-build runs this crate's cargo with the
/// project-owned bpf-linker first in PATH, so a rebuilt linker (new nightly LLVM) must invalidate
/// the object. This script also runs when the daemon names this crate as a host build-dependency,
/// where no bpf-linker need exist: then there is nothing to track.
fn main() {
    println!("cargo:rerun-if-env-changed=PATH");
    if let Ok(bpf_linker) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", bpf_linker.display());
    }
}
