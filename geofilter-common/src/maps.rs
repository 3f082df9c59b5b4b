//! Names and sizes of the program's maps: the one place both sides take them from.
//!
//! Names are at most 15 bytes: the kernel keeps 16 including the NUL (`BPF_OBJ_NAME_LEN`).

/// `ARRAY_OF_MAPS[1]` holding the live `ARRAY[1]` of [`crate::Policy`]. Every policy change
/// builds a fresh inner map and swaps it into slot 0, so a packet sees the old policy or the new
/// one, never a mix (a plain array update copies the value non-atomically).
pub const POLICY: &str = "GF_POLICY";
/// `ARRAY_OF_MAPS[1]` holding the live IPv4 country table (`LPM_TRIE`, `[u8; 4]` network order
/// → [`crate::PrefixInfo`]). A database reload builds a new table beside it and swaps the slot.
pub const TABLE_V4: &str = "GF_TABLE_V4";
/// The same for IPv6 (`[u8; 16]` keys).
pub const TABLE_V6: &str = "GF_TABLE_V6";
/// `LPM_TRIE` of per-address exceptions (`[u8; 4]` → [`crate::EXCEPTION_PASS`] or
/// [`crate::EXCEPTION_DROP`]), updated in place one prefix at a time: each insert or delete is
/// atomic for readers (RCU), and the policy flag that enables lookups is set after the first
/// insert and cleared after the last delete.
pub const EXCEPT_V4: &str = "GF_EXCEPT_V4";
/// The same for IPv6.
pub const EXCEPT_V6: &str = "GF_EXCEPT_V6";
/// Capacity of each exception trie.
pub const EXCEPT_CAPACITY: u32 = 65536;
/// `PERCPU_ARRAY` of [`crate::Counter`], indexed by [`crate::country_counter_index`].
pub const COUNTRY_COUNTERS: &str = "GF_CC_COUNT";
/// `PERCPU_ARRAY` of [`crate::Counter`], indexed by [`crate::PacketClass`].
pub const CLASS_COUNTERS: &str = "GF_CLASS_COUNT";

/// Every map the daemon pins (and adopts after a restart), in one list.
pub const PINNED: [&str; 7] = [
    POLICY,
    TABLE_V4,
    TABLE_V6,
    EXCEPT_V4,
    EXCEPT_V6,
    COUNTRY_COUNTERS,
    CLASS_COUNTERS,
];

/// The XDP program's name in the object file.
pub const PROGRAM: &str = "geofilter";

/// Capacity of each country table. The world database needs about 600k prefixes per family
/// (GeoLite2 country: 580k IPv4, 598k IPv6); an LPM trie does not preallocate, so the headroom
/// costs nothing until used.
pub const TABLE_CAPACITY: u32 = 2 * 1024 * 1024;
