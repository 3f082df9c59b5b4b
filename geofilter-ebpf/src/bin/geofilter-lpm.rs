//! geofilter with kernel LPM tries as country tables instead of stride tables: the same parsing,
//! policy, exceptions and counters, and the same map names, so the daemon's code for everything
//! but the tables works on it. It is the baseline of `cargo xtask bench` and an independent
//! oracle for the lookup tests; the daemon never attaches it.
#![no_std]
#![no_main]

#[path = "../events.rs"]
mod events;
#[path = "../filter.rs"]
mod filter;
#[path = "../lpm.rs"]
mod lpm;
#[path = "../maps.rs"]
mod maps;
#[path = "../parse.rs"]
mod parse;
#[path = "../rt.rs"]
mod rt;

use aya_ebpf::{macros::xdp, programs::XdpContext};

#[xdp]
pub fn geofilter(ctx: XdpContext) -> u32 {
    filter::filter::<lpm::Lpm>(&ctx)
}

/// Never attached: `geofilter why` test-runs it (see `filter::why`).
#[xdp]
pub fn geofilter_why(ctx: XdpContext) -> u32 {
    filter::why::<lpm::Lpm>(&ctx)
}
