//! Where a list comes from (`list add NAME SOURCE`): a file, an HTTP(S) URL, or a named preset.

use std::{fmt, path::PathBuf, str::FromStr};

use serde::{Deserialize, Serialize};

use super::{DEFAULT_MIN_SCORE, ListError, ListFormat};
use crate::geoip::update::{Download, url_download};

/// The published lists geofilter knows by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// Spamhaus DROP ("Don't Route Or Peer"; EDROP was merged into it in 2024), IPv4 and IPv6,
    /// as Spamhaus's JSON lines. Free for any use under its terms
    /// (<https://www.spamhaus.org/drop/terms/>), which ask not to fetch it more than once an
    /// hour: `list update` skips it when the last fetch is more recent.
    SpamhausDrop,
    /// FireHOL level 1 (`firehol_level1.netset`): attacks lists with the fewest false positives,
    /// including bogons and the private ranges, so pair it with `except` entries for your own
    /// private networks. IPv4 only.
    FireholLevel1,
    /// stamparm/ipsum (`ipsum.txt`): addresses with the number of public blocklists that name
    /// them, refreshed daily; kept from a score of 3 unless `--min-score` says otherwise.
    Ipsum,
}

impl Preset {
    pub const ALL: [Preset; 3] = [Preset::SpamhausDrop, Preset::FireholLevel1, Preset::Ipsum];

    pub const fn name(self) -> &'static str {
        match self {
            Preset::SpamhausDrop => "spamhaus-drop",
            Preset::FireholLevel1 => "firehol-level1",
            Preset::Ipsum => "ipsum",
        }
    }

    /// The files of the preset, fetched and read together.
    pub const fn urls(self) -> &'static [&'static str] {
        match self {
            Preset::SpamhausDrop => &[
                "https://www.spamhaus.org/drop/drop_v4.json",
                "https://www.spamhaus.org/drop/drop_v6.json",
            ],
            Preset::FireholLevel1 => &[
                "https://raw.githubusercontent.com/firehol/blocklist-ipsets/master/firehol_level1.netset",
            ],
            Preset::Ipsum => &["https://raw.githubusercontent.com/stamparm/ipsum/master/ipsum.txt"],
        }
    }

    pub const fn format(self) -> ListFormat {
        match self {
            Preset::SpamhausDrop => ListFormat::SpamhausJson,
            Preset::FireholLevel1 => ListFormat::Netset,
            Preset::Ipsum => ListFormat::Ipsum,
        }
    }

    pub const fn default_min_score(self) -> Option<u32> {
        match self {
            Preset::Ipsum => Some(DEFAULT_MIN_SCORE),
            _ => None,
        }
    }

    /// The shortest time between two fetches the publisher asks for, in seconds.
    pub const fn min_interval_s(self) -> u64 {
        match self {
            Preset::SpamhausDrop => 3600,
            _ => 0,
        }
    }
}

/// A list's source. In the state file and on the control socket it is written tagged
/// (`{"file": "/etc/geofilter/mine.txt"}`, `{"url": "..."}`, `{"preset": "ipsum"}`); on the
/// command line as text ([`FromStr`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ListSource {
    File(PathBuf),
    Url(String),
    Preset(Preset),
}

impl FromStr for ListSource {
    type Err = ListError;

    /// A preset name, an `http://` or `https://` URL, or else a file path (`./ipsum` for a file
    /// that has a preset's name).
    fn from_str(s: &str) -> Result<Self, ListError> {
        let bad = |reason: &str| ListError::BadSource {
            text: s.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(p) = Preset::ALL.into_iter().find(|p| p.name() == s) {
            return Ok(ListSource::Preset(p));
        }
        if s.starts_with("http://") || s.starts_with("https://") {
            // Checked now, so `list add` fails before anything is fetched.
            url_download(s).map_err(|e| bad(&e.to_string()))?;
            return Ok(ListSource::Url(s.to_owned()));
        }
        if s.contains("://") {
            return Err(bad(
                "only http:// and https:// URLs, a file path, or a preset name (spamhaus-drop, firehol-level1, ipsum)",
            ));
        }
        if s.is_empty() {
            return Err(bad("empty"));
        }
        Ok(ListSource::File(PathBuf::from(s)))
    }
}

impl fmt::Display for ListSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListSource::File(p) => write!(f, "{}", p.display()),
            ListSource::Url(u) => f.write_str(u),
            ListSource::Preset(p) => f.write_str(p.name()),
        }
    }
}

impl ListSource {
    /// The source as the command line gives it, with a relative file path made absolute (the
    /// daemon that reads it runs in another folder).
    pub fn from_cli(s: &str) -> Result<Self, ListError> {
        match s.parse()? {
            ListSource::File(p) => std::path::absolute(&p)
                .map(ListSource::File)
                .map_err(ListError::io("resolve", p)),
            other => Ok(other),
        }
    }

    /// The files to fetch; empty for a local file.
    pub fn downloads(&self) -> Vec<Download> {
        let url = |u: &str| url_download(u).expect("checked when parsed, presets are valid");
        match self {
            ListSource::File(_) => Vec::new(),
            ListSource::Url(u) => vec![url(u)],
            ListSource::Preset(p) => p.urls().iter().map(|u| url(u)).collect(),
        }
    }

    /// The format a preset is in (others are detected unless forced).
    pub fn format(&self) -> Option<ListFormat> {
        match self {
            ListSource::Preset(p) => Some(p.format()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_and_print() {
        let src = |s: &str| s.parse::<ListSource>();
        assert_eq!(src("ipsum").unwrap(), ListSource::Preset(Preset::Ipsum));
        assert_eq!(src("./ipsum").unwrap(), ListSource::File("./ipsum".into()));
        assert_eq!(
            src("https://x.example/l/drop.txt").unwrap(),
            ListSource::Url("https://x.example/l/drop.txt".into())
        );
        assert!(
            src("https://x.example/")
                .unwrap_err()
                .to_string()
                .contains("file name")
        );
        assert!(
            src("ftp://x/l.txt")
                .unwrap_err()
                .to_string()
                .contains("only http")
        );
        assert!(src("").is_err());
        for p in Preset::ALL {
            assert_eq!(src(p.name()).unwrap().to_string(), p.name());
            assert!(!ListSource::Preset(p).downloads().is_empty());
        }
        let d = ListSource::Preset(Preset::SpamhausDrop).downloads();
        assert_eq!(
            d.iter().map(|d| d.file_name.as_str()).collect::<Vec<_>>(),
            ["drop_v4.json", "drop_v6.json"]
        );
        let abs = ListSource::from_cli("mine.txt").unwrap();
        assert!(matches!(&abs, ListSource::File(p) if p.is_absolute() && p.ends_with("mine.txt")));
        // Tagged in the state file.
        let json = serde_json::to_string(&ListSource::Preset(Preset::FireholLevel1)).unwrap();
        assert_eq!(json, r#"{"preset":"firehol-level1"}"#);
        let back: ListSource = serde_json::from_str(r#"{"file":"/etc/l.txt"}"#).unwrap();
        assert_eq!(back, ListSource::File("/etc/l.txt".into()));
    }
}
