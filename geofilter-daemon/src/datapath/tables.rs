//! Country tables: a compiled database written into fresh stride tables, then swapped in.
//!
//! Each family's table is one `ARRAY` of chunks (layout: [`geofilter_common::table`]), created
//! at exactly the size the database needs and filled completely before it is referenced. Then
//! one `bpf_map_update_elem` on the family's `ARRAY_OF_MAPS` slot makes it live: the program
//! takes every level of a lookup from the inner map it fetched at the start of that lookup, so a
//! packet reads the old table or the new one, never a mix, and the kernel frees the old array
//! only after every program run that could hold it has finished (RCU).
//!
//! The daemon keeps a copy of each live table (without marks) to place exception marks on it in
//! place; see `exceptions.rs`.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use aya::maps::{Array, ArrayOfMaps, MapData};
use geofilter_common::{
    maps::BPF_F_INNER_MAP,
    table::{Chunk, ROOT_CHUNKS},
};

use super::{
    Datapath, DatapathError, map_err,
    stride::{Marks, StrideTable},
};
use crate::{family::Family, geoip::Prefix};

/// One family's kernel table: an `ARRAY` of chunks.
pub(super) type TableMap = Array<MapData, Chunk>;

/// What an install wrote.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct TableStats {
    pub prefixes_v4: usize,
    pub prefixes_v6: usize,
    /// Chunks of 256 entries (1 KiB) in each table, root included.
    pub chunks_v4: usize,
    pub chunks_v6: usize,
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
    /// Tables needing more chunks than this are refused before any kernel memory is allocated.
    pub max_chunks: usize,
}

/// A table the program is using: its compiled form, its kernel array and the marks written there.
pub(super) struct LiveTable {
    pub table: StrideTable,
    pub inner: TableMap,
    pub marks: Marks,
}

impl FamilyTables {
    /// Builds the kernel array for `table` with this family's exception marks, filled
    /// completely, but not yet referenced by the program.
    pub fn prepare(&self, table: StrideTable) -> Result<LiveTable, DatapathError> {
        let mut marks = Marks::default();
        for &(addr, len) in &self.exceptions {
            marks.update(&table, addr, len, true);
        }
        let len = u32::try_from(table.chunks.len()).expect("at most MAX_CHUNKS chunks");
        let mut inner = TableMap::create(len, BPF_F_INNER_MAP).map_err(map_err(self.name))?;
        let marked = marks.marked_chunks();
        for (index, chunk) in (0..len).zip(&table.chunks) {
            // A new array is zero-filled, and zero is the unknown leaf: empty chunks (most of
            // the IPv6 root) need no write.
            if *chunk == Chunk::EMPTY && !marked.contains(&index) {
                continue;
            }
            inner
                .set(index, marks.render(&table, index), 0)
                .map_err(map_err(self.name))?;
        }
        Ok(LiveTable {
            table,
            inner,
            marks,
        })
    }

    /// Makes `new` the table the program uses, in one step.
    pub fn swap_in(&mut self, new: LiveTable) -> Result<(), DatapathError> {
        self.outer
            .set(0, &new.inner, 0)
            .map_err(map_err(self.name))?;
        self.live = new;
        Ok(())
    }

    /// Writes `chunks` of the live table again, with their current marks (in place: only mark
    /// bits differ from what the kernel holds, see `exceptions.rs`).
    pub fn rewrite(&mut self, chunks: &[u32]) -> Result<(), DatapathError> {
        let live = &mut self.live;
        for &index in chunks {
            let chunk = live.marks.render(&live.table, index);
            live.inner
                .set(index, chunk, 0)
                .map_err(map_err(self.name))?;
        }
        Ok(())
    }

    /// Reads the live table back from the kernel (after adopting an earlier daemon's pins), and
    /// rewrites any chunk whose marks do not match this family's exceptions.
    pub fn adopt(&mut self) -> Result<(), DatapathError> {
        let inner: TableMap = self.outer.get(&0, 0).map_err(map_err(self.name))?;
        let len = inner.len();
        let mut held = Vec::with_capacity(len as usize);
        for index in 0..len {
            held.push(inner.get(&index, 0).map_err(map_err(self.name))?);
        }
        let bad = |detail: String| DatapathError::BadPin {
            name: self.name,
            detail,
        };
        if len < ROOT_CHUNKS {
            return Err(bad(format!(
                "{len} chunks, fewer than the {ROOT_CHUNKS} of a root"
            )));
        }
        // Walking the marks follows child indices: they must stay inside the array.
        if let Some(e) = held
            .iter()
            .flat_map(|chunk| chunk.entries)
            .find(|e| e.is_child() && e.child_index() >= len)
        {
            return Err(bad(format!(
                "a child index {} past its {len} chunks",
                e.child_index()
            )));
        }
        let mut table = StrideTable::empty(self.family);
        table.chunks = held
            .iter()
            .map(|chunk| Chunk {
                entries: chunk.entries.map(|e| e.with_exception_mark(false)),
            })
            .collect();
        let mut marks = Marks::default();
        for &(addr, len) in &self.exceptions {
            marks.update(&table, addr, len, true);
        }
        self.live = LiveTable {
            table,
            inner,
            marks,
        };
        let stale: Vec<u32> = (0..len)
            .filter(|&i| self.live.marks.render(&self.live.table, i) != held[i as usize])
            .collect();
        self.rewrite(&stale)
    }
}

impl Datapath {
    /// Builds new tables holding exactly `v4` and `v6` (nested prefixes resolve to the most
    /// specific, as in an LPM table) and swaps them in. On any error the live tables are
    /// untouched: the new ones are only referenced after they are complete.
    pub fn install_tables(
        &mut self,
        v4: &[Prefix],
        v6: &[Prefix],
    ) -> Result<TableStats, DatapathError> {
        let start = Instant::now();
        // The two families are independent: one compiles and fills its array on another thread.
        let (v4_side, v6_side) = (&self.v4, &self.v6);
        let (new_v4, new_v6) = std::thread::scope(|s| {
            let v6_thread = s.spawn(|| v6_side.compile(v6));
            let new_v4 = v4_side.compile(v4);
            (new_v4, v6_thread.join().expect("table compiler panicked"))
        });
        let (new_v4, new_v6) = (new_v4?, new_v6?);
        // Each family is swapped in one step; a packet only ever consults one family's table.
        self.v4.swap_in(new_v4)?;
        self.v6.swap_in(new_v6)?;
        Ok(TableStats {
            prefixes_v4: v4.len(),
            prefixes_v6: v6.len(),
            chunks_v4: self.v4.live.table.chunks.len(),
            chunks_v6: self.v6.live.table.chunks.len(),
            elapsed: start.elapsed(),
        })
    }
}

impl FamilyTables {
    /// Compiles `prefixes` and [`prepare`](Self::prepare)s the kernel array for them.
    fn compile(&self, prefixes: &[Prefix]) -> Result<LiveTable, DatapathError> {
        let table =
            StrideTable::build(self.family, prefixes).map_err(|source| DatapathError::Table {
                name: self.name,
                source,
            })?;
        let chunks = table.chunks.len();
        if chunks > self.max_chunks {
            return Err(DatapathError::TooLarge {
                name: self.name,
                chunks,
                needed_mib: chunks.div_ceil(1024),
                limit_mib: self.max_chunks / 1024,
            });
        }
        self.prepare(table)
    }
}

impl Datapath {
    /// Refuses tables larger than `mib` MiB per address family from now on.
    pub fn set_table_limit_mib(&mut self, mib: usize) {
        self.v4.max_chunks = mib * 1024;
        self.v6.max_chunks = mib * 1024;
    }

    /// The table budget per address family, in MiB; database loads are bounded by it too
    /// ([`crate::geoip::Limits`]).
    pub fn table_limit_mib(&self) -> usize {
        self.v4.max_chunks / 1024
    }
}
