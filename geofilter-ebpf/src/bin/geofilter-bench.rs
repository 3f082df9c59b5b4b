//! Programs for `cargo xtask bench` (see `geofilter_common::bench`): the parse-only floor, the
//! test-run driver that feeds a different source address to the program under test on every run,
//! and the live-frame generator. None of them is ever attached by the daemon.
#![no_std]
#![no_main]

#[path = "../parse.rs"]
#[expect(
    dead_code,
    reason = "the floor parses as the filter does but reads only the source"
)]
mod parse;
#[path = "../rt.rs"]
mod rt;

use aya_ebpf::{
    bindings::xdp_action,
    btf_maps::{Array, PerCpuArray, ProgramArray},
    helpers::generated::bpf_redirect,
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use geofilter_common::bench::{BenchConfig, IPV4_SOURCE_OFFSET, IPV6_SOURCE_OFFSET, MAX_SOURCES};
use parse::{Source, parse_source};

#[btf_map]
static GF_BENCH_TARGET: ProgramArray<1> = ProgramArray::new();

#[btf_map]
static GF_BENCH_SRC: Array<[u8; 16], { MAX_SOURCES as usize }> = Array::new();

#[btf_map]
static GF_BENCH_CFG: Array<BenchConfig, 1> = Array::new();

#[btf_map]
static GF_BENCH_NEXT: PerCpuArray<u32, 1> = PerCpuArray::new();

/// Parses like the filter. `black_box` keeps the compiler from deleting a parse whose result is
/// otherwise unused.
#[inline(always)]
fn parse_only(ctx: &XdpContext) {
    match parse_source(ctx) {
        Source::V4(addr, transport, _) => {
            core::hint::black_box((addr, transport.offset));
        }
        Source::V6(addr, transport) => {
            core::hint::black_box((addr, transport.offset));
        }
        Source::NotIp | Source::Malformed | Source::TooManyVlanTags => {}
    }
}

/// The test_run floor: parse, pass.
#[xdp]
pub fn bench_floor(ctx: XdpContext) -> u32 {
    parse_only(&ctx);
    xdp_action::XDP_PASS
}

/// The live floor: parse, drop.
#[xdp]
pub fn bench_drop(ctx: XdpContext) -> u32 {
    parse_only(&ctx);
    xdp_action::XDP_DROP
}

/// Writes the next source address into the frame; returns false when the frame or the
/// configuration does not allow it.
#[inline(always)]
fn next_source(ctx: &XdpContext, config: &BenchConfig) -> bool {
    let Some(next) = GF_BENCH_NEXT.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: a per-CPU slot, written only by this CPU.
    let index = unsafe { *next };
    let following = index + 1;
    // SAFETY: as above.
    unsafe {
        *next = if following >= config.sources {
            0
        } else {
            following
        }
    };
    let Some(source) = GF_BENCH_SRC.get(index) else {
        return false;
    };
    let start = ctx.data();
    if config.address_len == 4 {
        if start + IPV4_SOURCE_OFFSET + 4 > ctx.data_end() {
            return false;
        }
        // SAFETY: bounds-checked against data_end above.
        unsafe {
            core::ptr::copy_nonoverlapping(
                source.as_ptr(),
                (start + IPV4_SOURCE_OFFSET) as *mut u8,
                4,
            )
        };
    } else {
        if start + IPV6_SOURCE_OFFSET + 16 > ctx.data_end() {
            return false;
        }
        // SAFETY: bounds-checked against data_end above.
        unsafe {
            core::ptr::copy_nonoverlapping(
                source.as_ptr(),
                (start + IPV6_SOURCE_OFFSET) as *mut u8,
                16,
            )
        };
    }
    true
}

/// Test-run harness: a new source on every run, then a tail call into the program under test.
#[xdp]
pub fn bench_driver(ctx: XdpContext) -> u32 {
    let Some(config) = GF_BENCH_CFG.get(0) else {
        return xdp_action::XDP_ABORTED;
    };
    if !next_source(&ctx, config) {
        return xdp_action::XDP_ABORTED;
    }
    // SAFETY: a tail call never returns on success; on failure we fall through.
    unsafe { GF_BENCH_TARGET.tail_call(&ctx, 0) };
    xdp_action::XDP_ABORTED
}

/// Live-frame generator: a new source (and, for IPv4, header checksum) on every frame, then out of
/// the configured interface.
///
/// IPv6 has no header checksum, but its UDP checksum covers the source address, so after the
/// rewrite it is wrong (the frame carries 0, which RFC 8200 forbids over IPv6 anyway). Nothing
/// checks it: every receiver drops the frame before UDP does, in XDP, at netdev ingress or in raw
/// PREROUTING, and the UDP checksum is verified only later, in `udp6_rcv`
/// (net/ipv6/udp.c, `udp6_csum_init`). Verified on Linux 6.18.
#[xdp]
pub fn bench_generator(ctx: XdpContext) -> u32 {
    let Some(config) = GF_BENCH_CFG.get(0) else {
        return xdp_action::XDP_ABORTED;
    };
    if !next_source(&ctx, config) {
        return xdp_action::XDP_ABORTED;
    }
    if config.address_len == 4 && !fix_ipv4_checksum(&ctx) {
        return xdp_action::XDP_ABORTED;
    }
    // SAFETY: a plain helper call.
    unsafe { bpf_redirect(config.ifindex, 0) as u32 }
}

/// Recomputes the checksum of the 20-byte IPv4 header after the Ethernet header (RFC 1071): the
/// receiving stack discards a frame with a wrong one before netfilter sees it.
#[inline(always)]
fn fix_ipv4_checksum(ctx: &XdpContext) -> bool {
    const IP: usize = 14;
    let start = ctx.data();
    if start + IP + 20 > ctx.data_end() {
        return false;
    }
    let header = (start + IP) as *mut [u8; 20];
    // SAFETY: bounds-checked against data_end above.
    let bytes = unsafe { &mut *header };
    bytes[10] = 0;
    bytes[11] = 0;
    let mut sum = 0u32;
    for i in 0..10 {
        sum += u32::from(u16::from_be_bytes([bytes[2 * i], bytes[2 * i + 1]]));
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    let checksum = !(sum as u16);
    bytes[10..12].copy_from_slice(&checksum.to_be_bytes());
    true
}
