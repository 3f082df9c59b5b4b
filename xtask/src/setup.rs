//! Toolchain bootstrap: the nightly toolchain with `rust-src` (the BPF target builds `core` from
//! source) and a `bpf-linker` built against that nightly's own LLVM.
//!
//! bpf-linker links LLVM dynamically. The nightly ships `lib/libLLVM.so.<ver>-rust-<ver>-nightly`
//! in its sysroot but no `libLLVM.so` development link, so we make a prefix folder whose `lib/`
//! holds both names pointing at it and give that to bpf-linker's build as `LLVM_PREFIX`. The
//! binary's RUNPATH points into that folder, so it must stay where it is. A stamp file records the
//! LLVM it was built against; a different nightly LLVM triggers a rebuild.

use std::{
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::cmd;

pub const NIGHTLY: &str = "nightly";
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Where the project keeps its own tools.
pub fn tools_dir() -> PathBuf {
    cmd::workspace_root().join("target/bpf-tools")
}

/// Makes sure the eBPF toolchain is present; returns the folder holding `bpf-linker`.
pub fn ensure() -> anyhow::Result<PathBuf> {
    ensure_nightly()?;
    let sysroot = cmd::output(
        Command::new("rustc")
            .arg(format!("+{NIGHTLY}"))
            .args(["--print", "sysroot"]),
    )?;
    let sysroot = PathBuf::from(sysroot.trim());
    let libllvm = find_libllvm(&sysroot.join("lib"))?;
    let llvm_version = llvm_version()?;
    let major = llvm_version
        .split('.')
        .next()
        .unwrap_or_default()
        .to_owned();

    let tools = tools_dir();
    let bin = tools.join("bin");
    let stamp_path = tools.join("bpf-linker.stamp");
    let stamp = format!(
        "bpf-linker {BPF_LINKER_VERSION} llvm {llvm_version} {}\n",
        libllvm.display()
    );
    if bin.join("bpf-linker").is_file()
        && fs::read_to_string(&stamp_path).ok().as_deref() == Some(&stamp)
    {
        return Ok(bin);
    }

    eprintln!(
        "xtask: building bpf-linker {BPF_LINKER_VERSION} against the nightly's LLVM {llvm_version} \
         (about a minute, once)"
    );
    let prefix = tools.join("llvm");
    let lib = prefix.join("lib");
    fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    let file_name = libllvm
        .file_name()
        .context("libLLVM path has no file name")?;
    for link in [lib.join("libLLVM.so"), lib.join(file_name)] {
        let _ = fs::remove_file(&link);
        symlink(&libllvm, &link).with_context(|| format!("linking {}", link.display()))?;
    }
    cmd::run(
        Command::new("cargo")
            .arg(format!("+{NIGHTLY}"))
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
                "--force",
            ])
            .args([
                "--no-default-features",
                "--features",
                &format!("llvm-{major}"),
            ])
            .arg("--root")
            .arg(&tools)
            .env("LLVM_PREFIX", &prefix)
            // Keep the install's own build out of the workspace's target dir lock.
            .env("CARGO_TARGET_DIR", tools.join("build")),
    )?;
    fs::write(&stamp_path, stamp).with_context(|| format!("writing {}", stamp_path.display()))?;
    Ok(bin)
}

fn ensure_nightly() -> anyhow::Result<()> {
    let installed = cmd::output(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup is required to install the nightly toolchain")?;
    if !installed.lines().any(|l| l.starts_with(NIGHTLY)) {
        eprintln!("xtask: installing the {NIGHTLY} toolchain (minimal profile, rust-src)");
        cmd::run(Command::new("rustup").args([
            "toolchain",
            "install",
            NIGHTLY,
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))?;
        return Ok(());
    }
    let components = cmd::output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        NIGHTLY,
    ]))?;
    if !components.lines().any(|l| l.trim() == "rust-src") {
        eprintln!("xtask: adding rust-src to {NIGHTLY}");
        cmd::run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            NIGHTLY,
        ]))?;
    }
    Ok(())
}

fn llvm_version() -> anyhow::Result<String> {
    let vv = cmd::output(Command::new("rustc").arg(format!("+{NIGHTLY}")).arg("-vV"))?;
    vv.lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .map(|v| v.trim().to_owned())
        .context("`rustc +nightly -vV` printed no LLVM version")
}

/// The nightly's shared LLVM: `libLLVM.so.<ver>-rust-<ver>-nightly` (or `libLLVM-<major>...so`).
fn find_libllvm(lib: &Path) -> anyhow::Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = fs::read_dir(lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM") && n.contains(".so"))
        })
        .collect();
    candidates.sort();
    // Prefer the versioned soname that the nightly's own rustc links against.
    match candidates
        .iter()
        .find(|p| p.to_string_lossy().contains("libLLVM.so."))
    {
        Some(p) => Ok(p.clone()),
        None => match candidates.into_iter().next() {
            Some(p) => Ok(p),
            None => bail!("no libLLVM shared library in {}", lib.display()),
        },
    }
}
