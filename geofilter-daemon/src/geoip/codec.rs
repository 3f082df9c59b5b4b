//! The packed form of a compiled database (`*.gfdb`): the encoder behind `geofilter db pack`
//! and the decoder behind the [embedded](super::embedded) database.
//!
//! # Packed form (`*.gfdb`), version 1
//!
//! The whole file is one gzip member. Inside, little-endian:
//!
//! ```text
//! "GFDB" 0x01                     magic and version
//! u32 n, n bytes                  metadata, JSON (see [`PackedMeta`])
//! IPv4 block, then IPv6 block:
//!   varint count
//!   count x varint gap            start minus the address after the previous range (first: 0)
//!   count x varint size           end minus start
//!   count x [u8; 2] country       ISO 3166-1 alpha-2, upper case
//! ```
//!
//! `varint` is unsigned LEB128 (up to 128 bits). Ranges are sorted, disjoint and non-adjacent
//! unless their countries differ (adjacent ranges of one country are merged). Columns instead of
//! rows let gzip find the repetition in each: the IPv4 and IPv6 world fit in about 3 MB.
//!
//! `geofilter db pack` (hidden) writes the file; `data/README.md` has the exact command.

use std::{
    io::{Read, Write},
    path::PathBuf,
};

use flate2::{Compression, read::GzDecoder, write::GzEncoder};
use geofilter_common::{CountryId, UNKNOWN_COUNTRY};
use serde::{Deserialize, Serialize};

use super::{
    CompiledDb, DbError, Prefix, Range, SourceFormat, SourceRanges, compile, prefixes::last_addr,
};
use crate::country::{code_str, parse_database_code};

const MAGIC: &[u8; 5] = b"GFDB\x01";

/// What a packed file says about its data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackedMeta {
    /// Short name of the dataset, e.g. `geo-whois-asn-country`.
    pub name: String,
    /// The upstream version, e.g. the npm package version `2.3.2026061719`.
    pub version: String,
    /// The day the upstream data was built, `YYYY-MM-DD` (UTC).
    pub built: String,
    /// Where the data came from.
    pub origin: String,
    /// Licence and required attribution.
    pub licence: String,
}

impl PackedMeta {
    /// How the embedded database is named in `status`, `db info` and messages:
    /// `embedded geo-whois-asn-country 2026-06-17`.
    pub fn label(&self) -> String {
        format!("embedded {} {}", self.name, self.built)
    }
}

/// Packs a compiled table: adjacent prefixes of one country become one range.
///
/// Unchecked; [`pack_checked`] is what writes files.
pub fn pack(db: &CompiledDb, meta: &PackedMeta) -> Vec<u8> {
    let mut raw = header(MAGIC, meta);
    for (table, bits) in [(&db.v4, 32), (&db.v6, 128)] {
        let ranges = merge_prefixes(table, bits);
        put_ranges(&mut raw, ranges.iter().map(|r| (r.start, r.end)));
        for r in &ranges {
            raw.extend_from_slice(code_str(r.country).as_bytes());
        }
    }
    gzip(&raw)
}

/// The start of a packed file (before compression): `magic`, then the metadata as
/// length-prefixed JSON. Shared with the ASN codec ([`crate::asn::codec`]).
pub(crate) fn header(magic: &[u8], meta: &PackedMeta) -> Vec<u8> {
    let mut raw = magic.to_vec();
    let json = serde_json::to_vec(meta).expect("metadata serialises");
    raw.extend_from_slice(&(json.len() as u32).to_le_bytes());
    raw.extend_from_slice(&json);
    raw
}

/// Writes sorted, disjoint ranges as a count and two columns: gaps, then sizes.
pub(crate) fn put_ranges(
    raw: &mut Vec<u8>,
    ranges: impl ExactSizeIterator<Item = (u128, u128)> + Clone,
) {
    put_varint(raw, ranges.len() as u128);
    let mut next = 0u128;
    for (start, end) in ranges.clone() {
        put_varint(raw, start - next);
        next = end.wrapping_add(1);
    }
    for (start, end) in ranges {
        put_varint(raw, end - start);
    }
}

/// One gzip member of `raw`, best compression.
pub(crate) fn gzip(raw: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(raw).expect("writing to memory");
    gz.finish().expect("writing to memory")
}

/// [`pack`], checked: the packed bytes must decode and compile back to the same table (prefix,
/// length and country of every entry) before anyone writes them to a file.
pub fn pack_checked(db: &CompiledDb, meta: &PackedMeta) -> Result<Vec<u8>, DbError> {
    let bytes = pack(db, meta);
    let Unpacked { v4, v6, .. } = unpack(&bytes)?;
    let again = compile(vec![SourceRanges {
        path: "packed".into(),
        format: SourceFormat::Embedded,
        v4,
        v6,
    }]);
    let same = |a: &[Prefix], b: &[Prefix]| {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                x.addr == y.addr && x.len == y.len && x.info.country == y.info.country
            })
    };
    if same(&db.v4, &again.v4) && same(&db.v6, &again.v6) {
        Ok(bytes)
    } else {
        Err(DbError::Invalid {
            path: "packed".into(),
            reason: "the packed table differs from the compiled one (a bug in pack)".into(),
        })
    }
}

/// The maximal ranges of one country that a sorted, disjoint prefix table covers.
fn merge_prefixes(table: &[Prefix], bits: u32) -> Vec<Range> {
    let mut out: Vec<Range> = Vec::new();
    for p in table {
        let end = last_addr(p.addr, p.len, bits);
        match out.last_mut() {
            Some(last)
                if last.country == p.info.country && last.end.checked_add(1) == Some(p.addr) =>
            {
                last.end = end;
            }
            _ => out.push(Range {
                start: p.addr,
                end,
                country: p.info.country,
            }),
        }
    }
    out
}

/// The largest packed file accepted after decompression (the world is about 10 MB).
const MAX_UNPACKED: u64 = 256 << 20;

/// The content of a packed file.
#[derive(Clone, Debug)]
pub struct Unpacked {
    pub meta: PackedMeta,
    pub v4: Vec<Range>,
    pub v6: Vec<Range>,
}

/// Reads only the metadata of a packed file (decompressing just its first bytes).
pub fn read_meta(bytes: &[u8]) -> Result<PackedMeta, DbError> {
    read_meta_of(bytes, MAGIC).map_err(invalid)
}

/// The metadata of a packed file with `magic` (decompressing just its first bytes).
pub(crate) fn read_meta_of(bytes: &[u8], magic: &[u8]) -> Result<PackedMeta, String> {
    let mut gz = GzDecoder::new(bytes);
    let mut head = vec![0u8; magic.len() + 4];
    gz.read_exact(&mut head)
        .map_err(|e| format!("not a gzip'd packed database: {e}"))?;
    if head[..magic.len()] != magic[..] {
        return Err(wrong_magic(magic));
    }
    let len = u32::from_le_bytes(head[magic.len()..].try_into().expect("4 bytes"));
    let mut json = vec![0u8; len.min(1 << 20) as usize];
    gz.read_exact(&mut json)
        .map_err(|e| format!("truncated metadata: {e}"))?;
    serde_json::from_slice(&json).map_err(|e| format!("bad metadata: {e}"))
}

fn wrong_magic(magic: &[u8]) -> String {
    let (name, version) = magic.split_at(magic.len() - 1);
    format!(
        "wrong magic or version (expected {} {})",
        String::from_utf8_lossy(name),
        version[0]
    )
}

fn invalid(reason: String) -> DbError {
    DbError::Invalid {
        path: PathBuf::from("embedded database"),
        reason,
    }
}

/// Reads a packed file: its metadata and the IPv4 and IPv6 ranges.
pub fn unpack(bytes: &[u8]) -> Result<Unpacked, DbError> {
    let raw = gunzip(bytes).map_err(invalid)?;
    let mut r = Cursor::new(&raw);
    let meta = r.header(MAGIC).map_err(invalid)?;
    let v4 = family(&mut r, u32::MAX.into()).map_err(|e| invalid(format!("IPv4 block: {e}")))?;
    let v6 = family(&mut r, u128::MAX).map_err(|e| invalid(format!("IPv6 block: {e}")))?;
    r.finish().map_err(invalid)?;
    Ok(Unpacked { meta, v4, v6 })
}

/// Decompresses a packed file, at most [`MAX_UNPACKED`] bytes.
pub(crate) fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut raw = Vec::new();
    GzDecoder::new(bytes)
        .take(MAX_UNPACKED + 1)
        .read_to_end(&mut raw)
        .map_err(|e| format!("not a gzip'd packed database: {e}"))?;
    if raw.len() as u64 > MAX_UNPACKED {
        return Err("larger than 256 MiB unpacked".into());
    }
    Ok(raw)
}

fn family(r: &mut Cursor, max: u128) -> Result<Vec<Range>, String> {
    // At least a gap, a size and two bytes of country per range.
    let mut out: Vec<Range> = r
        .ranges(max, 4)?
        .into_iter()
        .map(|(start, end)| Range {
            start,
            end,
            country: UNKNOWN_COUNTRY,
        })
        .collect();
    for (i, range) in out.iter_mut().enumerate() {
        let code = r.take(2)?;
        let country: Option<CountryId> = std::str::from_utf8(code)
            .ok()
            .and_then(parse_database_code)
            .filter(|&c| c != UNKNOWN_COUNTRY);
        range.country =
            country.ok_or_else(|| format!("range {i} has an invalid country {code:?}"))?;
    }
    Ok(out)
}

/// A read position in an unpacked file.
pub(crate) struct Cursor<'a> {
    raw: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(raw: &'a [u8]) -> Self {
        Self { raw, at: 0 }
    }

    /// The magic and the metadata written by [`header`].
    pub(crate) fn header(&mut self, magic: &[u8]) -> Result<PackedMeta, String> {
        if self.take(magic.len()).ok() != Some(magic) {
            return Err(wrong_magic(magic));
        }
        let len = u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"));
        serde_json::from_slice(self.take(len as usize)?).map_err(|e| format!("bad metadata: {e}"))
    }

    /// Ranges written by [`put_ranges`], each within `0..=max`; `min_bytes` is the least a range
    /// takes in the file with all its columns, so a count the rest of the file cannot hold is
    /// refused before anything is allocated for it.
    pub(crate) fn ranges(
        &mut self,
        max: u128,
        min_bytes: usize,
    ) -> Result<Vec<(u128, u128)>, String> {
        let count = self.varint()?;
        if count > ((self.raw.len() - self.at) / min_bytes) as u128 {
            return Err(format!("{count} ranges cannot fit in the file"));
        }
        let count = count as usize;
        let mut gaps = Vec::with_capacity(count);
        for _ in 0..count {
            gaps.push(self.varint()?);
        }
        // `None` once a range has ended at the very last address: nothing may follow.
        let mut next = Some(0u128);
        let mut out = Vec::with_capacity(count);
        for (i, gap) in gaps.into_iter().enumerate() {
            let size = self.varint()?;
            let start = next
                .and_then(|n| n.checked_add(gap))
                .filter(|&s| s <= max)
                .ok_or_else(|| format!("range {i} starts past the end of the family"))?;
            let end = start
                .checked_add(size)
                .filter(|&e| e <= max)
                .ok_or_else(|| format!("range {i} ends past the end of the family"))?;
            out.push((start, end));
            next = end.checked_add(1);
        }
        Ok(out)
    }

    /// Fails unless everything has been read.
    pub(crate) fn finish(&self) -> Result<(), String> {
        match self.raw.len() - self.at {
            0 => Ok(()),
            n => Err(format!("{n} bytes after the last block")),
        }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.raw.len())
            .ok_or("truncated")?;
        let out = &self.raw[self.at..end];
        self.at = end;
        Ok(out)
    }

    pub(crate) fn varint(&mut self) -> Result<u128, String> {
        let mut value = 0u128;
        for shift in (0..).step_by(7) {
            let byte = self.take(1)?[0];
            let bits = u128::from(byte & 0x7f);
            if shift > 126 || (shift == 126 && bits > 3) {
                return Err("varint longer than 128 bits".into());
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        unreachable!("the loop returns or fails")
    }
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u128) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::{
        super::tests::{cc, r},
        *,
    };
    use crate::geoip::Format;

    pub(crate) fn meta_for_test() -> PackedMeta {
        PackedMeta {
            name: "test".into(),
            version: "1".into(),
            built: "2026-01-02".into(),
            origin: "unit test".into(),
            licence: "none".into(),
        }
    }

    #[test]
    fn varints_round_trip_at_the_edges() {
        for v in [
            0,
            1,
            127,
            128,
            300,
            u32::MAX as u128,
            u64::MAX as u128 + 1,
            u128::MAX,
        ] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            let mut c = Cursor::new(&buf);
            assert_eq!(c.varint().unwrap(), v);
            assert_eq!(c.at, buf.len());
        }
        // 19 bytes of continuation: longer than 128 bits.
        let long = [0xffu8; 19];
        assert!(Cursor::new(&long).varint().is_err());
        assert!(Cursor::new(&[0x80]).varint().is_err(), "truncated");
    }

    #[test]
    fn pack_round_trips_a_compiled_table_exactly() {
        let sources = vec![SourceRanges {
            path: "t".into(),
            format: Format::RangeCsv.into(),
            v4: vec![
                r(0, 0, cc("DE")),
                r(1, 9, cc("DE")),
                r(10, 20, cc("FR")),
                r(15, 15, 0),
                r(30, u32::MAX as u128, cc("US")),
            ],
            v6: vec![
                r(5, u128::MAX - 1, cc("JP")),
                r(u128::MAX, u128::MAX, cc("KR")),
            ],
        }];
        let db = compile(sources.clone());
        let packed = pack(&db, &meta_for_test());
        let Unpacked { meta, v4, v6 } = unpack(&packed).unwrap();
        assert_eq!(meta, meta_for_test());
        assert_eq!(read_meta(&packed).unwrap(), meta);
        // Adjacent DE ranges merged, the unknown hole kept as a gap.
        assert_eq!(
            v4,
            [
                r(0, 9, cc("DE")),
                r(10, 14, cc("FR")),
                r(16, 20, cc("FR")),
                r(30, u32::MAX as u128, cc("US"))
            ]
        );
        assert_eq!(
            v6,
            [
                r(5, u128::MAX - 1, cc("JP")),
                r(u128::MAX, u128::MAX, cc("KR"))
            ]
        );
        let again = compile(vec![SourceRanges {
            path: "p".into(),
            format: SourceFormat::Embedded,
            v4,
            v6,
        }]);
        assert_eq!(again.v4, db.v4);
        assert_eq!(again.v6, db.v6);
    }

    #[test]
    fn corrupt_packed_files_are_refused() {
        let db = compile(vec![SourceRanges {
            path: "t".into(),
            format: Format::RangeCsv.into(),
            v4: vec![r(1, 2, cc("DE"))],
            v6: vec![],
        }]);
        let packed = pack(&db, &meta_for_test());
        let msg = |b: &[u8]| unpack(b).unwrap_err().to_string();
        assert!(
            msg(&packed[..packed.len() - 5]).contains("gzip"),
            "truncated"
        );
        assert!(msg(b"not gzip at all").contains("gzip"));
        let repack = |raw: &[u8]| {
            let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
            gz.write_all(raw).unwrap();
            gz.finish().unwrap()
        };
        let mut raw = Vec::new();
        GzDecoder::new(&packed[..]).read_to_end(&mut raw).unwrap();
        assert!(msg(&repack(b"GFDB\x02")).contains("magic"));
        let mut bad_cc = raw.clone();
        let n = bad_cc.len();
        // The last bytes: IPv4 country "DE", then the IPv6 count 0.
        bad_cc[n - 3..n - 1].copy_from_slice(b"QQ");
        assert!(msg(&repack(&bad_cc)).contains("invalid country"));
        let mut trailing = raw.clone();
        trailing.push(0);
        assert!(msg(&repack(&trailing)).contains("after the last block"));
        let mut huge = raw[..raw.len() - 1].to_vec();
        put_varint(&mut huge, u128::MAX);
        assert!(msg(&repack(&huge)).contains("cannot fit"));
    }
}
