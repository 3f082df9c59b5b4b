//! The encoder: every index of every chunk decodes to the entry it was, marks land on the runs
//! that hold them, and a kernel table reads back into the trie it encodes.

use geofilter_common::PrefixInfo;

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
        let compact = CompactTable::encode(&table, &Marks::default()).unwrap();
        let runs: usize = table.chunks.iter().map(|c| run_starts(c).count()).sum();
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
