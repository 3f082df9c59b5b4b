//! Frame parsing, up to the source address. Every read goes through [`ptr_at`], which is the
//! bounds check the verifier demands (`data + offset + size <= data_end`).

use aya_ebpf::programs::XdpContext;

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
const VLAN_HLEN: usize = 4;
/// 802.1ad outer tag plus 802.1Q inner tag. A frame with more tags is not IP as far as we are
/// concerned; the kernel has no stacked-VLAN device to deliver it to either.
const MAX_VLAN_TAGS: usize = 2;
const IPV4_MIN_HLEN: usize = 20;
const IPV4_SADDR_OFFSET: usize = 12;
const IPV6_HLEN: usize = 40;
const IPV6_SADDR_OFFSET: usize = 8;

/// What the parser found: the source address in network byte order, or why there is none.
pub enum Source {
    V4([u8; 4]),
    V6([u8; 16]),
    NotIp,
    Malformed,
}

#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

#[inline(always)]
fn read<T: Copy>(ctx: &XdpContext, offset: usize) -> Option<T> {
    // SAFETY: `ptr_at` checked that `size_of::<T>()` bytes at `offset` lie inside the frame;
    // packet data has no alignment guarantee, hence the unaligned read.
    ptr_at::<T>(ctx, offset).map(|p| unsafe { p.read_unaligned() })
}

#[inline(always)]
fn read_be16(ctx: &XdpContext, offset: usize) -> Option<u16> {
    read::<[u8; 2]>(ctx, offset).map(u16::from_be_bytes)
}

#[inline(always)]
pub fn parse_source(ctx: &XdpContext) -> Source {
    let Some(mut ether_type) = read_be16(ctx, ETH_HLEN - 2) else {
        return Source::Malformed;
    };
    let mut offset = ETH_HLEN;
    for _ in 0..MAX_VLAN_TAGS {
        if ether_type != ETH_P_8021Q && ether_type != ETH_P_8021AD {
            break;
        }
        // The tag is TCI (2 bytes) then the encapsulated EtherType.
        let Some(inner) = read_be16(ctx, offset + 2) else {
            return Source::Malformed;
        };
        ether_type = inner;
        offset += VLAN_HLEN;
    }
    match ether_type {
        ETH_P_IP => {
            let Some(first) = read::<u8>(ctx, offset) else {
                return Source::Malformed;
            };
            // Version 4 and a header length of at least five words (RFC 791). Options do not
            // move the source address, so an IHL above 5 needs nothing more here.
            if first >> 4 != 4 || ((first & 0x0f) as usize) * 4 < IPV4_MIN_HLEN {
                return Source::Malformed;
            }
            if ptr_at::<[u8; IPV4_MIN_HLEN]>(ctx, offset).is_none() {
                return Source::Malformed;
            }
            match read::<[u8; 4]>(ctx, offset + IPV4_SADDR_OFFSET) {
                Some(addr) => Source::V4(addr),
                None => Source::Malformed,
            }
        }
        ETH_P_IPV6 => {
            let Some(first) = read::<u8>(ctx, offset) else {
                return Source::Malformed;
            };
            if first >> 4 != 6 || ptr_at::<[u8; IPV6_HLEN]>(ctx, offset).is_none() {
                return Source::Malformed;
            }
            match read::<[u8; 16]>(ctx, offset + IPV6_SADDR_OFFSET) {
                Some(addr) => Source::V6(addr),
                None => Source::Malformed,
            }
        }
        _ => Source::NotIp,
    }
}
