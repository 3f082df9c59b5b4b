//! Telling ASN files from country files and from each other, so `--asn-db` and `db check` need
//! no format flag: MMDB by name or by the metadata marker, then what its metadata and records
//! hold; text by its first data line (a header line is skipped).

use std::path::Path;

use super::{AsnError, AsnFormat, mmdb, text::parse_asn};
use crate::geoip::{
    DbError, Format, LineProblem,
    detect::{is_dir, looks_like_mmdb},
    text::{Lines, base_name, parse_addr, split_fields},
};

/// The ASN format of a file, or `None` when it is not an ASN database (a country database, a
/// directory, text of another shape). Fails only when the file cannot be read at all, or is an
/// MMDB that does not parse.
pub fn detect(path: &Path) -> Result<Option<AsnFormat>, AsnError> {
    if is_dir(path)? {
        return Ok(None);
    }
    if base_name(path).ends_with(".mmdb") || looks_like_mmdb(path)? {
        return Ok(mmdb::is_asn(path)?.then_some(AsnFormat::Mmdb));
    }
    // The country format only sizes the input.
    let mut lines = Lines::open(path, Format::RangeCsv)?;
    for _ in 0..2 {
        let line = match lines.next_line() {
            Ok(Some((_, line))) => line,
            Ok(None) => return Ok(None),
            // Binary or otherwise not text: not one of ours.
            Err(
                DbError::LineTooLong { .. }
                | DbError::Line {
                    problem: LineProblem::NotUtf8,
                    ..
                },
            ) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let tabs: Vec<&str> = line.split('\t').map(str::trim).collect();
        if (4..=5).contains(&tabs.len()) && is_range(tabs[0], tabs[1]) {
            return Ok(parse_asn(tabs[2]).map(|_| AsnFormat::Iptoasn));
        }
        let mut f = [""; 4];
        let n = split_fields(line, b',', &mut f);
        if (3..=4).contains(&n) && is_range(f[0], f[1]) {
            // A country range CSV has a code where this has a number.
            return Ok(parse_asn(f[2]).map(|_| AsnFormat::IpLocationDbCsv));
        }
        // Only a first line that is not data (a header) gets a second look.
        if parse_addr(f[0]).is_some() || parse_addr(tabs[0]).is_some() {
            return Ok(None);
        }
    }
    Ok(None)
}

fn is_range(start: &str, end: &str) -> bool {
    parse_addr(start).is_some() && parse_addr(end).is_some()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::{
        super::tests::{CSV, TSV, asn_mmdb, err},
        *,
    };
    use crate::geoip::{
        mmdb_writer::{V, Writer},
        tests::{file, gzip, testdata, v4},
    };

    #[test]
    fn detection_tells_asn_files_from_country_files() {
        let detect_in = |name: &str, content: &[u8]| {
            let (_dir, path) = file(name, content);
            detect(&path).unwrap()
        };
        assert_eq!(
            detect_in("a.csv", CSV.as_bytes()),
            Some(AsnFormat::IpLocationDbCsv)
        );
        assert_eq!(detect_in("a.tsv", TSV.as_bytes()), Some(AsnFormat::Iptoasn));
        assert_eq!(
            detect_in("a.gz", &gzip(TSV.as_bytes())),
            Some(AsnFormat::Iptoasn)
        );
        assert_eq!(
            detect_in("a.mmdb", &asn_mmdb(6, "GeoIP2-ASN")),
            Some(AsnFormat::Mmdb)
        );
        // Country files of every shape are not ASN files; American Samoa is no AS number.
        assert_eq!(detect_in("c.csv", b"1.0.0.0,1.0.0.255,AS\n"), None);
        assert_eq!(
            detect_in("c.csv", b"start,end,country\n1.0.0.0,1.0.0.255,AU\n"),
            None
        );
        assert_eq!(detect_in("geoip", b"16777216,16777471,AU\n"), None);
        assert_eq!(detect_in("ru.zone", b"1.2.3.0/24\n"), None);
        assert_eq!(detect_in("bin", &[0xffu8; 100]), None);
        let mut w = Writer::new(4);
        let de = w.value(&V::M(vec![("country_code", V::S("DE"))]));
        w.insert(v4("1.2.3.0"), 24, de);
        assert_eq!(
            detect_in("GeoLite2-Country.mmdb", &w.finish("GeoLite2-Country")),
            None
        );
        for rel in [
            "geo-whois-asn-country/geo-whois-asn-country-ipv4.slice.csv",
            "iptoasn-country/iptoasn-country-ipv4.mmdb",
            "maxmind-csv/GeoLite2-Country-Blocks-IPv4.csv",
            "rir/delegated-ripencc-extended-latest",
            "tor/geoip6",
            "cidr-dir/ipdeny",
        ] {
            assert_eq!(detect(&testdata(rel)).unwrap(), None, "{rel}");
        }
        // A country file given as an ASN database says what it is not.
        let e = err("geo.csv", b"1.0.0.0,1.0.0.255,AU\n");
        assert_eq!(
            e,
            "geo.csv: not an ASN database (neither an ASN MaxMind DB nor a start,end,asn CSV nor an \
             iptoasn TSV); give --asn-format if it is one"
        );
        assert!(detect(&PathBuf::from("/nonexistent/asn.csv")).is_err());
    }
}
