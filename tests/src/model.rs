//! A userspace reference model of the datapath: what the XDP program must decide for a frame,
//! restated from the documented rules (README "Operating it", parse.rs comments), written
//! independently of the kernel code so the two can be compared frame by frame.

use std::net::{IpAddr, Ipv4Addr};

use geofilter_common::{PacketClass, UNKNOWN_COUNTRY, Verdict};
use geofilter_daemon::{
    geoip::CompiledDb,
    policy::DesiredPolicy,
    rules::{ExceptionAction, PortRange, Protocol},
};

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

/// The model's answer for one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expected {
    pub action: u32,
    pub class: PacketClass,
    /// The per-country counter that moves (none for frames that never reach a lookup).
    pub country: Option<(u16, Verdict)>,
}

enum Port {
    Tcp(u16),
    Udp(u16),
    Portless,
    Unknown,
}

fn be16(f: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*f.get(at)?, *f.get(at + 1)?]))
}

/// Source address, transport protocol and offset, and "later IPv4 fragment", or the class of a
/// frame without a source.
fn parse(f: &[u8]) -> Result<(IpAddr, u8, usize, bool), PacketClass> {
    let mut ether_type = be16(f, 12).ok_or(PacketClass::Malformed)?;
    let mut at = 14;
    // Up to eight VLAN tags, 802.1Q or 802.1ad, in any order, any VID; a ninth is refused.
    let vlan = |t: u16| t == 0x8100 || t == 0x88a8;
    for _ in 0..8 {
        if !vlan(ether_type) {
            break;
        }
        ether_type = be16(f, at + 2).ok_or(PacketClass::Malformed)?;
        at += 4;
    }
    if vlan(ether_type) {
        return Err(PacketClass::TooManyVlanTags);
    }
    match ether_type {
        0x0800 => {
            let first = *f.get(at).ok_or(PacketClass::Malformed)?;
            let ihl = usize::from(first & 0x0f) * 4;
            if first >> 4 != 4 || ihl < 20 || f.len() < at + 20 {
                return Err(PacketClass::Malformed);
            }
            let src: [u8; 4] = f[at + 12..at + 16].try_into().unwrap();
            let later = be16(f, at + 6).unwrap() & 0x1fff != 0;
            Ok((IpAddr::from(src), f[at + 9], at + ihl, later))
        }
        0x86dd => {
            let first = *f.get(at).ok_or(PacketClass::Malformed)?;
            if first >> 4 != 6 || f.len() < at + 40 {
                return Err(PacketClass::Malformed);
            }
            let src: [u8; 16] = f[at + 8..at + 24].try_into().unwrap();
            Ok((IpAddr::V6(src.into()), f[at + 6], at + 40, false))
        }
        _ => Err(PacketClass::NonIp),
    }
}

/// The address a source is filtered as: IPv6 sources that embed an IPv4 address (IPv4-mapped
/// `::ffff:0:0/96`, IPv4-compatible `::/96` but not `::` or `::1`, NAT64 `64:ff9b::/96`, 6to4
/// `2002::/16` with the IPv4 address in bits 16-47, Teredo `2001::/32` with the client's address
/// inverted in the last 32 bits) are filtered as that IPv4 address.
fn filtered_as(src: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = src else {
        return src;
    };
    let s = v6.segments();
    let last = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let v4 = match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => last,
        [0, 0, 0, 0, 0, 0, _, _] if u32::from(last) > 1 => last,
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => last,
        [0x2002, hi, lo, ..] => Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)),
        [0x2001, 0, ..] => Ipv4Addr::from(!u32::from(last)),
        _ => return src,
    };
    IpAddr::V4(v4)
}

/// The destination port: IPv6 extension headers are followed, at most eight, and never past
/// offset 512 from the frame start.
fn port(f: &[u8], mut protocol: u8, mut at: usize, later_fragment: bool) -> Port {
    if later_fragment {
        return Port::Unknown;
    }
    for _ in 0..8 {
        if at > 512 {
            return Port::Unknown;
        }
        match protocol {
            6 => return be16(f, at + 2).map_or(Port::Unknown, Port::Tcp),
            17 => return be16(f, at + 2).map_or(Port::Unknown, Port::Udp),
            132 | 136 => return Port::Unknown,
            0 | 43 | 60 => {
                let (Some(&next), Some(&len)) = (f.get(at), f.get(at + 1)) else {
                    return Port::Unknown;
                };
                protocol = next;
                at += (usize::from(len) + 1) * 8;
            }
            44 => {
                let (Some(&next), Some(off)) = (f.get(at), be16(f, at + 2)) else {
                    return Port::Unknown;
                };
                if off >> 3 != 0 {
                    return Port::Unknown;
                }
                protocol = next;
                at += 8;
            }
            51 => {
                let (Some(&next), Some(&len)) = (f.get(at), f.get(at + 1)) else {
                    return Port::Unknown;
                };
                protocol = next;
                at += (usize::from(len) + 2) * 4;
            }
            _ => return Port::Portless,
        }
    }
    Port::Unknown
}

fn listed(ranges: &std::collections::BTreeSet<PortRange>, protocol: Protocol, port: u16) -> bool {
    ranges
        .iter()
        .any(|r| r.protocol == protocol && (r.first..=r.last).contains(&port))
}

/// Whether the port scope puts this packet under geo-filtering.
fn in_scope(policy: &DesiredPolicy, port: Port) -> bool {
    let scope = &policy.ports;
    if scope.is_everything() {
        return true;
    }
    let within = |protocol, p| {
        (scope.only.is_empty() || listed(&scope.only, protocol, p))
            && !listed(&scope.exempt, protocol, p)
    };
    match port {
        Port::Tcp(p) => within(Protocol::Tcp, p),
        Port::Udp(p) => within(Protocol::Udp, p),
        Port::Portless => scope.only.is_empty(),
        Port::Unknown => true,
    }
}

/// What the program must do with `frame` under `policy`, with countries from `db`.
pub fn expect(frame: &[u8], db: &CompiledDb, policy: &DesiredPolicy) -> Expected {
    let (src, protocol, at, later) = match parse(frame) {
        Ok(parsed) => parsed,
        Err(class) => {
            // Frames too deep in VLAN tags to classify are dropped, except in monitor mode; all
            // other frames without a source pass.
            let action = if class == PacketClass::TooManyVlanTags && !policy.monitor {
                XDP_DROP
            } else {
                XDP_PASS
            };
            return Expected {
                action,
                class,
                country: None,
            };
        }
    };
    // Counted as the frame's family, filtered as the address it stands for.
    let class = if src.is_ipv4() {
        PacketClass::Ipv4
    } else {
        PacketClass::Ipv6
    };
    let src = filtered_as(src);
    let country = db.lookup(src).map_or(UNKNOWN_COUNTRY, |p| p.info.country);
    let drop = if policy.monitor {
        Verdict::WouldDrop
    } else {
        Verdict::Drop
    };
    let verdict = match policy.exception_for(src) {
        Some((_, ExceptionAction::Drop)) => drop,
        Some((_, ExceptionAction::Pass)) => Verdict::Pass,
        None if !in_scope(policy, port(frame, protocol, at, later)) => Verdict::Pass,
        None if policy.drops(country) => drop,
        None => Verdict::Pass,
    };
    let action = if verdict == Verdict::Drop {
        XDP_DROP
    } else {
        XDP_PASS
    };
    Expected {
        action,
        class,
        country: Some((country, verdict)),
    }
}
