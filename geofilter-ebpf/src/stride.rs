//! The country tables: a stride trie held as compact nodes in pages (layout in
//! `geofilter_common::table`).
//!
//! A lookup takes one array lookup per address byte after the first, each bringing the whole
//! node for that byte (a 256-bit bitmap, run counts and the run values, all in one 4 KiB page),
//! then one bitmap word, one count byte and one value from it: IPv4 takes 1 to 3 levels, IPv6 1
//! to 15 (2 to 4 for nearly every address of a world database; the deep levels exist for the
//! few ranges that end inside a /64). There is no loop the verifier has to explore beyond the
//! address length. Every lookup of the inner array is a helper call: the verifier inlines
//! `ARRAY` lookups only for maps without `BPF_F_INNER_MAP` (kernel/bpf/arraymap.c,
//! `array_map_gen_lookup` returns `-EOPNOTSUPP` for them), which is why a node never spans two
//! pages.
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
    maps::{BPF_F_INNER_MAP, TABLE_TEMPLATE_PAGES},
    table::{
        ENTRY_EXCEPTION, Leaf, MAX_NETS, NET_PAGE, NETS_PER_PAGE, Net, PAGE_SHIFT, PAGE_WORDS,
        Page, node_entry, page_net,
    },
};

use crate::filter::{CountryTables, Found};

/// One family's table. `BPF_F_INNER_MAP` lets tables of any size share the slot (see
/// `geofilter_common::maps::BPF_F_INNER_MAP` for what that costs). Its value is declared as the
/// page's word array, not the `Page` struct: see [`crate::maps::InnerValue`] for why an inner
/// map's value must not be a struct in BTF.
type Table = Array<PageWords, { TABLE_TEMPLATE_PAGES as usize }, { BPF_F_INNER_MAP as usize }>;

/// A [`Page`]'s only field, the same bytes (`Page` is `repr(C)` around it).
type PageWords = [u32; PAGE_WORDS];
const _: () = assert!(core::mem::size_of::<PageWords>() == core::mem::size_of::<Page>());

#[btf_map]
static GF_TABLE_V4: ArrayOfMaps<Table, 1> = ArrayOfMaps::new();

#[btf_map]
static GF_TABLE_V6: ArrayOfMaps<Table, 1> = ArrayOfMaps::new();

/// A table missing or cut short (never the case once the daemon has installed one): the address
/// has no country, and exceptions are looked up as if no table could rule them out.
const MISSING: Found = Found {
    leaf: Leaf::UNKNOWN,
    net: Net {
        listed: 0,
        lists: 0,
    },
    exception_possible: true,
};

/// Byte `i` of `key` as an index the verifier knows is below 256.
///
/// The address may reach here in a register as a wider word (an IPv4 address taken from an IPv6
/// source that embeds it, `geofilter_common::embedded`), and LLVM then indexes with `word >> 24`
/// without a mask, since it knows the upper bits are zero; the 6.1 verifier (Debian 6.1.0-57)
/// does not, and refused the load ("R0 unbounded memory access"). A volatile byte load from the
/// key's stack copy is a `ldxb`, which every verifier bounds to 255; 6.18 took either form.
#[inline(always)]
fn byte_at<const N: usize>(key: &[u8; N], i: usize) -> usize {
    // SAFETY: `i < N` at every call site (the loop below and the two root bytes); the reference
    // is valid and aligned for a `u8`.
    usize::from(unsafe { core::ptr::read_volatile(&key[i]) })
}

/// Walks `table` for the address `key` (network order); with `want_net`, also reads the net the
/// leaf names (its ASN's listed index and its lists), from the same table (so from the same
/// reload).
#[inline(always)]
fn lookup<const N: usize>(table: &Table, key: &[u8; N], want_net: bool) -> Found {
    // The root: the first byte picks the page whose node at word 0 is that root chunk, the
    // second byte the entry. One array lookup resolves a /16.
    let Some(root) = table.get(byte_at(key, 0) as u32) else {
        return MISSING;
    };
    let mut entry = node_entry(root, 0, byte_at(key, 1));
    let mut marks = entry.0;
    // Each further byte indexes the node the entry points to, until an entry is a leaf.
    for i in 2..N {
        if !entry.is_child() {
            break;
        }
        let addr = entry.child_index();
        let Some(page) = table.get(addr >> PAGE_SHIFT) else {
            return MISSING;
        };
        entry = node_entry(page, addr as usize & (PAGE_WORDS - 1), byte_at(key, i));
        marks |= entry.0;
    }
    let exception_possible = marks & ENTRY_EXCEPTION != 0;
    // A child entry at the last byte is a malformed table: read it as no country.
    if entry.is_child() {
        return Found {
            exception_possible,
            ..MISSING
        };
    }
    let leaf = entry.info();
    let mut found = Found {
        leaf,
        exception_possible,
        ..MISSING
    };
    if want_net && leaf.net != 0 {
        found.net = net(table, leaf.net);
    }
    found
}

/// Net `id` of `table` (no ASN and no list when its page is missing: never the case in a table
/// the daemon wrote, which has a page for every net its leaves name).
#[inline(always)]
fn net(table: &Table, id: u32) -> Net {
    match table.get(NET_PAGE + (id & (MAX_NETS - 1)) / NETS_PER_PAGE) {
        Some(page) => page_net(page, id),
        None => MISSING.net,
    }
}

pub struct Stride;

impl CountryTables for Stride {
    #[inline(always)]
    fn v4(addr: [u8; 4], want_net: bool) -> Found {
        match GF_TABLE_V4.get(0) {
            Some(table) => lookup(table, &addr, want_net),
            None => MISSING,
        }
    }

    #[inline(always)]
    fn v6(addr: [u8; 16], want_net: bool) -> Found {
        match GF_TABLE_V6.get(0) {
            Some(table) => lookup(table, &addr, want_net),
            None => MISSING,
        }
    }
}
