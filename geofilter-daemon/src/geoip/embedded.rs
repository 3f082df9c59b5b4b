//! The country database compiled into the binary, used when no `--db` is given.
//!
//! The data is `@ip-location-db/geo-whois-asn-country` (IPv4 and IPv6; CC BY 4.0 by the NRO, see
//! `data/README.md` and the top-level `NOTICE`), **already compiled**: the file holds the disjoint,
//! merged country ranges that [`super::compile()`] produced from the package's CSV files, so
//! loading it skips CSV parsing and overlap resolution and only splits ranges into prefixes.
//! Compiling the packed ranges again gives exactly the table of the original CSV files (a test
//! checks this against the npm package when it is reachable).
//!
//! The packed form and its encoder and decoder are in [`super::codec`]; `geofilter db pack`
//! (hidden) writes the file, `data/README.md` has the exact command.

use std::{path::PathBuf, sync::OnceLock};

use super::{
    CompiledDb, DbError, SourceFormat, SourceRanges,
    codec::{PackedMeta, Unpacked, read_meta, unpack},
    compile,
};

/// The packed database compiled into the binary.
static EMBEDDED: &[u8] = include_bytes!("../../data/geo-whois-asn-country.gfdb");

/// The metadata of the embedded database.
///
/// # Panics
/// When the embedded file is corrupt: that is a build defect, caught by the unit tests.
pub fn meta() -> &'static PackedMeta {
    static META: OnceLock<PackedMeta> = OnceLock::new();
    META.get_or_init(|| {
        read_meta(EMBEDDED).expect("the embedded database is valid (checked by unit tests)")
    })
}

/// The size of the embedded (compressed) database in bytes.
pub fn embedded_size() -> usize {
    EMBEDDED.len()
}

/// The embedded database as one source, for [`compile()`] and the reference lookup.
pub fn source() -> Result<SourceRanges, DbError> {
    let Unpacked { meta, v4, v6 } = unpack(EMBEDDED)?;
    Ok(SourceRanges {
        path: PathBuf::from(meta.label()),
        format: SourceFormat::Embedded,
        v4,
        v6,
    })
}

/// Decodes and compiles the embedded database.
pub fn load() -> Result<CompiledDb, DbError> {
    let started = std::time::Instant::now();
    let db = compile(vec![source()?]);
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        prefixes_v4 = db.v4.len(),
        prefixes_v6 = db.v6.len(),
        "embedded database decoded and compiled"
    );
    Ok(db)
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::{super::reference::reference_lookup, *};
    use crate::country::code_str;

    #[test]
    fn the_embedded_database_is_valid_and_world_sized() {
        let meta = meta();
        assert_eq!(meta.name, "geo-whois-asn-country");
        assert!(meta.licence.contains("CC BY 4.0"), "{meta:?}");
        assert_eq!(meta.built.len(), 10);
        let source = source().unwrap();
        assert!(source.v4.len() > 100_000, "{}", source.v4.len());
        assert!(source.v6.len() > 50_000, "{}", source.v6.len());
        let db = load().unwrap();
        assert!(db.v4.len() > 300_000 && db.v6.len() > 300_000);
        assert!(db.countries().len() > 200);
        // A few addresses whose country has not moved in decades.
        let at = |s: &str| {
            let ip: IpAddr = s.parse().unwrap();
            db.lookup(ip).map(|p| code_str(p.info.country))
        };
        assert_eq!(at("77.88.8.8").as_deref(), Some("RU"), "Yandex DNS");
        assert_eq!(at("2a02:6b8::1").as_deref(), Some("RU"), "Yandex IPv6");
        assert_eq!(at("10.0.0.1"), None, "private space is unknown");
        // The table and the reference lookup agree on the packed ranges.
        let sources = [source];
        for p in db.v4.iter().step_by(997) {
            let ip = IpAddr::V4((p.addr as u32).into());
            assert_eq!(reference_lookup(&sources, ip), Some(p.info.country));
        }
    }
}
