//! Blocklist formats, and the grammar of one line of each.
//!
//! - `cidr`: one network (`192.0.2.0/24`, `2001:db8::/32`) or address per line. `#` and `;`
//!   start a comment, on a line of its own or after an entry; blank lines are skipped.
//! - `netset`: FireHOL's `.netset`/`.ipset` files (`# ` header, then networks and addresses).
//! - `spamhaus-drop`: Spamhaus DROP/EDROP text (`; Spamhaus DROP List ...` header lines, then
//!   `1.10.16.0/20 ; SBL256894`).
//! - `spamhaus-json`: Spamhaus's JSON lines (`drop_v4.json`, `drop_v6.json`):
//!   `{"cidr":"1.10.16.0/20","sblid":"SBL256894","rir":"apnic"}` per line and a closing
//!   `{"type":"metadata","timestamp":...,"copyright":...}` line, which is skipped.
//! - `ipsum`: stamparm/ipsum's `address<TAB>score` (the number of blocklists that name the
//!   address), `#` comments. Only entries with at least the minimum score are kept.
//!
//! The first three share one grammar: their names say what was detected, so `list show` tells a
//! FireHOL set from a Spamhaus one. Detection looks at the first entry: `{` is Spamhaus JSON, an
//! address followed by a bare number is ipsum; otherwise `;` comments mean Spamhaus text and a
//! `.netset`/`.ipset` name means FireHOL.

use std::{fmt, path::Path, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::geoip::{LineProblem, text};

/// A blocklist format (`list add --format`); detected from the content when not given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ListFormat {
    /// One network or address per line, `#` or `;` comments.
    Cidr,
    /// FireHOL `.netset` / `.ipset`.
    Netset,
    /// Spamhaus DROP/EDROP text (`net ; SBLnnn`).
    SpamhausDrop,
    /// Spamhaus DROP JSON lines (`drop_v4.json`, `drop_v6.json`).
    SpamhausJson,
    /// ipsum's `address<TAB>score`.
    Ipsum,
}

impl ListFormat {
    pub const ALL: [ListFormat; 5] = [
        ListFormat::Cidr,
        ListFormat::Netset,
        ListFormat::SpamhausDrop,
        ListFormat::SpamhausJson,
        ListFormat::Ipsum,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            ListFormat::Cidr => "cidr",
            ListFormat::Netset => "netset",
            ListFormat::SpamhausDrop => "spamhaus-drop",
            ListFormat::SpamhausJson => "spamhaus-json",
            ListFormat::Ipsum => "ipsum",
        }
    }
}

impl fmt::Display for ListFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ListFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        ListFormat::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<_> = ListFormat::ALL.iter().map(|f| f.name()).collect();
                format!(
                    "unknown list format {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// One entry of a list: a network as (is IPv6, first address, last address), and its ipsum score.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub v6: bool,
    pub start: u128,
    pub end: u128,
    pub score: Option<u32>,
}

/// The text before a `#` or `;` comment, trimmed.
fn strip_comment(line: &str) -> &str {
    line.split(['#', ';']).next().unwrap_or("").trim()
}

/// Whether a line holds no entry: blank or a comment. ([`text::Lines`] already skips blank lines
/// and `#` comments.)
pub(crate) fn is_comment(line: &str) -> bool {
    strip_comment(line).is_empty()
}

/// The format of a file whose first entry is `line`; `semicolons` says whether a `;` comment
/// came before it.
pub(crate) fn detect(path: &Path, line: &str, semicolons: bool) -> ListFormat {
    if line.starts_with('{') {
        return ListFormat::SpamhausJson;
    }
    let data = strip_comment(line);
    let mut fields = data.split_ascii_whitespace();
    if let (Some(_), Some(score), None) = (fields.next(), fields.next(), fields.next())
        && score.bytes().all(|b| b.is_ascii_digit())
    {
        return ListFormat::Ipsum;
    }
    let name = text::base_name(path);
    if semicolons || line.contains(';') {
        ListFormat::SpamhausDrop
    } else if name.ends_with(".netset") || name.ends_with(".ipset") {
        ListFormat::Netset
    } else {
        ListFormat::Cidr
    }
}

/// What a Spamhaus JSON line holds; other fields (`sblid`, `rir`) are not needed.
#[derive(Deserialize)]
struct DropRecord {
    cidr: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// Parses one line that is not a comment. `Ok(None)`: a line without an entry (Spamhaus's
/// metadata line).
pub(crate) fn parse_line(format: ListFormat, line: &str) -> Result<Option<Entry>, LineProblem> {
    let network = |s: &str, score| {
        text::parse_network(s)
            .map(|(v6, start, end)| Entry {
                v6,
                start,
                end,
                score,
            })
            .ok_or_else(|| LineProblem::Network {
                value: s.to_owned(),
            })
    };
    match format {
        ListFormat::Cidr | ListFormat::Netset | ListFormat::SpamhausDrop => {
            network(strip_comment(line), None).map(Some)
        }
        ListFormat::SpamhausJson => {
            let record: DropRecord = serde_json::from_str(line).map_err(|e| {
                LineProblem::Other(format!("not a Spamhaus DROP JSON record ({e})"))
            })?;
            match (record.kind.as_deref(), record.cidr) {
                (Some("metadata"), _) => Ok(None),
                (_, Some(cidr)) => network(cidr.trim(), None).map(Some),
                (_, None) => Err(LineProblem::Other(
                    "a Spamhaus DROP JSON record without \"cidr\"".into(),
                )),
            }
        }
        ListFormat::Ipsum => {
            let data = strip_comment(line);
            let fields: Vec<&str> = data.split_ascii_whitespace().collect();
            let [addr, score] = fields[..] else {
                return Err(LineProblem::Fields {
                    expected: "2 (address, score)",
                    found: fields.len(),
                });
            };
            let score = score
                .parse::<u32>()
                .map_err(|_| LineProblem::Other(format!("bad score {score:?}")))?;
            network(addr, Some(score)).map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(format: ListFormat, line: &str) -> Entry {
        parse_line(format, line).unwrap().unwrap()
    }

    #[test]
    fn lines_of_each_format() {
        let e = entry(ListFormat::SpamhausDrop, "1.10.16.0/20 ; SBL256894");
        assert_eq!((e.v6, e.start, e.end), (false, 0x010a_1000, 0x010a_1fff));
        let e = entry(ListFormat::Cidr, "192.0.2.7   # a trailing comment");
        assert_eq!((e.start, e.end), (0xc000_0207, 0xc000_0207));
        let e = entry(
            ListFormat::SpamhausJson,
            r#"{"cidr":"2a06:e480::\/29","sblid":"SBL301771","rir":"ripencc"}"#,
        );
        assert!(e.v6);
        assert_eq!(e.start >> 96, 0x2a06_e480);
        let meta = r#"{"type":"metadata","timestamp":1790072042,"size":104461,"records":2,"copyright":"(c) 2026 The Spamhaus Project SLU","terms":"https://www.spamhaus.org/drop/terms/"}"#;
        assert_eq!(parse_line(ListFormat::SpamhausJson, meta), Ok(None));
        let e = entry(ListFormat::Ipsum, "185.224.128.34\t11");
        assert_eq!(e.score, Some(11));
        // Errors say what is wrong.
        let problem = |f, l| parse_line(f, l).unwrap_err().to_string();
        assert_eq!(
            problem(ListFormat::Cidr, "1.2.3.0/33"),
            "bad network \"1.2.3.0/33\""
        );
        assert_eq!(
            problem(ListFormat::Ipsum, "1.2.3.4"),
            "expected 2 (address, score), found 1 field(s)"
        );
        assert_eq!(problem(ListFormat::Ipsum, "1.2.3.4\tx"), "bad score \"x\"");
        assert!(problem(ListFormat::SpamhausJson, "{\"cidr\":").contains("not a Spamhaus"));
        assert!(problem(ListFormat::SpamhausJson, "{\"sblid\":\"SBL1\"}").contains("without"));
    }

    #[test]
    fn detection() {
        let p = Path::new("list.txt");
        assert_eq!(
            detect(p, r#"{"cidr":"1.2.3.0/24"}"#, false),
            ListFormat::SpamhausJson
        );
        assert_eq!(detect(p, "1.2.3.4\t3", false), ListFormat::Ipsum);
        assert_eq!(detect(p, "1.2.3.4 3", false), ListFormat::Ipsum);
        assert_eq!(
            detect(p, "1.2.3.0/24 ; SBL1", false),
            ListFormat::SpamhausDrop
        );
        assert_eq!(detect(p, "1.2.3.0/24", true), ListFormat::SpamhausDrop);
        assert_eq!(detect(p, "1.2.3.0/24", false), ListFormat::Cidr);
        assert_eq!(
            detect(Path::new("firehol_level1.netset.gz"), "1.2.3.0/24", false),
            ListFormat::Netset
        );
        assert_eq!("SPAMHAUS-json".parse(), Ok(ListFormat::SpamhausJson));
        assert!("csv".parse::<ListFormat>().unwrap_err().contains("ipsum"));
    }
}
