//! Building Ethernet frames byte by byte, for BPF_PROG_TEST_RUN tables.

use std::net::{Ipv4Addr, Ipv6Addr};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88A8;
pub const ETH_P_LLDP: u16 = 0x88CC;

const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// An Ethernet header with `tags` VLAN tags (outermost first, each `(tpid, vid)`), then
/// `ether_type` and `payload`.
pub fn ethernet(tags: &[(u16, u16)], ether_type: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(18 + payload.len());
    f.extend_from_slice(&DST_MAC);
    f.extend_from_slice(&SRC_MAC);
    for &(tpid, vid) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    }
    f.extend_from_slice(&ether_type.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A UDP datagram (checksum 0: legal for IPv4, and nothing here verifies it).
pub fn udp(payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&40000u16.to_be_bytes());
    u.extend_from_slice(&9u16.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&0u16.to_be_bytes());
    u.extend_from_slice(payload);
    u
}

/// A UDP datagram to `dst_port`.
pub fn udp_to(dst_port: u16) -> Vec<u8> {
    let mut u = udp(b"x");
    u[2..4].copy_from_slice(&dst_port.to_be_bytes());
    u
}

/// A TCP SYN to `dst_port` (20-byte header, no options).
pub fn tcp_syn(dst_port: u16) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&40000u16.to_be_bytes());
    t.extend_from_slice(&dst_port.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    t
}

/// An ICMP echo request.
pub fn icmp_echo() -> Vec<u8> {
    vec![8, 0, 0, 0, 0, 1, 0, 1]
}

/// An IPv6 extension header (hop-by-hop, routing or destination options) of `len8` 8-byte units
/// in front of `payload`, whose type is `next`.
pub fn ipv6_ext(next: u8, len8: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![next, len8 - 1];
    h.extend(std::iter::repeat_n(0u8, len8 as usize * 8 - 2));
    // PadN over the rest keeps it a valid options header.
    if len8 as usize * 8 - 2 >= 2 {
        h[2] = 1;
        h[3] = (len8 as usize * 8 - 4) as u8;
    }
    h.extend_from_slice(payload);
    h
}

/// An IPv6 fragment header (offset in 8-byte units) in front of `payload` of type `next`.
pub fn ipv6_fragment(next: u8, offset: u16, more: bool, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![next, 0];
    h.extend_from_slice(&((offset << 3) | u16::from(more)).to_be_bytes());
    h.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPV6_HOPOPTS: u8 = 0;
pub const IPV6_DSTOPTS: u8 = 60;
pub const IPV6_FRAGMENT: u8 = 44;

/// Options for [`ipv4`].
#[derive(Clone, Copy, Default)]
pub struct Ipv4Opts {
    /// 32-bit words of IP options (IHL = 5 + this).
    pub option_words: u8,
    /// Fragment offset in 8-byte units.
    pub frag_offset: u16,
    pub more_fragments: bool,
}

pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, payload: &[u8], opts: Ipv4Opts) -> Vec<u8> {
    let ihl = 5 + opts.option_words;
    let total = ihl as usize * 4 + payload.len();
    let mut h = vec![0x40 | ihl, 0];
    h.extend_from_slice(&(total as u16).to_be_bytes());
    h.extend_from_slice(&0x1234u16.to_be_bytes());
    let flags_frag = (u16::from(opts.more_fragments) << 13) | (opts.frag_offset & 0x1fff);
    h.extend_from_slice(&flags_frag.to_be_bytes());
    h.extend_from_slice(&[64, protocol, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    // NOP options (type 1).
    h.extend(std::iter::repeat_n(1u8, opts.option_words as usize * 4));
    let sum = checksum(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[next_header, 64]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(payload);
    h
}

/// An ARP request (who-has `target` tell `sender`).
pub fn arp(sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut a = vec![0, 1, 0x08, 0, 6, 4, 0, 1];
    a.extend_from_slice(&SRC_MAC);
    a.extend_from_slice(&sender.octets());
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&target.octets());
    a
}

/// A UDP datagram from `src` to `dst`:`dst_port` carrying `payload`, in an IPv6 packet, with the
/// checksum over the pseudo-header that IPv6 requires (RFC 8200 section 8.1): receivers drop
/// zero-checksum UDP over IPv6, so frames sent to a real stack need it.
pub fn udp6_checksummed(src: Ipv6Addr, dst: Ipv6Addr, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut datagram = udp(payload);
    datagram[2..4].copy_from_slice(&dst_port.to_be_bytes());
    let mut pseudo = Vec::with_capacity(40 + datagram.len());
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&(datagram.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, IPPROTO_UDP]);
    pseudo.extend_from_slice(&datagram);
    // A computed 0 is sent as 0xffff (RFC 768); 0 would mean "no checksum".
    let sum = match checksum(&pseudo) {
        0 => 0xffff,
        sum => sum,
    };
    datagram[6..8].copy_from_slice(&sum.to_be_bytes());
    ipv6(src, dst, IPPROTO_UDP, &datagram)
}

/// A UDP datagram from `src` to `dst`:`dst_port` in an IPv4 packet (UDP checksum 0, which IPv4
/// receivers accept).
pub fn udp4_to(src: Ipv4Addr, dst: Ipv4Addr, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut datagram = udp(payload);
    datagram[2..4].copy_from_slice(&dst_port.to_be_bytes());
    ipv4(src, dst, IPPROTO_UDP, &datagram, Ipv4Opts::default())
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

pub const IPPROTO_UDP: u8 = 17;
