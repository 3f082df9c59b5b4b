//! The country tables' layout: fixed-stride, direct-indexed, compiled by the daemon.
//!
//! An address is read as bytes, most significant first. A table is an array of [`Chunk`]s of 256
//! [`Entry`]s; each chunk resolves one byte of the address:
//!
//! - the first two bytes index the 65,536-entry root, stored as chunks `0..=255` (chunk = first
//!   byte, entry = second byte), so one load resolves a /16;
//! - every further byte indexes the chunk the previous entry points to: /24, /32 for IPv4, and
//!   on down to /128 for IPv6 (at most 16 levels, most addresses stop after 2 to 4).
//!
//! An entry is either a *leaf* holding the [`PrefixInfo`] of every address below it, or a
//! *child*: the index of the chunk for the next byte. The daemon shares identical chunks, so a
//! chunk may be reached from several parents. Each entry also carries an *exception mark*: set
//! when an exception prefix may cover addresses below it. A packet consults the exception trie
//! only if an entry on its path is marked, so packets nowhere near an exception never walk it.

use crate::{CountryId, NO_SOURCE, PrefixInfo, UNKNOWN_COUNTRY};

/// Entries per chunk: one byte of the address.
pub const CHUNK_ENTRIES: usize = 256;
/// Chunks `0..ROOT_CHUNKS` form the root, indexed by the address's first byte.
pub const ROOT_CHUNKS: u32 = 256;
/// The most chunks one table may hold: child indices have 30 bits.
pub const MAX_CHUNKS: u32 = ENTRY_CHILD;

/// One level of a table: 256 entries for the next byte of the address (1 KiB).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Chunk {
    pub entries: [Entry; CHUNK_ENTRIES],
}

impl Chunk {
    /// Every address unknown.
    pub const EMPTY: Chunk = Chunk {
        entries: [Entry::UNKNOWN; CHUNK_ENTRIES],
    };
}

/// `Entry` bit: an exception may cover addresses below this entry.
pub const ENTRY_EXCEPTION: u32 = 1 << 31;
/// `Entry` bit: the low 30 bits index the chunk for the next byte.
pub const ENTRY_CHILD: u32 = 1 << 30;
const CHILD_MASK: u32 = ENTRY_CHILD - 1;
const COUNTRY_SHIFT: u32 = 16;
const COUNTRY_MASK: u32 = 0x3ff;

/// One table entry, 32 bits:
///
/// ```text
///  31  30  29..26  25..16    15..0
///  EX  0   0       country   source    leaf (country 0: no country, source ignored)
///  EX  1   chunk index (30 bits)        child
/// ```
///
/// `EX` is [`ENTRY_EXCEPTION`]. A leaf holds the whole [`PrefixInfo`], so a lookup needs no
/// further load once it reaches one. The all-zero entry is an unknown leaf, which is what a
/// freshly created (zero-filled) kernel array holds.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entry(pub u32);

// Country ids fit the 10 bits a leaf has for them.
const _: () = assert!(crate::COUNTRY_SLOTS <= COUNTRY_MASK + 1);

impl Entry {
    pub const UNKNOWN: Entry = Entry(0);

    /// A leaf for `info` (an unknown country makes the unknown leaf, whatever the source).
    pub const fn leaf(info: PrefixInfo) -> Entry {
        if info.country == UNKNOWN_COUNTRY {
            return Entry::UNKNOWN;
        }
        Entry(((info.country as u32 & COUNTRY_MASK) << COUNTRY_SHIFT) | info.source as u32)
    }

    /// A pointer to chunk `index` (below [`MAX_CHUNKS`]).
    pub const fn child(index: u32) -> Entry {
        Entry(ENTRY_CHILD | (index & CHILD_MASK))
    }

    #[inline(always)]
    pub const fn is_child(self) -> bool {
        self.0 & ENTRY_CHILD != 0
    }

    /// The chunk a child entry points to.
    #[inline(always)]
    pub const fn child_index(self) -> u32 {
        self.0 & CHILD_MASK
    }

    /// What a leaf entry says about its addresses.
    #[inline(always)]
    pub const fn info(self) -> PrefixInfo {
        let country = ((self.0 >> COUNTRY_SHIFT) & COUNTRY_MASK) as CountryId;
        if country == UNKNOWN_COUNTRY {
            PrefixInfo::UNKNOWN
        } else {
            PrefixInfo {
                country,
                source: self.0 as u16,
            }
        }
    }

    #[inline(always)]
    pub const fn exception_marked(self) -> bool {
        self.0 & ENTRY_EXCEPTION != 0
    }

    /// This entry with the exception mark set or cleared.
    pub const fn with_exception_mark(self, marked: bool) -> Entry {
        if marked {
            Entry(self.0 | ENTRY_EXCEPTION)
        } else {
            Entry(self.0 & !ENTRY_EXCEPTION)
        }
    }
}

// Layout checks: part of the kernel/user contract (the kernel array's value size).
const _: () = assert!(core::mem::size_of::<Entry>() == 4);
const _: () = assert!(core::mem::size_of::<Chunk>() == 1024);
// A leaf never looks like a child or a mark: the source takes 16 bits, the country 10 above it.
const _: () = assert!(COUNTRY_SHIFT + 10 <= 30);
const _: () = assert!(NO_SOURCE as u32 <= 0xffff);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_round_trip_every_country_and_source() {
        for country in 1..crate::COUNTRY_SLOTS as u16 {
            for source in [0, 1, 7, 0x1234, u16::MAX - 1, u16::MAX] {
                let info = PrefixInfo { country, source };
                let entry = Entry::leaf(info);
                assert!(!entry.is_child() && !entry.exception_marked());
                assert_eq!(entry.info(), info);
                assert_eq!(entry.with_exception_mark(true).info(), info);
            }
        }
        assert_eq!(Entry::leaf(PrefixInfo::UNKNOWN), Entry::UNKNOWN);
        assert_eq!(Entry::UNKNOWN.info(), PrefixInfo::UNKNOWN);
        let unknown_with_source = PrefixInfo {
            country: UNKNOWN_COUNTRY,
            source: 3,
        };
        assert_eq!(Entry::leaf(unknown_with_source).info(), PrefixInfo::UNKNOWN);
    }

    #[test]
    fn children_and_marks_are_independent() {
        for index in [0, 1, ROOT_CHUNKS, MAX_CHUNKS - 1] {
            let entry = Entry::child(index);
            assert!(entry.is_child());
            assert_eq!(entry.child_index(), index);
            let marked = entry.with_exception_mark(true);
            assert!(marked.is_child() && marked.exception_marked());
            assert_eq!(marked.child_index(), index);
            assert_eq!(marked.with_exception_mark(false), entry);
        }
    }
}
