//! `cargo xtask image`: the OCI image `localhost/geofilter:VERSION`, built offline with podman.
//!
//! The image is `FROM scratch` (the checked-in `Containerfile`): nothing is pulled, so it builds
//! where no registry is reachable. What makes that possible is a static binary: Rust's musl
//! target links musl in (from the target's self-contained objects) and the one C dependency,
//! ring, is compiled by Debian's musl-gcc (`musl-tools`). The eBPF object is embedded in the
//! binary already, and the daemon execs nothing it needs (only `ip link set ... xdp off` when it
//! has to remove another tool's netlink-attached program, best effort), so the root filesystem
//! is the binary and the folders the daemon writes to or that a deployment mounts on.
//!
//! The musl target's standard library comes from rustup's server. Where that cannot be reached
//! (or with `GEOFILTER_IMAGE_GLIBC=1`), the image gets the glibc binary instead, with the
//! shared libraries and the loader `ldd` names copied beside it: still `FROM scratch`, still
//! offline, a few MiB larger.

use std::{fs, os::unix::fs::PermissionsExt as _, path::Path, process::Command};

use anyhow::{Context as _, bail};

use crate::{build, cmd, package};

/// The Rust target of the image's binary.
const TARGET: &str = "x86_64-unknown-linux-musl";

/// The image's name, as podman stores it.
pub fn tag() -> String {
    format!("localhost/geofilter:{}", env!("CARGO_PKG_VERSION"))
}

/// Builds the static binary, the root filesystem under target/image/rootfs, and the image;
/// returns its tag.
pub fn image() -> anyhow::Result<String> {
    cmd::ensure_commands(&[
        ("podman", "podman"),
        ("readelf", "binutils"),
        ("strip", "binutils"),
    ])?;
    let release = build::Options { release: true };
    let musl = std::env::var_os("GEOFILTER_IMAGE_GLIBC").is_none_or(|v| v != "1");
    let musl = musl
        && cmd::ensure_commands(&[("x86_64-linux-musl-gcc", "musl-tools")])
            .and_then(|()| ensure_target())
            .inspect_err(|e| {
                eprintln!(
                    "xtask: no musl target ({e:#}): the image gets the glibc binary and the \
                     libraries it links"
                )
            })
            .is_ok();
    let bin = build::build_for(&release, musl.then_some(TARGET))?;
    let context = cmd::workspace_root().join("target/image");
    let rootfs = context.join("rootfs");
    if rootfs.exists() {
        fs::remove_dir_all(&rootfs).with_context(|| format!("removing {}", rootfs.display()))?;
    }
    let sbin = package::install(&bin, &rootfs, "usr/sbin/geofilter", 0o755)?;
    package::strip(&sbin)?;
    if musl {
        require_static(&sbin)?;
    } else {
        copy_shared_libraries(&sbin, &rootfs)?;
    }
    for (dir, mode) in [
        // State file, persisted policy revisions, database cache (a host volume in deployments).
        ("var/lib/geofilter", 0o700),
        // The control socket.
        ("run/geofilter", 0o700),
        ("tmp", 0o1777),
        // Mount points: the host's bpffs, the policy document (a ConfigMap folder).
        ("sys/fs/bpf", 0o755),
        ("etc/geofilter", 0o755),
    ] {
        let path = rootfs.join(dir);
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
    }
    let tag = tag();
    cmd::run(
        podman()
            .args(["build", "--pull=never", "--file"])
            .arg(cmd::workspace_root().join("Containerfile"))
            .args(["--tag", &tag, "--label"])
            .arg(format!(
                "org.opencontainers.image.version={}",
                env!("CARGO_PKG_VERSION")
            ))
            .arg(&context),
    )?;
    let size = cmd::output(podman().args(["image", "inspect", "--format", "{{.Size}}", &tag]))?;
    let size: u64 = size
        .trim()
        .parse()
        .with_context(|| format!("podman image inspect printed {size:?}, not a size"))?;
    eprintln!(
        "xtask: built {tag} ({:.1} MiB)",
        size as f64 / (1024.0 * 1024.0)
    );
    Ok(tag)
}

/// `podman` as root (through sudo when not root): the image goes into root's storage, where the
/// privileged tests, like a node's runtime, look for it (a user's rootless storage is another).
fn podman() -> Command {
    cmd::as_root(Path::new("podman"))
}

/// Adds the musl target's standard library to the toolchain that builds the workspace
/// (rustup downloads it once).
fn ensure_target() -> anyhow::Result<()> {
    let installed = cmd::output(
        Command::new("rustup")
            .current_dir(cmd::workspace_root())
            .args(["target", "list", "--installed"]),
    )?;
    if installed.lines().any(|t| t.trim() == TARGET) {
        return Ok(());
    }
    cmd::run(
        Command::new("rustup")
            .current_dir(cmd::workspace_root())
            .args(["target", "add", TARGET]),
    )
}

/// Copies every shared library `binary` links, and its loader, to the same paths under `rootfs`
/// (`ldd` lines: `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` and
/// `/lib64/ld-linux-x86-64.so.2 (0x...)`).
fn copy_shared_libraries(binary: &Path, rootfs: &Path) -> anyhow::Result<()> {
    let listed = cmd::output(Command::new("ldd").arg(binary))?;
    for line in listed.lines() {
        let path = match line.split_once("=>") {
            Some((_, target)) => target.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        let Some(path) = path.filter(|p| p.starts_with('/')) else {
            continue; // linux-vdso.so.1: in the kernel
        };
        let target = rootfs.join(path.trim_start_matches('/'));
        if let Some(dir) = target.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        // Follows symlinks: the file the link names, under the link's name.
        fs::copy(path, &target)
            .with_context(|| format!("copying {path} to {}", target.display()))?;
    }
    Ok(())
}

/// Fails unless `binary` needs no dynamic loader (a scratch image has none): no PT_INTERP.
fn require_static(binary: &Path) -> anyhow::Result<()> {
    let headers = cmd::output(Command::new("readelf").arg("--program-headers").arg(binary))?;
    if headers.contains("INTERP") {
        bail!(
            "{} asks for a dynamic loader; the scratch image has none",
            binary.display()
        );
    }
    Ok(())
}
