//! Booting a kernel under virtme-ng with the host's filesystem, the way aya's integration tests
//! run on other kernels, and running a guest script in it.
//!
//! Facts this relies on (checked on the development host, kernel 6.18, virtme-ng 1.42):
//! - vng boots `-r <root>/boot/vmlinuz-REL` and takes the modules from `<root>/lib/modules/REL`
//!   (it runs `depmod -b` there and links them to /lib/modules/REL in the guest), so an
//!   unpacked .deb needs nothing installed. veth, 9p, overlayfs are modules in Debian's kernels.
//! - vng needs busybox for its initramfs (the modules load from it) and depmod (kmod).
//! - The guest's script channel (virtio-serial) was missing under TCG, and vng fell back to the
//!   console, which loses the script's exit status. So the guest script writes its own log and
//!   status into the shared target/ folder, and the host follows the log and reads the status.
//! - /dev/kvm exists on the development host but a KVM guest hangs at boot there: a short KVM
//!   probe boot decides, and TCG (`--disable-kvm`) is the fallback.

use std::{
    fs,
    io::{BufRead as _, BufReader, Seek as _, SeekFrom},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::kernel::{Unpacked, matrix_dir};
use crate::cmd;

/// virtme-ng from PyPI, pinned so a new release cannot change how the guest boots.
const VIRTME_NG: &str = "virtme-ng==1.42";

/// How long a KVM probe boot may take before KVM is declared unusable here.
const KVM_PROBE: Duration = Duration::from_secs(40);

/// Installs what booting needs (qemu, kmod, busybox from Debian; virtme-ng into a venv under
/// target/) and returns the venv's `bin` folder.
pub fn ensure_tools() -> anyhow::Result<PathBuf> {
    cmd::ensure_commands(&[
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("depmod", "kmod"),
        ("busybox", "busybox-static"),
        ("dpkg-deb", "dpkg"),
        ("unshare", "util-linux"),
    ])?;
    let venv = matrix_dir().join("venv");
    let bin = venv.join("bin");
    let stamp = venv.join("xtask.stamp");
    if bin.join("vng").is_file() && fs::read_to_string(&stamp).ok().as_deref() == Some(VIRTME_NG) {
        return Ok(bin);
    }
    eprintln!("xtask: installing {VIRTME_NG} into {}", venv.display());
    if cmd::run(Command::new("python3").arg("-m").arg("venv").arg(&venv)).is_err() {
        // Debian's python3 leaves ensurepip out of the base package.
        cmd::apt_install(&["python3-venv"])?;
        cmd::run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    }
    cmd::run(Command::new(bin.join("pip")).args(["install", "-q", VIRTME_NG]))?;
    fs::write(&stamp, VIRTME_NG).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(bin)
}

/// How guests are accelerated on this host.
#[derive(Clone, Copy, Debug)]
pub enum Accel {
    Kvm,
    Tcg,
}

/// Boots `kernel` once with KVM and a trivial script; KVM if that finishes in time, else TCG.
pub fn probe_accel(vng_bin: &Path, kernel: &Unpacked) -> anyhow::Result<Accel> {
    if !Path::new("/dev/kvm").exists() {
        return Ok(Accel::Tcg);
    }
    let dir = matrix_dir().join("kvm-probe");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let script = dir.join("guest.sh");
    fs::write(&script, format!("echo ok > {}\n", dir.join("ok").display()))?;
    let _ = fs::remove_file(dir.join("ok"));
    let started = Instant::now();
    let outcome = boot(vng_bin, kernel, Accel::Kvm, &script, &dir, KVM_PROBE, None)?;
    let ok = matches!(outcome, Boot::Exited) && dir.join("ok").is_file();
    eprintln!(
        "xtask: KVM probe boot {} after {:.1} s: using {}",
        if ok { "finished" } else { "did not finish" },
        started.elapsed().as_secs_f64(),
        if ok { "KVM" } else { "TCG (--disable-kvm)" },
    );
    Ok(if ok { Accel::Kvm } else { Accel::Tcg })
}

pub enum Boot {
    Exited,
    TimedOut,
}

/// Boots `kernel` with the host's filesystem (target/ writable) and runs `script` as root in it,
/// printing the guest's `log` as it grows (when given). The VM is killed after `limit`.
pub fn boot(
    vng_bin: &Path,
    kernel: &Unpacked,
    accel: Accel,
    script: &Path,
    dir: &Path,
    limit: Duration,
    log: Option<&Path>,
) -> anyhow::Result<Boot> {
    let target = cmd::workspace_root().join("target");
    let mut vng = Command::new(vng_bin.join("vng"));
    vng.arg("-r")
        .arg(&kernel.vmlinuz)
        .args(["--memory", "2G", "--cpus", "2", "--user", "root"])
        .arg(format!("--rwdir={}", target.display()))
        .arg("--exec")
        .arg(format!("sh {}", script.display()))
        // vng runs virtme-run and qemu from its own venv.
        .env("PATH", path_with(vng_bin)?)
        .current_dir(cmd::workspace_root())
        .stdin(Stdio::null())
        .stdout(console(dir)?)
        .stderr(console(dir)?)
        // Its own process group, so a timeout kills vng, virtme-run and qemu together.
        .process_group(0);
    if let Accel::Tcg = accel {
        vng.arg("--disable-kvm");
    }
    eprintln!("xtask: $ {}", cmd::display(&vng));
    let mut child = vng
        .spawn()
        .with_context(|| format!("failed to start {}", cmd::display(&vng)))?;
    let outcome = follow(&mut child, limit, log);
    if let Ok(Boot::TimedOut) | Err(_) = outcome {
        kill_group(&mut child);
    }
    outcome
}

/// Waits for the VM, printing new lines of `log` meanwhile.
fn follow(child: &mut Child, limit: Duration, log: Option<&Path>) -> anyhow::Result<Boot> {
    let started = Instant::now();
    let mut offset = 0;
    loop {
        let done = child.try_wait()?.is_some();
        if let Some(log) = log {
            offset = print_from(log, offset)?;
        }
        if done {
            return Ok(Boot::Exited);
        }
        if started.elapsed() > limit {
            return Ok(Boot::TimedOut);
        }
        thread::sleep(Duration::from_millis(500));
    }
}

/// Prints the complete lines of `path` after `offset`; returns the new offset.
fn print_from(path: &Path, offset: u64) -> anyhow::Result<u64> {
    let Ok(mut file) = fs::File::open(path) else {
        return Ok(offset);
    };
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = BufReader::new(file);
    let mut offset = offset;
    let mut line = String::new();
    while reader.read_line(&mut line)? > 0 && line.ends_with('\n') {
        print!("{line}");
        offset += line.len() as u64;
        line.clear();
    }
    Ok(offset)
}

fn kill_group(child: &mut Child) {
    let Ok(pid) = i32::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill has no memory preconditions; the group is the one spawned above.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
    let _ = child.wait();
}

/// The VM's console output goes to a file beside the guest log (kept for post-mortems).
fn console(dir: &Path) -> anyhow::Result<Stdio> {
    let path = dir.join("console.log");
    let file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    Ok(file.into())
}

fn path_with(dir: &Path) -> anyhow::Result<std::ffi::OsString> {
    let mut dirs = vec![dir.to_path_buf()];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).context("PATH holds an invalid folder")
}

/// Fails unless `dir` can be shared with a guest (vng passes paths on the kernel command line).
pub fn check_path(dir: &Path) -> anyhow::Result<()> {
    if dir.to_string_lossy().contains(char::is_whitespace) {
        bail!(
            "{} holds whitespace: virtme-ng cannot share it",
            dir.display()
        );
    }
    Ok(())
}
