//! A real HTTP/1.1 origin server for the fleet tests: it serves a map of paths to bytes from
//! inside a test namespace, with the validators a static file server sends (`ETag`,
//! `Last-Modified`) and the conditional requests they enable (`If-None-Match`,
//! `If-Modified-Since` → `304`), and it counts what it serves by status. It can be stopped and
//! started again on the same address (a dead source), and told to accept connections and never
//! answer (a source that times out).
//!
//! Every response closes its connection (`Connection: close`): each poll of a daemon then pays a
//! TCP handshake, as it does at the default 30 s interval against any server whose keep-alive
//! timeout is shorter than that (Apache's is 5 s), so the benchmark's per-poll cost is the upper
//! one. Tests only: it trusts its clients and reads no request body.

use std::{
    collections::{BTreeMap, HashMap},
    hash::{DefaultHasher, Hasher as _},
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

pub use self::date::{http_date, parse_http_date};
use crate::netns::Netns;

mod date;

/// The accept loop never outlives this: a test that forgets to stop it still ends.
const LIFETIME: Duration = Duration::from_secs(30 * 60);
/// Connections served at once; more are closed unanswered (counted as status 0).
const MAX_CONNECTIONS: usize = 256;
/// How long a connection may take to send its request head, and its largest size.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_HEAD: usize = 16 * 1024;
/// How long a hung connection is held before it is closed unanswered (longer than any client
/// timeout the daemon should use).
const HANG_FOR: Duration = Duration::from_secs(120);

/// What the server did, per response status (`0`: accepted and never answered).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count {
    pub requests: u64,
    /// Bytes of the requests' heads as read.
    pub bytes_in: u64,
    /// Bytes written: status line, headers and body.
    pub bytes_out: u64,
}

struct Entry {
    body: Vec<u8>,
    etag: String,
    /// Unix seconds, strictly increasing per path (see [`PolicyServer::publish`]).
    modified: u64,
}

#[derive(Default)]
struct Shared {
    files: Mutex<HashMap<String, Entry>>,
    counts: Mutex<BTreeMap<u16, Count>>,
    hang: AtomicBool,
    active: AtomicUsize,
}

pub struct PolicyServer {
    netns: String,
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PolicyServer {
    /// Listens on `addr` inside `netns` (port 0: any free port, kept across restarts).
    pub fn start(netns: &Netns, addr: SocketAddr) -> Self {
        let mut server = Self {
            netns: netns.name.clone(),
            addr,
            shared: Arc::default(),
            stop: Arc::default(),
            thread: None,
        };
        server.resume();
        server
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR:PORT/<path>` (path without its leading slash).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    /// Serves `body` at `/<path>` from now on. A new content gets a new ETag and a Last-Modified
    /// at least a second after the previous one: HTTP dates have one-second resolution, and a
    /// client that only sent If-Modified-Since would otherwise miss a change made within the
    /// second. Publishing the same bytes again changes nothing (as a content-addressed store).
    pub fn publish(&self, path: &str, body: impl Into<Vec<u8>>) {
        let body = body.into();
        let mut hasher = DefaultHasher::new();
        hasher.write(&body);
        let etag = format!("\"{:016x}\"", hasher.finish());
        let mut files = self.shared.files.lock().expect("files");
        let previous = files.get(path).map(|e| (e.etag.clone(), e.modified));
        if previous.as_ref().is_some_and(|(tag, _)| *tag == etag) {
            return;
        }
        let modified = previous.map_or(unix_now(), |(_, m)| unix_now().max(m + 1));
        files.insert(
            path.to_owned(),
            Entry {
                body,
                etag,
                modified,
            },
        );
    }

    /// Stops serving `/<path>` (404 from now on).
    pub fn remove(&self, path: &str) {
        self.shared.files.lock().expect("files").remove(path);
    }

    /// The ETag `/<path>` is served with.
    pub fn etag(&self, path: &str) -> Option<String> {
        let files = self.shared.files.lock().expect("files");
        files.get(path).map(|e| e.etag.clone())
    }

    /// Accept connections and never answer them (`true`), or answer again (`false`: the held
    /// connections are closed unanswered).
    pub fn set_hang(&self, hang: bool) {
        self.shared.hang.store(hang, Ordering::Relaxed);
    }

    /// Requests and bytes by status since the start or the last [`reset_counts`].
    ///
    /// [`reset_counts`]: Self::reset_counts
    pub fn counts(&self) -> BTreeMap<u16, Count> {
        self.shared.counts.lock().expect("counts").clone()
    }

    pub fn reset_counts(&self) {
        self.shared.counts.lock().expect("counts").clear();
    }

    /// Closes the listening socket: connections are refused until [`resume`](Self::resume).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("policy server thread");
        }
    }

    /// Listens again on the same address, serving the same files.
    pub fn resume(&mut self) {
        assert!(self.thread.is_none(), "the policy server is running");
        let addr = self.addr;
        // std sets SO_REUSEADDR on Unix, so the address binds again while old connections of the
        // stopped listener are still in TIME_WAIT.
        let listener = Netns::borrowed(&self.netns).run_in(|| {
            let l = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
            l.set_nonblocking(true).expect("nonblocking listener");
            l
        });
        self.addr = listener.local_addr().expect("local address");
        self.stop = Arc::default();
        let (stop, shared) = (self.stop.clone(), self.shared.clone());
        self.thread = Some(std::thread::spawn(move || {
            accept_loop(listener, stop, shared)
        }));
    }
}

impl Drop for PolicyServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: TcpListener, stop: Arc<AtomicBool>, shared: Arc<Shared>) {
    let deadline = Instant::now() + LIFETIME;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let Ok((stream, _)) = listener.accept() else {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        };
        if shared.active.fetch_add(1, Ordering::Relaxed) >= MAX_CONNECTIONS {
            shared.active.fetch_sub(1, Ordering::Relaxed);
            count(&shared, 0, 0, 0);
            continue;
        }
        let (shared, stop) = (shared.clone(), stop.clone());
        std::thread::spawn(move || {
            serve(stream, &shared, &stop);
            shared.active.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

fn count(shared: &Shared, status: u16, bytes_in: usize, bytes_out: usize) {
    let mut counts = shared.counts.lock().expect("counts");
    let c = counts.entry(status).or_default();
    c.requests += 1;
    c.bytes_in += bytes_in as u64;
    c.bytes_out += bytes_out as u64;
}

/// One connection, one request.
fn serve(mut stream: TcpStream, shared: &Shared, stop: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    if shared.hang.load(Ordering::Relaxed) {
        let until = Instant::now() + HANG_FOR;
        while shared.hang.load(Ordering::Relaxed)
            && !stop.load(Ordering::Relaxed)
            && Instant::now() < until
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        count(shared, 0, 0, 0);
        return;
    }
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let Some(head) = read_head(&mut stream) else {
        return;
    };
    let (status, response) = respond(shared, &String::from_utf8_lossy(&head));
    let _ = stream.write_all(&response);
    let _ = stream.flush();
    count(shared, status, head.len(), response.len());
}

/// The request head (up to and including the blank line), or `None` if the client closed,
/// stalled or sent too much.
fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).ok().filter(|&n| n > 0)?;
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            return None;
        }
    }
    Some(head)
}

/// The status and the whole response to one request head.
fn respond(shared: &Shared, head: &str) -> (u16, Vec<u8>) {
    let mut lines = head.split("\r\n");
    let mut request = lines.next().unwrap_or_default().split(' ');
    let (method, target) = (request.next().unwrap_or_default(), request.next());
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    if method != "GET" && method != "HEAD" {
        return reply(
            405,
            "Method Not Allowed",
            &[("Allow", "GET, HEAD".into())],
            &[],
            true,
        );
    }
    let path = target.unwrap_or("/").trim_start_matches('/');
    let path = path.split('?').next().unwrap_or_default();
    let files = shared.files.lock().expect("files");
    let Some(entry) = files.get(path) else {
        return reply(404, "Not Found", &[], &[], true);
    };
    let validators = [
        ("ETag", entry.etag.clone()),
        ("Last-Modified", http_date(entry.modified)),
    ];
    // RFC 9110 §13.2.2: If-None-Match is evaluated when present, and If-Modified-Since only
    // when it is absent.
    let not_modified = match header("If-None-Match") {
        Some(tags) => none_match_fails(&tags, &entry.etag),
        None => header("If-Modified-Since")
            .and_then(|d| parse_http_date(&d))
            .is_some_and(|since| entry.modified <= since),
    };
    if not_modified {
        return reply(304, "Not Modified", &validators, &[], false);
    }
    reply(200, "OK", &validators, &entry.body, method == "GET")
}

/// RFC 9110 §13.1.2: `*` or a list of entity tags, compared weakly (`W/` ignored).
fn none_match_fails(tags: &str, etag: &str) -> bool {
    tags.trim() == "*"
        || tags
            .split(',')
            .any(|t| t.trim().trim_start_matches("W/") == etag.trim_start_matches("W/"))
}

/// A whole response; `send_body` false for HEAD, which announces the length GET would send.
fn reply(
    status: u16,
    reason: &str,
    headers: &[(&str, String)],
    body: &[u8],
    send_body: bool,
) -> (u16, Vec<u8>) {
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nDate: {}\r\n",
        http_date(unix_now())
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if status != 304 {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut out = head.into_bytes();
    if send_body {
        out.extend_from_slice(body);
    }
    (status, out)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// `GET /<path>` from inside `netns` (a plain HTTP/1.1 client for the daemons' `/ready` and the
/// server's own tests): the status and the body, or the I/O error. At most `timeout` in all.
pub fn get(
    netns: &Netns,
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    get_with(netns, addr, path, &[], timeout).map(|r| (r.status, r.body))
}

/// One response as [`get_with`] read it.
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }
}

/// [`get`] with extra request headers.
pub fn get_with(
    netns: &Netns,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> std::io::Result<Response> {
    let mut stream = netns.run_in(|| TcpStream::connect_timeout(&addr, timeout))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut request = format!("GET /{path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {head:?}")))?;
    Ok(Response {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    })
}
