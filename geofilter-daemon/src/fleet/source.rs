//! Where the policy comes from (`--policy SOURCE`), and reading one revision of it: a file, or
//! an HTTP(S) URL asked conditionally (`If-None-Match` / `If-Modified-Since`), so a poll of an
//! unchanged policy costs a 304 and no body.

use std::{
    fmt,
    io::Read as _,
    net::{IpAddr, ToSocketAddrs as _},
    path::PathBuf,
    time::Duration,
};

/// A policy document is a few kilobytes; anything much larger is the wrong URL.
pub const MAX_DOCUMENT: u64 = 1 << 20;

/// How long one request for the document may take, connect to last byte. Short: a dead source
/// must not hold up the daemon's start-up or the next poll, and the last good revision stays
/// enforced meanwhile.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicySource {
    File(PathBuf),
    Url(String),
}

impl std::str::FromStr for PolicySource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.starts_with("http://") || s.starts_with("https://") {
            host_of(s).ok_or_else(|| format!("{s}: no host in the URL"))?;
            Ok(Self::Url(s.to_owned()))
        } else if s.contains("://") {
            Err(format!(
                "{s}: only http:// and https:// URLs, or a file path, are policy sources"
            ))
        } else if s.is_empty() {
            Err("an empty policy source".into())
        } else {
            Ok(Self::File(PathBuf::from(s)))
        }
    }
}

impl fmt::Display for PolicySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Url(url) => f.write_str(url),
        }
    }
}

/// The cache validators of the revision last read, sent with the next request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Validators {
    /// `request`, made conditional on the copy these describe (`If-None-Match`,
    /// `If-Modified-Since`): the server answers 304 and no body if it has not changed.
    pub(crate) fn condition<B>(
        &self,
        mut request: ureq::RequestBuilder<B>,
    ) -> ureq::RequestBuilder<B> {
        if let Some(etag) = &self.etag {
            request = request.header("If-None-Match", etag);
        }
        if let Some(date) = &self.last_modified {
            request = request.header("If-Modified-Since", date);
        }
        request
    }

    /// The validators a response came with.
    pub(crate) fn of<B>(response: &ureq::http::Response<B>) -> Self {
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Self {
            etag: header("etag"),
            last_modified: header("last-modified"),
        }
    }
}

/// What one read of the source gave.
#[derive(Debug)]
pub enum Read {
    /// The document, with the validators to send next time.
    Document(Vec<u8>, Validators),
    /// HTTP 304: the revision asked with is still current.
    NotModified,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("reading {0}: {1}")]
    File(PathBuf, #[source] std::io::Error),
    #[error("{where_}: larger than {} KiB; not a policy document", MAX_DOCUMENT >> 10)]
    TooLarge { where_: String },
    #[error("{0}: the server answered HTTP {1}")]
    Status(String, u16),
    #[error("{0}: {1}")]
    Http(String, #[source] ureq::Error),
}

impl PolicySource {
    /// Reads the source; `known` are the validators of the revision in hand (none: fetch
    /// whole).
    pub fn read(&self, known: &Validators) -> Result<Read, FetchError> {
        match self {
            Self::File(path) => read_file(path),
            Self::Url(url) => read_url(url, known),
        }
    }

    /// The addresses the policy comes from (resolved now: the source's name may move). Empty
    /// for a file.
    pub fn addresses(&self) -> Vec<IpAddr> {
        match self {
            Self::File(_) => Vec::new(),
            Self::Url(url) => url_addresses(url),
        }
    }
}

/// The addresses an http(s) URL's host resolves to now, sorted.
pub fn url_addresses(url: &str) -> Vec<IpAddr> {
    let Some((host, port)) = host_of(url) else {
        return Vec::new();
    };
    let mut addrs: Vec<IpAddr> = (host.as_str(), port)
        .to_socket_addrs()
        .map(|it| it.map(|a| a.ip()).collect())
        .unwrap_or_default();
    addrs.sort();
    addrs.dedup();
    addrs
}

fn read_file(path: &PathBuf) -> Result<Read, FetchError> {
    let err = |e| FetchError::File(path.clone(), e);
    let file = std::fs::File::open(path).map_err(err)?;
    let mut bytes = Vec::new();
    file.take(MAX_DOCUMENT + 1)
        .read_to_end(&mut bytes)
        .map_err(err)?;
    if bytes.len() as u64 > MAX_DOCUMENT {
        return Err(FetchError::TooLarge {
            where_: path.display().to_string(),
        });
    }
    Ok(Read::Document(bytes, Validators::default()))
}

fn read_url(url: &str, known: &Validators) -> Result<Read, FetchError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(REQUEST_TIMEOUT))
        .user_agent(concat!("geofilter/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let response = match known.condition(agent.get(url)).call() {
        Ok(r) => r,
        Err(ureq::Error::StatusCode(status)) => {
            return Err(FetchError::Status(url.to_owned(), status));
        }
        Err(e) => return Err(FetchError::Http(url.to_owned(), e)),
    };
    match response.status().as_u16() {
        304 => return Ok(Read::NotModified),
        200 => {}
        status => return Err(FetchError::Status(url.to_owned(), status)),
    }
    let validators = Validators::of(&response);
    let bytes = response
        .into_body()
        .into_with_config()
        .limit(MAX_DOCUMENT)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => FetchError::TooLarge {
                where_: url.to_owned(),
            },
            e => FetchError::Http(url.to_owned(), e),
        })?;
    Ok(Read::Document(bytes, validators))
}

/// The host and port of an http(s) URL (`[v6]` literals unbracketed).
fn host_of(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let default_port = if scheme == "https" { 443 } else { 80 };
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default_port,
    };
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_and_their_hosts() {
        let src = |s: &str| s.parse::<PolicySource>();
        assert_eq!(
            src("/etc/geofilter/policy.toml").unwrap(),
            PolicySource::File("/etc/geofilter/policy.toml".into())
        );
        assert!(src("ftp://x/p.toml").is_err());
        assert!(src("http:///p.toml").is_err());
        assert!(src("").is_err());
        assert_eq!(
            host_of("http://10.0.0.1:8080/p.toml"),
            Some(("10.0.0.1".into(), 8080))
        );
        assert_eq!(
            host_of("https://[2001:db8::1]/p"),
            Some(("2001:db8::1".into(), 443))
        );
        assert_eq!(
            host_of("http://u:pw@h.example"),
            Some(("h.example".into(), 80))
        );
        let url: PolicySource = "http://192.0.2.7:81/p.toml".parse().unwrap();
        assert_eq!(url.addresses(), ["192.0.2.7".parse::<IpAddr>().unwrap()]);
    }
}
