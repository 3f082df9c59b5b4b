//! The partition against a plain scan: for random countries, ASNs and lists, every boundary
//! address and random addresses between them get the country, ASN and lists a linear scan of
//! the inputs gives, through the compiled table's own walk.

use geofilter_common::{PrefixInfo, UNKNOWN_COUNTRY};
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::*;
use crate::datapath::stride::StrideTable;

/// Disjoint sorted ranges of `bits`-bit addresses, none empty.
fn ranges(rng: &mut StdRng, bits: u32, n: usize) -> Vec<(u128, u128)> {
    let span = if bits == 128 {
        1u128 << 40
    } else {
        1u128 << 32
    };
    let shift = if bits == 128 { 88 } else { 0 };
    let mut points: Vec<u128> = (0..2 * n).map(|_| rng.random_range(0..span)).collect();
    points.sort_unstable();
    points.dedup();
    points
        .chunks_exact(2)
        .map(|p| (p[0] << shift, ((p[1] + 1) << shift) - 1))
        .collect()
}

fn prefixes(ranges: &[(u128, u128)], bits: u32, rng: &mut StdRng) -> Vec<Prefix> {
    let mut out = Vec::new();
    for &(start, end) in ranges {
        let info = PrefixInfo {
            country: rng.random_range(1..250),
            source: 0,
        };
        for_each_prefix(start, end, bits, |addr, len| {
            out.push(Prefix { addr, len, info })
        });
    }
    out
}

fn scan<T: Copy>(ranges: impl IntoIterator<Item = (u128, u128, T)>, addr: u128) -> Option<T> {
    ranges
        .into_iter()
        .find(|&(s, e, _)| s <= addr && addr <= e)
        .map(|(_, _, v)| v)
}

#[test]
fn every_address_gets_its_country_asn_and_lists() {
    for (family, seed) in [(Family::V4, 1), (Family::V6, 2), (Family::V4, 3)] {
        let bits = family.bits();
        let mut rng = StdRng::seed_from_u64(seed);
        let countries = prefixes(&ranges(&mut rng, bits, 300), bits, &mut rng);
        let asns: Vec<AsnRange> = ranges(&mut rng, bits, 400)
            .into_iter()
            .map(|(start, end)| AsnRange {
                start,
                end,
                asn: rng.random_range(1..60),
            })
            .collect();
        let list_ranges: Vec<Vec<(u128, u128)>> =
            (0..3).map(|_| ranges(&mut rng, bits, 50)).collect();
        let lists: Vec<ListSpans> = list_ranges
            .iter()
            .enumerate()
            .map(|(i, r)| ListSpans {
                slot: [0, 5, 31][i],
                ranges: r,
            })
            .collect();
        let input = compile(family, &countries, &asns, &lists).unwrap();
        let index = &input.index;
        let table = StrideTable::build(family, &input.prefixes).unwrap();
        let mut probes: Vec<u128> = Vec::new();
        for p in &countries {
            probes.extend([p.addr, last_addr(p.addr, p.len, bits)]);
        }
        for a in &asns {
            probes.extend([a.start, a.end, a.end.wrapping_add(1)]);
        }
        for r in list_ranges.iter().flatten() {
            probes.extend([r.0, r.1, r.0.wrapping_sub(1)]);
        }
        probes.extend((0..2000).map(|_| rng.random_range(0..family.max())));
        for addr in probes.into_iter().filter(|&a| a <= family.max()) {
            let want_country = scan(
                countries
                    .iter()
                    .map(|p| (p.addr, last_addr(p.addr, p.len, bits), p.info.country)),
                addr,
            )
            .unwrap_or(UNKNOWN_COUNTRY);
            let want_asn = scan(asns.iter().map(|a| (a.start, a.end, a.asn)), addr);
            let want_lists = lists
                .iter()
                .filter(|l| scan(l.ranges.iter().map(|&(s, e)| (s, e, ())), addr).is_some())
                .fold(0u32, |m, l| m | 1 << l.slot);
            let leaf = table.lookup(addr);
            let net = input.nets.nets[leaf.net as usize];
            assert_eq!(
                (leaf.country, index.asn(leaf.net), net.lists),
                (want_country, want_asn, want_lists),
                "{family:?} {addr:#x}"
            );
        }
        // Every ASN has its nets, and every net its ASN.
        let mut distinct: Vec<u32> = asns.iter().map(|a| a.asn).collect();
        distinct.sort_unstable();
        distinct.dedup();
        let mut indexed: Vec<u32> = index.asn_nets.keys().copied().collect();
        indexed.sort_unstable();
        assert_eq!(indexed, distinct);
        for (asn, nets) in &index.asn_nets {
            assert!(nets.iter().all(|&n| index.asn(n) == Some(*asn)));
        }
    }
}

#[test]
fn without_asns_or_lists_there_is_one_net_and_the_table_is_the_countries() {
    let mut rng = StdRng::seed_from_u64(9);
    let countries = prefixes(&ranges(&mut rng, 32, 200), 32, &mut rng);
    let input = compile(Family::V4, &countries, &[], &[]).unwrap();
    let index = &input.index;
    assert_eq!(input.nets.nets, vec![Net::default()]);
    assert_eq!(index.net_asn, vec![0]);
    let table = StrideTable::build(Family::V4, &input.prefixes).unwrap();
    let direct = StrideTable::build(Family::V4, &countries).unwrap();
    for _ in 0..5000 {
        let addr = rng.random_range(0..1u128 << 32);
        assert_eq!(table.lookup(addr).country, direct.lookup(addr).country);
    }
}

#[test]
fn an_asn_without_a_country_still_has_a_leaf() {
    let asns = [AsnRange {
        start: 0x0101_0100,
        end: 0x0101_01ff,
        asn: 13335,
    }];
    let input = compile(Family::V4, &[], &asns, &[]).unwrap();
    let index = &input.index;
    let table = StrideTable::build(Family::V4, &input.prefixes).unwrap();
    let leaf = table.lookup(0x0101_0101);
    assert_eq!(leaf.country, UNKNOWN_COUNTRY);
    assert_eq!(index.asn(leaf.net), Some(13335));
    assert_eq!(table.lookup(0x0101_0200), Leaf::UNKNOWN);
}

#[test]
fn a_bad_list_slot_is_refused() {
    let r = [(0u128, 5u128)];
    let lists = [ListSpans {
        slot: LIST_SLOTS,
        ranges: &r,
    }];
    assert_eq!(
        compile(Family::V4, &[], &[], &lists).unwrap_err(),
        NetsError::BadListSlot { slot: LIST_SLOTS }
    );
}
