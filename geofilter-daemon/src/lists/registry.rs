//! The named lists: what the state file keeps of each ([`ListEntry`]), their addresses in
//! memory, and the verbs over them (`list add`, `del`, `update`, `show`).
//!
//! Every change is validated whole before anything is replaced: `add` keeps nothing of a list
//! that does not read, and `update` keeps a list's last good addresses (and its copy on disk)
//! when the new content cannot be fetched or read, reporting an error that names the list, its
//! source and the cause.
//!
//! The methods block on files and the network (up to the download timeouts); the daemon calls
//! them off its async threads, one at a time.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use super::{
    ListError, ListFormat, ListPrefixes, ListSource,
    cache::{self, Loaded, Reading},
};

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
    fn reading(&self) -> Reading<'_> {
        Reading {
            source: &self.source,
            format: self.format,
            min_score: self.min_score,
        }
    }

    fn failed(&self, cause: ListError) -> ListError {
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

struct Held {
    entry: ListEntry,
    /// `None` until the list has been read once (a restored list whose copy is missing).
    prefixes: Option<ListPrefixes>,
    error: Option<String>,
}

/// The named lists, their addresses, and their copies under one cache folder.
pub struct Lists {
    cache: PathBuf,
    lists: BTreeMap<String, Held>,
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

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Lists {
    /// No lists; copies will be kept under `cache` (the daemon's state folder).
    pub fn new(cache: impl Into<PathBuf>) -> Self {
        Self {
            cache: cache.into(),
            lists: BTreeMap::new(),
        }
    }

    /// The lists of a state file, read from their copies under `cache` without the network. A
    /// list whose copy is missing or unreadable is kept (so `list update` can repair it) without
    /// addresses, and its error returned. Entries no `add` would have accepted (a bad or
    /// repeated name, more than [`MAX_LISTS`]) are left out, with an error each.
    pub fn restore(cache: impl Into<PathBuf>, entries: Vec<ListEntry>) -> (Self, Vec<ListError>) {
        let mut lists = Self::new(cache);
        let mut errors = Vec::new();
        for entry in entries {
            let refused = if let Err(e) = check_name(&entry.name) {
                Some(e)
            } else if lists.lists.contains_key(&entry.name) {
                Some(ListError::Exists(entry.name.clone()))
            } else if lists.lists.len() >= MAX_LISTS {
                Some(ListError::TooMany {
                    name: entry.name.clone(),
                })
            } else {
                None
            };
            if let Some(e) = refused {
                errors.push(entry.failed(e));
                continue;
            }
            let dir = cache::folder(&lists.cache, &entry.name);
            let (prefixes, error) = match cache::load(&dir, entry.reading()) {
                Ok(loaded) => (Some(loaded.prefixes), None),
                Err(e) => {
                    let e = entry.failed(e);
                    let text = e.to_string();
                    errors.push(e);
                    (None, Some(text))
                }
            };
            lists.lists.insert(
                entry.name.clone(),
                Held {
                    entry,
                    prefixes,
                    error,
                },
            );
        }
        (lists, errors)
    }

    /// The cache folder.
    pub fn cache(&self) -> &Path {
        &self.cache
    }

    /// The entries, by name, for the state file.
    pub fn entries(&self) -> Vec<ListEntry> {
        self.lists.values().map(|h| h.entry.clone()).collect()
    }

    pub fn get(&self, name: &str) -> Option<&ListEntry> {
        self.lists.get(name).map(|h| &h.entry)
    }

    /// A list's addresses in force (`None`: unknown name, or never read).
    pub fn prefixes(&self, name: &str) -> Option<&ListPrefixes> {
        self.lists.get(name).and_then(|h| h.prefixes.as_ref())
    }

    /// The names of the lists that hold `ip`, enabled or not (for `why`).
    pub fn holding(&self, ip: IpAddr) -> Vec<&str> {
        self.lists
            .iter()
            .filter(|(_, h)| h.prefixes.as_ref().is_some_and(|p| p.contains(ip)))
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// Reads a new list from its source and adds it, enabled. Nothing is added (nor cached) when
    /// it cannot be read.
    pub fn add(&mut self, spec: ListSpec) -> Result<&ListEntry, ListError> {
        check_name(&spec.name)?;
        if self.lists.contains_key(&spec.name) {
            return Err(ListError::Exists(spec.name));
        }
        if self.lists.len() >= MAX_LISTS {
            return Err(ListError::TooMany { name: spec.name });
        }
        let mut entry = ListEntry {
            min_score: spec.min_score,
            format: spec.format,
            name: spec.name,
            source: spec.source,
            action: spec.action,
            enabled: true,
            last_update: None,
            sha256: None,
            prefixes: 0,
        };
        let dir = cache::folder(&self.cache, &entry.name);
        let loaded = match cache::refresh(&dir, entry.reading()) {
            Ok(l) => l,
            Err(e) => {
                // Nothing of a list that never loaded stays behind.
                let _ = std::fs::remove_dir_all(&dir);
                return Err(entry.failed(e));
            }
        };
        record(&mut entry, &loaded);
        let name = entry.name.clone();
        let held = self.lists.entry(name).or_insert(Held {
            entry,
            prefixes: Some(loaded.prefixes),
            error: None,
        });
        Ok(&held.entry)
    }

    /// Removes a list and its copy.
    pub fn del(&mut self, name: &str) -> Result<ListEntry, ListError> {
        let held = self
            .lists
            .remove(name)
            .ok_or_else(|| ListError::NoSuchList(name.to_owned()))?;
        let dir = cache::folder(&self.cache, name);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(path = %dir.display(), "list {name} removed, its copy not: {e}");
            }
            _ => {}
        }
        Ok(held.entry)
    }

    /// Turns a list on or off in the policy; returns whether that changed anything.
    pub fn set_enabled(&mut self, name: &str, enabled: bool) -> Result<bool, ListError> {
        let held = self
            .lists
            .get_mut(name)
            .ok_or_else(|| ListError::NoSuchList(name.to_owned()))?;
        let changed = held.entry.enabled != enabled;
        held.entry.enabled = enabled;
        Ok(changed)
    }

    /// Re-reads one list (`Some(name)`) or all from their sources. A list that fails keeps its
    /// last good addresses and copy; its error is in [`UpdateReport::failed`]. Only an unknown
    /// name is an error here.
    pub fn update(&mut self, name: Option<&str>) -> Result<UpdateReport, ListError> {
        let names: Vec<String> = match name {
            Some(n) if self.lists.contains_key(n) => vec![n.to_owned()],
            Some(n) => return Err(ListError::NoSuchList(n.to_owned())),
            None => self.lists.keys().cloned().collect(),
        };
        let mut report = UpdateReport::default();
        let now = now();
        for name in names {
            let held = self.lists.get_mut(&name).expect("listed above");
            if let ListSource::Preset(p) = held.entry.source
                && let Some(last) = held.entry.last_update
                && held.prefixes.is_some()
                && now.saturating_sub(last) < p.min_interval_s()
            {
                report.skipped.push((
                    name,
                    format!(
                        "fetched {} s ago; {} asks for at most one fetch every {} s",
                        now.saturating_sub(last),
                        p.name(),
                        p.min_interval_s()
                    ),
                ));
                continue;
            }
            let dir = cache::folder(&self.cache, &name);
            match cache::refresh(&dir, held.entry.reading()) {
                Ok(loaded) => {
                    let same = held
                        .prefixes
                        .as_ref()
                        .is_some_and(|p| p.same_addresses(&loaded.prefixes));
                    record(&mut held.entry, &loaded);
                    held.prefixes = Some(loaded.prefixes);
                    held.error = None;
                    if same {
                        report.unchanged.push(name);
                    } else {
                        report.changed.push(name);
                    }
                }
                Err(e) => {
                    let e = held.entry.failed(e);
                    held.error = Some(e.to_string());
                    report.failed.push(e);
                }
            }
        }
        Ok(report)
    }

    /// One row per list, by name.
    pub fn show(&self) -> Vec<ListRow> {
        self.lists
            .values()
            .map(|h| {
                let counts = h.prefixes.as_ref().map(|p| p.counts).unwrap_or_default();
                ListRow {
                    name: h.entry.name.clone(),
                    source: h.entry.source.to_string(),
                    action: h.entry.action,
                    enabled: h.entry.enabled,
                    format: counts.format,
                    min_score: counts.min_score,
                    entries: counts.entries,
                    prefixes_v4: counts.prefixes_v4,
                    prefixes_v6: counts.prefixes_v6,
                    addresses_v4: counts.addresses_v4,
                    addresses_v6: counts.addresses_v6,
                    last_update: h.entry.last_update,
                    sha256: h.entry.sha256.clone(),
                    error: h.error.clone(),
                }
            })
            .collect()
    }
}

fn record(entry: &mut ListEntry, loaded: &Loaded) {
    entry.last_update = Some(now());
    entry.sha256 = Some(loaded.sha256.clone());
    entry.prefixes = loaded.prefixes.counts.prefixes();
}
