//! What `geofilter db info` and `db check` report about a database: its sources, their build
//! dates, and the size of the compiled table. Runs without a daemon or a kernel.

use std::{
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

use super::{
    CompiledDb, DatabaseSource, DbError, Format, SourceFormat, SourceSummary, codec::PackedMeta,
    embedded, read_source,
};
use crate::country::code_str;

/// Data older than this gets a warning: country assignments move every day, and an old table
/// blocks the wrong customers.
pub const STALE_AFTER_DAYS: u64 = 90;

/// One source of a database.
#[derive(Clone, Debug, Serialize)]
pub struct SourceInfo {
    /// The file, or `embedded <name> <date>`.
    pub source: String,
    pub format: SourceFormat,
    #[serde(flatten)]
    pub provenance: Provenance,
    pub ranges_v4: usize,
    pub ranges_v6: usize,
}

/// Where a source's data comes from and how old it is; shared by the country and the ASN
/// databases ([`crate::asn::info`]).
#[derive(Clone, Debug, Serialize)]
pub struct Provenance {
    /// The upstream version, when the data says (the embedded databases do).
    pub version: Option<String>,
    /// When the data was built, `YYYY-MM-DD` (UTC).
    pub built: Option<String>,
    /// Where [`Provenance::built`] comes from: `embedded`, `mmdb build_epoch` or `file mtime`.
    pub built_from: &'static str,
    /// Whole days since it was built.
    pub age_days: Option<u64>,
    /// Licence and attribution, when the data says (the embedded databases do).
    pub licence: Option<String>,
}

impl Provenance {
    /// The provenance a packed (embedded) database's metadata gives.
    pub(crate) fn packed(meta: &PackedMeta, now: SystemTime) -> Self {
        Self {
            version: Some(meta.version.clone()),
            built: Some(meta.built.clone()),
            built_from: "embedded",
            age_days: parse_date(&meta.built).and_then(|b| age_days(now, b)),
            licence: Some(meta.licence.clone()),
        }
    }

    /// A file's: an MMDB's `build_epoch`, else the file's modification time.
    pub(crate) fn file(path: &Path, mmdb: bool, now: SystemTime) -> Result<Self, DbError> {
        let (built, built_from) = if mmdb {
            (mmdb_build_time(path)?, "mmdb build_epoch")
        } else {
            let mtime = std::fs::metadata(path)
                .and_then(|m| m.modified())
                .map_err(|source| DbError::Io {
                    op: "stat",
                    path: path.to_owned(),
                    source,
                })?;
            (mtime, "file mtime")
        };
        Ok(Self {
            version: None,
            built: Some(format_date(built)),
            built_from,
            age_days: age_days(now, built),
            licence: None,
        })
    }

    /// The warning for `source` when its data is older than [`STALE_AFTER_DAYS`]: how old, and
    /// `advice`.
    pub(crate) fn stale_warning(&self, source: &str, advice: &str) -> Option<String> {
        let age = self.age_days?;
        (age > STALE_AFTER_DAYS).then(|| {
            format!(
                "{source} is {age} days old (built {}, {}); {advice}",
                self.built.as_deref().unwrap_or("?"),
                self.built_from,
            )
        })
    }
}

/// A whole database: its sources and the compiled table.
#[derive(Clone, Debug, Serialize)]
pub struct DbInfo {
    pub sources: Vec<SourceInfo>,
    pub prefixes_v4: usize,
    pub prefixes_v6: usize,
    /// Countries with at least one prefix, as codes.
    pub countries: Vec<String>,
    /// One line per stale source (older than [`STALE_AFTER_DAYS`]).
    pub warnings: Vec<String>,
}

/// Reads and compiles a database and describes the result.
pub fn describe(source: &DatabaseSource) -> Result<DbInfo, DbError> {
    let now = SystemTime::now();
    match source {
        DatabaseSource::Embedded => {
            let meta = embedded::meta();
            let db = embedded::load()?;
            let source = SourceInfo {
                source: meta.label(),
                format: SourceFormat::Embedded,
                provenance: Provenance::packed(meta, now),
                ranges_v4: db.sources[0].ranges_v4,
                ranges_v6: db.sources[0].ranges_v6,
            };
            Ok(summarise(vec![source], &db))
        }
        DatabaseSource::Files { paths, format } => {
            let db = super::load(paths, *format)?;
            let sources = db
                .sources
                .iter()
                .map(|s| source_info(s, now))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(summarise(sources, &db))
        }
    }
}

/// Checks one file alone: reads it whole and compiles it, like `load` would.
pub fn check(path: &Path, format: Option<Format>) -> Result<DbInfo, DbError> {
    let source = read_source(path, format)?;
    let db = super::compile_within(vec![source], &super::Limits::default())?;
    let info = source_info(&db.sources[0], SystemTime::now())?;
    Ok(summarise(vec![info], &db))
}

fn summarise(sources: Vec<SourceInfo>, db: &CompiledDb) -> DbInfo {
    let warnings = sources
        .iter()
        .filter_map(|s| {
            s.provenance.stale_warning(
                &s.source,
                "country assignments change daily: fetch a fresh one with `geofilter db update`",
            )
        })
        .collect();
    DbInfo {
        sources,
        prefixes_v4: db.v4.len(),
        prefixes_v6: db.v6.len(),
        countries: db.countries().into_iter().map(code_str).collect(),
        warnings,
    }
}

fn source_info(s: &SourceSummary, now: SystemTime) -> Result<SourceInfo, DbError> {
    Ok(SourceInfo {
        source: s.path.display().to_string(),
        format: s.format,
        provenance: Provenance::file(&s.path, s.format == Format::Mmdb, now)?,
        ranges_v4: s.ranges_v4,
        ranges_v6: s.ranges_v6,
    })
}

/// The `build_epoch` in an MMDB file's metadata.
fn mmdb_build_time(path: &Path) -> Result<SystemTime, DbError> {
    let reader = maxminddb::Reader::from_source(super::input::read_all(path, Format::Mmdb)?)
        .map_err(|source| DbError::Mmdb {
            path: path.to_owned(),
            source,
        })?;
    Ok(UNIX_EPOCH + Duration::from_secs(reader.metadata().build_epoch))
}

fn age_days(now: SystemTime, built: SystemTime) -> Option<u64> {
    // A build date in the future (clock skew) counts as new.
    Some(
        now.duration_since(built)
            .map_or(0, |d| d.as_secs() / 86_400),
    )
}

/// `YYYY-MM-DD` (UTC) of a time.
pub fn format_date(t: SystemTime) -> String {
    let days = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() / 86_400) as i64,
        Err(e) => -(e.duration().as_secs().div_ceil(86_400) as i64),
    };
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Midnight UTC of a `YYYY-MM-DD` date.
pub fn parse_date(s: &str) -> Option<SystemTime> {
    let mut parts = s.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    u64::try_from(days)
        .ok()
        .map(|days| UNIX_EPOCH + Duration::from_secs(days * 86_400))
}

// Howard Hinnant's algorithms for the proleptic Gregorian calendar
// (<https://howardhinnant.github.io/date_algorithms.html>), so dates need no extra crate.

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::{super::tests::testdata, *};

    #[test]
    fn dates_round_trip() {
        for (s, days) in [
            ("1970-01-01", 0),
            ("2000-02-29", 11_016),
            ("2026-06-17", 20_621),
        ] {
            let t = parse_date(s).unwrap();
            assert_eq!(
                t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
                days * 86_400
            );
            assert_eq!(format_date(t), s);
        }
        assert_eq!(parse_date("2026-13-01"), None);
        assert_eq!(parse_date("yesterday"), None);
        for days in [0i64, 1, 59, 365, 10_000, 20_000, 30_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn describes_files_and_the_embedded_database() {
        let slice = testdata("geo-whois-asn-country/geo-whois-asn-country-ipv4.slice.csv");
        let mmdb = testdata("iptoasn-country/iptoasn-country-ipv4.mmdb");
        let info = describe(&DatabaseSource::from_paths(&[slice.clone(), mmdb], None)).unwrap();
        assert_eq!(info.sources.len(), 2);
        assert_eq!(info.sources[0].provenance.built_from, "file mtime");
        assert_eq!(info.sources[0].ranges_v4, 3000);
        assert_eq!(info.sources[1].format, Format::Mmdb);
        assert_eq!(info.sources[1].provenance.built_from, "mmdb build_epoch");
        assert!(info.prefixes_v4 > 100_000 && info.prefixes_v6 == 0);
        assert!(info.countries.iter().any(|c| c == "DE"));

        let embedded = describe(&DatabaseSource::from_paths(&[], None)).unwrap();
        let s = &embedded.sources[0];
        assert_eq!(s.format, SourceFormat::Embedded);
        assert!(
            s.source.starts_with("embedded geo-whois-asn-country 20"),
            "{}",
            s.source
        );
        assert!(s.provenance.version.is_some());
        // The embedded data is frozen at build time; by the time anyone runs this it is stale,
        // and saying so is the point.
        let stale = s.provenance.age_days.unwrap() > STALE_AFTER_DAYS;
        assert_eq!(!embedded.warnings.is_empty(), stale);

        let one = check(&slice, None).unwrap();
        assert_eq!(one.sources[0].ranges_v4, 3000);
        assert!(check(&testdata("README.md"), None).is_err());
    }
}
