//! One owner per pin root: an exclusive `flock` on the pin root folder, held for the daemon's
//! life.
//!
//! Two daemons on one pin root would both adopt the pins and apply their own policy, and the one
//! that then fails (its socket is taken) would unpin a filter it never created. The lock is taken
//! before anything in the pin root is touched. `flock` works on a bpffs directory like on any
//! other (bpffs sets no `->flock`, so the VFS's generic locks apply: fs/locks.c), it is on the
//! inode, so daemons in different mount namespaces that reach the same bpffs (one through
//! `/proc/1/root`) still exclude each other, and the kernel drops it when the holder dies, so a
//! daemon killed with `kill -9` never leaves a stale lock behind.

use std::{
    fs::{self, File},
    io,
    os::unix::io::AsRawFd as _,
    path::{Path, PathBuf},
};

#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error(
        "another geofilter daemon owns the pin root {path} (it holds the lock on it); a second \
         one would take over and could remove its filter. Stop it first (`systemctl stop \
         geofilter`, or `geofilter unload` to remove the filter too), or give this daemon a pin \
         root and socket of its own (GEOFILTER_PIN_ROOT=..., --socket ...)"
    )]
    Held { path: PathBuf },
    #[error("locking the pin root {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The held lock; dropping it releases the pin root.
#[derive(Debug)]
pub struct PinRootLock {
    _dir: File,
}

impl PinRootLock {
    /// Creates `root` if needed and locks it, without waiting.
    pub fn acquire(root: &Path) -> Result<Self, OwnerError> {
        let io_err = |source| OwnerError::Io {
            path: root.to_path_buf(),
            source,
        };
        fs::create_dir_all(root).map_err(io_err)?;
        let dir = File::open(root).map_err(io_err)?;
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                OwnerError::Held {
                    path: root.to_path_buf(),
                }
            } else {
                io_err(e)
            });
        }
        Ok(Self { _dir: dir })
    }
}
