//! Sampled packet events: what the program tells `geofilter log` and `geofilter top` about the
//! packets it drops (and, when asked, passes), through the [`crate::maps::EVENTS`] ring buffer.
//!
//! The program emits nothing unless [`EventConfig::listeners`] is set, which the daemon does only
//! while a client follows the events (or `run --event-history` keeps it set), so a filter nobody
//! watches pays one array read per packet. When set, each CPU's events are limited by a token
//! bucket kept as a GCRA "theoretical arrival time" (one `u64` per CPU, no division in the
//! kernel): an event is allowed when the CPU's time is at most `burst_ns` ahead of now, and each
//! allowed event moves it `interval_ns` on. Over `t` seconds a CPU emits at most
//! `burst + t * rate` events, with `interval_ns = 1e9 / rate` and
//! `burst_ns = (burst - 1) * interval_ns`.

/// [`EventConfig::flags`] bit: emit events for passed packets too (`log --passed`).
pub const EVENTS_PASSED: u32 = 1 << 0;

/// [`Event::flags`] bit: [`Event::port`] holds the destination port (TCP or UDP with a readable
/// header).
pub const EVENT_PORT: u8 = 1 << 0;

/// What the daemon tells the program about events.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventConfig {
    /// Non-zero while anybody listens; zero makes the event path return at once.
    pub listeners: u32,
    /// [`EVENTS_PASSED`].
    pub flags: u32,
    /// Nanoseconds of budget one event costs: `1e9 / rate`.
    pub interval_ns: u64,
    /// How far ahead of now a CPU's budget may run: `(burst - 1) * interval_ns`.
    pub burst_ns: u64,
}

impl EventConfig {
    /// The limit for `rate` events per second per CPU with bursts of up to `burst` events
    /// (`rate` and `burst` at least 1), not yet listening.
    pub const fn limit(rate: u32, burst: u32) -> Self {
        let interval_ns = 1_000_000_000 / rate as u64;
        Self {
            listeners: 0,
            flags: 0,
            interval_ns,
            burst_ns: (burst as u64 - 1) * interval_ns,
        }
    }
}

/// One sampled packet, as the program writes it into the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// `bpf_ktime_get_ns`: CLOCK_MONOTONIC, nanoseconds since boot (not counting suspend).
    pub time_ns: u64,
    /// The source address the packet was filtered as, network order: an IPv4 address (also one
    /// embedded in an IPv6 source) in the first four bytes, the rest zero.
    pub addr: [u8; 16],
    /// The country the table placed the address in.
    pub country: crate::CountryId,
    /// The destination port as a number (not bytes), valid under [`EVENT_PORT`].
    pub port: u16,
    /// 4 or 6: how [`Event::addr`] is to be read.
    pub family: u8,
    /// IP protocol (IPv6: the header after the extension headers when the port was read).
    pub protocol: u8,
    /// A [`crate::Verdict`].
    pub verdict: u8,
    /// [`EVENT_PORT`].
    pub flags: u8,
}

// Layout checks: these sizes are part of the kernel/user contract.
const _: () = assert!(core::mem::size_of::<Event>() == 32);
const _: () = assert!(core::mem::size_of::<EventConfig>() == 24);

#[cfg(test)]
mod tests {
    use super::*;

    /// The bound the flood test checks follows from these numbers.
    #[test]
    fn limit_spaces_events_by_the_rate() {
        let config = EventConfig::limit(100, 100);
        assert_eq!(config.interval_ns, 10_000_000);
        assert_eq!(config.burst_ns, 99 * 10_000_000);
        assert_eq!(EventConfig::limit(1, 1).burst_ns, 0);
    }
}
