//! The country tables: fixed-stride, direct-indexed (layout in `geofilter_common::table`).
//!
//! A lookup is at most one load per address byte after the first, with no loop the verifier has
//! to explore beyond the address length: IPv4 takes 1 to 3 dependent loads, IPv6 1 to 15 (2 to 4
//! for nearly every address of a world database; the deep levels exist for the few ranges that
//! end inside a /64).
//!
//! Atomic replacement: each family's whole table is one inner `ARRAY` in slot 0 of an
//! `ARRAY_OF_MAPS`. A lookup fetches the inner map once and takes every level from it, so a
//! packet reads either the old table or the new one, never a mix. The daemon swaps the slot with
//! one `bpf_map_update_elem`; the kernel frees the old array only after an RCU grace period, when
//! no program run that looked it up can still be reading it (kernel/bpf/map_in_map.c,
//! `bpf_map_fd_put_ptr`; <https://docs.kernel.org/bpf/map_of_maps.html>).

use aya_ebpf::{
    btf_maps::{Array, ArrayOfMaps},
    macros::btf_map,
};
use geofilter_common::{
    PrefixInfo,
    maps::{BPF_F_INNER_MAP, TABLE_TEMPLATE_CHUNKS},
    table::{CHUNK_ENTRIES, Chunk, ENTRY_EXCEPTION, Entry},
};

use crate::filter::{CountryTables, Found};

/// One family's table. `BPF_F_INNER_MAP` lets tables of any size share the slot (see
/// `geofilter_common::maps::BPF_F_INNER_MAP` for what that costs). Its value is declared as the
/// chunk's entry array, not the `Chunk` struct: see [`crate::maps::InnerValue`] for why an inner
/// map's value must not be a struct in BTF.
type Table = Array<ChunkEntries, { TABLE_TEMPLATE_CHUNKS as usize }, { BPF_F_INNER_MAP as usize }>;

/// A [`Chunk`]'s only field, the same bytes (`Chunk` is `repr(C)` around it).
type ChunkEntries = [Entry; CHUNK_ENTRIES];
const _: () = assert!(core::mem::size_of::<ChunkEntries>() == core::mem::size_of::<Chunk>());

#[btf_map]
static GF_TABLE_V4: ArrayOfMaps<Table, 1> = ArrayOfMaps::new();

#[btf_map]
static GF_TABLE_V6: ArrayOfMaps<Table, 1> = ArrayOfMaps::new();

/// A table missing or cut short (never the case once the daemon has installed one): the address
/// has no country, and exceptions are looked up as if no table could rule them out.
const MISSING: Found = Found {
    info: PrefixInfo::UNKNOWN,
    exception_possible: true,
};

/// Walks `table` for the address `key` (network order).
#[inline(always)]
fn lookup<const N: usize>(table: &Table, key: &[u8; N]) -> Found {
    // The root: the first byte picks one of chunks 0..=255, the second byte the entry. One load
    // resolves a /16.
    let Some(root) = table.get(u32::from(key[0])) else {
        return MISSING;
    };
    let mut entry = root[usize::from(key[1])];
    let mut marks = entry.0;
    // Each further byte indexes the chunk the entry points to, until an entry is a leaf.
    for &byte in &key[2..] {
        if !entry.is_child() {
            break;
        }
        let Some(chunk) = table.get(entry.child_index()) else {
            return MISSING;
        };
        entry = chunk[usize::from(byte)];
        marks |= entry.0;
    }
    Found {
        // A child entry at the last byte is a malformed table: read it as no country.
        info: if entry.is_child() {
            PrefixInfo::UNKNOWN
        } else {
            entry.info()
        },
        exception_possible: marks & ENTRY_EXCEPTION != 0,
    }
}

pub struct Stride;

impl CountryTables for Stride {
    #[inline(always)]
    fn v4(addr: [u8; 4]) -> Found {
        match GF_TABLE_V4.get(0) {
            Some(table) => lookup(table, &addr),
            None => MISSING,
        }
    }

    #[inline(always)]
    fn v6(addr: [u8; 16]) -> Found {
        match GF_TABLE_V6.get(0) {
            Some(table) => lookup(table, &addr),
            None => MISSING,
        }
    }
}
