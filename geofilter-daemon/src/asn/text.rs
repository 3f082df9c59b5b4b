//! The two text formats: ip-location-db's `start,end,asn,org` CSV and iptoasn's
//! `start<TAB>end<TAB>asn<TAB>country<TAB>description` TSV. Lines, addresses and errors come
//! from the country readers ([`crate::geoip::text`]), so the rules are theirs:
//!
//! - Addresses are text (`1.0.0.0`, `2001:200::`) or decimal integers (the `-num` / `-u32`
//!   variants); the range is inclusive; IPv4-mapped IPv6 is read as IPv4.
//! - The AS number is a decimal from 0 to 4294967295, optionally written `AS13335`; 0 is "no
//!   AS" (iptoasn's "Not routed").
//! - CSV organisation names follow RFC 4180 quoting, as the real files do:
//!   `"LLC ""SPUTNIK"""` is `LLC "SPUTNIK"`. The TSV has no quoting (tabs never occur in names).
//!   The TSV's country column is not read: countries come from the country database.
//! - A first line whose start is not an address and whose AS column is not a number is a header
//!   and skipped.
//! - Blank lines and `#` comments are skipped; gzip is read transparently.

use std::{borrow::Cow, path::Path};

use super::{AsnError, AsnFormat, types::AsnRanges};
use crate::geoip::{
    Format, LineProblem,
    text::{Lines, line_error, parse_addr, range_family, split_fields},
};

/// Reads an [`AsnFormat::IpLocationDbCsv`] or [`AsnFormat::Iptoasn`] file.
pub(super) fn read(
    path: &Path,
    format: AsnFormat,
    mut out: AsnRanges,
) -> Result<AsnRanges, AsnError> {
    let db = |e| AsnError::from_db(e, format);
    // The country format only sizes the input (a text database, at most 2 GiB).
    let mut lines = Lines::open(path, Format::RangeCsv).map_err(db)?;
    let mut first = true;
    while let Some((no, line)) = lines.next_line().map_err(db)? {
        let err = |problem| AsnError::Db(line_error(path, no, problem, line));
        let header_allowed = std::mem::replace(&mut first, false);
        let Fields {
            start,
            end,
            asn,
            name,
        } = fields(line, format).map_err(err)?;
        let Some(start_addr) = parse_addr(start) else {
            if header_allowed && parse_asn(asn).is_none() {
                continue;
            }
            return Err(err(LineProblem::Address {
                field: "start",
                value: start.to_owned(),
            }));
        };
        let end_addr = parse_addr(end).ok_or_else(|| {
            err(LineProblem::Address {
                field: "end",
                value: end.to_owned(),
            })
        })?;
        let number = parse_asn(asn).ok_or_else(|| {
            err(LineProblem::Asn {
                value: asn.to_owned(),
            })
        })?;
        let (v6, s, e) = range_family((start_addr, start), (end_addr, end)).map_err(err)?;
        out.push(v6, s, e, number).map_err(err)?;
        out.name(number, &name);
    }
    Ok(out)
}

/// The columns of one line.
struct Fields<'a> {
    start: &'a str,
    end: &'a str,
    asn: &'a str,
    name: Cow<'a, str>,
}

fn fields(line: &str, format: AsnFormat) -> Result<Fields<'_>, LineProblem> {
    match format {
        AsnFormat::Iptoasn => {
            let mut f = [""; 5];
            let mut n = 0;
            for field in line.split('\t') {
                if n < f.len() {
                    f[n] = field.trim();
                }
                n += 1;
            }
            // The description may be empty, and `Lines` trims the tab before it.
            if !(4..=5).contains(&n) {
                return Err(LineProblem::Fields {
                    expected: "5 tab-separated (start, end, AS number, country, description)",
                    found: n,
                });
            }
            Ok(Fields {
                start: f[0],
                end: f[1],
                asn: f[2],
                name: Cow::Borrowed(f[4]),
            })
        }
        AsnFormat::IpLocationDbCsv => {
            let mut f = [""; 4];
            let n = split_fields(line, b',', &mut f);
            if !(3..=4).contains(&n) {
                return Err(LineProblem::Fields {
                    expected: "3 or 4 (start,end,asn[,organisation])",
                    found: n,
                });
            }
            // `split_fields` removed the surrounding quotes; doubled quotes inside stand for one.
            let name = if f[3].contains("\"\"") {
                Cow::Owned(f[3].replace("\"\"", "\""))
            } else {
                Cow::Borrowed(f[3])
            };
            Ok(Fields {
                start: f[0],
                end: f[1],
                asn: f[2],
                name,
            })
        }
        AsnFormat::Mmdb => unreachable!("MMDB is not a text format"),
    }
}

/// `13335`, `AS13335` or `as13335` as a number; `None` for anything else.
pub(crate) fn parse_asn(s: &str) -> Option<u32> {
    let digits = match s.get(..2) {
        Some(p) if p.eq_ignore_ascii_case("as") => &s[2..],
        _ => s,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asn_numbers() {
        assert_eq!(parse_asn("13335"), Some(13335));
        assert_eq!(parse_asn("AS13335"), Some(13335));
        assert_eq!(parse_asn("as0"), Some(0));
        assert_eq!(parse_asn("4294967295"), Some(u32::MAX));
        for bad in ["", "AS", "4294967296", "-1", "13335x", "AS 1", "+5", "1.5"] {
            assert_eq!(parse_asn(bad), None, "{bad}");
        }
    }

    #[test]
    fn csv_quoting_as_in_the_real_files() {
        let f = fields(
            r#"2.26.200.0,2.26.215.255,201907,"LLC ""SPUTNIK""""#,
            AsnFormat::IpLocationDbCsv,
        )
        .unwrap();
        assert_eq!(f.name, r#"LLC "SPUTNIK""#);
        let f = fields(
            r#"1.0.0.0,1.0.0.255,13335,"Cloudflare, Inc.""#,
            AsnFormat::IpLocationDbCsv,
        )
        .unwrap();
        assert_eq!((f.start, f.end, f.asn), ("1.0.0.0", "1.0.0.255", "13335"));
        assert_eq!(f.name, "Cloudflare, Inc.");
        let f = fields("1.0.4.0,1.0.7.255,38803", AsnFormat::IpLocationDbCsv).unwrap();
        assert_eq!(f.name, "");
        assert!(fields("1.0.0.0,1.0.0.255,1,a,b", AsnFormat::IpLocationDbCsv).is_err());
        let f = fields(
            "1.0.0.0\t1.0.0.255\t0\tNone\tNot routed",
            AsnFormat::Iptoasn,
        )
        .unwrap();
        assert_eq!((f.asn, &*f.name), ("0", "Not routed"));
        let f = fields("1.0.0.0\t1.0.0.255\t7\tUS", AsnFormat::Iptoasn).unwrap();
        assert_eq!(f.name, "");
        assert!(fields("1.0.0.0,1.0.0.255,13335,x", AsnFormat::Iptoasn).is_err());
    }
}
