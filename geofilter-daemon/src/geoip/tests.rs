//! Tests of reading (range CSV and the shared text handling), format detection, errors and
//! `load`. Format-specific tests live in each format's module.

use std::{
    io::Write,
    net::IpAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use geofilter_common::{CountryId, PrefixInfo, UNKNOWN_COUNTRY, country::country_id};

use super::*;

pub(crate) fn cc(code: &str) -> CountryId {
    let b = code.as_bytes();
    country_id([b[0], b[1]]).unwrap()
}

pub(crate) fn r(start: u128, end: u128, country: CountryId) -> Range {
    Range {
        start,
        end,
        country,
    }
}

pub(crate) fn v4(s: &str) -> u128 {
    u32::from(s.parse::<std::net::Ipv4Addr>().unwrap()).into()
}

pub(crate) fn v6(s: &str) -> u128 {
    s.parse::<std::net::Ipv6Addr>().unwrap().into()
}

pub(crate) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The committed test data folder.
pub(crate) fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(rel)
}

/// A temporary file `name` with `content`; the folder lives as long as the returned guard.
pub(crate) fn file(name: &str, content: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, content).unwrap();
    (dir, path)
}

pub(crate) fn gzip(content: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(content).unwrap();
    enc.finish().unwrap()
}

fn err(name: &str, content: &str) -> (String, String) {
    let (_dir, path) = file(name, content.as_bytes());
    let e = read_source(&path, Some(Format::RangeCsv)).unwrap_err();
    // Messages start with the path as given; tests compare the rest.
    let msg = e.to_string();
    let rest = msg
        .strip_prefix(&path.display().to_string())
        .unwrap_or_else(|| panic!("{msg:?} does not start with the path"))
        .to_owned();
    (rest, format!("{e:?}"))
}

#[test]
fn range_csv_text_addresses() {
    let content = "\u{feff}# a comment\r\nip_start,ip_end,country\r\n\r\n1.0.0.0,1.0.0.255,AU\r\n\
                   1.0.1.0, 1.0.3.255 ,cn,extra,columns\r\n  \n2001:200::,2001:200:ffff:ffff:ffff:ffff:ffff:ffff,JP\n\
                   2c0f:e9a0:2:0:0:0:2b::,2c0f:e9a0:2:0:0:0:2b:ffff,ZA\n\
                   1.0.4.0,1.0.7.255,??\n8.8.8.8,8.8.8.8,XK";
    let (_dir, path) = file("dbip.csv", content.as_bytes());
    let s = read_source(&path, None).unwrap();
    assert_eq!(s.format, Format::RangeCsv);
    assert_eq!(s.path, path);
    assert_eq!(
        s.v4,
        [
            r(v4("1.0.0.0"), v4("1.0.0.255"), cc("AU")),
            r(v4("1.0.1.0"), v4("1.0.3.255"), cc("CN")),
            r(v4("1.0.4.0"), v4("1.0.7.255"), UNKNOWN_COUNTRY),
            r(v4("8.8.8.8"), v4("8.8.8.8"), cc("XK")),
        ]
    );
    assert_eq!(
        s.v6,
        [
            r(
                v6("2001:200::"),
                v6("2001:200:ffff:ffff:ffff:ffff:ffff:ffff"),
                cc("JP")
            ),
            r(
                v6("2c0f:e9a0:2::2b:0"),
                v6("2c0f:e9a0:2::2b:ffff"),
                cc("ZA")
            ),
        ]
    );
}

#[test]
fn range_csv_ip2location_integers() {
    // IP2Location LITE DB1: quoted integers, `-` for unknown, a name column with commas; its
    // IPv6 file repeats IPv4 as ::ffff:0:0/96 (281470681743360 = ::ffff:0.0.0.0).
    let content = r#""0","16777215","-","-"
"16777216","16777471","US","United States of America"
"16778240","16779263","KR","Korea (Republic of)"
"16779264","16781311","KR","Korea, Republic of"
"0","281470681743359","-","-"
"281470698520576","281470698520831","AU","Australia"
"281470698520832","281474976710655","JP","Japan"
"42540528726795050063891204319802818560","42540528806023212578155541913346768895","JP","Japan"
"340282366920938463463374607431768211455","340282366920938463463374607431768211455","-","-"
"#;
    let (_dir, path) = file("IP2LOCATION-LITE-DB1.CSV", content.as_bytes());
    let s = read_source(&path, None).unwrap();
    assert_eq!(
        s.v4,
        [
            r(0, 16777215, UNKNOWN_COUNTRY),
            r(16777216, 16777471, cc("US")),
            r(16778240, 16779263, cc("KR")),
            r(16779264, 16781311, cc("KR")),
            r(v4("1.0.0.0"), v4("1.0.0.255"), cc("AU")),
            r(v4("1.0.1.0"), v4("255.255.255.255"), cc("JP")),
        ]
    );
    assert_eq!(
        s.v6,
        [
            r(0, v6("::fffe:ffff:ffff"), UNKNOWN_COUNTRY),
            r(
                v6("2001:200::"),
                v6("2001:200:ffff:ffff:ffff:ffff:ffff:ffff"),
                cc("JP")
            ),
            r(u128::MAX, u128::MAX, UNKNOWN_COUNTRY),
        ]
    );
}

#[test]
fn mapped_ranges_split_at_the_mapped_block() {
    let mut out = Ranges::new(&Limits::default());
    out.push_v6(v6("::fffe:0:0"), v6("::1:0:0:1"), cc("DE"))
        .unwrap();
    assert_eq!(out.v4, [r(0, u32::MAX as u128, cc("DE"))]);
    assert_eq!(
        out.v6,
        [
            r(v6("::fffe:0:0"), v6("::fffe:ffff:ffff"), cc("DE")),
            r(v6("::1:0:0:0"), v6("::1:0:0:1"), cc("DE")),
        ]
    );
}

#[test]
fn gzip_is_detected_by_magic_bytes() {
    let content = gzip(b"1.0.0.0,1.0.0.255,AU\n::1,::1,DE\n");
    // A misleading name: detection looks at the bytes.
    let (_dir, path) = file("plain.csv", &content);
    let s = read_source(&path, None).unwrap();
    assert_eq!(s.v4, [r(v4("1.0.0.0"), v4("1.0.0.255"), cc("AU"))]);
    assert_eq!(s.v6, [r(1, 1, cc("DE"))]);
    let (_dir, path) = file("broken.csv.gz", &content[..content.len() / 2]);
    let e = read_source(&path, Some(Format::RangeCsv)).unwrap_err();
    assert!(matches!(e, DbError::ReadAt { line: 1, .. }), "{e:?}");
    assert!(
        e.to_string().contains("broken.csv.gz:1: read failed"),
        "{e}"
    );
}

#[test]
fn error_messages_name_file_line_and_text() {
    let cases = [
        (
            "1.0.0.0,1.0.0.255,AU\n\n1.2.3,1.2.3.255,RU\n",
            r#":3: bad start address "1.2.3" in "1.2.3,1.2.3.255,RU""#,
        ),
        (
            "1.2.3.0,1.2.3.256,RU",
            r#":1: bad end address "1.2.3.256" in "1.2.3.0,1.2.3.256,RU""#,
        ),
        (
            "1.2.3.0,::1,RU",
            r#":1: start 1.2.3.0 and end ::1 are of different address families in "1.2.3.0,::1,RU""#,
        ),
        (
            "1.2.3.0,1.2.2.0,RU",
            r#":1: start 1.2.3.0 is after end 1.2.2.0 in "1.2.3.0,1.2.2.0,RU""#,
        ),
        (
            "\"9\",\"8\",\"RU\"",
            r#":1: start 9 is after end 8 in ""9","8","RU"""#,
        ),
        (
            "1.2.3.0,1.2.3.255,Q1",
            r#":1: invalid country code "Q1" in "1.2.3.0,1.2.3.255,Q1""#,
        ),
        (
            "1.2.3.0,1.2.3.255,Russia",
            r#":1: invalid country code "Russia" in "1.2.3.0,1.2.3.255,Russia""#,
        ),
        (
            "1.2.3.0,1.2.3.255",
            r#":1: expected at least 3 (start,end,country), found 2 field(s) in "1.2.3.0,1.2.3.255""#,
        ),
        (
            "1.2.3.0,4294967296,RU",
            r#":1: start 1.2.3.0 and end 4294967296 are of different address families in "1.2.3.0,4294967296,RU""#,
        ),
    ];
    for (content, want) in cases {
        assert_eq!(err("v4.csv", content).0, want, "{content}");
    }
    // The offending text is cut to 80 characters.
    let long = format!("1.2.3.0,1.2.3.255,RU,{}\nx,y,z\n", "n".repeat(200));
    let (msg, _) = err("v4.csv", &long);
    assert!(msg.starts_with(":2: bad start address \"x\""), "{msg}");
    let long = format!("1.2.3.0,1.2.3.255,{}", "Q".repeat(200));
    let (msg, dbg) = err("v4.csv", &long);
    let text = msg.rsplit_once(" in ").unwrap().1;
    assert_eq!(text.chars().count(), 82, "{msg}");
    assert!(text.ends_with("...\""), "{msg}");
    assert!(dbg.contains("Country"), "{dbg}");
    // Not text.
    let (_dir, path) = file("bin.csv", b"1.2.3.0,1.2.3.255,\xff\xfe\n");
    let e = read_source(&path, Some(Format::RangeCsv)).unwrap_err();
    assert!(
        e.to_string()
            .ends_with(":1: not UTF-8 text in \"1.2.3.0,1.2.3.255,\u{fffd}\u{fffd}\""),
        "{e}"
    );
}

#[test]
fn a_huge_line_fails_fast_and_clearly() {
    // 10 MB without a newline: refused after 64 KiB, not read into memory whole.
    let mut content = b"1.0.0.0,1.0.0.255,AU\n".to_vec();
    content.extend(std::iter::repeat_n(b'7', 10 << 20));
    let (_dir, path) = file("huge.csv", &content);
    let started = Instant::now();
    let e = read_source(&path, Some(Format::RangeCsv)).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        matches!(
            e,
            DbError::LineTooLong {
                line: 2,
                max: 65536,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "{}:2: line is longer than 65536 bytes; is this really a range-csv file?",
            path.display()
        )
    );
    // Detection refuses it too, rather than guessing.
    let (_dir, path) = file("huge", &content[21..]);
    let e = read_source(&path, None).unwrap_err();
    assert!(
        e.to_string().contains(
            "cannot detect the database format (not a text file: line 1 is longer than 65536 bytes)"
        ),
        "{e}"
    );
    // A 64 KiB line itself is fine (the limit is on the content, not counting the newline).
    let mut ok = "1.0.0.0,1.0.0.255,AU,".to_owned();
    ok.push_str(&"x".repeat(text::MAX_LINE - ok.len()));
    ok.push_str("\r\n");
    let (_dir, path) = file("ok.csv", ok.as_bytes());
    assert_eq!(read_source(&path, None).unwrap().v4.len(), 1);
}

#[test]
fn empty_and_missing_files() {
    for content in ["", "# only a comment\n\n"] {
        let (_dir, path) = file("empty.csv", content.as_bytes());
        let e = read_source(&path, Some(Format::RangeCsv)).unwrap_err();
        assert!(matches!(e, DbError::Empty { .. }), "{e:?}");
        assert!(
            e.to_string().ends_with(
                ": no IPv4 or IPv6 ranges found as range-csv (wrong file or --db-format?)"
            ),
            "{e}"
        );
        let e = read_source(&path, None).unwrap_err();
        assert!(
            e.to_string()
                .contains("cannot detect the database format (no data lines)"),
            "{e}"
        );
    }
    let e = read_source(Path::new("/nonexistent/db.csv"), None).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("failed to open /nonexistent/db.csv: "),
        "{e}"
    );
    assert!(matches!(load(&[], None), Err(DbError::NoFiles)));
}

#[test]
fn format_names() {
    for f in Format::ALL {
        assert_eq!(f.to_string().parse::<Format>(), Ok(f));
        assert_eq!(serde_json::to_string(&f).unwrap(), format!("\"{f}\""));
        assert_eq!(
            serde_json::from_str::<Format>(&format!("\"{f}\"")).unwrap(),
            f
        );
    }
    assert_eq!("MMDB".parse::<Format>(), Ok(Format::Mmdb));
    let e = "csv".parse::<Format>().unwrap_err();
    assert_eq!(
        e,
        "unknown database format \"csv\"; expected one of range-csv, mmdb, maxmind-csv, tor, cidr-dir, rir"
    );
}

#[test]
fn load_orders_files_and_summarises() {
    let dir = tempfile::tempdir().unwrap();
    let world = dir.path().join("world.csv");
    let fix = dir.path().join("fix.csv");
    std::fs::write(
        &world,
        "1.2.3.0,1.2.3.255,DE\n1.2.4.0,1.2.4.255,FR\n2001:db8::,2001:db8::ffff,DE\n",
    )
    .unwrap();
    std::fs::write(&fix, "1.2.3.0,1.2.3.255,RU\n1.2.4.0,1.2.4.127,??\n").unwrap();
    let db = load(&[world.clone(), fix.clone()], None).unwrap();
    assert_eq!(
        db.lookup(ip("1.2.3.4")).unwrap().info,
        PrefixInfo {
            country: cc("RU"),
            source: 1
        }
    );
    assert!(db.lookup(ip("1.2.4.4")).is_none());
    assert_eq!(
        db.lookup(ip("1.2.4.200")).unwrap().info,
        PrefixInfo {
            country: cc("FR"),
            source: 0
        }
    );
    assert_eq!(
        db.lookup(ip("2001:db8::1")).unwrap().info,
        PrefixInfo {
            country: cc("DE"),
            source: 0
        }
    );
    assert_eq!(
        db.countries().into_iter().collect::<Vec<_>>(),
        [cc("DE"), cc("FR"), cc("RU")]
    );
    let json = serde_json::to_value(&db.sources).unwrap();
    assert_eq!(
        json[1],
        serde_json::json!({"path": fix, "format": "range-csv", "ranges_v4": 2, "ranges_v6": 0})
    );
    let db = load(&[fix.clone(), world.clone()], None).unwrap();
    assert_eq!(
        db.lookup(ip("1.2.3.4")).unwrap().info,
        PrefixInfo {
            country: cc("DE"),
            source: 1
        }
    );
    // One bad file fails the whole load.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "1.2.3.0,1.2.3.255,DE\nnonsense,1,2\n").unwrap();
    let e = load(&[world, bad.clone(), fix], None).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:2: bad start address \"nonsense\" in \"nonsense,1,2\"",
            bad.display()
        )
    );
}

#[test]
fn loads_are_bounded_by_the_table_budget() {
    let one = Limits::for_table_mib(1);
    assert_eq!(one.ranges, (1 << 20) / std::mem::size_of::<Range>());
    assert_eq!(one.prefixes, (1 << 20) / std::mem::size_of::<Prefix>());
    let limits = Limits {
        ranges: 3,
        prefixes: 40,
        table_mib: 1,
    };
    let line = |i: u32| format!("{i}.0.0.0,{i}.0.0.255,DE\n");
    let lines = |n: std::ops::RangeInclusive<u32>| n.map(line).collect::<String>();
    // One file past the limit: refused at the line that would exceed it.
    let (_d1, four) = file("four.csv", lines(1..=4).as_bytes());
    let e = read_source_within(&four, None, &limits).unwrap_err();
    assert!(
        e.to_string().ends_with(
            "four.csv:4: more than 3 IPv4 ranges, the most one load may read with a table \
             budget of 1 MiB (--max-table-mib) in \"4.0.0.0,4.0.0.255,DE\""
        ),
        "{e}"
    );
    // Each file fits, together they do not.
    let (_d2, a) = file("a.csv", lines(1..=2).as_bytes());
    let (_d3, b) = file("b.csv", lines(3..=4).as_bytes());
    let e = load_within(&[a.clone(), b.clone()], None, &limits).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}, {}: together hold more than 3 IPv4 ranges, the most a table budget of 1 MiB \
             (--max-table-mib) allows",
            a.display(),
            b.display()
        )
    );
    // One unaligned range splits into 62 prefixes.
    let (_d4, wide) = file("wide.csv", b"0.0.0.1,255.255.255.254,DE\n");
    let e = load_within(std::slice::from_ref(&wide), None, &limits).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("wide.csv: compile to more than 40 IPv4 prefixes, the most a table budget of 1 MiB (--max-table-mib) allows"),
        "{e}"
    );
    let roomy = Limits {
        prefixes: 62,
        ..limits
    };
    assert_eq!(load_within(&[wide], None, &roomy).unwrap().v4.len(), 62);
}
