//! Exactness of the ASN table: [`super::load`] over randomized multi-file inputs of every format
//! (both CSV address styles, both TSV address styles, IPv4 and IPv6 MMDB trees, some gzip'd)
//! answers every address as [`reference_lookup`] does over the ranges read, and the readers read
//! exactly the ranges that were written. Ranges are drawn in a small window of each family so
//! that they overlap, nest, tie and touch all the time; AS numbers from a small set (with AS 0)
//! so that merging and "no AS" pieces are exercised.

use std::{fmt::Write as _, net::IpAddr};

use rand::{Rng, SeedableRng, rngs::StdRng};

use super::{reference::reference_lookup, *};
use crate::geoip::{
    mmdb_writer::Writer,
    tests::{gzip, v4, v6},
};

/// Window starts: `10.0.0.0` and `2001:db8::`, 4096 addresses each.
const WINDOW: u128 = 4096;
const ASNS: [u32; 7] = [0, 1, 2, 3, 13335, 64500, u32::MAX];

/// One written range: (IPv6, start, end, AS) as the reader must return it.
type Written = (bool, u128, u128, u32);

#[derive(Clone, Copy, Debug)]
enum Kind {
    CsvText,
    CsvNum,
    TsvText,
    TsvNum,
    Mmdb4,
    Mmdb6,
}

const KINDS: [Kind; 6] = [
    Kind::CsvText,
    Kind::CsvNum,
    Kind::TsvText,
    Kind::TsvNum,
    Kind::Mmdb4,
    Kind::Mmdb6,
];

fn base(ipv6: bool) -> u128 {
    if ipv6 {
        v6("2001:db8::")
    } else {
        v4("10.0.0.0")
    }
}

fn text_addr(v6: bool, value: u128) -> String {
    if v6 {
        std::net::Ipv6Addr::from(value).to_string()
    } else {
        std::net::Ipv4Addr::from(value as u32).to_string()
    }
}

/// Random ranges for a text file: overlapping, nested, repeated; some IPv4 written as
/// IPv4-mapped IPv6 (read back as IPv4).
fn text_ranges(rng: &mut StdRng, n: usize) -> Vec<(Written, bool)> {
    let mut out: Vec<(Written, bool)> = Vec::new();
    for _ in 0..n {
        if !out.is_empty() && rng.random_range(0..8) == 0 {
            // An exact repeat (a tie) with another AS.
            let ((v6, s, e, _), mapped) = out[rng.random_range(0..out.len())];
            out.push(((v6, s, e, ASNS[rng.random_range(0..ASNS.len())]), mapped));
            continue;
        }
        let v6 = rng.random_bool(0.4);
        let start = rng.random_range(0..WINDOW);
        let scale = rng.random_range(0..10);
        let size = rng.random_range(0..(1u128 << scale));
        let end = (start + size).min(WINDOW - 1);
        let asn = ASNS[rng.random_range(0..ASNS.len())];
        let mapped = !v6 && rng.random_bool(0.1);
        out.push(((v6, base(v6) + start, base(v6) + end, asn), mapped));
    }
    out
}

fn write_text(rng: &mut StdRng, kind: Kind, ranges: &[(Written, bool)]) -> String {
    let mut s = String::new();
    for &((v6, start, end, asn), mapped) in ranges {
        let (v6_text, start, end) = if mapped {
            (true, start + (0xffff << 32), end + (0xffff << 32))
        } else {
            (v6, start, end)
        };
        let (a, b) = match kind {
            Kind::CsvText | Kind::TsvText => (text_addr(v6_text, start), text_addr(v6_text, end)),
            _ => (start.to_string(), end.to_string()),
        };
        let asn_text = if rng.random_bool(0.2) {
            format!("AS{asn}")
        } else {
            asn.to_string()
        };
        match kind {
            Kind::CsvText | Kind::CsvNum => {
                let _ = writeln!(s, "{a},{b},{asn_text},\"Org \"\"{asn}\"\", Inc.\"");
            }
            _ => {
                let _ = writeln!(s, "{a}\t{b}\t{asn_text}\tZZ\tORG-{asn} Org {asn}");
            }
        }
    }
    s
}

/// Random disjoint CIDR networks in the window, written as an MMDB tree of `version`.
fn write_mmdb(rng: &mut StdRng, version: u16, n: usize) -> (Vec<u8>, Vec<Written>) {
    let mut w = Writer::new(version);
    let mut taken: Vec<Written> = Vec::new();
    let records: Vec<_> = ASNS
        .iter()
        .map(|&a| w.asn_record(a, (a != 0).then_some("Org")))
        .collect();
    for _ in 0..n {
        let v6 = version == 6 && rng.random_bool(0.5);
        let host_bits = rng.random_range(0..10u32);
        let start = rng.random_range(0..WINDOW) >> host_bits << host_bits;
        let (start, end) = (base(v6) + start, base(v6) + start + (1 << host_bits) - 1);
        if taken
            .iter()
            .any(|&(f, s, e, _)| f == v6 && s <= end && start <= e)
        {
            continue;
        }
        let i = rng.random_range(0..ASNS.len());
        let bits = if v6 { 128 } else { 32 };
        // IPv4 in an IPv6 tree lives at ::/96.
        let offset = if version == 6 && !v6 { 96 } else { 0 };
        w.insert(start, offset + bits - host_bits, records[i]);
        taken.push((v6, start, end, ASNS[i]));
    }
    if version == 6 && taken.iter().any(|t| !t.0) {
        let ipv4 = w.node_at(0, 96);
        w.insert(v6("::ffff:0:0"), 96, ipv4);
    }
    taken.sort_by_key(|&(v6, s, ..)| (v6, s));
    (w.finish("GeoLite2-ASN"), taken)
}

#[test]
fn randomized_multi_file_loads_match_the_reference_lookup() {
    let seed = std::env::var("GEOFILTER_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("asn exactness seed {seed} (GEOFILTER_FUZZ_SEED to repeat)");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0usize;
    for round in 0..40 {
        let files = rng.random_range(1..=4);
        let mut paths = Vec::new();
        let mut expected = Vec::new();
        for f in 0..files {
            let kind = KINDS[rng.random_range(0..KINDS.len())];
            let n = rng.random_range(1..120);
            let (bytes, mut written, sorted) = match kind {
                Kind::Mmdb4 | Kind::Mmdb6 => {
                    let (bytes, w) =
                        write_mmdb(&mut rng, if matches!(kind, Kind::Mmdb4) { 4 } else { 6 }, n);
                    (bytes, w, true)
                }
                _ => {
                    let ranges = text_ranges(&mut rng, n);
                    let text = write_text(&mut rng, kind, &ranges);
                    (
                        text.into_bytes(),
                        ranges.into_iter().map(|r| r.0).collect(),
                        false,
                    )
                }
            };
            // Every file needs a range with an AS, or it is refused (tested elsewhere).
            if written.iter().all(|w| w.3 == NO_ASN) {
                continue;
            }
            let gz = rng.random_bool(0.3);
            let bytes = if gz { gzip(&bytes) } else { bytes };
            // A gzip'd MMDB is recognised by its name only (as for countries).
            let name = format!(
                "r{round}f{f}-{kind:?}{}{}",
                if sorted { ".mmdb" } else { "" },
                if gz { ".gz" } else { "" }
            );
            let path = dir.path().join(name);
            std::fs::write(&path, &bytes).unwrap();
            if !sorted {
                // Text readers keep file order; a stable split by family keeps it per family.
                written.sort_by_key(|w| w.0);
            }
            paths.push(path);
            expected.push((kind, written));
        }
        if paths.is_empty() {
            continue;
        }
        let db = load(&paths, None).unwrap_or_else(|e| panic!("seed {seed} round {round}: {e}"));
        let sources: Vec<AsnSource> = paths
            .iter()
            .map(|p| read_source(p, None).unwrap())
            .collect();
        // The readers read what was written, in order.
        for ((kind, written), source) in expected.iter().zip(&sources) {
            let read: Vec<Written> = source
                .v4
                .iter()
                .map(|r| (false, r.start, r.end, r.asn))
                .chain(source.v6.iter().map(|r| (true, r.start, r.end, r.asn)))
                .collect();
            assert_eq!(&read, written, "seed {seed} round {round} {kind:?}");
        }
        check_table(&db, seed);
        let mut probe = |v6: bool, addr: u128| {
            let ip = if v6 {
                IpAddr::V6(addr.into())
            } else {
                IpAddr::V4((addr as u32).into())
            };
            assert_eq!(
                db.lookup(ip),
                reference_lookup(&sources, ip),
                "seed {seed} round {round}: {ip}"
            );
            checked += 1;
        };
        for s in &sources {
            for (v6, r) in
                s.v4.iter()
                    .map(|r| (false, r))
                    .chain(s.v6.iter().map(|r| (true, r)))
            {
                for a in [r.start.wrapping_sub(1), r.start, r.end, r.end + 1] {
                    probe(v6, a);
                }
            }
        }
        for _ in 0..500 {
            let v6 = rng.random_bool(0.5);
            probe(v6, base(v6) + rng.random_range(0..WINDOW + 16));
        }
    }
    eprintln!("asn exactness: {checked} addresses agree");
    assert!(checked > 10_000);
}

/// Sorted, disjoint, adjacent pieces of one AS merged, no AS 0, within the family.
pub(super) fn check_table(db: &AsnDb, seed: u64) {
    for (table, max) in [(&db.v4, u32::MAX as u128), (&db.v6, u128::MAX)] {
        for r in table.iter() {
            assert!(
                r.start <= r.end && r.end <= max && r.asn != NO_ASN,
                "seed {seed}: {r:?}"
            );
        }
        for w in table.windows(2) {
            assert!(w[0].end < w[1].start, "seed {seed}: overlap {w:?}");
            assert!(
                !(w[0].asn == w[1].asn && w[0].end + 1 == w[1].start),
                "seed {seed}: unmerged {w:?}"
            );
        }
    }
}
