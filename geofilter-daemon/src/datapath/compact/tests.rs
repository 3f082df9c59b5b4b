//! The encoder: every index of every chunk decodes to the entry it was, marks land on the runs
//! that hold them, and a kernel table reads back into the trie it encodes.

use geofilter_common::{
    PrefixInfo,
    table::{Leaf, Net},
};
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::*;
use crate::{family::Family, geoip, geoip::Prefix};

/// Every entry of every chunk, through the node it was encoded into.
fn assert_round_trip(table: &StrideTable, compact: &CompactTable) {
    for (index, chunk) in table.chunks.iter().enumerate() {
        let addr = compact.nodes[index];
        let page = &compact.pages[(addr >> PAGE_SHIFT) as usize].words;
        for (i, want) in chunk.entries.iter().enumerate() {
            let got = node_entry(page, (addr as usize) & (PAGE_WORDS - 1), i);
            let want = if want.is_child() {
                Entry::child(compact.nodes[want.child_index() as usize])
            } else {
                *want
            };
            assert_eq!(got, want, "chunk {index} entry {i}");
        }
    }
}

fn world(paths: &[std::path::PathBuf]) -> geoip::CompiledDb {
    if paths.is_empty() {
        geoip::embedded::load().unwrap()
    } else {
        geoip::load(paths, None).unwrap()
    }
}

/// Sizes of the compact table for a world database (the embedded one, or the CSV files in
/// `GEOFILTER_WORLD_CSV`, separated by `:`): `cargo test -p geofilter-daemon --release --
/// --ignored world_sizes --nocapture`.
#[test]
#[ignore = "a measurement: prints sizes"]
fn world_sizes() {
    let paths: Vec<std::path::PathBuf> = std::env::var("GEOFILTER_WORLD_CSV")
        .map(|v| v.split(':').map(Into::into).collect())
        .unwrap_or_default();
    let db = world(&paths);
    for (family, prefixes) in [(Family::V4, &db.v4), (Family::V6, &db.v6)] {
        let start = std::time::Instant::now();
        let table = StrideTable::build(family, prefixes).unwrap();
        let built = start.elapsed();
        let compact =
            CompactTable::encode(&table, &Marks::default(), &NetPages::default()).unwrap();
        let runs: usize = table.chunks.iter().map(runs).sum();
        println!(
            "{family:?}: {} prefixes, {} chunks ({} KiB as chunks), {runs} runs, {} pages \
             ({} KiB), node words {} ({} KiB); build {built:?}, encode {:?}",
            prefixes.len(),
            table.chunks.len(),
            table.chunks.len(),
            compact.pages.len(),
            compact.bytes() / 1024,
            table.chunks.iter().map(node_words).sum::<usize>(),
            table.chunks.iter().map(node_words).sum::<usize>() * 4 / 1024,
            start.elapsed() - built,
        );
        assert_round_trip(&table, &compact);
        let (per_lookup, lines) = cache_lines(&table, &compact, prefixes, 65_536);
        println!(
            "  65,536 sources: {per_lookup:.2} cache lines per lookup, {lines} distinct ({} KiB)",
            lines * 64 / 1024
        );
        // Candidate (b), DXR: a 65,536-entry direct root, and per split /16 one range
        // (16-bit key, 16-bit value through a dictionary) per maximal run of its addresses.
        let ranges: usize = (0..1 << 16)
            .map(|r| table.chunks[r >> 8].entries[r & 0xff])
            .filter(|e| e.is_child())
            .map(|e| {
                let mut last = None;
                flat_runs(&table, e.child_index(), &mut last)
            })
            .sum();
        println!(
            "  DXR estimate: {ranges} ranges, {} KiB with the root",
            (ranges * 4 + (1 << 16) * 4) / 1024
        );
    }
}

/// Cache lines one lookup reads (bitmap word, count word, value at each level), averaged over
/// `n` addresses inside random prefixes, and the distinct lines all of them read.
fn cache_lines(
    table: &StrideTable,
    compact: &CompactTable,
    prefixes: &[Prefix],
    n: usize,
) -> (f64, usize) {
    let mut rng = StdRng::seed_from_u64(5);
    let bits = table.family.bits();
    let mut all = std::collections::HashSet::new();
    let mut total = 0;
    for _ in 0..n {
        let q = prefixes[rng.random_range(0..prefixes.len())];
        let host = bits - u32::from(q.len);
        let addr = q.addr
            | if host == 0 {
                0
            } else {
                rng.random::<u128>() >> (128 - host)
            };
        let mut lines = std::collections::HashSet::new();
        let byte = |resolved: u32| (addr >> (bits - resolved) & 0xff) as usize;
        let (mut chunk, mut node, mut resolved) = (byte(8), node_addr(byte(8) as u32, 0), 16);
        loop {
            let i = byte(resolved);
            let c = &table.chunks[chunk];
            let rank = (1..=i)
                .filter(|&s| c.entries[s] != c.entries[s - 1])
                .count();
            let w = node as usize;
            for word in [
                w + i / 32,
                w + BITMAP_WORDS + i / 128,
                w + NODE_HEADER_WORDS + rank,
            ] {
                lines.insert(word / 16);
            }
            let e = c.entries[i];
            if !e.is_child() || resolved == bits {
                break;
            }
            chunk = e.child_index() as usize;
            node = compact.nodes[chunk];
            resolved += 8;
        }
        total += lines.len();
        all.extend(lines);
    }
    (total as f64 / n as f64, all.len())
}

/// Maximal runs of equal leaves under chunk `index`, in address order (`last`: the leaf before).
fn flat_runs(table: &StrideTable, index: u32, last: &mut Option<Entry>) -> usize {
    let mut runs = 0;
    for e in table.chunks[index as usize].entries {
        if e.is_child() {
            runs += flat_runs(table, e.child_index(), last);
        } else if *last != Some(e) {
            *last = Some(e);
            runs += 1;
        }
    }
    runs
}

fn p(addr: u128, len: u8, country: u16, source: u16) -> Prefix {
    Prefix {
        addr,
        len,
        info: PrefixInfo { country, source },
    }
}

/// Random nested prefixes around a few bases: chunks with one run, with 256 runs (every entry
/// its own), shared chunks, deep IPv6 levels.
fn random_prefixes(family: Family, rng: &mut StdRng) -> Vec<Prefix> {
    let bits = family.bits();
    let mask = if bits == 128 {
        u128::MAX
    } else {
        (1 << bits) - 1
    };
    let base = rng.random::<u128>() & mask;
    let mut out: Vec<Prefix> = (0..400)
        .map(|_| {
            let len = rng.random_range(4..=bits) as u8;
            let host = bits - u32::from(len);
            let raw = base ^ ((rng.random::<u128>() & mask) >> rng.random_range(4..bits));
            let addr = if host == 128 { 0 } else { raw >> host << host };
            p(addr, len, rng.random_range(1..250), rng.random_range(0..3))
        })
        .collect();
    // One chunk with 256 runs: 256 consecutive /24s (IPv4) or /24-deep blocks, alternating.
    let block = base >> (bits - 16) << (bits - 16);
    out.extend((0..256u128).map(|i| p(block | i << (bits - 24), 24, 1 + (i % 2) as u16, 0)));
    out
}

#[test]
fn every_entry_of_every_chunk_decodes_to_what_it_was() {
    let mut rng = StdRng::seed_from_u64(7);
    for round in 0..40 {
        let family = [Family::V4, Family::V6][round % 2];
        let prefixes = random_prefixes(family, &mut rng);
        let table = StrideTable::build(family, &prefixes).unwrap();
        let compact =
            CompactTable::encode(&table, &Marks::default(), &NetPages::default()).unwrap();
        assert_round_trip(&table, &compact);
        // The walk over the pages finds what the compiled trie does.
        for _ in 0..2000 {
            let addr = rng.random::<u128>() >> (128 - family.bits());
            let (entry, marked) = compact.lookup(family.bits(), addr);
            assert!(!entry.is_child() && !marked);
            assert_eq!(entry.info(), table.lookup(addr), "{addr:#x}");
        }
    }
    // The empty table: 256 root nodes of one run each, one page each, and one net page, all
    // zero (so a fresh kernel array needs no write).
    let empty = StrideTable::empty(Family::V6);
    let compact = CompactTable::encode(&empty, &Marks::default(), &NetPages::default()).unwrap();
    assert!(compact.pages == vec![Page::ZERO; NET_PAGE as usize + 1]);
    assert_round_trip(&empty, &compact);
}

/// The real slices, round trip, and nodes never cross a page nor their headers a cache line.
#[test]
fn real_slices_round_trip_and_nodes_stay_in_their_page() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/geo-whois-asn-country");
    let db = world(&[
        dir.join("geo-whois-asn-country-ipv4.slice.csv"),
        dir.join("geo-whois-asn-country-ipv6.slice.csv"),
    ]);
    for (family, prefixes) in [(Family::V4, &db.v4), (Family::V6, &db.v6)] {
        let table = StrideTable::build(family, prefixes).unwrap();
        let compact =
            CompactTable::encode(&table, &Marks::default(), &NetPages::default()).unwrap();
        assert_round_trip(&table, &compact);
        let mut spans: Vec<(u32, usize)> = table
            .chunks
            .iter()
            .zip(&compact.nodes)
            .map(|(c, &a)| (a, node_words(c)))
            .collect();
        spans.sort_unstable();
        for w in spans.windows(2) {
            assert!(w[0].0 as usize + w[0].1 <= w[1].0 as usize, "{w:?} overlap");
        }
        for (addr, words) in spans {
            let start = addr as usize & (PAGE_WORDS - 1);
            assert!(start + words <= PAGE_WORDS);
            assert_eq!(
                next_start(start),
                start,
                "a header straddles a line at {addr:#x}"
            );
        }
    }
}

/// A mark on any entry marks its whole run, and only mark bits change when marks do, so the
/// kernel can be rewritten in place.
#[test]
fn marks_land_on_runs_and_change_only_mark_bits() {
    let mut rng = StdRng::seed_from_u64(8);
    for round in 0..40 {
        let family = [Family::V4, Family::V6][round % 2];
        let bits = family.bits();
        let prefixes = random_prefixes(family, &mut rng);
        let table = StrideTable::build(family, &prefixes).unwrap();
        let plain = CompactTable::encode(&table, &Marks::default(), &NetPages::default()).unwrap();
        let mut marks = Marks::default();
        let target = prefixes[rng.random_range(0..prefixes.len())];
        let len = (target.len + rng.random_range(0..8)).min(bits as u8);
        marks.update(&table, target.addr, len, true);
        let marked = CompactTable::encode(&table, &marks, &NetPages::default()).unwrap();
        assert_eq!(plain.nodes, marked.nodes);
        for (a, b) in plain.pages.iter().zip(&marked.pages) {
            for (x, y) in a.words.iter().zip(&b.words) {
                assert_eq!(x & !ENTRY_EXCEPTION, y & !ENTRY_EXCEPTION);
            }
        }
        // Every address of the exception walks through a mark.
        let host = bits - u32::from(len);
        for _ in 0..300 {
            let offset = if host == 0 {
                0
            } else {
                rng.random::<u128>() >> (128 - host)
            };
            assert!(marked.lookup(bits, target.addr | offset).1);
        }
        // Rewriting the nodes in place after removing the mark gives the unmarked pages back.
        let changed = marks.update(&table, target.addr, len, false);
        let mut rewritten = marked.clone();
        for index in changed {
            rewritten.write_node(&table, &marks, index);
        }
        assert_eq!(rewritten.pages, plain.pages);
    }
}

/// Reading the kernel's pages back gives the same trie (up to chunk order) and the layout held.
#[test]
fn decoding_reads_back_the_trie_and_its_layout() {
    let mut rng = StdRng::seed_from_u64(9);
    for round in 0..20 {
        let family = [Family::V4, Family::V6][round % 2];
        let prefixes = random_prefixes(family, &mut rng);
        let table = StrideTable::build(family, &prefixes).unwrap();
        // Nets for every source the prefixes name, with listed indices and lists.
        let top = prefixes.iter().map(|p| p.info.source).max().unwrap_or(0) as u32;
        let nets = NetPages {
            nets: (0..=top)
                .map(|i| Net {
                    listed: i * 3,
                    lists: i.wrapping_mul(0x9e37_79b9),
                })
                .collect(),
        };
        let compact = CompactTable::encode(&table, &Marks::default(), &nets).unwrap();
        let decoded = decode(&compact.pages).unwrap();
        let (chunks, nodes) = (decoded.chunks, decoded.nodes);
        let mut want = nets.clone();
        let used = table
            .chunks
            .iter()
            .flat_map(|c| c.entries.iter())
            .filter(|e| !e.is_child())
            .map(|e| e.info().net)
            .max()
            .unwrap();
        want.nets.truncate(used as usize + 1);
        assert_eq!(decoded.nets, want);
        let mut back = StrideTable::empty(family);
        back.chunks = chunks;
        let mut again = CompactTable {
            pages: vec![Page::ZERO; compact.pages.len()],
            nodes,
        };
        for index in 0..back.chunks.len() {
            again.write_node(&back, &Marks::default(), index as u32);
        }
        again.write_nets(&decoded.nets);
        assert!(again.pages == compact.pages, "round {round}: pages differ");
        for _ in 0..500 {
            let addr = rng.random::<u128>() >> (128 - family.bits());
            assert_eq!(back.lookup(addr), table.lookup(addr));
        }
    }
    assert!(decode(&[Page::ZERO; 10]).is_err());
    // A child pointing past the pages is refused, not followed.
    // (All-zero pages are the empty table: 256 unknown root nodes, no ASN listed, net 0.)
    let mut pages = vec![Page::ZERO; NET_PAGE as usize + 1];
    let empty = decode(&pages).unwrap();
    assert_eq!(empty.chunks, vec![Chunk::EMPTY; ROOT_CHUNKS as usize]);
    assert_eq!(empty.nets.nets, vec![Net::default()]);
    pages[0].words[NODE_HEADER_WORDS] = Entry::child(node_addr(5000, 0)).0;
    assert!(decode(&pages).unwrap_err().contains("past the 257 pages"));
    // So is a leaf naming a net past the net pages.
    let mut pages = vec![Page::ZERO; NET_PAGE as usize + 1];
    pages[0].words[NODE_HEADER_WORDS] = Entry::leaf(Leaf {
        country: 5,
        net: 600,
    })
    .0;
    assert!(decode(&pages).unwrap_err().contains("names net 600"));
}
