//! Database file formats (`--db-format`), and where a database comes from: files of those
//! formats, or the one compiled into the binary.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

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
    /// The database compiled into the binary ([`embedded`]); not a file format, so not in
    /// [`Format::ALL`] and not accepted by `--db-format`.
    Embedded,
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
            Format::Embedded => "embedded",
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
