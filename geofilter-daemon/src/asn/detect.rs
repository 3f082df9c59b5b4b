//! Telling ASN files from country files and from each other, so `--asn-db` and `db check` need
//! no format flag: MMDB by name or by the metadata marker, then what its metadata and records
//! hold; text by its first data line (a header line is skipped).

use std::path::Path;

use super::{AsnError, AsnFormat, mmdb, text::parse_asn};
use crate::geoip::{
    DbError, Format, LineProblem,
    detect::{is_dir, looks_like_mmdb},
    text::{Lines, base_name, parse_addr, split_fields},
};

/// The ASN format of a file, or `None` when it is not an ASN database (a country database, a
/// directory, text of another shape). Fails only when the file cannot be read at all, or is an
/// MMDB that does not parse.
pub fn detect(path: &Path) -> Result<Option<AsnFormat>, AsnError> {
    if is_dir(path)? {
        return Ok(None);
    }
    if base_name(path).ends_with(".mmdb") || looks_like_mmdb(path)? {
        return Ok(mmdb::is_asn(path)?.then_some(AsnFormat::Mmdb));
    }
    // The country format only sizes the input.
    let mut lines = Lines::open(path, Format::RangeCsv)?;
    for _ in 0..2 {
        let line = match lines.next_line() {
            Ok(Some((_, line))) => line,
            Ok(None) => return Ok(None),
            // Binary or otherwise not text: not one of ours.
            Err(
                DbError::LineTooLong { .. }
                | DbError::Line {
                    problem: LineProblem::NotUtf8,
                    ..
                },
            ) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let tabs: Vec<&str> = line.split('\t').map(str::trim).collect();
        if (4..=5).contains(&tabs.len()) && is_range(tabs[0], tabs[1]) {
            return Ok(parse_asn(tabs[2]).map(|_| AsnFormat::Iptoasn));
        }
        let mut f = [""; 4];
        let n = split_fields(line, b',', &mut f);
        if (3..=4).contains(&n) && is_range(f[0], f[1]) {
            // A country range CSV has a code where this has a number.
            return Ok(parse_asn(f[2]).map(|_| AsnFormat::IpLocationDbCsv));
        }
        // Only a first line that is not data (a header) gets a second look.
        if parse_addr(f[0]).is_some() || parse_addr(tabs[0]).is_some() {
            return Ok(None);
        }
    }
    Ok(None)
}

fn is_range(start: &str, end: &str) -> bool {
    parse_addr(start).is_some() && parse_addr(end).is_some()
}
