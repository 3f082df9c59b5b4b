use which::which;

/// Rebuilds the program when the linker changes: aya-build runs this crate's cargo with the
/// project-owned bpf-linker first in PATH, so a rebuilt linker (new nightly LLVM) must invalidate
/// the object.
fn main() {
    let bpf_linker =
        which("bpf-linker").expect("bpf-linker not found in PATH: run `cargo xtask setup`");
    println!("cargo:rerun-if-changed={}", bpf_linker.display());
}
