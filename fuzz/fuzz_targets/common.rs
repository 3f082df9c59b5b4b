// Shared by the database targets (included with `#[path]`): the readers take paths, so each input
// is written to a scratch file of this process first.

use std::path::PathBuf;

use geofilter_daemon::geoip::{self, Format, SourceRanges};

/// A scratch folder for this fuzzing process.
pub fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("geofilter-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Reads `data` as a file named `name` in `format`. Any input may fail, none may panic; what
/// succeeds must compile to a table that agrees with the reference lookup at range boundaries.
pub fn read_and_check(name: &str, data: &[u8], format: Format) {
    let path = scratch().join(name);
    std::fs::write(&path, data).expect("scratch write");
    if let Ok(source) = geoip::read_source(&path, Some(format)) {
        check(source);
    }
}

pub fn check(source: SourceRanges) {
    // Keep each run fast: the reference scan is quadratic.
    if source.v4.len() + source.v6.len() > 64 {
        let _ = geoip::compile(vec![source]);
        return;
    }
    let sources = vec![source];
    let db = geoip::compile(sources.clone());
    let probe = |ip: std::net::IpAddr| {
        let compiled = db.lookup(ip).map(|p| p.info.country);
        let reference = geoip::reference::reference_lookup(&sources, ip);
        assert_eq!(compiled, reference, "compiled table and reference disagree at {ip}");
    };
    for r in &sources[0].v4 {
        for a in [r.start, r.end, r.start.wrapping_sub(1), r.end.wrapping_add(1)] {
            if a <= u128::from(u32::MAX) {
                probe(std::net::Ipv4Addr::from(a as u32).into());
            }
        }
    }
    for r in &sources[0].v6 {
        for a in [r.start, r.end, r.start.wrapping_sub(1), r.end.wrapping_add(1)] {
            probe(std::net::Ipv6Addr::from(a).into());
        }
    }
}

/// Reads `data` as an ASN database named `name` in `format`. Any input may fail, none may
/// panic; what succeeds must resolve to a table that agrees with the reference lookup at range
/// boundaries.
pub fn read_and_check_asn(name: &str, data: &[u8], format: geofilter_daemon::asn::AsnFormat) {
    use geofilter_daemon::{asn, geoip::Limits};
    let path = scratch().join(name);
    std::fs::write(&path, data).expect("scratch write");
    let Ok(source) = asn::read_source(&path, Some(format)) else {
        return;
    };
    let small = source.v4.len() + source.v6.len() <= 64;
    let sources = vec![source];
    let db = asn::compile_within(sources.clone(), &Limits::default(), false)
        .expect("a file that reads resolves");
    // Keep each run fast: the reference scan is quadratic.
    if !small {
        return;
    }
    let probe = |ip: std::net::IpAddr| {
        let reference = asn::reference::reference_lookup(&sources, ip);
        assert_eq!(db.lookup(ip), reference, "table and reference disagree at {ip}");
    };
    for r in &sources[0].v4 {
        for a in [r.start, r.end, r.start.wrapping_sub(1), r.end.wrapping_add(1)] {
            if a <= u128::from(u32::MAX) {
                probe(std::net::Ipv4Addr::from(a as u32).into());
            }
        }
    }
    for r in &sources[0].v6 {
        for a in [r.start, r.end, r.start.wrapping_sub(1), r.end.wrapping_add(1)] {
            probe(std::net::Ipv6Addr::from(a).into());
        }
    }
}
