//! RIR delegated statistics (`delegated-ripencc-extended-latest`, `delegated-apnic-latest`, the
//! NRO's combined `delegated-extended`): who each block was delegated to, by country.
//!
//! Lines are `registry|cc|type|start|value|date|status[|opaque-id[|extensions]]`:
//! - the version line (`2|ripencc|...`, first field a number) and summary lines
//!   (`ripencc|*|ipv4|*|87210|summary`) are skipped, and so are `asn` records;
//! - `ipv4`: `value` is the number of addresses, not necessarily a power of two;
//! - `ipv6`: `value` is the prefix length;
//! - status `allocated` / `assigned` are read; `available` / `reserved` (cc `ZZ` or empty) are
//!   skipped: nobody is there yet.

use std::path::Path;

use super::{
    DbError, Format, LineProblem, Ranges,
    text::{Addr, Lines, host_mask, line_error, parse_addr, split_fields},
};
use crate::country::CodeReader;

pub(super) fn read(path: &Path, mut out: Ranges) -> Result<Ranges, DbError> {
    let mut lines = Lines::open(path, Format::Rir)?;
    let mut codes = CodeReader::default();
    while let Some((no, line)) = lines.next_line()? {
        let err = |problem| line_error(path, no, problem, line);
        let mut f = [""; 7];
        let n = split_fields(line, b'|', &mut f);
        if f[0].bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            continue; // version line
        }
        if n >= 6 && f[5] == "summary" {
            continue;
        }
        if n < 7 {
            return Err(err(LineProblem::Fields {
                expected: "at least 7 (registry|cc|type|start|value|date|status)",
                found: n,
            }));
        }
        let kind = f[2];
        match kind {
            "ipv4" | "ipv6" => {}
            "asn" => continue,
            _ => {
                return Err(err(LineProblem::Other(format!(
                    "unknown record type {kind:?} (expected ipv4, ipv6 or asn)"
                ))));
            }
        }
        match f[6] {
            "allocated" | "assigned" => {}
            "available" | "reserved" => continue,
            other => {
                return Err(err(LineProblem::Other(format!(
                    "unknown status {other:?} (expected allocated, assigned, available or reserved)"
                ))));
            }
        }
        let country = codes.parse(f[1], || format!("line {no}")).ok_or_else(|| {
            err(LineProblem::Country {
                value: f[1].to_owned(),
            })
        })?;
        let bad_start = || {
            err(LineProblem::Address {
                field: "start",
                value: f[3].to_owned(),
            })
        };
        let bad_value = |what: &str| err(LineProblem::Other(format!("bad {what} {:?}", f[4])));
        match (kind, parse_addr(f[3])) {
            ("ipv4", Some(Addr::V4(start))) => {
                let count: u128 = f[4]
                    .parse()
                    .ok()
                    .filter(|&c| c >= 1)
                    .ok_or_else(|| bad_value("address count"))?;
                let end = start + count - 1;
                if end > u32::MAX.into() {
                    return Err(bad_value("address count (beyond 255.255.255.255)"));
                }
                out.push_v4(start, end, country).map_err(err)?;
            }
            ("ipv6", Some(Addr::V6(start))) => {
                let len: u32 = f[4]
                    .parse()
                    .ok()
                    .filter(|&l| l <= 128)
                    .ok_or_else(|| bad_value("prefix length"))?;
                let host = host_mask(len, 128);
                out.push_v6(start & !host, start | host, country)
                    .map_err(err)?;
            }
            _ => return Err(bad_start()),
        }
    }
    codes.warn(path);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use geofilter_common::UNKNOWN_COUNTRY;

    use super::super::{
        Format, read_source,
        tests::{cc, file, r, testdata, v4, v6},
    };

    #[test]
    fn extended_and_plain_files() {
        let s = read_source(&testdata("rir/delegated-ripencc-extended-latest"), None).unwrap();
        assert_eq!(s.format, Format::Rir);
        assert_eq!(
            s.v4,
            [
                r(v4("2.0.0.0"), v4("2.15.255.255"), cc("FR")),
                // 768 addresses: not a CIDR block.
                r(v4("5.44.248.0"), v4("5.44.250.255"), cc("DE")),
                r(v4("5.62.60.0"), v4("5.62.61.255"), UNKNOWN_COUNTRY),
                r(v4("185.0.0.0"), v4("185.0.0.255"), cc("XK")),
            ]
        );
        assert_eq!(
            s.v6,
            [r(
                v6("2001:600::"),
                v6("2001:600:ffff:ffff:ffff:ffff:ffff:ffff"),
                cc("NL")
            )]
        );
        let s = read_source(&testdata("rir/delegated-apnic-latest.gz"), None).unwrap();
        assert_eq!(s.v4, [r(v4("1.0.0.0"), v4("1.0.0.255"), cc("AU"))]);
        assert_eq!(
            s.v6,
            [r(
                v6("2001:200::"),
                v6("2001:200:ffff:ffff:ffff:ffff:ffff:ffff"),
                cc("JP")
            )]
        );
        // Detected from content under another name.
        let content = std::fs::read(testdata("rir/delegated-ripencc-extended-latest")).unwrap();
        let (_dir, path) = file("ripe.txt", &content);
        assert_eq!(read_source(&path, None).unwrap().format, Format::Rir);
    }

    #[test]
    fn errors() {
        let cases = [
            (
                "ripencc|FR|ipv4|2.0.0.0|0|20100712|allocated",
                ":1: bad address count \"0\"",
            ),
            (
                "ripencc|FR|ipv4|255.255.255.0|257|20100712|allocated",
                ":1: bad address count (beyond 255.255.255.255) \"257\"",
            ),
            (
                "ripencc|FR|ipv6|2001:db8::|129|20100712|allocated",
                ":1: bad prefix length \"129\"",
            ),
            (
                "ripencc|FR|ipv6|2.0.0.0|32|20100712|allocated",
                ":1: bad start address \"2.0.0.0\"",
            ),
            (
                "ripencc|Q1|ipv4|2.0.0.0|256|20100712|allocated",
                ":1: invalid country code \"Q1\"",
            ),
            (
                "ripencc|FR|ipv5|2.0.0.0|256|20100712|allocated",
                ":1: unknown record type \"ipv5\"",
            ),
            (
                "ripencc|FR|ipv4|2.0.0.0|256|20100712|stolen",
                ":1: unknown status \"stolen\"",
            ),
            ("ripencc|FR|ipv4|2.0.0.0|256", ":1: expected at least 7"),
        ];
        for (line, want) in cases {
            let (_dir, path) = file("delegated-test", line.as_bytes());
            let e = read_source(&path, None).unwrap_err().to_string();
            let rest = e.strip_prefix(&path.display().to_string()).unwrap();
            assert!(rest.starts_with(want), "{rest}");
        }
    }
}
