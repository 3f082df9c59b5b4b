//! Reading list files into [`ListPrefixes`]: every entry of every file, merged into sorted,
//! disjoint ranges per family, with what was read counted.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use geofilter_common::{PrefixInfo, UNKNOWN_COUNTRY};
use serde::{Deserialize, Serialize};

use super::{
    ListError, ListFormat,
    format::{self, Entry},
};
use crate::{
    family::Family,
    geoip::{DbError, Limits, Ranges, prefixes::split_into_prefixes, text},
};

/// ipsum's recommendation: an address "that appear[s] on at least 3 (black)lists" (its README's
/// ready-to-deploy example drops scores 1 and 2).
pub const DEFAULT_MIN_SCORE: u32 = 3;

/// What one load read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListCounts {
    /// The format of the (first) file, as detected or forced.
    pub format: Option<ListFormat>,
    /// Entries (lines with an address or network) read, in all files.
    pub entries: usize,
    /// ipsum entries left out for a score below the minimum.
    pub below_min_score: usize,
    /// The minimum score applied (ipsum only).
    pub min_score: Option<u32>,
    /// CIDR prefixes the merged ranges make, per family.
    pub prefixes_v4: usize,
    pub prefixes_v6: usize,
    /// Addresses covered, per family. IPv6 counts pass 2^64 (one /32 is 2^96), more than a
    /// JSON number holds exactly, so they are written as a decimal string; they saturate at
    /// 2^128 - 1.
    pub addresses_v4: u64,
    #[serde(with = "decimal")]
    pub addresses_v6: u128,
}

/// A `u128` as a decimal string in JSON (`serde_json::Value` refuses integers past `u64`).
pub(crate) mod decimal {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        String::deserialize(d)?.parse().map_err(D::Error::custom)
    }
}

impl ListCounts {
    pub fn prefixes(&self) -> usize {
        self.prefixes_v4 + self.prefixes_v6
    }
}

/// A list's addresses: sorted, merged, disjoint inclusive ranges per family (IPv4 values below
/// 2^32; IPv4-mapped IPv6 entries are in `v4`), and what was read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPrefixes {
    pub v4: Vec<(u128, u128)>,
    pub v6: Vec<(u128, u128)>,
    pub counts: ListCounts,
}

impl ListPrefixes {
    /// The ranges of one family.
    pub fn ranges(&self, family: Family) -> &[(u128, u128)] {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    /// Whether the list holds `ip` (an IPv4-mapped IPv6 address is looked up as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (ranges, addr) = match ip.to_canonical() {
            IpAddr::V4(a) => (&self.v4, u128::from(u32::from(a))),
            IpAddr::V6(a) => (&self.v6, u128::from(a)),
        };
        let i = ranges.partition_point(|&(start, _)| start <= addr);
        i > 0 && addr <= ranges[i - 1].1
    }

    /// The same addresses as `other` (whatever was read to get them).
    pub fn same_addresses(&self, other: &ListPrefixes) -> bool {
        self.v4 == other.v4 && self.v6 == other.v6
    }

    /// The fewest CIDR prefixes (network number, length) that cover one family's ranges, in
    /// order: what an LPM table holds.
    pub fn cidrs(&self, family: Family) -> Vec<(u128, u8)> {
        let mut out = Vec::new();
        for &(start, end) in self.ranges(family) {
            split(start, end, family, &mut out);
        }
        out.into_iter().map(|p| (p.addr, p.len)).collect()
    }
}

fn split(start: u128, end: u128, family: Family, out: &mut Vec<crate::geoip::Prefix>) {
    let info = PrefixInfo {
        country: UNKNOWN_COUNTRY,
        source: 0,
    };
    split_into_prefixes(start, end, family.bits(), info, out);
}

/// Reads list files (each detected unless `format` is given) into one set of addresses, within
/// the default [`Limits`].
///
/// `min_score` is for ipsum files only ([`DEFAULT_MIN_SCORE`] when not given). A file without a
/// single entry is an error, and so is an ipsum list none of whose entries reaches the minimum:
/// both are almost always the wrong file or a server error page.
pub fn read_list(
    paths: &[PathBuf],
    format: Option<ListFormat>,
    min_score: Option<u32>,
) -> Result<ListPrefixes, ListError> {
    read_list_within(paths, format, min_score, &Limits::default())
}

/// [`read_list`], refusing more entries per family than `limits` allow.
pub fn read_list_within(
    paths: &[PathBuf],
    format: Option<ListFormat>,
    min_score: Option<u32>,
    limits: &Limits,
) -> Result<ListPrefixes, ListError> {
    let mut ranges = Ranges::new(limits);
    let mut counts = ListCounts::default();
    let mut best = None;
    for path in paths {
        let found = read_file(path, format, min_score, &mut ranges, &mut counts)?;
        best = best.max(found);
    }
    if let (Some(min_score), Some(best)) = (counts.min_score, best)
        && best < min_score
    {
        return Err(ListError::NoneAtScore {
            path: paths[0].clone(),
            entries: counts.entries,
            min_score,
            best,
        });
    }
    let v4 = merge(ranges.v4.iter().map(|r| (r.start, r.end)).collect());
    let v6 = merge(ranges.v6.iter().map(|r| (r.start, r.end)).collect());
    let mut scratch = Vec::new();
    for (family, list) in [(Family::V4, &v4), (Family::V6, &v6)] {
        let mut addresses = 0u128;
        for &(start, end) in list {
            scratch.clear();
            split(start, end, family, &mut scratch);
            match family {
                Family::V4 => counts.prefixes_v4 += scratch.len(),
                Family::V6 => counts.prefixes_v6 += scratch.len(),
            }
            addresses = addresses.saturating_add((end - start).saturating_add(1));
        }
        match family {
            // At most 2^32.
            Family::V4 => counts.addresses_v4 = addresses as u64,
            Family::V6 => counts.addresses_v6 = addresses,
        }
    }
    Ok(ListPrefixes { v4, v6, counts })
}

/// Reads one file into `ranges`; returns the best ipsum score seen.
fn read_file(
    path: &Path,
    forced: Option<ListFormat>,
    min_score: Option<u32>,
    ranges: &mut Ranges,
    counts: &mut ListCounts,
) -> Result<Option<u32>, ListError> {
    // The reader is the country readers' (gzip, size limits, line limit, UTF-8 check); its
    // format only shows in its messages, and the one that would name it is replaced below.
    let mut lines = text::Lines::open(path, crate::geoip::Format::CidrDir)?;
    let mut format = forced;
    let mut semicolons = false;
    let mut entries = 0;
    let mut best = None;
    loop {
        let (no, line) = match lines.next_line() {
            Ok(Some(l)) => l,
            Ok(None) => break,
            Err(DbError::LineTooLong {
                path, line, max, ..
            }) => {
                return Err(ListError::LineTooLong { path, line, max });
            }
            Err(e) => return Err(e.into()),
        };
        if format::is_comment(line) {
            semicolons |= line.starts_with(';');
            continue;
        }
        let f = *format.get_or_insert_with(|| format::detect(path, line, semicolons));
        if counts.format.is_none() {
            counts.format = Some(f);
        }
        let bad = |problem| ListError::from(text::line_error(path, no, problem, line));
        let Some(entry) = format::parse_line(f, line).map_err(bad)? else {
            continue;
        };
        entries += 1;
        if let Some(score) = entry.score {
            best = best.max(Some(score));
            let min = *counts
                .min_score
                .get_or_insert(min_score.unwrap_or(DEFAULT_MIN_SCORE));
            if score < min {
                counts.below_min_score += 1;
                continue;
            }
        }
        push(ranges, entry).map_err(bad)?;
    }
    let format = format.unwrap_or(ListFormat::Cidr);
    if entries == 0 {
        return Err(ListError::Empty {
            path: path.to_owned(),
            format,
        });
    }
    if min_score.is_some() && format != ListFormat::Ipsum {
        return Err(ListError::ScoreUnused {
            path: path.to_owned(),
            format,
        });
    }
    counts.entries += entries;
    Ok(best)
}

fn push(ranges: &mut Ranges, e: Entry) -> Result<(), crate::geoip::LineProblem> {
    // Lists have no country; the country readers' range store splits IPv4-mapped IPv6 into
    // IPv4 and bounds the count.
    if e.v6 {
        ranges.push_v6(e.start, e.end, UNKNOWN_COUNTRY)
    } else {
        ranges.push_v4(e.start, e.end, UNKNOWN_COUNTRY)
    }
}

/// Sorts ranges and merges the ones that overlap or touch.
fn merge(mut ranges: Vec<(u128, u128)>) -> Vec<(u128, u128)> {
    ranges.sort_unstable();
    let mut out: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging() {
        assert_eq!(
            merge(vec![(5, 9), (0, 1), (2, 3), (8, 12), (20, 20), (14, 15)]),
            [(0, 3), (5, 12), (14, 15), (20, 20)]
        );
        assert_eq!(merge(vec![(0, u128::MAX), (7, 7)]), [(0, u128::MAX)]);
        assert_eq!(
            merge(vec![(u128::MAX, u128::MAX), (0, 0)]),
            [(0, 0), (u128::MAX, u128::MAX)]
        );
        assert_eq!(merge(Vec::new()), []);
    }
}
