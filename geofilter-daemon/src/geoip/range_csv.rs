//! `start,end,CC` range files: DB-IP lite country, IP2Location LITE DB1, ip-location-db, and the
//! daemon's own override files.
//!
//! - Addresses are text (`1.0.0.0`, `2001:200::`) or decimal integers (`16777216`; u128 for
//!   IPv6), with or without double quotes; the range is inclusive.
//! - Columns after the third are ignored (IP2Location adds the country name).
//! - A first line whose start column is not an address and whose country column is not a code
//!   is a header and skipped (`ip_start,ip_end,country`).
//! - Pseudo-codes (`??`, `-`, `EU`, ...) are read as unknown; see [`super::country`].

use std::path::Path;

use super::{
    DbError, Format, LineProblem, Ranges,
    text::{Lines, line_error, parse_addr, push_range, split_fields},
};
use crate::country::{CodeReader, parse_database_code};

/// Reads a range CSV file; `format` is [`Format::RangeCsv`] or [`Format::Tor`] (same syntax),
/// and only appears in messages.
pub(super) fn read(path: &Path, format: Format, mut out: Ranges) -> Result<Ranges, DbError> {
    let mut lines = Lines::open(path, format)?;
    let mut codes = CodeReader::default();
    let mut first = true;
    while let Some((no, line)) = lines.next_line()? {
        let err = |problem| line_error(path, no, problem, line);
        let header_allowed = std::mem::replace(&mut first, false);
        let mut f = [""; 3];
        let n = split_fields(line, b',', &mut f);
        if n < 3 {
            return Err(err(LineProblem::Fields {
                expected: "at least 3 (start,end,country)",
                found: n,
            }));
        }
        let Some(start) = parse_addr(f[0]) else {
            if header_allowed && f[2].len() != 2 && parse_database_code(f[2]).is_none() {
                continue;
            }
            return Err(err(LineProblem::Address {
                field: "start",
                value: f[0].to_owned(),
            }));
        };
        let end = parse_addr(f[1]).ok_or_else(|| {
            err(LineProblem::Address {
                field: "end",
                value: f[1].to_owned(),
            })
        })?;
        let country = codes.parse(f[2], || format!("line {no}")).ok_or_else(|| {
            err(LineProblem::Country {
                value: f[2].to_owned(),
            })
        })?;
        push_range(&mut out, (start, f[0]), (end, f[1]), country).map_err(err)?;
    }
    codes.warn(path);
    Ok(out)
}
