//! Compiling prefixes into the stride trie the program walks (layout:
//! [`geofilter_common::table`]; the kernel holds each chunk as a node, [`super::compact`]), and
//! placing the exception marks on it.
//!
//! The compiler fills the 65,536-entry root (one entry per /16), then one 256-entry chunk per
//! block that a prefix boundary splits, one byte at a time. Identical chunks are stored once:
//! the deep IPv6 levels in particular repeat the same few shapes (a world database shrinks to
//! about half its chunks).
//!
//! Prefixes may nest; the most specific one decides, as in an LPM table, so any prefix list the
//! kernel's LPM trie would accept gives the same answers here.

use std::{
    collections::{BTreeMap, HashMap},
    hash::{BuildHasherDefault, Hasher},
};

use geofilter_common::{
    PrefixInfo, UNKNOWN_COUNTRY,
    table::{CHUNK_ENTRIES, Chunk, Entry, Leaf, MAX_CHUNKS, ROOT_CHUNKS},
};

use crate::{family::Family, geoip::Prefix};

/// One prefix of a table: the [`Leaf`] (country and net) of its addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TablePrefix {
    /// The network address within its family (IPv4: below 2^32), host bits zero.
    pub addr: u128,
    pub len: u8,
    pub leaf: Leaf,
}

/// A country database's prefix in a table without ASN data or lists: its net is its source
/// (the database file), so the table keeps the prefixes of different files apart exactly as the
/// database does, and every net is "no ASN, no list".
impl From<Prefix> for TablePrefix {
    fn from(p: Prefix) -> Self {
        Self {
            addr: p.addr,
            len: p.len,
            leaf: leaf_of(p.info),
        }
    }
}

/// The leaf of a country-only prefix (see `From<Prefix>`): an unknown country is the unknown
/// leaf, whatever its source.
pub fn leaf_of(info: PrefixInfo) -> Leaf {
    if info.country == UNKNOWN_COUNTRY {
        Leaf::UNKNOWN
    } else {
        Leaf {
            country: info.country,
            net: u32::from(info.source),
        }
    }
}

/// Entries of the root: the address's first two bytes.
const ROOT_BITS: u32 = 16;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("the table needs more than {MAX_CHUNKS} chunks")]
    TooManyChunks,
    #[error("prefix {addr:#x}/{len} is not a valid prefix of a {bits}-bit address")]
    BadPrefix { addr: u128, len: u8, bits: u32 },
}

/// One family's table as compiled, without exception marks.
#[derive(Clone, Debug)]
pub struct StrideTable {
    pub family: Family,
    /// Chunks `0..ROOT_CHUNKS` are the root; the rest are reached through child entries.
    pub chunks: Vec<Chunk>,
}

impl StrideTable {
    /// A table where every address is unknown.
    pub fn empty(family: Family) -> Self {
        Self {
            family,
            chunks: vec![Chunk::EMPTY; ROOT_CHUNKS as usize],
        }
    }

    /// Compiles `prefixes` (any order; nested prefixes resolve to the most specific, duplicates
    /// to the later one).
    pub fn build<P: Copy + Into<TablePrefix>>(
        family: Family,
        prefixes: &[P],
    ) -> Result<Self, BuildError> {
        let prefixes: Vec<TablePrefix> = prefixes.iter().map(|&p| p.into()).collect();
        Self::build_prefixes(family, &prefixes)
    }

    fn build_prefixes(family: Family, prefixes: &[TablePrefix]) -> Result<Self, BuildError> {
        let bits = family.bits();
        for p in prefixes {
            let host_bits = bits.checked_sub(u32::from(p.len));
            let aligned = host_bits.is_some_and(|h| h == 128 || p.addr & ((1u128 << h) - 1) == 0);
            if !aligned || (bits < 128 && p.addr >> bits != 0) {
                return Err(BuildError::BadPrefix {
                    addr: p.addr,
                    len: p.len,
                    bits,
                });
            }
        }
        // Outer prefixes before the prefixes they contain; a stable sort keeps duplicates in
        // order. Compiled databases arrive sorted and disjoint, so this is usually a no-op check.
        let sorted;
        let prefixes = if prefixes.is_sorted_by_key(|p| (p.addr, p.len)) {
            prefixes
        } else {
            let mut copy = prefixes.to_vec();
            copy.sort_by_key(|p| (p.addr, p.len));
            sorted = copy;
            &sorted
        };
        let mut builder = Builder {
            bits,
            chunks: vec![Chunk::EMPTY; ROOT_CHUNKS as usize],
            shared: HashMap::default(),
        };
        let mut root = vec![Entry::UNKNOWN; 1 << ROOT_BITS];
        builder.fill(&mut root, 0, bits - ROOT_BITS, prefixes)?;
        for (chunk, entries) in builder.chunks.iter_mut().zip(root.chunks(CHUNK_ENTRIES)) {
            chunk.entries.copy_from_slice(entries);
        }
        Ok(Self {
            family,
            chunks: builder.chunks,
        })
    }

    /// What the program finds for `addr` (the host's copy of its walk, for tests and checks).
    pub fn lookup(&self, addr: u128) -> Leaf {
        let bits = self.family.bits();
        let root = (addr >> (bits - ROOT_BITS)) as usize;
        let mut entry = self.chunks[root >> 8].entries[root & 0xff];
        let mut resolved = ROOT_BITS;
        while entry.is_child() && resolved < bits {
            resolved += 8;
            let byte = (addr >> (bits - resolved)) as u8;
            entry = self.chunks[entry.child_index() as usize].entries[usize::from(byte)];
        }
        if entry.is_child() {
            Leaf::UNKNOWN
        } else {
            entry.info()
        }
    }

    /// Calls `mark(chunk, entry)` for each entry that must carry the exception mark so that
    /// every address of the exception `addr/len` passes through a marked entry.
    ///
    /// The walk follows the exception's bits down the table. Where the exception covers whole
    /// entries of a chunk, those entries are marked; where it ends inside a leaf, that leaf is
    /// marked (then all addresses of the leaf look exceptions up, a superset of the exception).
    /// A chunk shared by several parents carries the mark for all of them: again a superset.
    pub fn exception_marks(&self, addr: u128, len: u8, mut mark: impl FnMut(u32, usize)) {
        let bits = self.family.bits();
        let len = u32::from(len).min(bits);
        let root = (addr >> (bits - ROOT_BITS)) as usize;
        if len <= ROOT_BITS {
            for i in root..root + (1 << (ROOT_BITS - len)) {
                mark((i >> 8) as u32, i & 0xff);
            }
            return;
        }
        let (mut chunk, mut entry) = ((root >> 8) as u32, root & 0xff);
        let mut resolved = ROOT_BITS;
        loop {
            let e = self.chunks[chunk as usize].entries[entry];
            if !e.is_child() {
                mark(chunk, entry);
                return;
            }
            chunk = e.child_index();
            resolved += 8;
            let first = ((addr >> (bits - resolved)) & 0xff) as usize;
            if len <= resolved {
                for i in first..first + (1 << (resolved - len)) {
                    mark(chunk, i);
                }
                return;
            }
            entry = first;
        }
    }
}

struct Builder {
    bits: u32,
    chunks: Vec<Chunk>,
    /// Chunks already stored, by content, for sharing.
    shared: HashMap<Chunk, u32, BuildHasherDefault<ChunkHasher>>,
}

impl Builder {
    /// Fills `entries`, which cover `entries.len() << shift` addresses from `base`, with
    /// `prefixes` (sorted by address then length, all inside that span).
    fn fill(
        &mut self,
        entries: &mut [Entry],
        base: u128,
        shift: u32,
        prefixes: &[TablePrefix],
    ) -> Result<(), BuildError> {
        let mut i = 0;
        while i < prefixes.len() {
            let p = prefixes[i];
            let slot = ((p.addr - base) >> shift) as usize;
            let host_bits = self.bits - u32::from(p.len);
            if host_bits >= shift {
                // The prefix covers whole entries.
                let n = 1usize << (host_bits - shift);
                entries[slot..slot + n].fill(Entry::leaf(p.leaf));
                i += 1;
                continue;
            }
            // The prefix ends inside one entry: that entry becomes a chunk holding every
            // following prefix that starts inside it (sorting puts none that is larger there).
            let entry_base = base + ((slot as u128) << shift);
            // (The last /16 of IPv6 ends at 2^128, past u128: then every prefix left is inside.)
            let n = match entry_base.checked_add(1u128 << shift) {
                Some(entry_end) => prefixes[i..].partition_point(|q| q.addr < entry_end),
                None => prefixes.len() - i,
            };
            let outer = entries[slot];
            let child = self.chunk(outer, entry_base, shift - 8, &prefixes[i..i + n])?;
            entries[slot] = Entry::child(child);
            i += n;
        }
        Ok(())
    }

    /// Stores the chunk for the `1 << (shift + 8)` addresses from `base`, where `outer` (a leaf)
    /// applies unless a prefix says otherwise; returns its index.
    fn chunk(
        &mut self,
        outer: Entry,
        base: u128,
        shift: u32,
        prefixes: &[TablePrefix],
    ) -> Result<u32, BuildError> {
        let mut chunk = Chunk {
            entries: [outer; CHUNK_ENTRIES],
        };
        self.fill(&mut chunk.entries, base, shift, prefixes)?;
        if let Some(&index) = self.shared.get(&chunk) {
            return Ok(index);
        }
        let index = u32::try_from(self.chunks.len())
            .ok()
            .filter(|&i| i < MAX_CHUNKS)
            .ok_or(BuildError::TooManyChunks)?;
        self.chunks.push(chunk);
        self.shared.insert(chunk, index);
        Ok(index)
    }
}

/// FxHash-style hashing of a chunk's words: the chunks are our own data, so a fast hash with no
/// flooding resistance is the right trade (SipHash over 47k 1 KiB chunks costs tens of ms).
#[derive(Default)]
struct ChunkHasher(u64);

impl Hasher for ChunkHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            self.write_u64(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        for &b in words.remainder() {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// Reference counts of exception marks on one table: entry → how many exceptions need its mark.
/// Kept so that removing one exception clears exactly the marks no other exception needs.
#[derive(Clone, Debug, Default)]
pub struct Marks {
    counts: BTreeMap<(u32, u8), u32>,
}

impl Marks {
    /// Adds (or with `add == false` removes) the marks of one exception; returns the chunks
    /// whose marked form changed.
    pub fn update(&mut self, table: &StrideTable, addr: u128, len: u8, add: bool) -> Vec<u32> {
        let mut changed = Vec::new();
        table.exception_marks(addr, len, |chunk, entry| {
            let key = (chunk, entry as u8);
            let flipped = if add {
                let count = self.counts.entry(key).or_insert(0);
                *count += 1;
                *count == 1
            } else {
                match self.counts.get_mut(&key) {
                    Some(count) if *count > 1 => {
                        *count -= 1;
                        false
                    }
                    Some(_) => {
                        self.counts.remove(&key);
                        true
                    }
                    None => false,
                }
            };
            if flipped && changed.last() != Some(&chunk) {
                changed.push(chunk);
            }
        });
        changed.sort_unstable();
        changed.dedup();
        changed
    }

    /// The entries of chunk `index` that carry a mark.
    pub fn marked_entries(&self, index: u32) -> impl Iterator<Item = usize> + '_ {
        self.counts
            .range((index, 0)..=(index, u8::MAX))
            .map(|(&(_, entry), _)| usize::from(entry))
    }
}

#[cfg(test)]
mod tests;
