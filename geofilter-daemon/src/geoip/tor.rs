//! Tor's `geoip` and `geoip6` files (IPFire location data; Debian's `tor-geoipdb` installs them as
//! `/usr/share/tor/geoip{,6}`).
//!
//! `#` comment lines, then IPv4 ranges as decimal integers (`16777216,16777471,AU`) in `geoip`
//! and IPv6 ranges as text (`2001:2::,2001:2:0:ffff:ffff:ffff:ffff:ffff,JP`) in `geoip6`. This is
//! the range CSV syntax, so the same reader serves; the format name only appears in messages.
//! IPFire marks ranges it cannot place with `??` and whole regions with `EU` / `AP`: unknown.

use std::path::Path;

use super::{DbError, Format, Ranges, range_csv};

pub(super) fn read(path: &Path, out: Ranges) -> Result<Ranges, DbError> {
    range_csv::read(path, Format::Tor, out)
}

#[cfg(test)]
mod tests {
    use geofilter_common::UNKNOWN_COUNTRY;

    use super::super::{
        Format, compile, read_source,
        tests::{cc, file, gzip, ip, r, testdata, v6},
    };

    #[test]
    fn geoip_and_geoip6() {
        let s = read_source(&testdata("tor/geoip"), None).unwrap();
        assert_eq!(s.format, Format::Tor);
        assert!(s.v6.is_empty());
        assert_eq!(s.v4.len(), 9);
        assert_eq!(s.v4[0], r(16777216, 16777471, cc("AU")));
        // `EU`, `??` and `AP` are unknown.
        assert_eq!(
            s.v4[4..7].iter().map(|r| r.country).collect::<Vec<_>>(),
            [UNKNOWN_COUNTRY; 3]
        );
        let s6 = read_source(&testdata("tor/geoip6"), None).unwrap();
        assert_eq!(s6.format, Format::Tor);
        assert_eq!(
            s6.v6[0],
            r(
                v6("2001:200::"),
                v6("2001:200:ffff:ffff:ffff:ffff:ffff:ffff"),
                cc("JP")
            )
        );
        assert_eq!(s6.v6[3].country, UNKNOWN_COUNTRY);
        let db = compile(vec![s.clone(), s6]);
        assert_eq!(db.lookup(ip("1.0.0.1")).unwrap().info.country, cc("AU"));
        assert!(db.lookup(ip("2.0.0.1")).is_none());
        assert!(db.lookup(ip("255.255.255.255")).is_none());
        assert_eq!(db.lookup(ip("2c0f:fff0::1")).unwrap().info.source, 1);
        // Gzip'd copy: the name still says Tor.
        let content = std::fs::read(testdata("tor/geoip")).unwrap();
        let (_dir, path) = file("geoip.gz", &gzip(&content));
        let z = read_source(&path, None).unwrap();
        assert_eq!((z.format, z.v4), (Format::Tor.into(), s.v4));
        // Two letters ISO 3166-1 has not assigned (Debian's geoip6 has `OS`): unknown, not an
        // error; a malformed code still is, with file and line.
        let (_dir, path) = file(
            "geoip6",
            b"2a14:1c3:1000::,2a14:1c3:17ff::,OS\n::1,::1,DE\n",
        );
        let s = read_source(&path, None).unwrap();
        assert_eq!(s.v6[0].country, UNKNOWN_COUNTRY);
        let (_dir, path) = file("geoip6", b"::1,::1,DE\n::2,::2,O5\n");
        let e = read_source(&path, None).unwrap_err().to_string();
        assert!(
            e.ends_with(":2: invalid country code \"O5\" in \"::2,::2,O5\""),
            "{e}"
        );
        // Errors name the format that was expected.
        let mut long = content.clone();
        long.extend(std::iter::repeat_n(b'1', 100_000));
        let (_dir, path) = file("geoip", &long);
        let e = read_source(&path, None).unwrap_err().to_string();
        assert!(
            e.ends_with(":12: line is longer than 65536 bytes; is this really a tor file?"),
            "{e}"
        );
    }
}
