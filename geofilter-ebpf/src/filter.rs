//! The per-packet logic, shared by the program and its LPM-trie variant: parse to the source
//! address (`parse`), look the address up in the country tables (a [`CountryTables`]), read the
//! country's action from the policy, count, return the verdict. Nothing here logs per packet;
//! counters are per-CPU arrays the daemon sums; sampled events (`events`) go out only while
//! somebody listens. A `why` probe (a test run with a [`WhyProbe`] in
//! the metadata) takes the same path but reports what it found instead of counting.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_xdp_adjust_head, bpf_xdp_adjust_meta},
    programs::XdpContext,
};
use geofilter_common::{
    ACTION_DROP, ASN_DROP, ASN_PASS, COUNTRY_SLOTS, Decider, EXCEPTION_DROP, LISTED_ASNS,
    POLICY_ASNS, POLICY_EXCEPTIONS_V4, POLICY_EXCEPTIONS_V6, POLICY_LISTS, POLICY_MONITOR,
    POLICY_PORT_SCOPE, POLICY_PORTLESS_IN_SCOPE, PacketClass, Policy, UNKNOWN_COUNTRY, Verdict,
    WHY_MAGIC, WhyProbe,
    table::{Leaf, Net},
};

use crate::{
    events, maps,
    parse::{Port, Source, Transport, destination_port, parse_source},
};

/// What a country table says about one address.
pub struct Found {
    pub leaf: Leaf,
    /// The leaf's net (its ASN's listed index and its lists): read only when asked for (a policy
    /// with ASNs or lists, a `why` probe); otherwise no ASN and no list.
    pub net: Net,
    /// Whether an exception may cover the address, so the exception trie must be consulted (when
    /// the policy says the family has exceptions at all). `false` only when the table can prove
    /// that no exception covers the address.
    pub exception_possible: bool,
}

/// No country, no net: what a frame without a source address is treated as.
const NOT_FOUND: Found = Found {
    leaf: Leaf::UNKNOWN,
    net: Net {
        listed: 0,
        lists: 0,
    },
    exception_possible: false,
};

/// Where a program variant looks addresses up.
pub trait CountryTables {
    fn v4(addr: [u8; 4], want_net: bool) -> Found;
    fn v6(addr: [u8; 16], want_net: bool) -> Found;
}

#[inline(always)]
pub fn filter<T: CountryTables>(ctx: &XdpContext) -> u32 {
    let frame_len = (ctx.data_end() - ctx.data()) as u64;
    let probe = why_probe(ctx);
    // Without a policy (never the case once the daemon has attached the program) everything
    // passes: failing open here cannot lock an operator out.
    let Some(policy) = maps::policy() else {
        return xdp_action::XDP_PASS;
    };
    let source = parse_source(ctx);
    // Frames with no source to look up end here, before any lookup.
    let (class, transport) = match &source {
        &Source::V4(_, transport, class) => (class, transport),
        &Source::V6(_, transport) => (PacketClass::Ipv6, transport),
        Source::NotIp => {
            if probe.is_null() {
                maps::count_class(PacketClass::NonIp, frame_len);
            }
            return xdp_action::XDP_PASS;
        }
        Source::Malformed => {
            if probe.is_null() {
                maps::count_class(PacketClass::Malformed, frame_len);
            }
            return xdp_action::XDP_PASS;
        }
        // Fail closed: the kernel would strip the tags and deliver what is inside (parse.rs).
        Source::TooManyVlanTags => {
            if probe.is_null() {
                maps::count_class(PacketClass::TooManyVlanTags, frame_len);
            }
            return if policy.flags & POLICY_MONITOR != 0 {
                xdp_action::XDP_PASS
            } else {
                xdp_action::XDP_DROP
            };
        }
    };
    // The net costs one more array lookup: only a policy that uses ASNs or lists, or a probe, pays them.
    let want_net = !probe.is_null() || policy.flags & (POLICY_ASNS | POLICY_LISTS) != 0;
    // Every arm gives a value (none returns): LLVM spilled the larger `Found` to stack slots
    // that an early-returning arm never wrote and then read them on the merged path, which
    // 5.10's verifier refuses ("invalid read from stack", Debian 5.10.0-46).
    let (found, exception) = match source {
        Source::V4(addr, ..) => {
            let found = T::v4(addr, want_net);
            let exception = if policy.flags & POLICY_EXCEPTIONS_V4 != 0 && found.exception_possible
            {
                maps::exception_v4(addr)
            } else {
                None
            };
            (found, exception)
        }
        Source::V6(addr, _) => {
            let found = T::v6(addr, want_net);
            let exception = if policy.flags & POLICY_EXCEPTIONS_V6 != 0 && found.exception_possible
            {
                maps::exception_v6(addr)
            } else {
                None
            };
            (found, exception)
        }
        // Returned above.
        _ => (NOT_FOUND, None),
    };
    let country = found.leaf.country;
    let (verdict, decided) = decide(ctx, policy, &found, exception, transport);
    match probe.is_null() {
        // SAFETY: `why_probe` bounds-checked the record against the metadata area.
        false => unsafe {
            (*probe).verdict = verdict as u32;
            (*probe).country = country;
            (*probe).decided_by = decided.by as u8;
            (*probe).list = decided.list as u8;
            (*probe).net = found.leaf.net;
            (*probe).listed = found.net.listed;
            (*probe).lists = found.net.lists;
        },
        true => {
            maps::count_class(class, frame_len);
            maps::count_country(country, verdict, frame_len);
            if found.net.listed != 0 {
                maps::count_asn(found.net.listed, verdict, frame_len);
            }
            if decided.by == Decider::List {
                maps::count_list(decided.list, verdict, frame_len);
            }
            events::emit(ctx, &source, transport, country, verdict);
        }
    }
    match verdict {
        Verdict::Drop => xdp_action::XDP_DROP,
        Verdict::Pass | Verdict::WouldDrop => xdp_action::XDP_PASS,
    }
}

/// The `why` twin of [`filter`]: the probe record comes first in the test frame instead of in a
/// test-run context, because `BPF_PROG_TEST_RUN` takes an XDP context only from 5.14 (5.10
/// refuses `ctx_in` with EINVAL). Moving the start of the frame past the record and growing the
/// metadata back over it turns the record into metadata (`bpf_xdp_adjust_head` leaves the bytes
/// in place); after [`filter`] has filled it, moving the start back puts the record first in the
/// test run's output again, on every kernel (5.10 copies the output from `data`, newer kernels
/// from `data_meta`, which then holds a second copy).
#[inline(always)]
pub fn why<T: CountryTables>(ctx: &XdpContext) -> u32 {
    const LEN: i32 = core::mem::size_of::<WhyProbe>() as i32;
    // SAFETY: the helpers only move this context's packet pointers, within its headroom.
    let moved = unsafe {
        bpf_xdp_adjust_head(ctx.ctx, LEN) == 0 && bpf_xdp_adjust_meta(ctx.ctx, -LEN) == 0
    };
    if !moved {
        return xdp_action::XDP_ABORTED;
    }
    let action = filter::<T>(ctx);
    // SAFETY: as above; the metadata moves down into the headroom with the frame's start.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -LEN) } != 0 {
        return xdp_action::XDP_ABORTED;
    }
    action
}

/// The `why` record in front of the frame if this run is a probe (see [`WhyProbe`]), else null.
///
/// A pointer that is null when absent, not an `Option`: LLVM kept an `Option`'s payload in a
/// stack slot written only when it was `Some`, then read the slot on every path once `filter`
/// tested the probe early; 5.10's verifier refuses a read of a stack slot no path wrote
/// ("invalid read from stack R10 off=-88", Debian 5.10.0-46). 6.18 took either form.
#[inline(always)]
fn why_probe(ctx: &XdpContext) -> *mut WhyProbe {
    let meta = ctx.metadata();
    if meta + core::mem::size_of::<WhyProbe>() > ctx.metadata_end() {
        return core::ptr::null_mut();
    }
    let probe = meta as *mut WhyProbe;
    // SAFETY: the record lies inside the metadata area (checked above against `data`).
    if unsafe { (*probe).magic } != WHY_MAGIC {
        return core::ptr::null_mut();
    }
    probe
}

/// What decided a verdict: the rule, and the list slot when a list did.
struct Decided {
    by: Decider,
    list: u32,
}

/// The verdict, in order: an exception decides outright; a packet outside the port scope passes;
/// then an enabled pass list, an enabled drop list, the address's ASN if the policy names it,
/// and last the country's action.
#[inline(always)]
fn decide(
    ctx: &XdpContext,
    policy: &Policy,
    found: &Found,
    exception: Option<u32>,
    transport: Transport,
) -> (Verdict, Decided) {
    let drop = |policy: &Policy| {
        if policy.flags & POLICY_MONITOR != 0 {
            Verdict::WouldDrop
        } else {
            Verdict::Drop
        }
    };
    let by = |by: Decider| Decided { by, list: 0 };
    if let Some(action) = exception {
        let verdict = if action == EXCEPTION_DROP {
            drop(policy)
        } else {
            Verdict::Pass
        };
        return (verdict, by(Decider::Exception));
    }
    if policy.flags & POLICY_PORT_SCOPE != 0 && !in_port_scope(ctx, policy, transport) {
        return (Verdict::Pass, by(Decider::PortScope));
    }
    if policy.flags & POLICY_LISTS != 0 {
        let pass = found.net.lists & policy.list_pass;
        if pass != 0 {
            let list = pass.trailing_zeros();
            return (
                Verdict::Pass,
                Decided {
                    by: Decider::List,
                    list,
                },
            );
        }
        let dropping = found.net.lists & policy.list_drop;
        if dropping != 0 {
            let list = dropping.trailing_zeros();
            return (
                drop(policy),
                Decided {
                    by: Decider::List,
                    list,
                },
            );
        }
    }
    if policy.flags & POLICY_ASNS != 0 && found.net.listed != 0 {
        // Masked like the country index (see `country_action`): listed indices are below
        // LISTED_ASNS wherever they come from (16 bits in an ASN page the daemon writes).
        let action = policy.asn_actions[found.net.listed as usize & (LISTED_ASNS as usize - 1)];
        if action == ASN_DROP {
            return (drop(policy), by(Decider::Asn));
        }
        if action == ASN_PASS {
            return (Verdict::Pass, by(Decider::Asn));
        }
    }
    let verdict = if country_action(policy, found.leaf.country) == ACTION_DROP {
        drop(policy)
    } else {
        Verdict::Pass
    };
    (verdict, by(Decider::Country))
}

/// The policy's action for `country` (the unknown-country action for an id past the array).
///
/// The index is masked to the power of two above the array length before the bounds check, so
/// whichever register the compiler indexes with carries its own bound. Without the mask LLVM
/// masked the spilled `u16` twice, compared one copy with the length and added the other to the
/// pointer; verifiers that do not carry a bound across such a copy refused the load ("R3 max value
/// is outside of the allowed memory range", Debian 5.10.0-46 and 6.1.0-57; 6.12 and 6.18 took
/// it). The mask changes no answer: country ids are below `COUNTRY_SLOTS` (680) wherever they
/// come from (10 bits in a table entry, `CountryId`s the daemon writes in the LPM variant), and
/// unlike a `black_box` it costs no stack round trip.
#[inline(always)]
fn country_action(policy: &Policy, country: u16) -> u8 {
    const INDEX_MASK: usize = (COUNTRY_SLOTS as usize).next_power_of_two() - 1;
    match policy.actions.get(usize::from(country) & INDEX_MASK) {
        Some(action) => *action,
        None => policy.actions[UNKNOWN_COUNTRY as usize],
    }
}

/// Whether geo-filtering applies to this packet's destination port. A TCP/UDP packet whose port
/// cannot be read (a later fragment, a cut header) is in scope: failing closed here keeps
/// fragmentation from being a way around the filter.
#[inline(always)]
fn in_port_scope(ctx: &XdpContext, policy: &Policy, transport: Transport) -> bool {
    match destination_port(ctx, transport) {
        Port::Tcp(port) => policy.tcp_ports.contains(port),
        Port::Udp(port) => policy.udp_ports.contains(port),
        Port::Portless => policy.flags & POLICY_PORTLESS_IN_SCOPE != 0,
        Port::Unknown => true,
    }
}
