//! `geofilter db ...`: inspect, validate, fetch and reload country databases. `info`, `check` and
//! `pack` read files themselves and need no daemon; `update` and `reload` talk to it.

use std::{
    io::IsTerminal as _,
    path::{Path, PathBuf},
    time::SystemTime,
};

use anyhow::{Context as _, bail};
use serde::Serialize;

use super::{
    args::{ClientArgs, DbCommand, GlobalArgs},
    client::json_line,
};
use crate::{
    asn::{AsnFormat, info::AsnInfo},
    control::{
        client::call,
        protocol::{CheckOutput, ReloadReply, Request, UpdateOutput},
    },
    geoip::{
        self, DatabaseSource, Format,
        codec::{self, PackedMeta},
        info::{self, DbInfo, Provenance},
        update::{self, Preset},
    },
};

mod asn;

pub fn main(command: DbCommand, global: &GlobalArgs) -> anyhow::Result<()> {
    let client = global.client();
    let refuse = |verb, socket, json| {
        global
            .refuse(verb, socket, json)
            .map_err(anyhow::Error::msg)
    };
    match command {
        DbCommand::Info {
            dbs,
            db_format,
            asn_format,
        } => {
            refuse("db info", true, false)?;
            db_info(&dbs, db_format, asn_format, client.json)
        }
        DbCommand::Check {
            files,
            db_format,
            asn_format,
        } => {
            refuse("db check", true, false)?;
            check(&files, db_format, asn_format, client.json)
        }
        DbCommand::Update {
            asn: Some(asn),
            urls,
            dest,
            no_reload,
            ..
        } => asn::update(asn, &urls, &dest, no_reload, &client),
        DbCommand::Update {
            preset,
            urls,
            dest,
            db_format,
            no_reload,
            asn: None,
        } => db_update(preset, &urls, &dest, db_format, no_reload, &client),
        DbCommand::Reload {
            dbs,
            embedded,
            asn_dbs,
            force,
        } => reload(&dbs, embedded, &asn_dbs, force, &client),
        DbCommand::Pack {
            dbs,
            output,
            name,
            data_version,
            built,
            origin,
            licence,
        } => {
            refuse("db pack", true, true)?;
            pack(
                &dbs,
                &output,
                PackedMeta {
                    name,
                    version: data_version,
                    built,
                    origin,
                    licence,
                },
            )
        }
    }
}

/// Whether `db info` / `db check` read `path` as an ASN database: `--asn-format` says so,
/// `--db-format` says not, otherwise its content decides ([`asn::detect`]). A file detection
/// cannot read at all goes to the country readers, whose errors name it.
fn is_asn(path: &Path, db_format: Option<Format>, asn_format: Option<AsnFormat>) -> bool {
    match (db_format, asn_format) {
        (_, Some(_)) => true,
        (Some(_), None) => false,
        (None, None) => matches!(crate::asn::detect(path), Ok(Some(_))),
    }
}

/// `db info --json`: the country database's fields (when there is one) and the ASN database's
/// under `asn` (when there is one).
#[derive(Serialize)]
struct InfoOutput {
    #[serde(flatten)]
    countries: Option<DbInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    asn: Option<AsnInfo>,
}

fn db_info(
    dbs: &[PathBuf],
    format: Option<Format>,
    asn_format: Option<AsnFormat>,
    json: bool,
) -> anyhow::Result<()> {
    let (asn_dbs, country_dbs): (Vec<PathBuf>, Vec<PathBuf>) = dbs
        .iter()
        .cloned()
        .partition(|p| is_asn(p, format, asn_format));
    // No files: both embedded databases. Otherwise only the kinds given.
    let both = dbs.is_empty();
    let out = InfoOutput {
        countries: (both || !country_dbs.is_empty())
            .then(|| info::describe(&DatabaseSource::from_paths(&country_dbs, format)))
            .transpose()?,
        asn: (both || !asn_dbs.is_empty())
            .then(|| crate::asn::info::describe(&asn_dbs, asn_format))
            .transpose()?,
    };
    if json {
        println!("{}", serde_json::to_string(&out)?);
        return Ok(());
    }
    if let Some(info) = &out.countries {
        print!("{}", info_text(info));
    }
    if let Some(info) = &out.asn {
        print!("{}", asn::info_text(info));
    }
    Ok(())
}

/// The `version`, `built` and `licence` lines of one source, as far as they are known.
pub(super) fn provenance_text(p: &Provenance) -> String {
    let mut s = String::new();
    if let Some(v) = &p.version {
        s += &format!("  version: {v}\n");
    }
    if let Some(built) = &p.built {
        let age = p
            .age_days
            .map(|d| format!(", {d} days ago"))
            .unwrap_or_default();
        s += &format!("  built: {built} ({}{age})\n", p.built_from);
    }
    if let Some(l) = &p.licence {
        s += &format!("  licence: {l}\n");
    }
    s
}

fn info_text(info: &DbInfo) -> String {
    let mut s = String::new();
    for src in &info.sources {
        s += &format!("source: {} ({})\n", src.source, src.format);
        s += &provenance_text(&src.provenance);
        s += &format!("  ranges: {} IPv4, {} IPv6\n", src.ranges_v4, src.ranges_v6);
    }
    s += &format!(
        "prefixes: {} IPv4, {} IPv6\ncountries: {} ({})\n",
        info.prefixes_v4,
        info.prefixes_v6,
        info.countries.len(),
        info.countries.join(" ")
    );
    for w in &info.warnings {
        s += &format!("WARNING: {w}\n");
    }
    s
}

/// Checks every file (all of them, also after a failure) and fails if any is invalid. ASN files
/// are told from country files by content.
fn check(
    files: &[PathBuf],
    format: Option<Format>,
    asn_format: Option<AsnFormat>,
    json: bool,
) -> anyhow::Result<()> {
    let mut failed = 0;
    for path in files {
        let result = if is_asn(path, format, asn_format) {
            crate::asn::info::check(path, asn_format)
                .map(|info| asn::check_line(path, &info, json))
                .map_err(anyhow::Error::from)
        } else {
            info::check(path, format)
                .map(|info| check_country_line(path, &info, json))
                .map_err(anyhow::Error::from)
        };
        if let Err(e) = result {
            failed += 1;
            if json {
                let line = CheckOutput::Invalid {
                    file: path.clone(),
                    ok: false,
                    error: e.to_string(),
                };
                println!("{}", json_line(&line));
            }
            eprintln!("geofilter: invalid database: {e}");
        }
    }
    if failed > 0 {
        bail!("{failed} of {} database file(s) invalid", files.len());
    }
    Ok(())
}

fn check_country_line(path: &Path, info: &DbInfo, json: bool) {
    let src = &info.sources[0];
    if json {
        let line = CheckOutput::Valid {
            file: path.to_owned(),
            ok: true,
            format: src.format,
            ranges_v4: src.ranges_v4,
            ranges_v6: src.ranges_v6,
            prefixes_v4: info.prefixes_v4,
            prefixes_v6: info.prefixes_v6,
            countries: info.countries.len(),
            built: src.provenance.built.clone(),
            warnings: info.warnings.clone(),
        };
        println!("{}", json_line(&line));
        return;
    }
    println!(
        "{}: ok: {}, {} IPv4 + {} IPv6 ranges, {} IPv4 + {} IPv6 prefixes, {} countries, built {} \
         ({})",
        path.display(),
        src.format,
        src.ranges_v4,
        src.ranges_v6,
        info.prefixes_v4,
        info.prefixes_v6,
        info.countries.len(),
        src.provenance.built.as_deref().unwrap_or("?"),
        src.provenance.built_from,
    );
    for w in &info.warnings {
        println!("WARNING: {w}");
    }
}

fn db_update(
    preset: Option<Preset>,
    urls: &[String],
    dest: &Path,
    format: Option<Format>,
    no_reload: bool,
    client: &ClientArgs,
) -> anyhow::Result<()> {
    let downloads = if urls.is_empty() {
        preset
            .unwrap_or(Preset::DbipLite)
            .downloads(SystemTime::now())
    } else {
        urls.iter()
            .map(|u| update::url_download(u))
            .collect::<Result<Vec<_>, _>>()?
    };
    // A progress bar only for a person watching; scripts and logs get the summary lines.
    let progress = std::io::stderr().is_terminal() && !client.json;
    let stored = update::fetch_and_store(&downloads, dest, format, progress)?;
    let mut out = UpdateOutput {
        stored: stored.paths.clone(),
        urls: stored.urls.clone(),
        bytes: stored.bytes,
        prefixes_v4: stored.db.v4.len(),
        prefixes_v6: stored.db.v6.len(),
        countries: stored.db.countries().len(),
        reloaded: false,
        reload: None,
    };
    if !client.json {
        for (path, url) in stored.paths.iter().zip(&stored.urls) {
            println!("stored {} (from {url})", path.display());
        }
        println!(
            "valid: {} IPv4 + {} IPv6 prefixes, {} countries",
            stored.db.v4.len(),
            stored.db.v6.len(),
            stored.db.countries().len()
        );
    }
    let socket = &client.socket;
    if !no_reload && !socket.exists() {
        if !client.json {
            let dbs: Vec<String> = stored
                .paths
                .iter()
                .map(|p| format!("--db {}", p.display()))
                .collect();
            println!(
                "no daemon at {}; start one on these files with `geofilter run {}`",
                socket.display(),
                dbs.join(" ")
            );
        }
    } else if !no_reload {
        let result: ReloadReply = call(
            socket,
            &Request::Reload {
                dbs: stored.paths.clone(),
                embedded: false,
                asn_dbs: Vec::new(),
                caller: super::client::caller()?,
                force: false,
            },
        )
        .context("the new database is stored, but the daemon did not load it")?;
        if !client.json {
            println!("{}", reload_text(&result));
        }
        out.reloaded = true;
        out.reload = Some(result);
    }
    if client.json {
        println!("{}", json_line(&out));
    }
    Ok(())
}

pub(super) fn reload_text(v: &ReloadReply) -> String {
    format!(
        "daemon reloaded: {} IPv4 + {} IPv6 prefixes in {} ms",
        v.prefixes_v4, v.prefixes_v6, v.elapsed_ms
    )
}

fn reload(
    dbs: &[PathBuf],
    embedded: bool,
    asn_dbs: &[PathBuf],
    force: bool,
    client: &ClientArgs,
) -> anyhow::Result<()> {
    // The daemon has its own working directory: send absolute paths, and fail here on a missing
    // file rather than there.
    let absolute = |paths: &[PathBuf]| {
        paths
            .iter()
            .map(|p| std::path::absolute(p).with_context(|| format!("resolving {}", p.display())))
            .collect::<anyhow::Result<Vec<_>>>()
    };
    let request = Request::Reload {
        dbs: absolute(dbs)?,
        asn_dbs: absolute(asn_dbs)?,
        embedded,
        caller: super::client::caller()?,
        force,
    };
    let result: ReloadReply = call(&client.socket, &request)?;
    if client.json {
        println!("{}", json_line(&result));
    } else {
        println!("{}", reload_text(&result));
    }
    Ok(())
}

fn pack(dbs: &[PathBuf], output: &Path, meta: PackedMeta) -> anyhow::Result<()> {
    anyhow::ensure!(
        info::parse_date(&meta.built).is_some(),
        "--built {:?} is not a YYYY-MM-DD date",
        meta.built
    );
    // ASN files pack into the ASN form (`data/asn.gfasn`), country files into the country form.
    let asn_files = dbs
        .iter()
        .map(|p| crate::asn::detect(p).map(|f| f.is_some()))
        .collect::<Result<Vec<_>, _>>()?;
    if asn_files.iter().any(|&a| a) {
        anyhow::ensure!(
            asn_files.iter().all(|&a| a),
            "db pack: give either country files or ASN files, not both"
        );
        let db = crate::asn::load(dbs, None)?;
        let bytes = crate::asn::codec::pack_checked(&db, &meta)?;
        std::fs::write(output, &bytes).with_context(|| format!("writing {}", output.display()))?;
        println!(
            "{}: {} bytes, {} IPv4 + {} IPv6 ranges, {} ASNs, {} names",
            output.display(),
            bytes.len(),
            db.v4.len(),
            db.v6.len(),
            db.asns(),
            db.names.len()
        );
        return Ok(());
    }
    let db = geoip::load(dbs, None)?;
    let bytes = codec::pack_checked(&db, &meta)?;
    std::fs::write(output, &bytes).with_context(|| format!("writing {}", output.display()))?;
    println!(
        "{}: {} bytes, {} IPv4 + {} IPv6 prefixes, {} countries",
        output.display(),
        bytes.len(),
        db.v4.len(),
        db.v6.len(),
        db.countries().len()
    );
    Ok(())
}
