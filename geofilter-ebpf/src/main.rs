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

use aya_ebpf::{bindings::xdp_md, macros::xdp, programs::XdpContext};

#[xdp]
pub fn geofilter(ctx: XdpContext) -> u32 {
    filter::filter::<stride::Stride>(&ctx)
}

/// Never attached: `geofilter why` test-runs it (see `filter::why`).
#[xdp]
pub fn geofilter_why(ctx: XdpContext) -> u32 {
    filter::why::<stride::Stride>(&ctx)
}

/// The same filter as a component of libxdp's dispatcher: the kernel verifies and runs it in
/// place of one of the dispatcher's `progN` stubs (`BPF_PROG_TYPE_EXT`, freplace). aya-ebpf has
/// no `freplace` attribute, so this is what `#[xdp]` expands to with aya's section name for
/// extensions. The kernel checks that its BTF prototype matches the stub's
/// (`btf_check_type_match`: same argument count, a pointer to `struct xdp_md`, an int return).
#[unsafe(no_mangle)]
#[unsafe(link_section = "freplace")]
pub fn geofilter_ext(ctx: *mut xdp_md) -> u32 {
    filter::filter::<stride::Stride>(&XdpContext::new(ctx))
}
