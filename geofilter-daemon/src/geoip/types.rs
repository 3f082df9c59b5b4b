//! The shapes a database takes on its way to the datapath: the ranges read from each file
//! ([`Range`], [`SourceRanges`], and [`Ranges`] while a reader fills them within [`Limits`]),
//! then the compiled table ([`CompiledDb`] of [`Prefix`]es, with a [`SourceSummary`] per file).

use std::{collections::BTreeSet, net::IpAddr, path::PathBuf};

use geofilter_common::{CountryId, PrefixInfo};
use serde::{Deserialize, Serialize};

use super::{LineProblem, SourceFormat, prefixes};
use crate::family::Family;

/// An inclusive range of addresses of one family with one country.
///
/// IPv4 values are below 2^32; the family is given by the list the range is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub start: u128,
    pub end: u128,
    /// [`UNKNOWN_COUNTRY`](geofilter_common::UNKNOWN_COUNTRY) for database pseudo-codes.
    pub country: CountryId,
}

/// The ranges read from one database file (or directory), in file order.
#[derive(Clone, Debug)]
pub struct SourceRanges {
    pub path: PathBuf,
    pub format: SourceFormat,
    pub v4: Vec<Range>,
    pub v6: Vec<Range>,
}

impl SourceRanges {
    /// The ranges of one family.
    pub fn ranges(&self, family: Family) -> &[Range] {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }
}

/// One prefix of the compiled table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    /// The network address within its family (IPv4: below 2^32), host bits zero.
    pub addr: u128,
    pub len: u8,
    pub info: PrefixInfo,
}

/// What one database file contributed, for `status` output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSummary {
    pub path: PathBuf,
    pub format: SourceFormat,
    pub ranges_v4: usize,
    pub ranges_v6: usize,
}

/// The table the datapath loads: sorted, disjoint prefixes per family. Only prefixes with a
/// country are present; [`PrefixInfo::source`] indexes [`CompiledDb::sources`].
#[derive(Clone, Debug, Default)]
pub struct CompiledDb {
    pub sources: Vec<SourceSummary>,
    pub v4: Vec<Prefix>,
    pub v6: Vec<Prefix>,
}

impl CompiledDb {
    /// The prefix an address falls in, as the kernel's LPM lookup would find it, or `None` when
    /// the address has no country.
    pub fn lookup(&self, ip: IpAddr) -> Option<&Prefix> {
        let (table, bits, addr) = match ip {
            IpAddr::V4(a) => (&self.v4, 32, u128::from(u32::from(a))),
            IpAddr::V6(a) => (&self.v6, 128, u128::from(a)),
        };
        let i = table.partition_point(|p| p.addr <= addr).checked_sub(1)?;
        let p = &table[i];
        (addr <= prefixes::last_addr(p.addr, p.len, bits)).then_some(p)
    }

    /// Every country that has at least one prefix.
    pub fn countries(&self) -> BTreeSet<CountryId> {
        self.v4
            .iter()
            .chain(&self.v6)
            .map(|p| p.info.country)
            .collect()
    }
}

/// The largest table (per address family) the daemon builds unless told otherwise: far above a
/// world database's (about 3 MiB per family), so only a wrong or hostile file reaches it; the
/// same budget bounds the ranges and prefixes of a load ([`Limits`]), which a world database
/// uses a tenth of.
pub const DEFAULT_MAX_TABLE_MIB: usize = 256;

/// How much one load may produce per address family, from the table budget
/// (`--max-table-mib`, [`DEFAULT_MAX_TABLE_MIB`] unless given).
///
/// Reading and compiling keep every range and every prefix in memory, so a file that is small
/// on disk but expands (an MMDB graph, gzip, short lines of wide unaligned ranges that split
/// into hundreds of prefixes each) could otherwise cost far more than the table it is for. The
/// budget in bytes bounds each: ranges read per family (per file, and all files together) and
/// prefixes compiled per family, each at most the budget's size in memory. A world database
/// (about 350,000 ranges and 600,000 prefixes per family) uses a tenth of the default 256 MiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub ranges: usize,
    pub prefixes: usize,
    /// The budget they come from, for messages.
    pub table_mib: usize,
}

impl Limits {
    pub fn for_table_mib(table_mib: usize) -> Self {
        let bytes = table_mib.saturating_mul(1 << 20);
        Self {
            ranges: bytes / std::mem::size_of::<Range>(),
            prefixes: bytes / std::mem::size_of::<Prefix>(),
            table_mib,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::for_table_mib(DEFAULT_MAX_TABLE_MIB)
    }
}

/// Both families' ranges of one file while it is read, at most [`Limits::ranges`] each.
#[derive(Debug)]
pub(crate) struct Ranges {
    pub v4: Vec<Range>,
    pub v6: Vec<Range>,
    limits: Limits,
}

impl Ranges {
    pub(crate) fn new(limits: &Limits) -> Self {
        Self {
            v4: Vec::new(),
            v6: Vec::new(),
            limits: *limits,
        }
    }

    /// Adds an IPv4 range (values below 2^32).
    pub(crate) fn push_v4(
        &mut self,
        start: u128,
        end: u128,
        country: CountryId,
    ) -> Result<(), LineProblem> {
        debug_assert!(start <= end && end <= u32::MAX as u128);
        push_within(&mut self.v4, &self.limits, "IPv4", start, end, country)
    }

    /// Adds an IPv6 range; the part inside `::ffff:0:0/96` goes to IPv4 (see the module docs).
    pub(crate) fn push_v6(
        &mut self,
        start: u128,
        end: u128,
        country: CountryId,
    ) -> Result<(), LineProblem> {
        debug_assert!(start <= end);
        split_mapped(start, end, |family, start, end| match family {
            Family::V4 => self.push_v4(start, end, country),
            Family::V6 => push_within(&mut self.v6, &self.limits, "IPv6", start, end, country),
        })
    }
}

/// Splits the IPv6 range `start..=end` at the IPv4-mapped space `::ffff:0:0/96` and hands each
/// piece to `push` in address order: the part inside as IPv4 (values below 2^32), the rest as
/// IPv6 (see the module docs of [`super`]).
pub(crate) fn split_mapped<E>(
    start: u128,
    end: u128,
    mut push: impl FnMut(Family, u128, u128) -> Result<(), E>,
) -> Result<(), E> {
    const MAPPED: u128 = 0xffff_u128 << 32;
    const MAPPED_END: u128 = MAPPED | u32::MAX as u128;
    if end < MAPPED || start > MAPPED_END {
        return push(Family::V6, start, end);
    }
    if start < MAPPED {
        push(Family::V6, start, MAPPED - 1)?;
    }
    push(
        Family::V4,
        start.max(MAPPED) - MAPPED,
        end.min(MAPPED_END) - MAPPED,
    )?;
    if end > MAPPED_END {
        push(Family::V6, MAPPED_END + 1, end)?;
    }
    Ok(())
}

fn push_within(
    list: &mut Vec<Range>,
    limits: &Limits,
    family: &'static str,
    start: u128,
    end: u128,
    country: CountryId,
) -> Result<(), LineProblem> {
    if list.len() >= limits.ranges {
        return Err(LineProblem::TooMany {
            family,
            limit: limits.ranges,
            table_mib: limits.table_mib,
        });
    }
    list.push(Range {
        start,
        end,
        country,
    });
    Ok(())
}
