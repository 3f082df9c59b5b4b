//! `cargo xtask package`: the Debian package `target/debian/geofilter_VERSION_amd64.deb`.
//!
//! Built with `dpkg-deb` from a staged tree rather than with cargo-deb: every file, mode and
//! maintainer script is then spelled out here and in `dist/debian/`, nothing has to be compiled
//! first (cargo-deb would add minutes to a cold CI run), and the maintainer scripts are the
//! point of the package (never start on install, try-restart on upgrade, detach on removal), so
//! they are written out rather than generated. Man pages and completions come from the binary
//! itself (`geofilter manpages`, `geofilter completions`), so they always match its clap types.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use clap::Args;

use crate::{build, cmd};

#[derive(Args)]
pub struct Options {
    /// Debian version of the package [default: the workspace version]. A lower one (e.g.
    /// 0.0.1) gives the "older build" the upgrade test installs first.
    #[arg(long)]
    pub version: Option<String>,
}

/// Builds the release binary and the package; returns the path of the `.deb`.
pub fn package(opts: &Options) -> anyhow::Result<PathBuf> {
    let version = opts
        .version
        .clone()
        .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned());
    cmd::ensure_commands(&[
        ("dpkg-deb", "dpkg"),
        ("dpkg-shlibdeps", "dpkg-dev"),
        ("strip", "binutils"),
    ])?;
    let bin = build::build(&build::Options { release: true })?;
    let root = cmd::workspace_root();
    let dist = root.join("dist");
    let out_dir = root.join("target/debian");
    let stage = out_dir.join(format!("stage-{version}"));
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    }

    let sbin = install(&bin, &stage, "usr/sbin/geofilter", 0o755)?;
    strip(&sbin)?;
    install(
        &dist.join("geofilter.service"),
        &stage,
        "usr/lib/systemd/system/geofilter.service",
        0o644,
    )?;
    install(
        &dist.join("geofilter.toml"),
        &stage,
        "etc/geofilter/geofilter.toml",
        0o644,
    )?;
    install(
        &dist.join("debian/copyright"),
        &stage,
        "usr/share/doc/geofilter/copyright",
        0o644,
    )?;
    let doc = stage.join("usr/share/doc/geofilter");
    gzip(&root.join("README.md"), &doc.join("README.md.gz"))?;
    gzip(&root.join("NOTICE"), &doc.join("NOTICE.gz"))?;
    let changelog = out_dir.join(format!("changelog-{version}"));
    write(&changelog, &debian_changelog(&version)?, 0o644)?;
    gzip(&changelog, &doc.join("changelog.gz"))?;
    man_pages(&bin, &out_dir.join(format!("man-{version}")), &stage)?;
    completions(&bin, &stage)?;

    let debian = stage.join("DEBIAN");
    for script in ["postinst", "prerm", "postrm"] {
        install(
            &dist.join("debian").join(script),
            &stage,
            &format!("DEBIAN/{script}"),
            0o755,
        )?;
    }
    write(
        &debian.join("conffiles"),
        "/etc/geofilter/geofilter.toml\n",
        0o644,
    )?;
    let files = payload_files(&stage)?;
    let md5sums = cmd::output(Command::new("md5sum").current_dir(&stage).args(&files))?;
    write(&debian.join("md5sums"), &md5sums, 0o644)?;
    let installed_kib: u64 = files
        .iter()
        .map(|f| fs::metadata(stage.join(f)).map(|m| m.len().div_ceil(1024)))
        .sum::<Result<u64, _>>()?;
    let template = fs::read_to_string(dist.join("debian/control"))?;
    let control = template
        .replace("@VERSION@", &version)
        .replace("@INSTALLED_SIZE@", &installed_kib.to_string())
        .replace("@DEPENDS@", &shlib_depends(&sbin, &out_dir)?);
    write(&debian.join("control"), &control, 0o644)?;

    let deb = out_dir.join(format!("geofilter_{version}_amd64.deb"));
    cmd::run(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(&stage)
            .arg(&deb),
    )?;
    eprintln!("xtask: built {}", deb.display());
    Ok(deb)
}

/// Strips symbols as dh_strip does: the eBPF object is data in .rodata, untouched by it.
pub fn strip(binary: &Path) -> anyhow::Result<()> {
    cmd::run(
        Command::new("strip")
            .args([
                "--strip-unneeded",
                "--remove-section=.comment",
                "--remove-section=.note",
            ])
            .arg(binary),
    )
}

/// Copies `from` to `stage/rel` with `mode`, creating parent folders (0755).
pub fn install(from: &Path, stage: &Path, rel: &str, mode: u32) -> anyhow::Result<PathBuf> {
    let to = stage.join(rel);
    make_parent(&to)?;
    fs::copy(from, &to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    fs::set_permissions(&to, fs::Permissions::from_mode(mode))?;
    Ok(to)
}

fn write(to: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    make_parent(to)?;
    fs::write(to, text).with_context(|| format!("writing {}", to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Creates the parent folders of `path` (their modes are set to 0755 by `payload_files`).
fn make_parent(path: &Path) -> anyhow::Result<()> {
    let parent = path.parent().context("path has a parent")?;
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))
}

/// `gzip -9n` (no name or time stamp, as Debian policy 12.3 asks for documentation).
fn gzip(from: &Path, to: &Path) -> anyhow::Result<()> {
    make_parent(to)?;
    let out = fs::File::create(to).with_context(|| format!("creating {}", to.display()))?;
    cmd::run(Command::new("gzip").arg("-9nc").arg(from).stdout(out))?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o644))?;
    Ok(())
}

/// Writes the binary's own man pages (geofilter.8 and one per verb group), gzipped.
fn man_pages(bin: &Path, raw: &Path, stage: &Path) -> anyhow::Result<()> {
    if raw.exists() {
        fs::remove_dir_all(raw)?;
    }
    fs::create_dir_all(raw)?;
    cmd::run(Command::new(bin).arg("manpages").arg(raw))?;
    let man8 = stage.join("usr/share/man/man8");
    let mut count = 0;
    for entry in fs::read_dir(raw)? {
        let page = entry?.path();
        let name = page.file_name().context("man page name")?.to_string_lossy();
        if !name.ends_with(".8") {
            bail!("`geofilter manpages` wrote {name}: expected section-8 pages only");
        }
        gzip(&page, &man8.join(format!("{name}.gz")))?;
        count += 1;
    }
    if count == 0 {
        bail!("`geofilter manpages` wrote no page");
    }
    Ok(())
}

/// The shell completions, where each shell's Debian package looks for a package's own.
fn completions(bin: &Path, stage: &Path) -> anyhow::Result<()> {
    for (shell, rel) in [
        ("bash", "usr/share/bash-completion/completions/geofilter"),
        ("zsh", "usr/share/zsh/vendor-completions/_geofilter"),
        ("fish", "usr/share/fish/vendor_completions.d/geofilter.fish"),
    ] {
        let script = cmd::output(Command::new(bin).args(["completions", shell]))?;
        if script.trim().is_empty() {
            bail!("`geofilter completions {shell}` printed nothing");
        }
        write(&stage.join(rel), &script, 0o644)?;
    }
    Ok(())
}

/// Every regular file of the payload (not DEBIAN/), relative to `stage`, sorted. Sets every
/// folder to 0755 on the way, whatever the umask was (Debian policy 10.9).
fn payload_files(stage: &Path) -> anyhow::Result<Vec<PathBuf>> {
    fn walk(dir: &Path, stage: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                walk(&path, stage, files)?;
            } else {
                files.push(path.strip_prefix(stage)?.to_path_buf());
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(stage, stage, &mut files)?;
    files.retain(|f| !f.starts_with("DEBIAN"));
    files.sort();
    Ok(files)
}

/// The library dependencies of the binary as `dpkg-shlibdeps` works them out (it wants a
/// `debian/control` in its working folder, so it gets a minimal one of its own).
fn shlib_depends(sbin: &Path, out_dir: &Path) -> anyhow::Result<String> {
    let work = out_dir.join("shlibdeps");
    write(
        &work.join("debian/control"),
        "Source: geofilter\n\nPackage: geofilter\nArchitecture: any\n",
        0o644,
    )?;
    let out = cmd::output(
        Command::new("dpkg-shlibdeps")
            .current_dir(&work)
            .arg("-O")
            .arg(format!("-e{}", sbin.display())),
    )?;
    out.lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .map(str::to_owned)
        .with_context(|| format!("dpkg-shlibdeps printed no shlibs:Depends: {out}"))
}

/// A one-entry changelog (Debian policy 12.7 wants one); dated by the last commit, or by
/// SOURCE_DATE_EPOCH, so that a rebuild of the same commit gives the same package.
fn debian_changelog(version: &str) -> anyhow::Result<String> {
    let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(epoch) => epoch,
        Err(_) => cmd::output(
            Command::new("git")
                .current_dir(cmd::workspace_root())
                .args(["log", "-1", "--format=%ct"]),
        )?
        .trim()
        .to_owned(),
    };
    let date = cmd::output(Command::new("date").args(["-R", "-u", "-d", &format!("@{epoch}")]))?;
    Ok(format!(
        "geofilter ({version}) unstable; urgency=medium\n\n  * Built by `cargo xtask package` from \
         the geofilter sources;\n    their history is the project's git log.\n\n -- geofilter \
         developers <dev@geofilter.invalid>  {}\n",
        date.trim()
    ))
}

/// What the package test (`tests/tests/package.rs`) needs, as environment variables: this
/// version's package, the same build as version 0.0.1 (the "older build" it upgrades from), and
/// a Debian 12 root to install them in.
pub fn test_inputs() -> anyhow::Result<Vec<(&'static str, PathBuf)>> {
    cmd::ensure_commands(&[("lintian", "lintian"), ("mmdebstrap", "mmdebstrap")])?;
    let old = package(&Options {
        version: Some("0.0.1".to_owned()),
    })?;
    let new = package(&Options { version: None })?;
    Ok(vec![
        ("GEOFILTER_DEB_OLD", old),
        ("GEOFILTER_DEB", new),
        ("GEOFILTER_DEB_ROOT", bookworm_root()?),
    ])
}

/// Packages of the test root beyond minbase: systemd (`systemd-analyze verify`), man-db (verify
/// runs `man` for the unit's `Documentation=man:` link) and the package's own non-essential
/// dependencies, which apt would install with it (the test installs with `dpkg -i`).
const ROOT_INCLUDES: &str = "systemd,man-db,procps";

/// A Debian 12 minbase root, made once by mmdebstrap from the archive this machine's apt uses,
/// and cached as a tarball named after its package list: about a minute cold, nothing after. The
/// test unpacks a fresh copy each run.
fn bookworm_root() -> anyhow::Result<PathBuf> {
    let dir = cmd::workspace_root().join("target/package");
    let name = format!("bookworm-minbase-{}", ROOT_INCLUDES.replace(',', "-"));
    let tar = dir.join(format!("{name}.tar"));
    if tar.is_file() {
        return Ok(tar);
    }
    fs::create_dir_all(&dir)?;
    let partial = dir.join(format!("{name}.tar.partial"));
    let mut mmdebstrap = Command::new("mmdebstrap");
    mmdebstrap
        .args(["--variant=minbase", "--format=tar"])
        .arg(format!("--include={ROOT_INCLUDES}"))
        .arg("bookworm")
        .arg(&partial)
        // No standard input: mmdebstrap reads its mirror list from stdin when it is not a tty.
        .stdin(std::process::Stdio::null());
    // The host's own Debian archive when it has one (mmdebstrap takes a sources file as its
    // mirror); otherwise mmdebstrap's default.
    let sources = Path::new("/etc/apt/sources.list.d/debian.sources");
    if sources.is_file() {
        mmdebstrap.arg(sources);
    }
    cmd::run(&mut mmdebstrap)?;
    fs::rename(&partial, &tar)?;
    Ok(tar)
}
