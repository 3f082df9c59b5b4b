//! Reading every format from fixtures in its real layout (`testdata/lists/`), the errors, and
//! the registry over local files. Fetching over HTTP is tested end to end in
//! `tests/tests/lists.rs` (a real server in a test namespace).

use std::path::PathBuf;

use super::*;
use crate::{
    family::Family,
    geoip::tests::{file, gzip, ip, testdata, v4, v6},
};

fn fixture(name: &str) -> PathBuf {
    testdata(&format!("lists/{name}"))
}

fn read(paths: &[PathBuf]) -> ListPrefixes {
    read_list(paths, None, None).unwrap_or_else(|e| panic!("{e}"))
}

fn err(content: &[u8], name: &str, format: Option<ListFormat>, min: Option<u32>) -> String {
    let (_dir, path) = file(name, content);
    read_list(&[path], format, min).unwrap_err().to_string()
}

#[test]
fn own_list_comments_ipv6_mapped_and_merging() {
    let l = read(&[fixture("mine.txt")]);
    assert_eq!(
        l.counts.format,
        Some(ListFormat::SpamhausDrop),
        "`;` comments"
    );
    assert_eq!(
        l.v4,
        [
            (v4("192.0.2.0"), v4("192.0.2.255")),
            (v4("198.18.0.0"), v4("198.18.0.1")),
            (v4("198.51.100.7"), v4("198.51.100.9")),
            (v4("203.0.113.0"), v4("203.0.113.255")),
        ]
    );
    assert_eq!(
        l.v6,
        [
            (v6("2001:db8::"), v6("2001:db8:0:ffff:ffff:ffff:ffff:ffff")),
            (v6("2001:db8:ffff::1"), v6("2001:db8:ffff::1")),
        ]
    );
    let c = l.counts;
    assert_eq!((c.entries, c.prefixes_v4, c.prefixes_v6), (10, 5, 2));
    assert_eq!((c.addresses_v4, c.addresses_v6), (517, (1 << 80) + 1));
    assert_eq!(
        l.cidrs(Family::V4),
        [
            (v4("192.0.2.0"), 24),
            (v4("198.18.0.0"), 31),
            (v4("198.51.100.7"), 32),
            (v4("198.51.100.8"), 31),
            (v4("203.0.113.0"), 24),
        ]
    );
    assert!(l.contains(ip("192.0.2.200")));
    assert!(
        l.contains(ip("::ffff:192.0.2.200")),
        "mapped looked up as IPv4"
    );
    assert!(l.contains(ip("2001:db8::1")));
    assert!(!l.contains(ip("198.51.100.10")));
    assert!(!l.contains(ip("2001:db8:1::")));
    // Without `;` lines and named .txt it is plain CIDR; gzip'd, the same.
    let plain: Vec<u8> = std::fs::read(fixture("mine.txt"))
        .unwrap()
        .split(|&b| b == b'\n')
        .filter(|l| !l.starts_with(b";"))
        .flat_map(|l| l.iter().copied().take_while(|&b| b != b';').chain([b'\n']))
        .collect();
    let (_dir, path) = file("mine.txt.gz", &gzip(&plain));
    let z = read(&[path]);
    assert_eq!(z.counts.format, Some(ListFormat::Cidr));
    assert!(z.same_addresses(&l));
}

#[test]
fn spamhaus_text_and_json() {
    let text = read(&[fixture("drop.txt")]);
    assert_eq!(text.counts.format, Some(ListFormat::SpamhausDrop));
    assert_eq!(
        text.v4,
        [
            (v4("192.0.2.0"), v4("192.0.2.255")),
            (v4("198.51.100.0"), v4("198.51.103.255")),
            (v4("203.0.113.0"), v4("203.0.113.255")),
        ]
    );
    assert!(text.v6.is_empty());
    // DROP v4 + v6 JSON lines read together, the metadata lines skipped.
    let json = read(&[fixture("drop_v4.json"), fixture("drop_v6.json")]);
    assert_eq!(json.counts.format, Some(ListFormat::SpamhausJson));
    assert_eq!(json.counts.entries, 5);
    assert_eq!(json.v4, text.v4);
    assert_eq!(
        json.v6,
        [(
            v6("2001:db8:1000::"),
            v6("2001:db8:2fff:ffff:ffff:ffff:ffff:ffff")
        )],
        "two adjacent /36 merge"
    );
    assert_eq!(json.counts.prefixes_v6, 2, "and still make two prefixes");
}

#[test]
fn firehol_netset() {
    let l = read(&[fixture("firehol_level1.netset")]);
    assert_eq!(l.counts.format, Some(ListFormat::Netset));
    assert_eq!(l.counts.entries, 6);
    assert_eq!(l.v4[0], (0, v4("0.255.255.255")));
    assert!(l.contains(ip("198.51.100.13")));
    assert!(!l.contains(ip("198.51.100.14")));
    assert!(l.contains(ip("203.0.113.200")));
    assert_eq!(l.counts.addresses_v4, (1 << 24) + 256 + 1 + 2 + 128 + 1);
}

#[test]
fn ipsum_scores() {
    let l = read(&[fixture("ipsum.txt")]);
    assert_eq!(l.counts.format, Some(ListFormat::Ipsum));
    assert_eq!(l.counts.min_score, Some(DEFAULT_MIN_SCORE));
    assert_eq!((l.counts.entries, l.counts.below_min_score), (7, 2));
    assert!(l.contains(ip("198.51.100.2")), "score 3 is kept");
    assert!(!l.contains(ip("203.0.113.5")), "score 2 is not");
    assert!(l.contains(ip("2001:db8::5")));
    let strict = read_list(&[fixture("ipsum.txt")], None, Some(8)).unwrap();
    assert_eq!(strict.v4, [(v4("192.0.2.10"), v4("192.0.2.11"))]);
    assert!(strict.v6.is_empty());
    let all = read_list(&[fixture("ipsum.txt")], None, Some(0)).unwrap();
    assert_eq!(all.counts.below_min_score, 0);
    // None at the score asked: almost always a mistake, so an error that says what was there.
    let e = read_list(&[fixture("ipsum.txt")], None, Some(11)).unwrap_err();
    assert!(
        e.to_string().ends_with(
            "ipsum.txt: none of its 7 entries has a score of at least 11 (the highest is 10); \
             lower --min-score"
        ),
        "{e}"
    );
    // A score is for ipsum lists only.
    let e = read_list(&[fixture("drop.txt")], None, Some(3)).unwrap_err();
    assert!(
        e.to_string().contains("--min-score applies to ipsum lists"),
        "{e}"
    );
}

#[test]
fn errors_name_file_line_and_text() {
    let e = err(b"192.0.2.0/24\n# c\n\n192.0.2.300\n", "l.txt", None, None);
    assert!(
        e.ends_with("l.txt:4: bad network \"192.0.2.300\" in \"192.0.2.300\""),
        "{e}"
    );
    let e = err(
        b"192.0.2.0/24 ; ok\n10.0.0.0-10.0.0.9 ; a range\n",
        "l",
        None,
        None,
    );
    assert!(e.contains("l:2: bad network \"10.0.0.0-10.0.0.9\""), "{e}");
    let e = err(
        b"# IPsum\n192.0.2.1\t5\n192.0.2.2\tmany\n",
        "ipsum.txt",
        None,
        None,
    );
    assert!(
        e.ends_with(":3: bad score \"many\" in \"192.0.2.2\\tmany\""),
        "{e}"
    );
    let e = err(b"192.0.2.1\t5\n192.0.2.2\n", "i.txt", None, None);
    assert!(
        e.contains("i.txt:2: expected 2 (address, score), found 1"),
        "{e}"
    );
    let e = err(
        b"{\"cidr\":\"192.0.2.0/24\"}\n{\"cidr\":\"192.0.2.0/24\"\n",
        "drop_v4.json",
        None,
        None,
    );
    assert!(
        e.contains("drop_v4.json:2: not a Spamhaus DROP JSON record"),
        "{e}"
    );
    // A forced format reads the file as that format.
    let e = err(b"192.0.2.1\t5\n", "x", Some(ListFormat::Cidr), None);
    assert!(e.contains("x:1: bad network \"192.0.2.1\\t5\""), "{e}");
    // No entry at all: an error, whatever the comments.
    for content in [&b""[..], b"# only\n; comments\n\n"] {
        let e = err(content, "empty.txt", None, None);
        assert!(e.ends_with("empty.txt: no entries found as cidr (one address or network per line); wrong file or --format?"), "{e}");
    }
    let e = err(b"{\"type\":\"metadata\"}\n", "drop_v6.json", None, None);
    assert!(e.contains("no entries found as spamhaus-json"), "{e}");
    // A server's error page, a binary file.
    let e = err(
        b"<html><body>404 Not Found</body></html>\n",
        "l",
        None,
        None,
    );
    assert!(e.contains("l:1: bad network"), "{e}");
    let e = err(b"\x1f\x8b\x08\x00truncated", "l.gz", None, None);
    assert!(e.contains("l.gz"), "{e}");
    let e = err(b"\xff\xfe1.2.3.4\n", "l", None, None);
    assert!(e.contains("l:1: not UTF-8 text"), "{e}");
    let mut long = b"192.0.2.1\n".to_vec();
    long.extend(std::iter::repeat_n(b'9', 70_000));
    let e = err(&long, "l", None, None);
    assert!(
        e.ends_with("l:2: line is longer than 65536 bytes; is this really a blocklist?"),
        "{e}"
    );
    // Missing file, directory.
    let e = read_list(&["/nonexistent/l.txt".into()], None, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/l.txt"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let e = read_list(&[dir.path().to_owned()], None, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("a directory, not a regular file"), "{e}");
}

#[test]
fn limits_bound_what_one_list_may_hold() {
    let limits = crate::geoip::Limits {
        ranges: 2,
        ..Default::default()
    };
    let (_dir, path) = file("l.txt", b"192.0.2.1\n192.0.2.3\n192.0.2.5\n");
    let e = read_list_within(&[path], None, None, &limits).unwrap_err();
    assert!(
        e.to_string().contains("l.txt:3: more than 2 IPv4 ranges"),
        "{e}"
    );
}

#[test]
fn an_ipv6_network_over_the_mapped_block_fills_both_families() {
    // ::/64 holds ::ffff:0:0/96, which is IPv4: that part is the whole IPv4 space.
    let (_dir, path) = file("l.txt", b"::/64\n");
    let l = read(&[path]);
    const MAPPED: u128 = 0xffff << 32;
    assert_eq!(l.v4, [(0, u128::from(u32::MAX))]);
    assert_eq!(l.v6, [(0, MAPPED - 1), (MAPPED + (1 << 32), (1 << 64) - 1)]);
    assert!(l.contains(ip("::ffff:1.2.3.4")) && l.contains(ip("1.2.3.4")));
    assert!(l.contains(ip("::1")) && !l.contains(ip("0:0:0:1::")));
    assert_eq!(l.counts.addresses_v4, 1 << 32);
    assert_eq!(l.counts.addresses_v6, (1 << 64) - (1 << 32));
}
