//! Types shared by the geofilter XDP program and its daemon.
//!
//! Everything that crosses the kernel/user boundary is defined here once: map names, map value
//! layouts, and the numbering of countries, verdicts and packet classes. Every type is `#[repr(C)]`
//! with no implicit padding (checked at compile time below) so the bytes the daemon writes are the
//! bytes the program reads.
#![cfg_attr(target_arch = "bpf", no_std)]

pub mod bench;
pub mod country;
pub mod embedded;
pub mod events;
pub mod maps;
pub mod table;

pub use country::{COUNTRY_SLOTS, CountryId, UNKNOWN_COUNTRY};

/// What the program decided for one packet; also the counter column it is accounted in.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass = 0,
    Drop = 1,
    /// Monitor mode: the policy says drop, the packet passes, and it is counted here.
    WouldDrop = 2,
}

impl Verdict {
    pub const COUNT: u32 = 3;
    pub const ALL: [Verdict; 3] = [Verdict::Pass, Verdict::Drop, Verdict::WouldDrop];

    pub const fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Drop => "drop",
            Verdict::WouldDrop => "would_drop",
        }
    }
}

/// How far the parser got with a frame. Counted per class, before any country lookup.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketClass {
    Ipv4 = 0,
    Ipv6 = 1,
    /// An EtherType that is neither IPv4 nor IPv6 (ARP, LLDP, ...), under up to eight VLAN tags:
    /// passed.
    NonIp = 2,
    /// Too short for the headers its EtherType announces, or an IP header whose version field
    /// contradicts the EtherType: passed, because the kernel's own stack discards it anyway.
    Malformed = 3,
    /// More than eight VLAN tags: dropped (passed in monitor mode), because the kernel strips
    /// any number of VID-0 tags and would deliver the packet inside unfiltered.
    TooManyVlanTags = 4,
}

impl PacketClass {
    pub const COUNT: u32 = 5;
    pub const ALL: [PacketClass; 5] = [
        PacketClass::Ipv4,
        PacketClass::Ipv6,
        PacketClass::NonIp,
        PacketClass::Malformed,
        PacketClass::TooManyVlanTags,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            PacketClass::Ipv4 => "ipv4",
            PacketClass::Ipv6 => "ipv6",
            PacketClass::NonIp => "non_ip",
            PacketClass::Malformed => "malformed",
            PacketClass::TooManyVlanTags => "too_many_vlan_tags",
        }
    }
}

/// Packets and bytes; one per CPU in the per-CPU counter arrays, summed by the daemon.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// What the country tables map a prefix to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixInfo {
    pub country: CountryId,
    /// Index of the database file (in `--db` order) the prefix came from; shown by `why`.
    pub source: u16,
}

impl PrefixInfo {
    /// What an address no table entry covers classifies as.
    pub const UNKNOWN: PrefixInfo = PrefixInfo {
        country: UNKNOWN_COUNTRY,
        source: NO_SOURCE,
    };
}

/// [`PrefixInfo::source`] of an address no database placed.
pub const NO_SOURCE: u16 = u16::MAX;

/// XDP metadata that marks a frame as a `geofilter why` probe.
///
/// The daemon runs probes through the live program with BPF_PROG_TEST_RUN, putting this record
/// in the metadata area in front of the frame (test_run takes its length from `xdp_md.data`, see
/// net/bpf/test_run.c, `bpf_prog_test_run_xdp`). The program classifies the frame exactly as it
/// would classify traffic, writes what it found back into the record, and counts nothing, so
/// asking `why` never disturbs the statistics. Frames from a NIC carry no metadata (or another
/// program's, without this magic), so they cannot pose as probes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WhyProbe {
    pub magic: u32,
    /// Written by the program: a [`Verdict`] as `u32`.
    pub verdict: u32,
    /// Written by the program: the country the table gives the address.
    pub country: CountryId,
    /// Written by the program: a [`Decider`] as `u8`.
    pub decided_by: u8,
    /// Written by the program: the list slot that decided, when [`Decider::List`] did.
    pub list: u8,
    /// Written by the program: the address's net in the table, and that net's listed index and
    /// lists ([`table::Net`]).
    pub net: u32,
    pub listed: u32,
    pub lists: u32,
}

/// What decided a verdict (`why` says it).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decider {
    /// The country's action (also for an address with no country: the unknown action).
    Country = 0,
    Exception = 1,
    /// Outside the port scope: passed without a country check.
    PortScope = 2,
    /// A blocklist ([`WhyProbe::list`] says which).
    List = 3,
    /// The action of the address's ASN.
    Asn = 4,
}

impl Decider {
    pub const fn from_u8(v: u8) -> Option<Decider> {
        Some(match v {
            0 => Decider::Country,
            1 => Decider::Exception,
            2 => Decider::PortScope,
            3 => Decider::List,
            4 => Decider::Asn,
            _ => return None,
        })
    }
}

pub const WHY_MAGIC: u32 = u32::from_be_bytes(*b"GFWY");

/// Policy action for one country slot.
pub const ACTION_PASS: u8 = 0;
pub const ACTION_DROP: u8 = 1;

/// `Policy::flags` bit: count drops as would-drop and pass the packet (dry run).
pub const POLICY_MONITOR: u32 = 1 << 0;
/// `Policy::flags` bit: the IPv4 exception trie is not empty. Without it no packet pays for an
/// exception lookup; with it, only packets whose country-table path carries an exception mark do
/// (see [`table`]).
pub const POLICY_EXCEPTIONS_V4: u32 = 1 << 1;
/// `Policy::flags` bit: the IPv6 exception trie is not empty.
pub const POLICY_EXCEPTIONS_V6: u32 = 1 << 2;
/// `Policy::flags` bit: geo-filtering applies only to TCP/UDP destination ports set in
/// `Policy::ports` (plus portless protocols when [`POLICY_PORTLESS_IN_SCOPE`] is set). Without it
/// every packet is in scope and ports are never read.
pub const POLICY_PORT_SCOPE: u32 = 1 << 3;
/// `Policy::flags` bit: with a port scope, protocols without ports (ICMP, GRE, ...) are
/// geo-filtered too.
pub const POLICY_PORTLESS_IN_SCOPE: u32 = 1 << 4;
/// `Policy::flags` bit: some ASN has an action ([`Policy::asn_actions`]). Without it and without
/// [`POLICY_LISTS`] no packet reads its net: a country-only policy costs what it did.
pub const POLICY_ASNS: u32 = 1 << 5;
/// `Policy::flags` bit: some blocklist is enabled ([`Policy::list_drop`], [`Policy::list_pass`]).
pub const POLICY_LISTS: u32 = 1 << 6;

/// Listed indices of ASNs: how many ASNs one policy can name (index 0 is "not listed").
pub const LISTED_ASNS: u32 = 1024;
/// [`Policy::asn_actions`] values.
pub const ASN_NONE: u8 = 0;
pub const ASN_DROP: u8 = 1;
pub const ASN_PASS: u8 = 2;

/// Exception actions (values of the exception tries).
pub const EXCEPTION_PASS: u32 = 0;
pub const EXCEPTION_DROP: u32 = 1;

/// One bit per destination port (bit `port % 64` of word `port / 64`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortSet {
    pub words: [u64; 1024],
}

impl PortSet {
    pub const EMPTY: PortSet = PortSet { words: [0; 1024] };
    pub const FULL: PortSet = PortSet {
        words: [u64::MAX; 1024],
    };

    #[inline(always)]
    pub fn contains(&self, port: u16) -> bool {
        self.words[(port >> 6) as usize] & (1 << (port & 63)) != 0
    }

    pub fn set(&mut self, port: u16, on: bool) {
        let bit = 1 << (port & 63);
        let word = &mut self.words[(port >> 6) as usize];
        if on {
            *word |= bit;
        } else {
            *word &= !bit;
        }
    }
}

/// The version of the pinned state's layout: the [`Policy`] value and the maps beside it. A
/// daemon refuses pinned state of another version rather than misreading it (a misread could turn
/// an allow-list into a deny-list).
///
/// 3: country tables became stride tables ([`table`]) instead of LPM tries.
/// 4: a fifth packet class ([`PacketClass::TooManyVlanTags`]) in the class counters.
/// 5: compact tables with nets (ASNs, blocklists); the policy's ASN actions and list masks.
pub const POLICY_SCHEMA: u32 = 5;

/// The whole filtering decision, one value, swapped in one step.
///
/// `actions` is indexed by [`CountryId`]; slot [`UNKNOWN_COUNTRY`] holds the action for addresses
/// no database places. Deny and allow-only modes are both compiled into `actions` by the daemon,
/// so the program does one array read per packet whatever the mode.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub schema: u32,
    pub flags: u32,
    pub actions: [u8; COUNTRY_SLOTS as usize],
    /// Destination ports in the geo-filtering scope, used under [`POLICY_PORT_SCOPE`].
    pub tcp_ports: PortSet,
    pub udp_ports: PortSet,
    /// Indexed by an ASN's listed index (the table's nets carry it):
    /// [`ASN_NONE`], [`ASN_DROP`] or [`ASN_PASS`]. Used under [`POLICY_ASNS`].
    pub asn_actions: [u8; LISTED_ASNS as usize],
    /// Enabled blocklists by action, one bit per list slot ([`table::Net::lists`]); a pass list
    /// wins over a drop list. Used under [`POLICY_LISTS`].
    pub list_drop: u32,
    pub list_pass: u32,
}

impl Policy {
    /// Passes everything: the state before any country is blocked.
    pub const fn pass_all() -> Self {
        Self {
            schema: POLICY_SCHEMA,
            flags: 0,
            actions: [ACTION_PASS; COUNTRY_SLOTS as usize],
            tcp_ports: PortSet::EMPTY,
            udp_ports: PortSet::EMPTY,
            asn_actions: [ASN_NONE; LISTED_ASNS as usize],
            list_drop: 0,
            list_pass: 0,
        }
    }
}

/// Index into the per-country counter array.
pub const fn country_counter_index(country: CountryId, verdict: Verdict) -> u32 {
    country as u32 * Verdict::COUNT + verdict as u32
}

/// Entries in the per-country counter array.
pub const COUNTRY_COUNTERS: u32 = COUNTRY_SLOTS * Verdict::COUNT;

/// Index into the per-listed-ASN counter array: packets of ASNs the policy names, by verdict.
pub const fn asn_counter_index(listed: u32, verdict: Verdict) -> u32 {
    listed * Verdict::COUNT + verdict as u32
}

/// Entries in the per-listed-ASN counter array.
pub const ASN_COUNTERS: u32 = LISTED_ASNS * Verdict::COUNT;

/// Index into the per-list counter array: packets in an enabled list, by verdict.
pub const fn list_counter_index(list: u32, verdict: Verdict) -> u32 {
    list * Verdict::COUNT + verdict as u32
}

/// Entries in the per-list counter array.
pub const LIST_COUNTERS: u32 = table::LIST_SLOTS * Verdict::COUNT;

// Layout checks: these sizes are part of the kernel/user contract.
const _: () = assert!(core::mem::size_of::<Counter>() == 16);
const _: () = assert!(core::mem::size_of::<PrefixInfo>() == 4);
// XDP metadata length must be a multiple of 4 and at most 32 bytes (`xdp_metalen_invalid`).
const _: () = assert!(core::mem::size_of::<WhyProbe>() == 24);
const _: () =
    assert!(core::mem::size_of::<Policy>() == 8 + COUNTRY_SLOTS as usize + 2 * 8192 + 1024 + 8);
const _: () = assert!(COUNTRY_SLOTS.is_multiple_of(8));

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `repr(C)` data with no padding (sizes asserted above) and no invalid bit
    // patterns, as `aya::Pod` requires.
    unsafe impl aya::Pod for super::Counter {}
    unsafe impl aya::Pod for super::PrefixInfo {}
    unsafe impl aya::Pod for super::Policy {}
    unsafe impl aya::Pod for super::table::Page {}
    unsafe impl aya::Pod for super::bench::BenchConfig {}
    unsafe impl aya::Pod for super::WhyProbe {}
    unsafe impl aya::Pod for super::events::Event {}
    unsafe impl aya::Pod for super::events::EventConfig {}
}
