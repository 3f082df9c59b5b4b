//! GeoIP databases: reading every supported format into country ranges, and compiling the ranges
//! of one or more files into the disjoint prefix table the datapath loads.
//!
//! Contract with the rest of the daemon (keep these names and shapes):
//! - [`load`] reads and compiles `--db` files (in order) into a [`CompiledDb`], or fails with a
//!   [`DbError`] naming the file, the line (text formats) and the offending text. Nothing is
//!   half-loaded: the caller only swaps tables after `load` succeeded.
//! - [`CompiledDb::v4`] / [`CompiledDb::v6`]: sorted, disjoint prefixes; `addr` is the numeric
//!   address within its family (an IPv4 address is a value below 2^32), `len` the prefix length.
//! - [`CompiledDb::lookup`]: the reference answer for one address (binary search), used by `why`
//!   and by tests that compare the kernel's answer with it.
//!
//! # Semantics
//!
//! Every format is first read into inclusive address ranges with a country ([`read_source`]);
//! [`compile()`] then turns the ranges of all files into one table:
//!
//! - **Most specific wins.** Where ranges overlap or nest, an address takes the country of the
//!   smallest range that contains it (the longest-prefix rule of an LPM table, extended to ranges
//!   that are not CIDR blocks). Real data needs this: geo-whois-asn-country nests
//!   `3.2.35.40-3.2.35.47 TR` inside `3.2.35.0-3.2.35.63 DE`.
//! - **Ties go to the later entry.** Between ranges of equal size, the file given later on the
//!   command line wins, and within one file the later line. So a small override file given after
//!   a world database replaces its entries of the same size.
//! - **Pseudo-codes are "unknown".** `??`, `EU`, `AP`, `ZZ`, `XX`, `A1`, `A2`, `O1`, `-` and an
//!   empty code mean "no country" ([`UNKNOWN_COUNTRY`]). Such a range still takes part in the two
//!   rules above (a small `??` range inside a large `DE` range makes that part unknown), but is
//!   not written to the table: a lookup miss means unknown anyway. Codes ISO keeps reserved but
//!   that name no current country (`AN`, `YU`, `UK`, ...; see [`crate::country::table::RESERVED_CODES`]) are
//!   unknown too, with a warning: real data still carries a stale `AN`. So are two letters ISO
//!   has not assigned at all (Debian's tor-geoipdb has `OS`), also with a warning, one per code
//!   and file. A malformed code (digits, punctuation, wrong length) is an error.
//! - **Case** does not matter in database codes (`ru.zone`); user input goes through
//!   [`crate::country::parse_user_code`].
//! - **IPv4-mapped IPv6** (`::ffff:0:0/96`) in IPv6 input is read as IPv4, so IPv6 files that
//!   repeat the IPv4 space that way (IP2Location) also fill the IPv4 table.
//! - The result is then merged (adjacent pieces with the same country and file become one) and
//!   split into the fewest CIDR prefixes per piece (ranges are often not CIDR-aligned, e.g.
//!   `6.0.0.0,7.81.167.144,US`).
//!
//! `reference::reference_lookup` (test builds and the `test-helpers` feature) restates these rules
//! as a plain scan over all ranges; tests compare the compiled table with it.
//!
//! [`UNKNOWN_COUNTRY`]: geofilter_common::UNKNOWN_COUNTRY

mod cidr_dir;
pub mod codec;
mod compile;
pub(crate) mod detect;
pub(crate) mod download;
pub mod embedded;
mod error;
mod format;
pub mod info;
pub(crate) mod input;
mod maxmind_csv;
pub(crate) mod mmdb;
#[cfg(any(test, feature = "test-helpers"))]
pub mod mmdb_writer;
pub(crate) mod prefixes;
mod range_csv;
#[cfg(any(test, feature = "test-helpers"))]
pub mod reference;
mod rir;
pub(crate) mod sweep;
pub(crate) mod text;
mod tor;
mod types;
pub mod update;

use std::path::{Path, PathBuf};

pub use self::{
    compile::{compile, compile_within},
    error::{DbError, LineProblem},
    format::{DatabaseSource, Format, SourceFormat},
    types::{
        CompiledDb, DEFAULT_MAX_TABLE_MIB, Limits, Prefix, Range, SourceRanges, SourceSummary,
    },
};
pub(crate) use self::{
    prefixes::{for_each_prefix, last_addr},
    types::{Ranges, split_mapped},
};

/// The most database files one table can name: [`PrefixInfo::source`] is a `u16`.
const MAX_SOURCES: usize = u16::MAX as usize + 1;

/// [`load_within`] the default [`Limits`].
pub fn load(paths: &[PathBuf], format: Option<Format>) -> Result<CompiledDb, DbError> {
    load_within(paths, format, &Limits::default())
}

/// Reads and compiles database files, in order (later files win ties, see the module docs),
/// refusing them once they exceed `limits`.
///
/// `format` forces one format for every file; `None` detects each file's format.
pub fn load_within(
    paths: &[PathBuf],
    format: Option<Format>,
    limits: &Limits,
) -> Result<CompiledDb, DbError> {
    if paths.is_empty() {
        return Err(DbError::NoFiles);
    }
    if paths.len() > MAX_SOURCES {
        return Err(DbError::TooManyFiles {
            count: paths.len(),
            max: MAX_SOURCES,
        });
    }
    let sources = read_each(paths, |path| read_source_within(path, format, limits))?;
    compile::compile_within(sources, limits)
}

/// `read` applied to every path, in order; the first error in path order is returned. Files are
/// independent: they are read on up to as many threads as there are CPUs (a world database is
/// usually two files, IPv4 and IPv6). Shared with the ASN readers ([`crate::asn::load`]).
pub(crate) fn read_each<T: Send, E: Send>(
    paths: &[PathBuf],
    read: impl Fn(&Path) -> Result<T, E> + Sync,
) -> Result<Vec<T>, E> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(paths.len());
    let mut results: Vec<Option<Result<T, E>>> = Vec::new();
    results.resize_with(paths.len(), || None);
    if threads <= 1 {
        for (slot, path) in results.iter_mut().zip(paths) {
            *slot = Some(read(path));
        }
    } else {
        let chunk = paths.len().div_ceil(threads);
        let read = &read;
        std::thread::scope(|s| {
            for (slots, paths) in results.chunks_mut(chunk).zip(paths.chunks(chunk)) {
                s.spawn(move || {
                    for (slot, path) in slots.iter_mut().zip(paths) {
                        *slot = Some(read(path));
                    }
                });
            }
        });
    }
    results
        .into_iter()
        .map(|r| r.expect("every file was read"))
        .collect()
}

/// Reads and compiles a database: the [embedded] one, or files with [`load_within`].
pub fn load_source(source: &DatabaseSource, limits: &Limits) -> Result<CompiledDb, DbError> {
    match source {
        DatabaseSource::Embedded => embedded::load(),
        DatabaseSource::Files { paths, format } => load_within(paths, *format, limits),
    }
}

/// Reads one database file (or directory, for [`Format::CidrDir`]) into ranges.
///
/// `format` forces the format; `None` detects it from the path and the content. Gzip-compressed
/// files (any format) are recognised by their magic bytes. A file without a single range is an
/// error ([`DbError::Empty`]): it is almost always the wrong file or the wrong format.
pub fn read_source(path: &Path, format: Option<Format>) -> Result<SourceRanges, DbError> {
    read_source_within(path, format, &Limits::default())
}

/// [`read_source`], refusing a file with more ranges than `limits` allow.
pub fn read_source_within(
    path: &Path,
    format: Option<Format>,
    limits: &Limits,
) -> Result<SourceRanges, DbError> {
    let format = match format {
        Some(f) => f,
        None => detect::detect(path)?,
    };
    let out = Ranges::new(limits);
    let ranges = match format {
        Format::RangeCsv => range_csv::read(path, Format::RangeCsv, out)?,
        Format::Tor => tor::read(path, out)?,
        Format::Mmdb => mmdb::read(path, out)?,
        Format::MaxmindCsv => maxmind_csv::read(path, out)?,
        Format::CidrDir => cidr_dir::read(path, out)?,
        Format::Rir => rir::read(path, out)?,
    };
    if ranges.v4.is_empty() && ranges.v6.is_empty() {
        return Err(DbError::Empty {
            path: path.to_owned(),
            format,
        });
    }
    Ok(SourceRanges {
        path: path.to_owned(),
        format: format.into(),
        v4: ranges.v4,
        v6: ranges.v6,
    })
}

#[cfg(test)]
pub(crate) mod tests;
