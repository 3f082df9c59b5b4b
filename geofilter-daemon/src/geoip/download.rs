//! Fetching a set of files over HTTP(S) into a destination folder, all or nothing: staged beside
//! their predecessors (same filesystem, so the final `rename` is atomic), checked against their
//! pins, validated whole by the caller, and only then renamed into place. `db update`, fleet
//! databases and blocklists all fetch through here.
//!
//! Requests are conditional when the caller knows the stored copy's validators (`If-None-Match`,
//! `If-Modified-Since`): an unchanged file costs a `304` and no body.

use std::{
    fs::{self, File},
    io::{self, Read, Write},
    path::{Path, PathBuf},
    time::Duration,
};

use indicatif::{ProgressBar, ProgressStyle};

use super::update::{Download, MAX_DOWNLOAD, UpdateError};
use crate::fleet::Validators;

/// How [`fetch_validate_store`] fetches.
#[derive(Clone, Debug)]
pub(crate) struct FetchOptions {
    /// A progress bar on standard error.
    pub progress: bool,
    /// The largest file accepted, in bytes.
    pub limit: u64,
    /// The validators of the copies already in `dest`, one per download (none: fetch whole).
    /// A file the server answers `304 Not Modified` for is the copy in `dest`.
    pub known: Vec<Validators>,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            progress: false,
            limit: MAX_DOWNLOAD,
            known: Vec::new(),
        }
    }
}

/// One file of a download set, as [`fetch_validate_store`] fetched it.
#[derive(Clone, Debug)]
pub(crate) struct Fetched {
    /// While validating: the staged file (or the stored copy, when not modified); afterwards,
    /// where it is stored.
    pub path: PathBuf,
    pub url: String,
    /// Bytes transferred (0 when not modified).
    pub bytes: u64,
    /// What to send next time to fetch it only if it changed.
    pub validators: Validators,
    /// The server answered `304 Not Modified`: `path` is the copy already stored.
    pub not_modified: bool,
}

/// Fetches `downloads` into a staging folder inside `dest`, checks pins, hands the staged files
/// to `validate`, and only when it succeeds renames them over their predecessors and syncs
/// `dest`. On any error `dest` is left as it was; the staging folder is removed in every case.
pub(crate) fn fetch_validate_store<T, E: From<UpdateError>>(
    downloads: &[Download],
    dest: &Path,
    options: &FetchOptions,
    validate: impl FnOnce(&[Fetched]) -> Result<T, E>,
) -> Result<(Vec<Fetched>, T), E> {
    for (i, d) in downloads.iter().enumerate() {
        if downloads[..i].iter().any(|e| e.file_name == d.file_name) {
            return Err(UpdateError::DuplicateName {
                name: d.file_name.clone(),
            }
            .into());
        }
    }
    fs::create_dir_all(dest).map_err(io_error("create", dest))?;
    let staging = Staging::new(dest)?;
    let agent = agent();
    let mut files = Vec::new();
    for (i, d) in downloads.iter().enumerate() {
        let stored = dest.join(&d.file_name);
        // A validator is only worth sending while the copy it describes is there.
        let known = options
            .known
            .get(i)
            .filter(|_| stored.is_file())
            .cloned()
            .unwrap_or_default();
        let path = staging.dir.join(&d.file_name);
        let mut f = fetch_first(&agent, &d.urls, &path, options, &known)?;
        if f.not_modified {
            f.path = stored;
            f.validators = known;
        } else if let Some(want) = &d.sha256 {
            let got = fs::read(&path)
                .map(|b| crate::fleet::sha256_hex(&b))
                .map_err(io_error("read", &path))?;
            if &got != want {
                return Err(UpdateError::Sha256Mismatch {
                    url: f.url,
                    got,
                    want: want.clone(),
                }
                .into());
            }
        }
        files.push(f);
    }
    let checked = validate(&files)?;
    for (f, d) in files.iter_mut().zip(downloads) {
        if !f.not_modified {
            let target = dest.join(&d.file_name);
            fs::rename(&f.path, &target).map_err(io_error("rename into place", &target))?;
            f.path = target;
        }
    }
    File::open(dest)
        .and_then(|f| f.sync_all())
        .map_err(io_error("sync", dest))?;
    Ok((files, checked))
}

fn io_error(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> UpdateError {
    let path = path.to_owned();
    move |source| UpdateError::Io { op, path, source }
}

/// The HTTP client of every download: generous timeouts (a world database is large and some
/// mirrors are slow), so a dead server fails in seconds to minutes, never hangs.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_recv_body(Some(Duration::from_secs(3600)))
        .user_agent(concat!("geofilter/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Tries `urls` in order; a 404 moves on to the next.
fn fetch_first(
    agent: &ureq::Agent,
    urls: &[String],
    path: &Path,
    options: &FetchOptions,
    known: &Validators,
) -> Result<Fetched, UpdateError> {
    let mut last = None;
    for url in urls {
        match fetch(agent, url, path, options, known) {
            Ok(f) => return Ok(f),
            Err(e @ UpdateError::Status { status: 404, .. }) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.expect("presets and --url give at least one URL"))
}

fn fetch(
    agent: &ureq::Agent,
    url: &str,
    path: &Path,
    options: &FetchOptions,
    known: &Validators,
) -> Result<Fetched, UpdateError> {
    let http = |source| UpdateError::Http {
        url: url.to_owned(),
        source,
    };
    let too_large = || UpdateError::TooLarge {
        url: url.to_owned(),
        limit_mib: options.limit >> 20,
    };
    let response = match known.condition(agent.get(url)).call() {
        Ok(r) => r,
        Err(ureq::Error::StatusCode(status)) => {
            return Err(UpdateError::Status {
                url: url.to_owned(),
                status,
            });
        }
        Err(e) => return Err(http(e)),
    };
    match response.status().as_u16() {
        200 => {}
        // Only asked for with validators; a server that sends it unasked has nothing to give.
        304 if *known != Validators::default() => {
            return Ok(Fetched {
                path: path.to_owned(),
                url: url.to_owned(),
                bytes: 0,
                validators: known.clone(),
                not_modified: true,
            });
        }
        status => {
            return Err(UpdateError::Status {
                url: url.to_owned(),
                status,
            });
        }
    }
    let validators = Validators::of(&response);
    let length = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if length.is_some_and(|n| n > options.limit) {
        return Err(too_large());
    }
    let bar = if options.progress {
        let bar = match length {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{msg} {spinner} {bytes} {bytes_per_sec}")
                    .expect("valid template"),
            ),
        };
        bar.set_message(url.rsplit('/').next().unwrap_or(url).to_owned());
        bar
    } else {
        ProgressBar::hidden()
    };
    let io = |op| io_error(op, path);
    let mut file = File::create(path).map_err(io("create"))?;
    let mut reader = response
        .into_body()
        .into_with_config()
        .limit(options.limit + 1)
        .reader();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                bar.abandon();
                // ureq reports its own errors (body limit, short body) through io::Error.
                return Err(match ureq::Error::from(e) {
                    ureq::Error::BodyExceedsLimit(_) => too_large(),
                    other => http(other),
                });
            }
        };
        total += n as u64;
        if total > options.limit {
            bar.abandon();
            return Err(too_large());
        }
        file.write_all(&buf[..n]).map_err(io("write"))?;
        bar.inc(n as u64);
    }
    file.sync_all().map_err(io("sync"))?;
    // The summary lines that follow say what was stored.
    bar.finish_and_clear();
    Ok(Fetched {
        path: path.to_owned(),
        url: url.to_owned(),
        bytes: total,
        validators,
        not_modified: false,
    })
}

/// A staging folder inside the destination, removed on drop.
pub(crate) struct Staging {
    pub dir: PathBuf,
}

impl Staging {
    pub(crate) fn new(dest: &Path) -> Result<Self, UpdateError> {
        let dir = dest.join(format!(".staging-{}", std::process::id()));
        // A folder of this name is the leftover of a crashed run with our pid: ours to clear.
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).map_err(|source| UpdateError::Io {
            op: "create",
            path: dir.clone(),
            source,
        })?;
        Ok(Self { dir })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}
