//! ASN database file formats (`--asn-format`); detected from the path and content when not
//! given ([`super::detect()`]).

use std::fmt;

use serde::{Deserialize, Serialize};

/// An ASN database file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum AsnFormat {
    /// MaxMind DB (`.mmdb`) with `autonomous_system_number` and
    /// `autonomous_system_organization` records: GeoLite2-ASN, GeoIP2-ASN, ip-location-db's
    /// `asn-mmdb`.
    Mmdb,
    /// ip-location-db's `asn` CSV: `start,end,asn,org` (`asn-ipv4.csv`, `asn-ipv6.csv` and the
    /// `-num` variants with integer addresses).
    IpLocationDbCsv,
    /// iptoasn.com's `ip2asn-v4.tsv`, `ip2asn-v6.tsv`, `ip2asn-combined.tsv`, `ip2asn-v4-u32.tsv`:
    /// `start<TAB>end<TAB>asn<TAB>country<TAB>description`, AS 0 for "Not routed".
    Iptoasn,
}

impl AsnFormat {
    pub const ALL: [AsnFormat; 3] = [
        AsnFormat::Mmdb,
        AsnFormat::IpLocationDbCsv,
        AsnFormat::Iptoasn,
    ];

    /// The name used on the command line and in output.
    pub const fn name(self) -> &'static str {
        match self {
            AsnFormat::Mmdb => "mmdb",
            AsnFormat::IpLocationDbCsv => "ip-location-db-csv",
            AsnFormat::Iptoasn => "iptoasn",
        }
    }
}

impl fmt::Display for AsnFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
