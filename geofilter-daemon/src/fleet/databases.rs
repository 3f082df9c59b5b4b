//! The databases a policy document names: local files as they are, URLs fetched into the
//! host's cache through `db update`'s path; and what identifies the tables compiled from them.

use std::{
    fs,
    path::{Path, PathBuf},
};

use super::{Follower, store::sha256_hex};
use crate::geoip::{
    Format,
    update::{self, Download},
};

/// What the tables in force were compiled from: each file with its content hash, and the
/// format. A revision with the same inputs changes the policy only (O(1), no table rebuild).
pub(super) type DbKey = (Vec<(PathBuf, String)>, Option<Format>);

impl Follower {
    /// The cached copy of the database at `url`: fetched, checked against its pin and validated
    /// by `db update`'s path, then kept under its content hash (so a later revision that fails
    /// never replaces the file the state file names).
    pub(super) fn cached(
        &self,
        url: &str,
        pin: Option<&str>,
        format: Option<Format>,
    ) -> Result<PathBuf, String> {
        let name = update::url_download(url)
            .map_err(|e| e.to_string())?
            .file_name;
        let folder = self.store.db_folder(url);
        if let Some(pin) = pin {
            let cached = folder.join(&pin[..16]).join(&name);
            if content_hash(&cached).as_deref() == Some(pin) {
                return Ok(cached);
            }
        }
        let incoming = folder.join("incoming");
        let download = Download {
            urls: vec![url.to_owned()],
            file_name: name.clone(),
            sha256: pin.map(str::to_owned),
        };
        let stored = update::fetch_and_store(&[download], &incoming, format, false)
            .map_err(|e| e.to_string())?;
        let fetched = &stored.paths[0];
        // A pinned download was checked against its pin by `fetch_and_store`.
        let sha = match pin {
            Some(pin) => pin.to_owned(),
            None => {
                content_hash(fetched).ok_or_else(|| format!("reading {}", fetched.display()))?
            }
        };
        let kept = folder.join(&sha[..16]);
        let path = kept.join(&name);
        if !path.exists() {
            fs::create_dir_all(&kept).map_err(|e| format!("creating {}: {e}", kept.display()))?;
            fs::rename(fetched, &path).map_err(|e| format!("storing {}: {e}", path.display()))?;
        }
        let _ = fs::remove_dir_all(&incoming);
        Ok(path)
    }
}

pub(super) fn db_key(paths: &[PathBuf], format: Option<Format>) -> DbKey {
    let files = paths
        .iter()
        .map(|p| (p.clone(), content_hash(p).unwrap_or_default()))
        .collect();
    (files, format)
}

/// A file's SHA-256; a folder (a CIDR directory) by its modification time.
fn content_hash(path: &Path) -> Option<String> {
    let meta = fs::metadata(path).ok()?;
    if meta.is_dir() {
        return Some(format!("{:?}", meta.modified().ok()?));
    }
    fs::read(path).ok().map(|bytes| sha256_hex(&bytes))
}
