//! What geofilter needs from the kernel, probed before the program is loaded, so a kernel that
//! cannot work gets one line naming what is missing instead of a verifier log.
//!
//! The oldest kernel known to work is the oldest of the kernel matrix (`cargo xtask test
//! --kernel all`: Debian's 5.10, 6.1 and 6.12 kernels, and the development host's 6.18). Each
//! probe is one cheap `bpf(2)` call whose failure is unambiguous:
//! - map-in-map with `BPF_F_INNER_MAP` (Linux 5.10, commit 4a8f87e60f6d): the country tables are
//!   inner arrays of any size swapped into an `ARRAY_OF_MAPS`. It also stands for the BPF links
//!   for XDP (`BPF_LINK_CREATE`, 5.9) and `BPF_LINK_UPDATE` the daemon attaches and swaps with,
//!   which cannot be probed without attaching to an interface.
//! - the LPM trie (4.11): the exception lists.
//! - XDP programs (4.8), loaded here as the two-instruction `return XDP_PASS`.
//!
//! BTF is not probed: aya reads the object's BTF in user space to learn the maps' layout and
//! loads it into the kernel only when the kernel takes it (`EbpfLoader::load`), and nothing in
//! the program needs kernel BTF (no CO-RE relocations, no kfuncs).

use std::{
    io,
    os::fd::{FromRawFd as _, OwnedFd},
};

/// The oldest kernel the matrix proved; what the refusal tells the operator to run.
pub const OLDEST_TESTED: &str = "5.10";

/// A kernel feature geofilter needs and this kernel lacks.
#[derive(Debug, thiserror::Error)]
#[error(
    "this kernel lacks {feature} (Linux {since}): {source}; geofilter needs Linux {OLDEST_TESTED} \
     or newer (tested: 5.10, 6.1, 6.12, 6.18)"
)]
pub struct Missing {
    pub feature: &'static str,
    pub since: &'static str,
    #[source]
    pub source: io::Error,
}

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_LPM_TRIE: u32 = 11;
const BPF_MAP_TYPE_ARRAY_OF_MAPS: u32 = 12;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_F_NO_PREALLOC: u32 = 1;

/// The `BPF_MAP_CREATE` part of `union bpf_attr` (include/uapi/linux/bpf.h) up to
/// `inner_map_fd`; the kernel zero-fills the rest.
#[repr(C)]
#[derive(Default)]
struct MapCreate {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
}

/// The `BPF_PROG_LOAD` part of `union bpf_attr` up to `prog_flags`. Every byte is a field: the
/// kernel reads the whole size given, and padding after `kern_version` would land in
/// `prog_flags` as garbage (5.10 refused the probe with EINVAL now and then when it was padding).
#[repr(C)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
}
const _: () = assert!(std::mem::size_of::<ProgLoad>() == 48);

fn bpf<T>(cmd: libc::c_long, attr: &T) -> io::Result<OwnedFd> {
    // SAFETY: `attr` is a live, fully initialised prefix of `union bpf_attr` of the given size;
    // the kernel only reads it.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_ref(attr),
            std::mem::size_of::<T>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(io::Error::other)?;
    // SAFETY: the kernel returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn map(attr: &MapCreate) -> io::Result<OwnedFd> {
    bpf(BPF_MAP_CREATE, attr)
}

/// Whether a failed probe means the feature is missing: the kernel refuses what it does not know
/// with EINVAL (unknown map type, flag or program type), E2BIG (an attribute past its `bpf_attr`)
/// or ENOTSUPP. Anything else (EPERM without CAP_BPF, ENOMEM) is left for the real load to report.
fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::E2BIG | libc::EOPNOTSUPP | 524)
    )
}

/// Raises `RLIMIT_MEMLOCK`, then probes every feature; the first one missing is the error.
///
/// Before 5.11 the kernel charged BPF maps to `RLIMIT_MEMLOCK` (not to the memory cgroup), and
/// the country tables take megabytes: 5.10 refuses them with EPERM under the usual 64 KiB or
/// 8 MiB limit. Raising it is harmless on newer kernels; failing to (no CAP_SYS_RESOURCE) is
/// left for the load to report.
pub fn require() -> Result<(), Missing> {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct it is given.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
    match probe() {
        Err(missing) if is_missing(&missing.source) => Err(missing),
        _ => Ok(()),
    }
}

fn probe() -> Result<(), Missing> {
    let missing = |feature, since| {
        move |source| Missing {
            feature,
            since,
            source,
        }
    };
    let inner = map(&MapCreate {
        map_type: BPF_MAP_TYPE_ARRAY,
        key_size: 4,
        value_size: 4,
        max_entries: 1,
        map_flags: geofilter_common::maps::BPF_F_INNER_MAP,
        ..Default::default()
    })
    .map_err(missing("map-in-map with BPF_F_INNER_MAP", "5.10"))?;
    let inner_fd = std::os::fd::AsRawFd::as_raw_fd(&inner);
    map(&MapCreate {
        map_type: BPF_MAP_TYPE_ARRAY_OF_MAPS,
        key_size: 4,
        value_size: 4,
        max_entries: 1,
        inner_map_fd: u32::try_from(inner_fd).unwrap_or(u32::MAX),
        ..Default::default()
    })
    .map_err(missing("map-in-map with BPF_F_INNER_MAP", "5.10"))?;
    map(&MapCreate {
        map_type: BPF_MAP_TYPE_LPM_TRIE,
        key_size: 8,
        value_size: 4,
        max_entries: 1,
        map_flags: BPF_F_NO_PREALLOC,
        ..Default::default()
    })
    .map_err(missing("LPM trie maps", "4.11"))?;
    // r0 = XDP_PASS (2); exit
    let insns: [u64; 2] = [0x0000_0002_0000_00b7, 0x0000_0000_0000_0095];
    let license = c"GPL";
    bpf(
        BPF_PROG_LOAD,
        &ProgLoad {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: 2,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: 0,
            log_size: 0,
            log_buf: 0,
            kern_version: 0,
            prog_flags: 0,
        },
    )
    .map_err(missing("XDP programs", "4.8"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_one_line_naming_the_feature_and_the_oldest_kernel() {
        let message = Missing {
            feature: "map-in-map with BPF_F_INNER_MAP",
            since: "5.10",
            source: io::Error::from_raw_os_error(libc::EINVAL),
        }
        .to_string();
        assert!(!message.contains('\n'), "{message}");
        assert!(
            message.starts_with("this kernel lacks map-in-map with BPF_F_INNER_MAP (Linux 5.10)"),
            "{message}"
        );
        assert!(message.contains("needs Linux 5.10 or newer"), "{message}");
    }
}
