//! Country tables: a compiled database encoded into fresh compact tables, then swapped in.
//!
//! Each family's table is one `ARRAY` of 4 KiB pages of nodes (layout:
//! [`geofilter_common::table`], encoder: [`super::compact`]), created at exactly the size the
//! database needs and filled completely before it is referenced. Then one `bpf_map_update_elem`
//! on the family's `ARRAY_OF_MAPS` slot makes it live: the program takes every level of a lookup
//! from the inner map it fetched at the start of that lookup, so a packet reads the old table or
//! the new one, never a mix, and the kernel frees the old array only after every program run
//! that could hold it has finished (RCU).
//!
//! The daemon keeps a copy of each live table (the compiled trie and its encoded pages) to place
//! exception marks on it in place; see `exceptions.rs`.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use aya::maps::{Array, ArrayOfMaps, MapData};
use geofilter_common::{
    maps::BPF_F_INNER_MAP,
    table::{Net, Page},
};

use super::{
    Datapath, DatapathError,
    compact::{self, CompactTable, NetPages},
    map_err,
    stride::{Marks, StrideTable, TablePrefix},
};
use crate::{family::Family, nets::NetIndex};

/// What one family's table is compiled from: its prefixes, the nets their leaves name, and
/// which ASN each slot of the nets is.
#[derive(Clone, Debug, Default)]
pub struct TableInput {
    pub prefixes: Vec<TablePrefix>,
    pub nets: NetPages,
    pub index: NetIndex,
}

impl TableInput {
    /// A country-only table: every net (one per database file, see `TablePrefix::from`) is no
    /// ASN and no list.
    pub fn countries<P: Copy + Into<TablePrefix>>(prefixes: &[P]) -> Self {
        let prefixes: Vec<TablePrefix> = prefixes.iter().map(|&p| p.into()).collect();
        let top = prefixes.iter().map(|p| p.leaf.net).max().unwrap_or(0);
        Self {
            prefixes,
            nets: NetPages {
                nets: vec![Net::default(); top as usize + 1],
            },
            index: NetIndex::default(),
        }
    }
}

/// One family's kernel table: an `ARRAY` of pages.
pub(super) type TableMap = Array<MapData, Page>;

/// Pages per MiB.
pub(super) const PAGES_PER_MIB: usize = (1 << 20) / size_of::<Page>();

/// What an install wrote.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct TableStats {
    pub prefixes_v4: usize,
    pub prefixes_v6: usize,
    /// Chunks of 256 entries in each compiled trie, root included (each is one node).
    pub chunks_v4: usize,
    pub chunks_v6: usize,
    /// Kernel bytes of each table's values (4 KiB pages of nodes).
    pub bytes_v4: usize,
    pub bytes_v6: usize,
    #[serde(skip)]
    pub elapsed: Duration,
}

/// One family's table state: the map-of-maps slot, the live table and the exceptions marked on
/// it.
pub(super) struct FamilyTables {
    pub family: Family,
    pub name: &'static str,
    pub outer: ArrayOfMaps<MapData, TableMap>,
    pub live: LiveTable,
    /// The exception prefixes of this family, as in the kernel's exception trie.
    pub exceptions: BTreeSet<(u128, u8)>,
    /// Tables needing more pages than this are refused before any kernel memory is allocated.
    pub max_pages: usize,
}

/// A table the program is using: its compiled form, its encoded pages as the kernel holds them,
/// its kernel array and the marks written there.
pub(super) struct LiveTable {
    pub table: StrideTable,
    pub compact: CompactTable,
    pub inner: TableMap,
    pub marks: Marks,
    pub nets: NetPages,
    /// Which ASN each slot is (empty for a table read back from an earlier daemon: its slots
    /// are its own until this daemon installs a table).
    pub index: NetIndex,
}

impl LiveTable {
    /// An empty table, not yet in the kernel's slot (until `install_tables` or `adopt`).
    pub fn placeholder(family: Family, name: &'static str) -> Result<Self, DatapathError> {
        let table = StrideTable::empty(family);
        let marks = Marks::default();
        let nets = NetPages::default();
        Ok(Self {
            compact: CompactTable::encode(&table, &marks, &nets).expect("an empty table fits"),
            table,
            inner: TableMap::create(1, BPF_F_INNER_MAP).map_err(map_err(name))?,
            marks,
            nets,
            index: NetIndex::default(),
        })
    }
}

impl FamilyTables {
    /// Marks for this family's exceptions on `table`.
    fn marks_on(&self, table: &StrideTable) -> Marks {
        let mut marks = Marks::default();
        for &(addr, len) in &self.exceptions {
            marks.update(table, addr, len, true);
        }
        marks
    }

    /// Encodes `table` with this family's exception marks and builds its kernel array, filled
    /// completely, but not yet referenced by the program.
    pub fn prepare(
        &self,
        table: StrideTable,
        nets: NetPages,
        index: NetIndex,
    ) -> Result<LiveTable, DatapathError> {
        let marks = self.marks_on(&table);
        let compact =
            CompactTable::encode(&table, &marks, &nets).map_err(|_| self.too_large(usize::MAX))?;
        // The budget is for the nodes, which grow with the database; the net pages (bounded by
        // `MAX_NETS`) are outside it, so a budget sized for a country table still holds that
        // table with its nets.
        let nodes = compact.pages.len() - nets.net_pages();
        if nodes > self.max_pages {
            return Err(self.too_large(nodes));
        }
        let len = u32::try_from(compact.pages.len()).expect("at most MAX_PAGES pages");
        let mut inner = TableMap::create(len, BPF_F_INNER_MAP).map_err(map_err(self.name))?;
        for (index, page) in (0..len).zip(&compact.pages) {
            // A new array is zero-filled: pages of empty space need no write.
            if *page != Page::ZERO {
                inner.set(index, page, 0).map_err(map_err(self.name))?;
            }
        }
        Ok(LiveTable {
            table,
            compact,
            inner,
            marks,
            nets,
            index,
        })
    }

    fn too_large(&self, pages: usize) -> DatapathError {
        DatapathError::TooLarge {
            name: self.name,
            pages,
            needed_mib: pages.div_ceil(PAGES_PER_MIB),
            limit_mib: self.max_pages / PAGES_PER_MIB,
        }
    }

    /// Makes `new` the table the program uses, in one step.
    pub fn swap_in(&mut self, new: LiveTable) -> Result<(), DatapathError> {
        self.outer
            .set(0, &new.inner, 0)
            .map_err(map_err(self.name))?;
        self.live = new;
        Ok(())
    }

    /// Encodes the nodes of `chunks` again with their current marks and writes the pages that
    /// hold them (in place: only mark bits differ from what the kernel holds, see
    /// `exceptions.rs`).
    pub fn rewrite(&mut self, chunks: &[u32]) -> Result<(), DatapathError> {
        let live = &mut self.live;
        let pages: BTreeSet<u32> = chunks
            .iter()
            .map(|&index| live.compact.write_node(&live.table, &live.marks, index))
            .collect();
        for page in pages {
            live.inner
                .set(page, live.compact.pages[page as usize], 0)
                .map_err(map_err(self.name))?;
        }
        Ok(())
    }

    /// Reads the live table back from the kernel (after adopting an earlier daemon's pins), and
    /// rewrites in place any page whose marks do not match this family's exceptions.
    pub fn adopt(&mut self) -> Result<(), DatapathError> {
        let inner: TableMap = self.outer.get(&0, 0).map_err(map_err(self.name))?;
        let len = inner.len();
        let mut held = Vec::with_capacity(len as usize);
        for index in 0..len {
            held.push(inner.get(&index, 0).map_err(map_err(self.name))?);
        }
        let decoded = compact::decode(&held).map_err(|detail| DatapathError::BadPin {
            name: self.name,
            detail,
        })?;
        let (chunks, nodes, nets) = (decoded.chunks, decoded.nodes, decoded.nets);
        let mut table = StrideTable::empty(self.family);
        table.chunks = chunks;
        let marks = self.marks_on(&table);
        // The kernel's layout stays; only the marks are rendered again.
        let mut compact = CompactTable {
            pages: held.clone(),
            nodes,
        };
        for index in 0..table.chunks.len() {
            compact.write_node(&table, &marks, index as u32);
        }
        self.live = LiveTable {
            table,
            compact,
            inner,
            marks,
            nets,
            index: NetIndex::default(),
        };
        for (index, page) in (0..len).zip(&held) {
            if self.live.compact.pages[index as usize] != *page {
                self.live
                    .inner
                    .set(index, self.live.compact.pages[index as usize], 0)
                    .map_err(map_err(self.name))?;
            }
        }
        Ok(())
    }
}

impl Datapath {
    /// Builds new country-only tables holding exactly `v4` and `v6` (nested prefixes resolve to
    /// the most specific, as in an LPM table) and swaps them in: [`Self::install_inputs`].
    pub fn install_tables<P: Copy + Into<TablePrefix>>(
        &mut self,
        v4: &[P],
        v6: &[P],
    ) -> Result<TableStats, DatapathError> {
        self.install_inputs(&TableInput::countries(v4), &TableInput::countries(v6))
    }

    /// Builds new tables from `v4` and `v6` and swaps them in. On any error the live tables are
    /// untouched: the new ones are only referenced after they are complete.
    pub fn install_inputs(
        &mut self,
        v4: &TableInput,
        v6: &TableInput,
    ) -> Result<TableStats, DatapathError> {
        let start = Instant::now();
        // The two families are independent: one compiles and fills its array on another thread.
        let (v4_side, v6_side, listed) = (&self.v4, &self.v6, &self.listed);
        let (new_v4, new_v6) = std::thread::scope(|s| {
            let v6_thread = s.spawn(|| v6_side.compile(v6, listed));
            let new_v4 = v4_side.compile(v4, listed);
            (new_v4, v6_thread.join().expect("table compiler panicked"))
        });
        let (new_v4, new_v6) = (new_v4?, new_v6?);
        // Each family is swapped in one step; a packet only ever consults one family's table.
        self.v4.swap_in(new_v4)?;
        self.v6.swap_in(new_v6)?;
        Ok(TableStats {
            prefixes_v4: v4.prefixes.len(),
            prefixes_v6: v6.prefixes.len(),
            chunks_v4: self.v4.live.table.chunks.len(),
            chunks_v6: self.v6.live.table.chunks.len(),
            bytes_v4: self.v4.live.compact.bytes(),
            bytes_v6: self.v6.live.compact.bytes(),
            elapsed: start.elapsed(),
        })
    }
}

impl FamilyTables {
    /// Compiles `input` and [`prepare`](Self::prepare)s the kernel array for it, with the
    /// listed index of every ASN of `listed` already in its nets (so the policy in force
    /// applies to the new table from its first packet).
    fn compile(
        &self,
        input: &TableInput,
        listed: &std::collections::BTreeMap<u32, u16>,
    ) -> Result<LiveTable, DatapathError> {
        let table = StrideTable::build(self.family, &input.prefixes).map_err(|source| {
            DatapathError::Table {
                name: self.name,
                source,
            }
        })?;
        let mut nets = input.nets.clone();
        for (asn, &k) in listed {
            for &net in input.index.asn_nets.get(asn).into_iter().flatten() {
                nets.nets[net as usize].listed = u32::from(k);
            }
        }
        self.prepare(table, nets, input.index.clone())
    }

    /// Sets the listed index of nets in the live table, in place (two words each; the policy
    /// that gives the index an action is swapped separately, after).
    pub fn set_listed(&mut self, nets: &[(u32, u16)]) -> Result<(), DatapathError> {
        let live = &mut self.live;
        let mut pages = BTreeSet::new();
        for &(id, listed) in nets {
            let Some(net) = live.nets.nets.get_mut(id as usize) else {
                continue;
            };
            net.listed = u32::from(listed);
            pages.insert(live.compact.set_net(id, *net));
        }
        for page in pages {
            live.inner
                .set(page, live.compact.pages[page as usize], 0)
                .map_err(map_err(self.name))?;
        }
        Ok(())
    }
}

impl Datapath {
    /// Refuses tables larger than `mib` MiB per address family from now on.
    pub fn set_table_limit_mib(&mut self, mib: usize) {
        self.v4.max_pages = mib * PAGES_PER_MIB;
        self.v6.max_pages = mib * PAGES_PER_MIB;
    }

    /// Kernel bytes of the live IPv4 and IPv6 tables' values (the pages of nodes; the kernel's
    /// own `memlock` figure for the arrays adds a few hundred bytes each).
    pub fn table_bytes(&self) -> (usize, usize) {
        (self.v4.live.compact.bytes(), self.v6.live.compact.bytes())
    }

    /// The table budget per address family, in MiB; database loads are bounded by it too
    /// ([`crate::geoip::Limits`]).
    pub fn table_limit_mib(&self) -> usize {
        self.v4.max_pages / PAGES_PER_MIB
    }
}
