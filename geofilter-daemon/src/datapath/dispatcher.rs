//! Sharing an interface through libxdp's multi-program dispatcher, speaking libxdp's protocol
//! (xdp-tools `lib/libxdp/protocol.org`, dispatcher version 2, libxdp 1.2-1.6) so geofilter and
//! programs loaded by `xdp-loader`/`xdp-filter` coexist in either load order.
//!
//! The dispatcher is libxdp's own program object (`xdp-dispatcher.o`, from the libxdp package):
//! an XDP program that calls stubs `prog0..prog9` in turn, each replaced by a component program
//! (`BPF_PROG_TYPE_EXT`), and continues after a component only on the actions in its
//! `chain_call_actions` bitmap. Its `.rodata` config (magic, version, slot count, per-slot chain
//! actions, priorities, flags) is frozen at load, so every change builds a new dispatcher with
//! the new set of components (the existing ones re-attached to it: freplace multi-attach, kernel
//! 5.10+), pins it, and swaps it onto the interface in one netlink `XDP_FLAGS_REPLACE`: packets
//! see the old set or the new, never none. All of it under libxdp's lock, an `flock` on the
//! `xdp` bpffs folder.
//!
//! Verified with Debian 12's xdp-tools 1.3.1 on Debian's 5.10, 6.1 and 6.12 kernels (the kernel
//! matrix's `dispatcher` tier). The 6.18 development host refuses every freplace load (EPERM,
//! libxdp's own compatibility check included), so there only the refusal paths run.

mod build;

use std::{
    fs::{self, File},
    os::unix::io::AsRawFd as _,
    path::{Path, PathBuf},
};

use aya::{
    maps::{Array, MapData},
    programs::{ProgramError, ProgramInfo, loaded_programs},
};
#[cfg(feature = "test-helpers")]
pub use build::standalone;
pub use build::{join, leave};
use geofilter_common::maps as names;

use super::netlink;
use crate::paths;

/// Slots in libxdp's dispatcher (`MAX_DISPATCHER_ACTIONS`).
pub const SLOTS: usize = 10;
/// `XDP_DISPATCHER_MAGIC`, the first byte of the config.
const MAGIC: u8 = 236;
/// `XDP_DISPATCHER_VERSION`: the layout of [`Config`] this module reads and writes.
const VERSION: u8 = 2;
/// `XDP_DISPATCHER_RETVAL`: what an empty stub returns; always a chain action, so a slot whose
/// program went away passes packets on.
const RETVAL: u32 = 31;
/// The dispatcher's program name (libxdp checks it: `check_dispatcher_version`).
const DISPATCHER_NAME: &str = "xdp_dispatcher";
/// libxdp's run priority for programs that state none; lower runs first.
pub const LIBXDP_DEFAULT_PRIORITY: u32 = 50;
/// geofilter's default: before xdp-filter and XDP-Firewall (both 10) and libxdp's default (50).
/// A geo-filter is a cheap coarse drop; every later program is spared the packets it drops.
pub const DEFAULT_PRIORITY: u32 = 5;

/// `struct xdp_dispatcher_config` (lib/libxdp: `xdp/prog_dispatcher.h`, version 2).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Config {
    magic: u8,
    dispatcher_version: u8,
    num_progs_enabled: u8,
    is_xdp_frags: u8,
    chain_call_actions: [u32; SLOTS],
    run_prios: [u32; SLOTS],
    program_flags: [u32; SLOTS],
}
const _: () = assert!(size_of::<Config>() == 124);
// SAFETY: repr(C), only integers, no padding (4 bytes then 32-bit arrays).
unsafe impl aya::Pod for Config {}

#[derive(Debug, thiserror::Error)]
pub enum DispatcherError {
    #[error(
        "libxdp's dispatcher object (xdp-dispatcher.o) was not found in any of {tried}; install \
         libxdp (Debian: `apt-get install libxdp1`) or set LIBXDP_OBJECT_PATH"
    )]
    NoObject { tried: String },
    #[error("interface {iface}: {what}: {source}")]
    Io {
        iface: String,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("interface {iface}: {what}: {source}")]
    Program {
        iface: String,
        what: String,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("interface {iface}: loading libxdp's dispatcher {path}: {source}")]
    Load {
        iface: String,
        path: PathBuf,
        #[source]
        source: Box<aya::EbpfError>,
    },
    #[error(
        "interface {iface} runs XDP program {name:?} (id {id}), which is not a libxdp dispatcher; \
         geofilter will not displace it. Load it through xdp-loader (which shares the interface) \
         or remove it first"
    )]
    NotDispatcher {
        iface: String,
        name: String,
        id: u32,
    },
    #[error(
        "interface {iface}: its libxdp dispatcher {detail}; geofilter leaves it alone (a newer \
         libxdp may understand it)"
    )]
    Unsupported { iface: String, detail: String },
    #[error("interface {iface}: the dispatcher has all {SLOTS} slots taken")]
    Full { iface: String },
}

/// A program in a dispatcher slot.
#[derive(Debug, Clone)]
pub struct Component {
    pub slot: usize,
    /// The kernel's (15-byte) name of the component program.
    pub name: String,
    pub prog_id: u32,
    pub priority: u32,
    /// Bitmap of XDP actions after which the dispatcher runs the next slot.
    chain_call_actions: u32,
    program_flags: u32,
    /// The slot's program pin, `.../dispatch-IFINDEX-ID/prog{N}-prog`.
    pin: PathBuf,
}

impl Component {
    /// Whether geofilter put this program there (its name fits the kernel's 15 bytes whole).
    pub fn is_geofilter(&self) -> bool {
        self.name == names::EXT_PROGRAM
    }
}

/// A libxdp dispatcher attached to an interface, as read from the kernel and the pins.
#[derive(Debug)]
pub struct Current {
    pub attached: netlink::Attached,
    pub dir: PathBuf,
    pub components: Vec<Component>,
}

/// What runs on an interface.
#[derive(Debug)]
pub enum OnInterface {
    Nothing,
    Dispatcher(Current),
    /// A single program attached directly (geofilter in exclusive mode, `ip link`, ...).
    Other {
        name: String,
        id: u32,
    },
}

pub(crate) fn ifindex(iface: &str) -> Result<u32, DispatcherError> {
    let name = std::ffi::CString::new(iface).map_err(|_| io_err(iface, "name")(bad_input()))?;
    // SAFETY: a NUL-terminated name; the call only reads it.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io_err(iface, "looking the interface up")(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(index)
}

fn bad_input() -> std::io::Error {
    std::io::Error::from(std::io::ErrorKind::InvalidInput)
}

fn io_err(iface: &str, what: &'static str) -> impl FnOnce(std::io::Error) -> DispatcherError {
    let iface = iface.to_owned();
    move |source| DispatcherError::Io {
        iface,
        what,
        source,
    }
}

fn prog_err(iface: &str, what: impl Into<String>) -> impl FnOnce(ProgramError) -> DispatcherError {
    let (iface, what) = (iface.to_owned(), what.into());
    move |source| DispatcherError::Program {
        iface,
        what,
        source: Box::new(source),
    }
}

fn program_info(iface: &str, id: u32) -> Result<ProgramInfo, DispatcherError> {
    loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == id)
        .ok_or_else(|| {
            io_err(iface, "reading the attached program")(std::io::Error::from(
                std::io::ErrorKind::NotFound,
            ))
        })
}

/// libxdp's folder for one dispatcher's pins.
fn pin_dir(ifindex: u32, prog_id: u32) -> PathBuf {
    paths::libxdp_dir().join(format!("dispatch-{ifindex}-{prog_id}"))
}

/// Reads what runs on `iface`. Call under [`XdpLock`] when the answer is acted upon.
pub fn inspect(iface: &str) -> Result<OnInterface, DispatcherError> {
    let index = ifindex(iface)?;
    let Some(attached) =
        netlink::attached(index).map_err(io_err(iface, "reading its XDP state"))?
    else {
        return Ok(OnInterface::Nothing);
    };
    let info = program_info(iface, attached.prog_id)?;
    let name = info.name_as_str().unwrap_or_default().to_owned();
    let maps = info.map_ids().ok().flatten().unwrap_or_default();
    if name != DISPATCHER_NAME || maps.len() != 1 {
        return Ok(OnInterface::Other {
            name,
            id: attached.prog_id,
        });
    }
    let unsupported = |detail: String| DispatcherError::Unsupported {
        iface: iface.to_owned(),
        detail,
    };
    let map = MapData::from_id(maps[0]).map_err(|e| unsupported(format!("config map: {e}")))?;
    let config: Array<MapData, Config> = Array::try_from(aya::maps::Map::Array(map))
        .map_err(|e| unsupported(format!("has a config of another size: {e}")))?;
    let config = config
        .get(&0, 0)
        .map_err(|e| unsupported(format!("config unreadable: {e}")))?;
    if config.magic != MAGIC || config.dispatcher_version != VERSION {
        return Err(unsupported(format!(
            "has version {} (magic {}), geofilter speaks version {VERSION}",
            config.dispatcher_version, config.magic
        )));
    }
    let dir = pin_dir(index, attached.prog_id);
    let mut components = Vec::new();
    for slot in 0..(config.num_progs_enabled as usize).min(SLOTS) {
        let pin = dir.join(format!("prog{slot}-prog"));
        let info = ProgramInfo::from_pin(&pin)
            .map_err(prog_err(iface, format!("reading {}", pin.display())))?;
        components.push(Component {
            slot,
            name: info.name_as_str().unwrap_or_default().to_owned(),
            prog_id: info.id(),
            priority: config.run_prios[slot],
            chain_call_actions: config.chain_call_actions[slot],
            program_flags: config.program_flags[slot],
            pin,
        });
    }
    Ok(OnInterface::Dispatcher(Current {
        attached,
        dir,
        components,
    }))
}

/// libxdp's lock: an exclusive `flock` on its bpffs folder (`xdp_lock_acquire`), so no two
/// libxdp users rebuild one interface's dispatcher at once. Released on drop (the kernel also
/// drops it if the process dies).
pub struct XdpLock(#[expect(dead_code, reason = "held for its lock")] File);

impl XdpLock {
    pub fn acquire(iface: &str) -> Result<Self, DispatcherError> {
        let dir = paths::libxdp_dir();
        super::bpffs::ensure_on_bpffs(&dir).map_err(|e| {
            io_err(iface, "preparing libxdp's bpffs folder")(std::io::Error::other(e))
        })?;
        fs::create_dir_all(&dir).map_err(io_err(iface, "creating libxdp's bpffs folder"))?;
        let file = File::open(&dir).map_err(io_err(iface, "opening libxdp's bpffs folder"))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io_err(iface, "locking libxdp's bpffs folder")(
                std::io::Error::last_os_error(),
            ));
        }
        Ok(Self(file))
    }
}

/// Removes one dispatcher's pin folder (libxdp's `xdp_multiprog__unpin`). The links go with
/// their last reference; the programs stay wherever else they are pinned.
fn unpin_dir(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let _ = fs::remove_file(entry.path());
        }
    }
    let _ = fs::remove_dir(dir);
}
