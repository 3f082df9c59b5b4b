//! MaxMind GeoLite2/GeoIP2 Country (or City) CSV.
//!
//! A `*-Blocks-IPv4.csv` or `*-Blocks-IPv6.csv` file maps networks to GeoNames ids
//! (`network,geoname_id,registered_country_geoname_id,...`); the `*-Locations-en.csv` file beside
//! it maps ids to `country_iso_code`. An empty `geoname_id` falls back to
//! `registered_country_geoname_id` (as the official readers do); with both empty (anonymous
//! proxies, satellite providers) the network is unknown. Columns are found by their header names,
//! so Country and City files both work. Given the directory of an unpacked
//! `GeoLite2-Country-CSV_*.zip`, both Blocks files in it are read.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use geofilter_common::{CountryId, UNKNOWN_COUNTRY};

use super::{
    DbError, Format, LineProblem, Ranges,
    text::{Lines, base_name, line_error, parse_network, split_fields},
};
use crate::country::CodeReader;

/// Most columns looked at in a header.
const COLUMNS: usize = 16;

pub(super) fn read(path: &Path, mut out: Ranges) -> Result<Ranges, DbError> {
    if path.is_dir() {
        let blocks = blocks_files(path)?;
        if blocks.is_empty() {
            return Err(DbError::Invalid {
                path: path.to_owned(),
                reason: "no *-Blocks-IPv4.csv or *-Blocks-IPv6.csv file in this directory".into(),
            });
        }
        for b in blocks {
            read_blocks(&b, &mut out)?;
        }
    } else {
        read_blocks(path, &mut out)?;
    }
    Ok(out)
}

/// The Blocks files of a directory, IPv4 first.
pub(super) fn blocks_files(dir: &Path) -> Result<Vec<PathBuf>, DbError> {
    let mut found: Vec<PathBuf> = super::text::list_dir(dir)?
        .into_iter()
        .filter(|p| {
            let n = base_name(p);
            n.ends_with("-blocks-ipv4.csv") || n.ends_with("-blocks-ipv6.csv")
        })
        .collect();
    found.sort_by_key(|p| base_name(p).ends_with("ipv6.csv"));
    Ok(found)
}

/// The Locations file for a Blocks file: the same name with `Blocks-IPv4` replaced by
/// `Locations-en`, else any `*-Locations-en.csv`, else any `*-Locations-*.csv` beside it.
fn locations_file(blocks: &Path) -> Result<PathBuf, DbError> {
    let dir = match blocks.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = blocks
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let lower = name.to_ascii_lowercase();
    for family in ["-blocks-ipv4", "-blocks-ipv6"] {
        if let Some(at) = lower.find(family) {
            for ext in [".csv", ".csv.gz"] {
                let candidate = dir.join(format!("{}-Locations-en{ext}", &name[..at]));
                if candidate.is_file() {
                    return Ok(candidate);
                }
            }
        }
    }
    let all = super::text::list_dir(dir)?;
    let pick = |pattern: &str| {
        all.iter()
            .find(|p| base_name(p).contains(pattern) && base_name(p).ends_with(".csv"))
            .cloned()
    };
    pick("-locations-en")
        .or_else(|| pick("-locations-"))
        .ok_or_else(|| DbError::Invalid {
            path: blocks.to_owned(),
            reason: format!(
                "MaxMind CSV needs its *-Locations-en.csv file beside it, none found in {}",
                dir.display()
            ),
        })
}

/// Finds the named columns in a header line, or explains which is missing.
fn columns<const K: usize>(
    path: &Path,
    no: u64,
    line: &str,
    names: [&str; K],
) -> Result<[usize; K], DbError> {
    let mut f = [""; COLUMNS];
    let n = split_fields(line, b',', &mut f).min(COLUMNS);
    let mut at = [0; K];
    for (slot, name) in at.iter_mut().zip(names) {
        *slot = f[..n].iter().position(|c| *c == name).ok_or_else(|| {
            line_error(
                path,
                no,
                LineProblem::Other(format!("header has no {name:?} column")),
                line,
            )
        })?;
    }
    Ok(at)
}

/// geoname_id → country, from a Locations file.
fn read_locations(path: &Path) -> Result<HashMap<u32, CountryId>, DbError> {
    let mut lines = Lines::open(path, Format::MaxmindCsv)?;
    let mut codes = CodeReader::default();
    let Some((no, header)) = lines.next_line()? else {
        return Err(DbError::Empty {
            path: path.to_owned(),
            format: Format::MaxmindCsv,
        });
    };
    let [id_at, code_at] = columns(path, no, header, ["geoname_id", "country_iso_code"])?;
    let mut map = HashMap::new();
    while let Some((no, line)) = lines.next_line()? {
        let err = |problem| line_error(path, no, problem, line);
        let mut f = [""; COLUMNS];
        let n = split_fields(line, b',', &mut f);
        if n <= id_at.max(code_at) {
            return Err(err(LineProblem::Fields {
                expected: "the header's columns",
                found: n,
            }));
        }
        let id = f[id_at]
            .parse::<u32>()
            .map_err(|_| err(LineProblem::Other(format!("bad geoname_id {:?}", f[id_at]))))?;
        let country = codes
            .parse(f[code_at], || format!("line {no}"))
            .ok_or_else(|| {
                err(LineProblem::Country {
                    value: f[code_at].to_owned(),
                })
            })?;
        map.insert(id, country);
    }
    codes.warn(path);
    Ok(map)
}

fn read_blocks(path: &Path, out: &mut Ranges) -> Result<(), DbError> {
    let locations_path = locations_file(path)?;
    let locations = read_locations(&locations_path)?;
    let mut lines = Lines::open(path, Format::MaxmindCsv)?;
    let Some((no, header)) = lines.next_line()? else {
        return Ok(());
    };
    if !header.starts_with("network,") {
        return Err(line_error(
            path,
            no,
            LineProblem::Other(
                "expected the MaxMind header \"network,geoname_id,registered_country_geoname_id,...\""
                    .into(),
            ),
            header,
        ));
    }
    let [net_at, id_at, reg_at] = columns(
        path,
        no,
        header,
        ["network", "geoname_id", "registered_country_geoname_id"],
    )?;
    let need = net_at.max(id_at).max(reg_at);
    while let Some((no, line)) = lines.next_line()? {
        let err = |problem| line_error(path, no, problem, line);
        let mut f = [""; COLUMNS];
        let n = split_fields(line, b',', &mut f);
        if n <= need {
            return Err(err(LineProblem::Fields {
                expected: "the header's columns",
                found: n,
            }));
        }
        let (v6, start, end) = parse_network(f[net_at]).ok_or_else(|| {
            err(LineProblem::Network {
                value: f[net_at].to_owned(),
            })
        })?;
        let id = if f[id_at].is_empty() {
            f[reg_at]
        } else {
            f[id_at]
        };
        let country = if id.is_empty() {
            UNKNOWN_COUNTRY
        } else {
            let known = id.parse::<u32>().ok().and_then(|i| locations.get(&i));
            *known.ok_or_else(|| {
                err(LineProblem::Other(format!(
                    "geoname_id {id:?} is not in {}",
                    locations_path.display()
                )))
            })?
        };
        if v6 {
            out.push_v6(start, end, country)
        } else {
            out.push_v4(start, end, country)
        }
        .map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{
        super::{
            DbError, Format, read_source,
            tests::{cc, file, r, testdata, v4, v6},
        },
        *,
    };

    #[test]
    fn geolite2_country_fixture() {
        let dir = testdata("maxmind-csv");
        let s = read_source(&dir.join("GeoLite2-Country-Blocks-IPv4.csv"), None).unwrap();
        assert_eq!(s.format, Format::MaxmindCsv);
        assert_eq!(
            s.v4,
            [
                r(v4("1.0.0.0"), v4("1.0.0.255"), cc("AU")),
                r(v4("1.0.1.0"), v4("1.0.1.255"), cc("CN")),
                r(v4("1.0.2.0"), v4("1.0.3.255"), cc("CN")),
                // geoname_id empty: registered country.
                r(v4("2.56.8.0"), v4("2.56.11.255"), cc("NL")),
                // Anonymous proxy without any country.
                r(v4("5.79.0.0"), v4("5.79.0.255"), UNKNOWN_COUNTRY),
                // A continent-level location (Europe) has no country code.
                r(v4("31.13.64.0"), v4("31.13.64.255"), UNKNOWN_COUNTRY),
                r(v4("223.255.255.0"), v4("223.255.255.255"), cc("AU")),
            ]
        );
        let s = read_source(&dir.join("GeoLite2-Country-Blocks-IPv6.csv.gz"), None).unwrap();
        assert_eq!(s.format, Format::MaxmindCsv);
        assert!(s.v4.is_empty());
        assert_eq!(
            s.v6,
            [
                r(
                    v6("2001:200::"),
                    v6("2001:200:ffff:ffff:ffff:ffff:ffff:ffff"),
                    cc("JP")
                ),
                r(
                    v6("2a02:ff0::"),
                    v6("2a02:ff0:ffff:ffff:ffff:ffff:ffff:ffff"),
                    cc("XK")
                ),
            ]
        );
        // The directory: both files.
        let s = read_source(&dir, Some(Format::MaxmindCsv)).unwrap();
        assert_eq!((s.v4.len(), s.v6.len()), (7, 2));
        let s = read_source(&dir, None).unwrap();
        assert_eq!(s.format, Format::MaxmindCsv);
    }

    fn err_of(blocks: &str, locations: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let b = dir.path().join("GeoIP2-Country-Blocks-IPv4.csv");
        std::fs::write(&b, blocks).unwrap();
        if !locations.is_empty() {
            std::fs::write(
                dir.path().join("GeoIP2-Country-Locations-en.csv"),
                locations,
            )
            .unwrap();
        }
        let e: DbError = read_source(&b, None).unwrap_err();
        e.to_string()
            .replace(&dir.path().display().to_string(), "DIR")
    }

    #[test]
    fn errors() {
        let loc = "geoname_id,locale_code,continent_code,continent_name,country_iso_code,country_name\n\
                   2921044,en,EU,Europe,DE,Germany\n";
        let head =
            "network,geoname_id,registered_country_geoname_id,represented_country_geoname_id\n";
        assert_eq!(
            err_of(
                &format!("{head}1.2.3.0/24,2921044,,\n1.2.4.0/24,123,,\n"),
                loc
            ),
            "DIR/GeoIP2-Country-Blocks-IPv4.csv:3: geoname_id \"123\" is not in \
             DIR/GeoIP2-Country-Locations-en.csv in \"1.2.4.0/24,123,,\""
        );
        assert_eq!(
            err_of(&format!("{head}1.2.3.0/33,2921044,,\n"), loc),
            "DIR/GeoIP2-Country-Blocks-IPv4.csv:2: bad network \"1.2.3.0/33\" in \"1.2.3.0/33,2921044,,\""
        );
        assert_eq!(
            err_of("1.2.3.0/24,2921044,,\n", loc),
            "DIR/GeoIP2-Country-Blocks-IPv4.csv:1: expected the MaxMind header \
             \"network,geoname_id,registered_country_geoname_id,...\" in \"1.2.3.0/24,2921044,,\""
        );
        assert_eq!(
            err_of(&format!("{head}1.2.3.0/24,2921044,,\n"), ""),
            "DIR/GeoIP2-Country-Blocks-IPv4.csv: MaxMind CSV needs its *-Locations-en.csv file \
             beside it, none found in DIR"
        );
        assert_eq!(
            err_of(
                &format!("{head}1.2.3.0/24,2921044,,\n"),
                "geoname_id,country_iso_code\n1,Q1\n"
            ),
            "DIR/GeoIP2-Country-Locations-en.csv:2: invalid country code \"Q1\" in \"1,Q1\""
        );
        let (_dir, path) = file("x-Blocks-IPv4.csv", b"network,geoname_id\n");
        assert!(read_source(&path, None).is_err());
    }
}
