//! How `db info` and `db check` show ASN databases, and `db update --asn`.

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

/// `db update --asn [PRESET] [--url URL ...]`: fetch, validate as ASN files, store, and have
/// the daemon load them as its ASN databases.
pub(super) fn update(
    preset: crate::asn::update::AsnPreset,
    urls: &[String],
    dest: &Path,
    no_reload: bool,
    client: &crate::cli::args::ClientArgs,
) -> anyhow::Result<()> {
    use std::io::IsTerminal as _;

    use crate::{
        asn::update::fetch_and_store,
        control::{
            client::call,
            protocol::{ReloadReply, Request},
        },
        geoip::update::url_download,
    };
    let downloads = if urls.is_empty() {
        preset.downloads()
    } else {
        urls.iter()
            .map(|u| url_download(u))
            .collect::<Result<Vec<_>, _>>()?
    };
    let progress = std::io::stderr().is_terminal() && !client.json;
    let stored = fetch_and_store(&downloads, dest, progress)?;
    #[derive(Serialize)]
    struct Out {
        stored: Vec<std::path::PathBuf>,
        urls: Vec<String>,
        bytes: u64,
        ranges_v4: usize,
        ranges_v6: usize,
        asns: usize,
        reload: Option<ReloadReply>,
    }
    let mut out = Out {
        stored: stored.paths.clone(),
        urls: stored.urls.clone(),
        bytes: stored.bytes,
        ranges_v4: stored.db.v4.len(),
        ranges_v6: stored.db.v6.len(),
        asns: stored.db.asns(),
        reload: None,
    };
    if !client.json {
        for (path, url) in stored.paths.iter().zip(&stored.urls) {
            println!("stored {} (from {url})", path.display());
        }
        println!(
            "valid ASN database: {} IPv4 + {} IPv6 ranges, {} ASNs",
            out.ranges_v4, out.ranges_v6, out.asns
        );
    }
    if !no_reload && client.socket.exists() {
        let reply: ReloadReply = call(
            &client.socket,
            &Request::Reload {
                dbs: Vec::new(),
                embedded: false,
                asn_dbs: stored.paths.clone(),
                caller: crate::cli::client::caller()?,
                force: false,
            },
        )
        .map_err(anyhow::Error::new)
        .map_err(|e| e.context("the ASN files are stored, but the daemon did not load them"))?;
        if !client.json {
            println!("{}", super::reload_text(&reply));
        }
        out.reload = Some(reply);
    } else if !no_reload && !client.json {
        let args: Vec<String> = stored
            .paths
            .iter()
            .map(|p| format!("--asn-db {}", p.display()))
            .collect();
        println!(
            "no daemon at {}; start one on these files with `geofilter run {}`",
            client.socket.display(),
            args.join(" ")
        );
    }
    if client.json {
        println!("{}", json_line(&out));
    }
    Ok(())
}
