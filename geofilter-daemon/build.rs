//! Builds the XDP program (crate `geofilter-ebpf`) for the BPF target and leaves the object in
//! `OUT_DIR` for `include_bytes_aligned!`.
//!
//! The build needs the nightly toolchain and `bpf-linker`, which `cargo xtask setup` installs into
//! `target/bpf-tools` (a folder this project owns). When they are missing, a plain `cargo build` or
//! `cargo test` still succeeds with an empty placeholder object and a warning, so the userspace
//! crates build and test anywhere; loading the program then fails with an error that says to run
//! `cargo xtask build`.

use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").ok_or(anyhow!("no CARGO_MANIFEST_DIR"))?);
    let workspace = manifest_dir
        .parent()
        .context("daemon crate has no parent folder")?;
    let tools_bin = workspace.join("target/bpf-tools/bin");
    println!(
        "cargo:rerun-if-changed={}",
        tools_bin.join("bpf-linker").display()
    );
    println!("cargo:rerun-if-env-changed=PATH");

    let path = env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![tools_bin];
    dirs.extend(env::split_paths(&path));
    let linker_found = dirs.iter().any(|d| d.join("bpf-linker").is_file());
    println!("cargo:rerun-if-env-changed=GEOFILTER_REQUIRE_EBPF");
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    // Fuzzing builds set AYA_BUILD_SKIP: they exercise user-space parsers only.
    let skip =
        env::var_os("AYA_BUILD_SKIP").is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if !linker_found || skip {
        if env::var_os("GEOFILTER_REQUIRE_EBPF").is_some() {
            anyhow::bail!("bpf-linker not found in {} or PATH", dirs[0].display());
        }
        let out = PathBuf::from(env::var_os("OUT_DIR").ok_or(anyhow!("no OUT_DIR"))?);
        // One placeholder per program object (bin) of geofilter-ebpf.
        for object in ["geofilter", "geofilter-lpm", "geofilter-bench"] {
            fs::write(out.join(object), b"").context("writing placeholder object")?;
        }
        if !skip {
            println!(
                "cargo:warning=bpf-linker not found: the XDP program is NOT built into this binary; \
                 run `cargo xtask build` (it installs what it needs)"
            );
        }
        return Ok(());
    }
    // SAFETY: build scripts are single-threaded; the child cargo that aya-build spawns must find
    // the project-owned bpf-linker first.
    unsafe { env::set_var("PATH", env::join_paths(dirs)?) };

    let ebpf_dir = workspace.join("geofilter-ebpf");
    let ebpf = Package {
        name: "geofilter-ebpf",
        root_dir: ebpf_dir.to_str().context("non-UTF-8 path")?,
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf], Toolchain::default())
}
