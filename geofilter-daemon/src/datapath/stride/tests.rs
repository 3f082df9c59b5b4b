//! The stride tables against the LPM rule restated (hand-written, random and real prefix sets),
//! bad prefixes refused, and the exception marks.

use std::{collections::BTreeSet, net::IpAddr};

use geofilter_common::{UNKNOWN_COUNTRY, country::country_id};
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::*;
use crate::geoip;

fn info(code: &[u8; 2], source: u16) -> PrefixInfo {
    PrefixInfo {
        country: country_id(*code).unwrap(),
        source,
    }
}

fn p(addr: u128, len: u8, info: PrefixInfo) -> Prefix {
    Prefix { addr, len, info }
}

/// The LPM rule restated: the longest prefix containing `addr`, the later one among equals.
fn reference(prefixes: &[Prefix], bits: u32, addr: u128) -> PrefixInfo {
    let mut best: Option<(u8, PrefixInfo)> = None;
    for q in prefixes {
        let host = bits - u32::from(q.len);
        let contains = host == 128 || (addr >> host) == (q.addr >> host);
        if contains && best.is_none_or(|(len, _)| q.len >= len) {
            best = Some((q.len, q.info));
        }
    }
    best.map_or(PrefixInfo::UNKNOWN, |(_, i)| i)
}

/// Every prefix's first and last address and their neighbours, plus random addresses.
fn probes(prefixes: &[Prefix], bits: u32, random: usize, rng: &mut StdRng) -> Vec<u128> {
    let max = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    let mut out = vec![0, max];
    for q in prefixes {
        let host = bits - u32::from(q.len);
        let last = q.addr
            | if host == 128 {
                u128::MAX
            } else {
                (1u128 << host) - 1
            };
        out.extend([
            q.addr,
            q.addr.saturating_sub(1),
            last,
            last.saturating_add(1).min(max),
        ]);
    }
    for _ in 0..random {
        out.push(rng.random::<u128>() & max);
    }
    out
}

fn check(family: Family, prefixes: &[Prefix], rng: &mut StdRng) {
    let table = StrideTable::build(family, prefixes).unwrap();
    let bits = family.bits();
    for addr in probes(prefixes, bits, 2000, rng) {
        assert_eq!(
            table.lookup(addr),
            super::leaf_of(reference(prefixes, bits, addr)),
            "{family:?} {addr:#x} in {prefixes:x?}"
        );
    }
}

#[test]
fn hand_written_tables_answer_like_an_lpm_table() {
    let mut rng = StdRng::seed_from_u64(1);
    let (de, ru, fr) = (info(b"DE", 0), info(b"RU", 1), info(b"FR", 0));
    let v4 = |a: [u8; 4]| u128::from(u32::from_be_bytes(a));
    check(Family::V4, &[], &mut rng);
    check(Family::V4, &[p(0, 0, de)], &mut rng);
    check(
        Family::V4,
        &[
            p(v4([5, 45, 192, 0]), 18, ru),
            p(v4([46, 114, 0, 0]), 16, de),
            // A /8 (256 root entries), a /32, a /25 and a /31 next to each other.
            p(v4([10, 0, 0, 0]), 8, fr),
            p(v4([192, 0, 2, 1]), 32, ru),
            p(v4([192, 0, 2, 128]), 25, de),
            p(v4([192, 0, 2, 2]), 31, fr),
        ],
        &mut rng,
    );
    // Nesting, in any order: /8 > /20 > /32, and a duplicate where the later one wins.
    check(
        Family::V4,
        &[
            p(v4([7, 1, 2, 3]), 32, ru),
            p(v4([7, 0, 0, 0]), 8, de),
            p(v4([7, 1, 0, 0]), 20, fr),
            p(v4([9, 0, 0, 0]), 24, de),
            p(v4([9, 0, 0, 0]), 24, ru),
        ],
        &mut rng,
    );
    let v6 = |s: &str| u128::from(s.parse::<std::net::Ipv6Addr>().unwrap());
    check(
        Family::V6,
        &[
            p(v6("2a01:598::"), 32, de),
            p(v6("2a02:6b8::"), 32, ru),
            p(v6("2001:db8::"), 48, fr),
            // Ranges ending inside a /64, down to single addresses.
            p(v6("2001:db8:1:2:3:4:5:6"), 128, ru),
            p(v6("2001:db8:1:2::"), 70, de),
            p(v6("2001:db8:1:2:ffff::"), 80, fr),
            p(v6("::"), 1, de),
        ],
        &mut rng,
    );
}

#[test]
fn random_prefix_sets_answer_like_an_lpm_table() {
    let mut rng = StdRng::seed_from_u64(2);
    for round in 0..200 {
        let family = if round % 2 == 0 {
            Family::V4
        } else {
            Family::V6
        };
        let bits = family.bits();
        // Prefixes clustered under a few /12s so that they nest and share chunks.
        let clusters: Vec<u128> = (0..3).map(|_| rng.random::<u128>()).collect();
        let prefixes: Vec<Prefix> = (0..rng.random_range(1..40))
            .map(|_| {
                let len = rng.random_range(0..=bits) as u8;
                let raw = (clusters[rng.random_range(0..3)] ^ (rng.random::<u128>() >> 12))
                    >> (128 - bits);
                let host = bits - u32::from(len);
                let addr = if host == 128 { 0 } else { raw >> host << host };
                let country = rng.random_range(1..=676);
                p(
                    addr,
                    len,
                    PrefixInfo {
                        country,
                        source: rng.random_range(0..3),
                    },
                )
            })
            .collect();
        check(family, &prefixes, &mut rng);
    }
}

#[test]
fn bad_prefixes_are_refused() {
    let de = info(b"DE", 0);
    assert!(StrideTable::build(Family::V4, &[p(1, 24, de)]).is_err());
    assert!(StrideTable::build(Family::V4, &[p(1 << 32, 8, de)]).is_err());
    assert!(StrideTable::build(Family::V4, &[p(0, 33, de)]).is_err());
    assert!(StrideTable::build(Family::V6, &[p(1, 129, de)]).is_err());
}

/// The real geo-whois-asn-country slices (with their nested ranges), compiled as the daemon
/// compiles them, against the database's own lookup.
#[test]
fn real_database_slices_match_the_compiled_database() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/geo-whois-asn-country");
    let db = geoip::load(
        &[
            dir.join("geo-whois-asn-country-ipv4.slice.csv"),
            dir.join("geo-whois-asn-country-ipv6.slice.csv"),
        ],
        None,
    )
    .unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    for (family, prefixes) in [(Family::V4, &db.v4), (Family::V6, &db.v6)] {
        let table = StrideTable::build(family, prefixes).unwrap();
        let mut probes = probes(prefixes, family.bits(), 20_000, &mut rng);
        // Random addresses inside the database's prefixes, not just anywhere.
        for _ in 0..20_000 {
            let q = prefixes[rng.random_range(0..prefixes.len())];
            let host = family.bits() - u32::from(q.len);
            let offset = if host == 0 {
                0
            } else {
                rng.random::<u128>() >> (128 - host)
            };
            probes.push(q.addr | offset);
        }
        for addr in probes {
            let ip = match family {
                Family::V4 => IpAddr::from((addr as u32).to_be_bytes()),
                Family::V6 => IpAddr::from(addr.to_be_bytes()),
            };
            let want = db.lookup(ip).map_or(PrefixInfo::UNKNOWN, |q| q.info);
            assert_eq!(table.lookup(addr), super::leaf_of(want), "{ip}");
        }
    }
}

/// Every address an exception covers passes through a marked entry; addresses far from it
/// do not (the marks are where the walk puts them, not everywhere).
#[test]
fn exception_marks_cover_their_addresses() {
    let mut rng = StdRng::seed_from_u64(4);
    for round in 0..100 {
        let family = if round % 2 == 0 {
            Family::V4
        } else {
            Family::V6
        };
        let bits = family.bits();
        let mask = if bits == 128 {
            u128::MAX
        } else {
            (1 << bits) - 1
        };
        let base = rng.random::<u128>() & mask;
        let prefixes: Vec<Prefix> = (0..30)
            .map(|_| {
                let len = rng.random_range(8..=bits) as u8;
                let host = bits - u32::from(len);
                let raw = base ^ ((rng.random::<u128>() & mask) >> rng.random_range(8..bits));
                p(raw >> host << host, len, info(b"DE", 0))
            })
            .collect();
        let table = StrideTable::build(family, &prefixes).unwrap();
        let mut marks = Marks::default();
        let len = rng.random_range(0..=bits) as u8;
        let host = bits - u32::from(len);
        let ex = if host == 128 {
            0
        } else {
            (base ^ rng.random::<u128>() & mask) >> host << host
        };
        let changed = marks.update(&table, ex, len, true);
        let marked: BTreeSet<(u32, u8)> = marks.counts.keys().copied().collect();
        assert!(!changed.is_empty());
        for _ in 0..500 {
            let offset = if host == 0 {
                0
            } else {
                rng.random::<u128>() >> (128 - host)
            };
            let addr = ex | offset;
            assert!(
                path_marked(&table, &marked, addr),
                "{addr:#x} in {ex:#x}/{len}"
            );
        }
        // Adding and removing a second exception leaves exactly the first one's marks.
        let other = rng.random::<u128>() & mask;
        marks.update(&table, other >> (bits - 24) << (bits - 24), 24, true);
        marks.update(&table, other >> (bits - 24) << (bits - 24), 24, false);
        assert_eq!(
            marks.counts.keys().copied().collect::<BTreeSet<_>>(),
            marked
        );
        marks.update(&table, ex, len, false);
        assert!(marks.counts.is_empty());
    }
}

fn path_marked(table: &StrideTable, marked: &BTreeSet<(u32, u8)>, addr: u128) -> bool {
    let bits = table.family.bits();
    let root = (addr >> (bits - ROOT_BITS)) as usize;
    let (mut chunk, mut entry) = ((root >> 8) as u32, (root & 0xff) as u8);
    let mut resolved = ROOT_BITS;
    loop {
        if marked.contains(&(chunk, entry)) {
            return true;
        }
        let e = table.chunks[chunk as usize].entries[usize::from(entry)];
        if !e.is_child() || resolved == bits {
            return false;
        }
        resolved += 8;
        chunk = e.child_index();
        entry = (addr >> (bits - resolved)) as u8;
    }
}

#[test]
fn unknown_leaves_carry_no_source() {
    let table = StrideTable::build::<Prefix>(Family::V4, &[]).unwrap();
    assert_eq!(table.lookup(0x0102_0304).country, UNKNOWN_COUNTRY);
    assert_eq!(table.chunks.len(), ROOT_CHUNKS as usize);
}
