//! The packed form of an ASN table (`*.gfasn`): the encoder behind `geofilter db pack` (given
//! ASN files) and the decoder behind the [embedded](super::embedded) ASN database.
//!
//! # Packed form (`*.gfasn`), version 1
//!
//! One gzip member; inside, little-endian, the header and range columns of the country form
//! ([`crate::geoip::codec`]):
//!
//! ```text
//! "GFAS" 0x01                     magic and version
//! u32 n, n bytes                  metadata, JSON (PackedMeta)
//! IPv4 block, then IPv6 block:
//!   varint count
//!   count x varint gap            start minus the address after the previous range (first: 0)
//!   count x varint size           end minus start
//!   count x varint asn            never 0
//! names:
//!   varint count
//!   count x varint delta          AS number minus the previous one (ascending; first: itself)
//!   count x varint length         bytes of the name
//!   the names, UTF-8, back to back
//! ```
//!
//! Columns let gzip find the repetition in each. The AS column is the number itself: indexing a
//! table ordered by frequency saves about 1% of the file and costs a table.

use std::collections::BTreeMap;

use super::{AsnDb, AsnError, AsnRange, NO_ASN};
use crate::geoip::codec::{Cursor, PackedMeta, gunzip, gzip, header, put_ranges, put_varint};

const MAGIC: &[u8; 5] = b"GFAS\x01";

/// The content of a packed file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unpacked {
    pub meta: PackedMeta,
    pub v4: Vec<AsnRange>,
    pub v6: Vec<AsnRange>,
    pub names: BTreeMap<u32, String>,
}

/// Packs a resolved table. Unchecked; [`pack_checked`] is what writes files.
pub fn pack(db: &AsnDb, meta: &PackedMeta) -> Vec<u8> {
    let mut raw = header(MAGIC, meta);
    for table in [&db.v4, &db.v6] {
        put_ranges(&mut raw, table.iter().map(|r| (r.start, r.end)));
        for r in table {
            put_varint(&mut raw, r.asn.into());
        }
    }
    put_varint(&mut raw, db.names.len() as u128);
    let mut previous = 0;
    for &asn in db.names.keys() {
        put_varint(&mut raw, (asn - previous).into());
        previous = asn;
    }
    for name in db.names.values() {
        put_varint(&mut raw, name.len() as u128);
    }
    for name in db.names.values() {
        raw.extend_from_slice(name.as_bytes());
    }
    gzip(&raw)
}

/// [`pack`], checked: the packed bytes must decode to exactly the table (every range, AS number
/// and name) before anyone writes them to a file.
pub fn pack_checked(db: &AsnDb, meta: &PackedMeta) -> Result<Vec<u8>, AsnError> {
    let bytes = pack(db, meta);
    let again = unpack(&bytes)?;
    if again.v4 == db.v4 && again.v6 == db.v6 && again.names == db.names {
        Ok(bytes)
    } else {
        Err(AsnError::Packed {
            reason: "the packed table differs from the compiled one (a bug in pack)".into(),
        })
    }
}

/// The metadata of a packed file (decompressing just its first bytes).
pub fn read_meta(bytes: &[u8]) -> Result<PackedMeta, AsnError> {
    crate::geoip::codec::read_meta_of(bytes, MAGIC).map_err(|reason| AsnError::Packed { reason })
}

/// Reads a packed file: metadata, ranges and names.
pub fn unpack(bytes: &[u8]) -> Result<Unpacked, AsnError> {
    let bad = |reason| AsnError::Packed { reason };
    let raw = gunzip(bytes).map_err(bad)?;
    let mut r = Cursor::new(&raw);
    let meta = r.header(MAGIC).map_err(bad)?;
    let v4 = family(&mut r, u32::MAX.into()).map_err(|e| bad(format!("IPv4 block: {e}")))?;
    let v6 = family(&mut r, u128::MAX).map_err(|e| bad(format!("IPv6 block: {e}")))?;
    let names = names(&mut r).map_err(|e| bad(format!("names: {e}")))?;
    r.finish().map_err(bad)?;
    Ok(Unpacked {
        meta,
        v4,
        v6,
        names,
    })
}

fn family(r: &mut Cursor, max: u128) -> Result<Vec<AsnRange>, String> {
    // At least a gap, a size and an AS number byte per range.
    let ranges = r.ranges(max, 3)?;
    let mut out = Vec::with_capacity(ranges.len());
    for (i, (start, end)) in ranges.into_iter().enumerate() {
        let asn = u32::try_from(r.varint()?)
            .ok()
            .filter(|&a| a != NO_ASN)
            .ok_or_else(|| format!("range {i} has an invalid AS number"))?;
        out.push(AsnRange { start, end, asn });
    }
    Ok(out)
}

fn names(r: &mut Cursor) -> Result<BTreeMap<u32, String>, String> {
    let count = r.varint()?;
    let mut asns = Vec::new();
    let mut asn = 0u32;
    for i in 0..count {
        let delta = r.varint()?;
        asn = u32::try_from(delta)
            .ok()
            .and_then(|d| asn.checked_add(d))
            .filter(|&a| i == 0 || a > asns.last().copied().unwrap_or(0))
            .ok_or_else(|| format!("name {i} has an invalid AS number"))?;
        asns.push(asn);
    }
    let mut lengths = Vec::with_capacity(asns.len());
    for _ in &asns {
        lengths.push(usize::try_from(r.varint()?).map_err(|_| "name too long")?);
    }
    let mut out = BTreeMap::new();
    for (asn, len) in asns.into_iter().zip(lengths) {
        let name = std::str::from_utf8(r.take(len)?).map_err(|_| format!("AS{asn}: not UTF-8"))?;
        out.insert(asn, name.to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geoip::codec::tests::meta_for_test as meta;

    fn r(start: u128, end: u128, asn: u32) -> AsnRange {
        AsnRange { start, end, asn }
    }

    #[test]
    fn round_trips_exactly_at_the_edges() {
        let db = AsnDb {
            sources: Vec::new(),
            v4: vec![r(0, 0, 1), r(1, 9, 2), r(20, u32::MAX as u128, u32::MAX)],
            v6: vec![r(5, u128::MAX - 1, 13335), r(u128::MAX, u128::MAX, 7)],
            names: [
                (1, "One".to_owned()),
                (13335, "Cloudflare, Inc.".to_owned()),
            ]
            .into_iter()
            .chain([(u32::MAX, "LLC \"Ü\"".to_owned())])
            .collect(),
        };
        let bytes = pack_checked(&db, &meta()).unwrap();
        let u = unpack(&bytes).unwrap();
        assert_eq!(u.meta, meta());
        assert_eq!(read_meta(&bytes).unwrap(), meta());
        assert_eq!((u.v4, u.v6, u.names), (db.v4, db.v6, db.names));
    }

    #[test]
    fn corrupt_files_are_refused() {
        let db = AsnDb {
            v4: vec![r(1, 2, 64500)],
            names: [(64500, "x".to_owned())].into_iter().collect(),
            ..AsnDb::default()
        };
        let packed = pack(&db, &meta());
        let msg = |b: &[u8]| unpack(b).unwrap_err().to_string();
        assert!(
            msg(&packed[..packed.len() - 5]).contains("gzip"),
            "truncated"
        );
        let raw = gunzip(&packed).unwrap();
        // The country form is not an ASN form.
        assert!(msg(&gzip(b"GFDB\x01")).contains("expected GFAS 1"));
        let mut trailing = raw.clone();
        trailing.push(0);
        assert!(msg(&gzip(&trailing)).contains("after the last block"));
        // The last bytes: the name's length 1 and "x"; a longer length runs past the end.
        let mut long = raw.clone();
        let n = long.len();
        long[n - 2] = 5;
        assert!(
            msg(&gzip(&long)).contains("names: truncated"),
            "{}",
            msg(&gzip(&long))
        );
        let as0 = AsnDb {
            v4: vec![r(1, 2, NO_ASN)],
            ..AsnDb::default()
        };
        assert!(msg(&pack(&as0, &meta())).contains("range 0 has an invalid AS number"));
    }
}
