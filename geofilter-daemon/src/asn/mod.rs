//! ASN databases: which autonomous system announces or holds an address, for policies that
//! block or allow a network wherever its addresses are registered (issue 14).
//!
//! Contract with the rest of the daemon (keep these names and shapes):
//! - [`load`] reads `--asn-db` files (in order) into an [`AsnDb`], or fails with an
//!   [`AsnError`] naming the file, the line (text formats) and the offending text. Nothing is
//!   half-loaded: the caller only swaps tables after `load` succeeded.
//! - [`AsnDb::v4`] / [`AsnDb::v6`]: sorted, disjoint, inclusive ranges, adjacent ranges of one
//!   AS merged, only ranges with an AS; values within the family (IPv4 below 2^32).
//! - [`AsnDb::lookup`] / [`AsnDb::name`]: the answer for one address, and the organisation.
//! - [`detect()`]: `Some(format)` for an ASN file, `None` for anything else (a country file), so
//!   `db check` and `db info` tell them apart without a flag.
//! - [`embedded::load`]: the database compiled into the binary (`@ip-location-db/asn`), used
//!   when no `--asn-db` is given.
//!
//! # Formats
//!
//! [`AsnFormat::Mmdb`] (MaxMind GeoLite2-ASN / GeoIP2-ASN), [`AsnFormat::IpLocationDbCsv`]
//! (`start,end,asn,org`), [`AsnFormat::Iptoasn`] (`ip2asn-v4.tsv`, `ip2asn-v6.tsv`); any of them
//! gzip-compressed. Files are opened, decompressed, split into lines and their addresses parsed
//! by the country readers' machinery ([`crate::geoip`]), with its limits and error messages.
//!
//! # Semantics (those of the country databases, see [`crate::geoip`])
//!
//! - **Most specific wins**: where ranges overlap or nest, an address takes the AS of the
//!   smallest range that contains it.
//! - **Ties go to the later entry**: between ranges of equal size, the later file, then the later
//!   line.
//! - **AS 0 is "no AS"** ([`NO_ASN`]; iptoasn's "Not routed"): such a range takes part in both
//!   rules (a not-routed piece inside a routed block has no AS) but is not in the table.
//! - **IPv4-mapped IPv6** (`::ffff:0:0/96`) is read as IPv4.
//! - **Names**: the organisation of an AS is the last one any file gives (later files win).
//!
//! `reference::reference_lookup` (test builds and the `test-helpers` feature) restates these rules
//! as a plain scan; tests compare [`load`]'s table with it.

pub mod codec;
mod compile;
mod detect;
pub mod embedded;
mod error;
mod format;
pub mod info;
mod mmdb;
#[cfg(any(test, feature = "test-helpers"))]
pub mod reference;
mod text;
mod types;
pub mod update;

use std::path::{Path, PathBuf};

use self::types::AsnRanges;
pub use self::{
    compile::compile_within,
    detect::detect,
    error::AsnError,
    format::AsnFormat,
    types::{AsnDb, AsnRange, AsnSource, AsnSourceSummary, NO_ASN},
};
use crate::geoip::{Limits, read_each};

/// [`load_within`] the default [`Limits`].
pub fn load(paths: &[PathBuf], format: Option<AsnFormat>) -> Result<AsnDb, AsnError> {
    load_within(paths, format, &Limits::default())
}

/// Reads and resolves ASN database files, in order (later files win ties), refusing them once
/// they exceed `limits`. `format` forces one format for every file; `None` detects each.
pub fn load_within(
    paths: &[PathBuf],
    format: Option<AsnFormat>,
    limits: &Limits,
) -> Result<AsnDb, AsnError> {
    if paths.is_empty() {
        return Err(AsnError::NoFiles);
    }
    let sources = read_each(paths, |path| read_source_within(path, format, limits))?;
    compile_within(sources, limits, false)
}

/// Reads one ASN database file into ranges and names, in file order.
///
/// `format` forces the format; `None` detects it ([`detect()`]), and a file that is no ASN
/// database is an error ([`AsnError::NotAsn`]). A file without a range, or without one range
/// that has an AS, is an error: it is almost always the wrong file.
pub fn read_source(path: &Path, format: Option<AsnFormat>) -> Result<AsnSource, AsnError> {
    read_source_within(path, format, &Limits::default())
}

/// [`read_source`], refusing a file with more ranges per family than `limits` allow.
pub fn read_source_within(
    path: &Path,
    format: Option<AsnFormat>,
    limits: &Limits,
) -> Result<AsnSource, AsnError> {
    let format = match format {
        Some(f) => f,
        None => detect(path)?.ok_or_else(|| AsnError::NotAsn {
            path: path.to_owned(),
            why: "neither an ASN MaxMind DB nor a start,end,asn CSV nor an iptoasn TSV".into(),
        })?,
    };
    let out = AsnRanges::new(limits);
    let AsnRanges { v4, v6, names, .. } = match format {
        AsnFormat::Mmdb => mmdb::read(path, out)?,
        AsnFormat::IpLocationDbCsv | AsnFormat::Iptoasn => text::read(path, format, out)?,
    };
    if v4.is_empty() && v6.is_empty() {
        return Err(AsnError::Empty {
            path: path.to_owned(),
            format,
        });
    }
    if v4.iter().chain(&v6).all(|r| r.asn == NO_ASN) {
        return Err(AsnError::NoAsns {
            path: path.to_owned(),
            ranges: v4.len() + v6.len(),
        });
    }
    Ok(AsnSource {
        path: path.to_owned(),
        format,
        v4,
        v6,
        names,
    })
}

#[cfg(test)]
mod exactness;
#[cfg(test)]
mod tests;
