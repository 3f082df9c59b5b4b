//! Format detection, in one place: which [`Format`] a database path holds when `--db-format` is
//! not given. Names first (`.mmdb`, `geoip6`, `delegated-*`, `*-Blocks-IPv4.csv`), then content:
//! the MMDB metadata marker near the end, then the first data line of a text file.

use std::{
    io::{Read, Seek, SeekFrom},
    path::Path,
};

use super::{
    DbError, Format, LineProblem, input, maxmind_csv, mmdb,
    text::{Lines, base_name, parse_network, snippet},
};

/// Guesses the format of a database file from its name and its first lines.
pub(super) fn detect(path: &Path) -> Result<Format, DbError> {
    if is_dir(path)? {
        return Ok(if maxmind_csv::blocks_files(path)?.is_empty() {
            Format::CidrDir
        } else {
            Format::MaxmindCsv
        });
    }
    let name = base_name(path);
    if name.ends_with(".mmdb") {
        return Ok(Format::Mmdb);
    }
    if name == "geoip" || name == "geoip6" {
        return Ok(Format::Tor);
    }
    if name.starts_with("delegated-") {
        return Ok(Format::Rir);
    }
    if name.contains("-blocks-ipv4") || name.contains("-blocks-ipv6") {
        return Ok(Format::MaxmindCsv);
    }
    if looks_like_mmdb(path)? {
        return Ok(Format::Mmdb);
    }
    detect_text(path)
}

/// Whether `path` (after symbolic links) is a directory; fails when it does not exist.
pub(crate) fn is_dir(path: &Path) -> Result<bool, DbError> {
    let meta = std::fs::metadata(path).map_err(|source| DbError::Io {
        op: "open",
        path: path.to_owned(),
        source,
    })?;
    Ok(meta.is_dir())
}

/// How far before the end of a valid file [`mmdb::METADATA_MARKER`] may sit.
const METADATA_WINDOW: u64 = 128 * 1024;

/// Does the file end like an MMDB (metadata marker in its last 128 KiB)?
pub(crate) fn looks_like_mmdb(path: &Path) -> Result<bool, DbError> {
    let io = |op, source| DbError::Io {
        op,
        path: path.to_owned(),
        source,
    };
    let (mut file, len) = input::open_regular(path)?;
    file.seek(SeekFrom::Start(len.saturating_sub(METADATA_WINDOW)))
        .map_err(|e| io("read", e))?;
    let mut tail = Vec::new();
    file.take(METADATA_WINDOW)
        .read_to_end(&mut tail)
        .map_err(|e| io("read", e))?;
    Ok(tail
        .windows(mmdb::METADATA_MARKER.len())
        .any(|w| w == mmdb::METADATA_MARKER))
}

/// Detects a text format from the first data line.
fn detect_text(path: &Path) -> Result<Format, DbError> {
    let cannot = |why: String| DbError::Invalid {
        path: path.to_owned(),
        reason: format!("cannot detect the database format ({why}); give --db-format"),
    };
    // The format given to `Lines` only appears in a "line too long" message.
    let mut lines = Lines::open(path, Format::RangeCsv)?;
    let line = match lines.next_line() {
        Ok(Some((_, line))) => line,
        Ok(None) => return Err(cannot("no data lines".to_owned())),
        Err(DbError::Line {
            problem: LineProblem::NotUtf8,
            line,
            ..
        }) => {
            return Err(cannot(format!("not a text file: line {line} is not UTF-8")));
        }
        Err(DbError::LineTooLong { line, max, .. }) => {
            return Err(cannot(format!(
                "not a text file: line {line} is longer than {max} bytes"
            )));
        }
        Err(e) => return Err(e),
    };
    let lower = line.to_ascii_lowercase();
    let commas = line.bytes().filter(|&b| b == b',').count();
    let bars = line.bytes().filter(|&b| b == b'|').count();
    if lower.starts_with("network,") {
        Ok(Format::MaxmindCsv)
    } else if bars >= 5 {
        Ok(Format::Rir)
    } else if commas == 0 && parse_network(line).is_some() {
        Ok(Format::CidrDir)
    } else if commas >= 2 {
        Ok(Format::RangeCsv)
    } else {
        Err(cannot(format!("first line \"{}\"", snippet(line))))
    }
}
