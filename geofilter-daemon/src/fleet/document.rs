//! The policy document a fleet publishes: the `--config` TOML without the fields that are per
//! host (interfaces and how to attach to them stay on each host's command line).

use std::path::PathBuf;

use serde::Deserialize;

use crate::{geoip::Format, policy::DesiredPolicy};

/// One revision of the desired state, as published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyDocument {
    pub dbs: Vec<DbRef>,
    pub db_format: Option<Format>,
    pub policy: DesiredPolicy,
}

/// A database the document names: a local file, or a URL fetched into the host's cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DbRef {
    Path(PathBuf),
    Url {
        url: String,
        /// Lower-case hex; a download that hashes differently is refused.
        sha256: Option<String>,
    },
}

/// The document as written: `dbs` entries are strings (a path, or a URL) or `{ url, sha256 }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    dbs: Vec<RawDb>,
    #[serde(default)]
    db_format: Option<String>,
    #[serde(default)]
    policy: DesiredPolicy,
    // Per host: named so the error can say where they go instead of "unknown field".
    interfaces: Option<toml::Value>,
    xdp_mode: Option<toml::Value>,
    xdp_attach: Option<toml::Value>,
    xdp_priority: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawDb {
    Plain(String),
    Pinned { url: String, sha256: Option<String> },
}

#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("not UTF-8 text")]
    NotUtf8,
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    #[error("`{0}` is per host: give it on each host's command line (`--{1}`), not in the policy")]
    PerHost(&'static str, &'static str),
    #[error("dbs: {0}")]
    BadDb(String),
    #[error("db_format: {0}")]
    BadFormat(String),
}

impl PolicyDocument {
    pub fn parse(bytes: &[u8]) -> Result<Self, DocumentError> {
        let text = std::str::from_utf8(bytes).map_err(|_| DocumentError::NotUtf8)?;
        let raw: Raw = toml::from_str(text)?;
        for (present, field, flag) in [
            (raw.interfaces.is_some(), "interfaces", "iface"),
            (raw.xdp_mode.is_some(), "xdp_mode", "xdp-mode"),
            (raw.xdp_attach.is_some(), "xdp_attach", "xdp-attach"),
            (raw.xdp_priority.is_some(), "xdp_priority", "xdp-priority"),
        ] {
            if present {
                return Err(DocumentError::PerHost(field, flag));
            }
        }
        let dbs = raw
            .dbs
            .into_iter()
            .map(DbRef::from_raw)
            .collect::<Result<_, _>>()?;
        let db_format = raw
            .db_format
            .map(|name| name.parse().map_err(DocumentError::BadFormat))
            .transpose()?;
        Ok(Self {
            dbs,
            db_format,
            policy: raw.policy,
        })
    }
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

impl DbRef {
    fn from_raw(raw: RawDb) -> Result<Self, DocumentError> {
        match raw {
            RawDb::Plain(s) if is_url(&s) => Ok(DbRef::Url {
                url: s,
                sha256: None,
            }),
            RawDb::Plain(s) if s.starts_with('/') => Ok(DbRef::Path(PathBuf::from(s))),
            RawDb::Plain(s) => Err(DocumentError::BadDb(format!(
                "{s:?}: a database is an absolute path or an http(s):// URL"
            ))),
            RawDb::Pinned { url, sha256 } => {
                if !is_url(&url) {
                    return Err(DocumentError::BadDb(format!(
                        "{url:?}: `url` must be an http(s):// URL"
                    )));
                }
                let sha256 = sha256.map(|h| h.to_ascii_lowercase());
                if let Some(h) = &sha256
                    && (h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
                {
                    return Err(DocumentError::BadDb(format!(
                        "{url}: sha256 {h:?} is not 64 hex digits"
                    )));
                }
                Ok(DbRef::Url { url, sha256 })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_with_every_kind_of_database() {
        let doc = PolicyDocument::parse(
            br#"
dbs = ["/var/lib/a.csv", "https://x.example/b.csv", { url = "http://10.0.0.1/c.csv", sha256 = "AB00000000000000000000000000000000000000000000000000000000000000" }]
db_format = "range-csv"
[policy]
countries = ["RU", "by"]
"#,
        )
        .unwrap();
        assert_eq!(doc.dbs.len(), 3);
        assert_eq!(doc.dbs[0], DbRef::Path("/var/lib/a.csv".into()));
        assert!(matches!(&doc.dbs[2], DbRef::Url { sha256: Some(h), .. } if h.starts_with("ab")));
        assert_eq!(doc.policy.countries.len(), 2);
    }

    #[test]
    fn per_host_fields_and_bad_values_are_refused_with_where() {
        let err = |text: &str| {
            PolicyDocument::parse(text.as_bytes())
                .unwrap_err()
                .to_string()
        };
        assert!(err("interfaces = [\"eth0\"]").contains("--iface"));
        assert!(err("xdp_mode = \"skb\"").contains("--xdp-mode"));
        assert!(err("dbs = [\"relative.csv\"]").contains("relative.csv"));
        assert!(err("dbs = [{ url = \"http://x/a\", sha256 = \"12\" }]").contains("64 hex"));
        assert!(err("[policy]\ncountries = [\"RX\"]").contains("RX"));
        assert!(err("[policy]\nmode = \"sometimes\"").contains("sometimes"));
        assert!(err("colour = 1").contains("colour"));
        assert!(err("db_format = \"embedded\"").contains("embedded"));
        assert!(PolicyDocument::parse(b"\xff").is_err());
    }

    #[test]
    fn an_empty_document_is_the_embedded_database_with_nothing_blocked() {
        let doc = PolicyDocument::parse(b"").unwrap();
        assert!(doc.dbs.is_empty() && doc.policy == DesiredPolicy::default());
    }
}
