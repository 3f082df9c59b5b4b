//! Every filesystem path geofilter uses, in one place.
//!
//! - `/sys/fs/bpf/geofilter/`: the bpffs root that holds everything the daemon pins (program,
//!   maps, one link per interface). `unload` removes this folder and with it the filter.
//! - `/run/geofilter/`: runtime files (the control socket).
//! - `/var/lib/geofilter/state.json`: the desired state, saved after every change.
//! - `/var/lib/geofilter/db/`: databases fetched by `geofilter db update`.
//!
//! - `/sys/fs/bpf/xdp/`: libxdp's folder (not geofilter's), shared with xdp-loader and every other
//!   libxdp user: `dispatch-IFINDEX-PROGID/prog{N}-prog|link` pins and the directory lock. Its
//!   location follows libxdp's `LIBXDP_BPFFS`.
//! - libxdp's dispatcher program object, `xdp-dispatcher.o`, where the libxdp package installs it
//!   (`LIBXDP_OBJECT_PATH` first, as libxdp does).
//!
//! `GEOFILTER_PIN_ROOT` overrides the bpffs root, so tests and several instances on one host do not
//! collide.

use std::path::PathBuf;

/// Where the kernel's BPF filesystem is normally mounted.
pub const BPFFS_MOUNT: &str = "/sys/fs/bpf";
/// In the systemd unit's `RuntimeDirectory=geofilter` (dist/geofilter.service).
pub const DEFAULT_SOCKET: &str = "/run/geofilter/geofilter.sock";
/// Where `geofilter db update` stores downloaded databases.
pub const DEFAULT_DB_DIR: &str = "/var/lib/geofilter/db";
/// The desired state, restored at start-up (see `state.rs`).
pub const STATE_FILE: &str = "/var/lib/geofilter/state.json";

/// The bpffs folder holding this instance's pinned objects.
pub fn pin_root() -> PathBuf {
    std::env::var_os("GEOFILTER_PIN_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(BPFFS_MOUNT).join("geofilter"))
}

/// Layout inside the pin root.
pub struct PinLayout {
    pub root: PathBuf,
}

impl PinLayout {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }
    pub fn program(&self) -> PathBuf {
        self.root.join("prog")
    }
    pub fn maps(&self) -> PathBuf {
        self.root.join("maps")
    }
    pub fn map(&self, name: &str) -> PathBuf {
        self.maps().join(name)
    }
    pub fn links(&self) -> PathBuf {
        self.root.join("links")
    }
    pub fn link(&self, iface: &str) -> PathBuf {
        self.links().join(iface)
    }
    /// Folders naming the interfaces where geofilter holds a libxdp dispatcher slot (the slot's
    /// pins are libxdp's), so `unload` without a daemon knows which to leave.
    pub fn dispatched(&self) -> PathBuf {
        self.root.join("dispatched")
    }
}

/// libxdp's state folder on the bpffs (lib/libxdp/libxdp.c, `get_bpffs_dir`: `$LIBXDP_BPFFS` or
/// the bpffs mount, then `xdp`).
pub fn libxdp_dir() -> PathBuf {
    std::env::var_os("LIBXDP_BPFFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(BPFFS_MOUNT))
        .join("xdp")
}

/// Where to look for libxdp's dispatcher object, in order: `$LIBXDP_OBJECT_PATH` (libxdp's own
/// override), then the folders distributions install it in (Debian's multiarch folder, Fedora's
/// `/usr/lib64`, and the upstream `make install` default).
pub fn libxdp_dispatcher_candidates() -> Vec<PathBuf> {
    const NAME: &str = "xdp-dispatcher.o";
    let mut dirs: Vec<PathBuf> = std::env::var_os("LIBXDP_OBJECT_PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    let multiarch = format!("/usr/lib/{}-linux-gnu/bpf", std::env::consts::ARCH);
    for dir in [
        multiarch.as_str(),
        "/usr/lib64/bpf",
        "/usr/lib/bpf",
        "/usr/local/lib/bpf",
    ] {
        dirs.push(PathBuf::from(dir));
    }
    dirs.into_iter().map(|d| d.join(NAME)).collect()
}
