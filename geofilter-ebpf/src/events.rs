//! Sampled packet events into the ring buffer (see `geofilter_common::events` for the record and
//! the rate limit). The first thing checked is whether anybody listens: without a listener the
//! event path is one array read (the verifier inlines lookups into a plain `ARRAY`,
//! kernel/bpf/arraymap.c `array_map_gen_lookup`) and a compare.

use aya_ebpf::{
    btf_maps::{Array, PerCpuArray, RingBuf},
    helpers::bpf_ktime_get_ns,
    macros::btf_map,
    programs::XdpContext,
};
use geofilter_common::{
    CountryId, Verdict,
    events::{EVENT_PORT, EVENTS_PASSED, Event, EventConfig},
    maps::EVENTS_BYTES,
};

use crate::parse::{Port, Source, Transport, destination_port};

#[btf_map]
static GF_EVENTS: RingBuf<Event, { EVENTS_BYTES as usize }> = RingBuf::new();

#[btf_map]
static GF_EV_CONFIG: Array<EventConfig, 1> = Array::new();

/// Each CPU's token bucket: the GCRA time its budget has run to.
#[btf_map]
static GF_EV_BUCKET: PerCpuArray<u64, 1> = PerCpuArray::new();

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// Emits an event for this packet if somebody listens, the verdict is one they asked for, and
/// this CPU's bucket allows it. A full ring buffer loses the event and keeps the budget.
#[inline(always)]
pub fn emit(
    ctx: &XdpContext,
    source: &Source,
    transport: Transport,
    country: CountryId,
    verdict: Verdict,
) {
    let Some(config) = GF_EV_CONFIG.get(0) else {
        return;
    };
    if config.listeners == 0 {
        return;
    }
    if verdict == Verdict::Pass && config.flags & EVENTS_PASSED == 0 {
        return;
    }
    let Some(bucket) = GF_EV_BUCKET.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: a per-CPU slot: only this CPU touches it, and XDP runs with migration disabled.
    let budget = unsafe { *bucket }.max(now);
    if budget - now > config.burst_ns {
        return;
    }
    let (family, addr) = match source {
        Source::V4(addr, ..) => {
            let mut wide = [0; 16];
            wide[..4].copy_from_slice(addr);
            (4, wide)
        }
        Source::V6(addr, _) => (6, *addr),
        _ => return,
    };
    let (protocol, port, flags) = match destination_port(ctx, transport) {
        Port::Tcp(port) => (IPPROTO_TCP, port, EVENT_PORT),
        Port::Udp(port) => (IPPROTO_UDP, port, EVENT_PORT),
        Port::Portless | Port::Unknown => (transport.protocol, 0, 0),
    };
    let Some(mut entry) = GF_EVENTS.reserve(0) else {
        return;
    };
    entry.write(Event {
        time_ns: now,
        addr,
        country,
        port,
        family,
        protocol,
        verdict: verdict as u8,
        flags,
    });
    entry.submit(0);
    // SAFETY: as above.
    unsafe { *bucket = budget + config.interval_ns };
}
