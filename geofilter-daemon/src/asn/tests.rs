//! Unit tests of the ASN readers, detection, rules and errors; the randomized exactness test
//! against [`super::reference`] is in `tests/exactness.rs` of this module's folder.

use super::*;
use crate::geoip::{
    DbError,
    mmdb_writer::{Rec, Writer},
    tests::{file, gzip, ip, v4, v6},
};

pub(super) fn r(start: u128, end: u128, asn: u32) -> AsnRange {
    AsnRange { start, end, asn }
}

fn read(name: &str, content: &[u8]) -> Result<AsnSource, AsnError> {
    let (_dir, path) = file(name, content);
    read_source(&path, None)
}

/// The message of reading `content` as `name`, with the temporary folder cut off.
pub(super) fn err(name: &str, content: &[u8]) -> String {
    let (dir, path) = file(name, content);
    let e = read_source(&path, None).unwrap_err().to_string();
    e.replace(&format!("{}/", dir.path().display()), "")
}

pub(super) const CSV: &str = r#"1.0.0.0,1.0.0.255,13335,"Cloudflare, Inc."
1.0.4.0,1.0.7.255,38803,Gtelecom Pty Ltd
2.26.200.0,2.26.215.255,201907,"LLC ""SPUTNIK"""
2001:4:112::,2001:4:112:ffff:ffff:ffff:ffff:ffff,112,DNS-OARC
::ffff:8.8.8.0,::ffff:8.8.8.255,15169,Google LLC
"#;

#[test]
fn ip_location_db_csv() {
    let s = read("asn-ipv4.csv", CSV.as_bytes()).unwrap();
    assert_eq!(s.format, AsnFormat::IpLocationDbCsv);
    assert_eq!(
        s.v4,
        [
            r(v4("1.0.0.0"), v4("1.0.0.255"), 13335),
            r(v4("1.0.4.0"), v4("1.0.7.255"), 38803),
            r(v4("2.26.200.0"), v4("2.26.215.255"), 201907),
            // IPv4-mapped IPv6 is IPv4.
            r(v4("8.8.8.0"), v4("8.8.8.255"), 15169),
        ]
    );
    assert_eq!(
        s.v6,
        [r(
            v6("2001:4:112::"),
            v6("2001:4:112:ffff:ffff:ffff:ffff:ffff"),
            112
        )]
    );
    assert_eq!(s.names[&13335], "Cloudflare, Inc.");
    assert_eq!(s.names[&201907], "LLC \"SPUTNIK\"");
    assert_eq!(s.names.len(), 5);
    // The -num variant, with a header line, and gzip under a misleading name.
    let num = "ip_range_start,ip_range_end,autonomous_system_number,autonomous_system_organization\n\
               16777216,16777471,13335,\"Cloudflare, Inc.\"\n\
               42540528726795050063891204319802818560,42540528806023212578155541913346768895,2500,WIDE\n";
    let s = read("plain.txt", &gzip(num.as_bytes())).unwrap();
    assert_eq!(s.format, AsnFormat::IpLocationDbCsv);
    assert_eq!(s.v4, [r(v4("1.0.0.0"), v4("1.0.0.255"), 13335)]);
    assert_eq!(
        s.v6,
        [r(
            v6("2001:200::"),
            v6("2001:200:ffff:ffff:ffff:ffff:ffff:ffff"),
            2500
        )]
    );
}

/// iptoasn's documented layout (iptoasn.com is unreachable from the build machine, so these lines
/// are written by its documentation: `range_start range_end AS_number country_code
/// AS_description`, tab-separated, AS 0 "Not routed").
pub(super) const TSV: &str = "1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET - Cloudflare, Inc.\n\
                   1.0.1.0\t1.0.3.255\t0\tNone\tNot routed\n\
                   1.0.4.0\t1.0.7.255\t38803\tAU\tGTELECOM-AUSTRALIA Gtelecom Pty Ltd\n\
                   8.8.8.0\t8.8.8.255\t15169\tUS\tGOOGLE\n";

#[test]
fn iptoasn_tsv() {
    let s = read("ip2asn-v4.tsv", TSV.as_bytes()).unwrap();
    assert_eq!(s.format, AsnFormat::Iptoasn);
    assert_eq!(
        s.v4,
        [
            r(v4("1.0.0.0"), v4("1.0.0.255"), 13335),
            r(v4("1.0.1.0"), v4("1.0.3.255"), NO_ASN),
            r(v4("1.0.4.0"), v4("1.0.7.255"), 38803),
            r(v4("8.8.8.0"), v4("8.8.8.255"), 15169),
        ]
    );
    assert_eq!(s.names[&13335], "CLOUDFLARENET - Cloudflare, Inc.");
    assert!(!s.names.contains_key(&NO_ASN), "\"Not routed\" is no name");
    // Gzip, the u32 variant, IPv6 and an empty description.
    let (_d, path) = file(
        "ip2asn-combined.tsv.gz",
        &gzip(b"16777216\t16777471\t13335\tUS\tCLOUDFLARENET\n2001:200::\t2001:200:ffff:ffff:ffff:ffff:ffff:ffff\t2500\tJP\t\n"),
    );
    let db = load(&[path], None).unwrap();
    assert_eq!(db.lookup(ip("1.0.0.1")), Some(13335));
    assert_eq!(db.lookup(ip("2001:200::1")), Some(2500));
    assert_eq!(db.name(2500), None);
    assert_eq!(db.sources[0].format, AsnFormat::Iptoasn);
    // The "Not routed" block is no AS; the merged table has only ranges with one.
    let (_d, path) = file("ip2asn-v4.tsv", TSV.as_bytes());
    let db = load(&[path], None).unwrap();
    assert_eq!(db.lookup(ip("1.0.2.0")), None);
    assert_eq!(db.v4.len(), 3);
    assert_eq!(db.asns(), 3);
}

pub(super) fn asn_mmdb(version: u16, database_type: &str) -> Vec<u8> {
    let mut w = Writer::new(version);
    let cf = w.asn_record(13335, Some("Cloudflare, Inc."));
    let google = w.asn_record(15169, Some("Google LLC"));
    let long = "A".repeat(200);
    let wide = w.asn_record(64500, Some(&long));
    let none = w.asn_record(NO_ASN, None);
    let (shift, base) = if version == 6 { (96, 0) } else { (0, 0) };
    w.insert(base + v4("1.1.1.0"), shift + 24, cf);
    w.insert(base + v4("8.8.8.0"), shift + 24, google);
    w.insert(base + v4("9.0.0.0"), shift + 8, none);
    w.insert(base + v4("10.0.0.0"), shift + 8, wide);
    if version == 6 {
        w.insert(v6("2606:4700::"), 32, cf);
        let ipv4 = w.node_at(0, 96);
        assert!(matches!(ipv4, Rec::Node(_)));
        w.insert(v6("::ffff:0:0"), 96, ipv4);
    }
    w.finish(database_type)
}

#[test]
fn maxmind_asn_mmdb() {
    for version in [4, 6] {
        let bytes = asn_mmdb(version, "GeoLite2-ASN");
        let s = read("GeoLite2-ASN.mmdb", &bytes).unwrap();
        assert_eq!(s.format, AsnFormat::Mmdb);
        assert_eq!(
            s.v4,
            [
                r(v4("1.1.1.0"), v4("1.1.1.255"), 13335),
                r(v4("8.8.8.0"), v4("8.8.8.255"), 15169),
                r(v4("9.0.0.0"), v4("9.255.255.255"), NO_ASN),
                r(v4("10.0.0.0"), v4("10.255.255.255"), 64500),
            ],
            "IPv{version}"
        );
        assert_eq!(s.names[&15169], "Google LLC");
        assert_eq!(s.names[&64500].len(), 200);
        if version == 6 {
            assert_eq!(
                s.v6.len(),
                1,
                "the ::ffff:0:0/96 alias is read once, as IPv4"
            );
        }
        // Detected by content under another name; gzip'd with the .mmdb name.
        assert_eq!(read("asn.bin", &bytes).unwrap().format, AsnFormat::Mmdb);
        assert_eq!(read("asn.mmdb.gz", &gzip(&bytes)).unwrap().v4.len(), 4);
    }
    // The records say ASN even when the type does not.
    let s = read("custom.mmdb", &asn_mmdb(4, "my-networks")).unwrap();
    assert_eq!(s.v4.len(), 4);
}

#[test]
fn errors_name_file_line_and_text() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "a.csv",
            "1.0.0.0,1.0.0.255,13335,x\n1.0.1.0,1.0.1.255,AS99999999999,y\n",
            "a.csv:2: invalid AS number \"AS99999999999\" (expected 0 to 4294967295, optionally \
             after \"AS\") in \"1.0.1.0,1.0.1.255,AS99999999999,y\"",
        ),
        (
            "a.csv",
            "1.0.0.0,1.0.0.255,13335,x\n# comment\n\n1.0.1.0,1.0.1.999,5,y\n",
            "a.csv:4: bad end address \"1.0.1.999\" in \"1.0.1.0,1.0.1.999,5,y\"",
        ),
        (
            "a.csv",
            "1.0.0.0,1.0.0.255,13335,x\n1.0.2.0,1.0.1.0,5,y\n",
            "a.csv:2: start 1.0.2.0 is after end 1.0.1.0 in \"1.0.2.0,1.0.1.0,5,y\"",
        ),
        (
            "a.csv",
            "1.0.0.0,1.0.0.255,13335,x\n1.0.2.0,::1,5,y\n",
            "a.csv:2: start 1.0.2.0 and end ::1 are of different address families in \
             \"1.0.2.0,::1,5,y\"",
        ),
        (
            "a.csv",
            "1.0.0.0,1.0.0.255,13335,x\n1.0.2.0,1.0.2.9,5,y,z\n",
            "a.csv:2: expected 3 or 4 (start,end,asn[,organisation]), found 5 field(s) in \
             \"1.0.2.0,1.0.2.9,5,y,z\"",
        ),
        (
            "a.csv",
            "1.0.0.0,1.0.0.255,13335,x\nfoo,1.0.2.9,5,y\n",
            "a.csv:2: bad start address \"foo\" in \"foo,1.0.2.9,5,y\"",
        ),
        (
            "ip2asn-v4.tsv",
            "1.0.0.0\t1.0.0.255\t13335\tUS\tX\n1.0.1.0\t1.0.1.255\tfour\tUS\tY\n",
            "ip2asn-v4.tsv:2: invalid AS number \"four\" (expected 0 to 4294967295, optionally \
             after \"AS\") in \"1.0.1.0\\t1.0.1.255\\tfour\\tUS\\tY\"",
        ),
        (
            "ip2asn-v4.tsv",
            "1.0.0.0\t1.0.0.255\t13335\tUS\tX\n1.0.1.0\t1.0.1.255\t7\n",
            "ip2asn-v4.tsv:2: expected 5 tab-separated (start, end, AS number, country, \
             description), found 3 field(s) in \"1.0.1.0\\t1.0.1.255\\t7\"",
        ),
        (
            "ip2asn-v4.tsv",
            "1.0.0.0\t1.0.0.255\t0\tNone\tNot routed\n",
            "ip2asn-v4.tsv: 1 ranges but none with an AS number; is it an ASN database?",
        ),
    ];
    for (name, content, want) in cases {
        assert_eq!(&err(name, content.as_bytes()), want);
    }
    // Forced formats: a file with no ranges, a huge line, a broken gzip stream, a bad MMDB.
    let (dir, path) = file("empty.csv", b"# nothing\n");
    let e = read_source(&path, Some(AsnFormat::IpLocationDbCsv)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}/empty.csv: no IPv4 or IPv6 ranges found as ip-location-db-csv (wrong file or \
             --asn-format?)",
            dir.path().display()
        )
    );
    let (_d, path) = file("huge.tsv", &vec![b'1'; 70_000]);
    let e = read_source(&path, Some(AsnFormat::Iptoasn)).unwrap_err();
    assert!(
        e.to_string().ends_with(
            "huge.tsv:1: line is longer than 65536 bytes; is this really a iptoasn ASN file?"
        ),
        "{e}"
    );
    let good = gzip(TSV.repeat(2000).as_bytes());
    let (_d, path) = file("cut.tsv.gz", &good[..good.len() / 2]);
    let e = read_source(&path, Some(AsnFormat::Iptoasn)).unwrap_err();
    assert!(matches!(e, AsnError::Db(DbError::ReadAt { .. })), "{e:?}");
    let bytes = asn_mmdb(4, "GeoLite2-ASN");
    let (_d, path) = file("cut.mmdb", &bytes[..bytes.len() / 2]);
    let e = read_source(&path, Some(AsnFormat::Mmdb)).unwrap_err();
    assert!(
        e.to_string()
            .contains("cut.mmdb: not a valid MaxMind DB file"),
        "{e}"
    );
    // A graph that would expand is refused before it is walked, as for countries.
    let (_d, path) = file("dag.mmdb", &Writer::dag(4, 32));
    assert!(read_source(&path, Some(AsnFormat::Mmdb)).is_err());
    // Too many ranges for the budget.
    let tiny = crate::geoip::Limits {
        ranges: 2,
        prefixes: 2,
        table_mib: 0,
    };
    let (_d, path) = file("ip2asn-v4.tsv", TSV.as_bytes());
    let e = read_source_within(&path, None, &tiny).unwrap_err();
    assert!(
        e.to_string()
            .contains("ip2asn-v4.tsv:3: more than 2 IPv4 ranges"),
        "{e}"
    );
}

#[test]
fn most_specific_wins_ties_go_later_and_neighbours_merge() {
    let source = |path: &str, v4: Vec<AsnRange>| AsnSource {
        path: path.into(),
        format: AsnFormat::Iptoasn,
        v4,
        v6: Vec::new(),
        names: [(1, format!("one in {path}"))].into_iter().collect(),
    };
    let a = source(
        "a",
        vec![
            r(0, 99, 1),
            // Nested: most specific wins.
            r(10, 19, 2),
            // Same size, later line wins.
            r(30, 39, 3),
            r(30, 39, 4),
            // "Not routed" inside a routed block has no AS.
            r(50, 59, NO_ASN),
        ],
    );
    // Same size as a's 0..=99 but a later file: wins outside the smaller ones.
    let b = source("b", vec![r(0, 99, 5), r(100, 109, 5), r(110, 119, 6)]);
    let db = compile_within(vec![a.clone(), b.clone()], &Limits::default(), false).unwrap();
    assert_eq!(
        db.v4,
        [
            r(0, 9, 5),
            r(10, 19, 2),
            r(20, 29, 5),
            r(30, 39, 4),
            r(40, 49, 5),
            // 60..=99 and 100..=109 are adjacent pieces of AS 5: merged across files.
            r(60, 109, 5),
            r(110, 119, 6),
        ]
    );
    assert_eq!(db.name(1), Some("one in b"), "later files win names");
    assert_eq!(db.asns(), 4);
    assert_eq!(db.sources[1].asns, 2);
    let sources = [a, b];
    for addr in 0..130u32 {
        let ip = std::net::IpAddr::V4(addr.into());
        assert_eq!(
            db.lookup(ip),
            reference::reference_lookup(&sources, ip),
            "{addr}"
        );
    }
    // A piece without an AS between two of the same AS keeps them apart.
    let c = source(
        "c",
        vec![r(0, 9, 7), r(10, 19, NO_ASN), r(20, 29, 7), r(30, 39, 7)],
    );
    let db = compile_within(vec![c], &Limits::default(), false).unwrap();
    assert_eq!(db.v4, [r(0, 9, 7), r(20, 39, 7)]);
    // Whole spaces and their last address.
    let whole = AsnSource {
        v6: vec![r(0, u128::MAX, 8), r(u128::MAX, u128::MAX, 9)],
        v4: vec![r(0, u32::MAX.into(), 8)],
        ..source("w", vec![])
    };
    let db = compile_within(vec![whole], &Limits::default(), false).unwrap();
    assert_eq!(db.v6, [r(0, u128::MAX - 1, 8), r(u128::MAX, u128::MAX, 9)]);
    assert_eq!(db.lookup(ip("255.255.255.255")), Some(8));
    assert_eq!(
        db.lookup(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")),
        Some(9)
    );
}

#[test]
fn loads_files_in_order_and_refuses_a_bad_one_whole() {
    let (_a, csv) = file("asn-ipv4.csv", CSV.as_bytes());
    let (_b, tsv) = file("ip2asn-v4.tsv", TSV.as_bytes());
    let db = load(&[csv.clone(), tsv.clone()], None).unwrap();
    assert_eq!(db.sources.len(), 2);
    assert_eq!(db.sources[0].format, AsnFormat::IpLocationDbCsv);
    assert_eq!(db.sources[1].format, AsnFormat::Iptoasn);
    // Equal ranges: the later file's name wins.
    assert_eq!(db.name(13335), Some("CLOUDFLARENET - Cloudflare, Inc."));
    let db = load(&[tsv.clone(), csv.clone()], None).unwrap();
    assert_eq!(db.name(13335), Some("Cloudflare, Inc."));
    let (_c, bad) = file("bad.csv", b"1.0.0.0,1.0.0.255,1,y\n1.0.1.0,1.0.1.255,x,y\n");
    let e = load(&[csv, bad, tsv], None).unwrap_err();
    assert!(e.to_string().ends_with("bad.csv:2: invalid AS number \"x\" (expected 0 to 4294967295, optionally after \"AS\") in \"1.0.1.0,1.0.1.255,x,y\""), "{e}");
    assert!(matches!(load(&[], None), Err(AsnError::NoFiles)));
}
