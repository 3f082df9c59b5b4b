//! The two rtnetlink requests the dispatcher protocol needs: which XDP program an interface runs
//! (`RTM_GETLINK`, attribute `IFLA_XDP`), and attaching a program in place of an expected one
//! (`RTM_SETLINK` with `XDP_FLAGS_REPLACE` and `IFLA_XDP_EXPECTED_FD`, kernel 5.7+).
//!
//! libxdp attaches its dispatcher through netlink, not a BPF link, and replaces it the same way;
//! a dispatcher held by a BPF link could not be replaced by libxdp at all (`dev_xdp_attach`
//! refuses netlink changes under a link: EBUSY). So geofilter does the same. aya keeps its own
//! netlink code private, hence these ~150 lines.

use std::{io, mem::size_of, os::fd::RawFd};

// include/uapi/linux/if_link.h
const IFLA_XDP: u16 = 43;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_PROG_ID: u16 = 4;
const IFLA_XDP_EXPECTED_FD: u16 = 8;
const NLA_F_NESTED: u16 = 1 << 15;
/// `XDP_FLAGS_UPDATE_IF_NOEXIST`: fail with EBUSY if the interface has a program already.
pub const FLAG_IF_NOEXIST: u32 = 1 << 0;
pub const FLAG_SKB: u32 = 1 << 1;
pub const FLAG_DRV: u32 = 1 << 2;
/// `XDP_FLAGS_REPLACE`: fail with EEXIST unless the attached program is the expected one.
const FLAG_REPLACE: u32 = 1 << 4;
// XDP_ATTACHED_* (if_link.h)
const ATTACHED_DRV: u8 = 1;
const ATTACHED_SKB: u8 = 2;

/// The program an interface runs, and in which mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attached {
    pub prog_id: u32,
    /// [`FLAG_SKB`] or [`FLAG_DRV`]: what to pass to replace it in the same mode.
    pub mode_flag: u32,
}

#[repr(C)]
struct Header {
    nlmsg: libc::nlmsghdr,
    ifinfo: libc::ifinfomsg,
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

fn push_attr(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = (4 + payload.len()) as u16;
    buf.extend_from_slice(&len.to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(align(buf.len()), 0);
}

/// Iterates over the `(kind, payload)` attributes in `buf`.
fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & !NLA_F_NESTED;
        if len < 4 || len > buf.len() {
            return None;
        }
        let payload = &buf[4..len];
        buf = &buf[align(len).min(buf.len())..];
        Some((kind, payload))
    })
}

fn message(kind: u16, flags: u16, ifindex: u32, attrs: &[u8]) -> Vec<u8> {
    // SAFETY: both are plain C structs for which all-zero is valid.
    let mut header: Header = unsafe { std::mem::zeroed() };
    header.nlmsg.nlmsg_len = (size_of::<Header>() + attrs.len()) as u32;
    header.nlmsg.nlmsg_type = kind;
    header.nlmsg.nlmsg_flags = flags | libc::NLM_F_REQUEST as u16;
    header.nlmsg.nlmsg_seq = 1;
    header.ifinfo.ifi_family = libc::AF_UNSPEC as u8;
    header.ifinfo.ifi_index = ifindex as i32;
    // SAFETY: `Header` is repr(C) without padding; we copy its bytes.
    let bytes = unsafe {
        std::slice::from_raw_parts((&raw const header).cast::<u8>(), size_of::<Header>())
    };
    let mut out = bytes.to_vec();
    out.extend_from_slice(attrs);
    out
}

/// Sends `msg` and returns the payload of the first reply that is not an ACK; an error reply
/// becomes the `io::Error` it carries.
fn request(msg: &[u8]) -> io::Result<Vec<u8>> {
    // SAFETY: plain socket syscalls on a descriptor this function owns and closes.
    unsafe {
        let fd: RawFd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let result = (|| {
            if libc::send(fd, msg.as_ptr().cast(), msg.len(), 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut buf = vec![0u8; 32 * 1024];
            let n = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            buf.truncate(n as usize);
            Ok(buf)
        })();
        libc::close(fd);
        let buf = result?;
        let hdr = size_of::<libc::nlmsghdr>();
        if buf.len() < hdr {
            return Err(io::Error::other("short netlink reply"));
        }
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        if kind == libc::NLMSG_ERROR as u16 {
            let code = i32::from_ne_bytes([buf[hdr], buf[hdr + 1], buf[hdr + 2], buf[hdr + 3]]);
            return if code == 0 {
                Ok(Vec::new())
            } else {
                Err(io::Error::from_raw_os_error(-code))
            };
        }
        Ok(buf[hdr..].to_vec())
    }
}

/// The XDP program attached to `ifindex` in driver or generic mode, if any.
pub fn attached(ifindex: u32) -> io::Result<Option<Attached>> {
    let reply = request(&message(libc::RTM_GETLINK, 0, ifindex, &[]))?;
    let Some(link_attrs) = reply.get(size_of::<libc::ifinfomsg>()..) else {
        return Err(io::Error::other("short RTM_NEWLINK reply"));
    };
    let Some((_, xdp)) = attrs(link_attrs).find(|(k, _)| *k == IFLA_XDP) else {
        return Ok(None);
    };
    let (mut mode, mut id) = (0u8, 0u32);
    for (kind, payload) in attrs(xdp) {
        match kind {
            IFLA_XDP_ATTACHED if !payload.is_empty() => mode = payload[0],
            IFLA_XDP_PROG_ID if payload.len() >= 4 => {
                id = u32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]);
            }
            _ => {}
        }
    }
    let mode_flag = match mode {
        ATTACHED_DRV => FLAG_DRV,
        ATTACHED_SKB => FLAG_SKB,
        // Nothing attached, or offloaded/multi-mode: not something a dispatcher can share.
        _ => return Ok(None),
    };
    Ok((id != 0).then_some(Attached {
        prog_id: id,
        mode_flag,
    }))
}

/// Attaches program `fd` (-1 detaches) to `ifindex`. With `expected`, the kernel swaps it in
/// only if `expected` is what runs now, in one step (`dev_xdp_attach`: `XDP_FLAGS_REPLACE`);
/// otherwise only if nothing runs (`XDP_FLAGS_UPDATE_IF_NOEXIST`).
pub fn set(ifindex: u32, fd: RawFd, expected: Option<RawFd>, mode_flag: u32) -> io::Result<()> {
    let mut xdp = Vec::new();
    push_attr(&mut xdp, IFLA_XDP_FD, &fd.to_ne_bytes());
    let flags = match expected {
        Some(old) => {
            push_attr(&mut xdp, IFLA_XDP_EXPECTED_FD, &old.to_ne_bytes());
            mode_flag | FLAG_REPLACE
        }
        None => mode_flag | FLAG_IF_NOEXIST,
    };
    push_attr(&mut xdp, IFLA_XDP_FLAGS, &flags.to_ne_bytes());
    let mut outer = Vec::new();
    push_attr(&mut outer, IFLA_XDP | NLA_F_NESTED, &xdp);
    request(&message(
        libc::RTM_SETLINK,
        libc::NLM_F_ACK as u16,
        ifindex,
        &outer,
    ))
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip_with_padding_and_nesting() {
        let mut inner = Vec::new();
        push_attr(&mut inner, IFLA_XDP_ATTACHED, &[ATTACHED_DRV]);
        push_attr(&mut inner, IFLA_XDP_PROG_ID, &42u32.to_ne_bytes());
        let mut outer = Vec::new();
        push_attr(&mut outer, 3, b"eth0\0");
        push_attr(&mut outer, IFLA_XDP | NLA_F_NESTED, &inner);
        assert_eq!(outer.len() % 4, 0);
        let found: Vec<_> = attrs(&outer).map(|(k, _)| k).collect();
        assert_eq!(found, [3, IFLA_XDP]);
        let (_, xdp) = attrs(&outer).find(|(k, _)| *k == IFLA_XDP).unwrap();
        let parsed: Vec<_> = attrs(xdp).collect();
        assert_eq!(parsed[0], (IFLA_XDP_ATTACHED, &[ATTACHED_DRV][..]));
        assert_eq!(parsed[1], (IFLA_XDP_PROG_ID, &42u32.to_ne_bytes()[..]));
    }

    #[test]
    fn a_truncated_attribute_ends_the_walk() {
        let mut buf = Vec::new();
        push_attr(&mut buf, 1, &[1, 2, 3, 4]);
        buf[0] = 200; // claims more than there is
        assert_eq!(attrs(&buf).count(), 0);
        assert_eq!(attrs(&[1, 0]).count(), 0);
    }
}
