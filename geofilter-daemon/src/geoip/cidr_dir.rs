//! Per-country CIDR lists: one file per country, one network per line, the country in the file
//! name (ipdeny.com's `de.zone`, herrbischoff/country-ip-blocks' `ipv4/de.cidr`).
//!
//! - Given a directory: every file in it and in its direct subdirectories (`ipv4/`, `ipv6/`) whose
//!   name is a two-letter code, optionally followed by `-something` (`de-aggregated.zone`), with
//!   the extension `.zone`, `.cidr`, `.txt`, `.list` or `.netset` or none (and optionally `.gz`).
//!   Other files (`README.md`, `MD5SUM`) are skipped. Files are read in name order, so ties
//!   between files (the same network in two lists) are resolved the same way every time.
//! - Given one file: its name must name the country the same way.
//! - Lines are `1.2.3.0/24`, `2001:db8::/32` or a single address; `#` comments and blank lines
//!   are skipped; both families may share a file.

use std::path::Path;

use geofilter_common::CountryId;

use super::{
    DbError, Format, LineProblem, Ranges,
    text::{Lines, base_name, line_error, parse_network},
};
use crate::country::CodeReader;

const EXTENSIONS: [&str; 6] = ["", "zone", "cidr", "txt", "list", "netset"];

pub(super) fn read(path: &Path, mut out: Ranges) -> Result<Ranges, DbError> {
    let mut codes = CodeReader::default();
    if !path.is_dir() {
        let Some(country) = country_of(path, &mut codes) else {
            return Err(DbError::Invalid {
                path: path.to_owned(),
                reason: "cannot tell the country from the file name; per-country lists are \
                         named like de.zone or de.cidr"
                    .into(),
            });
        };
        read_list(path, country, &mut out)?;
        codes.warn(path);
        return Ok(out);
    }
    let mut files = Vec::new();
    for entry in super::text::list_dir(path)? {
        if entry.is_dir() {
            files.extend(
                super::text::list_dir(&entry)?
                    .into_iter()
                    .filter(|p| p.is_file()),
            );
        } else {
            files.push(entry);
        }
    }
    let mut lists = 0;
    for file in files {
        match country_of(&file, &mut codes) {
            Some(country) => {
                read_list(&file, country, &mut out)?;
                lists += 1;
            }
            None => tracing::debug!(path = %file.display(), "not a per-country list; skipped"),
        }
    }
    if lists == 0 {
        return Err(DbError::Invalid {
            path: path.to_owned(),
            reason:
                "no per-country list files (named like de.zone or ipv4/de.cidr) in this directory"
                    .into(),
        });
    }
    codes.warn(path);
    Ok(out)
}

/// The country a list file is named for, or `None` if the name is not a list's name at all. A
/// code that is well-formed but no country (`qq.zone`) is unknown, with a warning.
fn country_of(path: &Path, codes: &mut CodeReader) -> Option<CountryId> {
    let name = base_name(path);
    let (stem, ext) = name.split_once('.').unwrap_or((&name, ""));
    let code = stem.split(['-', '_']).next().unwrap_or("");
    if code.len() != 2
        || !code.bytes().all(|b| b.is_ascii_alphabetic())
        || !EXTENSIONS.contains(&ext)
    {
        return None;
    }
    codes.parse(code, || format!("file {name}"))
}

fn read_list(path: &Path, country: CountryId, out: &mut Ranges) -> Result<(), DbError> {
    let mut lines = Lines::open(path, Format::CidrDir)?;
    while let Some((no, line)) = lines.next_line()? {
        let (v6, start, end) = parse_network(line).ok_or_else(|| {
            line_error(
                path,
                no,
                LineProblem::Network {
                    value: line.to_owned(),
                },
                line,
            )
        })?;
        if v6 {
            out.push_v6(start, end, country)
        } else {
            out.push_v4(start, end, country)
        }
        .map_err(|problem| line_error(path, no, problem, line))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{
        Format, compile, read_source,
        tests::{cc, file, ip, r, testdata, v4, v6},
    };

    #[test]
    fn herrbischoff_layout() {
        // ipv4/<cc>.cidr and ipv6/<cc>.cidr, plus files that are not lists.
        let s = read_source(&testdata("cidr-dir/country-ip-blocks"), None).unwrap();
        assert_eq!(s.format, Format::CidrDir);
        assert_eq!(
            s.v4,
            [
                r(v4("2.56.0.0"), v4("2.56.255.255"), cc("DE")),
                r(v4("5.1.0.0"), v4("5.1.0.255"), cc("DE")),
                r(v4("5.8.0.0"), v4("5.8.7.255"), cc("RU")),
                r(v4("95.24.0.0"), v4("95.31.255.255"), cc("RU")),
            ]
        );
        assert_eq!(
            s.v6,
            [
                r(
                    v6("2001:608::"),
                    v6("2001:608:ffff:ffff:ffff:ffff:ffff:ffff"),
                    cc("DE")
                ),
                r(
                    v6("2a00:1fa0::"),
                    v6("2a00:1fa0:ffff:ffff:ffff:ffff:ffff:ffff"),
                    cc("RU")
                ),
            ]
        );
    }

    #[test]
    fn ipdeny_layout_and_single_files() {
        let dir = testdata("cidr-dir/ipdeny");
        let s = read_source(&dir, None).unwrap();
        assert_eq!(s.v4.len(), 3);
        assert_eq!(s.v6.len(), 1);
        let db = compile(vec![s]);
        assert_eq!(db.lookup(ip("1.0.1.7")).unwrap().info.country, cc("CN"));
        assert_eq!(db.lookup(ip("203.0.113.9")).unwrap().info.country, cc("KP"));
        assert_eq!(
            db.lookup(ip("2400:da00::1")).unwrap().info.country,
            cc("CN")
        );
        // One list on its own, detected from its content and named for its country.
        let s = read_source(&dir.join("kp.zone"), None).unwrap();
        assert_eq!(s.format, Format::CidrDir);
        assert_eq!(s.v4, [r(v4("203.0.113.0"), v4("203.0.113.255"), cc("KP"))]);
    }

    #[test]
    fn errors() {
        let (_dir, path) = file("list.txt", b"1.2.3.0/24\n");
        let e = read_source(&path, Some(Format::CidrDir)).unwrap_err();
        assert!(e.to_string().ends_with("list.txt: cannot tell the country from the file name; per-country lists are named like de.zone or de.cidr"), "{e}");
        // A code that is no country makes the list unknown (with a warning), not an error.
        let (_dir, path) = file("qq.zone", b"1.2.3.0/24\n");
        let s = read_source(&path, None).unwrap();
        assert_eq!(s.v4[0].country, geofilter_common::UNKNOWN_COUNTRY);
        let (_dir, path) = file("de.zone", b"1.2.3.0/24\n# c\n1.2.3.0-1.2.3.9\n");
        let e = read_source(&path, None).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("de.zone:3: bad network \"1.2.3.0-1.2.3.9\" in \"1.2.3.0-1.2.3.9\""),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("README.md"), "hi").unwrap();
        let e = read_source(dir.path(), None).unwrap_err();
        assert!(e.to_string().contains("no per-country list files"), "{e}");
    }
}
