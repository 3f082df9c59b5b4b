//! What `geofilter db info` and `db check` report about ASN databases: sources, build dates,
//! ranges and AS numbers. Runs without a daemon or a kernel.

use std::{
    path::{Path, PathBuf},
    time::SystemTime,
};

use serde::Serialize;

use super::{AsnDb, AsnError, AsnFormat, AsnSourceSummary, embedded};
use crate::geoip::{Limits, info::Provenance};

/// One source of an ASN database.
#[derive(Clone, Debug, Serialize)]
pub struct AsnSourceInfo {
    /// The file, or `embedded asn <date>`.
    pub source: String,
    /// The format's name, or `embedded`.
    pub format: String,
    #[serde(flatten)]
    pub provenance: Provenance,
    pub ranges_v4: usize,
    pub ranges_v6: usize,
    /// Distinct AS numbers in this source's ranges.
    pub asns: usize,
}

/// A whole ASN database: its sources and the resolved table.
#[derive(Clone, Debug, Serialize)]
pub struct AsnInfo {
    pub sources: Vec<AsnSourceInfo>,
    /// Ranges of the resolved table (disjoint, merged).
    pub ranges_v4: usize,
    pub ranges_v6: usize,
    /// Distinct AS numbers with at least one range.
    pub asns: usize,
    /// AS numbers with an organisation name.
    pub names: usize,
    /// One line per stale source (older than
    /// [`STALE_AFTER_DAYS`](crate::geoip::info::STALE_AFTER_DAYS)).
    pub warnings: Vec<String>,
}

/// Reads and resolves ASN files (none: the embedded database) and describes the result.
pub fn describe(paths: &[PathBuf], format: Option<AsnFormat>) -> Result<AsnInfo, AsnError> {
    let db = if paths.is_empty() {
        embedded::load()?
    } else {
        super::load(paths, format)?
    };
    summarise(&db)
}

/// Checks one file alone: reads it whole and resolves it, like `load` would.
pub fn check(path: &Path, format: Option<AsnFormat>) -> Result<AsnInfo, AsnError> {
    let source = super::read_source(path, format)?;
    summarise(&super::compile_within(
        vec![source],
        &Limits::default(),
        false,
    )?)
}

fn summarise(db: &AsnDb) -> Result<AsnInfo, AsnError> {
    let now = SystemTime::now();
    let sources = db
        .sources
        .iter()
        .map(|s| source_info(s, now))
        .collect::<Result<Vec<_>, _>>()?;
    let warnings = sources
        .iter()
        .filter_map(|s| {
            s.provenance.stale_warning(
                &s.source,
                "networks change hands and routes move: use a fresh ASN database (--asn-db)",
            )
        })
        .collect();
    Ok(AsnInfo {
        sources,
        ranges_v4: db.v4.len(),
        ranges_v6: db.v6.len(),
        asns: db.asns(),
        names: db.names.len(),
        warnings,
    })
}

fn source_info(s: &AsnSourceSummary, now: SystemTime) -> Result<AsnSourceInfo, AsnError> {
    let (format, provenance) = if s.embedded {
        ("embedded", Provenance::packed(embedded::meta(), now))
    } else {
        (
            s.format.name(),
            Provenance::file(&s.path, s.format == AsnFormat::Mmdb, now)?,
        )
    };
    Ok(AsnSourceInfo {
        source: s.path.display().to_string(),
        format: format.to_owned(),
        provenance,
        ranges_v4: s.ranges_v4,
        ranges_v6: s.ranges_v6,
        asns: s.asns,
    })
}
