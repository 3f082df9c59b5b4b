//! The compile rules restated as the plainest possible code, to check [`super::compile()`] (and
//! the kernel's table) against: a scan over every range of every file. Slow (linear per lookup)
//! and obviously right, on purpose.

use std::net::IpAddr;

use geofilter_common::{CountryId, UNKNOWN_COUNTRY};

use super::SourceRanges;
use crate::family::Family;

/// The country of `ip` by the rules of [`super::compile()`]: among all ranges containing the
/// address, the smallest; among equally small ones, the one from the later file, then the later
/// line. `None` when no range contains it or the winner is a pseudo-code (unknown).
pub fn reference_lookup(sources: &[SourceRanges], ip: IpAddr) -> Option<CountryId> {
    let ranges = sources.iter().flat_map(|s| match ip {
        IpAddr::V4(_) => &s.v4,
        IpAddr::V6(_) => &s.v6,
    });
    smallest_containing(ranges.map(|r| (r.start, r.end, r.country)), ip)
        .filter(|&c| c != UNKNOWN_COUNTRY)
}

/// The value of the smallest of `ranges` (inclusive, in file and line order) that contains
/// `ip`, ties to the later one; shared by the ASN reference ([`crate::asn::reference`]).
pub(crate) fn smallest_containing<V: Copy>(
    ranges: impl IntoIterator<Item = (u128, u128, V)>,
    ip: IpAddr,
) -> Option<V> {
    let addr = match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    // (size - 1, value) of the best range so far. Ranges are visited in order, so `<=` lets a
    // later range of equal size take over.
    let mut best: Option<(u128, V)> = None;
    for (start, end, value) in ranges {
        if start <= addr && addr <= end {
            let size = end - start;
            if best.is_none_or(|(best_size, _)| size <= best_size) {
                best = Some((size, value));
            }
        }
    }
    best.map(|(_, value)| value)
}

/// [`reference_lookup`] for many addresses over large databases (the full world has half a
/// million ranges; a scan per address would take hours over a million addresses).
///
/// Still deliberately plain and independent of [`super::compile()`]: ranges sorted by start,
/// with the running maximum of their ends. For an address, every range that can contain it
/// starts at or before it, and the scan walks back from there only while some earlier range still
/// reaches the address (the running maximum says when none can). Among the ranges found, the
/// rule is the one of [`reference_lookup`], compared on the original file and line order.
pub struct ReferenceIndex {
    v4: FamilyIndex,
    v6: FamilyIndex,
}

/// The index of one family.
struct FamilyIndex {
    /// (start, end, order over all files and lines, country), sorted by start.
    ranges: Vec<(u128, u128, usize, CountryId)>,
    /// `max_end[i]`: the largest end among `ranges[..=i]`.
    max_end: Vec<u128>,
}

impl FamilyIndex {
    fn new(sources: &[SourceRanges], family: Family) -> Self {
        let mut ranges: Vec<_> = sources
            .iter()
            .flat_map(|s| s.ranges(family))
            .enumerate()
            .filter(|(_, r)| r.start <= r.end)
            .map(|(order, r)| (r.start, r.end, order, r.country))
            .collect();
        ranges.sort_by_key(|r| r.0);
        let max_end = ranges
            .iter()
            .scan(0u128, |max, r| {
                *max = (*max).max(r.1);
                Some(*max)
            })
            .collect();
        Self { ranges, max_end }
    }

    fn lookup(&self, addr: u128) -> Option<CountryId> {
        let mut i = self.ranges.partition_point(|r| r.0 <= addr);
        // (size, order, country) of the best range so far.
        let mut best: Option<(u128, usize, CountryId)> = None;
        while i > 0 && self.max_end[i - 1] >= addr {
            i -= 1;
            let (start, end, order, country) = self.ranges[i];
            if addr <= end {
                let size = end - start;
                if best.is_none_or(|(s, o, _)| size < s || (size == s && order > o)) {
                    best = Some((size, order, country));
                }
            }
        }
        best.map(|(_, _, c)| c).filter(|&c| c != UNKNOWN_COUNTRY)
    }
}

impl ReferenceIndex {
    pub fn new(sources: &[SourceRanges]) -> Self {
        Self {
            v4: FamilyIndex::new(sources, Family::V4),
            v6: FamilyIndex::new(sources, Family::V6),
        }
    }

    /// The same answer as [`reference_lookup`] over the sources the index was built from.
    pub fn lookup(&self, ip: IpAddr) -> Option<CountryId> {
        match ip {
            IpAddr::V4(a) => self.v4.lookup(u32::from(a).into()),
            IpAddr::V6(a) => self.v6.lookup(a.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use rand::{Rng, SeedableRng, rngs::StdRng};

    use super::{
        super::{
            Format, compile, read_source,
            tests::{cc, r, testdata},
        },
        *,
    };

    #[test]
    fn reference_rules() {
        let s = |v4| SourceRanges {
            path: "t".into(),
            format: Format::RangeCsv.into(),
            v4,
            v6: Vec::new(),
        };
        let a = s(vec![
            r(0, 99, cc("DE")),
            r(10, 19, cc("FR")),
            r(10, 19, cc("IT")),
            r(50, 50, 0),
        ]);
        let b = s(vec![r(0, 99, cc("RU"))]);
        let at = |n: u32| IpAddr::V4(Ipv4Addr::from(n));
        let sources = [a, b];
        assert_eq!(reference_lookup(&sources, at(5)), Some(cc("RU")));
        assert_eq!(reference_lookup(&sources, at(15)), Some(cc("IT")));
        assert_eq!(reference_lookup(&sources, at(50)), None);
        assert_eq!(reference_lookup(&sources, at(100)), None);
        assert_eq!(reference_lookup(&sources, "::5".parse().unwrap()), None);
    }

    /// Checks the compiled table against the reference at every range boundary (start, end,
    /// and the addresses just outside) and at `random` random addresses near the ranges.
    pub(crate) fn check_exact(sources: &[SourceRanges], random: usize) {
        let db = compile(sources.to_vec());
        let index = ReferenceIndex::new(sources);
        for p in db.v4.iter().chain(&db.v6) {
            assert_ne!(p.info.country, UNKNOWN_COUNTRY);
        }
        for (v6, table) in [(false, &db.v4), (true, &db.v6)] {
            assert!(table.windows(2).all(|w| {
                super::super::prefixes::last_addr(w[0].addr, w[0].len, if v6 { 128 } else { 32 })
                    < w[1].addr
            }));
        }
        let mut rng = StdRng::seed_from_u64(0x9e0f_11e5);
        let check = |v6: bool, addr: u128| {
            let ip = if v6 {
                IpAddr::V6(Ipv6Addr::from(addr))
            } else if addr <= u32::MAX as u128 {
                IpAddr::V4(Ipv4Addr::from(addr as u32))
            } else {
                return;
            };
            let want = reference_lookup(sources, ip);
            let got = db.lookup(ip).map(|p| p.info.country);
            assert_eq!(got, want, "{ip}");
            assert_eq!(index.lookup(ip), want, "ReferenceIndex at {ip}");
        };
        let mut all = Vec::new();
        for s in sources {
            all.extend(s.v4.iter().map(|r| (false, *r)));
            all.extend(s.v6.iter().map(|r| (true, *r)));
        }
        for &(v6, r) in &all {
            check(v6, r.start);
            check(v6, r.end);
            if let Some(a) = r.start.checked_sub(1) {
                check(v6, a);
            }
            if let Some(a) = r.end.checked_add(1) {
                check(v6, a);
            }
        }
        for _ in 0..random {
            // Near a random range: uniform over the whole space would almost always miss in
            // IPv6. A quarter of the picks is uniform anyway.
            let (v6, r) = all[rng.random_range(0..all.len())];
            let addr = if rng.random_bool(0.25) {
                if v6 {
                    rng.random::<u128>()
                } else {
                    rng.random::<u32>().into()
                }
            } else {
                let span = (r.end - r.start).saturating_add(1).saturating_mul(3).max(3);
                let offset = rng.random_range(0..span);
                (r.start.saturating_sub(span / 3)).saturating_add(offset)
            };
            check(v6, addr);
        }
    }

    #[test]
    fn compile_matches_reference_on_real_data() {
        let dir = "geo-whois-asn-country";
        let v4 = read_source(
            &testdata(&format!("{dir}/geo-whois-asn-country-ipv4.slice.csv")),
            None,
        )
        .unwrap();
        let v6 = read_source(
            &testdata(&format!("{dir}/geo-whois-asn-country-ipv6.slice.csv")),
            None,
        )
        .unwrap();
        assert!(v4.v6.is_empty() && v6.v4.is_empty());
        assert_eq!(v4.v4.len(), 3000);
        // The nesting data.md describes is in the slice.
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let sources = [v4.clone(), v6.clone()];
        assert_eq!(reference_lookup(&sources, ip("3.2.35.39")), Some(cc("DE")));
        assert_eq!(reference_lookup(&sources, ip("3.2.35.40")), Some(cc("TR")));
        check_exact(&sources, 20_000);
        // As one file per family, twice (every range ties with its twin in the other file), and
        // with a synthetic override file on top.
        let mut both = v4.clone();
        both.v6 = v6.v6.clone();
        let mut fix = both.clone();
        fix.v4 = vec![
            r(0x0302_2300, 0x0302_23ff, cc("RU")),
            r(0x0302_2328, 0x0302_2328, 0),
        ];
        fix.v6 = v6
            .v6
            .iter()
            .step_by(7)
            .map(|x| r(x.start, x.end, cc("KP")))
            .collect();
        check_exact(&[both.clone(), both.clone(), fix.clone()], 20_000);
        check_exact(&[fix, both], 5_000);
    }

    #[test]
    fn compile_matches_reference_on_random_layouts() {
        // Many small overlapping ranges in a small space, including the family ends, so the
        // sweep meets every case (gaps, equal starts, equal ends, ties across files).
        let mut rng = StdRng::seed_from_u64(42);
        for round in 0..200 {
            let mut sources = Vec::new();
            for _ in 0..rng.random_range(1..4) {
                let mut gen_family = |top: u128| {
                    (0..rng.random_range(0..40))
                        .map(|_| {
                            let base = if rng.random_bool(0.5) { 0 } else { top - 300 };
                            let a = base + rng.random_range(0..300);
                            let b = a.saturating_add(rng.random_range(0..60)).min(top);
                            let country = [0, cc("DE"), cc("FR"), cc("US")][rng.random_range(0..4)];
                            r(a, b, country)
                        })
                        .collect()
                };
                let v4 = gen_family(u32::MAX as u128);
                let v6 = gen_family(u128::MAX);
                sources.push(SourceRanges {
                    path: format!("r{round}").into(),
                    format: Format::RangeCsv.into(),
                    v4,
                    v6,
                });
            }
            check_exact(&sources, 200);
        }
    }
}
