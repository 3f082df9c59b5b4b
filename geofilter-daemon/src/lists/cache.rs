//! A list's last good copy on disk: `<cache>/<name>/` holds its files as last fetched (or
//! copied, for a local file) and validated, and `validators.json` the ETag and Last-Modified
//! each was served with, so the next fetch is conditional and a daemon that restarts without
//! network still has the list.
//!
//! New content goes through [`download::fetch_validate_store`] (URLs) or the same staging
//! folder (files): it replaces the copy only once the whole list has been read without an error.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::{Read as _, Write as _},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{ListError, ListFormat, ListPrefixes, ListSource, read_list};
use crate::{
    fleet::Validators,
    geoip::{
        download::{self, FetchOptions, Staging},
        input,
    },
};

/// The largest list file accepted. The largest common lists are a few MiB (ipsum about 4 MiB,
/// FireHOL level 4 a few hundred KiB); this stops a wrong URL from filling the disk.
pub const MAX_LIST_BYTES: u64 = 64 << 20;

const VALIDATORS: &str = "validators.json";

/// A list as read from its copy.
#[derive(Clone, Debug)]
pub(crate) struct Loaded {
    pub prefixes: ListPrefixes,
    /// SHA-256 of the list's files, one after the other (for one file, what `sha256sum` says).
    pub sha256: String,
}

/// What a list is read as: its source, and how to read it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reading<'a> {
    pub source: &'a ListSource,
    pub format: Option<ListFormat>,
    pub min_score: Option<u32>,
}

impl Reading<'_> {
    fn read(&self, paths: &[PathBuf]) -> Result<ListPrefixes, ListError> {
        read_list(paths, self.format.or(self.source.format()), self.min_score)
    }
}

/// The folder of list `name` in `cache`.
pub(crate) fn folder(cache: &Path, name: &str) -> PathBuf {
    cache.join(name)
}

/// The names the list's files are kept under, in reading order.
fn file_names(source: &ListSource) -> Result<Vec<String>, ListError> {
    match source {
        ListSource::File(path) => path
            .file_name()
            .map(|n| vec![n.to_string_lossy().into_owned()])
            .ok_or_else(|| ListError::BadSource {
                text: path.display().to_string(),
                reason: "not a file name".into(),
            }),
        _ => Ok(source
            .downloads()
            .into_iter()
            .map(|d| d.file_name)
            .collect()),
    }
}

/// Reads the copy in `dir` (no network).
pub(crate) fn load(dir: &Path, how: Reading<'_>) -> Result<Loaded, ListError> {
    let paths: Vec<PathBuf> = file_names(how.source)?
        .into_iter()
        .map(|n| dir.join(n))
        .collect();
    if let Some(missing) = paths.iter().find(|p| !p.is_file()) {
        return Err(ListError::NotCached {
            path: missing.clone(),
        });
    }
    let prefixes = how.read(&paths)?;
    Ok(Loaded {
        prefixes,
        sha256: sha256_of(&paths)?,
    })
}

/// Fetches (or copies) the list's source into `dir`, replacing the copy only if the new content
/// reads whole.
pub(crate) fn refresh(dir: &Path, how: Reading<'_>) -> Result<Loaded, ListError> {
    match how.source {
        ListSource::File(path) => copy_in(path, dir, how),
        _ => fetch_in(dir, how),
    }
}

fn fetch_in(dir: &Path, how: Reading<'_>) -> Result<Loaded, ListError> {
    let downloads = how.source.downloads();
    let known = read_validators(dir);
    let options = FetchOptions {
        progress: false,
        limit: MAX_LIST_BYTES,
        known: downloads
            .iter()
            .map(|d| known.get(&d.file_name).cloned().unwrap_or_default().into())
            .collect(),
    };
    let (files, prefixes) = download::fetch_validate_store(&downloads, dir, &options, |files| {
        let paths: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
        how.read(&paths).map_err(|cause| ListError::Invalid {
            cause: Box::new(cause.relative_to(dir)),
            from: files
                .iter()
                .map(|f| f.url.as_str())
                .collect::<Vec<_>>()
                .join(" + "),
        })
    })?;
    let validators: BTreeMap<String, Stored> = downloads
        .iter()
        .zip(&files)
        .map(|(d, f)| (d.file_name.clone(), Stored::from(&f.validators)))
        .collect();
    write_validators(dir, &validators)?;
    let paths: Vec<PathBuf> = files.into_iter().map(|f| f.path).collect();
    Ok(Loaded {
        prefixes,
        sha256: sha256_of(&paths)?,
    })
}

/// Copies a local file into `dir` through a staging folder, as a download would arrive.
fn copy_in(path: &Path, dir: &Path, how: Reading<'_>) -> Result<Loaded, ListError> {
    let name = &file_names(how.source)?[0];
    fs::create_dir_all(dir).map_err(ListError::io("create", dir))?;
    let staging = Staging::new(dir)?;
    let staged = staging.dir.join(name);
    // Opened as the readers open it: a FIFO or a device is refused, not read forever.
    let (file, size) = input::open_regular(path)?;
    if size > MAX_LIST_BYTES {
        return Err(ListError::Read(crate::geoip::DbError::Invalid {
            path: path.to_owned(),
            reason: format!(
                "is {} MiB, more than the {} MiB a list may be",
                size.div_ceil(1 << 20),
                MAX_LIST_BYTES >> 20
            ),
        }));
    }
    let mut out = File::create(&staged).map_err(ListError::io("create", &staged))?;
    std::io::copy(&mut file.take(MAX_LIST_BYTES), &mut out)
        .and_then(|_| out.sync_all())
        .map_err(ListError::io("copy", path))?;
    // Read from the copy, so what is validated is what is kept, whatever happens to the original
    // meanwhile.
    let prefixes = how
        .read(std::slice::from_ref(&staged))
        .map_err(|cause| ListError::Invalid {
            from: path.display().to_string(),
            cause: Box::new(cause.relative_to(dir)),
        })?;
    let target = dir.join(name);
    fs::rename(&staged, &target).map_err(ListError::io("rename into place", &target))?;
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(ListError::io("sync", dir))?;
    Ok(Loaded {
        prefixes,
        sha256: sha256_of(&[target])?,
    })
}

fn sha256_of(paths: &[PathBuf]) -> Result<String, ListError> {
    let mut hash = Sha256::new();
    for path in paths {
        let bytes = fs::read(path).map_err(ListError::io("read", path))?;
        hash.update(&bytes);
    }
    Ok(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// [`Validators`] as kept in `validators.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Stored {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_modified: Option<String>,
}

impl From<&Validators> for Stored {
    fn from(v: &Validators) -> Self {
        Self {
            etag: v.etag.clone(),
            last_modified: v.last_modified.clone(),
        }
    }
}

impl From<Stored> for Validators {
    fn from(s: Stored) -> Self {
        Validators {
            etag: s.etag,
            last_modified: s.last_modified,
        }
    }
}

/// The validators kept for `dir`'s files; none when the file is missing or unreadable (the next
/// fetch is then unconditional, which is always correct).
fn read_validators(dir: &Path) -> BTreeMap<String, Stored> {
    fs::read(dir.join(VALIDATORS))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn write_validators(dir: &Path, v: &BTreeMap<String, Stored>) -> Result<(), ListError> {
    let path = dir.join(VALIDATORS);
    let tmp = dir.join(format!(".{VALIDATORS}.tmp"));
    let json = serde_json::to_vec_pretty(v).expect("validators serialize");
    File::create(&tmp)
        .and_then(|mut f| f.write_all(&json).and_then(|()| f.sync_all()))
        .map_err(ListError::io("write", &tmp))?;
    fs::rename(&tmp, &path).map_err(ListError::io("rename into place", &path))
}
