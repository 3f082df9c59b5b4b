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

use super::{
    ListEntry, ListError, ListPrefixes, ListRow, ListSource, ListSpec, MAX_LISTS, UpdateReport,
    cache::{self, Loaded},
    check_name,
};

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
