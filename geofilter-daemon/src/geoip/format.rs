//! Database file formats (`--db-format`), and where a database comes from: files of those
//! formats, or the one compiled into the binary.

use std::{fmt, path::PathBuf, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A database file format (`--db-format`); detected from the path and content when not given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// `start,end,CC[,...]` per line, addresses as text or integers, optionally quoted: DB-IP
    /// lite, IP2Location LITE DB1, ip-location-db, the daemon's own override files.
    RangeCsv,
    /// MaxMind DB (`.mmdb`): GeoLite2/GeoIP2 Country or City, or ip-location-db's layout.
    Mmdb,
    /// MaxMind GeoLite2/GeoIP2 Country or City CSV: a `*-Blocks-IPv4.csv` or `*-Blocks-IPv6.csv`
    /// file with its `*-Locations-en.csv` beside it.
    MaxmindCsv,
    /// Tor's `geoip` / `geoip6` files (IPFire location data, Debian's `tor-geoipdb`).
    Tor,
    /// A directory of per-country CIDR lists (`ru.zone`, `ipv4/ru.cidr`; ipdeny,
    /// herrbischoff/country-ip-blocks), or one such file.
    CidrDir,
    /// RIR delegated statistics (`delegated-ripencc-extended-latest`).
    Rir,
}

impl Format {
    pub const ALL: [Format; 6] = [
        Format::RangeCsv,
        Format::Mmdb,
        Format::MaxmindCsv,
        Format::Tor,
        Format::CidrDir,
        Format::Rir,
    ];

    /// The name used by `--db-format` and in output.
    pub const fn name(self) -> &'static str {
        match self {
            Format::RangeCsv => "range-csv",
            Format::Mmdb => "mmdb",
            Format::MaxmindCsv => "maxmind-csv",
            Format::Tor => "tor",
            Format::CidrDir => "cidr-dir",
            Format::Rir => "rir",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<_> = Format::ALL.iter().map(|f| f.name()).collect();
                format!(
                    "unknown database format {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// Where a database comes from: the one compiled into the binary, or files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseSource {
    /// The database compiled into the binary ([`super::embedded`]).
    Embedded,
    /// Files read in order (later files win ties); `format` forces one format for every file,
    /// `None` detects each.
    Files {
        paths: Vec<PathBuf>,
        format: Option<Format>,
    },
}

impl DatabaseSource {
    /// The source a database list names: an empty list (on the command line, in the state file,
    /// in a reload request) means the embedded database.
    pub fn from_paths(paths: &[PathBuf], format: Option<Format>) -> Self {
        if paths.is_empty() {
            DatabaseSource::Embedded
        } else {
            DatabaseSource::Files {
                paths: paths.to_vec(),
                format,
            }
        }
    }
}

/// What one source of a compiled table was read as: a file [`Format`], or the embedded database.
/// Written as the format's name or `"embedded"` (`status`, `db info --json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceFormat {
    File(Format),
    Embedded,
}

impl SourceFormat {
    pub const fn name(self) -> &'static str {
        match self {
            SourceFormat::File(f) => f.name(),
            SourceFormat::Embedded => "embedded",
        }
    }
}

impl From<Format> for SourceFormat {
    fn from(f: Format) -> Self {
        SourceFormat::File(f)
    }
}

impl PartialEq<Format> for SourceFormat {
    fn eq(&self, other: &Format) -> bool {
        *self == SourceFormat::File(*other)
    }
}

impl fmt::Display for SourceFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for SourceFormat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for SourceFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        if name == SourceFormat::Embedded.name() {
            return Ok(SourceFormat::Embedded);
        }
        name.parse::<Format>()
            .map(SourceFormat::File)
            .map_err(serde::de::Error::custom)
    }
}
