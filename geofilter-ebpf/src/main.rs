//! The geofilter XDP program: classify each frame's source address by country and apply the
//! policy.
//!
//! Per packet: parse to the source address (`parse`), look the address up in the compact stride
//! country table (`stride`), consult the exception trie only if the table marks the address's
//! path, read the country's action from the policy, count, return the verdict (`filter`).
//! Nothing here logs per packet; counters are per-CPU arrays the daemon sums. A `why` probe (a
//! test run with a `WhyProbe` in the metadata) takes the same path but reports what it found
//! instead of counting.
//!
//! The same `filter` and `parse` modules also build `geofilter-lpm` (src/bin), the variant that
//! looks addresses up in kernel LPM tries: the benchmark baseline and a test oracle.
#![no_std]
#![no_main]

mod events;
mod filter;
mod maps;
mod parse;
mod rt;
mod stride;

use aya_ebpf::{macros::xdp, programs::XdpContext};

#[xdp]
pub fn geofilter(ctx: XdpContext) -> u32 {
    filter::filter::<stride::Stride>(&ctx)
}

/// Never attached: `geofilter why` test-runs it (see `filter::why`).
#[xdp]
pub fn geofilter_why(ctx: XdpContext) -> u32 {
    filter::why::<stride::Stride>(&ctx)
}
