//! The country tables' layout: a stride trie compiled by the daemon, compressed into pages.
//!
//! # The trie
//! An address is read as bytes, most significant first. The trie is a tree of [`Chunk`]s of 256
//! [`Entry`]s; each chunk resolves one byte of the address:
//!
//! - the first two bytes index the 65,536-entry root, chunks `0..=255` (chunk = first byte,
//!   entry = second byte), so the root resolves a /16;
//! - every further byte indexes the chunk the previous entry points to: /24, /32 for IPv4, and
//!   on down to /128 for IPv6 (at most 16 levels, most addresses stop after 2 to 4).
//!
//! An entry is either a *leaf* holding the [`Leaf`] (country and net) of every address below it, or a
//! *child* pointing to the chunk for the next byte. The daemon shares identical chunks, so a
//! chunk may be reached from several parents. Each entry also carries an *exception mark*: set
//! when an exception prefix may cover addresses below it. A packet consults the exception trie
//! only if an entry on its path is marked, so packets nowhere near an exception never walk it.
//!
//! # The kernel's form: nodes in pages
//! Neighbouring entries of a chunk nearly always repeat (a country's block covers many /16s or
//! /24s), so the kernel holds each chunk as a *node*: the distinct runs of equal entries, and a
//! 256-bit bitmap with bit `i` set where a run starts at entry `i` (Poptrie, Asai and Ohara,
//! SIGCOMM 2015, with one bitmap per 8-bit stride):
//!
//! ```text
//!  word 0..8    bitmap, entry i is bit i % 32 of word i / 32 (bit 0: always clear, run 0
//!               starts at entry 0 implicitly)
//!  word 8..10   8 bytes: run starts in bitmap words before w, byte w (w = 0..8), little-endian
//!  word 10..    one Entry per run, in entry order
//! ```
//!
//! Entry `i` is run `rank(i) = starts before word i/32 + popcount(that word's bits 0..=i%32)`:
//! one bitmap word, one count byte and one value, whatever `i` is. A node takes 11 to 266 words,
//! and an all-unknown node is all zeros, which is what a fresh kernel array holds.
//!
//! Nodes are packed into [`Page`]s of [`PAGE_WORDS`] words, the elements of the kernel's
//! `ARRAY`, and never cross a page, so one array lookup brings a whole node (each lookup of an
//! inner array with `BPF_F_INNER_MAP` is a helper call, see `maps::BPF_F_INNER_MAP`). A child
//! entry holds its node's [`NodeAddr`]: page and word. Root chunk `b` is the node at word 0 of
//! page `b`, so the root needs no directory. The marks are on the run values: a mark on any entry
//! of a run marks the run (a superset of the addresses, which is all a mark promises), and a
//! node's shape never depends on its marks, so marks change in place.
//!
//! # Nets: ASNs and blocklists in the same walk
//! A leaf also names a *net* ([`Net`]): the listed index of the autonomous system and the
//! blocklists its addresses are in. The daemon compiles the country ranges, the ASN ranges and
//! the lists' prefixes into one partition, so a packet still walks one table; only a policy that
//! uses ASNs or lists (or a `why` probe) reads the net: one more array lookup and load. The
//! pages of one table array:
//!
//! ```text
//!  0 .. 256       root nodes (page b: root chunk b at word 0; other nodes after it)
//!  NET_PAGE ..    the nets, 512 a page; then the other nodes
//! ```
//!
//! The nets are part of the table, not a map of their own, so a reload swaps the table and its
//! nets in one step. Blocking an ASN writes its listed index into each of its nets in place (a
//! few words; the live policy gives the index no action yet), then swaps the policy that gives
//! it one, which is the one step that changes verdicts.

use crate::{CountryId, UNKNOWN_COUNTRY};

/// Entries per chunk: one byte of the address.
pub const CHUNK_ENTRIES: usize = 256;
/// Chunks `0..ROOT_CHUNKS` form the root, indexed by the address's first byte; root chunk `b` is
/// the node at word 0 of page `b`.
pub const ROOT_CHUNKS: u32 = 256;
/// The most chunks one compiled trie may hold: child indices have 30 bits.
pub const MAX_CHUNKS: u32 = ENTRY_CHILD;

/// Words (`u32`) per page: 4 KiB, the value of one kernel array element.
pub const PAGE_WORDS: usize = 1024;
/// Bits of a [`NodeAddr`] that give the word inside the page.
pub const PAGE_SHIFT: u32 = PAGE_WORDS.trailing_zeros();
/// The most pages one table may hold: a node address has 30 bits.
pub const MAX_PAGES: u32 = ENTRY_CHILD >> PAGE_SHIFT;
/// Words of a node before its run values: the bitmap and the run counts.
pub const NODE_HEADER_WORDS: usize = 10;
/// Words of the bitmap.
pub const BITMAP_WORDS: usize = CHUNK_ENTRIES / 32;
/// The largest node: every entry its own run.
pub const MAX_NODE_WORDS: usize = NODE_HEADER_WORDS + CHUNK_ENTRIES;

/// One element of the kernel's table array: nodes, packed (4 KiB).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub words: [u32; PAGE_WORDS],
}

impl Page {
    /// No nodes: what a freshly created (zero-filled) kernel array holds.
    pub const ZERO: Page = Page {
        words: [0; PAGE_WORDS],
    };
}

/// Where a node starts: page `addr >> PAGE_SHIFT`, word `addr & (PAGE_WORDS - 1)`.
pub type NodeAddr = u32;

/// The address of the node at `word` of `page`.
pub const fn node_addr(page: u32, word: usize) -> NodeAddr {
    (page << PAGE_SHIFT) | word as u32
}

/// The run of entry `index` of the node at `node` (a word offset) in `words`: the decoding the
/// program and the daemon share.
///
/// Every index is masked to the page, so the kernel's verifier can bound each load without a
/// branch (an offset into a map value masked to `PAGE_WORDS - 1`, times 4, stays inside the
/// 4 KiB value; verified on 5.10, 6.1 and 6.18). A malformed node therefore reads some word of
/// its own page, never past it. The popcount is LLVM's expansion for BPF, which has no popcount
/// instruction: a dozen ALU operations.
#[inline(always)]
pub fn node_rank(words: &[u32; PAGE_WORDS], node: usize, index: usize) -> usize {
    const MASK: usize = PAGE_WORDS - 1;
    let word = (index >> 5) & (BITMAP_WORDS - 1);
    let below = words[(node + word) & MASK] & (u32::MAX >> (31 - (index & 31)));
    let counts = words[(node + BITMAP_WORDS + (word >> 2)) & MASK];
    let before = (counts >> ((word & 3) * 8)) & 0xff;
    (before + below.count_ones()) as usize
}

/// Entry `index` of the node at `node` in `words` (see [`node_rank`]).
#[inline(always)]
pub fn node_entry(words: &[u32; PAGE_WORDS], node: usize, index: usize) -> Entry {
    let rank = node_rank(words, node, index);
    Entry(words[(node + NODE_HEADER_WORDS + rank) & (PAGE_WORDS - 1)])
}

/// One level of the compiled trie: 256 entries for the next byte of the address (the
/// daemon's form; the kernel holds it as a node).
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
/// `Entry` bit: the low 30 bits point to the chunk for the next byte.
pub const ENTRY_CHILD: u32 = 1 << 30;
const CHILD_MASK: u32 = ENTRY_CHILD - 1;
const COUNTRY_SHIFT: u32 = 20;
const COUNTRY_MASK: u32 = 0x3ff;
/// Bits of a leaf's [`Leaf::net`].
pub const NET_BITS: u32 = 20;
const NET_MASK: u32 = (1 << NET_BITS) - 1;

/// What a leaf says about its addresses: the country, and the *net* — the index of the
/// table's [`Net`] (ASN and blocklists) the addresses share. Net 0 is no ASN and no list, so a
/// table compiled without ASN data or lists has only net 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Leaf {
    pub country: CountryId,
    pub net: u32,
}

impl Leaf {
    pub const UNKNOWN: Leaf = Leaf {
        country: UNKNOWN_COUNTRY,
        net: 0,
    };
}

/// One table entry, 32 bits:
///
/// ```text
///  31  30  29..20    19..0
///  EX  0   country   net          leaf
///  EX  1   child (30 bits)        child
/// ```
///
/// `EX` is [`ENTRY_EXCEPTION`]. A child is the chunk's index in the daemon's compiled trie and
/// the node's [`NodeAddr`] in the kernel's pages. A leaf holds the whole [`Leaf`], so a
/// country-only lookup needs no further load once it reaches one. The all-zero entry is the
/// unknown leaf (no country, net 0).
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entry(pub u32);

// Country ids fit the 10 bits a leaf has for them.
const _: () = assert!(crate::COUNTRY_SLOTS <= COUNTRY_MASK + 1);

impl Entry {
    pub const UNKNOWN: Entry = Entry(0);

    /// A leaf for `leaf`.
    pub const fn leaf(leaf: Leaf) -> Entry {
        Entry(((leaf.country as u32 & COUNTRY_MASK) << COUNTRY_SHIFT) | (leaf.net & NET_MASK))
    }

    /// A pointer to chunk or node `index` (below `1 << 30`).
    pub const fn child(index: u32) -> Entry {
        Entry(ENTRY_CHILD | (index & CHILD_MASK))
    }

    #[inline(always)]
    pub const fn is_child(self) -> bool {
        self.0 & ENTRY_CHILD != 0
    }

    /// The chunk or node a child entry points to.
    #[inline(always)]
    pub const fn child_index(self) -> u32 {
        self.0 & CHILD_MASK
    }

    /// What a leaf entry says about its addresses.
    #[inline(always)]
    pub const fn info(self) -> Leaf {
        Leaf {
            country: ((self.0 >> COUNTRY_SHIFT) & COUNTRY_MASK) as CountryId,
            net: self.0 & NET_MASK,
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

/// What one net of a table is: the *listed index* of its autonomous system (0: its ASN is in no
/// policy, or it has none; `k`: `Policy::asn_actions[k]` says what to do with it) and the
/// blocklists (bit `i`: list slot `i`) its addresses are in. Stored in the table's net pages
/// ([`NET_PAGE`]); read only when the policy uses ASNs or lists, or by a `why` probe. Which ASN a
/// net is, the daemon knows (it compiled the table); the program needs only the listed index.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Net {
    pub listed: u32,
    pub lists: u32,
}

/// The most blocklists: one bit each in [`Net::lists`].
pub const LIST_SLOTS: u32 = 32;
/// The first page of the net pages: [`Net`] `n` is words `2 (n % 512)` and `2 (n % 512) + 1` of
/// page `NET_PAGE + n / 512`. Nodes other than the roots come after the net pages. Blocking an
/// ASN writes the listed index into its nets in place, then swaps the policy.
pub const NET_PAGE: u32 = ROOT_CHUNKS;
/// Nets per page.
pub const NETS_PER_PAGE: u32 = (PAGE_WORDS / 2) as u32;
/// The most nets a table has: a leaf has [`NET_BITS`] for the net.
pub const MAX_NETS: u32 = 1 << NET_BITS;

/// Net `net` of a net page (the words of page `NET_PAGE + net / NETS_PER_PAGE`).
#[inline(always)]
pub fn page_net(words: &[u32; PAGE_WORDS], net: u32) -> Net {
    let at = (net as usize % NETS_PER_PAGE as usize) * 2;
    Net {
        listed: words[at & (PAGE_WORDS - 1)],
        lists: words[(at + 1) & (PAGE_WORDS - 1)],
    }
}

// Layout checks: part of the kernel/user contract (the kernel array's value size).
const _: () = assert!(core::mem::size_of::<Entry>() == 4);
const _: () = assert!(core::mem::size_of::<Chunk>() == 1024);
const _: () = assert!(core::mem::size_of::<Page>() == 4096);
// The largest node fits a page, and the run starts before any bitmap word fit its byte.
const _: () = assert!(MAX_NODE_WORDS <= PAGE_WORDS);
const _: () = assert!(CHUNK_ENTRIES - 32 <= 0xff);
// A leaf never looks like a child or a mark: the net takes 20 bits, the country 10 above it.
const _: () = assert!(COUNTRY_SHIFT == NET_BITS && COUNTRY_SHIFT + 10 <= 30);
const _: () = assert!(core::mem::size_of::<Net>() == 8);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_round_trip_every_country_and_net() {
        for country in 0..crate::COUNTRY_SLOTS as u16 {
            for net in [0, 1, 7, 0x1234, MAX_NETS - 2, MAX_NETS - 1] {
                let leaf = Leaf { country, net };
                let entry = Entry::leaf(leaf);
                assert!(!entry.is_child() && !entry.exception_marked());
                assert_eq!(entry.info(), leaf);
                assert_eq!(entry.with_exception_mark(true).info(), leaf);
            }
        }
        assert_eq!(Entry::leaf(Leaf::UNKNOWN), Entry::UNKNOWN);
        assert_eq!(Entry::UNKNOWN.info(), Leaf::UNKNOWN);
    }

    #[test]
    fn nets_decode_from_their_pages() {
        let mut words = [0u32; PAGE_WORDS];
        for n in 0..NETS_PER_PAGE {
            words[2 * n as usize] = n * 3;
            words[2 * n as usize + 1] = !n;
        }
        for n in [0, 1, 511, 512, 1023, MAX_NETS - 1] {
            let i = n % NETS_PER_PAGE;
            assert_eq!(
                page_net(&words, n),
                Net {
                    listed: i * 3,
                    lists: !i
                }
            );
        }
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
