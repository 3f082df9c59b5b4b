//! The ASN database compiled into the binary, used when no `--asn-db` is given, so `block
//! AS13335` works with no download.
//!
//! The data is `@ip-location-db/asn` (IPv4 and IPv6; CC BY 4.0, data by RouteViews, DB-IP and
//! the NRO; see `data/README.md` and the top-level `NOTICE`), **already resolved**: the file
//! holds the disjoint, merged ranges and the organisation names that [`super::load`] produced
//! from the package's CSV files, so loading it only decodes. A test checks that it decodes to
//! exactly what the CSV files load to, against the npm package when it is reachable.
//!
//! The packed form is in [`super::codec`]; `geofilter db pack` (hidden) writes it,
//! `data/README.md` has the exact command.

use std::{path::PathBuf, sync::OnceLock};

use super::{
    AsnDb, AsnError, AsnFormat, AsnSource, AsnSourceSummary,
    codec::{Unpacked, read_meta, unpack},
};
use crate::geoip::codec::PackedMeta;

/// The dataset name in the packed metadata.
pub const NAME: &str = "asn";
/// The npm package version it was packed from.
pub const VERSION: &str = "2.3.2026061719";
/// The day the upstream data was built.
pub const BUILT: &str = "2026-06-17";

/// The packed database compiled into the binary.
static EMBEDDED: &[u8] = include_bytes!("../../data/asn.gfasn");

/// The metadata of the embedded database.
///
/// # Panics
/// When the embedded file is corrupt: that is a build defect, caught by the unit tests.
pub fn meta() -> &'static PackedMeta {
    static META: OnceLock<PackedMeta> = OnceLock::new();
    META.get_or_init(|| {
        read_meta(EMBEDDED).expect("the embedded ASN database is valid (checked by unit tests)")
    })
}

/// The size of the embedded (compressed) database in bytes.
pub fn embedded_size() -> usize {
    EMBEDDED.len()
}

/// The embedded database as one source (for the reference lookup and for merging with files).
pub fn source() -> Result<AsnSource, AsnError> {
    let Unpacked {
        meta,
        v4,
        v6,
        names,
    } = unpack(EMBEDDED)?;
    Ok(AsnSource {
        path: PathBuf::from(meta.label()),
        // What the packed table was compiled from.
        format: AsnFormat::IpLocationDbCsv,
        v4,
        v6,
        names,
    })
}

/// Decodes the embedded database. The packed ranges are already disjoint and merged, so they
/// are the table as they are.
pub fn load() -> Result<AsnDb, AsnError> {
    let started = std::time::Instant::now();
    let source = source()?;
    let db = AsnDb {
        sources: vec![AsnSourceSummary::of(&source, true)],
        v4: source.v4,
        v6: source.v6,
        names: source.names,
    };
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        ranges_v4 = db.v4.len(),
        ranges_v6 = db.v6.len(),
        "embedded ASN database decoded"
    );
    Ok(db)
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use crate::geoip::tests::ip;

    #[test]
    fn the_embedded_database_is_world_sized_and_right_where_it_matters() {
        let meta = embedded::meta();
        assert_eq!(
            (
                meta.name.as_str(),
                meta.version.as_str(),
                meta.built.as_str()
            ),
            (embedded::NAME, embedded::VERSION, embedded::BUILT)
        );
        for credit in ["CC BY 4.0", "RouteViews", "DB-IP", "NRO"] {
            assert!(meta.licence.contains(credit), "{credit}: {meta:?}");
        }
        let db = embedded::load().unwrap();
        assert!(
            db.v4.len() > 300_000 && db.v6.len() > 50_000,
            "{} {}",
            db.v4.len(),
            db.v6.len()
        );
        assert!(db.asns() > 80_000, "{}", db.asns());
        assert_eq!(db.lookup(ip("1.1.1.1")), Some(13335));
        assert!(
            db.name(13335).unwrap().contains("Cloudflare"),
            "{:?}",
            db.name(13335)
        );
        assert_eq!(db.lookup(ip("8.8.8.8")), Some(15169));
        assert_eq!(db.lookup(ip("2606:4700:4700::1111")), Some(13335));
        assert_eq!(db.lookup(ip("10.0.0.1")), None, "private space has no AS");
        assert!(db.sources[0].embedded);
        // Sorted, disjoint, merged, and every range has an AS.
        for table in [&db.v4, &db.v6] {
            assert!(table.iter().all(|r| r.start <= r.end && r.asn != NO_ASN));
            assert!(
                table.windows(2).all(|w| w[0].end < w[1].start
                    && !(w[0].asn == w[1].asn && w[0].end + 1 == w[1].start))
            );
        }
        assert!(db.v4.last().unwrap().end <= u32::MAX.into());
    }

    /// Decode time and memory of the embedded database, for the report:
    /// `cargo test --release -p geofilter-daemon --lib asn::embedded::tests::measure -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check: run it alone, in release"]
    fn measure_embedded_load() {
        fn resident() -> usize {
            let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
            let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
            pages * 4096
        }
        let before = resident();
        let mut times = Vec::new();
        let mut db = AsnDb::default();
        for _ in 0..5 {
            drop(db);
            let t = std::time::Instant::now();
            db = embedded::load().unwrap();
            times.push(t.elapsed());
        }
        let after = resident();
        let ranges = (db.v4.capacity() + db.v6.capacity()) * std::mem::size_of::<AsnRange>();
        // BTreeMap: about the key and value per entry plus node overhead (11 entries per node).
        let names: usize = db.names.values().map(String::capacity).sum::<usize>()
            + db.names.len() * (std::mem::size_of::<u32>() + std::mem::size_of::<String>()) * 12
                / 11;
        times.sort();
        eprintln!(
            "embedded ASN database: {} bytes packed; decoded in {:?} (best of 5, median {:?}); \
             {} + {} ranges = {:.1} MiB, {} names = {:.1} MiB; resident set grew {:.1} MiB",
            embedded::embedded_size(),
            times[0],
            times[2],
            db.v4.len(),
            db.v6.len(),
            ranges as f64 / (1 << 20) as f64,
            db.names.len(),
            names as f64 / (1 << 20) as f64,
            (after.saturating_sub(before)) as f64 / (1 << 20) as f64,
        );
    }
}
