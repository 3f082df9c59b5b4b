//! Waiting for a policy file to change: inotify on the folder that holds it.
//!
//! The folder, not the file: the ways a file is replaced never touch the old inode. An editor
//! or a config-management tool writes a temporary file and renames it over (`IN_MOVED_TO` in
//! the folder); a Kubernetes ConfigMap volume holds `policy.toml -> ..data/policy.toml` and
//! updates by renaming a new `..data` symlink over the old one (`IN_MOVED_TO` of `..data`,
//! kubelet's AtomicWriter). Any event in the folder makes the caller re-read the file and
//! compare it with the revision in hand, so an unrelated file changing costs one read. The
//! timeout is a fallback for filesystems without inotify events (NFS, FUSE).

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::fs::MetadataExt as _,
    },
    path::{Path, PathBuf},
    time::Duration,
};

/// Events that can mean the file's content changed (inotify(7)).
const MASK: u32 = libc::IN_CLOSE_WRITE
    | libc::IN_MOVED_TO
    | libc::IN_MOVED_FROM
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MODIFY
    | libc::IN_ATTRIB;

/// After the first event, wait this long for the rest of a burst (kubelet's swap is several
/// steps) before reading: one read per update, well inside the 1 s the issue allows.
const SETTLE: Duration = Duration::from_millis(50);

pub struct FolderWatch {
    fd: OwnedFd,
    folder: PathBuf,
    /// The watched folder's identity: a folder removed and made again (a redeploy) is another
    /// inode, which the old watch never reports on.
    identity: (u64, u64),
}

impl FolderWatch {
    /// Watches the folder that holds `file`, as named (a symlinked file's own folder is where
    /// its `..data`-style swap happens).
    pub fn new(file: &Path) -> io::Result<Self> {
        let folder = match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        // SAFETY: inotify_init1 takes flags only.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a new descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let identity = identity(folder)?;
        let c = CString::new(folder.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
        // SAFETY: `c` is NUL-terminated; `fd` is an inotify descriptor.
        if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), MASK) } < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("watching {}: {e}", folder.display()),
            ));
        }
        Ok(Self {
            fd,
            folder: folder.to_path_buf(),
            identity,
        })
    }

    /// Whether the folder watched is still the one at its path.
    pub fn is_current(&self) -> bool {
        identity(&self.folder).is_ok_and(|id| id == self.identity)
    }

    /// Blocks until something in the folder changed (true) or `timeout` passed (false).
    pub fn wait(&self, timeout: Duration) -> bool {
        if !self.poll(timeout) {
            return false;
        }
        std::thread::sleep(SETTLE);
        self.drain();
        true
    }

    fn poll(&self, timeout: Duration) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
    }

    /// Reads and discards every queued event: only "something changed" matters.
    fn drain(&self) {
        let mut buf = [0u8; 4096];
        // SAFETY: reading into a buffer we own; the descriptor is non-blocking.
        while unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }
}

fn identity(folder: &Path) -> io::Result<(u64, u64)> {
    let meta = std::fs::metadata(folder)
        .map_err(|e| io::Error::new(e.kind(), format!("watching {}: {e}", folder.display())))?;
    Ok((meta.dev(), meta.ino()))
}
