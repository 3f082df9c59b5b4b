//! Every filesystem path geofilter uses, in one place.
//!
//! - `/sys/fs/bpf/geofilter/`: the bpffs root that holds everything the daemon pins (program,
//!   maps, one link per interface). `unload` removes this folder and with it the filter.
//! - `/run/geofilter/`: runtime files (the control socket).
//! - `/var/lib/geofilter/state.json`: the desired state, saved after every change.
//! - `/var/lib/geofilter/db/`: databases fetched by `geofilter db update`.
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
}
