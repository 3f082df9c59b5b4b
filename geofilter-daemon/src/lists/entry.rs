//! What is known of each list: the state file's [`ListEntry`], `list add`'s [`ListSpec`], `list
//! show`'s [`ListRow`], `list update`'s [`UpdateReport`], and the name rules.

use serde::{Deserialize, Serialize};

use super::{ListError, ListFormat, ListSource, cache::Reading};

/// The most lists: each is one bit of the kernel's 32-bit list mask.
pub const MAX_LISTS: usize = 32;

/// The longest list name (it labels Prometheus series and `why` output).
pub const MAX_NAME: usize = 32;

/// What a packet from a listed address gets.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum ListAction {
    /// Drop it (a blocklist).
    #[default]
    Drop,
    /// Pass it whatever its country (an allowlist: partners, monitoring, your own networks).
    Pass,
}

/// What `list add` asks for; also the control-socket request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListSpec {
    pub name: String,
    pub source: ListSource,
    #[serde(default)]
    pub action: ListAction,
    /// ipsum only: the lowest score kept [default: 3].
    #[serde(default)]
    pub min_score: Option<u32>,
    /// Forces the format [default: the preset's, else detected].
    #[serde(default)]
    pub format: Option<ListFormat>,
}

/// One list as the state file keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListEntry {
    pub name: String,
    pub source: ListSource,
    #[serde(default)]
    pub action: ListAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_score: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<ListFormat>,
    /// Whether the policy uses it (a new list is enabled).
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// When its source was last read successfully, changed or not (Unix seconds).
    #[serde(default)]
    pub last_update: Option<u64>,
    /// SHA-256 of the content in force.
    #[serde(default)]
    pub sha256: Option<String>,
    /// CIDR prefixes of the content in force.
    #[serde(default)]
    pub prefixes: usize,
}

fn enabled() -> bool {
    true
}

impl ListEntry {
    pub(super) fn reading(&self) -> Reading<'_> {
        Reading {
            source: &self.source,
            format: self.format,
            min_score: self.min_score,
        }
    }

    /// `cause`, as the error of this list: its name and source first.
    pub(super) fn failed(&self, cause: ListError) -> ListError {
        ListError::List {
            name: self.name.clone(),
            from: self.source.to_string(),
            cause: Box::new(cause),
        }
    }
}

/// One row of `list show`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRow {
    pub name: String,
    /// The source as written on the command line.
    pub source: String,
    pub action: ListAction,
    pub enabled: bool,
    /// The format read (forced, the preset's, or detected); `None` before the first load.
    pub format: Option<ListFormat>,
    /// The minimum score applied (ipsum).
    pub min_score: Option<u32>,
    pub entries: usize,
    pub prefixes_v4: usize,
    pub prefixes_v6: usize,
    pub addresses_v4: u64,
    /// A decimal string (see [`ListCounts::addresses_v6`](super::ListCounts)).
    #[serde(with = "super::prefixes::decimal")]
    pub addresses_v6: u128,
    pub last_update: Option<u64>,
    pub sha256: Option<String>,
    /// Why the last update failed (the addresses shown are the last good ones).
    pub error: Option<String>,
}

/// What `update` did.
#[derive(Debug, Default)]
pub struct UpdateReport {
    /// Lists whose addresses changed: their tables need rebuilding.
    pub changed: Vec<String>,
    /// Lists read successfully with the same addresses as before.
    pub unchanged: Vec<String>,
    /// Lists not fetched, and why (a publisher's minimum interval).
    pub skipped: Vec<(String, String)>,
    /// Lists that kept their last good copy ([`ListError::List`]: name, source, cause).
    pub failed: Vec<ListError>,
}

/// Checks a list name: `[a-z0-9][a-z0-9_-]*`, at most [`MAX_NAME`] characters (it names a
/// folder, a Prometheus label value and a bit of the policy).
pub fn check_name(name: &str) -> Result<(), ListError> {
    let bad = |reason| {
        Err(ListError::BadName {
            name: name.to_owned(),
            reason,
        })
    };
    let b = name.as_bytes();
    if b.is_empty() || b.len() > MAX_NAME {
        return bad("a name is 1 to 32 characters");
    }
    if !b[0].is_ascii_lowercase() && !b[0].is_ascii_digit() {
        return bad("a name starts with a lower-case letter or a digit");
    }
    if !b
        .iter()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_')
    {
        return bad("a name has only lower-case letters, digits, - and _");
    }
    Ok(())
}
