//! Names and sizes of the program's maps: the one place both sides take them from.
//!
//! Names are at most 15 bytes: the kernel keeps 16 including the NUL (`BPF_OBJ_NAME_LEN`).

/// `ARRAY_OF_MAPS[1]` holding the live `ARRAY[1]` of [`crate::Policy`]. Every policy change
/// builds a fresh inner map and swaps it into slot 0, so a packet sees the old policy or the new
/// one, never a mix (a plain array update copies the value non-atomically).
pub const POLICY: &str = "GF_POLICY";
/// `ARRAY_OF_MAPS[1]` holding the live IPv4 country table: an `ARRAY` of
/// [`crate::table::Page`]s of nodes (see [`crate::table`]) sized to what the database needs, created with
/// [`BPF_F_INNER_MAP`] so tables of any size fit the slot. A database reload builds a new table
/// beside it and swaps the slot. (In the LPM-trie variant of the program, kept as the benchmark
/// baseline, the inner map is an `LPM_TRIE`, `[u8; 4]` network order → [`crate::PrefixInfo`].)
pub const TABLE_V4: &str = "GF_TABLE_V4";
/// The same for IPv6 (`[u8; 16]` keys in the LPM-trie variant).
pub const TABLE_V6: &str = "GF_TABLE_V6";
/// `LPM_TRIE` of per-address exceptions (`[u8; 4]` → [`crate::EXCEPTION_PASS`] or
/// [`crate::EXCEPTION_DROP`]), updated in place one prefix at a time: each insert or delete is
/// atomic for readers (RCU), and the policy flag that enables lookups is set after the first
/// insert and cleared after the last delete. Packets only look here when their country-table path
/// carries an exception mark ([`crate::table::ENTRY_EXCEPTION`]).
pub const EXCEPT_V4: &str = "GF_EXCEPT_V4";
/// The same for IPv6.
pub const EXCEPT_V6: &str = "GF_EXCEPT_V6";
/// Capacity of each exception trie.
pub const EXCEPT_CAPACITY: u32 = 65536;
/// `PERCPU_ARRAY` of [`crate::Counter`], indexed by [`crate::country_counter_index`].
pub const COUNTRY_COUNTERS: &str = "GF_CC_COUNT";
/// `PERCPU_ARRAY` of [`crate::Counter`], indexed by [`crate::PacketClass`].
pub const CLASS_COUNTERS: &str = "GF_CLASS_COUNT";
/// `PERCPU_ARRAY` of [`crate::Counter`], indexed by [`crate::asn_counter_index`]: only the ASNs a
/// policy names have a listed index, so this never holds a series per ASN of the world.
pub const ASN_COUNTERS: &str = "GF_ASN_COUNT";
/// `PERCPU_ARRAY` of [`crate::Counter`], indexed by [`crate::list_counter_index`].
pub const LIST_COUNTERS: &str = "GF_LIST_COUNT";

/// `RINGBUF` of [`crate::events::Event`]s: sampled drops for `geofilter log` and `geofilter top`.
/// Not pinned: each program object has its own, read by the daemon that loaded it (an adopting
/// daemon's new program brings a new one), so nothing is left to clean up.
pub const EVENTS: &str = "GF_EVENTS";
/// Bytes of [`EVENTS`] (a power of two and a page multiple, as the kernel requires): about 6,500
/// events of 40 bytes with the ring's header, over 30 s of the default rate on two CPUs.
pub const EVENTS_BYTES: u32 = 256 * 1024;
/// `ARRAY[1]` of [`crate::events::EventConfig`]: whether anybody listens, and the rate limit.
pub const EVENT_CONFIG: &str = "GF_EV_CONFIG";
/// `PERCPU_ARRAY[1]` of `u64`: each CPU's token bucket (see [`crate::events::EventConfig`]).
pub const EVENT_BUCKET: &str = "GF_EV_BUCKET";

/// Every map the daemon pins (and adopts after a restart), in one list.
pub const PINNED: [&str; 9] = [
    POLICY,
    TABLE_V4,
    TABLE_V6,
    EXCEPT_V4,
    EXCEPT_V6,
    COUNTRY_COUNTERS,
    CLASS_COUNTERS,
    ASN_COUNTERS,
    LIST_COUNTERS,
];

/// The XDP program's name in the object file (the same in the LPM-trie variant).
pub const PROGRAM: &str = "geofilter";

/// The `why` twin of [`PROGRAM`] in the same object: the same code and maps, never attached, run
/// only by `BPF_PROG_TEST_RUN` with the probe record at the start of the frame (see
/// `geofilter-ebpf/src/filter.rs`, `why`).
pub const WHY_PROGRAM: &str = "geofilter_why";
/// The [`PROGRAM`] twin for libxdp's multi-program dispatcher: the same code and maps in an
/// `freplace` (`BPF_PROG_TYPE_EXT`) section, loaded into a dispatcher slot `progN` when geofilter
/// shares the interface (see the daemon's `datapath::dispatcher`). Its kernel name is how
/// geofilter tells its own slot from other programs'.
pub const EXT_PROGRAM: &str = "geofilter_ext";

/// `BPF_F_INNER_MAP` (include/uapi/linux/bpf.h): the inner map's `max_entries` is not part of
/// the program's contract, so inner arrays of any size may be swapped in. The price is that the
/// verifier no longer inlines lookups into such arrays
/// (kernel/bpf/arraymap.c, `array_map_gen_lookup` returns `-EOPNOTSUPP`); each level of a table
/// lookup is then a direct call of `array_map_lookup_elem`. Without the flag every inner map
/// must have the template's `max_entries` (`bpf_map_meta_equal`), so a table could not be sized
/// to its database.
pub const BPF_F_INNER_MAP: u32 = 1 << 12;

/// Pages of the inner-map template in the program object. With [`BPF_F_INNER_MAP`] the live
/// inner maps may hold any number of pages; the template only has to exist.
pub const TABLE_TEMPLATE_PAGES: u32 = crate::table::ROOT_CHUNKS;

/// Capacity of each country table of the LPM-trie variant. The world database needs about 600k
/// prefixes per family (GeoLite2 country: 580k IPv4, 598k IPv6); an LPM trie does not
/// preallocate, so the headroom costs nothing until used.
pub const TABLE_CAPACITY: u32 = 2 * 1024 * 1024;
