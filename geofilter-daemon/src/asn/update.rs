//! `geofilter db update --asn`: download ASN database files, validate them as the daemon would
//! load them, and store them (the country update's path: staged, size-limited, renamed into
//! place only when the whole set is valid).

use std::path::{Path, PathBuf};

use super::{AsnDb, AsnError};
use crate::geoip::update::{Download, UpdateError, fetch_checked};

/// Where ASN data can be fetched from without an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AsnPreset {
    /// ip-location-db's `asn` CSVs (the embedded database's source; CC BY 4.0: RouteViews,
    /// DB-IP, NRO) from the jsDelivr npm CDN.
    IpLocationDb,
    /// iptoasn.com's daily `ip2asn-v4.tsv.gz` and `ip2asn-v6.tsv.gz` (PDDL).
    Iptoasn,
}

impl AsnPreset {
    pub fn downloads(self) -> Vec<Download> {
        let one = |url: String, file: &str| Download {
            urls: vec![url],
            file_name: file.to_owned(),
            sha256: None,
        };
        match self {
            AsnPreset::IpLocationDb => ["asn-ipv4.csv", "asn-ipv6.csv"]
                .map(|f| {
                    one(
                        format!("https://cdn.jsdelivr.net/npm/@ip-location-db/asn/{f}"),
                        f,
                    )
                })
                .to_vec(),
            AsnPreset::Iptoasn => ["ip2asn-v4.tsv.gz", "ip2asn-v6.tsv.gz"]
                .map(|f| one(format!("https://iptoasn.com/data/{f}"), f))
                .to_vec(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AsnUpdateError {
    #[error(transparent)]
    Fetch(#[from] UpdateError),
    #[error("the download from {url} is not a valid ASN database, nothing was replaced: {source}")]
    Invalid {
        url: String,
        #[source]
        source: Box<AsnError>,
    },
    #[error("the downloaded files do not form a valid ASN database, nothing was replaced: {0}")]
    InvalidSet(#[source] Box<AsnError>),
}

/// What an ASN update stored.
pub struct StoredAsn {
    pub paths: Vec<PathBuf>,
    pub urls: Vec<String>,
    pub bytes: u64,
    pub db: AsnDb,
}

/// Fetches `downloads`, validates each and then the set as ASN databases, and moves them into
/// `dest`; nothing is replaced unless all of it is valid.
pub fn fetch_and_store(
    downloads: &[Download],
    dest: &Path,
    progress: bool,
) -> Result<StoredAsn, AsnUpdateError> {
    let (stored, db) = fetch_checked(
        downloads,
        dest,
        progress,
        |f| {
            super::read_source(&f.path, None)
                .map(|_| ())
                .map_err(|source| AsnUpdateError::Invalid {
                    url: f.url.clone(),
                    source: Box::new(source),
                })
        },
        |paths| super::load(paths, None).map_err(|e| AsnUpdateError::InvalidSet(Box::new(e))),
    )?;
    Ok(StoredAsn {
        paths: stored.paths,
        urls: stored.urls,
        bytes: stored.bytes,
        db,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_name_both_families() {
        for preset in [AsnPreset::IpLocationDb, AsnPreset::Iptoasn] {
            let d = preset.downloads();
            assert_eq!(d.len(), 2, "{preset:?}");
            assert!(d[0].file_name.contains("v4") && d[1].file_name.contains("v6"));
            assert!(d.iter().all(|d| d.urls[0].starts_with("https://")));
        }
    }
}
