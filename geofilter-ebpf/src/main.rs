//! The geofilter XDP program: classify each frame's source address by country and apply the
//! policy.
//!
//! Per packet: parse to the source address (`parse`), look the address up in the country table
//! (`maps::country_of`), read the country's action from the policy, count, return the verdict.
//! Nothing here logs per packet; counters are per-CPU arrays the daemon sums.
#![no_std]
#![no_main]

mod maps;
mod parse;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use geofilter_common::{ACTION_DROP, POLICY_MONITOR, PacketClass, UNKNOWN_COUNTRY, Verdict};
use parse::{Source, parse_source};

#[xdp]
pub fn geofilter(ctx: XdpContext) -> u32 {
    filter(&ctx)
}

#[inline(always)]
fn filter(ctx: &XdpContext) -> u32 {
    let frame_len = (ctx.data_end() - ctx.data()) as u64;
    let source = parse_source(ctx);
    let country = match source {
        Source::V4(addr) => {
            maps::count_class(PacketClass::Ipv4, frame_len);
            maps::country_of_v4(addr)
        }
        Source::V6(addr) => {
            maps::count_class(PacketClass::Ipv6, frame_len);
            maps::country_of_v6(addr)
        }
        Source::NotIp => {
            maps::count_class(PacketClass::NonIp, frame_len);
            return xdp_action::XDP_PASS;
        }
        Source::Malformed => {
            maps::count_class(PacketClass::Malformed, frame_len);
            return xdp_action::XDP_PASS;
        }
    };
    let verdict = decide(country);
    maps::count_country(country, verdict, frame_len);
    match verdict {
        Verdict::Drop => xdp_action::XDP_DROP,
        Verdict::Pass | Verdict::WouldDrop => xdp_action::XDP_PASS,
    }
}

/// The policy's verdict for a country. Without a policy installed (never the case once the daemon
/// has attached the program) everything passes: failing open here cannot lock an operator out.
#[inline(always)]
fn decide(country: u16) -> Verdict {
    let Some(policy) = maps::policy() else {
        return Verdict::Pass;
    };
    let action = match policy.actions.get(country as usize) {
        Some(action) => *action,
        None => policy.actions[UNKNOWN_COUNTRY as usize],
    };
    if action != ACTION_DROP {
        Verdict::Pass
    } else if policy.flags & POLICY_MONITOR != 0 {
        Verdict::WouldDrop
    } else {
        Verdict::Drop
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

// GPL-compatible so the verifier allows every helper we might need; the code is MIT/Apache.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
