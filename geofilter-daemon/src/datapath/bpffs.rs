//! Finding a BPF filesystem whose pins outlive the daemon.
//!
//! A pin lives as long as the bpffs instance (superblock) it is in, and an instance lives as long
//! as some mount of it exists (each mount of bpffs is a new instance: kernel/bpf/inode.c,
//! `bpf_get_tree` -> `get_tree_nodev`). So where the daemon pins decides whether the filter
//! survives it:
//!
//! - In the outermost mount namespace it can see, a bpffs mounted at `/sys/fs/bpf` stays until
//!   reboot: mount one if none is there (a fresh machine has none).
//! - Under `ip netns exec` (iproute2 unshares the mount namespace and mounts a new sysfs on /sys)
//!   or `unshare -m`, the daemon is in a mount namespace of its own. A bpffs it mounted there would
//!   vanish, with every pin and so the XDP link, when the last process in that namespace exits:
//!   a `kill -9` would detach the filter. Such a daemon pins into the bpffs of the *outer*
//!   namespace instead: that of its nearest ancestor process in another mount namespace (the
//!   shell that ran `ip netns exec`). It opens that ancestor's `/proc/PID/root/sys/fs/bpf` once
//!   and pins below `/proc/self/fd/N/`, so the path keeps working after the ancestor exits
//!   (bpffs pins are created by an ordinary path walk, `bpf_obj_do_pin` -> `user_path_create`,
//!   which follows the magic link into the other namespace's mount). If the outer namespace has
//!   no bpffs yet, one is mounted there by a forked child that `setns`es into it (a
//!   multi-threaded process may not). Bind-mounting the outer bpffs into our namespace would read
//!   better, but the kernel refuses a bind mount whose source is in another mount namespace
//!   (`__do_loopback`: `check_mnt`).
//! - Where that cannot be done (the ancestor cannot be inspected, as from a hardened systemd unit
//!   without CAP_SYS_PTRACE) a `/sys/fs/bpf` that is a slave of a mount outside (`master:` in
//!   mountinfo: systemd's namespaces) is the host's and fine. Otherwise the daemon still runs,
//!   but says loudly that the filter ends with it, and how to fix that.
//!
//! PID 1 is not the reference: on some hosts (this project's CI among them) PID 1 is a
//! supervisor in a mount namespace of its own that root cannot inspect.
//!
//! Verified on 5.10, 6.1, 6.12 and 6.18 (the kernel-matrix tier runs the `ip netns exec` kill
//! test on each).

mod mount;
mod plan;

use std::{
    ffi::CString,
    fs, io,
    os::{
        fd::{AsRawFd as _, OwnedFd},
        unix::fs::MetadataExt as _,
    },
    path::{Path, PathBuf},
};

use self::{
    mount::{
        mount_bpffs, mount_bpffs_in_namespace_of, outer_path, outer_process,
        propagated_from_outside,
    },
    plan::{Facts, Plan, plan},
};
use crate::paths::BPFFS_MOUNT;

/// `BPF_FS_MAGIC` from include/uapi/linux/magic.h.
const BPF_FS_MAGIC: i64 = 0xcafe4a11;

#[derive(Debug, thiserror::Error)]
pub enum BpffsError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not on a BPF filesystem, and geofilter only mounts one on {BPFFS_MOUNT}")]
    NotBpffs { path: PathBuf },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BpffsError + use<> {
    let path = path.to_path_buf();
    move |source| BpffsError::Io { what, path, source }
}

pub fn is_bpffs(path: &Path) -> io::Result<bool> {
    let c = cstring(path)?;
    // SAFETY: `c` is NUL-terminated and `st` is a valid out-pointer.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_type as i64 == BPF_FS_MAGIC)
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes()).map_err(io::Error::other)
}

/// Where the pins of a configured pin root really go, and whether they outlive the daemon.
#[derive(Debug)]
pub struct PinRoot {
    /// The root as configured (`GEOFILTER_PIN_ROOT` or the default), as operators see it.
    pub configured: PathBuf,
    /// The path to pin under: the configured root, or the same place in the outer namespace's
    /// bpffs (below `/proc/self/fd/N`, valid while `self` is alive).
    pub path: PathBuf,
    pub persistence: Persistence,
    /// A bpffs had to be mounted for it (here, or in the outer namespace).
    pub mounted: bool,
    /// The outer namespace's `/sys/fs/bpf`, held open for `path`.
    _outer: Option<OwnedFd>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// The bpffs is the host's: pins stay until unpinned or reboot.
    Host,
    /// This daemon has a mount namespace of its own; it pins into the outer namespace's bpffs
    /// (that of process `pid`).
    Outer { pid: u32 },
    /// Only this mount namespace holds the bpffs: the filter ends when its last process exits.
    PrivateNamespace,
}

impl Persistence {
    /// For `status`: where the pins are, and whether they outlive the daemon.
    pub fn describe(self) -> String {
        match self {
            Persistence::Host => "host bpffs: the filter outlives the daemon".into(),
            Persistence::Outer { pid } => format!(
                "bpffs of the outer mount namespace (process {pid}'s): the filter outlives the \
                 daemon"
            ),
            Persistence::PrivateNamespace => {
                "this mount namespace only: THE FILTER ENDS WITH THE DAEMON".into()
            }
        }
    }
}

/// Resolves `root` (the configured pin root) to a path whose pins outlive this process where
/// that can be arranged, mounting a bpffs where one is needed. A root outside `/sys/fs/bpf` is
/// the caller's choice: it must already be on a bpffs.
pub fn prepare(root: &Path) -> Result<PinRoot, BpffsError> {
    let mount_point = Path::new(BPFFS_MOUNT);
    let Ok(relative) = root.strip_prefix(mount_point) else {
        ensure_on_bpffs(root)?;
        return Ok(PinRoot {
            configured: root.to_path_buf(),
            path: root.to_path_buf(),
            persistence: Persistence::Host,
            mounted: false,
            _outer: None,
        });
    };
    let pin_root = match plan(observe(mount_point)?) {
        Plan::Here { mount, persistence } => {
            let mount = mount && mount_bpffs(mount_point)?;
            PinRoot {
                configured: root.to_path_buf(),
                path: root.to_path_buf(),
                persistence,
                mounted: mount,
                _outer: None,
            }
        }
        Plan::Outer { pid, mount } => {
            let mount = mount && mount_bpffs_in_namespace_of(pid, mount_point)?;
            let outer = outer_path(pid, mount_point);
            let fd: OwnedFd = fs::File::open(&outer)
                .map_err(io_err("opening", &outer))?
                .into();
            let path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())).join(relative);
            PinRoot {
                configured: root.to_path_buf(),
                path,
                persistence: Persistence::Outer { pid },
                mounted: mount,
                _outer: Some(fd),
            }
        }
    };
    ensure_on_bpffs(&pin_root.path)?;
    Ok(pin_root)
}

/// Finds where `root`'s pins are without mounting anything (for `unload` with no daemon): here,
/// or in the outer namespace's bpffs.
pub fn locate(root: &Path) -> PathBuf {
    if root.exists() {
        return root.to_path_buf();
    }
    let Ok(relative) = root.strip_prefix(BPFFS_MOUNT) else {
        return root.to_path_buf();
    };
    match outer_process() {
        (Some(pid), _) => {
            let there = outer_path(pid, Path::new(BPFFS_MOUNT)).join(relative);
            if there.exists() {
                there
            } else {
                root.to_path_buf()
            }
        }
        _ => root.to_path_buf(),
    }
}

/// Makes sure `root` can be pinned under: a bpffs is mounted on `/sys/fs/bpf` (in this mount
/// namespace) when `root` is below it, and `root`'s parent is on a bpffs. For the library's own
/// pinned loads ([`super::Datapath::load_pinned`]); the daemon resolves its root with [`prepare`]
/// first.
pub fn ensure_on_bpffs(root: &Path) -> Result<(), BpffsError> {
    let mount_point = Path::new(BPFFS_MOUNT);
    if root.starts_with(mount_point) {
        fs::create_dir_all(mount_point).map_err(io_err("creating", mount_point))?;
        if !is_bpffs(mount_point).map_err(io_err("checking", mount_point))? {
            mount_bpffs(mount_point)?;
        }
    }
    let parent = root.parent().unwrap_or(root);
    fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
    if !is_bpffs(parent).unwrap_or(false) {
        return Err(BpffsError::NotBpffs {
            path: parent.to_path_buf(),
        });
    }
    Ok(())
}

fn observe(mount_point: &Path) -> Result<Facts, BpffsError> {
    fs::create_dir_all(mount_point).map_err(io_err("creating", mount_point))?;
    let ours_mounted = is_bpffs(mount_point).map_err(io_err("checking", mount_point))?;
    let (outer, own_namespace) = outer_process();
    let outer_mount_point = outer.map(|pid| outer_path(pid, mount_point));
    let outer_mounted = outer_mount_point
        .as_deref()
        .is_some_and(|p| is_bpffs(p).unwrap_or(false));
    let same_instance = match (
        outer_mount_point.map(fs::metadata),
        fs::metadata(mount_point),
    ) {
        (Some(Ok(theirs)), Ok(ours)) => ours_mounted && outer_mounted && theirs.dev() == ours.dev(),
        _ => false,
    };
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    Ok(Facts {
        outer,
        // An ancestor we cannot inspect (a hardened unit's PID 1) still means a namespace of
        // our own when mountinfo says our bpffs came from outside.
        own_namespace: own_namespace || propagated_from_outside(&mountinfo, mount_point),
        ours_mounted,
        outer_mounted,
        same_instance_as_outer: same_instance,
        ours_propagated: ours_mounted && propagated_from_outside(&mountinfo, mount_point),
    })
}
