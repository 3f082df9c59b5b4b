//! Tests of [`super::compile()`]: the rules of the module docs of [`crate::geoip`], case by case.

use std::path::PathBuf;

use super::{
    super::{
        Format, Range,
        prefixes::last_addr,
        tests::{cc, ip},
    },
    *,
};

fn src(v4: &[(u128, u128, &str)], v6: &[(u128, u128, &str)]) -> SourceRanges {
    let conv = |l: &[(u128, u128, &str)]| {
        l.iter()
            .map(|&(start, end, c)| Range {
                start,
                end,
                country: if c == "??" { UNKNOWN_COUNTRY } else { cc(c) },
            })
            .collect()
    };
    SourceRanges {
        path: PathBuf::from("t.csv"),
        format: Format::RangeCsv.into(),
        v4: conv(v4),
        v6: conv(v6),
    }
}

/// (first, last, country, source) of the compiled table, with prefixes merged back.
fn segments(db: &[Prefix], bits: u32) -> Vec<(u128, u128, String, u16)> {
    let mut out: Vec<(u128, u128, String, u16)> = Vec::new();
    for p in db {
        let code = crate::country::code_str(p.info.country);
        let last = last_addr(p.addr, p.len, bits);
        if let Some(prev) = out.last_mut()
            && prev.1 + 1 == p.addr
            && prev.2 == code
            && prev.3 == p.info.source
        {
            prev.1 = last;
            continue;
        }
        out.push((p.addr, last, code, p.info.source));
    }
    out
}

fn seg(a: u128, b: u128, c: &str, s: u16) -> (u128, u128, String, u16) {
    (a, b, c.to_owned(), s)
}

#[test]
fn nested_ranges_most_specific_wins() {
    let db = compile(vec![src(
        &[
            (0, 63, "DE"),
            (40, 47, "TR"),
            (44, 44, "FR"),
            (100, 200, "US"),
            (150, 300, "CA"),
        ],
        &[],
    )]);
    assert_eq!(
        segments(&db.v4, 32),
        [
            seg(0, 39, "DE", 0),
            seg(40, 43, "TR", 0),
            seg(44, 44, "FR", 0),
            seg(45, 47, "TR", 0),
            seg(48, 63, "DE", 0),
            // Partial overlap: the smaller range (US, 101 addresses) wins where both apply.
            seg(100, 200, "US", 0),
            seg(201, 300, "CA", 0),
        ]
    );
}

#[test]
fn ties_go_to_later_file_then_later_line() {
    let a = src(&[(0, 255, "DE"), (256, 511, "FR")], &[]);
    let b = src(&[(0, 255, "RU")], &[]);
    let db = compile(vec![a.clone(), b.clone()]);
    assert_eq!(
        segments(&db.v4, 32),
        [seg(0, 255, "RU", 1), seg(256, 511, "FR", 0)]
    );
    let db = compile(vec![b, a]);
    assert_eq!(
        segments(&db.v4, 32),
        [seg(0, 255, "DE", 1), seg(256, 511, "FR", 1)]
    );
    // Within one file, the later line; also for equal-size ranges that only overlap.
    let db = compile(vec![src(&[(0, 9, "DE"), (0, 9, "FR"), (5, 14, "IT")], &[])]);
    assert_eq!(
        segments(&db.v4, 32),
        [seg(0, 4, "FR", 0), seg(5, 14, "IT", 0)]
    );
    // A smaller range wins even from an earlier file.
    let db = compile(vec![src(&[(4, 5, "DE")], &[]), src(&[(0, 9, "FR")], &[])]);
    assert_eq!(
        segments(&db.v4, 32),
        [seg(0, 3, "FR", 1), seg(4, 5, "DE", 0), seg(6, 9, "FR", 1)]
    );
}

#[test]
fn unknown_ranges_take_part_and_are_dropped() {
    let db = compile(vec![src(
        &[(0, 255, "DE"), (16, 31, "??"), (300, 400, "??")],
        &[],
    )]);
    assert_eq!(
        segments(&db.v4, 32),
        [seg(0, 15, "DE", 0), seg(32, 255, "DE", 0)]
    );
    assert!(db.lookup("0.0.0.20".parse().unwrap()).is_none());
    assert!(db.lookup("0.0.1.100".parse().unwrap()).is_none());
    assert_eq!(db.countries().into_iter().collect::<Vec<_>>(), [cc("DE")]);
}

#[test]
fn adjacent_equal_segments_merge() {
    let db = compile(vec![src(
        &[(0, 127, "DE"), (128, 255, "DE"), (256, 511, "FR")],
        &[],
    )]);
    assert_eq!(
        db.v4.iter().map(|p| (p.addr, p.len)).collect::<Vec<_>>(),
        [(0, 24), (256, 24)]
    );
    // Not across files: `why` must name the right one.
    let db = compile(vec![
        src(&[(0, 127, "DE")], &[]),
        src(&[(128, 255, "DE")], &[]),
    ]);
    assert_eq!(db.v4.len(), 2);
}

#[test]
fn whole_spaces_and_their_ends() {
    let db = compile(vec![src(
        &[
            (0, u32::MAX as u128, "DE"),
            (u32::MAX as u128, u32::MAX as u128, "FR"),
        ],
        &[(0, u128::MAX, "US"), (u128::MAX - 255, u128::MAX, "CA")],
    )]);
    assert_eq!(
        segments(&db.v4, 32),
        [
            seg(0, u32::MAX as u128 - 1, "DE", 0),
            seg(u32::MAX as u128, u32::MAX as u128, "FR", 0)
        ]
    );
    assert_eq!(db.v4.len(), 33);
    assert_eq!(
        segments(&db.v6, 128),
        [
            seg(0, u128::MAX - 256, "US", 0),
            seg(u128::MAX - 255, u128::MAX, "CA", 0)
        ]
    );
    assert_eq!(
        db.lookup(ip("255.255.255.255")).unwrap().info.country,
        cc("FR")
    );
    assert_eq!(db.lookup(ip("0.0.0.0")).unwrap().info.country, cc("DE"));
    assert_eq!(
        db.lookup(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"))
            .unwrap()
            .info
            .country,
        cc("CA")
    );
    assert_eq!(db.lookup(ip("::")).unwrap().info.country, cc("US"));
    let whole = compile(vec![src(
        &[(0, u32::MAX as u128, "DE")],
        &[(0, u128::MAX, "US")],
    )]);
    assert_eq!(
        whole.v4.iter().map(|p| (p.addr, p.len)).collect::<Vec<_>>(),
        [(0, 0)]
    );
    assert_eq!(
        whole.v6.iter().map(|p| (p.addr, p.len)).collect::<Vec<_>>(),
        [(0, 0)]
    );
    assert_eq!(whole.lookup(ip("255.255.255.255")).unwrap().len, 0);
}

#[test]
fn sweep_handles_gaps_and_many_layers() {
    // Gaps between overlapping clusters, and a range starting right after a winner's end.
    let db = compile(vec![src(
        &[
            (10, 20, "DE"),
            (12, 13, "FR"),
            (50, 60, "IT"),
            (50, 55, "ES"),
            (56, 60, "PT"),
            (61, 61, "PL"),
        ],
        &[],
    )]);
    assert_eq!(
        segments(&db.v4, 32),
        [
            seg(10, 11, "DE", 0),
            seg(12, 13, "FR", 0),
            seg(14, 20, "DE", 0),
            seg(50, 55, "ES", 0),
            seg(56, 60, "PT", 0),
            seg(61, 61, "PL", 0),
        ]
    );
    // Out-of-family and reversed input is ignored rather than wrapped.
    let db = compile(vec![src(
        &[(5, 4, "DE"), (1 << 32, 1 << 33, "FR"), (0, 1 << 40, "IT")],
        &[],
    )]);
    assert_eq!(segments(&db.v4, 32), [seg(0, u32::MAX as u128, "IT", 0)]);
}

#[test]
fn summaries_and_lookup_misses() {
    let db = compile(vec![src(
        &[(256, 511, "DE")],
        &[(1 << 100, (1 << 100) + 5, "FR")],
    )]);
    assert_eq!(
        db.sources,
        [SourceSummary {
            path: PathBuf::from("t.csv"),
            format: Format::RangeCsv.into(),
            ranges_v4: 1,
            ranges_v6: 1,
        }]
    );
    assert!(db.lookup(ip("0.0.0.255")).is_none());
    assert!(db.lookup(ip("0.0.2.0")).is_none());
    assert_eq!(db.lookup(ip("0.0.1.0")).unwrap().len, 24);
    assert!(db.lookup(ip("::1")).is_none());
    assert!(compile(Vec::new()).lookup(ip("1.2.3.4")).is_none());
}
