//! ASN MaxMind DB files: GeoLite2-ASN / GeoIP2-ASN and ip-location-db's `asn-mmdb`, whose
//! records are `{autonomous_system_number: u32, autonomous_system_organization: string}`.
//!
//! Read like the country MMDBs ([`crate::geoip`]'s reader): the whole file in memory (gzip
//! allowed), the search tree checked to be a tree before the crate's network iterator walks it,
//! IPv4 of an IPv6 tree read once as IPv4. A network whose record has no number has no AS.

use std::{collections::HashMap, path::Path};

use ipnetwork::IpNetwork;
use maxminddb::{LookupResult, MaxMindDbError, PathElement, Reader, WithinOptions};

use super::{AsnError, NO_ASN, types::AsnRanges};
use crate::geoip::{DbError, Format, LineProblem, input, mmdb::tree::check_tree, text};

const NUMBER: &[PathElement<'static>] = &[PathElement::Key("autonomous_system_number")];
const ORGANISATION: &[PathElement<'static>] = &[PathElement::Key("autonomous_system_organization")];

fn mmdb_error(path: &Path) -> impl Fn(MaxMindDbError) -> AsnError + '_ {
    move |source| {
        AsnError::Db(DbError::Mmdb {
            path: path.to_owned(),
            source,
        })
    }
}

pub(super) fn read(path: &Path, mut out: AsnRanges) -> Result<AsnRanges, AsnError> {
    let mmdb_err = mmdb_error(path);
    let buf = input::read_all(path, Format::Mmdb)?;
    let reader = Reader::from_source(buf.as_slice()).map_err(&mmdb_err)?;
    check_tree(&buf, reader.metadata(), path)?;
    // A few hundred thousand networks share about a hundred thousand records: decode each once.
    let mut by_offset: HashMap<usize, u32> = HashMap::new();
    for item in reader
        .networks(WithinOptions::default())
        .map_err(&mmdb_err)?
    {
        let item = item.map_err(&mmdb_err)?;
        let network = item.network().map_err(&mmdb_err)?;
        let Some(offset) = item.offset() else {
            continue;
        };
        let record_err = |problem| {
            AsnError::Db(DbError::Record {
                path: path.to_owned(),
                record: format!("network {network}"),
                problem,
            })
        };
        let asn = match by_offset.get(&offset) {
            Some(&asn) => asn,
            None => {
                let (asn, name) = record(&item)
                    .map_err(|e| record_err(LineProblem::Other(format!("bad ASN record: {e}"))))?;
                if let Some(name) = name {
                    out.name(asn, name);
                }
                by_offset.insert(offset, asn);
                asn
            }
        };
        let (v6, start, end) = match network {
            IpNetwork::V4(n) => (
                false,
                u32::from(n.network()).into(),
                u32::from(n.broadcast()).into(),
            ),
            IpNetwork::V6(n) => {
                let start = u128::from(n.network());
                (true, start, start | text::host_mask(n.prefix().into(), 128))
            }
        };
        out.push(v6, start, end, asn).map_err(record_err)?;
    }
    Ok(out)
}

/// The AS number ([`NO_ASN`] when absent) and organisation of one record.
fn record<'a, S: AsRef<[u8]>>(
    item: &LookupResult<'a, S>,
) -> Result<(u32, Option<&'a str>), MaxMindDbError> {
    let asn = item.decode_path::<u32>(NUMBER)?.unwrap_or(NO_ASN);
    let name = item.decode_path::<&str>(ORGANISATION)?;
    Ok((asn, name))
}

/// Whether an MMDB file is an ASN database: its metadata's `database_type` says `ASN`
/// (GeoLite2-ASN, GeoIP2-ASN, ip-location-db's `asn`), or its first record has an
/// `autonomous_system_number`.
pub(super) fn is_asn(path: &Path) -> Result<bool, AsnError> {
    let mmdb_err = mmdb_error(path);
    let buf = input::read_all(path, Format::Mmdb)?;
    let reader = Reader::from_source(buf.as_slice()).map_err(&mmdb_err)?;
    if reader
        .metadata()
        .database_type
        .to_ascii_lowercase()
        .contains("asn")
    {
        return Ok(true);
    }
    check_tree(&buf, reader.metadata(), path)?;
    for item in reader
        .networks(WithinOptions::default())
        .map_err(&mmdb_err)?
    {
        let item = item.map_err(&mmdb_err)?;
        if item.offset().is_some() {
            return Ok(matches!(item.decode_path::<u32>(NUMBER), Ok(Some(_))));
        }
    }
    Ok(false)
}
