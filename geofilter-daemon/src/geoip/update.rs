//! `geofilter db update`: fetch a database over HTTP(S), validate it completely, and store it
//! atomically where the daemon reads it.
//!
//! Every file of a download set is first written to a staging folder inside the destination
//! (same filesystem, so the final `rename` is atomic), synced, and loaded with [`super::load`]
//! exactly as the daemon would load it. Only when the whole set is valid is each file renamed over
//! its predecessor and the folder synced. A failed or invalid download leaves the destination as
//! it was; the staging folder is removed in every case.

use std::{
    fs::{self, File},
    io::{self, Read, Write},
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use indicatif::{ProgressBar, ProgressStyle};

use super::{CompiledDb, DbError, Format, info::format_date};
use crate::fleet::Validators;
pub use crate::paths::DEFAULT_DB_DIR;

/// The largest download accepted: the largest real country database (DB-IP lite CSV) is about
/// 150 MB uncompressed; this stops a wrong URL from filling the disk.
pub const MAX_DOWNLOAD: u64 = 1 << 30;

/// A named source for `db update --preset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// DB-IP "IP to Country Lite", one CSV (IPv4 and IPv6, gzip'd), refreshed monthly;
    /// CC BY 4.0, attribution "IP Geolocation by DB-IP" (<https://db-ip.com>).
    DbipLite,
    /// The same DB-IP lite data as ip-location-db's `dbip-country` CSV files (IPv4 and IPv6)
    /// from the jsDelivr CDN. The npm copies stopped updating in June 2026.
    IpLocationDb,
    /// ip-location-db's `geo-whois-asn-country` CSV files (IPv4 and IPv6, the embedded
    /// database's source; CC BY 4.0, NRO) from the jsDelivr CDN. Frozen in June 2026 like the
    /// other npm copies.
    GeoWhoisAsn,
}

/// One file to fetch: the URLs to try in order (the first that exists wins) and the name it is
/// stored under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Download {
    pub urls: Vec<String>,
    pub file_name: String,
    /// The SHA-256 (lower-case hex) the file must have: a policy document pins its databases
    /// this way. A download that hashes differently is refused before it is read.
    pub sha256: Option<String>,
}

impl Preset {
    /// The files of this preset, for a download on day `today`.
    pub fn downloads(self, today: SystemTime) -> Vec<Download> {
        let jsdelivr = |package: &str, file: &str| Download {
            urls: vec![format!(
                "https://cdn.jsdelivr.net/npm/@ip-location-db/{package}/{file}"
            )],
            file_name: file.to_owned(),
            sha256: None,
        };
        match self {
            Preset::DbipLite => {
                // Published at the start of each month: try this month, then the last one.
                let date = format_date(today);
                let (year, month) = (date[..4].parse::<u32>(), date[5..7].parse::<u32>());
                let (year, month) = (year.unwrap_or(1970), month.unwrap_or(1));
                let (prev_year, prev_month) = if month == 1 {
                    (year - 1, 12)
                } else {
                    (year, month - 1)
                };
                let url = |y: u32, m: u32| {
                    format!(
                        "https://download.db-ip.com/free/dbip-country-lite-{y:04}-{m:02}.csv.gz"
                    )
                };
                vec![Download {
                    urls: vec![url(year, month), url(prev_year, prev_month)],
                    file_name: "dbip-country-lite.csv.gz".into(),
                    sha256: None,
                }]
            }
            Preset::IpLocationDb => vec![
                jsdelivr("dbip-country", "dbip-country-ipv4.csv"),
                jsdelivr("dbip-country", "dbip-country-ipv6.csv"),
            ],
            Preset::GeoWhoisAsn => vec![
                jsdelivr("geo-whois-asn-country", "geo-whois-asn-country-ipv4.csv"),
                jsdelivr("geo-whois-asn-country", "geo-whois-asn-country-ipv6.csv"),
            ],
        }
    }
}

/// A download of a user-given URL, stored under the last part of its path.
pub fn url_download(url: &str) -> Result<Download, UpdateError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| UpdateError::BadUrl {
            url: url.to_owned(),
            reason: "only https:// and http:// URLs are supported",
        })?;
    let path = rest.split(['?', '#']).next().unwrap_or_default();
    let name = path.rsplit('/').next().unwrap_or_default();
    let ok = !name.is_empty()
        && path.contains('/')
        && name != "."
        && name != ".."
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b));
    if !ok {
        return Err(UpdateError::BadUrl {
            url: url.to_owned(),
            reason: "the URL must end in a file name (letters, digits, - _ . +) to store it under",
        });
    }
    Ok(Download {
        urls: vec![url.to_owned()],
        file_name: name.to_owned(),
        sha256: None,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("{url}: {reason}")]
    BadUrl { url: String, reason: &'static str },
    #[error("two downloads would both be stored as {name}")]
    DuplicateName { name: String },
    #[error("fetching {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: ureq::Error,
    },
    #[error("fetching {url}: the server answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("fetching {url}: larger than {limit_mib} MiB, the most accepted; wrong URL?")]
    TooLarge { url: String, limit_mib: u64 },
    #[error("failed to {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the download from {url} is not a valid database, nothing was replaced: {source}")]
    Invalid {
        url: String,
        #[source]
        source: Box<DbError>,
    },
    #[error("fetching {url}: its SHA-256 is {got}, the policy pins {want}; nothing was replaced")]
    Sha256Mismatch {
        url: String,
        got: String,
        want: String,
    },
    #[error("the downloaded files do not form a valid database, nothing was replaced: {0}")]
    InvalidSet(#[source] Box<DbError>),
}

/// What an update stored.
pub struct Stored {
    /// The stored files, in download order (the order to give them to the daemon).
    pub paths: Vec<PathBuf>,
    /// The URL each file came from.
    pub urls: Vec<String>,
    pub bytes: u64,
    pub db: CompiledDb,
}

/// Fetches `downloads`, validates them together (as the daemon would load them, with `format`
/// forced when given), and moves them into `dest`.
pub fn fetch_and_store(
    downloads: &[Download],
    dest: &Path,
    format: Option<Format>,
    progress: bool,
) -> Result<Stored, UpdateError> {
    let options = FetchOptions {
        progress,
        ..FetchOptions::default()
    };
    let (files, db) = fetch_validate_store(downloads, dest, &options, |files| {
        // Each file alone first, so an error names the URL it came from; then the set, as the
        // daemon will load it.
        for f in files {
            super::read_source(&f.path, format).map_err(|source| UpdateError::Invalid {
                url: f.url.clone(),
                source: Box::new(source),
            })?;
        }
        let paths: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
        super::load(&paths, format).map_err(|e| UpdateError::InvalidSet(Box::new(e)))
    })?;
    Ok(Stored {
        bytes: files.iter().map(|f| f.bytes).sum(),
        paths: files.iter().map(|f| f.path.clone()).collect(),
        urls: files.into_iter().map(|f| f.url).collect(),
        db,
    })
}

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
    let mut request = agent.get(url);
    if let Some(etag) = &known.etag {
        request = request.header("If-None-Match", etag);
    }
    if let Some(date) = &known.last_modified {
        request = request.header("If-Modified-Since", date);
    }
    let response = match request.call() {
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
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let validators = Validators {
        etag: header("etag"),
        last_modified: header("last-modified"),
    };
    let length = header("content-length").and_then(|v| v.parse::<u64>().ok());
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

#[cfg(test)]
mod tests {
    use super::{super::info::parse_date, *};

    #[test]
    fn preset_urls() {
        let day = parse_date("2027-01-15").unwrap();
        let d = Preset::DbipLite.downloads(day);
        assert_eq!(
            d[0].urls,
            [
                "https://download.db-ip.com/free/dbip-country-lite-2027-01.csv.gz",
                "https://download.db-ip.com/free/dbip-country-lite-2026-12.csv.gz"
            ]
        );
        assert_eq!(d[0].file_name, "dbip-country-lite.csv.gz");
        let d = Preset::GeoWhoisAsn.downloads(day);
        assert_eq!(d.len(), 2);
        assert!(d[1].urls[0].ends_with("/geo-whois-asn-country-ipv6.csv"));
    }

    #[test]
    fn url_file_names() {
        let name = |u: &str| url_download(u).map(|d| d.file_name);
        assert_eq!(
            name("https://x.example/a/db.csv.gz?token=1").unwrap(),
            "db.csv.gz"
        );
        assert_eq!(name("http://10.0.0.1:8080/geoip6").unwrap(), "geoip6");
        assert!(name("ftp://x.example/db.csv").is_err());
        assert!(name("https://x.example/").is_err());
        assert!(name("https://x.example").is_err());
        assert!(name("https://x.example/..").is_err());
        assert!(name("https://x.example/.hidden").is_err());
        assert!(name("https://x.example/a%2Fb").is_err());
    }
}
