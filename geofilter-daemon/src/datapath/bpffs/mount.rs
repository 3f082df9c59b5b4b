//! What the decision needs from the system and what it does to it: the mount namespaces of this
//! process's ancestors, mountinfo propagation, and mounting a bpffs here or, from a forked child
//! that `setns`es, in another mount namespace (see the parent module for why).

use std::{
    fs, io,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use super::{BpffsError, cstring, io_err};
use crate::paths::BPFFS_MOUNT;

/// `mount_point` as process `pid` sees it.
pub(super) fn outer_path(pid: u32, mount_point: &Path) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/root"))
        .join(mount_point.strip_prefix("/").unwrap_or(mount_point))
}

fn mount_namespace(pid: &str) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `PID (COMM) STATE PPID ...`; COMM may hold spaces and parentheses, so split after the last ')'.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The nearest ancestor in another mount namespace whose `/sys/fs/bpf` can be reached, and
/// whether any ancestor is in another mount namespace at all.
pub(super) fn outer_process() -> (Option<u32>, bool) {
    let Some(ours) = mount_namespace("self") else {
        return (None, false);
    };
    let mut own_namespace = false;
    let mut pid = std::os::unix::process::parent_id();
    while pid > 0 {
        match mount_namespace(&pid.to_string()) {
            Some(theirs) if theirs != ours => {
                own_namespace = true;
                if fs::metadata(outer_path(pid, Path::new(BPFFS_MOUNT))).is_ok() {
                    return (Some(pid), true);
                }
            }
            // The same namespace, or one we may not inspect (then it is not ours to pin into).
            _ => {}
        }
        pid = parent_of(pid).unwrap_or(0);
    }
    (None, own_namespace)
}

/// Whether the topmost mount on `mount_point` in `mountinfo` (proc(5): `ID PARENT MAJ:MIN ROOT
/// MOUNT_POINT OPTIONS [OPTIONAL...] - TYPE ...`) is a slave of a mount elsewhere (`master:N`).
pub(super) fn propagated_from_outside(mountinfo: &str, mount_point: &Path) -> bool {
    let Some(wanted) = mount_point.to_str() else {
        return false;
    };
    mountinfo
        .lines()
        .rev()
        .find(|line| line.split(' ').nth(4) == Some(wanted))
        .is_some_and(|line| {
            line.split(' ')
                .skip(6)
                .take_while(|field| *field != "-")
                .any(|field| field.starts_with("master:"))
        })
}

/// Mounts a bpffs on `mount_point` in this mount namespace, unless one is there by now.
///
/// Two daemons starting together on a fresh machine (`geofilter@eth0` and `geofilter@eth1`) both
/// see no bpffs; if both mounted, the second instance would stack on the first and hide the
/// first daemon's pins (a pin's path then resolves into the upper instance). So the check and
/// the mount run under `flock` on the mount-point directory, and the check is made again by path
/// (the lock is on the directory below any mount; a racer that opens the path after the mount
/// gets the bpffs root, sees it mounted and does nothing). flock(2) works on any open file,
/// directories on sysfs included (fs/locks.c, `locks_lock_file_wait`). Verified on 5.10, 6.1,
/// 6.12 and 6.18 by `tests/tests/e2e.rs::many_daemons_starting_together_share_one_bpffs` (in
/// the kernel matrix).
/// Returns whether this call mounted it.
pub(super) fn mount_bpffs(mount_point: &Path) -> Result<bool, BpffsError> {
    let err = io_err("mounting bpffs on", mount_point);
    let target = cstring(mount_point).map_err(io_err("mounting bpffs on", mount_point))?;
    // SAFETY: plain syscalls on a valid NUL-terminated path.
    match unsafe { lock_and_mount(&target) } {
        MOUNTED => Ok(true),
        ALREADY_MOUNTED => Ok(false),
        errno => Err(err(io::Error::from_raw_os_error(errno))),
    }
}

/// [`lock_and_mount`]'s outcomes besides an errno (errnos are 1..=133; a child's exit status
/// carries these in 8 bits).
const MOUNTED: i32 = 0;
const ALREADY_MOUNTED: i32 = 254;

/// The locked check-and-mount of [`mount_bpffs`], as raw syscalls only, so that a forked child
/// may run it too (async-signal-safe). Returns [`MOUNTED`], [`ALREADY_MOUNTED`] or an errno.
///
/// # Safety
/// `target` must stay valid for the call.
unsafe fn lock_and_mount(target: &std::ffi::CStr) -> i32 {
    unsafe {
        let dir = libc::open(
            target.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        );
        if dir < 0 {
            return *libc::__errno_location();
        }
        let errno = if libc::flock(dir, libc::LOCK_EX) != 0 {
            *libc::__errno_location()
        } else {
            let mut st: libc::statfs = std::mem::zeroed();
            if libc::statfs(target.as_ptr(), &mut st) != 0 {
                *libc::__errno_location()
            } else if st.f_type as i64 == super::BPF_FS_MAGIC {
                ALREADY_MOUNTED // another process mounted it while we waited
            } else if libc::mount(
                c"bpf".as_ptr(),
                target.as_ptr(),
                c"bpf".as_ptr(),
                0,
                std::ptr::null(),
            ) != 0
            {
                *libc::__errno_location()
            } else {
                MOUNTED
            }
        };
        // Closing the descriptor releases the lock.
        libc::close(dir);
        errno
    }
}

/// Mounts a bpffs on `mount_point` in process `pid`'s mount namespace, unless one is there by
/// now (see [`mount_bpffs`]). `setns(CLONE_NEWNS)` is refused to a multi-threaded process
/// (EINVAL: it shares its fs_struct), so a forked child does it and reports the errno as its
/// exit status.
pub(super) fn mount_bpffs_in_namespace_of(
    pid: u32,
    mount_point: &Path,
) -> Result<bool, BpffsError> {
    let what = "mounting bpffs in the outer mount namespace on";
    let err = io_err(what, mount_point);
    let ns_path = PathBuf::from(format!("/proc/{pid}/ns/mnt"));
    let ns = fs::File::open(&ns_path).map_err(io_err("opening", &ns_path))?;
    let target = cstring(mount_point).map_err(io_err(what, mount_point))?;
    // SAFETY: between fork and _exit the child calls only async-signal-safe functions (setns,
    // open, flock, statfs, mount, close, _exit) on memory prepared before the fork.
    let child = unsafe { libc::fork() };
    if child == 0 {
        unsafe {
            let errno = if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNS) != 0 {
                *libc::__errno_location()
            } else {
                lock_and_mount(&target)
            };
            libc::_exit(errno & 0xff);
        }
    }
    if child < 0 {
        return Err(err(io::Error::last_os_error()));
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    if unsafe { libc::waitpid(child, &mut status, 0) } != child {
        return Err(err(io::Error::last_os_error()));
    }
    match (libc::WIFEXITED(status), libc::WEXITSTATUS(status)) {
        (true, MOUNTED) => Ok(true),
        (true, ALREADY_MOUNTED) => Ok(false),
        (true, errno) => Err(err(io::Error::from_raw_os_error(errno))),
        _ => Err(err(io::Error::other("the mounting child was killed"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_propagation() {
        let info = "\
24 1 0:22 / /sys rw,nosuid shared:7 - sysfs sysfs rw
30 24 0:27 / /sys/fs/bpf rw,relatime shared:12 master:9 - bpf bpf rw
";
        assert!(propagated_from_outside(info, Path::new("/sys/fs/bpf")));
        let private = "30 24 0:27 / /sys/fs/bpf rw,relatime - bpf bpf rw\n";
        assert!(!propagated_from_outside(private, Path::new("/sys/fs/bpf")));
        assert!(!propagated_from_outside(info, Path::new("/sys")));
    }

    #[test]
    fn parent_of_this_process() {
        assert_eq!(
            parent_of(std::process::id()),
            Some(std::os::unix::process::parent_id())
        );
    }
}
