//! The shapes of ASN data: the ranges read from each file ([`AsnSource`], filled within
//! [`Limits`] by [`AsnRanges`]), then the resolved table ([`AsnDb`]).

use std::{collections::BTreeMap, net::IpAddr, path::PathBuf};

use serde::{Deserialize, Serialize};

use super::AsnFormat;
use crate::{
    family::Family,
    geoip::{Limits, LineProblem, split_mapped},
};

/// "No AS": iptoasn's "Not routed", and what readers give a record without a number.
pub const NO_ASN: u32 = 0;

/// An inclusive range of addresses of one family with its AS number.
///
/// IPv4 values are below 2^32; the family is given by the list the range is in. In an
/// [`AsnSource`], `asn` may be [`NO_ASN`] (a range that is known to have none); in an [`AsnDb`]
/// it never is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AsnRange {
    pub start: u128,
    pub end: u128,
    pub asn: u32,
}

/// The ranges and organisation names read from one ASN database file, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AsnSource {
    pub path: PathBuf,
    pub format: AsnFormat,
    pub v4: Vec<AsnRange>,
    pub v6: Vec<AsnRange>,
    /// Organisation per AS number, as the file names it (the last name wins within a file).
    pub names: BTreeMap<u32, String>,
}

impl AsnSource {
    /// The ranges of one family.
    pub fn ranges(&self, family: Family) -> &[AsnRange] {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }
}

/// What one file contributed, for `status` and `db info`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsnSourceSummary {
    /// The file, or `embedded asn <date>` for the [embedded](super::embedded) database.
    pub path: PathBuf,
    /// The format the file was read as; the embedded database says what it was packed from.
    pub format: AsnFormat,
    pub embedded: bool,
    pub ranges_v4: usize,
    pub ranges_v6: usize,
    /// Distinct AS numbers (other than [`NO_ASN`]) in the file's ranges.
    pub asns: usize,
}

impl AsnSourceSummary {
    pub(crate) fn of(source: &AsnSource, embedded: bool) -> Self {
        Self {
            path: source.path.clone(),
            format: source.format,
            embedded,
            ranges_v4: source.v4.len(),
            ranges_v6: source.v6.len(),
            asns: distinct_asns(source.v4.iter().chain(&source.v6)),
        }
    }
}

fn distinct_asns<'a>(ranges: impl Iterator<Item = &'a AsnRange>) -> usize {
    // Sorting a flat list beats a set here: half a million ranges, a hundred thousand ASNs.
    let mut asns: Vec<u32> = ranges.map(|r| r.asn).filter(|&a| a != NO_ASN).collect();
    asns.sort_unstable();
    asns.dedup();
    asns.len()
}

/// The resolved ASN table of one or more files: per family sorted, disjoint ranges, adjacent
/// ranges of one AS merged, only ranges with an AS (see the rules in [`super`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AsnDb {
    pub sources: Vec<AsnSourceSummary>,
    pub v4: Vec<AsnRange>,
    pub v6: Vec<AsnRange>,
    /// Organisation per AS number (later files win).
    pub names: BTreeMap<u32, String>,
}

impl AsnDb {
    /// The AS number of an address, or `None` when it has none (binary search).
    pub fn lookup(&self, ip: IpAddr) -> Option<u32> {
        let (table, addr) = match ip {
            IpAddr::V4(a) => (&self.v4, u128::from(u32::from(a))),
            IpAddr::V6(a) => (&self.v6, u128::from(a)),
        };
        let i = table.partition_point(|r| r.start <= addr).checked_sub(1)?;
        (addr <= table[i].end).then_some(table[i].asn)
    }

    /// The organisation the databases name for an AS number.
    pub fn name(&self, asn: u32) -> Option<&str> {
        self.names.get(&asn).map(String::as_str)
    }

    /// The number of distinct AS numbers with at least one range.
    pub fn asns(&self) -> usize {
        distinct_asns(self.v4.iter().chain(&self.v6))
    }

    /// The ranges of one family.
    pub fn ranges(&self, family: Family) -> &[AsnRange] {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }
}

/// Both families' ranges and the names of one file while it is read, at most
/// [`Limits::ranges`] ranges per family.
#[derive(Debug)]
pub(crate) struct AsnRanges {
    pub v4: Vec<AsnRange>,
    pub v6: Vec<AsnRange>,
    pub names: BTreeMap<u32, String>,
    limits: Limits,
}

impl AsnRanges {
    pub(crate) fn new(limits: &Limits) -> Self {
        Self {
            v4: Vec::new(),
            v6: Vec::new(),
            names: BTreeMap::new(),
            limits: *limits,
        }
    }

    /// Adds a range of the family `v6` says; IPv4-mapped IPv6 goes to IPv4, as for countries.
    pub(crate) fn push(
        &mut self,
        v6: bool,
        start: u128,
        end: u128,
        asn: u32,
    ) -> Result<(), LineProblem> {
        debug_assert!(start <= end);
        if !v6 {
            debug_assert!(end <= u32::MAX as u128);
            return self.push_family(Family::V4, start, end, asn);
        }
        split_mapped(start, end, |family, start, end| {
            self.push_family(family, start, end, asn)
        })
    }

    fn push_family(
        &mut self,
        family: Family,
        start: u128,
        end: u128,
        asn: u32,
    ) -> Result<(), LineProblem> {
        let list = match family {
            Family::V4 => &mut self.v4,
            Family::V6 => &mut self.v6,
        };
        if list.len() >= self.limits.ranges {
            return Err(LineProblem::TooMany {
                family: family.name(),
                limit: self.limits.ranges,
                table_mib: self.limits.table_mib,
            });
        }
        list.push(AsnRange { start, end, asn });
        Ok(())
    }

    /// Records the organisation of `asn` (not of [`NO_ASN`], and not an empty name); a later
    /// name replaces an earlier one.
    pub(crate) fn name(&mut self, asn: u32, name: &str) {
        if asn == NO_ASN || name.is_empty() {
            return;
        }
        match self.names.get_mut(&asn) {
            Some(old) if old == name => {}
            Some(old) => name.clone_into(old),
            None => {
                self.names.insert(asn, name.to_owned());
            }
        }
    }
}
