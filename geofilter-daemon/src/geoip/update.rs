//! `geofilter db update`: fetch a database over HTTP(S), validate it completely, and store it
//! atomically where the daemon reads it.
//!
//! Every file of a download set is first written to a staging folder inside the destination
//! ([`super::download`]: same filesystem, so the final `rename` is atomic), synced, and loaded
//! with [`super::load`] exactly as the daemon would load it. Only when the whole set is valid is
//! each file renamed over its predecessor and the folder synced. A failed or invalid download
//! leaves the destination as it was; the staging folder is removed in every case.

use std::{
    io,
    path::{Path, PathBuf},
    time::SystemTime,
};

use super::{
    CompiledDb, DbError, Format,
    download::{FetchOptions, fetch_validate_store},
    info::format_date,
};
pub use crate::paths::DEFAULT_DB_DIR;

/// The largest download accepted: the largest real country database (DB-IP lite CSV) is about
/// 150 MB uncompressed; this stops a wrong URL from filling the disk.
pub const MAX_DOWNLOAD: u64 = 1 << 30;

/// A named source for `db update --preset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// DB-IP "IP to Country Lite", one CSV (IPv4 and IPv6, gzip'd), refreshed monthly;
    /// CC BY 4.0, attribution "IP Geolocation by DB-IP" (<https://db-ip.com>).
    DbipLite,
    /// The same DB-IP lite data as ip-location-db's `dbip-country` CSV files (IPv4 and IPv6)
    /// from the jsDelivr CDN. The npm copies stopped updating in June 2026.
    IpLocationDb,
    /// ip-location-db's `geo-whois-asn-country` CSV files (IPv4 and IPv6, the embedded
    /// database's source; CC BY 4.0, NRO) from the jsDelivr CDN. Frozen in June 2026 like the
    /// other npm copies.
    GeoWhoisAsn,
}

/// One file to fetch: the URLs to try in order (the first that exists wins) and the name it is
/// stored under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Download {
    pub urls: Vec<String>,
    pub file_name: String,
    /// The SHA-256 (lower-case hex) the file must have: a policy document pins its databases
    /// this way. A download that hashes differently is refused before it is read.
    pub sha256: Option<String>,
}

impl Preset {
    /// The files of this preset, for a download on day `today`.
    pub fn downloads(self, today: SystemTime) -> Vec<Download> {
        let jsdelivr = |package: &str, file: &str| Download {
            urls: vec![format!(
                "https://cdn.jsdelivr.net/npm/@ip-location-db/{package}/{file}"
            )],
            file_name: file.to_owned(),
            sha256: None,
        };
        match self {
            Preset::DbipLite => {
                // Published at the start of each month: try this month, then the last one.
                let date = format_date(today);
                let (year, month) = (date[..4].parse::<u32>(), date[5..7].parse::<u32>());
                let (year, month) = (year.unwrap_or(1970), month.unwrap_or(1));
                let (prev_year, prev_month) = if month == 1 {
                    (year - 1, 12)
                } else {
                    (year, month - 1)
                };
                let url = |y: u32, m: u32| {
                    format!(
                        "https://download.db-ip.com/free/dbip-country-lite-{y:04}-{m:02}.csv.gz"
                    )
                };
                vec![Download {
                    urls: vec![url(year, month), url(prev_year, prev_month)],
                    file_name: "dbip-country-lite.csv.gz".into(),
                    sha256: None,
                }]
            }
            Preset::IpLocationDb => vec![
                jsdelivr("dbip-country", "dbip-country-ipv4.csv"),
                jsdelivr("dbip-country", "dbip-country-ipv6.csv"),
            ],
            Preset::GeoWhoisAsn => vec![
                jsdelivr("geo-whois-asn-country", "geo-whois-asn-country-ipv4.csv"),
                jsdelivr("geo-whois-asn-country", "geo-whois-asn-country-ipv6.csv"),
            ],
        }
    }
}

/// A download of a user-given URL, stored under the last part of its path.
pub fn url_download(url: &str) -> Result<Download, UpdateError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| UpdateError::BadUrl {
            url: url.to_owned(),
            reason: "only https:// and http:// URLs are supported",
        })?;
    let path = rest.split(['?', '#']).next().unwrap_or_default();
    let name = path.rsplit('/').next().unwrap_or_default();
    let ok = !name.is_empty()
        && path.contains('/')
        && name != "."
        && name != ".."
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b));
    if !ok {
        return Err(UpdateError::BadUrl {
            url: url.to_owned(),
            reason: "the URL must end in a file name (letters, digits, - _ . +) to store it under",
        });
    }
    Ok(Download {
        urls: vec![url.to_owned()],
        file_name: name.to_owned(),
        sha256: None,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("{url}: {reason}")]
    BadUrl { url: String, reason: &'static str },
    #[error("two downloads would both be stored as {name}")]
    DuplicateName { name: String },
    #[error("fetching {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: ureq::Error,
    },
    #[error("fetching {url}: the server answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("fetching {url}: larger than {limit_mib} MiB, the most accepted; wrong URL?")]
    TooLarge { url: String, limit_mib: u64 },
    #[error("failed to {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the download from {url} is not a valid database, nothing was replaced: {source}")]
    Invalid {
        url: String,
        #[source]
        source: Box<DbError>,
    },
    #[error("fetching {url}: its SHA-256 is {got}, the policy pins {want}; nothing was replaced")]
    Sha256Mismatch {
        url: String,
        got: String,
        want: String,
    },
    #[error("the downloaded files do not form a valid database, nothing was replaced: {0}")]
    InvalidSet(#[source] Box<DbError>),
}

/// What an update stored.
pub struct Stored {
    /// The stored files, in download order (the order to give them to the daemon).
    pub paths: Vec<PathBuf>,
    /// The URL each file came from.
    pub urls: Vec<String>,
    pub bytes: u64,
    pub db: CompiledDb,
}

/// Fetches `downloads`, validates them together (as the daemon would load them, with `format`
/// forced when given), and moves them into `dest`.
pub fn fetch_and_store(
    downloads: &[Download],
    dest: &Path,
    format: Option<Format>,
    progress: bool,
) -> Result<Stored, UpdateError> {
    let (stored, db) = fetch_checked(
        downloads,
        dest,
        progress,
        |f| {
            super::read_source(&f.path, format)
                .map(|_| ())
                .map_err(|source| UpdateError::Invalid {
                    url: f.url.clone(),
                    source: Box::new(source),
                })
        },
        |paths| super::load(paths, format).map_err(|e| UpdateError::InvalidSet(Box::new(e))),
    )?;
    Ok(Stored {
        paths: stored.paths,
        urls: stored.urls,
        bytes: stored.bytes,
        db,
    })
}

/// Where a checked set of downloads went.
pub(crate) struct StoredFiles {
    pub paths: Vec<PathBuf>,
    pub urls: Vec<String>,
    pub bytes: u64,
}

/// Fetches `downloads`, checks each file alone (so an error names the URL it came from), then
/// loads the set as the daemon will, and only then moves the files into `dest`: the path of
/// country and ASN updates alike.
pub(crate) fn fetch_checked<T, E: From<UpdateError>>(
    downloads: &[Download],
    dest: &Path,
    progress: bool,
    check: impl Fn(&super::download::Fetched) -> Result<(), E>,
    load: impl FnOnce(&[PathBuf]) -> Result<T, E>,
) -> Result<(StoredFiles, T), E> {
    let options = FetchOptions {
        progress,
        ..FetchOptions::default()
    };
    let (files, value) = fetch_validate_store(downloads, dest, &options, |files| {
        for f in files {
            check(f)?;
        }
        let paths: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
        load(&paths)
    })?;
    Ok((
        StoredFiles {
            bytes: files.iter().map(|f| f.bytes).sum(),
            paths: files.iter().map(|f| f.path.clone()).collect(),
            urls: files.into_iter().map(|f| f.url).collect(),
        },
        value,
    ))
}

#[cfg(test)]
mod tests {
    use super::{super::info::parse_date, *};

    #[test]
    fn preset_urls() {
        let day = parse_date("2027-01-15").unwrap();
        let d = Preset::DbipLite.downloads(day);
        assert_eq!(
            d[0].urls,
            [
                "https://download.db-ip.com/free/dbip-country-lite-2027-01.csv.gz",
                "https://download.db-ip.com/free/dbip-country-lite-2026-12.csv.gz"
            ]
        );
        assert_eq!(d[0].file_name, "dbip-country-lite.csv.gz");
        let d = Preset::GeoWhoisAsn.downloads(day);
        assert_eq!(d.len(), 2);
        assert!(d[1].urls[0].ends_with("/geo-whois-asn-country-ipv6.csv"));
    }

    #[test]
    fn url_file_names() {
        let name = |u: &str| url_download(u).map(|d| d.file_name);
        assert_eq!(
            name("https://x.example/a/db.csv.gz?token=1").unwrap(),
            "db.csv.gz"
        );
        assert_eq!(name("http://10.0.0.1:8080/geoip6").unwrap(), "geoip6");
        assert!(name("ftp://x.example/db.csv").is_err());
        assert!(name("https://x.example/").is_err());
        assert!(name("https://x.example").is_err());
        assert!(name("https://x.example/..").is_err());
        assert!(name("https://x.example/.hidden").is_err());
        assert!(name("https://x.example/a%2Fb").is_err());
    }
}
