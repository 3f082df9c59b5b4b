//! Shared pieces of the text readers: bounded line reading (files opened by [`super::input`]), CSV
//! fields, addresses, and the error constructors that name file and line.

use std::{
    io::{BufRead, Read},
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use geofilter_common::CountryId;

use super::{DbError, Format, LineProblem, Ranges};

/// The longest line any reader accepts. Real lines are under 200 bytes; the limit keeps a binary
/// or wrong file from being read into memory whole while looking for a newline.
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// The length messages cut offending text to.
const SNIPPET: usize = 80;

/// The lines of a text database: blank lines and `#` comments skipped, line ends (`\n`, `\r\n`)
/// and a UTF-8 byte-order mark removed, every line at most [`MAX_LINE`] bytes.
pub(crate) struct Lines {
    reader: Box<dyn BufRead + Send>,
    path: PathBuf,
    format: Format,
    buf: Vec<u8>,
    line: u64,
}

impl Lines {
    pub(crate) fn open(path: &Path, format: Format) -> Result<Self, DbError> {
        Ok(Self {
            reader: super::input::open(path, format)?,
            path: path.to_owned(),
            format,
            buf: Vec::with_capacity(256),
            line: 0,
        })
    }

    /// The next line with data and its 1-based line number, or `None` at the end.
    pub(crate) fn next_line(&mut self) -> Result<Option<(u64, &str)>, DbError> {
        let (from, to) = loop {
            self.buf.clear();
            let n = (&mut self.reader)
                .take(MAX_LINE as u64 + 2)
                .read_until(b'\n', &mut self.buf)
                .map_err(|source| {
                    super::input::oversize(&self.path, self.format, &source).unwrap_or_else(|| {
                        DbError::ReadAt {
                            path: self.path.clone(),
                            line: self.line + 1,
                            source,
                        }
                    })
                })?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            // A line cut short by `take` is longer than MAX_LINE even after this.
            if self.buf.last() == Some(&b'\n') {
                self.buf.pop();
            }
            if self.buf.last() == Some(&b'\r') {
                self.buf.pop();
            }
            if self.buf.len() > MAX_LINE {
                return Err(DbError::LineTooLong {
                    path: self.path.clone(),
                    line: self.line,
                    max: MAX_LINE,
                    format: self.format,
                });
            }
            let mut from = 0;
            if self.line == 1 && self.buf.starts_with("\u{feff}".as_bytes()) {
                from = 3;
            }
            while from < self.buf.len() && self.buf[from].is_ascii_whitespace() {
                from += 1;
            }
            let mut to = self.buf.len();
            while to > from && self.buf[to - 1].is_ascii_whitespace() {
                to -= 1;
            }
            if from < to && self.buf[from] != b'#' {
                break (from, to);
            }
        };
        let bytes = &self.buf[from..to];
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(Some((self.line, s))),
            Err(_) => Err(DbError::Line {
                path: self.path.clone(),
                line: self.line,
                problem: LineProblem::NotUtf8,
                text: snippet(&String::from_utf8_lossy(bytes)),
            }),
        }
    }
}

/// An error about one line.
pub(crate) fn line_error(path: &Path, line: u64, problem: LineProblem, text: &str) -> DbError {
    DbError::Line {
        path: path.to_owned(),
        line,
        problem,
        text: snippet(text),
    }
}

/// `text` cut to about 80 characters, control characters escaped, for messages.
pub(crate) fn snippet(text: &str) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == SNIPPET - 3 && text.chars().nth(SNIPPET).is_some() {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Splits a CSV line at `sep`, honouring double quotes, and stores up to `N` fields (blanks
/// and one pair of surrounding quotes removed) in `out`. Returns the number of fields in the line.
pub(crate) fn split_fields<'a, const N: usize>(
    line: &'a str,
    sep: u8,
    out: &mut [&'a str; N],
) -> usize {
    let bytes = line.as_bytes();
    let mut count = 0;
    let mut start = 0;
    let mut quoted = false;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'"' {
            quoted = !quoted;
        } else if b == sep && !quoted {
            if count < N {
                out[count] = unquote(&line[start..i]);
            }
            count += 1;
            start = i + 1;
        }
    }
    if count < N {
        out[count] = unquote(&line[start..]);
    }
    count + 1
}

fn unquote(field: &str) -> &str {
    let f = field.trim();
    f.strip_prefix('"')
        .and_then(|f| f.strip_suffix('"'))
        .map_or(f, str::trim)
}

/// An address as written in a database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Addr {
    V4(u128),
    V6(u128),
    /// A decimal integer: its family follows from the other end of the range.
    Int(u128),
}

/// Parses `1.2.3.4`, `2001:db8::1` or a decimal integer (at most 2^128 - 1).
pub(crate) fn parse_addr(s: &str) -> Option<Addr> {
    let b = s.as_bytes();
    if b.is_empty() {
        return None;
    }
    if b.iter().all(u8::is_ascii_digit) {
        return s.parse::<u128>().ok().map(Addr::Int);
    }
    if b.contains(&b':') {
        return s.parse::<Ipv6Addr>().ok().map(|a| Addr::V6(a.into()));
    }
    s.parse::<Ipv4Addr>()
        .ok()
        .map(|a| Addr::V4(u32::from(a).into()))
}

/// Adds the range `start..=end` to `out`, its family decided by [`range_family`].
pub(crate) fn push_range(
    out: &mut Ranges,
    start: (Addr, &str),
    end: (Addr, &str),
    country: CountryId,
) -> Result<(), LineProblem> {
    let (v6, s, e) = range_family(start, end)?;
    if v6 {
        out.push_v6(s, e, country)
    } else {
        out.push_v4(s, e, country)
    }
}

/// The family and bounds of the range `start..=end` as (is IPv6, start, end): text addresses say
/// the family; a pair of integers is IPv4 when the end fits 32 bits (IPv6 files with integers
/// start far above that). Refuses mixed families and a start after the end.
pub(crate) fn range_family(
    (start, start_text): (Addr, &str),
    (end, end_text): (Addr, &str),
) -> Result<(bool, u128, u128), LineProblem> {
    const V4_MAX: u128 = u32::MAX as u128;
    let (v6, s, e) = match (start, end) {
        (Addr::V4(s), Addr::V4(e)) => (false, s, e),
        (Addr::V6(s), Addr::V6(e)) => (true, s, e),
        (Addr::Int(s), Addr::Int(e)) => (e > V4_MAX, s, e),
        (Addr::V4(s), Addr::Int(e)) if e <= V4_MAX => (false, s, e),
        (Addr::Int(s), Addr::V4(e)) if s <= V4_MAX => (false, s, e),
        (Addr::V6(s) | Addr::Int(s), Addr::V6(e) | Addr::Int(e)) => (true, s, e),
        _ => {
            return Err(LineProblem::MixedFamilies {
                start: start_text.to_owned(),
                end: end_text.to_owned(),
            });
        }
    };
    if s > e {
        return Err(LineProblem::Reversed {
            start: start_text.to_owned(),
            end: end_text.to_owned(),
        });
    }
    Ok((v6, s, e))
}

/// Parses a network `1.2.3.0/24`, `2001:db8::/32`, or a single address (a /32 or /128), as
/// (is IPv6, first address, last address). Host bits that are set are ignored, as ipset does.
pub(crate) fn parse_network(s: &str) -> Option<(bool, u128, u128)> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a.trim(), Some(l.trim())),
        None => (s, None),
    };
    let (v6, bits, value) = match parse_addr(addr)? {
        Addr::V4(v) => (false, 32, v),
        Addr::V6(v) => (true, 128, v),
        Addr::Int(_) => return None,
    };
    let len: u32 = match len {
        Some(l) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) => l.parse().ok()?,
        Some(_) => return None,
        None => bits,
    };
    if len > bits {
        return None;
    }
    let host = host_mask(len, bits);
    Some((v6, value & !host, value | host))
}

/// The host-bit mask of a prefix of `len` bits in a family of `bits` bits.
pub(crate) fn host_mask(len: u32, bits: u32) -> u128 {
    let host = bits - len;
    if host >= 128 {
        u128::MAX
    } else {
        (1u128 << host) - 1
    }
}

/// The file name in lower case without a `.gz` suffix, for format detection.
pub(crate) fn base_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    match name.strip_suffix(".gz") {
        Some(n) => n.to_owned(),
        None => name,
    }
}

/// The entries of a folder, sorted (so readers see files in a stable order).
pub(crate) fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, DbError> {
    let io = |source| DbError::Io {
        op: "list",
        path: dir.to_owned(),
        source,
    };
    let mut paths = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io)?;
    paths.sort();
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        let mut f = [""; 3];
        assert_eq!(split_fields("a,b,c,d", b',', &mut f), 4);
        assert_eq!(f, ["a", "b", "c"]);
        let n = split_fields(
            r#""16777216", "16777471","US","Korea, Republic of""#,
            b',',
            &mut f,
        );
        assert_eq!(n, 4);
        assert_eq!(f, ["16777216", "16777471", "US"]);
        assert_eq!(split_fields("x", b',', &mut f), 1);
        assert_eq!(f[0], "x");
        let mut g = [""; 2];
        assert_eq!(split_fields("a|b|c", b'|', &mut g), 3);
        assert_eq!(g, ["a", "b"]);
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_addr("1.2.3.4"), Some(Addr::V4(0x01020304)));
        assert_eq!(parse_addr("::1"), Some(Addr::V6(1)));
        assert_eq!(
            parse_addr("2c0f:e9a0:2:0:0:0:2b::"),
            Some(Addr::V6(0x2c0f_e9a0_0002_0000_0000_0000_002b_0000))
        );
        assert_eq!(parse_addr("16777216"), Some(Addr::Int(16777216)));
        assert_eq!(
            parse_addr(&u128::MAX.to_string()),
            Some(Addr::Int(u128::MAX))
        );
        for bad in [
            "",
            "1.2.3",
            "1.2.3.256",
            "340282366920938463463374607431768211456",
            "x",
            "1.2.3.4/24",
            "::g",
        ] {
            assert_eq!(parse_addr(bad), None, "{bad}");
        }
    }

    #[test]
    fn networks() {
        assert_eq!(
            parse_network("1.2.3.0/24"),
            Some((false, 0x01020300, 0x010203ff))
        );
        assert_eq!(
            parse_network("1.2.3.4/24"),
            Some((false, 0x01020300, 0x010203ff))
        );
        assert_eq!(
            parse_network("0.0.0.0/0"),
            Some((false, 0, u32::MAX as u128))
        );
        assert_eq!(parse_network("::/0"), Some((true, 0, u128::MAX)));
        assert_eq!(
            parse_network("1.2.3.4"),
            Some((false, 0x01020304, 0x01020304))
        );
        for bad in [
            "1.2.3.0/33",
            "::/129",
            "1.2.3.0/",
            "1.2.3.0/x",
            "12/8",
            "/8",
        ] {
            assert_eq!(parse_network(bad), None, "{bad}");
        }
    }

    #[test]
    fn snippets() {
        assert_eq!(snippet("a\tb"), "a\\tb");
        let long = "x".repeat(200);
        let s = snippet(&long);
        assert_eq!(s.len(), 80);
        assert!(s.ends_with("..."));
        assert_eq!(snippet(&"y".repeat(80)), "y".repeat(80));
    }
}
