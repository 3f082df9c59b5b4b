//! The last good revision on disk, so a host that restarts while its policy source is down
//! enforces it: the document and its validators here, its databases in a cache beside it, and
//! the policy and database paths it compiled to in the state file (which the daemon restores at
//! start-up anyway). Kept in `<state folder>/policy/`.

use std::{
    fs,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::source::Validators;

/// Lower-case hex SHA-256, the revision id shown to operators (`sha256sum policy.toml`).
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What identifies the revision in force.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    /// The source it was read from, as given to `--policy`.
    pub source: String,
    /// SHA-256 of the document.
    pub sha256: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Unix seconds.
    pub applied_at: u64,
}

impl Revision {
    pub fn validators(&self) -> Validators {
        Validators {
            etag: self.etag.clone(),
            last_modified: self.last_modified.clone(),
        }
    }
}

pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store beside `state_file`.
    pub fn beside(state_file: &Path) -> Self {
        let folder = state_file.parent().unwrap_or(Path::new("."));
        Self {
            dir: folder.join("policy"),
        }
    }

    fn revision_file(&self) -> PathBuf {
        self.dir.join("revision.json")
    }

    /// The revision saved by the last successful apply from `source` (another source's does not
    /// count: the state file then holds another policy).
    pub fn load(&self, source: &str) -> Option<Revision> {
        let text = fs::read_to_string(self.revision_file()).ok()?;
        serde_json::from_str::<Revision>(&text)
            .ok()
            .filter(|r| r.source == source)
    }

    /// Records `revision` (after the state file holds what it compiled to).
    pub fn save(&self, document: &[u8], revision: &Revision) -> anyhow::Result<()> {
        crate::state::write_atomic(&self.dir.join("policy.toml"), document)?;
        let mut text = serde_json::to_string_pretty(revision)?;
        text.push('\n');
        crate::state::write_atomic(&self.revision_file(), text.as_bytes())
    }

    /// The document of the saved revision.
    pub fn document(&self) -> Option<super::PolicyDocument> {
        let bytes = fs::read(self.dir.join("policy.toml")).ok()?;
        super::PolicyDocument::parse(&bytes).ok()
    }

    /// Removes cached databases the revision in force does not use (`keep`), so the cache holds
    /// one copy per URL, not one per revision ever published.
    pub fn prune<'a>(&self, keep: impl Iterator<Item = &'a Path>) {
        let keep: Vec<&Path> = keep.collect();
        let Ok(urls) = fs::read_dir(self.dir.join("dbs")) else {
            return;
        };
        for url in urls.flatten() {
            let Ok(copies) = fs::read_dir(url.path()) else {
                continue;
            };
            for copy in copies.flatten() {
                let path = copy.path();
                if !keep.iter().any(|k| k.starts_with(&path)) {
                    let _ = fs::remove_dir_all(&path);
                }
            }
        }
    }

    /// Where the database fetched from `url` is cached: one folder per URL.
    pub fn db_folder(&self, url: &str) -> PathBuf {
        self.dir.join("dbs").join(&sha256_hex(url.as_bytes())[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revision_is_restored_for_its_own_source_only_and_the_cache_keeps_what_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::beside(&dir.path().join("state.json"));
        assert_eq!(store.load("http://a/p.toml"), None);
        let revision = Revision {
            source: "http://a/p.toml".into(),
            sha256: sha256_hex(b"[policy]\ncountries = [\"RU\"]\n"),
            etag: Some("\"1\"".into()),
            last_modified: None,
            applied_at: 1,
        };
        store
            .save(b"[policy]\ncountries = [\"RU\"]\n", &revision)
            .unwrap();
        assert_eq!(store.load("http://a/p.toml"), Some(revision));
        assert_eq!(
            store.load("http://b/p.toml"),
            None,
            "another source's revision"
        );
        assert_eq!(store.document().unwrap().policy.countries.len(), 1);

        let url = store.db_folder("http://a/db.csv");
        let (old, new) = (url.join("aaaa"), url.join("bbbb"));
        for copy in [&old, &new] {
            fs::create_dir_all(copy).unwrap();
            fs::write(copy.join("db.csv"), "x").unwrap();
        }
        let kept = new.join("db.csv");
        store.prune(std::iter::once(kept.as_path()));
        assert!(kept.exists() && !old.exists());
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
