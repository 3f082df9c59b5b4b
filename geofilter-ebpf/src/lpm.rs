//! The country tables of the LPM-trie variant (`geofilter-lpm`): the kernel's LPM trie with the
//! same prefixes, kept as the benchmark baseline and as an independent oracle for tests. Each
//! family's trie sits in slot 0 of an `ARRAY_OF_MAPS`, swapped whole like the stride tables.

use aya_ebpf::{
    btf_maps::{ArrayOfMaps, LpmTrie, lpm_trie::Key},
    macros::btf_map,
};
use geofilter_common::{
    PrefixInfo, UNKNOWN_COUNTRY,
    maps::TABLE_CAPACITY,
    table::{Leaf, Net},
};

use crate::{
    filter::{CountryTables, Found},
    maps::{InnerValue, inner_as},
};

const CAPACITY: usize = TABLE_CAPACITY as usize;

const INFO_SIZE: usize = core::mem::size_of::<PrefixInfo>();

/// The trie's value is a `PrefixInfo`, declared as bytes: see [`InnerValue`] for why.
type Trie<const KEY: usize> = LpmTrie<[u8; KEY], InnerValue<INFO_SIZE>, CAPACITY>;

#[btf_map]
static GF_TABLE_V4: ArrayOfMaps<Trie<4>, 1> = ArrayOfMaps::new();

#[btf_map]
static GF_TABLE_V6: ArrayOfMaps<Trie<16>, 1> = ArrayOfMaps::new();

/// The trie cannot tell whether an exception is near, so every packet of a family with
/// exceptions looks them up (as geofilter did before its stride tables). It holds countries
/// only; its nets are those of a country-only stride table (the database file, no ASN, no
/// list: see `TablePrefix::from` in the daemon), so the two answer alike.
#[inline(always)]
fn found(info: Option<*mut InnerValue<INFO_SIZE>>) -> Found {
    // SAFETY: the kernel returned a pointer to a live trie value, a `PrefixInfo` the daemon
    // wrote; it stays valid for this program run (RCU), and we copy it out at once.
    let info = info.map_or(PrefixInfo::UNKNOWN, |info| unsafe {
        *inner_as::<PrefixInfo, INFO_SIZE>(&*info)
    });
    Found {
        leaf: Leaf {
            country: info.country,
            net: if info.country == UNKNOWN_COUNTRY {
                0
            } else {
                u32::from(info.source)
            },
        },
        net: Net::default(),
        exception_possible: true,
    }
}

pub struct Lpm;

impl CountryTables for Lpm {
    #[inline(always)]
    fn v4(addr: [u8; 4], _want_net: bool) -> Found {
        found(GF_TABLE_V4.get_value_ptr_mut(0, &Key::new(32, addr)))
    }

    #[inline(always)]
    fn v6(addr: [u8; 16], _want_net: bool) -> Found {
        found(GF_TABLE_V6.get_value_ptr_mut(0, &Key::new(128, addr)))
    }
}
