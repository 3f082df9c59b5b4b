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
