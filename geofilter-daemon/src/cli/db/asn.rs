//! How `db info` and `db check` show ASN databases.

use std::path::Path;

use serde::Serialize;

use super::{json_line, provenance_text};
use crate::asn::info::AsnInfo;

pub(super) fn info_text(info: &AsnInfo) -> String {
    let mut s = String::new();
    for src in &info.sources {
        s += &format!("asn source: {} ({})\n", src.source, src.format);
        s += &provenance_text(&src.provenance);
        s += &format!(
            "  ranges: {} IPv4, {} IPv6; {} ASNs\n",
            src.ranges_v4, src.ranges_v6, src.asns
        );
    }
    s += &format!(
        "asn ranges: {} IPv4, {} IPv6\nasns: {} ({} with a name)\n",
        info.ranges_v4, info.ranges_v6, info.asns, info.names
    );
    for w in &info.warnings {
        s += &format!("WARNING: {w}\n");
    }
    s
}

/// `db check --json` for a valid ASN file (an invalid one is a [`CheckOutput::Invalid`] line).
#[derive(Serialize)]
struct AsnCheckLine<'a> {
    file: &'a Path,
    /// Always `true`.
    ok: bool,
    /// Always `"asn"`: the file is an ASN database.
    kind: &'static str,
    format: &'a str,
    ranges_v4: usize,
    ranges_v6: usize,
    asns: usize,
    names: usize,
    built: Option<&'a str>,
    warnings: &'a [String],
}

pub(super) fn check_line(path: &Path, info: &AsnInfo, json: bool) {
    let src = &info.sources[0];
    if json {
        let line = AsnCheckLine {
            file: path,
            ok: true,
            kind: "asn",
            format: &src.format,
            ranges_v4: src.ranges_v4,
            ranges_v6: src.ranges_v6,
            asns: info.asns,
            names: info.names,
            built: src.provenance.built.as_deref(),
            warnings: &info.warnings,
        };
        println!("{}", json_line(&line));
        return;
    }
    println!(
        "{}: ok: ASN database ({}), {} IPv4 + {} IPv6 ranges, {} ASNs, {} names, built {} ({})",
        path.display(),
        src.format,
        src.ranges_v4,
        src.ranges_v6,
        info.asns,
        info.names,
        src.provenance.built.as_deref().unwrap_or("?"),
        src.provenance.built_from,
    );
    for w in &info.warnings {
        println!("WARNING: {w}");
    }
}
