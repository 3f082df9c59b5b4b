//! Making sure a BPF filesystem is mounted where we pin.
//!
//! `/sys/fs/bpf` is often not mounted: not at boot on minimal systems, and never inside
//! `ip netns exec`, which gives the command a fresh mount namespace with a new sysfs. Pinning
//! needs a bpffs (`BPF_OBJ_PIN` fails with EPERM on other filesystems), so mount one.

use std::{ffi::CString, io, path::Path};

/// `BPF_FS_MAGIC` from include/uapi/linux/magic.h.
const BPF_FS_MAGIC: i64 = 0xcafe4a11;

pub fn is_bpffs(path: &Path) -> io::Result<bool> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
    // SAFETY: `c` is NUL-terminated and `st` is a valid out-pointer.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_type as i64 == BPF_FS_MAGIC)
}

/// Mounts a bpffs on `mount_point` unless one is already there.
pub fn ensure_mounted(mount_point: &Path) -> io::Result<bool> {
    std::fs::create_dir_all(mount_point)?;
    if is_bpffs(mount_point)? {
        return Ok(false);
    }
    let target =
        CString::new(mount_point.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
    let fstype = c"bpf";
    // SAFETY: all pointers are valid NUL-terminated strings; data may be NULL.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(true)
}
