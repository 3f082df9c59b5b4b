//! Compiling prefixes into the fixed-stride tables the program walks (layout:
//! [`geofilter_common::table`]), and placing the exception marks on them.
//!
//! The compiler fills the 65,536-entry root (one entry per /16), then one 256-entry chunk per
//! block that a prefix boundary splits, one byte at a time. Identical chunks are stored once:
//! the deep IPv6 levels in particular repeat the same few shapes (a world database shrinks to
//! about half its chunks).
//!
//! Prefixes may nest; the most specific one decides, as in an LPM table, so any prefix list the
//! kernel's LPM trie would accept gives the same answers here.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    hash::{BuildHasherDefault, Hasher},
};

use geofilter_common::{
    PrefixInfo,
    table::{CHUNK_ENTRIES, Chunk, Entry, MAX_CHUNKS, ROOT_CHUNKS},
};

use crate::{family::Family, geoip::Prefix};

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
    pub fn build(family: Family, prefixes: &[Prefix]) -> Result<Self, BuildError> {
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
    pub fn lookup(&self, addr: u128) -> PrefixInfo {
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
            PrefixInfo::UNKNOWN
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

    /// Bytes the kernel array holding this table takes for its values.
    pub fn value_bytes(&self) -> usize {
        self.chunks.len() * size_of::<Chunk>()
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
        prefixes: &[Prefix],
    ) -> Result<(), BuildError> {
        let mut i = 0;
        while i < prefixes.len() {
            let p = prefixes[i];
            let slot = ((p.addr - base) >> shift) as usize;
            let host_bits = self.bits - u32::from(p.len);
            if host_bits >= shift {
                // The prefix covers whole entries.
                let n = 1usize << (host_bits - shift);
                entries[slot..slot + n].fill(Entry::leaf(p.info));
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
        prefixes: &[Prefix],
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

    /// `table`'s chunk `index` as the kernel holds it: with its exception marks.
    pub fn render(&self, table: &StrideTable, index: u32) -> Chunk {
        let mut chunk = table.chunks[index as usize];
        for (&(_, entry), _) in self.counts.range((index, 0)..=(index, u8::MAX)) {
            let e = &mut chunk.entries[usize::from(entry)];
            *e = e.with_exception_mark(true);
        }
        chunk
    }

    /// Chunks that carry at least one mark.
    pub fn marked_chunks(&self) -> BTreeSet<u32> {
        self.counts.keys().map(|&(chunk, _)| chunk).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use geofilter_common::{UNKNOWN_COUNTRY, country::country_id};
    use rand::{Rng, SeedableRng, rngs::StdRng};

    use super::*;
    use crate::geoip;

    fn info(code: &[u8; 2], source: u16) -> PrefixInfo {
        PrefixInfo {
            country: country_id(*code).unwrap(),
            source,
        }
    }

    fn p(addr: u128, len: u8, info: PrefixInfo) -> Prefix {
        Prefix { addr, len, info }
    }

    /// The LPM rule restated: the longest prefix containing `addr`, the later one among equals.
    fn reference(prefixes: &[Prefix], bits: u32, addr: u128) -> PrefixInfo {
        let mut best: Option<(u8, PrefixInfo)> = None;
        for q in prefixes {
            let host = bits - u32::from(q.len);
            let contains = host == 128 || (addr >> host) == (q.addr >> host);
            if contains && best.is_none_or(|(len, _)| q.len >= len) {
                best = Some((q.len, q.info));
            }
        }
        best.map_or(PrefixInfo::UNKNOWN, |(_, i)| i)
    }

    /// Every prefix's first and last address and their neighbours, plus random addresses.
    fn probes(prefixes: &[Prefix], bits: u32, random: usize, rng: &mut StdRng) -> Vec<u128> {
        let max = if bits == 128 {
            u128::MAX
        } else {
            (1u128 << bits) - 1
        };
        let mut out = vec![0, max];
        for q in prefixes {
            let host = bits - u32::from(q.len);
            let last = q.addr
                | if host == 128 {
                    u128::MAX
                } else {
                    (1u128 << host) - 1
                };
            out.extend([
                q.addr,
                q.addr.saturating_sub(1),
                last,
                last.saturating_add(1).min(max),
            ]);
        }
        for _ in 0..random {
            out.push(rng.random::<u128>() & max);
        }
        out
    }

    fn check(family: Family, prefixes: &[Prefix], rng: &mut StdRng) {
        let table = StrideTable::build(family, prefixes).unwrap();
        let bits = family.bits();
        for addr in probes(prefixes, bits, 2000, rng) {
            assert_eq!(
                table.lookup(addr),
                reference(prefixes, bits, addr),
                "{family:?} {addr:#x} in {prefixes:x?}"
            );
        }
    }

    #[test]
    fn hand_written_tables_answer_like_an_lpm_table() {
        let mut rng = StdRng::seed_from_u64(1);
        let (de, ru, fr) = (info(b"DE", 0), info(b"RU", 1), info(b"FR", 0));
        let v4 = |a: [u8; 4]| u128::from(u32::from_be_bytes(a));
        check(Family::V4, &[], &mut rng);
        check(Family::V4, &[p(0, 0, de)], &mut rng);
        check(
            Family::V4,
            &[
                p(v4([5, 45, 192, 0]), 18, ru),
                p(v4([46, 114, 0, 0]), 16, de),
                // A /8 (256 root entries), a /32, a /25 and a /31 next to each other.
                p(v4([10, 0, 0, 0]), 8, fr),
                p(v4([192, 0, 2, 1]), 32, ru),
                p(v4([192, 0, 2, 128]), 25, de),
                p(v4([192, 0, 2, 2]), 31, fr),
            ],
            &mut rng,
        );
        // Nesting, in any order: /8 > /20 > /32, and a duplicate where the later one wins.
        check(
            Family::V4,
            &[
                p(v4([7, 1, 2, 3]), 32, ru),
                p(v4([7, 0, 0, 0]), 8, de),
                p(v4([7, 1, 0, 0]), 20, fr),
                p(v4([9, 0, 0, 0]), 24, de),
                p(v4([9, 0, 0, 0]), 24, ru),
            ],
            &mut rng,
        );
        let v6 = |s: &str| u128::from(s.parse::<std::net::Ipv6Addr>().unwrap());
        check(
            Family::V6,
            &[
                p(v6("2a01:598::"), 32, de),
                p(v6("2a02:6b8::"), 32, ru),
                p(v6("2001:db8::"), 48, fr),
                // Ranges ending inside a /64, down to single addresses.
                p(v6("2001:db8:1:2:3:4:5:6"), 128, ru),
                p(v6("2001:db8:1:2::"), 70, de),
                p(v6("2001:db8:1:2:ffff::"), 80, fr),
                p(v6("::"), 1, de),
            ],
            &mut rng,
        );
    }

    #[test]
    fn random_prefix_sets_answer_like_an_lpm_table() {
        let mut rng = StdRng::seed_from_u64(2);
        for round in 0..200 {
            let family = if round % 2 == 0 {
                Family::V4
            } else {
                Family::V6
            };
            let bits = family.bits();
            // Prefixes clustered under a few /12s so that they nest and share chunks.
            let clusters: Vec<u128> = (0..3).map(|_| rng.random::<u128>()).collect();
            let prefixes: Vec<Prefix> = (0..rng.random_range(1..40))
                .map(|_| {
                    let len = rng.random_range(0..=bits) as u8;
                    let raw = (clusters[rng.random_range(0..3)] ^ (rng.random::<u128>() >> 12))
                        >> (128 - bits);
                    let host = bits - u32::from(len);
                    let addr = if host == 128 { 0 } else { raw >> host << host };
                    let country = rng.random_range(1..=676);
                    p(
                        addr,
                        len,
                        PrefixInfo {
                            country,
                            source: rng.random_range(0..3),
                        },
                    )
                })
                .collect();
            check(family, &prefixes, &mut rng);
        }
    }

    #[test]
    fn bad_prefixes_are_refused() {
        let de = info(b"DE", 0);
        assert!(StrideTable::build(Family::V4, &[p(1, 24, de)]).is_err());
        assert!(StrideTable::build(Family::V4, &[p(1 << 32, 8, de)]).is_err());
        assert!(StrideTable::build(Family::V4, &[p(0, 33, de)]).is_err());
        assert!(StrideTable::build(Family::V6, &[p(1, 129, de)]).is_err());
    }

    /// The real geo-whois-asn-country slices (with their nested ranges), compiled as the daemon
    /// compiles them, against the database's own lookup.
    #[test]
    fn real_database_slices_match_the_compiled_database() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/geo-whois-asn-country");
        let db = geoip::load(
            &[
                dir.join("geo-whois-asn-country-ipv4.slice.csv"),
                dir.join("geo-whois-asn-country-ipv6.slice.csv"),
            ],
            None,
        )
        .unwrap();
        let mut rng = StdRng::seed_from_u64(3);
        for (family, prefixes) in [(Family::V4, &db.v4), (Family::V6, &db.v6)] {
            let table = StrideTable::build(family, prefixes).unwrap();
            let mut probes = probes(prefixes, family.bits(), 20_000, &mut rng);
            // Random addresses inside the database's prefixes, not just anywhere.
            for _ in 0..20_000 {
                let q = prefixes[rng.random_range(0..prefixes.len())];
                let host = family.bits() - u32::from(q.len);
                let offset = if host == 0 {
                    0
                } else {
                    rng.random::<u128>() >> (128 - host)
                };
                probes.push(q.addr | offset);
            }
            for addr in probes {
                let ip = match family {
                    Family::V4 => IpAddr::from((addr as u32).to_be_bytes()),
                    Family::V6 => IpAddr::from(addr.to_be_bytes()),
                };
                let want = db.lookup(ip).map_or(PrefixInfo::UNKNOWN, |q| q.info);
                assert_eq!(table.lookup(addr), want, "{ip}");
            }
        }
    }

    /// Every address an exception covers passes through a marked entry; addresses far from it
    /// do not (the marks are where the walk puts them, not everywhere).
    #[test]
    fn exception_marks_cover_their_addresses() {
        let mut rng = StdRng::seed_from_u64(4);
        for round in 0..100 {
            let family = if round % 2 == 0 {
                Family::V4
            } else {
                Family::V6
            };
            let bits = family.bits();
            let mask = if bits == 128 {
                u128::MAX
            } else {
                (1 << bits) - 1
            };
            let base = rng.random::<u128>() & mask;
            let prefixes: Vec<Prefix> = (0..30)
                .map(|_| {
                    let len = rng.random_range(8..=bits) as u8;
                    let host = bits - u32::from(len);
                    let raw = base ^ ((rng.random::<u128>() & mask) >> rng.random_range(8..bits));
                    p(raw >> host << host, len, info(b"DE", 0))
                })
                .collect();
            let table = StrideTable::build(family, &prefixes).unwrap();
            let mut marks = Marks::default();
            let len = rng.random_range(0..=bits) as u8;
            let host = bits - u32::from(len);
            let ex = if host == 128 {
                0
            } else {
                (base ^ rng.random::<u128>() & mask) >> host << host
            };
            let changed = marks.update(&table, ex, len, true);
            let marked: BTreeSet<(u32, u8)> = marks.counts.keys().copied().collect();
            assert!(!changed.is_empty());
            for _ in 0..500 {
                let offset = if host == 0 {
                    0
                } else {
                    rng.random::<u128>() >> (128 - host)
                };
                let addr = ex | offset;
                assert!(
                    path_marked(&table, &marked, addr),
                    "{addr:#x} in {ex:#x}/{len}"
                );
            }
            // Adding and removing a second exception leaves exactly the first one's marks.
            let other = rng.random::<u128>() & mask;
            marks.update(&table, other >> (bits - 24) << (bits - 24), 24, true);
            marks.update(&table, other >> (bits - 24) << (bits - 24), 24, false);
            assert_eq!(
                marks.counts.keys().copied().collect::<BTreeSet<_>>(),
                marked
            );
            marks.update(&table, ex, len, false);
            assert!(marks.counts.is_empty());
        }
    }

    fn path_marked(table: &StrideTable, marked: &BTreeSet<(u32, u8)>, addr: u128) -> bool {
        let bits = table.family.bits();
        let root = (addr >> (bits - ROOT_BITS)) as usize;
        let (mut chunk, mut entry) = ((root >> 8) as u32, (root & 0xff) as u8);
        let mut resolved = ROOT_BITS;
        loop {
            if marked.contains(&(chunk, entry)) {
                return true;
            }
            let e = table.chunks[chunk as usize].entries[usize::from(entry)];
            if !e.is_child() || resolved == bits {
                return false;
            }
            resolved += 8;
            chunk = e.child_index();
            entry = (addr >> (bits - resolved)) as u8;
        }
    }

    #[test]
    fn unknown_leaves_carry_no_source() {
        let table = StrideTable::build(Family::V4, &[]).unwrap();
        assert_eq!(table.lookup(0x0102_0304).country, UNKNOWN_COUNTRY);
        assert_eq!(table.chunks.len(), ROOT_CHUNKS as usize);
    }
}
